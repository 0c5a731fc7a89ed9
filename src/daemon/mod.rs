//! `overdued run`: the live daemon (SPEC §6; issue 3).
//!
//! One consumer thread owns one [`Engine`] per assigned partition (all events of a
//! record share a partition: the key is the record id). It polls Kafka, applies
//! each event, dead-letters rejections (waiting for the broker's acknowledgement,
//! retrying, never committing past a message that is not safely somewhere), fires
//! timers on the wall clock every poll (≤ 100 ms), appends alert transitions to
//! the alerts file (same NDJSON as `replay --alerts`) and/or topic, and commits
//! offsets only after the file is flushed. An HTTP server runs beside it on tokio.
//!
//! What must survive a restart lives in `[state] dir`: `watermarks.json`, per
//! partition the offset up to which transitions were output and the wall-clock
//! instant up to which timers fired. On (re)assignment a partition is rebuilt from
//! the topic's beginning with output muted up to that offset, timers are then
//! advanced silently to that instant, and only what came due after it is output —
//! once, with its true fire time.

use crate::alert::Notifier;
use crate::config::{Config, DaemonConfig};
use crate::engine::{Engine, Outcome};
use crate::error::{Context, Error};
use crate::event::{decode, RejectReason};
use crate::metrics::Snapshot;
use crate::notify::outbox::Outbox;
use crate::notify::smtp::{Sender, SenderHandle, SenderMetrics};
use crate::replay::write_alert;
use crate::source::kafka::{self, RebalanceEvent};
use crate::time::Instant;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant};

/// State shared with the HTTP server.
pub struct Shared {
    /// Latest metrics snapshot.
    pub snapshot: Mutex<Snapshot>,
    /// Partitions assigned and caught up.
    pub ready: AtomicBool,
    /// Set by SIGTERM/SIGINT.
    pub shutdown: AtomicBool,
    /// Process metrics and histograms.
    pub registry: prometheus::Registry,
    /// Time to apply one event.
    pub apply_seconds: prometheus::Histogram,
    /// The engines, by partition (the API reads them between consumer rounds).
    pub parts: Mutex<HashMap<i32, Part>>,
    /// Set by SIGHUP: reload the configuration.
    pub reload: AtomicBool,
    /// Configuration reloads by result (`ok`, `refused`).
    pub reloads: prometheus::IntCounterVec,
    /// The e-mail stage's decisions (None without `[email]`); the API edits its
    /// silences.
    pub notifier: Mutex<Option<Notifier>>,
    /// `overdued_notifications_total`, send latency, outbox depth.
    pub mail_metrics: SenderMetrics,
    /// Bearer token of the mutating API endpoints.
    pub api_token: Option<crate::config::Secret>,
    /// Where silences made through the API are kept (`<state>/silences.json`).
    pub silences_file: std::path::PathBuf,
}

impl Shared {
    fn new(d: &DaemonConfig) -> Shared {
        let registry = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let apply_seconds = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "overdued_event_apply_seconds",
                "Time to decode and apply one event.",
            )
            .buckets(vec![1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2]),
        )
        .unwrap_or_else(|_| {
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
                "overdued_event_apply_seconds",
                "-",
            ))
            .expect("static histogram options")
        });
        let _ = registry.register(Box::new(apply_seconds.clone()));
        let reloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "overdued_config_reloads_total",
                "Configuration reloads (SIGHUP), by result.",
            ),
            &["result"],
        )
        .expect("static metric options");
        let _ = registry.register(Box::new(reloads.clone()));
        let mail_metrics = SenderMetrics::new(&registry)
            .or_else(|_| SenderMetrics::unregistered())
            .expect("static metric options");
        mail_metrics.notifications.with_label_values(&["silenced"]);
        Shared {
            notifier: Mutex::new(None),
            mail_metrics,
            api_token: d.api_token.clone(),
            silences_file: d.state_dir.join("silences.json"),
            snapshot: Mutex::new(Snapshot::default()),
            ready: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            registry,
            apply_seconds,
            parts: Mutex::new(HashMap::new()),
            reload: AtomicBool::new(false),
            reloads,
        }
    }
}

fn now_wall() -> Instant {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as i64
}

/// One applied event, as the record API shows it. Kept compact (the time as an
/// instant, formatted only when the API asks): it is built for every event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// `event_id`.
    pub event_id: Box<str>,
    /// Event type.
    pub r#type: &'static str,
    /// Event time.
    #[serde(serialize_with = "ser_instant")]
    pub at: Instant,
    /// Unit named by the event, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Box<str>>,
    /// Kafka offset.
    pub offset: i64,
    /// `ignored` reason, if the event was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<&'static str>,
}

fn ser_instant<S: serde::Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::format_rfc3339(*t))
}

/// Per-partition state.
pub struct Part {
    /// The partition's records.
    pub engine: Engine,
    /// Output is muted for offsets below this (already output by an earlier run).
    resume_from: i64,
    /// Timers are advanced silently up to this wall instant when caught up.
    silent_until: Instant,
    /// Next offset to process.
    next: i64,
    /// Waiting for a dead-letter write to be retried.
    blocked_until: Option<WallInstant>,
    backoff: Duration,
    /// The last applied events of each record, for the API (bounded per record).
    pub history: HashMap<Box<str>, std::collections::VecDeque<HistoryEntry>>,
    caught_up: bool,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Watermarks {
    /// partition → (next offset output, wall instant up to which timers fired)
    partitions: BTreeMap<i32, (i64, Instant)>,
    /// The notification state as of these watermarks (saved in the same atomic
    /// write, so after a crash the transitions seen again are exactly those it
    /// has not seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notifier: Option<serde_json::Value>,
    /// E-mails decided and stored in the outbox, not yet confirmed sent: what a
    /// restart must send (an outbox file not listed here was written by a run
    /// that crashed before saving its decision, and is decided again).
    #[serde(default)]
    outbox: std::collections::BTreeSet<String>,
}

fn load_watermarks(dir: &Path) -> Watermarks {
    std::fs::read_to_string(dir.join("watermarks.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn save_watermarks(dir: &Path, w: &Watermarks) -> std::io::Result<()> {
    let tmp = dir.join("watermarks.json.tmp");
    {
        let mut f = std::io::BufWriter::new(File::create(&tmp)?);
        serde_json::to_writer(&mut f, w).map_err(std::io::Error::other)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join("watermarks.json"))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The e-mail stage of a running daemon.
struct Mail {
    outbox: Outbox,
    sender: SenderHandle,
    /// Stored in the outbox, to submit once the decision is saved.
    to_submit: Vec<String>,
    /// `state.muted` already counted.
    muted_counted: u64,
}

/// Loads the silences made through the API.
pub fn load_silences(path: &Path) -> Vec<crate::alert::Silence> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s).unwrap_or_else(|e| {
            // keep the unreadable file for a human: the next change would overwrite it
            let aside = path.with_extension(format!("json.corrupt-{}", now_wall()));
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::error!(file = %path.display(), kept_as = %aside.display(), moved, error = %e, "cannot read silences; starting without them");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

/// Saves the API's silences atomically (temp file, fsync, rename).
pub fn save_silences(path: &Path, list: &[crate::alert::Silence]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(cfg: Config) -> Result<(), Error> {
    let d = cfg.daemon.clone();
    std::fs::create_dir_all(&d.state_dir).ctx(format!(
        "cannot create the state folder {}",
        d.state_dir.display()
    ))?;
    let shared = Arc::new(Shared::new(&d));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .ctx("cannot start the HTTP runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(d.http_listen))
        .ctx(format!("cannot listen on {}", d.http_listen))?;
    tracing::info!(listen = %d.http_listen, "HTTP server listening");
    let app = crate::api::router(shared.clone());
    let sh = shared.clone();
    rt.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                while !sh.shutdown.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
    });
    let sh = shared.clone();
    rt.spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutdown requested");
        sh.shutdown.store(true, Ordering::Relaxed);
    });
    let sh = shared.clone();
    rt.spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            sh.reload.store(true, Ordering::Relaxed);
        }
    });
    let result = consume(&cfg, &d, &shared);
    shared.shutdown.store(true, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

/// SIGHUP: validate everything first, then swap; a bad configuration is refused
/// and the running one stays. `[kafka]`, `[http]`, `[state]` and `[alerts]` need a
/// restart (a change there is logged, not applied).
fn reload(
    cfg: &mut Config,
    parts: &mut HashMap<i32, Part>,
    shared: &Shared,
    notifier: Option<&mut Notifier>,
) {
    match Config::load(&cfg.path) {
        Ok(new) => {
            if let Some(n) = notifier {
                n.reconfigure(new.email.settings.clone(), new.email.silences.clone());
            }
            if format!("{:?}", new.email.smtp) != format!("{:?}", cfg.email.smtp) {
                tracing::warn!("the SMTP settings changed: they take effect at the next restart");
            }
            if format!("{:?}", new.daemon) != format!("{:?}", cfg.daemon) {
                tracing::warn!("[kafka], [http], [state] or [alerts] changed: they take effect at the next restart");
            }
            for part in parts.values_mut() {
                part.engine.reconfigure(&new);
            }
            let daemon = cfg.daemon.clone();
            *cfg = new;
            cfg.daemon = daemon;
            shared.reloads.with_label_values(&["ok"]).inc();
            tracing::info!(
                units = cfg.directory.units.len(),
                procedures = cfg.directory.procedures.len(),
                "configuration reloaded"
            );
        }
        Err(e) => {
            shared.reloads.with_label_values(&["refused"]).inc();
            tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
        }
    }
}

fn consume(cfg: &Config, d: &DaemonConfig, shared: &Shared) -> Result<(), Error> {
    let mut cfg = cfg.clone();
    let cfg = &mut cfg;
    let kafka_err = |what: &str, e: rdkafka::error::KafkaError| Error::Io {
        what: what.to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let applied: Arc<Mutex<HashMap<i32, i64>>> = Default::default();
    let consumer =
        kafka::consumer(&d.kafka, applied.clone()).map_err(|e| kafka_err("kafka consumer", e))?;
    let producer = kafka::producer(&d.kafka).map_err(|e| kafka_err("kafka producer", e))?;
    let mut alerts_file = match &d.alerts_file {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ctx(format!("cannot open {}", p.display()))?,
        ),
        None => None,
    };
    let mut marks = load_watermarks(&d.state_dir);
    let mut mail = if cfg.email.enabled {
        let (outbox, report) = Outbox::open(&d.state_dir).map_err(|e| Error::Io {
            what: "opening the e-mail outbox".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        tracing::info!(report = ?report, "outbox opened");
        // an outbox entry the saved state does not list was decided by a run
        // that crashed before saving: it will be decided again, not sent twice
        let orphans = outbox
            .remove_orphans(&marks.outbox.iter().cloned().collect())
            .map_err(|e| Error::Io {
                what: "cleaning the e-mail outbox".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        if orphans > 0 {
            tracing::info!(orphans, "outbox entries of an unsaved decision removed");
        }
        // ids no longer in the outbox were sent (or failed) before the crash
        marks.outbox.retain(|id| outbox.contains(id));
        let sender = Sender::start(
            cfg.email.smtp.clone(),
            outbox.clone(),
            shared.mail_metrics.clone(),
        )
        .map_err(|e| Error::Io {
            what: "starting the SMTP sender".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut state: crate::alert::State = marks
            .notifier
            .take()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        state.silences = load_silences(&shared.silences_file);
        if state.instance.is_empty() {
            // a fresh state: its own Message-ID space
            let seed = format!(
                "{}-{}-{}",
                now_wall(),
                std::process::id(),
                d.state_dir.display()
            );
            state.instance = format!("{:08x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) as u32);
        }
        let muted = state.muted;
        let mut n = Notifier::with_state(
            cfg.email.settings.clone(),
            cfg.email.silences.clone(),
            state,
        );
        // what came due while the daemon was down is grouped from now on
        n.schedule_floor = now_wall();
        *shared.notifier.lock().unwrap_or_else(|p| p.into_inner()) = Some(n);
        tracing::info!(smtp = %cfg.email.smtp.url, "e-mail enabled");
        Some(Mail {
            outbox,
            sender,
            to_submit: Vec::new(),
            muted_counted: muted,
        })
    } else {
        None
    };
    let mut out: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut last_flush = WallInstant::now();
    let mut last_metrics = WallInstant::now() - Duration::from_secs(10);
    let topic = d.kafka.topic.clone();
    let mut decoder_rejected = [0u64; 10];
    tracing::info!(topic = %topic, group = %d.kafka.group_id, "consuming");

    // A message polled ahead (each message is handled after the poll that follows
    // it, so that a rebalance seen in that poll is applied first). It must survive
    // the end of a round: dropping it would skip an event for good.
    let mut carried = None;
    while !shared.shutdown.load(Ordering::Relaxed) {
        // The HTTP API reads the engines between rounds (a round is ≤ 100 ms of polling).
        // Wait for a message without holding the engines (the API reads them then);
        // the round that follows holds them: up to 1000 messages, timers, housekeeping.
        let mut next_msg = match carried.take() {
            Some(m) => Some(m),
            None => consumer.poll(Duration::from_millis(100)),
        };
        let mut guard = shared.parts.lock().unwrap_or_else(|p| p.into_inner());
        let parts = &mut *guard;
        let mut nguard = shared.notifier.lock().unwrap_or_else(|p| p.into_inner());
        if shared.reload.swap(false, Ordering::Relaxed) {
            reload(cfg, parts, shared, nguard.as_mut());
        }
        let mut polled = 0;
        while polled < 1000 {
            let Some(m) = next_msg.take() else {
                break;
            };
            next_msg = consumer.poll(Duration::ZERO);
            for ev in consumer.context().take_events() {
                on_rebalance(cfg, ev, parts, &marks, &applied, nguard.as_mut());
            }
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    // e.g. a partition EOF or a transient broker error; the message
                    // already polled next is still handled
                    tracing::warn!(error = %e, "kafka poll error");
                    continue;
                }
            };
            polled += 1;
            let p = m.partition();
            let offset = m.offset();
            let Some(part) = parts.get_mut(&p) else {
                continue;
            };
            if offset < part.next || part.blocked_until.is_some() {
                // a redelivery of something already applied, or the partition waits
                // for a dead letter (it is rewound when it resumes)
                continue;
            }
            let muted = offset < part.resume_from;
            if !muted {
                catch_up(p, part, &applied, nguard.as_mut(), cfg);
            }
            let payload = m.payload().unwrap_or(&[]);
            let t0 = WallInstant::now();
            let rejection = match decode(payload) {
                Err(r) => {
                    decoder_rejected[r.reason.index()] += 1;
                    Some(r)
                }
                Ok(ev) => {
                    let outcome = part.engine.apply(&ev);
                    if d.record_history > 0 && !matches!(outcome, Outcome::Rejected(_)) {
                        let entry = HistoryEntry {
                            event_id: ev.event_id.as_ref().into(),
                            r#type: ev.kind.as_str(),
                            at: ev.at,
                            unit: ev.unit.as_deref().map(Into::into),
                            offset,
                            ignored: match &outcome {
                                Outcome::Ignored(r) => Some(r.as_str()),
                                _ => None,
                            },
                        };
                        // look up before inserting: no key allocation for a known record
                        let h = match part.history.get_mut(ev.record_id.as_ref()) {
                            Some(h) => h,
                            None => part
                                .history
                                .entry(ev.record_id.as_ref().into())
                                .or_default(),
                        };
                        if h.len() >= d.record_history {
                            h.pop_front();
                        }
                        h.push_back(entry);
                    }
                    match outcome {
                        Outcome::Rejected(r) => Some(r),
                        _ => None,
                    }
                }
            };
            shared.apply_seconds.observe(t0.elapsed().as_secs_f64());
            if let Some(r) = rejection {
                if r.reason != RejectReason::TooLarge || !muted {
                    tracing::warn!(partition = p, offset, reason = r.reason.as_str(), detail = %r.detail, "rejected event");
                }
                if !muted {
                    let headers =
                        kafka::dead_letter_headers(r.reason.as_str(), &r.detail, &topic, p, offset);
                    // Nothing is lost: until the broker takes it, the partition waits
                    // (paused, rewound to this message, retried with backoff) and
                    // nothing past it is committed; other partitions and the timers
                    // go on.
                    match kafka::send_sync(
                        &producer,
                        &d.kafka.dead_letter_topic,
                        m.key(),
                        payload,
                        Some(headers),
                    ) {
                        Ok(()) => part.backoff = Duration::from_millis(100),
                        Err(e) => {
                            tracing::error!(error = %e, partition = p, offset, "dead-letter write failed; retrying");
                            part.blocked_until = Some(WallInstant::now() + part.backoff);
                            part.backoff = (part.backoff * 2).min(Duration::from_secs(5));
                            let mut tpl = TopicPartitionList::new();
                            tpl.add_partition(&topic, p);
                            if let Err(e) = consumer.pause(&tpl) {
                                tracing::warn!(error = %e, "cannot pause the partition");
                            }
                            continue;
                        }
                    }
                }
            }
            drain(
                &mut part.engine,
                p,
                muted,
                &mut out,
                d,
                &producer,
                nguard.as_mut(),
                cfg,
            );
            part.next = offset + 1;
            if !muted {
                applied
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(p, part.next);
            }
        }
        carried = next_msg;
        for ev in consumer.context().take_events() {
            on_rebalance(cfg, ev, parts, &marks, &applied, nguard.as_mut());
        }
        // Partitions waiting for a dead letter: rewind and resume when it is time.
        for (&p, part) in parts.iter_mut() {
            if part.blocked_until.is_some_and(|t| t <= WallInstant::now()) {
                part.blocked_until = None;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&topic, p);
                if let Err(e) =
                    consumer.seek(&topic, p, Offset::Offset(part.next), Duration::from_secs(5))
                {
                    tracing::warn!(error = %e, partition = p, "cannot rewind the partition");
                }
                if let Err(e) = consumer.resume(&tpl) {
                    tracing::warn!(error = %e, "cannot resume the partition");
                }
            }
        }
        // Wall-clock timers.
        let now = now_wall();
        for (&p, part) in parts.iter_mut() {
            if part.next >= part.resume_from {
                catch_up(p, part, &applied, nguard.as_mut(), cfg);
            }
            if part.caught_up {
                part.engine.advance(now);
                drain(
                    &mut part.engine,
                    p,
                    false,
                    &mut out,
                    d,
                    &producer,
                    nguard.as_mut(),
                    cfg,
                );
            }
        }
        // The notifier's clock moves only once every assigned partition is rebuilt
        // and its firing alerts adopted: after a restart, an earlier advance would
        // drop what the saved state lists as not yet told (its alerts not known
        // yet), count escalations that came due while down as already sent, and
        // send the digest without the adopted alerts.
        let ready = !parts.is_empty() && parts.values().all(|p| p.caught_up);
        if let (Some(n), Some(m), true) = (nguard.as_mut(), mail.as_mut(), ready) {
            decide_emails(n, m, cfg, now, &mut marks, shared);
        }
        drop(nguard);
        consumer.context().fired_until.store(now, Ordering::Relaxed);
        shared.ready.store(ready, Ordering::Relaxed);
        let new_mail = mail.as_ref().is_some_and(|m| !m.to_submit.is_empty());
        if !out.is_empty() || new_mail || last_flush.elapsed() >= Duration::from_secs(1) {
            flush_and_commit(
                &consumer,
                parts,
                &applied,
                &mut marks,
                d,
                &mut alerts_file,
                &mut out,
                now,
                &topic,
                shared,
                mail.as_mut(),
            )?;
            last_flush = WallInstant::now();
        }
        if last_metrics.elapsed() >= Duration::from_secs(1) {
            let mut snap = Snapshot {
                rejected: decoder_rejected,
                ..Default::default()
            };
            // forget the history of records the engine no longer holds
            for part in parts.values_mut() {
                if part.history.len() > part.engine.held_records() {
                    let e = &part.engine;
                    part.history.retain(|id, _| e.find(id).is_some());
                }
            }
            let high = consumer
                .context()
                .high
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for (&p, part) in parts.iter() {
                snap.add_engine(&part.engine);
                if let Some(&h) = high.get(&p) {
                    snap.lag.insert(p, (h - part.next).max(0));
                }
            }
            *shared.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snap;
            last_metrics = WallInstant::now();
        }
    }
    let mut guard = shared.parts.lock().unwrap_or_else(|p| p.into_inner());
    let r = finish(
        &consumer,
        &producer,
        &mut guard,
        &applied,
        &mut marks,
        d,
        &mut alerts_file,
        &mut out,
        shared,
        mail.as_mut(),
    );
    if let Some(m) = mail.as_mut() {
        if !m.sender.shutdown(Duration::from_secs(5)) {
            tracing::warn!(
                "the SMTP sender did not stop in time; unsent e-mails stay in the outbox"
            );
        }
    }
    r
}

/// Renders what the notifier decided up to `now` into the outbox; the ids are
/// submitted for sending only after the decision is saved (flush_and_commit).
fn decide_emails(
    n: &mut Notifier,
    m: &mut Mail,
    cfg: &Config,
    now: Instant,
    marks: &mut Watermarks,
    shared: &Shared,
) {
    for o in n.advance(now, &cfg.calendar, &cfg.directory) {
        match crate::notify::render::render(cfg, &o) {
            Ok(email) => match m.outbox.put(&email) {
                Ok(_) => {
                    tracing::info!(id = %email.id, to = ?email.to, items = o.items.len(), "e-mail decided");
                    marks.outbox.insert(email.id.clone());
                    m.to_submit.push(email.id);
                }
                Err(e) => {
                    // the decision is lost with this e-mail: count and log it loudly
                    tracing::error!(id = %email.id, error = %e, "cannot store an e-mail in the outbox");
                    shared
                        .mail_metrics
                        .notifications
                        .with_label_values(&["failed"])
                        .inc();
                }
            },
            Err(e) => {
                tracing::error!(recipient = %o.recipient, error = %e, "cannot render an e-mail");
                shared
                    .mail_metrics
                    .notifications
                    .with_label_values(&["failed"])
                    .inc();
            }
        }
    }
    let muted = n.state.muted;
    if muted > m.muted_counted {
        shared
            .mail_metrics
            .notifications
            .with_label_values(&["silenced"])
            .inc_by(muted - m.muted_counted);
        m.muted_counted = muted;
    }
}

/// Once a rebuilt partition reaches its resume point: fire silently what the
/// previous run already output (timers up to its last wall instant), then go live.
fn catch_up(
    p: i32,
    part: &mut Part,
    applied: &Mutex<HashMap<i32, i64>>,
    notifier: Option<&mut Notifier>,
    cfg: &Config,
) {
    if part.caught_up {
        return;
    }
    part.engine.advance(part.silent_until);
    part.engine.transitions.clear();
    part.caught_up = true;
    // alerts already firing (told by this process before a restart, or by the
    // partition's previous owner): known for digests and resolutions, not
    // announced again
    if let Some(n) = notifier {
        let e = &part.engine;
        let (firing, _) = e.firing_alerts(0, usize::MAX, |_, _| true);
        let at = if part.silent_until == i64::MIN {
            e.clock()
        } else {
            part.silent_until
        };
        for (slot, kind) in firing {
            let t = crate::engine::Transition {
                at,
                slot,
                kind,
                firing: true,
                unit: e.record(slot).holder,
                from: u32::MAX,
            };
            let mut info = e.alert_info(&t);
            info.partition = Some(p);
            if kind == crate::engine::AlertKind::Overdue {
                // its true fire time is known: the due time
                info.fired_at = info.due.min(at);
            }
            n.adopt(info, &cfg.directory);
        }
    }
    applied
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(p, part.next);
    tracing::info!(partition = p, offset = part.next, "partition caught up");
}

fn on_rebalance(
    cfg: &Config,
    ev: RebalanceEvent,
    parts: &mut HashMap<i32, Part>,
    marks: &Watermarks,
    applied: &Mutex<HashMap<i32, i64>>,
    mut notifier: Option<&mut Notifier>,
) {
    match ev {
        RebalanceEvent::Assigned(list) => {
            for (p, committed, committed_wall) in list {
                let (saved_offset, saved_wall) =
                    marks.partitions.get(&p).copied().unwrap_or((0, i64::MIN));
                let resume_from = committed.max(saved_offset);
                // the previous owner (this process or another) fired timers up to here
                let saved_wall = saved_wall.max(committed_wall.unwrap_or(i64::MIN));
                parts.insert(
                    p,
                    Part {
                        history: HashMap::new(),
                        blocked_until: None,
                        backoff: Duration::from_millis(100),
                        engine: Engine::new(cfg),
                        resume_from,
                        silent_until: saved_wall,
                        next: 0,
                        caught_up: false,
                    },
                );
                applied.lock().unwrap_or_else(|p| p.into_inner()).remove(&p);
            }
        }
        RebalanceEvent::Revoked(list) => {
            for p in list {
                parts.remove(&p);
                applied.lock().unwrap_or_else(|p| p.into_inner()).remove(&p);
                // the new owner adopts these alerts
                if let Some(n) = notifier.as_deref_mut() {
                    n.forget(|i| i.partition != Some(p));
                }
            }
        }
    }
}

/// Moves the engine's transitions to the output buffer (or drops them when muted).
#[allow(clippy::too_many_arguments)]
fn drain(
    engine: &mut Engine,
    partition: i32,
    muted: bool,
    out: &mut Vec<u8>,
    d: &DaemonConfig,
    producer: &rdkafka::producer::BaseProducer<kafka::Deliveries>,
    mut notifier: Option<&mut Notifier>,
    cfg: &Config,
) {
    if engine.transitions.is_empty() {
        return;
    }
    let ts = std::mem::take(&mut engine.transitions);
    if !muted {
        for t in &ts {
            if let Some(n) = notifier.as_deref_mut() {
                if t.firing {
                    let mut info = engine.alert_info(t);
                    info.partition = Some(partition);
                    n.fire(info, &cfg.directory);
                } else {
                    n.resolve(t.kind, engine.record_id(t.slot), t.at);
                }
            }
            let start = out.len();
            write_alert(out, engine, t);
            tracing::info!(
                record_id = engine.record_id(t.slot),
                kind = t.kind.as_str(),
                state = if t.firing { "firing" } else { "resolved" },
                unit = engine.unit_code(t.unit),
                "alert"
            );
            if let Some(topic) = &d.alerts_topic {
                let line = &out[start..out.len() - 1];
                let rec = rdkafka::producer::BaseRecord::<[u8], [u8]>::to(topic)
                    .key(engine.record_id(t.slot).as_bytes())
                    .payload(line);
                if let Err((e, _)) = producer.send(rec) {
                    tracing::error!(error = %e, "cannot queue an alert for the alerts topic");
                }
            }
        }
    }
    let mut ts = ts;
    ts.clear();
    engine.transitions = ts;
}

#[allow(clippy::too_many_arguments)]
fn flush_and_commit(
    consumer: &rdkafka::consumer::BaseConsumer<kafka::Ctx>,
    parts: &mut HashMap<i32, Part>,
    applied: &Mutex<HashMap<i32, i64>>,
    marks: &mut Watermarks,
    d: &DaemonConfig,
    file: &mut Option<File>,
    out: &mut Vec<u8>,
    now: Instant,
    topic: &str,
    shared: &Shared,
    mail: Option<&mut Mail>,
) -> Result<(), Error> {
    if let Some(f) = file.as_mut() {
        if !out.is_empty() {
            f.write_all(out).ctx("writing alerts")?;
            f.sync_data().ctx("syncing alerts")?;
        }
    }
    out.clear();
    let applied = applied.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut tpl = TopicPartitionList::new();
    for (&p, part) in parts.iter() {
        if part.caught_up {
            marks.partitions.insert(p, (part.next, now));
        }
        if let Some(&o) = applied.get(&p) {
            let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
            // hand-over: the next owner fires silently what this one fired
            if part.caught_up {
                if let Some(mut e) = tpl.find_partition(topic, p) {
                    e.set_metadata(format!("fired-until={now}"));
                }
            }
        }
    }
    if let Some(m) = mail.as_ref() {
        for id in m
            .sender
            .take_sent()
            .into_iter()
            .chain(m.sender.take_failed())
        {
            marks.outbox.remove(&id);
        }
    }
    marks.notifier = shared
        .notifier
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|n| serde_json::to_value(&n.state).ok());
    let saved = save_watermarks(&d.state_dir, marks);
    marks.notifier = None;
    match saved {
        Err(e) => tracing::error!(error = %e, "cannot save watermarks"),
        Ok(()) => {
            // only now may the decided e-mails go: a crash before the save
            // decides them again instead of sending them twice
            if let Some(m) = mail {
                for id in m.to_submit.drain(..) {
                    m.sender.submit(id);
                }
            }
        }
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "commit failed");
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn finish(
    consumer: &rdkafka::consumer::BaseConsumer<kafka::Ctx>,
    producer: &rdkafka::producer::BaseProducer<kafka::Deliveries>,
    parts: &mut HashMap<i32, Part>,
    applied: &Mutex<HashMap<i32, i64>>,
    marks: &mut Watermarks,
    d: &DaemonConfig,
    file: &mut Option<File>,
    out: &mut Vec<u8>,
    shared: &Shared,
    mail: Option<&mut Mail>,
) -> Result<(), Error> {
    use rdkafka::producer::Producer;
    let _ = producer.flush(Duration::from_secs(10));
    flush_and_commit(
        consumer,
        parts,
        applied,
        marks,
        d,
        file,
        out,
        now_wall(),
        &d.kafka.topic,
        shared,
        mail,
    )?;
    let applied = applied.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in &applied {
        let _ = tpl.add_partition_offset(&d.kafka.topic, p, Offset::Offset(o));
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, "final commit failed");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
