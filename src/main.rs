//! The `overdued` command line (SPEC §6).

use clap::{Parser, Subcommand};
use overdued::config::Config;
use overdued::error::{Context, Error};
use overdued::replay::{Outputs, Replay};
use overdued::time::parse_rfc3339;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "overdued",
    version,
    about = "Keeps administrative-procedure records from going late"
)]
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    /// Logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The daemon: Kafka in, alerts out, HTTP (/metrics, /healthz, /readyz).
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Replays NDJSON event files through the engine with a simulated clock.
    Replay {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Advance the clock to this instant (RFC 3339) after the last event.
        #[arg(long)]
        until: Option<String>,
        /// Write alert transitions (NDJSON) here.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Write the report (JSON) here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write rejected lines (NDJSON) here.
        #[arg(long = "dead-letter")]
        dead_letter: Option<PathBuf>,
        /// Write the e-mails the daemon would send, as `.eml` files, to this folder.
        #[arg(long)]
        emails: Option<PathBuf>,
        /// Event files, in order; `-` reads stdin.
        #[arg(required = true)]
        events: Vec<String>,
    },
    /// Writes a synthetic, province-like year of events (NDJSON).
    Gen {
        /// The configuration (units, procedures, calendar); default: the embedded sample.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Number of records.
        #[arg(long, default_value_t = overdued::sim::PROVINCE_YEAR_RECORDS)]
        records: u32,
        /// Random seed.
        #[arg(long, default_value_t = 2024)]
        seed: u64,
        /// Year of the receipts (the calendar must cover it).
        #[arg(long, default_value_t = 2024)]
        year: i32,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Runs out of the box: generates a province year, replays it, prints the rates.
    Demo {
        /// Output folder.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        /// Number of records (default: the calibration province's year).
        #[arg(long, default_value_t = overdued::sim::PROVINCE_YEAR_RECORDS)]
        records: u32,
        /// Random seed.
        #[arg(long, default_value_t = 2024)]
        seed: u64,
    },
    /// Measures engine throughput and memory (see BENCHMARKS.md).
    Bench {
        /// Open records to hold.
        #[arg(long, default_value_t = 1_000_000)]
        open: u64,
        /// Mixed events applied while they are held.
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// End to end: a broker's backlog through the daemon (see BENCHMARKS.md).
    BenchKafka {
        /// Bootstrap servers of the broker to use (a fresh topic is created).
        #[arg(long)]
        brokers: String,
        /// The broker's pid, to report its CPU time.
        #[arg(long)]
        broker_pid: Option<u32>,
        /// Partitions of the events topic.
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        /// Backlog events produced before the daemon starts.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Records whose deadlines fall in the same wall-clock second.
        #[arg(long, default_value_t = 100_000)]
        timers: u64,
        /// Spread of those deadlines within the second, in ms (0: one instant).
        #[arg(long, default_value_t = 1000)]
        spread_ms: u64,
        /// Open records for timing the metrics pass (0: skip).
        #[arg(long, default_value_t = 1_000_000)]
        gauge_open: u64,
        /// Extra librdkafka property for the daemon, KEY=VALUE (repeatable).
        #[arg(long = "property")]
        properties: Vec<String>,
        /// Working folder (configuration, state, alerts, daemon log); emptied first.
        #[arg(long, default_value = "target/bench-kafka")]
        dir: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Validates the configuration and its data files.
    CheckConfig {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Test and operations tool: sends the outbox of a state folder and exits
    /// when it is empty (the crash-safety tests kill it with SIGKILL).
    #[command(hide = true)]
    OutboxSend {
        /// The state folder (`outbox/`, `notifications.log`).
        #[arg(long)]
        state: PathBuf,
        /// SMTP URL (smtp://host:port[?tls=none|required], smtps://host:port).
        #[arg(long)]
        smtp: String,
        /// First put this many generated test e-mails into the outbox.
        #[arg(long, default_value_t = 0)]
        fill: u32,
        /// Recipient of the generated e-mails.
        #[arg(long, default_value = "unit-head@so-noivu.example.vn")]
        to: String,
        /// Per-domain rate limit per minute (0 = none).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// First retry delay, milliseconds.
        #[arg(long, default_value_t = 100)]
        backoff_min_ms: u64,
        /// Retry delay cap, milliseconds.
        #[arg(long, default_value_t = 2000)]
        backoff_max_ms: u64,
    },
}

fn init_logs(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn load(path: &Path) -> Result<Config, Error> {
    let cfg = Config::load(path)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

/// The embedded sample configuration, loaded through a temporary folder.
fn embedded() -> Result<Config, Error> {
    let dir = std::env::temp_dir().join(format!("overdued-config-{}", std::process::id()));
    let cfg = overdued::demo::embedded_config(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    cfg
}

fn create(p: &Path) -> Result<BufWriter<File>, Error> {
    File::create(p)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .ctx(format!("cannot create {}", p.display()))
}

/// `overdued outbox-send`: optionally fills the outbox with generated e-mails,
/// then sends it through the real sender and exits once it is empty. Prints
/// `filled N` after the fill is durable and `sent N` at the end (stdout).
#[allow(clippy::too_many_arguments)]
fn outbox_send(
    state: &Path,
    smtp: String,
    fill: u32,
    to: &str,
    rate: u32,
    backoff_min_ms: u64,
    backoff_max_ms: u64,
) -> Result<(), Error> {
    use overdued::notify::outbox::Outbox;
    use overdued::notify::smtp::{Sender, SenderMetrics};
    use overdued::notify::{Email, SmtpConfig};
    use std::time::Duration;

    let (outbox, report) = Outbox::open(state)?;
    tracing::info!(?report, "outbox opened");
    let cfg = SmtpConfig {
        url: smtp,
        rate_per_domain_per_minute: rate,
        timeout: Duration::from_secs(10),
        backoff_min: Duration::from_millis(backoff_min_ms),
        backoff_max: Duration::from_millis(backoff_max_ms),
        ..SmtpConfig::default()
    };
    let metrics =
        SenderMetrics::unregistered().map_err(|e| Error::Usage(format!("metrics: {e}")))?;
    let mut sender = Sender::start(cfg, outbox.clone(), metrics)?;
    // Ids sort in creation order: a nanosecond stamp of this run, then a counter.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for n in 0..fill {
        let id = format!("fill-{run:024}-{n:06}");
        let msg = lettre::Message::builder()
            .from(
                "overdued <no-reply@overdued.example.vn>"
                    .parse()
                    .map_err(|e| Error::Usage(format!("from: {e}")))?,
            )
            .to(to.parse().map_err(|e| Error::Usage(format!("--to: {e}")))?)
            .subject(format!("Hồ sơ quá hạn #{n}"))
            .message_id(Some(format!("<{id}@overdued.example.vn>")))
            .body(format!("Test e-mail {n} ({id}).\n"))
            .map_err(|e| Error::Usage(format!("building a test e-mail: {e}")))?;
        let email = Email {
            id: id.clone(),
            from: "no-reply@overdued.example.vn".into(),
            to: vec![to.to_string()],
            bytes: msg.formatted(),
        };
        if outbox.put(&email)? {
            sender.submit(id);
        }
    }
    println!("filled {fill}");
    let _ = std::io::stdout().flush();
    let mut sent = 0;
    loop {
        sent += sender.take_sent().len();
        if sender.depth() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sender.shutdown(Duration::from_secs(30));
    sent += sender.take_sent().len();
    println!("sent {sent}");
    Ok(())
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.cmd {
        Cmd::OutboxSend {
            state,
            smtp,
            fill,
            to,
            rate,
            backoff_min_ms,
            backoff_max_ms,
        } => outbox_send(
            &state,
            smtp,
            fill,
            &to,
            rate,
            backoff_min_ms,
            backoff_max_ms,
        ),
        Cmd::Run { config } => {
            let cfg = load(&config)?;
            overdued::daemon::run(cfg)
        }
        Cmd::Replay {
            config,
            until,
            alerts,
            report,
            dead_letter,
            emails,
            events,
        } => {
            let cfg = load(&config)?;
            let until = match until {
                Some(u) => Some(parse_rfc3339(&u).ok_or_else(|| {
                    Error::Usage(format!(
                        "--until: {u:?} is not an RFC 3339 time with an offset"
                    ))
                })?),
                None => None,
            };
            let mut alerts_w = alerts.as_deref().map(create).transpose()?;
            let mut dl_w = dead_letter.as_deref().map(create).transpose()?;
            let mut eml = match &emails {
                Some(d) => Some(
                    overdued::notify::eml::EmlWriter::new(&cfg, d)
                        .ctx(format!("cannot create {}", d.display()))?,
                ),
                None => None,
            };
            let mut hook = |e: &overdued::engine::Engine, t: &overdued::engine::Transition| {
                if let Some(w) = eml.as_mut() {
                    w.on_transition(e, t);
                }
            };
            let outputs = Outputs {
                alerts: alerts_w.as_mut().map(|w| w as &mut dyn Write),
                dead_letter: dl_w.as_mut().map(|w| w as &mut dyn Write),
                on_transition: emails.is_some().then_some(&mut hook as _),
            };
            let mut replay = Replay::new(&cfg, outputs);
            replay.progress = true;
            for f in &events {
                replay.feed(f).ctx(f.clone())?;
            }
            let rep = replay.finish(until).ctx("writing output")?;
            let clock = replay.engine.clock();
            drop(replay);
            if let Some(w) = eml.as_mut() {
                let n = w.finish(clock).map_err(Error::Usage)?;
                eprintln!("replay: {n} e-mails written");
            }
            if let Some(p) = report {
                std::fs::write(&p, rep.to_json() + "\n")
                    .ctx(format!("cannot write {}", p.display()))?;
            }
            Ok(())
        }
        Cmd::Gen {
            config,
            records,
            seed,
            year,
            out,
        } => {
            let cfg = match config {
                Some(p) => load(&p)?,
                None => embedded()?,
            };
            let opts = overdued::sim::GenOptions {
                records,
                seed,
                year,
            };
            let summary = match out {
                Some(p) => overdued::sim::generate(&cfg, &opts, &mut create(&p)?),
                None => overdued::sim::generate(
                    &cfg,
                    &opts,
                    &mut BufWriter::new(std::io::stdout().lock()),
                ),
            }
            .ctx("gen")?;
            eprintln!(
                "gen: {} records, {} lines ({} duplicates, {} malformed)",
                summary.records, summary.lines, summary.duplicates, summary.malformed
            );
            Ok(())
        }
        Cmd::Bench { open, events, seed } => {
            let cfg = embedded()?;
            let r = overdued::bench::run(
                &cfg,
                &overdued::bench::BenchOptions { open, events, seed },
                &mut std::io::stderr(),
            );
            println!("open records              {open}");
            println!("fill (received) events/s  {:.0}", r.fill_eps);
            println!(
                "mixed events/s            {:.0}  (≈{} open)",
                r.mixed_eps, r.mixed_open
            );
            println!(
                "timer fires/s             {:.0}  ({:.0} alert transitions/s)",
                r.fires_per_s, r.transitions_per_s
            );
            println!("bytes per open record     {:.1}", r.bytes_per_record);
            println!(
                "peak RSS                  {:.1} MB",
                r.peak_rss_kb as f64 / 1024.0
            );
            Ok(())
        }
        Cmd::BenchKafka {
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
        } => {
            let properties = properties
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| {
                            Error::Usage(format!("--property {p:?}: expected KEY=VALUE"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let dir = std::path::absolute(&dir).ctx(format!("{}", dir.display()))?;
            let opts = overdued::bench_kafka::BenchKafkaOptions {
                brokers,
                broker_pid,
                exe: overdued::bench_kafka::default_exe(),
                dir,
                partitions,
                events,
                timers,
                spread_ms,
                gauge_open,
                properties,
                seed,
            };
            let r = overdued::bench_kafka::run(&opts, &mut std::io::stderr())
                .map_err(|e| Error::Usage(format!("bench-kafka: {e}")))?;
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
            if let Some((med, max)) = r.gauge_scan_ms {
                println!(
                    "metrics pass, {gauge_open} open         median {med:.1} ms, max {max:.1} ms"
                );
            }
            Ok(())
        }
        Cmd::Demo { out, records, seed } => overdued::demo::run(&out, records, seed),
        Cmd::CheckConfig { config } => {
            let cfg = load(&config)?;
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: OK ({} units, {} procedures, {} sectors, calendar years {:?})",
                config.display(),
                cfg.directory.units.len(),
                cfg.directory.procedures.len(),
                cfg.directory.sectors.len(),
                cfg.calendar.covered_years()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's stream carries a few malformed messages on purpose: they are
    // dead-lettered and counted; a warning per line would drown the table.
    let level = match (&cli.cmd, cli.log_level.as_str()) {
        (Cmd::Demo { .. }, "warn") => "error",
        (_, l) => l,
    };
    init_logs(level, cli.log_json);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overdued: {e}");
            ExitCode::FAILURE
        }
    }
}
