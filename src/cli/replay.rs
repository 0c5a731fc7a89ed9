//! `overdued replay`: event files through the engine with a simulated clock
//! (docs/spec.md §6); alerts, report, dead letters and `.eml` files out.

use super::error::{Context, Error};
use overdued::replay::{Outputs, Replay};
use overdued::time::parse_rfc3339;
use std::io::Write;
use std::path::PathBuf;

/// The command's arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Advance the clock to this instant (RFC 3339) after the last event.
    #[arg(long)]
    pub until: Option<String>,
    /// Write alert transitions (NDJSON) here.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Write the report (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write rejected lines (NDJSON) here.
    #[arg(long = "dead-letter")]
    pub dead_letter: Option<PathBuf>,
    /// Write the e-mails the daemon would send, as `.eml` files, to this folder.
    #[arg(long)]
    pub emails: Option<PathBuf>,
    /// Start from this engine snapshot (written by `--snapshot-out`) instead of
    /// an empty engine: the events given continue where it stopped.
    #[arg(long)]
    pub restore: Option<PathBuf>,
    /// After the last event (and `--until`), write the engine's snapshot here.
    #[arg(long = "snapshot-out")]
    pub snapshot_out: Option<PathBuf>,
    /// Event files, in order; `-` reads stdin.
    #[arg(required = true)]
    pub events: Vec<String>,
}

/// Replays.
pub fn run(args: Args) -> Result<(), Error> {
    let Args {
        config,
        until,
        alerts,
        report,
        dead_letter,
        emails,
        restore,
        snapshot_out,
        events,
    } = args;
    let cfg = super::load(&config)?;
    let until = match until {
        Some(u) => Some(parse_rfc3339(&u).ok_or_else(|| {
            Error::Usage(format!(
                "--until: {u:?} is not an RFC 3339 time with an offset"
            ))
        })?),
        None => None,
    };
    let mut alerts_w = alerts.as_deref().map(super::create).transpose()?;
    let mut dl_w = dead_letter.as_deref().map(super::create).transpose()?;
    let mut eml = match &emails {
        Some(d) => Some(super::eml_writer(&cfg, d)?),
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
    let engine = match &restore {
        Some(p) => {
            let image = std::fs::read(p).ctx(format!("cannot read {}", p.display()))?;
            let t0 = std::time::Instant::now();
            let e = overdued::engine::Engine::restore(&cfg.engine, &image).map_err(|source| {
                Error::Snapshot {
                    path: p.clone(),
                    source,
                }
            })?;
            eprintln!(
                "replay: restored {} records ({} open) from {} bytes in {:.3} s",
                e.held_records(),
                e.open_records(),
                image.len(),
                t0.elapsed().as_secs_f64()
            );
            e
        }
        None => overdued::engine::Engine::new(&cfg.engine),
    };
    let mut replay = Replay::resume(engine, outputs);
    replay.progress = true;
    for f in &events {
        replay.feed(f).ctx(f.clone())?;
    }
    let mut rep = replay.finish(until).ctx("writing output")?;
    rep.late_threshold_percent = cfg.report.late_threshold_percent;
    if let Some(level) = &cfg.report.area_level {
        rep.add_areas(|u| cfg.engine.directory.area_and_level(u, level));
    }
    let clock = replay.engine.clock();
    if let Some(p) = &snapshot_out {
        let mut image = Vec::new();
        replay.engine.snapshot(&mut image);
        overdued::state::write_atomic(p, &image)?;
        eprintln!(
            "replay: snapshot of {} records ({} open) written, {} bytes",
            replay.engine.held_records(),
            replay.engine.open_records(),
            image.len()
        );
    }
    drop(replay);
    if let Some(w) = eml.as_mut() {
        let n = w.finish(clock)?;
        eprintln!("replay: {n} e-mails written");
    }
    if let Some(p) = report {
        std::fs::write(&p, rep.to_json() + "\n").ctx(format!("cannot write {}", p.display()))?;
    }
    Ok(())
}
