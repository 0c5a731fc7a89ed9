//! `overdued run`: loads the configuration and hands the daemon its settings
//! and a way to load them again (SIGHUP).

use super::error::Error;
use overdued::config::Config;
use std::path::Path;

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(config: &Path) -> Result<(), Error> {
    // the daemon uses its secrets: every one must resolve
    let cfg = Config::load(config)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let path = cfg.path.clone();
    let reload: overdued::daemon::Reload = Box::new(move || {
        let c = Config::load(&path)?;
        let warnings = c.warnings.clone();
        Ok((c.into_daemon(), warnings))
    });
    Ok(overdued::daemon::run(cfg.into_daemon(), reload)?)
}
