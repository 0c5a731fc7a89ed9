//! `overdued import`: a one-stop system's export → event NDJSON, with the rows
//! it cannot use listed with their reasons ([`overdued::import`] does the
//! work; this is the files and the summary).

use super::error::{Context, Error};
use overdued::import::{self, mapping, ImportError, Options};
use overdued::time::parse_rfc3339;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The command's arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The mapping file (TOML): shape, columns, time formats, status and
    /// channel values (see config/examples/import/mapping-motcua.toml).
    #[arg(long)]
    pub mapping: PathBuf,
    /// Write the events (NDJSON, sorted by time) here; default: stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the rejected rows (CSV: file, row, record, reason) here; default:
    /// `<out>.rejects.csv` with `--out`, else each on stderr.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Go-live: turn the open records of the export into `snapshot` events;
    /// finished rows are rejected.
    #[arg(long = "open-as-snapshot")]
    pub open_as_snapshot: bool,
    /// The snapshots' `at` (RFC 3339); default: now. Only with
    /// `--open-as-snapshot`.
    #[arg(long = "as-of", requires = "open_as_snapshot")]
    pub as_of: Option<String>,
    /// Export files: CSV with a header row, or `.json` (an array of objects).
    #[arg(required = true)]
    pub exports: Vec<PathBuf>,
}

fn export_error(e: ImportError) -> Error {
    match e {
        ImportError::Mapping(c) => Error::Config(c),
        e @ ImportError::Export { .. } => Error::Usage(e.to_string()),
    }
}

/// Imports.
pub fn run(args: Args) -> Result<(), Error> {
    let m = mapping::load(&args.mapping)?;
    let snapshot_at = match (args.open_as_snapshot, &args.as_of) {
        (false, _) => None,
        (true, None) => Some(overdued::time::now()),
        (true, Some(s)) => Some(parse_rfc3339(s).ok_or_else(|| {
            Error::Usage(format!(
                "--as-of: {s:?} is not an RFC 3339 time with an offset"
            ))
        })?),
    };
    let mut tables = Vec::new();
    for p in &args.exports {
        let name = p.display().to_string();
        tables.push(import::read_table(p, &name, &m).map_err(export_error)?);
    }
    let out = import::convert(&m, &tables, Options { snapshot_at });

    let mut lines = Vec::with_capacity(out.events.len() * 200);
    for e in &out.events {
        serde_json::to_writer(&mut lines, e)
            .map_err(|e| Error::Usage(format!("cannot encode an event: {e}")))?;
        lines.push(b'\n');
    }
    match &args.out {
        Some(p) => {
            let mut w = super::create(p)?;
            w.write_all(&lines)
                .and_then(|()| w.flush())
                .ctx(format!("cannot write {}", p.display()))?;
        }
        None => {
            let mut w = std::io::stdout().lock();
            w.write_all(&lines)
                .and_then(|()| w.flush())
                .ctx("cannot write stdout")?;
        }
    }

    let rejects_path = args.rejects.clone().or_else(|| {
        args.out.as_ref().map(|o| {
            let mut s = o.as_os_str().to_owned();
            s.push(".rejects.csv");
            PathBuf::from(s)
        })
    });
    match &rejects_path {
        Some(p) => write_rejects(p, &out.rejects)?,
        None => {
            for r in &out.rejects {
                let rec = if r.record.is_empty() {
                    String::new()
                } else {
                    format!(" record {}:", r.record)
                };
                eprintln!("import: {}:{}:{rec} {}", r.file, r.row, r.reason);
            }
        }
    }
    let see = match (&rejects_path, out.rejects.is_empty()) {
        (Some(p), false) => format!(" (see {})", p.display()),
        _ => String::new(),
    };
    eprintln!(
        "import: {} rows read, {} events written, {} rows rejected{see}",
        out.rows,
        out.events.len(),
        out.rejects.len()
    );
    Ok(())
}

/// The rejected rows as CSV (a header even when there are none, so an old
/// file is never left behind).
fn write_rejects(p: &Path, rejects: &[import::Reject]) -> Result<(), Error> {
    let what = || format!("cannot write {}", p.display());
    let mut w = csv::Writer::from_writer(super::create(p)?);
    w.write_record(["file", "row", "record", "reason"])
        .map_err(std::io::Error::from)
        .ctx(what())?;
    for r in rejects {
        w.write_record([&r.file, &r.row.to_string(), &r.record, &r.reason])
            .map_err(std::io::Error::from)
            .ctx(what())?;
    }
    w.flush().ctx(what())
}
