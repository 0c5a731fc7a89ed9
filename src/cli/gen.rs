//! `overdued gen`: a synthetic, province-like year of events (NDJSON).

use super::error::{Context, Error};
use super::sim::{generate, GenOptions};
use std::io::BufWriter;
use std::path::PathBuf;

/// Writes the events to `out` (stdout when none).
pub fn run(
    config: Option<PathBuf>,
    records: u32,
    seed: u64,
    year: i32,
    out: Option<PathBuf>,
) -> Result<(), Error> {
    let cfg = match config {
        Some(p) => super::load(&p)?,
        None => super::embedded()?,
    };
    let opts = GenOptions {
        records,
        seed,
        year,
    };
    let summary = match out {
        Some(p) => generate(&cfg, &opts, &mut super::create(&p)?),
        None => generate(&cfg, &opts, &mut BufWriter::new(std::io::stdout().lock())),
    }
    .ctx("gen")?;
    eprintln!(
        "gen: {} records, {} lines ({} duplicates, {} malformed)",
        summary.records, summary.lines, summary.duplicates, summary.malformed
    );
    Ok(())
}
