//! SMTP delivery from the [`Outbox`]: one `std::thread` (the daemon's main
//! loop is synchronous) driving a lettre [`SmtpTransport`].
//!
//! * **Transport.** Built from [`SmtpConfig::url`] (see [`parse_url`]): plain,
//!   opportunistic or required STARTTLS, implicit TLS; credentials when both a
//!   username and a password are set; a one-connection pool so consecutive
//!   e-mails reuse the session (the pool checks it with `NOOP` before reuse).
//!   The server certificate is always verified (system roots plus the
//!   optional [`SmtpConfig::tls_ca`] of a private CA) and must name the URL's
//!   host; a TLS failure counts as *server unreachable* (below), so with
//!   `?tls=required` or `smtps://` nothing is ever sent in clear.
//! * **Order and retries.** Pending e-mails are tried oldest first (ids sort in
//!   creation order). Failures are classified:
//!   - *server unreachable* (connection refused, timeout, TLS, `421`, or an
//!     authentication rejection): nothing can be sent, so the whole queue waits
//!     a backoff that starts at `backoff_min`, doubles up to `backoff_max`, with
//!     ±20 % jitter, and the oldest e-mail is tried first again — order kept;
//!   - *transient for this e-mail* (`4xx` to MAIL/RCPT/DATA while the server is
//!     up): this e-mail alone waits its own backoff, and **the next pending
//!     e-mails are tried at once** — one stuck e-mail never blocks the others;
//!   - *permanent* (`5xx`, or a message the client cannot send to this server),
//!     confirmed by a `NOOP` probe that the server itself is fine: the e-mail is
//!     moved to `outbox/failed/` with the reason, counted `failed`, logged at
//!     error. If the probe fails the `5xx` was about the session (e.g. `535`
//!     bad credentials), which is treated as *server unreachable*: a wrong
//!     password must not send the whole outbox to `failed/`.
//!
//!   Retries go on forever: an e-mail leaves the queue only when accepted,
//!   permanently rejected, or removed from the outbox by the caller.
//! * **Accepted** means the server answered the final `.` with `2xx` (250):
//!   only then is the id appended to the notification log (fsynced) and the
//!   outbox files deleted ([`Outbox::mark_sent`]). If that append fails the id
//!   is kept aside and the append retried — never the send.
//! * **Rate limit.** A token bucket per recipient domain, refilled at
//!   `rate_per_domain_per_minute / 60` per second, burst = the per-minute rate.
//!   An e-mail is sent only when every recipient domain has a token; while it
//!   waits, later e-mails to any of its domains wait too (per-domain order).
//! * **Metrics** (through [`crate::metrics::events`]): `overdued_notifications_total{result}`
//!   (`sent`, `retry` per failed attempt to be retried, `failed`),
//!   `overdued_notification_send_seconds` (accepted sends),
//!   `overdued_outbox_depth`.
//!
//! Passwords are never logged ([`crate::config::Secret`] hides itself, and URLs
//! with credentials are refused); ids and recipients are.

use super::outbox::Outbox;
use super::{Email, NotifyError, SmtpConfig};
use crate::metrics::events::{EmailFailed, EmailRetry, EmailSendTime, EmailSent, OutboxDepth};
use crate::metrics::Metrics;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::{PoolConfig, SmtpTransport};
use lettre::Transport;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the connection is secured (from the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `?tls=none`: plain text only.
    None,
    /// `smtp://` default: STARTTLS if the server offers it.
    Opportunistic,
    /// `?tls=required`: STARTTLS or fail.
    Required,
    /// `smtps://`: TLS from the first byte.
    Wrapper,
}

/// A parsed [`SmtpConfig::url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEndpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 25 for `smtp://`, 465 for `smtps://`).
    pub port: u16,
    /// Security of the connection.
    pub tls: TlsMode,
}

/// Parses `smtp://host[:port][?tls=none|opportunistic|required]` or
/// `smtps://host[:port]`. Credentials in the URL are refused (they would end up
/// in logs): use `username` / `password`. Error messages never echo a URL that
/// contains an `@`.
pub fn parse_url(url: &str) -> Result<SmtpEndpoint, NotifyError> {
    let bad = |m: String| NotifyError::Settings(m);
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        bad(format!(
            "{url:?} is not smtp://host:port or smtps://host:port"
        ))
    })?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains('@') {
        return Err(bad(
            "credentials in the SMTP URL are not accepted: set username and password".into(),
        ));
    }
    if authority.contains('/') {
        return Err(bad(format!("{url:?}: a path is not expected")));
    }
    let (mut tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "smtp" => (TlsMode::Opportunistic, 25),
        "smtps" => (TlsMode::Wrapper, 465),
        other => return Err(bad(format!("unknown scheme {other:?} (smtp or smtps)"))),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad(format!("{url:?}: unclosed '['")))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad(format!("{url:?}: bad port"))),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad(format!("{url:?}: no host")));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad(format!("{url:?}: bad port {p:?}")))?,
        None => default_port,
    };
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("tls", v)) if tls == TlsMode::Wrapper => {
                return Err(bad(format!(
                    "{url:?}: smtps:// is always TLS, tls={v} does not apply"
                )))
            }
            Some(("tls", "none")) => tls = TlsMode::None,
            Some(("tls", "opportunistic")) => tls = TlsMode::Opportunistic,
            Some(("tls", "required")) => tls = TlsMode::Required,
            _ => {
                return Err(bad(format!(
                    "{url:?}: unknown parameter {pair:?} (tls=none|opportunistic|required)"
                )))
            }
        }
    }
    Ok(SmtpEndpoint {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Builds the lettre transport for `cfg` (no connection is made yet).
///
/// The server's certificate is always verified, against the system roots plus
/// [`SmtpConfig::tls_ca`], and must name the URL's host: there is deliberately
/// no switch to accept an invalid certificate (a private CA is what
/// `tls_ca_file` is for).
pub fn build_transport(cfg: &SmtpConfig) -> Result<SmtpTransport, NotifyError> {
    let ep = parse_url(&cfg.url)?;
    let roots = match (&cfg.tls_ca, ep.tls) {
        (Some(ca), mode) if mode != TlsMode::None => ca.certificates()?,
        _ => Vec::new(),
    };
    let params = || {
        let b = roots
            .iter()
            .cloned()
            .fold(TlsParameters::builder(ep.host.clone()), |b, c| {
                b.add_root_certificate(c)
            });
        b.build()
            .map_err(|e| NotifyError::Settings(format!("TLS for {}: {e}", ep.host)))
    };
    let tls = match ep.tls {
        TlsMode::None => Tls::None,
        TlsMode::Opportunistic => Tls::Opportunistic(params()?),
        TlsMode::Required => Tls::Required(params()?),
        TlsMode::Wrapper => Tls::Wrapper(params()?),
    };
    let mut b = SmtpTransport::builder_dangerous(ep.host.clone())
        .port(ep.port)
        .tls(tls)
        .timeout(Some(cfg.timeout))
        // One sending thread: one connection to reuse is enough.
        .pool_config(
            PoolConfig::new()
                .min_idle(0)
                .max_size(1)
                .idle_timeout(Duration::from_secs(60)),
        );
    match (&cfg.username, &cfg.password) {
        (Some(user), Some(pass)) => {
            b = b.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
        }
        (None, None) => {}
        _ => {
            return Err(NotifyError::Settings(
                "SMTP username and password must be set together".into(),
            ))
        }
    }
    Ok(b.build())
}

/// `250 2.0.0 Ok: queued` from a lettre response.
fn format_response(r: &Response) -> String {
    let text: Vec<&str> = r.message().collect();
    format!("{} {}", r.code(), text.join(" "))
        .trim_end()
        .to_string()
}

/// The envelope of a stored e-mail; an error is permanent (the stored
/// addresses will not become valid by waiting).
fn envelope(email: &Email) -> Result<Envelope, String> {
    let from = email
        .from
        .parse::<Address>()
        .map_err(|e| format!("invalid sender {:?}: {e}", email.from))?;
    let to = email
        .to
        .iter()
        .map(|a| {
            a.parse::<Address>()
                .map_err(|e| format!("invalid recipient {a:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| format!("invalid envelope: {e}"))
}

/// Lower-cased recipient domains, deduplicated and sorted.
fn domains(to: &[String]) -> Vec<String> {
    let mut d: Vec<String> = to
        .iter()
        .map(|a| {
            a.rsplit_once('@')
                .map_or(a.as_str(), |(_, d)| d)
                .to_ascii_lowercase()
        })
        .collect();
    d.sort_unstable();
    d.dedup();
    d
}

/// Token buckets per recipient domain.
#[derive(Debug)]
struct RateLimiter {
    per_minute: u32,
    buckets: HashMap<String, (f64, Instant)>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            buckets: HashMap::new(),
        }
    }

    fn tokens(&self, domain: &str, now: Instant) -> f64 {
        let cap = f64::from(self.per_minute);
        match self.buckets.get(domain) {
            None => cap,
            Some(&(t, at)) => {
                (t + now.saturating_duration_since(at).as_secs_f64() * cap / 60.0).min(cap)
            }
        }
    }

    /// Takes one token from every domain, or none and returns when all of
    /// them will have one.
    fn try_take(&mut self, domains: &[String], now: Instant) -> Result<(), Instant> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let per_sec = f64::from(self.per_minute) / 60.0;
        let mut wait = 0.0f64;
        for d in domains {
            let t = self.tokens(d, now);
            if t < 1.0 {
                wait = wait.max((1.0 - t) / per_sec);
            }
        }
        if wait > 0.0 {
            // A hair more, so the wake-up finds the token there.
            return Err(now + Duration::from_secs_f64(wait + 0.001));
        }
        for d in domains {
            let t = self.tokens(d, now);
            self.buckets.insert(d.clone(), (t - 1.0, now));
        }
        if self.buckets.len() > 10_000 {
            // A full bucket is the same as no bucket: forget those.
            let cap = f64::from(self.per_minute);
            let keep: Vec<String> = self
                .buckets
                .keys()
                .filter(|d| self.tokens(d, now) < cap)
                .cloned()
                .collect();
            self.buckets.retain(|d, _| keep.contains(d));
        }
        Ok(())
    }
}

/// splitmix64 seeded from the process's random hasher keys: jitter only needs
/// to differ between daemons restarting together, not to be cryptographic.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Jitter(h.finish())
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The delay before retry number `failures` (1-based): `min` doubling up to
/// `max`, then ±20 % jitter (`u` uniform in [0, 1)).
pub fn backoff(min: Duration, max: Duration, failures: u32, u: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(62);
    let base = (min.as_secs_f64() * 2f64.powi(exp as i32)).min(max.as_secs_f64());
    Duration::from_secs_f64((base * (0.8 + 0.4 * u)).max(0.0))
}

/// The result of one attempt.
#[derive(Debug)]
enum Outcome {
    /// The server accepted it (its reply).
    Sent(String),
    /// 4xx for this e-mail; the server is up.
    Deferred(String),
    /// Nothing can be sent now (connection, TLS, timeout, 421, session 5xx).
    Unreachable(String),
    /// Permanently refused.
    Rejected(String),
}

/// Messages to the sending thread.
enum Msg {
    Submit(String),
    Wake,
}

/// State shared between the handle and the thread.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Submitted ids the thread has not received yet.
    in_channel: AtomicUsize,
    /// E-mails the thread holds (queued, or accepted but not yet logged).
    held: AtomicUsize,
    sent: Mutex<Vec<String>>,
    failed: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the sending thread.
#[derive(Debug)]
pub struct Sender;

impl Sender {
    /// Builds the transport and starts the thread, which first sends what
    /// [`Outbox::pending`] returns. Fails on unusable settings or an
    /// unreadable outbox; never because the server is down (that is retried).
    pub fn start(
        cfg: SmtpConfig,
        outbox: Outbox,
        metrics: Metrics,
    ) -> Result<SenderHandle, NotifyError> {
        let transport = build_transport(&cfg)?;
        let pending = outbox.pending()?;
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        shared.held.store(pending.len(), Ordering::SeqCst);
        OutboxDepth(pending.len()).emit(&metrics);
        let queue = pending
            .into_iter()
            .map(|id| (id, Retry::default()))
            .collect();
        let worker = Worker {
            limiter: RateLimiter::new(cfg.rate_per_domain_per_minute),
            cfg,
            transport,
            outbox,
            metrics,
            rx,
            shared: Arc::clone(&shared),
            queue,
            unlogged: Vec::new(),
            server_failures: 0,
            server_blocked_until: None,
            jitter: Jitter::new(),
            new_work: false,
        };
        let thread = std::thread::Builder::new()
            .name("overdued-smtp".into())
            .spawn(move || {
                worker.run();
                let _ = done_tx.send(());
            })
            .map_err(|source| NotifyError::Io {
                what: "starting the SMTP sender thread".into(),
                source,
            })?;
        Ok(SenderHandle {
            tx,
            shared,
            done: done_rx,
            thread: Some(thread),
        })
    }
}

/// The caller's side of a running [`Sender`].
#[derive(Debug)]
pub struct SenderHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl SenderHandle {
    /// Queues `id`, which must already be durably in the outbox
    /// ([`Outbox::put`] returned). Submitting an id twice is harmless.
    pub fn submit(&self, id: impl Into<String>) {
        self.shared.in_channel.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(Msg::Submit(id.into())).is_err() {
            // The thread is gone (after shutdown): the id stays in the outbox
            // and is sent by the next start.
            self.shared.in_channel.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Ids the server accepted (and the notification log recorded) since the
    /// last call: the caller may drop them from its own durable state.
    pub fn take_sent(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.shared.sent))
    }

    /// Ids permanently rejected (moved to `outbox/failed/`) since the last call.
    pub fn take_failed(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.shared.failed))
    }

    /// E-mails not yet accepted or failed (submitted, queued, being sent).
    pub fn depth(&self) -> usize {
        self.shared.in_channel.load(Ordering::SeqCst) + self.shared.held.load(Ordering::SeqCst)
    }

    /// Stops the thread after the send in flight (if any) completes. Returns
    /// `false` if it did not stop within `timeout` (it is then left to finish
    /// on its own). Unsent e-mails stay in the outbox for the next start.
    pub fn shutdown(&mut self, timeout: Duration) -> bool {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Wake);
        let Some(thread) = self.thread.take() else {
            return true;
        };
        match self.done.recv_timeout(timeout) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        // Do not block in drop: ask the thread to stop and let it go.
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Wake);
    }
}

/// Retry state of one queued e-mail.
#[derive(Debug, Default)]
struct Retry {
    /// Transient rejections of this e-mail so far.
    failures: u32,
    /// Not before this instant (its own backoff).
    not_before: Option<Instant>,
}

struct Worker {
    cfg: SmtpConfig,
    transport: SmtpTransport,
    outbox: Outbox,
    metrics: Metrics,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    /// Pending ids, oldest first.
    queue: BTreeMap<String, Retry>,
    /// Accepted by the server, log append failed: (id, recipients, reply).
    unlogged: Vec<(String, Vec<String>, String)>,
    /// Consecutive "server unreachable" failures.
    server_failures: u32,
    server_blocked_until: Option<Instant>,
    limiter: RateLimiter,
    jitter: Jitter,
    /// An id was queued since the current pass started: look again at once.
    new_work: bool,
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Worker {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    fn update_depth(&self) {
        let held = self.queue.len() + self.unlogged.len();
        self.shared.held.store(held, Ordering::SeqCst);
        OutboxDepth(held).emit(&self.metrics);
    }

    fn handle(&mut self, msg: Msg) {
        if let Msg::Submit(id) = msg {
            let known = self.queue.contains_key(&id)
                || self.unlogged.iter().any(|(u, _, _)| *u == id)
                || self.outbox.is_sent(&id);
            if !known {
                self.queue.insert(id, Retry::default());
                self.new_work = true;
            }
            // Count it as held before it leaves the channel count, so that
            // `depth()` never dips to 0 in between.
            self.update_depth();
            self.shared.in_channel.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes every message waiting in the channel; `false` if the handle is gone.
    fn drain(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(m) => self.handle(m),
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn backoff(&mut self, failures: u32) -> Duration {
        let u = self.jitter.next();
        backoff(self.cfg.backoff_min, self.cfg.backoff_max, failures, u)
    }

    fn run(mut self) {
        tracing::info!(
            pending = self.queue.len(),
            url = %self.cfg.url,
            "SMTP sender started"
        );
        loop {
            if self.stopping() || !self.drain() {
                break;
            }
            self.retry_unlogged();
            self.new_work = false;
            let wake = self.pass();
            self.update_depth();
            if self.stopping() {
                break;
            }
            if self.new_work {
                continue;
            }
            let wake = if self.unlogged.is_empty() {
                wake
            } else {
                earliest(wake, Instant::now() + Duration::from_secs(1))
            };
            let msg = match wake {
                Some(t) => match self
                    .rx
                    .recv_timeout(t.saturating_duration_since(Instant::now()))
                {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None if self.queue.is_empty() => match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
                // Everything queued is waiting on something without a time
                // (cannot happen by construction, but never spin either).
                None => match self.rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            if let Some(m) = msg {
                self.handle(m);
            }
        }
        self.transport.shutdown();
        self.update_depth();
        tracing::info!(pending = self.queue.len(), "SMTP sender stopped");
    }

    fn retry_unlogged(&mut self) {
        let mut still = Vec::new();
        for (id, to, resp) in std::mem::take(&mut self.unlogged) {
            match self.outbox.mark_sent(&id, &to, &resp) {
                Ok(()) => self.on_logged(id),
                Err(e) => {
                    tracing::error!(id = %id, error = %e, "cannot record a sent e-mail in the notification log");
                    still.push((id, to, resp));
                }
            }
        }
        self.unlogged = still;
    }

    fn on_logged(&mut self, id: String) {
        EmailSent { id: &id }.emit(&self.metrics);
        lock(&self.shared.sent).push(id);
    }

    /// One pass over the queue, oldest first. Returns when to look again.
    fn pass(&mut self) -> Option<Instant> {
        if let Some(t) = self.server_blocked_until {
            if Instant::now() < t {
                return Some(t);
            }
        }
        let ids: Vec<String> = self.queue.keys().cloned().collect();
        let mut wake = None;
        // Domains with an e-mail waiting for a rate-limit token in this pass:
        // later e-mails to them wait too, so a domain's e-mails keep order.
        let mut held_domains: HashSet<String> = HashSet::new();
        for id in ids {
            if self.stopping() {
                return None;
            }
            self.drain();
            let now = Instant::now();
            let Some(retry) = self.queue.get(&id) else {
                continue;
            };
            if let Some(t) = retry.not_before.filter(|&t| t > now) {
                wake = earliest(wake, t);
                continue;
            }
            let email = match self.outbox.get(&id) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    tracing::debug!(id = %id, "no longer in the outbox, dropped from the queue");
                    self.queue.remove(&id);
                    continue;
                }
                Err(e) => {
                    tracing::error!(id = %id, error = %e, "cannot read a queued e-mail; will retry");
                    wake = earliest(wake, self.defer(&id));
                    continue;
                }
            };
            let doms = domains(&email.to);
            if doms.iter().any(|d| held_domains.contains(d)) {
                continue;
            }
            if let Err(t) = self.limiter.try_take(&doms, now) {
                tracing::debug!(id = %id, domains = %doms.join(", "), "waiting for the per-domain rate limit");
                held_domains.extend(doms);
                wake = earliest(wake, t);
                continue;
            }
            match self.attempt(&email) {
                Outcome::Sent(resp) => {
                    tracing::info!(id = %id, to = %email.to.join(", "), response = %resp, "e-mail accepted by the SMTP server");
                    self.server_failures = 0;
                    self.server_blocked_until = None;
                    self.queue.remove(&id);
                    match self.outbox.mark_sent(&id, &email.to, &resp) {
                        Ok(()) => self.on_logged(id),
                        Err(e) => {
                            tracing::error!(id = %id, error = %e, "cannot record a sent e-mail in the notification log; retrying the log, not the send");
                            self.unlogged.push((id, email.to.clone(), resp));
                        }
                    }
                }
                Outcome::Deferred(reason) => {
                    self.server_failures = 0;
                    EmailRetry.emit(&self.metrics);
                    let t = self.defer(&id);
                    tracing::warn!(id = %id, to = %email.to.join(", "), reason = %reason, retry_in_ms = t.saturating_duration_since(Instant::now()).as_millis() as u64, "e-mail deferred by the SMTP server; trying the next ones");
                    wake = earliest(wake, t);
                }
                Outcome::Rejected(reason) => {
                    EmailFailed {
                        what: &id,
                        reason: &reason,
                        stage: "rejected by the SMTP server; moved to outbox/failed",
                    }
                    .emit(&self.metrics);
                    match self.outbox.move_to_failed(&id, &reason) {
                        Ok(()) => {
                            self.queue.remove(&id);
                            lock(&self.shared.failed).push(id);
                        }
                        Err(e) => {
                            tracing::error!(id = %id, error = %e, "cannot move a rejected e-mail to outbox/failed; will retry");
                            wake = earliest(wake, self.defer(&id));
                        }
                    }
                }
                Outcome::Unreachable(reason) => {
                    EmailRetry.emit(&self.metrics);
                    self.server_failures = self.server_failures.saturating_add(1);
                    let delay = self.backoff(self.server_failures);
                    let t = Instant::now() + delay;
                    self.server_blocked_until = Some(t);
                    tracing::warn!(id = %id, reason = %reason, failures = self.server_failures, retry_in_ms = delay.as_millis() as u64, "SMTP server unusable; the queue waits");
                    return Some(t);
                }
            }
        }
        wake
    }

    /// Puts `id` on its own backoff; returns when it is due again.
    fn defer(&mut self, id: &str) -> Instant {
        let failures = self
            .queue
            .get(id)
            .map_or(0, |r| r.failures)
            .saturating_add(1);
        let t = Instant::now() + self.backoff(failures);
        if let Some(r) = self.queue.get_mut(id) {
            r.failures = failures;
            r.not_before = Some(t);
        }
        t
    }

    fn attempt(&self, email: &Email) -> Outcome {
        let env = match envelope(email) {
            Ok(e) => e,
            Err(reason) => return Outcome::Rejected(reason),
        };
        let started = Instant::now();
        match self.transport.send_raw(&env, &email.bytes) {
            Ok(resp) => {
                EmailSendTime {
                    took: started.elapsed(),
                }
                .emit(&self.metrics);
                Outcome::Sent(format_response(&resp))
            }
            Err(e) if e.is_transient() => {
                // 421: the server is closing the session / not available.
                if e.status().is_some_and(|c| u16::from(c) == 421) {
                    Outcome::Unreachable(e.to_string())
                } else {
                    Outcome::Deferred(e.to_string())
                }
            }
            Err(e) if e.is_permanent() || e.is_client() => {
                // Was it this e-mail, or the session (EHLO/AUTH)? Ask the server.
                match self.transport.test_connection() {
                    Ok(true) => Outcome::Rejected(e.to_string()),
                    Ok(false) => Outcome::Unreachable(format!("{e} (the session does not answer)")),
                    Err(probe) => Outcome::Unreachable(format!("{e} (session: {probe})")),
                }
            }
            Err(e) => Outcome::Unreachable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ep = parse_url("smtp://mail.example.vn:2525").unwrap();
        assert_eq!(
            ep,
            SmtpEndpoint {
                host: "mail.example.vn".into(),
                port: 2525,
                tls: TlsMode::Opportunistic
            }
        );
        assert_eq!(parse_url("smtp://h?tls=none").unwrap().tls, TlsMode::None);
        assert_eq!(
            parse_url("smtp://h:587?tls=required").unwrap().tls,
            TlsMode::Required
        );
        let s = parse_url("smtps://h").unwrap();
        assert_eq!((s.port, s.tls), (465, TlsMode::Wrapper));
        assert_eq!(parse_url("smtp://[::1]:25").unwrap().host, "::1");
        assert!(parse_url("smtps://h?tls=none").is_err());
        assert!(parse_url("http://h").is_err());
        assert!(parse_url("smtp://h:0").is_err());
        assert!(parse_url("smtp://h?x=1").is_err());
        let e = parse_url("smtp://u:secret@h").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(backoff(min, max, 1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(min, max, 3, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(min, max, 30, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(min, max, u32::MAX, 0.5), Duration::from_secs(10));
        assert!((backoff(min, max, 1, 0.0).as_secs_f64() - 0.8).abs() < 1e-9);
        assert!((backoff(min, max, 1, 0.999_999).as_secs_f64() - 1.2).abs() < 1e-5);
        let mut j = Jitter::new();
        assert!((0..1000).map(|_| j.next()).all(|u| (0.0..1.0).contains(&u)));
    }

    #[test]
    fn rate_limit_per_domain() {
        let mut r = RateLimiter::new(60);
        let t0 = Instant::now();
        let a = vec!["a.vn".to_string()];
        for _ in 0..60 {
            assert!(r.try_take(&a, t0).is_ok());
        }
        let wait = r.try_take(&a, t0).unwrap_err();
        assert!(wait > t0 && wait <= t0 + Duration::from_millis(1100));
        // Another domain is not affected; an e-mail to both waits for both.
        assert!(r.try_take(&["b.vn".to_string()], t0).is_ok());
        assert!(r
            .try_take(&["a.vn".to_string(), "b.vn".to_string()], t0)
            .is_err());
        assert!(r.try_take(&a, t0 + Duration::from_secs(1)).is_ok());
        assert!(RateLimiter::new(0).try_take(&a, t0).is_ok());
        assert_eq!(
            domains(&["x@A.vn".into(), "y@a.vn".into(), "z@b.vn".into()]),
            vec!["a.vn", "b.vn"]
        );
    }
}
