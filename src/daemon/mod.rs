//! `overdued run`: the live daemon (docs/spec.md §9), the wiring of the stages.
//!
//! One consumer thread ([`consumer`]) owns one [`Engine`](crate::engine::Engine)
//! per assigned partition ([`partition`]; all events of a record share a
//! partition: the key is the record id). It polls Kafka, applies each event,
//! dead-letters rejections, fires timers on the wall clock every poll (≤ 100 ms),
//! appends alert transitions to the alerts file and/or topic, lets the e-mail
//! stage decide ([`mail`]), and commits offsets only after the file is synced. An
//! HTTP server ([`crate::api`]) runs beside it on tokio, handed an
//! [`ApiState`]; SIGHUP reloads the configuration ([`reload`]).
//!
//! What must survive a restart lives in `[state] dir` ([`crate::state`]):
//! per partition the offset up to which transitions were output and the
//! wall-clock instant up to which timers fired. On (re)assignment a partition is
//! rebuilt from the topic's beginning with output muted up to that offset,
//! timers are then advanced silently to that instant, and only what came due
//! after it is output — once, with its true fire time.
//!
//! The daemon never imports the configuration loader: the `run` command hands it
//! its [`Settings`] and a [`Reload`] that loads them again.

mod consumer;
mod error;
mod forward;
mod mail;
mod notify_group;
mod partition;
mod reload;
pub mod settings;

use crate::api::ApiState;
use crate::metrics::{Metrics, Snapshot};

use error::Context;
pub use error::Error;
use partition::Parts;
pub use settings::{DaemonConfig, Reload, Settings};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the consumer thread, the HTTP server and the signal handlers share.
struct Shared {
    /// What the API reads and edits.
    api: Arc<ApiState>,
    /// The engines, by partition (also behind `api.partitions`).
    parts: Arc<Parts>,
    /// Set by SIGTERM/SIGINT.
    shutdown: AtomicBool,
    /// Set by SIGHUP: reload the configuration.
    reload: AtomicBool,
    /// The settings of the last accepted reload, for the notifier group's
    /// thread to take.
    reloaded: Mutex<Option<Settings>>,
    /// The process's own metrics (also behind `api`).
    metrics: Metrics,
}

impl Shared {
    fn new(d: &DaemonConfig) -> Shared {
        let metrics = Metrics::new();
        let parts = Arc::new(Parts::default());
        Shared {
            api: Arc::new(ApiState {
                partitions: parts.clone(),
                snapshot: Mutex::new(Snapshot::default()),
                metrics: metrics.clone(),
                ready: AtomicBool::new(false),
                blocked: Default::default(),
                stalled: Default::default(),
                source_silent: Default::default(),
                notifier: Mutex::new(None),
                api_token: d.api_token.clone(),
                silences_file: d.state_dir.join("silences.json"),
                acks_file: Some(d.state_dir.join("acknowledgements.json")),
                links: d.links.clone(),
                ui: Default::default(),
                as_of: None,
            }),
            parts,
            metrics,
            shutdown: AtomicBool::new(false),
            reload: AtomicBool::new(false),
            reloaded: Mutex::new(None),
        }
    }
}

impl Shared {
    /// What the pages need of the settings (at start and on reload).
    fn set_ui(&self, s: &Settings) {
        let ctx = crate::api::ui::UiContext {
            calendar: s.engine.calendar.clone(),
            directory: s.engine.directory.clone(),
            lang: s.email.delivery.language.clone(),
            report: s.report.clone(),
        };
        *self.api.ui.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ctx));
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(settings: Settings, reload: Reload) -> Result<(), Error> {
    let d = settings.daemon.clone();
    std::fs::create_dir_all(&d.state_dir).ctx(format!(
        "cannot create the state folder {}",
        d.state_dir.display()
    ))?;
    let shared = Arc::new(Shared::new(&d));
    shared.set_ui(&settings);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .ctx("cannot start the HTTP runtime")?;
    rt.block_on(crate::source::kafka::retention::check(&d.kafka))?;
    if d.kafka.snapshot_interval > 0 {
        rt.block_on(crate::source::kafka::state_topic::ensure(&d.kafka))?;
    }
    if let Some(k) = d.kafka.notify_side() {
        rt.block_on(crate::source::kafka::notify_topic::ensure(&d.kafka))?;
        rt.block_on(crate::source::kafka::state_topic::ensure(&k))?;
    }
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(d.http_listen))
        .ctx(format!("cannot listen on {}", d.http_listen))?;
    tracing::info!(listen = %d.http_listen, "HTTP server listening");
    let app = crate::api::router(shared.api.clone());
    let sh = shared.clone();
    rt.spawn(async move {
        let stop = async move {
            while !sh.shutdown.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        crate::api::serve(listener, app, crate::api::Limits::default(), stop).await;
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
    let notify = notify_group::start(&settings, shared.clone());
    let result = notify.and_then(|notify| {
        let r = consumer::Consumer::new(settings, reload, &shared)
            .and_then(|(state, kc)| state.run(&kc));
        shared.shutdown.store(true, Ordering::Relaxed);
        if let Some(h) = notify {
            let _ = h.join();
        }
        r
    });
    shared.shutdown.store(true, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}
