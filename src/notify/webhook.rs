//! Generic webhooks (`[[webhook]]`): alert transitions POSTed as JSON
//! batches, signed with HMAC-SHA256, durable like the e-mail outbox.
//!
//! The daemon writes each batch to `<state dir>/webhooks/<name>/<seq>.json`
//! before it saves its state (a spool), and releases it to the sender only
//! after the save: a crash before the save regenerates the batch from the
//! source instead of sending it twice, a crash after it finds the file and
//! sends it. The sender POSTs the spool in order and deletes a file only
//! after a 2xx: delivery is at least once, in order; receivers dedupe by the
//! transitions' stable `id`.

use super::post::{backoff, bounded_duration, Outcome, Poster};
use crate::config::common::ConfigError;
use crate::config::common::{Secret, Src};
use crate::metrics::events::{WebhookBacklog, WebhookDelivered, WebhookFailed, WebhookRetry};
use crate::metrics::Metrics;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use toml::Spanned;

/// Longest wait between two attempts at a batch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One `[[webhook]]`, validated.
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// Spool folder and metric label: `[a-z0-9_-]{1,40}`.
    pub name: String,
    /// Where batches are POSTed.
    pub url: String,
    /// The HMAC-SHA256 key of `X-Overdued-Signature` (none: offline commands
    /// whose secrets need not resolve).
    pub secret: Option<Secret>,
    /// Transitions per POST.
    pub max_batch: usize,
    /// Request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("webhook::Settings")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("max_batch", &self.max_batch)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `[[webhook]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    url: Spanned<String>,
    name: Option<Spanned<String>>,
    secret: Spanned<String>,
    max_batch: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
}

/// Validates every `[[webhook]]`; `base` resolves `file:` secrets.
pub fn validate(
    src: &Src<'_>,
    base: &Path,
    raw: &[Spanned<RawWebhook>],
) -> Result<Vec<Settings>, ConfigError> {
    let mut out: Vec<Settings> = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let w = w.get_ref();
        let field = |k: &str| format!("webhook[{i}].{k}");
        let url = w.url.get_ref().trim().to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return src.err(
                w.url.span(),
                &field("url"),
                "must be an http:// or https:// URL",
            );
        }
        let name = match &w.name {
            Some(n) => {
                let v = n.get_ref();
                let ok = (1..=40).contains(&v.len())
                    && v.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if !ok {
                    return src.err(
                        n.span(),
                        &field("name"),
                        format!("must be 1 to 40 of a-z, 0-9, - and _ (got {v:?})"),
                    );
                }
                v.clone()
            }
            None => format!(
                "webhook-{:08x}",
                xxhash_rust::xxh3::xxh3_64(url.as_bytes()) >> 32
            ),
        };
        if out.iter().any(|o| o.name == name) {
            let span = w.name.as_ref().map_or(w.url.span(), |n| n.span());
            return src.err(
                span,
                &field("name"),
                format!("another [[webhook]] is already named {name:?}"),
            );
        }
        let secret = src.secret(
            w.secret.get_ref(),
            base,
            Some(w.secret.span()),
            &field("secret"),
        )?;
        if let Some(s) = &secret {
            if s.expose().chars().count() < 16 {
                return src.err(
                    w.secret.span(),
                    &field("secret"),
                    "must be at least 16 characters (it signs every batch)",
                );
            }
        }
        let max_batch = match &w.max_batch {
            Some(m) if !(1..=10_000).contains(m.get_ref()) => {
                return src.err(m.span(), &field("max_batch"), "must be 1 to 10000");
            }
            Some(m) => *m.get_ref() as usize,
            None => 100,
        };
        let timeout = bounded_duration(
            src,
            &w.timeout,
            &field("timeout"),
            Duration::from_secs(10),
            300,
        )?;
        out.push(Settings {
            name,
            url,
            secret,
            max_batch,
            timeout,
        });
    }
    Ok(out)
}

/// `X-Overdued-Signature`: `sha256=` and the lowercase hex HMAC-SHA256 of
/// `"<timestamp>.<body>"` (the timestamp inside, so an old request cannot be
/// replayed with a new date).
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    let tag = m.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The spool folder of webhook `name`.
pub fn spool_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("webhooks").join(name)
}

fn batch_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.json"))
}

fn seq_of(p: &Path) -> Option<u64> {
    let name = p.file_name()?.to_str()?;
    let stem = name.strip_suffix(".json")?;
    (stem.len() == 16).then(|| stem.parse().ok()).flatten()
}

/// The batches in `dir`, in order.
pub fn spooled(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let p = e?.path();
                if let Some(s) = seq_of(&p) {
                    v.push((s, p));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    v.sort();
    Ok(v)
}

/// Writes batch `seq` (synced, with its folder): the body as it will be POSTed.
pub fn write_batch(
    dir: &Path,
    seq: u64,
    name: &str,
    transitions: &[serde_json::Value],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let body = serde_json::json!({
        "source": "overdued",
        "batch": format!("{name}-{seq}"),
        "transitions": transitions,
    });
    let bytes = serde_json::to_vec(&body).map_err(std::io::Error::other)?;
    crate::state::write_synced(&batch_file(dir, seq), &bytes)
}

/// Removes the batches at or after `seq`: written for a state that was never
/// saved (the source holds their transitions and gives them again).
pub fn drop_unsaved(dir: &Path, seq: u64) -> std::io::Result<usize> {
    let mut n = 0;
    for (s, p) in spooled(dir)? {
        if s >= seq {
            std::fs::remove_file(p)?;
            n += 1;
        }
    }
    Ok(n)
}

/// What the daemon's save releases: batches below this sequence may go.
#[derive(Default)]
pub struct Released {
    seq: Mutex<u64>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Released {
    /// Batches below `seq` are covered by a saved state.
    pub fn release(&self, seq: u64) {
        let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        if seq > *s {
            *s = seq;
            self.changed.notify_all();
        }
    }

    /// Asks the senders to stop (at their next wait).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _g = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The released sequence; waits up to `d` for a change or a stop.
    fn wait(&self, seen: u64, d: Duration) -> u64 {
        let g = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        if *g != seen || self.stopped() {
            return *g;
        }
        let (g, _) = self
            .changed
            .wait_timeout(g, d)
            .unwrap_or_else(|p| p.into_inner());
        *g
    }
}

/// Starts the sender thread of one webhook.
pub fn start_sender(
    s: Settings,
    dir: PathBuf,
    released: Arc<Released>,
    metrics: Metrics,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let poster = Poster::new(s.timeout).map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name(format!("webhook-{}", s.name))
        .spawn(move || send_loop(&s, &dir, &released, &poster, &metrics))
}

fn send_loop(s: &Settings, dir: &Path, released: &Released, poster: &Poster, m: &Metrics) {
    let mut seen = 0;
    let mut failures = 0u32;
    while !released.stopped() {
        seen = released.wait(seen, Duration::from_secs(1));
        let batches = match spooled(dir) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(webhook = %s.name, error = %e, "cannot read the webhook spool; will retry");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let ready: Vec<_> = batches.into_iter().filter(|(q, _)| *q < seen).collect();
        WebhookBacklog {
            webhook: &s.name,
            batches: ready.len(),
        }
        .emit(m);
        for (seq, path) in ready {
            if released.stopped() {
                return;
            }
            let body = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(webhook = %s.name, error = %e, file = %path.display(), "cannot read a spooled batch; will retry");
                    break;
                }
            };
            let ts = crate::time::now() / crate::time::SECOND;
            let batch = format!("{}-{seq}", s.name);
            let sig = s
                .secret
                .as_ref()
                .map(|k| signature(k, ts, &body))
                .unwrap_or_default();
            let ts_text = ts.to_string();
            let outcome = poster.post_json(
                &s.url,
                &body,
                &[
                    ("X-Overdued-Timestamp", &ts_text),
                    ("X-Overdued-Signature", &sig),
                    ("X-Overdued-Batch", &batch),
                ],
            );
            match outcome {
                Outcome::Accepted => {
                    failures = 0;
                    if let Err(e) = std::fs::remove_file(&path) {
                        // sent again after a restart: receivers dedupe by id
                        tracing::warn!(webhook = %s.name, error = %e, "cannot remove a delivered batch");
                    }
                    WebhookDelivered {
                        webhook: &s.name,
                        batch: &batch,
                    }
                    .emit(m);
                }
                Outcome::Retry(why) => {
                    let wait = backoff(failures, MAX_BACKOFF);
                    failures = failures.saturating_add(1);
                    WebhookRetry {
                        webhook: &s.name,
                        batch: &batch,
                        error: &why,
                        wait,
                    }
                    .emit(m);
                    // interruptible sleep: a stop ends it
                    let until = std::time::Instant::now() + wait;
                    while !released.stopped() && std::time::Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    break;
                }
                Outcome::Refused(why) => {
                    failures = 0;
                    let failed = dir.join("failed");
                    let moved = std::fs::create_dir_all(&failed).and_then(|_| {
                        std::fs::rename(&path, failed.join(path.file_name().unwrap_or_default()))
                    });
                    WebhookFailed {
                        webhook: &s.name,
                        batch: &batch,
                        error: &why,
                    }
                    .emit(m);
                    if let Err(e) = moved {
                        tracing::error!(webhook = %s.name, error = %e, "cannot move a refused batch to failed/; it will be sent again");
                        break;
                    }
                }
            }
        }
    }
}

/// The JSON of one transition in a batch: `id` is stable (the same
/// transition given again by the source has the same id).
pub fn transition_json(
    info: &crate::engine::view::AlertInfo,
    firing: bool,
    at: crate::time::Instant,
    level: &str,
) -> serde_json::Value {
    use crate::time::format_rfc3339 as f;
    let state = if firing { "firing" } else { "resolved" };
    let id = xxhash_rust::xxh3::xxh3_64(
        format!("{}\0{}\0{state}\0{at}", info.record_id, info.kind.as_str()).as_bytes(),
    );
    serde_json::json!({
        "id": format!("{id:016x}"),
        "at": f(at),
        "record_id": info.record_id,
        "kind": info.kind.as_str(),
        "state": state,
        "unit": info.unit,
        "level": level,
        "sector": info.sector,
        "procedure": info.procedure,
        "due_at": f(info.due),
        "received_at": f(info.received_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // the value Python's hmac.new(b"0123456789abcdef",
        // b"1700000000.{}", "sha256").hexdigest() gives
        let s = Secret::new("0123456789abcdef");
        assert_eq!(
            signature(&s, 1_700_000_000, b"{}"),
            "sha256=e4f8e2ecae2295b2ddb2f0b5584c8275e226c0ebe9b3b819e70156bb67122e3e"
        );
    }

    #[test]
    fn the_spool_keeps_order_and_drops_what_no_save_covers() {
        let dir = std::env::temp_dir().join(format!("overdued-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for seq in [3u64, 1, 2, 10] {
            write_batch(&dir, seq, "x", &[serde_json::json!({"n": seq})]).unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "not a batch").unwrap();
        let got: Vec<u64> = spooled(&dir).unwrap().into_iter().map(|b| b.0).collect();
        assert_eq!(got, [1, 2, 3, 10]);
        assert_eq!(drop_unsaved(&dir, 3).unwrap(), 2);
        let got: Vec<u64> = spooled(&dir).unwrap().into_iter().map(|b| b.0).collect();
        assert_eq!(got, [1, 2]);
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(batch_file(&dir, 2)).unwrap()).unwrap();
        assert_eq!(body["batch"], "x-2");
        assert_eq!(body["transitions"][0]["n"], 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
