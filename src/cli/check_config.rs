//! `overdued check-config`: validates the configuration and its data files.

use super::error::Error;
use std::path::Path;

/// Prints `OK` with what was loaded, or fails naming file, line and field of
/// every error found.
pub fn run(config: &Path) -> Result<(), Error> {
    // secrets are checked where they are used (`run`); here an unset one is
    // a warning, so the file can be checked away from the production host
    let cfg = match overdued::config::Config::check_offline(config) {
        Ok(c) => c,
        Err(mut errors) if errors.len() == 1 => return Err(errors.remove(0).into()),
        Err(errors) => return Err(Error::Configs(errors)),
    };
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: OK ({} units, {} procedures, {} sectors, calendar years {:?})",
        config.display(),
        cfg.engine.directory.units.len(),
        cfg.engine.directory.procedures.len(),
        cfg.engine.directory.sectors.len(),
        cfg.engine.calendar.covered_years()
    );
    Ok(())
}
