//! E-mails as `.eml` files, for `replay --emails DIR` and `demo`: the notifier
//! runs in event time beside the engine, and every e-mail it decides is rendered
//! exactly as for SMTP and written as `DIR/<id>.eml` (ids sort in sending order).

use super::render::{render, RenderError};
use crate::alert::Notifier;
use crate::config::Config;
use crate::engine::{Engine, Transition};
use crate::time::Instant;
use std::path::{Path, PathBuf};

/// Feeds alert transitions to a [`Notifier`] and writes its e-mails to a folder.
pub struct EmlWriter {
    cfg: Config,
    notifier: Notifier,
    dir: PathBuf,
    /// E-mails dated before this are decided but not written (the demo keeps
    /// only its last weeks); `i64::MIN` = all.
    pub write_from: Instant,
    /// E-mails written.
    pub written: u64,
    /// E-mails decided (written or not).
    pub decided: u64,
    /// The first error (rendering or writing); later e-mails are skipped.
    pub error: Option<String>,
}

impl EmlWriter {
    /// Creates `dir` (and parents).
    pub fn new(cfg: &Config, dir: &Path) -> std::io::Result<EmlWriter> {
        std::fs::create_dir_all(dir)?;
        Ok(EmlWriter {
            notifier: Notifier::new(cfg.email.settings.clone(), cfg.email.silences.clone()),
            cfg: cfg.clone(),
            dir: dir.to_path_buf(),
            write_from: i64::MIN,
            written: 0,
            decided: 0,
            error: None,
        })
    }

    /// Moves the notifier's clock to `now`, writing what it sends meanwhile.
    pub fn advance(&mut self, now: Instant) {
        let out = self
            .notifier
            .advance(now, &self.cfg.calendar, &self.cfg.directory);
        for o in out {
            self.decided += 1;
            if o.at < self.write_from || self.error.is_some() {
                continue;
            }
            let r = render(&self.cfg, &o)
                .map_err(|e: RenderError| e.to_string())
                .and_then(|e| {
                    std::fs::write(self.dir.join(format!("{}.eml", e.id)), &e.bytes)
                        .map_err(|x| format!("cannot write {}: {x}", self.dir.display()))
                });
            match r {
                Ok(()) => self.written += 1,
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// One alert transition, in time order.
    pub fn on_transition(&mut self, engine: &Engine, t: &Transition) {
        self.advance(t.at);
        if t.firing {
            let info = engine.alert_info(t);
            self.notifier.fire(info, &self.cfg.directory);
        } else {
            self.notifier
                .resolve(t.kind, engine.record_id(t.slot), t.at);
        }
    }

    /// Firing alerts the notifier tracks, and the size of its state as the daemon
    /// saves it (JSON bytes).
    pub fn state_size(&self) -> (usize, usize) {
        (
            self.notifier.firing(),
            serde_json::to_vec(&self.notifier.state)
                .map(|v| v.len())
                .unwrap_or(0),
        )
    }

    /// Ends at `clock`: what is due by then is written.
    pub fn finish(&mut self, clock: Instant) -> Result<u64, String> {
        self.advance(clock);
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.written),
        }
    }
}
