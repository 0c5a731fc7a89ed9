//! The `overdued` command line (docs/spec.md §6): argument parsing and logging;
//! each command lives in [`cli`], apart from the library's stages.

mod cli;

use clap::{Parser, Subcommand};
use cli::error::Error;
use std::path::PathBuf;
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
    Replay(cli::replay::Args),
    /// Turns a one-stop system's export (CSV or JSON) into event NDJSON.
    Import(cli::import::Args),
    /// Writes a synthetic, province-like year of events (NDJSON).
    Gen {
        /// The configuration (units, procedures, calendar); default: the embedded sample.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Number of records.
        #[arg(long, default_value_t = cli::sim::PROVINCE_YEAR_RECORDS)]
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
        #[arg(long, default_value_t = cli::sim::PROVINCE_YEAR_RECORDS)]
        records: u32,
        /// Random seed.
        #[arg(long, default_value_t = 2024)]
        seed: u64,
        /// Then keep the year's end in memory and serve the unit pages, the API
        /// and /metrics (until Ctrl-C).
        #[arg(long)]
        serve: bool,
        /// Where `--serve` listens.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
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
    BenchKafka(cli::bench_kafka::Args),
    /// Validates the configuration and its data files.
    CheckConfig {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// The e-mail outbox of a state folder: list it, or send failed e-mails again.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Sends the e-mail outbox of a state folder and exits when it is empty
    /// (operations: drain a stopped daemon's outbox; the crash-safety tests kill
    /// it with SIGKILL mid-way).
    OutboxSend(cli::outbox_send::Args),
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Lists pending, requeued and failed e-mails (with the server's reason).
    List {
        /// The state folder (`[state] dir`).
        #[arg(long)]
        state: PathBuf,
    },
    /// Queues failed e-mails to be sent again (the daemon takes them within a
    /// second, or at its next start).
    Retry {
        /// The state folder (`[state] dir`).
        #[arg(long)]
        state: PathBuf,
        /// Every failed e-mail.
        #[arg(long)]
        failed: bool,
        /// E-mail ids (as `outbox list` shows them).
        ids: Vec<String>,
    },
}

fn init_logs(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // colours only for a person at a terminal: a log file or journald gets
    // plain text
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.cmd {
        Cmd::Run { config } => cli::run::run(&config),
        Cmd::Replay(args) => cli::replay::run(args),
        Cmd::Import(args) => cli::import::run(args),
        Cmd::Gen {
            config,
            records,
            seed,
            year,
            out,
        } => cli::gen::run(config, records, seed, year, out),
        Cmd::Demo {
            out,
            records,
            seed,
            serve,
            listen,
        } => cli::demo::run(&out, records, seed, serve.then_some(listen)),
        Cmd::Bench { open, events, seed } => cli::bench::command(open, events, seed),
        Cmd::BenchKafka(args) => cli::bench_kafka::command(args),
        Cmd::CheckConfig { config } => cli::check_config::run(&config),
        Cmd::Outbox { action } => match action {
            OutboxAction::List { state } => cli::outbox::list(&state),
            OutboxAction::Retry { state, failed, ids } => cli::outbox::retry(&state, &ids, failed),
        },
        Cmd::OutboxSend(args) => cli::outbox_send::run(args),
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
