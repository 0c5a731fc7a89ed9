//! The e-mail stage of a running daemon: the notifier's decisions are rendered
//! into the outbox, listed in the saved state, and submitted to the SMTP sender
//! only once that state is durable (a crash before the save decides them again
//! instead of sending them twice).

use super::error::Error;
use super::{Settings, Shared};
use crate::alert::{Notifier, State};
use crate::metrics::events::{AlertsSilenced, EmailFailed, EmailNotStored};
use crate::notify::outbox::Outbox;
use crate::notify::render::{render, Context};
use crate::notify::smtp::{Sender, SenderHandle};
use crate::state::Watermarks;
use crate::time::Instant;

/// The outbox, the sender and what waits for the next save.
pub(super) struct Mail {
    outbox: Outbox,
    /// The SMTP sender.
    pub sender: SenderHandle,
    /// Stored in the outbox, to submit once the decision is saved.
    to_submit: Vec<String>,
    /// Decided but not yet stored (the outbox refused the write: a full disk,
    /// no file descriptors): retried every round; until they are stored the
    /// state is not saved, so a crash decides them again instead of losing them.
    unstored: Vec<crate::notify::Email>,
    /// `state.muted` already counted.
    muted_counted: u64,
}

impl Mail {
    /// Opens the outbox, drops what no saved decision lists, starts the sender
    /// and restores the notifier from the saved state. `None` without `[email]`.
    pub fn open(
        s: &Settings,
        marks: &mut Watermarks,
        shared: &Shared,
    ) -> Result<Option<(Mail, Notifier)>, Error> {
        if !s.email.enabled {
            return Ok(None);
        }
        let state_dir = &s.daemon.state_dir;
        let (outbox, report) = Outbox::open(state_dir).map_err(|source| Error::Mail {
            what: "opening the e-mail outbox",
            source,
        })?;
        report.log();
        // an outbox entry the saved state does not list was decided by a run
        // that crashed before saving: it will be decided again, not sent twice
        // e-mails an operator requeued (`overdued outbox retry`) are decisions
        // to keep
        let requeued = outbox.take_requeued().map_err(|source| Error::Mail {
            what: "taking requeued e-mails",
            source,
        })?;
        marks.outbox.extend(requeued);
        let orphans = outbox
            .set_aside_orphans(&marks.outbox.iter().cloned().collect())
            .map_err(|source| Error::Mail {
                what: "cleaning the e-mail outbox",
                source,
            })?;
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "outbox entries of an unsaved decision moved to outbox/orphans"
            );
        }
        // ids no longer in the outbox were sent (or failed) before the crash
        marks.outbox.retain(|id| outbox.contains(id));
        let sender = start_sender(s, &outbox, shared)?;
        let n = restore_notifier(s, marks, shared)?;
        tracing::info!(smtp = %s.email.delivery.smtp.url, "e-mail enabled");
        Ok(Some((
            Mail {
                outbox,
                sender,
                to_submit: Vec::new(),
                unstored: Vec::new(),
                muted_counted: n.state.muted,
            },
            n,
        )))
    }

    /// Renders what the notifier decided up to `now` into the outbox; the ids are
    /// submitted for sending only after the decision is saved ([`Mail::saved`]).
    pub fn decide(
        &mut self,
        n: &mut Notifier,
        s: &Settings,
        now: Instant,
        marks: &mut Watermarks,
        shared: &Shared,
    ) {
        let ctx = Context {
            calendar: &s.engine.calendar,
            directory: &s.engine.directory,
            settings: &s.email.delivery,
            links: s.daemon.links.as_ref(),
        };
        // e-mails an operator requeued while running: sent like new decisions
        for id in take_requeued(&self.outbox) {
            marks.outbox.insert(id.clone());
            self.to_submit.push(id);
        }
        // what an earlier round could not store goes first, in order
        let mut decided = std::mem::take(&mut self.unstored);
        decided.extend(render_decided(
            &ctx,
            n.advance(now, &s.engine.calendar, &s.engine.directory),
            shared,
        ));
        for email in decided {
            if let Some(id) = store_in_order(&self.outbox, &mut self.unstored, email, shared) {
                marks.outbox.insert(id.clone());
                self.to_submit.push(id);
            }
        }
        count_muted(n, &mut self.muted_counted, shared);
    }

    /// Whether decided e-mails wait to be stored: the state must not be saved.
    pub fn holds_unstored(&self) -> bool {
        !self.unstored.is_empty()
    }

    /// Whether decided e-mails wait for the next save.
    pub fn has_new(&self) -> bool {
        !self.to_submit.is_empty()
    }

    /// Forgets in `marks` what the sender finished (sent or failed for good).
    pub fn finished(&self, marks: &mut Watermarks) {
        for id in self
            .sender
            .take_sent()
            .into_iter()
            .chain(self.sender.take_failed())
        {
            marks.outbox.remove(&id);
        }
    }

    /// The decision is durable: its e-mails may go.
    pub fn saved(&mut self) {
        for id in self.to_submit.drain(..) {
            self.sender.submit(id);
        }
    }
}

/// The notifier as the saved state left it: its silences, acknowledgements
/// made after the save, and a Message-ID space of its own.
pub(super) fn restore_notifier(
    s: &Settings,
    marks: &mut Watermarks,
    shared: &Shared,
) -> Result<Notifier, Error> {
    let state_dir = &s.daemon.state_dir;
    let mut state: State = marks
        .notifier
        .take()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    state.silences = crate::state::load_silences(&shared.api.silences_file, crate::time::now())?;
    if state.instance.is_empty() {
        // a fresh state: its own Message-ID space
        let seed = format!(
            "{}-{}-{}",
            crate::time::now(),
            std::process::id(),
            state_dir.display()
        );
        state.instance = format!("{:08x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) as u32);
    }
    let mut n = Notifier::with_state(s.email.grouping.clone(), s.email.silences.clone(), state);
    // acknowledgements made after the last save are in their own file
    if let Some(f) = &shared.api.acks_file {
        n.merge_acks(crate::state::load_acks(f, crate::time::now())?);
    }
    // what came due while the daemon was down is grouped from now on
    n.schedule_floor = crate::time::now();
    Ok(n)
}

/// E-mails an operator requeued (`overdued outbox retry`): sent like new
/// decisions.
pub(super) fn take_requeued(outbox: &Outbox) -> Vec<String> {
    match outbox.take_requeued() {
        Ok(ids) => {
            for id in &ids {
                tracing::info!(id = %id, "requeued e-mail taken back");
            }
            ids
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot take requeued e-mails; will retry");
            Vec::new()
        }
    }
}

/// Renders what a notifier decided; one that cannot be rendered is counted as
/// failed.
pub(super) fn render_decided(
    ctx: &Context<'_>,
    decided: Vec<crate::alert::Outgoing>,
    shared: &Shared,
) -> Vec<crate::notify::Email> {
    let mut out = Vec::with_capacity(decided.len());
    for o in decided {
        match render(ctx, &o) {
            Ok(email) => {
                tracing::info!(id = %email.id, to = %email.to.join(", "), items = o.items.len(), "e-mail decided");
                out.push(email);
            }
            Err(e) => EmailFailed {
                what: &o.recipient,
                reason: &e,
                stage: "cannot render it",
            }
            .emit(&shared.metrics),
        }
    }
    out
}

/// Puts a decided e-mail in the outbox and returns its id, or keeps it in
/// `unstored` to retry (behind any already waiting there: the order is kept).
pub(super) fn store_in_order(
    outbox: &Outbox,
    unstored: &mut Vec<crate::notify::Email>,
    email: crate::notify::Email,
    shared: &Shared,
) -> Option<String> {
    if !unstored.is_empty() {
        unstored.push(email);
        return None;
    }
    match outbox.put(&email) {
        Ok(_) => Some(email.id),
        Err(e) => {
            EmailNotStored {
                id: &email.id,
                error: &e,
            }
            .emit(&shared.metrics);
            unstored.push(email);
            None
        }
    }
}

/// Counts the alerts a notifier muted since the last call.
pub(super) fn count_muted(n: &Notifier, counted: &mut u64, shared: &Shared) {
    let muted = n.state.muted;
    if muted > *counted {
        AlertsSilenced {
            n: muted - *counted,
        }
        .emit(&shared.metrics);
        *counted = muted;
    }
}

/// Starts the SMTP sender on `outbox` (it first sends what the outbox holds).
pub(super) fn start_sender(
    s: &Settings,
    outbox: &Outbox,
    shared: &Shared,
) -> Result<SenderHandle, Error> {
    Sender::start(
        s.email.delivery.smtp.clone(),
        outbox.clone(),
        shared.metrics.clone(),
    )
    .map_err(|source| Error::Mail {
        what: "starting the SMTP sender",
        source,
    })
}
