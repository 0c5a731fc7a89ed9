//! The `overdued` command line (SPEC §6).

use clap::{Parser, Subcommand};
use overdued::config::Config;
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
        /// Event files, in order; `-` reads stdin.
        #[arg(required = true)]
        events: Vec<String>,
    },
    /// Validates the configuration and its data files.
    CheckConfig {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
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

fn load(path: &Path) -> Result<Config, String> {
    let cfg = Config::load(path).map_err(|e| format!("configuration error: {e}"))?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

fn create(p: &Path) -> Result<BufWriter<File>, String> {
    File::create(p)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(|e| format!("cannot create {}: {e}", p.display()))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Replay {
            config,
            until,
            alerts,
            report,
            dead_letter,
            events,
        } => {
            let cfg = load(&config)?;
            let until = match until {
                Some(u) => Some(parse_rfc3339(&u).ok_or_else(|| {
                    format!("--until: {u:?} is not an RFC 3339 time with an offset")
                })?),
                None => None,
            };
            let mut alerts_w = alerts.as_deref().map(create).transpose()?;
            let mut dl_w = dead_letter.as_deref().map(create).transpose()?;
            let outputs = Outputs {
                alerts: alerts_w.as_mut().map(|w| w as &mut dyn Write),
                dead_letter: dl_w.as_mut().map(|w| w as &mut dyn Write),
                on_transition: None,
            };
            let mut replay = Replay::new(&cfg, outputs);
            replay.progress = true;
            for f in &events {
                replay.feed(f).map_err(|e| format!("{f}: {e}"))?;
            }
            let rep = replay
                .finish(until)
                .map_err(|e| format!("writing output: {e}"))?;
            if let Some(p) = report {
                std::fs::write(&p, rep.to_json() + "\n")
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            }
            Ok(())
        }
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
    init_logs(&cli.log_level, cli.log_json);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overdued: {e}");
            ExitCode::FAILURE
        }
    }
}
