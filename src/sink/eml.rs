//! E-mails as `.eml` files, for `replay --emails DIR` and `demo`: the notifier
//! runs in event time beside the engine, and every e-mail it decides is rendered
//! exactly as for SMTP and written as `DIR/<id>.eml` (ids sort in sending order).

use crate::alert::Notifier;
use crate::engine::calendar::Calendar;
use crate::engine::directory::Directory;
use crate::engine::{Engine, Transition};
use crate::notify::render::{render, Context, RenderError};
use crate::time::Instant;
use std::path::{Path, PathBuf};

/// Why `.eml` files stopped being written.
#[derive(Debug, thiserror::Error)]
pub enum EmlError {
    /// An e-mail could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Feeds alert transitions to a [`Notifier`] and writes its e-mails to a folder.
pub struct EmlWriter {
    calendar: Calendar,
    directory: Directory,
    delivery: crate::notify::Settings,
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
    pub error: Option<EmlError>,
    /// How the e-mails land on units (measured when set).
    pub stats: Option<crate::notify::stats::MailStats>,
    /// Signed page links for the e-mails (`demo --serve`); none by default.
    pub links: Option<crate::link::Links>,
}

impl EmlWriter {
    /// Creates `dir` (and parents).
    pub fn new(
        engine: &crate::engine::Settings,
        notifier: Notifier,
        delivery: &crate::notify::Settings,
        dir: &Path,
    ) -> std::io::Result<EmlWriter> {
        std::fs::create_dir_all(dir)?;
        Ok(EmlWriter {
            notifier,
            calendar: engine.calendar.clone(),
            directory: engine.directory.clone(),
            delivery: delivery.clone(),
            dir: dir.to_path_buf(),
            write_from: i64::MIN,
            written: 0,
            decided: 0,
            error: None,
            stats: None,
            links: None,
        })
    }

    /// Moves the notifier's clock to `now`, writing what it sends meanwhile.
    pub fn advance(&mut self, now: Instant) {
        let out = self.notifier.advance(now, &self.calendar, &self.directory);
        let ctx = Context {
            calendar: &self.calendar,
            directory: &self.directory,
            settings: &self.delivery,
            links: self.links.as_ref(),
        };
        for o in out {
            self.decided += 1;
            if let Some(s) = self.stats.as_mut() {
                s.sent(&ctx, &o);
            }
            if o.at < self.write_from || self.error.is_some() {
                continue;
            }
            let r = render(&ctx, &o).map_err(EmlError::from).and_then(|e| {
                let path = self.dir.join(format!("{}.eml", e.id));
                std::fs::write(&path, &e.bytes).map_err(|source| EmlError::Write { path, source })
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
            if let Some(s) = self.stats.as_mut() {
                s.fire(&info);
            }
            self.notifier.fire(info, &self.directory);
        } else {
            if let Some(s) = self.stats.as_mut() {
                s.resolve(t.kind, engine.record_id(t.slot), t.at);
            }
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

    /// Starts measuring how the e-mails land on units.
    pub fn measure(&mut self) {
        let ctx = Context {
            calendar: &self.calendar,
            directory: &self.directory,
            settings: &self.delivery,
            links: self.links.as_ref(),
        };
        self.stats = Some(crate::notify::stats::MailStats::new(&ctx));
    }

    /// The notifier, as the stream left it (`demo --serve` serves its pages).
    pub fn into_notifier(self) -> Notifier {
        self.notifier
    }

    /// Ends at `clock`: what is due by then is written.
    pub fn finish(&mut self, clock: Instant) -> Result<u64, EmlError> {
        self.advance(clock);
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.written),
        }
    }
}
