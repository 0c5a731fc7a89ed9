//! `overdued demo --serve`: the demo's year-end state, kept in memory and served
//! like a running daemon serves it — the unit pages, the API and `/metrics` —
//! with no service at all. "Now" is the year's end for the pages and the links;
//! acknowledgements made there live as long as the process.

use crate::cli::error::{Context, Error};
use overdued::alert::Notifier;
use overdued::api::{ApiState, History, HistoryEntry, Partitions};
use overdued::config::Config;
use overdued::engine::Engine;
use overdued::link::Links;
use overdued::metrics::{Metrics, Snapshot};
use overdued::time::Instant;
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// What `demo --serve` hands over.
pub struct Served<'a> {
    /// Where to listen.
    pub addr: std::net::SocketAddr,
    /// The demo's configuration.
    pub cfg: &'a Config,
    /// The engine at the year's end.
    pub engine: Engine,
    /// The notifier at the year's end.
    pub notifier: Notifier,
    /// The run's page links.
    pub links: Links,
    /// The year's end.
    pub as_of: Instant,
    /// The demo's events (record pages show each alerting record's events).
    pub events: &'a Path,
}

/// One engine, read-only.
struct One {
    engine: Engine,
    history: History,
}

impl Partitions for One {
    fn each(&self, f: &mut dyn FnMut(i32, &Engine, &History) -> ControlFlow<()>) {
        let _ = f(0, &self.engine, &self.history);
    }
}

/// A fresh secret for this run: 32 bytes of the kernel's randomness, as hex.
pub fn draw_secret() -> String {
    let mut b = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    });
    if read.is_err() {
        // no /dev/urandom: time and process id (a demo on loopback)
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let h = xxhash_rust::xxh3::xxh3_128(seed.as_bytes()).to_le_bytes();
        b[..16].copy_from_slice(&h);
        b[16..].copy_from_slice(&h);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The events of the records that still alert, for their pages.
fn history_of(path: &Path, keep: &HashSet<String>) -> Result<History, Error> {
    let f = std::fs::File::open(path).ctx(path.display().to_string())?;
    let mut h = History::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.ctx(path.display().to_string())?;
        let Ok(ev) = overdued::event::decode(line.as_bytes()) else {
            continue;
        };
        if !keep.contains(ev.record_id.as_ref()) {
            continue;
        }
        let e = h.entry(ev.record_id.as_ref().into()).or_default();
        if e.len() >= 64 {
            e.pop_front();
        }
        e.push_back(HistoryEntry {
            event_id: ev.event_id.as_ref().into(),
            r#type: ev.kind.as_str(),
            at: ev.at,
            unit: ev.unit.as_deref().map(Into::into),
            offset: n as i64,
            ignored: None,
        });
    }
    Ok(h)
}

/// Serves until Ctrl-C.
pub fn serve(s: Served<'_>) -> Result<(), Error> {
    let keep: HashSet<String> = s.notifier.alerts().map(|i| i.record_id.clone()).collect();
    let history = history_of(s.events, &keep)?;
    let mut snap = Snapshot {
        units: Arc::new(overdued::metrics::UnitInfo::of_directory(
            &s.cfg.engine.directory,
            s.cfg.report.area_level.as_deref(),
        )),
        late_threshold: Some(s.cfg.report.late_threshold_percent / 100.0),
        ..Snapshot::default()
    };
    snap.add_engine(&s.engine);
    // the unit with the most open alerts: the head link printed
    let mut per_unit: std::collections::HashMap<&str, usize> = Default::default();
    for i in s.notifier.alerts() {
        *per_unit.entry(i.unit.as_str()).or_default() += 1;
    }
    let busiest = per_unit
        .iter()
        .filter(|(u, _)| s.cfg.engine.directory.unit_id(u).is_some())
        .max_by_key(|(u, n)| (**n, std::cmp::Reverse(**u)))
        .map(|(u, _)| u.to_string());
    let state = Arc::new(ApiState {
        partitions: Arc::new(One {
            engine: s.engine,
            history,
        }),
        snapshot: Mutex::new(snap),
        metrics: Metrics::new(),
        ready: AtomicBool::new(true),
        blocked: Default::default(),
        stalled: Default::default(),
        source_silent: Default::default(),
        notifier: Mutex::new(Some(s.notifier)),
        api_token: None,
        silences_file: std::env::temp_dir().join("overdued-demo-silences.json"),
        acks_file: None,
        links: Some(s.links.clone()),
        ui: std::sync::RwLock::new(Some(Arc::new(overdued::api::ui::UiContext {
            calendar: s.cfg.engine.calendar.clone(),
            directory: s.cfg.engine.directory.clone(),
            lang: s.cfg.email.delivery.language.clone(),
            report: s.cfg.report.clone(),
        }))),
        as_of: Some(s.as_of),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .ctx("cannot start the HTTP runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(s.addr))
        .ctx(format!("cannot listen on {}", s.addr))?;
    {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(
            o,
            "\nserving the year's end on http://{} (Ctrl-C stops):",
            s.addr
        );
        let _ = writeln!(o, "  province page: {}", s.links.province_url(s.as_of));
        if let Some(u) = busiest {
            let _ = writeln!(o, "  unit head ({u}): {}", s.links.unit_url(&u, s.as_of));
        }
        let _ = writeln!(
            o,
            "  API: http://{0}/api/v1/alerts   metrics: http://{0}/metrics",
            s.addr
        );
        let _ = o.flush();
    }
    let app = overdued::api::router(state);
    rt.block_on(async move {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        overdued::api::serve(listener, app, overdued::api::Limits::default(), stop).await;
    });
    Ok(())
}
