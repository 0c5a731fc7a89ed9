//! `overdued bench-kafka`: the end-to-end benchmark — events
//! from a real broker through the real daemon (`overdued run`, a child process).
//!
//! Four measurements against the broker at `--brokers` (the broker's own CPU
//! time is reported too when its pid is given, because on the development
//! machine broker, daemon and this process share two cores):
//! 1. **backlog** — a fresh topic of `--partitions` partitions is filled with
//!    `--events` events (half `received`, then the mixed workload of
//!    `overdued bench`: advanced, forwarded, paused/resumed, extended, resolved,
//!    new receipts; keyed by record id; event times over the last hour, so that
//!    almost no timer is due), produced *before* the daemon starts and outside
//!    every timing;
//! 2. **join** — daemon start → first event applied (the consumer-group join,
//!    ~20–25 s on Tansu);
//! 3. **catch-up** — first event applied → every backlog event applied; the
//!    daemon's `overdued_event_apply_seconds_count` (observed once per decoded
//!    message, so a live message count) is read from `/metrics` every 20 ms;
//!    events/s = events applied in that window / its length;
//! 4. **alert latency** — `--timers` new records whose `due_at` all fall in one
//!    wall-clock second a few seconds ahead (spread evenly over `--spread-ms`
//!    of it; 0 = the very same instant) are produced and consumed; this
//!    process tails the daemon's alerts file (every 1 ms, stamping each read)
//!    and reports, per `overdue` firing line, read time − the line's `at` (the
//!    deadline instant): p50, p99, max. The daemon fsyncs right after the write
//!    that makes a line readable, so the figure is "written", not "synced".
//!
//! Then, in this process, for scale: the same backlog through one [`Engine`]
//! alone (no Kafka), and the time the daemon's once-a-second metrics pass
//! ([`Snapshot::add_engine`] over every partition's engine) takes with
//! `--gauge-open` open records spread over `--partitions` engines.

use crate::cli::bench::{Gen, Rng};
use overdued::config::Config;
use overdued::engine::Engine;
use overdued::event::decode;
use overdued::metrics::Snapshot;
use overdued::source::kafka::Deliveries;
use overdued::time::{parse_rfc3339, write_rfc3339_offset, Instant, SECOND};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant as WallInstant};

/// What can stop the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchKafkaError {
    /// The broker refused or did not answer.
    #[error("kafka: {0}")]
    Kafka(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration written for the daemon did not load.
    #[error("configuration: {0}")]
    Config(#[from] crate::cli::error::Error),
    /// The daemon exited or did not get there in time.
    #[error("daemon: {0}")]
    Daemon(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchKafkaError {
    let what = what.into();
    move |source| BenchKafkaError::Io { what, source }
}

fn kafka(what: &str) -> impl FnOnce(KafkaError) -> BenchKafkaError + '_ {
    move |e| BenchKafkaError::Kafka(format!("{what}: {e}"))
}

/// Options.
#[derive(Debug, Clone)]
pub struct BenchKafkaOptions {
    /// Bootstrap servers.
    pub brokers: String,
    /// The broker's pid, to report its CPU time (optional).
    pub broker_pid: Option<u32>,
    /// The `overdued` executable to run as the daemon.
    pub exe: PathBuf,
    /// Working folder (configuration, state, alerts file, daemon log).
    pub dir: PathBuf,
    /// Partitions of the events topic.
    pub partitions: i32,
    /// Backlog events.
    pub events: u64,
    /// Records whose deadlines fall in the same second.
    pub timers: u64,
    /// Over how much of that second they are spread (ms; 0 = one instant).
    pub spread_ms: u64,
    /// Open records for the metrics-pass measurement (0 = skip).
    pub gauge_open: u64,
    /// Extra librdkafka properties for the daemon's `[kafka.properties]`.
    pub properties: Vec<(String, String)>,
    /// Seed.
    pub seed: u64,
    /// Also time a restart after `kill -9` (snapshots every 2 s).
    pub restart: bool,
    /// `[kafka] assignment` for the daemon (`None`: its default, a group).
    pub assignment: Option<String>,
    /// `[kafka] session_timeout` for the daemon (`None`: its default).
    pub session_timeout: Option<String>,
}

/// Results (times in seconds unless named otherwise).
#[derive(Debug, Clone, Default)]
pub struct BenchKafkaResult {
    /// Producing the backlog (not part of any figure; for reference).
    pub produce_s: f64,
    /// Daemon start → first event applied.
    pub join_s: f64,
    /// First event applied → all backlog events applied.
    pub catch_up_s: f64,
    /// Events applied per second during the catch-up.
    pub events_per_s: f64,
    /// Daemon CPU seconds during the catch-up.
    pub daemon_cpu_s: f64,
    /// Broker CPU seconds during the catch-up (if its pid was given).
    pub broker_cpu_s: Option<f64>,
    /// Alert latency percentiles (ms): p50, p99, max, min.
    pub latency_ms: [f64; 4],
    /// Overdue firings seen / expected.
    pub fired: (u64, u64),
    /// The latency records were all applied this long before the deadline second.
    pub latency_slack_s: f64,
    /// Daemon peak resident memory (MB).
    pub daemon_peak_rss_mb: f64,
    /// The same backlog through one engine in this process: events/s.
    pub engine_only_eps: f64,
    /// The metrics pass over `gauge_open` open records: median ms, max ms.
    pub gauge_scan_ms: Option<(f64, f64)>,
    /// With `restart`: start of the restarted daemon → first event applied.
    pub restart_s: Option<f64>,
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command name (which may hold spaces) start at `state`
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// GET over plain HTTP/1.0; the body, or `None` if the daemon is not listening yet.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Messages the daemon has decoded and applied (a live counter: the apply
/// histogram is observed once per message).
fn applied(port: u16) -> Option<u64> {
    let body = http_get(port, "/metrics")?;
    let series = "overdued_event_apply_seconds_count ";
    body.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The daemon as a child process; killed if still running when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn stop(&mut self) -> Result<(), BenchKafkaError> {
        // SIGTERM: the daemon flushes and commits, like a real stop.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = WallInstant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if self
                .child
                .try_wait()
                .map_err(io("waiting for the daemon"))?
                .is_some()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(BenchKafkaError::Daemon("no exit 30 s after SIGTERM".into()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the sample configuration into `dir`, pointed at this run's topic,
/// port and state folder; returns its path.
fn write_config(
    opts: &BenchKafkaOptions,
    topic: &str,
    http: u16,
) -> Result<(PathBuf, Config), BenchKafkaError> {
    let cfg_dir = opts.dir.join("config");
    crate::cli::demo::embedded_config(&cfg_dir)?;
    let path = cfg_dir.join("overdued.toml");
    let text = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    let mut t: toml::Table = text
        .parse()
        .map_err(|e| BenchKafkaError::Daemon(format!("the sample configuration: {e}")))?;
    let mut k = toml::Table::new();
    k.insert("brokers".into(), opts.brokers.clone().into());
    k.insert("topic".into(), topic.into());
    k.insert("group_id".into(), format!("{topic}.group").into());
    k.insert("dead_letter_topic".into(), format!("{topic}.dlq").into());
    if opts.restart {
        k.insert("snapshot_interval".into(), "2s".into());
    }
    if let Some(a) = &opts.assignment {
        k.insert("assignment".into(), a.clone().into());
    }
    if let Some(t) = &opts.session_timeout {
        k.insert("session_timeout".into(), t.clone().into());
    }
    if !opts.properties.is_empty() {
        let mut p = toml::Table::new();
        for (key, v) in &opts.properties {
            p.insert(key.clone(), v.clone().into());
        }
        k.insert("properties".into(), p.into());
    }
    t.insert("kafka".into(), k.into());
    let mut h = toml::Table::new();
    h.insert("listen".into(), format!("127.0.0.1:{http}").into());
    t.insert("http".into(), h.into());
    let mut s = toml::Table::new();
    s.insert(
        "dir".into(),
        opts.dir.join("state").display().to_string().into(),
    );
    t.insert("state".into(), s.into());
    t.remove("alerts"); // default: <state>/alerts.ndjson
    let text = toml::to_string(&t)
        .map_err(|e| BenchKafkaError::Daemon(format!("writing the configuration: {e}")))?;
    std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    let cfg = Config::load(&path).map_err(crate::cli::error::Error::from)?;
    Ok((path, cfg))
}

fn create_topics(brokers: &str, topic: &str, partitions: i32) -> Result<(), BenchKafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(kafka("admin client"))?;
    let dlq = format!("{topic}.dlq");
    let topics = [
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("tokio runtime"))?;
    let res = rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .map_err(kafka("create topics"))?;
    for r in res {
        if let Err((t, e)) = r {
            return Err(BenchKafkaError::Kafka(format!("cannot create {t}: {e}")));
        }
    }
    Ok(())
}

fn producer(brokers: &str) -> Result<BaseProducer<Deliveries>, BenchKafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "120000")
        // no reordering or duplicates on a retry: a record's `received` must stay
        // before its other events, as the source system would have it
        .set("enable.idempotence", "true")
        .create_with_context(Deliveries::default())
        .map_err(kafka("producer"))
}

/// Sends every line of `buf` keyed by `keys[i]`, waiting when the queue is full.
fn produce(
    p: &BaseProducer<Deliveries>,
    topic: &str,
    buf: &[u8],
    keys: &[String],
) -> Result<(), BenchKafkaError> {
    for (line, key) in buf
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .zip(keys)
    {
        let mut rec = BaseRecord::<str, [u8]>::to(topic).key(key).payload(line);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(BenchKafkaError::Kafka(format!("produce: {e}"))),
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120))
        .map_err(kafka("flush the producer"))?;
    let failed = p.context().failed.swap(0, Ordering::Relaxed);
    if failed > 0 {
        return Err(BenchKafkaError::Kafka(format!(
            "{failed} messages were not delivered"
        )));
    }
    Ok(())
}

/// The backlog: lines and their keys, event times over the hour before `end`.
fn backlog(cfg: &Config, n: u64, end: Instant, seed: u64) -> (Vec<u8>, Vec<String>) {
    let mut g = Gen::new(cfg, (n * 200) as usize);
    let mut keys = Vec::with_capacity(n as usize);
    let mut r = Rng(seed | 1);
    let start = end - 3600 * SECOND;
    let step = (3600 * SECOND / n.max(1) as i64).max(1);
    let fill = n / 2;
    for i in 0..fill {
        g.received(i, start + i as i64 * step, &mut r);
        keys.push(Gen::id(i));
    }
    let mut next_rec = fill.max(1);
    for i in fill..n {
        let rec = g.mixed(start + i as i64 * step, &mut next_rec, &mut r);
        keys.push(Gen::id(rec));
    }
    (std::mem::take(&mut g.buf), keys)
}

/// `timers` new records due within `spread_ms` from `due` (all in one second).
fn deadline_records(
    cfg: &Config,
    timers: u64,
    due: Instant,
    spread_ms: u64,
    run: &str,
) -> (Vec<u8>, Vec<String>) {
    let g = Gen::new(cfg, 0);
    let (unit, procedure) = (g.units[0].clone(), g.procs[0].clone());
    let mut buf = Vec::with_capacity(timers as usize * 220);
    let mut keys = Vec::with_capacity(timers as usize);
    let at = overdued::time::now();
    let spread = (spread_ms.min(999) * 1000) as i64;
    for i in 0..timers {
        let id = format!("LAT.{run}-{i:07}");
        let d = due + spread * i as i64 / timers.max(1) as i64;
        let _ = write!(
            buf,
            "{{\"event_id\":\"lat-{i}\",\"record_id\":\"{id}\",\"type\":\"received\",\"at\":\""
        );
        write_rfc3339_offset(&mut buf, at, 7 * 3600);
        let _ = write!(
            buf,
            "\",\"unit\":\"{unit}\",\"procedure\":\"{procedure}\",\"due_at\":\""
        );
        write_rfc3339_offset(&mut buf, d, 7 * 3600);
        buf.extend_from_slice(b"\"}\n");
        keys.push(id);
    }
    (buf, keys)
}

/// Tails `path` from `from`: every chunk read, with the wall instant it was read.
fn tail(
    path: PathBuf,
    from: u64,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<(Instant, Vec<u8>)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut f) = std::fs::File::open(&path) else {
            return;
        };
        if f.seek(SeekFrom::Start(from)).is_err() {
            return;
        }
        let mut buf = Vec::with_capacity(1 << 20);
        while !stop.load(Ordering::Relaxed) {
            buf.clear();
            match f.read_to_end(&mut buf) {
                Ok(n) if n > 0 => {
                    let t = overdued::time::now();
                    if tx.send((t, buf.clone())).is_err() {
                        return;
                    }
                }
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    })
}

fn percentile(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Waits until the daemon has applied `target` messages; returns the samples
/// (wall time, count) from the first non-zero one.
fn wait_applied(
    d: &mut Daemon,
    port: u16,
    target: u64,
    timeout: Duration,
    log: &mut dyn Write,
) -> Result<Vec<(WallInstant, u64)>, BenchKafkaError> {
    let t0 = WallInstant::now();
    let mut samples = Vec::new();
    let mut last_log = WallInstant::now();
    // a count that stops short of the target means events were lost: say so
    // instead of waiting for the timeout
    let (mut last_n, mut last_move) = (0, WallInstant::now());
    loop {
        if let Some(st) = d.child.try_wait().map_err(io("waiting for the daemon"))? {
            return Err(BenchKafkaError::Daemon(format!("exited: {st}")));
        }
        let now = WallInstant::now();
        let n = applied(port).unwrap_or(0);
        if n > 0 {
            samples.push((now, n));
        }
        if n >= target {
            return Ok(samples);
        }
        if n != last_n {
            (last_n, last_move) = (n, now);
        } else if n > 0 && last_move.elapsed() > Duration::from_secs(30) {
            return Err(BenchKafkaError::Daemon(format!(
                "stalled at {n} of {target} events applied for 30 s"
            )));
        }
        if last_log.elapsed() >= Duration::from_secs(1) {
            let _ = writeln!(log, "  applied {n} / {target}");
            last_log = WallInstant::now();
        }
        if t0.elapsed() > timeout {
            return Err(BenchKafkaError::Daemon(format!(
                "{n} of {target} events applied after {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the benchmark.
pub fn run(
    opts: &BenchKafkaOptions,
    log: &mut dyn Write,
) -> Result<BenchKafkaResult, BenchKafkaError> {
    let mut res = BenchKafkaResult::default();
    let _ = std::fs::remove_dir_all(&opts.dir);
    std::fs::create_dir_all(&opts.dir).map_err(io(format!("creating {}", opts.dir.display())))?;
    let run_id = format!("{}", overdued::time::now() / SECOND);
    let topic = format!("bench.events.{run_id}");
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("finding a free port"))?
        .port();
    let (cfg_path, cfg) = write_config(opts, &topic, http)?;
    create_topics(&opts.brokers, &topic, opts.partitions)?;
    let _ = writeln!(
        log,
        "topic {topic}: {} partitions; generating {} events",
        opts.partitions, opts.events
    );
    let (lines, keys) = backlog(
        &cfg,
        opts.events,
        overdued::time::now() - 60 * SECOND,
        opts.seed,
    );

    // 1. backlog (outside every timing)
    let p = producer(&opts.brokers)?;
    let t = WallInstant::now();
    produce(&p, &topic, &lines, &keys)?;
    res.produce_s = t.elapsed().as_secs_f64();
    let delivered = p.context().ok.swap(0, Ordering::Relaxed);
    if delivered != opts.events {
        return Err(BenchKafkaError::Kafka(format!(
            "{delivered} of {} messages acknowledged",
            opts.events
        )));
    }
    let _ = writeln!(
        log,
        "produced {} events in {:.1} s ({:.0}/s)",
        opts.events,
        res.produce_s,
        opts.events as f64 / res.produce_s
    );

    // 2–3. join, catch-up
    let daemon_log = std::fs::File::create(opts.dir.join("daemon.log"))
        .map_err(io("creating the daemon log"))?;
    let started = WallInstant::now();
    // the daemon's default log level; OVERDUED_BENCH_LOG overrides it (e.g.
    // `info` shows rebalances; every alert is then logged too)
    let level = std::env::var("OVERDUED_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let child = Command::new(&opts.exe)
        .args(["--log-level", &level, "run", "--config"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(daemon_log)
        .spawn()
        .map_err(io(format!("starting {}", opts.exe.display())))?;
    let mut d = Daemon { child };
    let pid = d.child.id();
    let _ = writeln!(log, "daemon pid {pid} started; waiting for the group join");
    // the first sample before the first event: poll fast until something is applied
    let mut cpu0 = (None, None);
    let t_first = loop {
        if let Some(st) = d.child.try_wait().map_err(io("waiting for the daemon"))? {
            return Err(BenchKafkaError::Daemon(format!("exited: {st}")));
        }
        let n = applied(http).unwrap_or(0);
        if n > 0 {
            break (WallInstant::now(), n);
        }
        cpu0 = (cpu_seconds(pid), opts.broker_pid.and_then(cpu_seconds));
        if started.elapsed() > Duration::from_secs(120) {
            return Err(BenchKafkaError::Daemon("no event applied in 120 s".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    res.join_s = t_first.0.duration_since(started).as_secs_f64();
    let _ = writeln!(
        log,
        "first event applied {:.1} s after start ({} already)",
        res.join_s, t_first.1
    );
    let samples = wait_applied(&mut d, http, opts.events, Duration::from_secs(600), log)?;
    let (t_end, n_end) = samples.last().copied().unwrap_or(t_first);
    // The counter moves once per consumer round: the last sample is at most one
    // poll interval (20 ms) late.
    res.catch_up_s = t_end.duration_since(t_first.0).as_secs_f64();
    res.events_per_s = (n_end - t_first.1) as f64 / res.catch_up_s.max(1e-9);
    if let (Some(c0), Some(c1)) = (cpu0.0, cpu_seconds(pid)) {
        res.daemon_cpu_s = c1 - c0;
    }
    if let (Some(c0), Some(c1)) = (cpu0.1, opts.broker_pid.and_then(cpu_seconds)) {
        res.broker_cpu_s = Some(c1 - c0);
    }
    let _ = writeln!(
        log,
        "caught up: {} events in {:.2} s from the first one: {:.0} events/s",
        opts.events, res.catch_up_s, res.events_per_s
    );

    // 4. alert latency
    let alerts = opts.dir.join("state").join("alerts.ndjson");
    std::thread::sleep(Duration::from_secs(2)); // let the post-catch-up rounds settle
    let from = std::fs::metadata(&alerts).map(|m| m.len()).unwrap_or(0);
    let lead = 3 + opts.timers / 50_000; // produce + consume must fit before it
    let due = (overdued::time::now() / SECOND + lead as i64 + 1) * SECOND;
    let (lat_lines, lat_keys) = deadline_records(&cfg, opts.timers, due, opts.spread_ms, &run_id);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    // the file exists from the daemon's first flush (it is opened at start)
    let tailer = tail(alerts.clone(), from, stop.clone(), tx);
    let before = applied(http).unwrap_or(0);
    produce(&p, &topic, &lat_lines, &lat_keys)?;
    let got = wait_applied(
        &mut d,
        http,
        before + opts.timers,
        Duration::from_secs(lead + 60),
        log,
    )?;
    let applied_at = overdued::time::now();
    res.latency_slack_s = (due - applied_at) as f64 / 1e6;
    let _ = writeln!(
        log,
        "{} deadline records applied {:.2} s before their second ({} samples)",
        opts.timers,
        res.latency_slack_s,
        got.len()
    );
    // wait for the firings: count overdue lines of this run as chunks arrive
    let mut chunks: Vec<(Instant, Vec<u8>)> = Vec::new();
    let marker = format!("\"record_id\": \"LAT.{run_id}-");
    let mut seen = 0u64;
    let deadline = WallInstant::now() + Duration::from_secs(lead + 30);
    while seen < opts.timers && WallInstant::now() < deadline {
        if let Ok((t, c)) = rx.recv_timeout(Duration::from_millis(100)) {
            seen += String::from_utf8_lossy(&c)
                .lines()
                .filter(|l| l.contains(&marker) && l.contains("\"overdue\", \"state\": \"firing\""))
                .count() as u64;
            chunks.push((t, c));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tailer.join();
    let mut lat: Vec<i64> = Vec::with_capacity(opts.timers as usize);
    let mut pending = Vec::new();
    for (t, c) in &chunks {
        pending.extend_from_slice(c);
        // a chunk may end mid-line: keep the tail for the next one
        let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        for l in pending[..end].split(|&b| b == b'\n') {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(l) else {
                continue;
            };
            let ours = v["record_id"]
                .as_str()
                .is_some_and(|r| r.starts_with(&format!("LAT.{run_id}-")));
            if ours && v["kind"] == "overdue" && v["state"] == "firing" {
                if let Some(at) = v["at"].as_str().and_then(parse_rfc3339) {
                    lat.push(t - at);
                }
            }
        }
        pending.drain(..=end);
    }
    lat.sort_unstable();
    res.fired = (lat.len() as u64, opts.timers);
    res.latency_ms = [
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().map(|&v| v as f64 / 1000.0).unwrap_or(f64::NAN),
        lat.first().map(|&v| v as f64 / 1000.0).unwrap_or(f64::NAN),
    ];
    let _ = writeln!(
        log,
        "alert latency over {} firings: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        res.latency_ms[0],
        res.latency_ms[1],
        res.latency_ms[2]
    );
    res.daemon_peak_rss_mb = peak_rss_mb(pid);
    if opts.restart {
        res.restart_s = Some(restart(
            opts, &cfg, &cfg_path, &topic, &run_id, http, &mut d, log,
        )?);
    }
    d.stop()?;
    drop(p);

    // For scale, in this process: the same backlog through one engine alone …
    let mut engine = Engine::new(&cfg.engine);
    let t = WallInstant::now();
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(ev) = decode(line) {
            let _ = engine.apply(&ev);
        }
        engine.transitions.clear();
    }
    engine.advance(overdued::time::now());
    res.engine_only_eps = opts.events as f64 / t.elapsed().as_secs_f64();
    let _ = writeln!(
        log,
        "engine alone, same events: {:.0} events/s ({} open records, {} rejected, {} ignored)",
        res.engine_only_eps,
        engine.open_records(),
        engine.stats.rejected.iter().sum::<u64>(),
        engine.stats.ignored.iter().sum::<u64>()
    );
    drop(engine);
    drop(lines);

    // … and the daemon's once-a-second metrics pass with `gauge_open` open records.
    if opts.gauge_open > 0 {
        res.gauge_scan_ms = Some(gauge_scan(&cfg, opts, log));
    }
    Ok(res)
}

/// Restart (step 5): once a snapshot of the caught-up state is written, new records
/// arrive every 10 ms; the daemon is killed with SIGKILL and started again;
/// returns the seconds from the new process's start to its first event
/// applied (its partitions restored from their snapshots).
#[allow(clippy::too_many_arguments)]
fn restart(
    opts: &BenchKafkaOptions,
    cfg: &Config,
    cfg_path: &Path,
    topic: &str,
    run_id: &str,
    http: u16,
    d: &mut Daemon,
    log: &mut dyn Write,
) -> Result<f64, BenchKafkaError> {
    std::thread::sleep(Duration::from_secs(5)); // two snapshot intervals
    let far = (overdued::time::now() / SECOND + 86_400) * SECOND;
    let (lines, keys) = deadline_records(cfg, 100_000, far, 0, &format!("{run_id}r"));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (stop, brokers, topic) = (stop.clone(), opts.brokers.clone(), topic.to_string());
        std::thread::spawn(move || -> Result<(), BenchKafkaError> {
            let p = producer(&brokers)?;
            let lines: Vec<&[u8]> = lines
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            for (line, key) in lines.iter().zip(&keys) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = p.send(BaseRecord::<str, [u8]>::to(&topic).key(key).payload(line));
                p.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = p.flush(Duration::from_secs(10));
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let _ = d.child.kill(); // SIGKILL
    let _ = d.child.wait();
    let daemon_log = std::fs::OpenOptions::new()
        .append(true)
        .open(opts.dir.join("daemon.log"))
        .map_err(io("opening the daemon log"))?;
    let level = std::env::var("OVERDUED_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let started = WallInstant::now();
    d.child = Command::new(&opts.exe)
        .args(["--log-level", &level, "run", "--config"])
        .arg(cfg_path)
        .stdout(Stdio::null())
        .stderr(daemon_log)
        .spawn()
        .map_err(io(format!("starting {}", opts.exe.display())))?;
    let took = loop {
        if let Some(st) = d.child.try_wait().map_err(io("waiting for the daemon"))? {
            return Err(BenchKafkaError::Daemon(format!("exited: {st}")));
        }
        if applied(http).unwrap_or(0) > 0 {
            break started.elapsed().as_secs_f64();
        }
        if started.elapsed() > Duration::from_secs(180) {
            return Err(BenchKafkaError::Daemon(
                "no event applied in 180 s after the restart".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    let _ = probe.join();
    let _ = writeln!(
        log,
        "restart after kill -9: first event applied {took:.2} s after the new process started"
    );
    Ok(took)
}

/// Times the daemon's metrics pass ([`Snapshot::add_engine`] over every
/// partition's engine) with `gauge_open` open records: (median, max) ms of 5.
fn gauge_scan(cfg: &Config, opts: &BenchKafkaOptions, log: &mut dyn Write) -> (f64, f64) {
    let parts = opts.partitions.max(1) as u64;
    let mut engines: Vec<Engine> = (0..parts).map(|_| Engine::new(&cfg.engine)).collect();
    let mut r = Rng(opts.seed.wrapping_add(1) | 1);
    let start = overdued::time::now() - 3600 * SECOND;
    let step = (3600 * SECOND / opts.gauge_open.max(1) as i64).max(1);
    let chunk = 1 << 18;
    let mut done = 0;
    while done < opts.gauge_open {
        let mut g = Gen::new(cfg, chunk as usize * 200);
        let n = chunk.min(opts.gauge_open - done);
        for i in done..done + n {
            g.received(i, start + i as i64 * step, &mut r);
        }
        for (i, line) in g
            .buf
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let e = &mut engines[((done + i as u64) % parts) as usize];
            if let Ok(ev) = decode(line) {
                let _ = e.apply(&ev);
            }
            e.transitions.clear();
        }
        done += n;
    }
    let open: usize = engines.iter().map(|e| e.open_records()).sum();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = WallInstant::now();
        let mut snap = Snapshot::default();
        for e in &engines {
            snap.add_engine(e);
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(&snap);
    }
    times.sort_by(f64::total_cmp);
    let _ = writeln!(
        log,
        "metrics pass over {open} open records in {parts} engines: median {:.1} ms, max {:.1} ms",
        times[2], times[4]
    );
    (times[2], times[4])
}

/// The daemon binary next to this one (`overdued bench-kafka` runs `overdued run`).
pub fn default_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| Path::new("overdued").to_path_buf())
}

/// The command's arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Bootstrap servers of the broker to use (a fresh topic is created).
    #[arg(long)]
    pub brokers: String,
    /// The broker's pid, to report its CPU time.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Partitions of the events topic.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Backlog events produced before the daemon starts.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Records whose deadlines fall in the same wall-clock second.
    #[arg(long, default_value_t = 100_000)]
    pub timers: u64,
    /// Spread of those deadlines within the second, in ms (0: one instant).
    #[arg(long, default_value_t = 1000)]
    pub spread_ms: u64,
    /// Open records for timing the metrics pass (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    pub gauge_open: u64,
    /// Extra librdkafka property for the daemon, KEY=VALUE (repeatable).
    #[arg(long = "property")]
    pub properties: Vec<String>,
    /// Working folder (configuration, state, alerts, daemon log); emptied first.
    #[arg(long, default_value = "target/bench-kafka")]
    pub dir: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also time a restart after `kill -9` (the daemon snapshots every 2 s).
    #[arg(long)]
    pub restart: bool,
    /// The daemon's `[kafka] assignment` (`group` or `all`).
    #[arg(long)]
    pub assignment: Option<String>,
    /// The daemon's `[kafka] session_timeout` (e.g. `6s`).
    #[arg(long)]
    pub session_timeout: Option<String>,
}

/// `overdued bench-kafka`: runs and prints the figures.
pub fn command(args: Args) -> Result<(), crate::cli::error::Error> {
    use crate::cli::error::Context as _;
    let Args {
        brokers,
        broker_pid,
        partitions,
        events,
        timers,
        spread_ms,
        gauge_open,
        properties,
        dir,
        seed,
        restart,
        assignment,
        session_timeout,
    } = args;
    let properties = properties
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    super::error::Error::Usage(format!("--property {p:?}: expected KEY=VALUE"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dir = std::path::absolute(&dir).ctx(format!("{}", dir.display()))?;
    let opts = BenchKafkaOptions {
        brokers,
        broker_pid,
        exe: default_exe(),
        dir,
        partitions,
        events,
        timers,
        spread_ms,
        gauge_open,
        properties,
        seed,
        restart,
        assignment,
        session_timeout,
    };
    let r = run(&opts, &mut std::io::stderr())
        .map_err(|e| super::error::Error::Usage(format!("bench-kafka: {e}")))?;
    println!("partitions                      {partitions}");
    println!(
        "backlog events                  {events}  (produced in {:.1} s, not timed)",
        r.produce_s
    );
    println!("join (start → first event)      {:.1} s", r.join_s);
    println!("catch-up (first → last event)   {:.2} s", r.catch_up_s);
    println!("end-to-end events/s             {:.0}", r.events_per_s);
    println!(
        "CPU during catch-up             daemon {:.2} s{}",
        r.daemon_cpu_s,
        r.broker_cpu_s
            .map(|b| format!(", broker {b:.2} s"))
            .unwrap_or_default()
    );
    println!("engine alone, same events/s     {:.0}", r.engine_only_eps);
    println!(
        "alert latency ({} of {} overdue in one second, spread {spread_ms} ms; applied {:.1} s before)",
        r.fired.0, r.fired.1, r.latency_slack_s
    );
    println!(
        "  p50 / p99 / max / min         {:.1} / {:.1} / {:.1} / {:.1} ms",
        r.latency_ms[0], r.latency_ms[1], r.latency_ms[2], r.latency_ms[3]
    );
    println!(
        "daemon peak RSS                 {:.0} MB",
        r.daemon_peak_rss_mb
    );
    if let Some(t) = r.restart_s {
        println!(
            "restart after kill -9           {t:.2} s  (new process start → first event applied)"
        );
    }
    if let Some((med, max)) = r.gauge_scan_ms {
        println!("metrics pass, {gauge_open} open         median {med:.1} ms, max {max:.1} ms");
    }
    Ok(())
}
