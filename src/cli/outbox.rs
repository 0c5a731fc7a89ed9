//! `overdued outbox`: what waits in a state folder's outbox, and sending failed
//! e-mails again. `retry` moves them from `outbox/failed/` to `outbox/requeue/`;
//! the daemon takes them from there within a second (running) or at its next
//! start, records them in its state and sends them — nothing is deleted.

use super::error::Error;
use overdued::notify::outbox::Outbox;
use std::path::Path;

/// Prints the pending, requeued and failed e-mails (with the reason).
pub fn list(state: &Path) -> Result<(), Error> {
    let (outbox, _) = Outbox::open(state)?;
    for id in outbox.pending()? {
        println!("pending   {id}");
    }
    for id in outbox.requeued()? {
        println!("requeued  {id}");
    }
    for id in outbox.failed()? {
        let reason = outbox.failure_reason(&id)?.unwrap_or_default();
        println!("failed    {id}  {}", reason.trim_end());
    }
    Ok(())
}

/// Requeues the failed e-mails `ids`, or all of them with `all`.
pub fn retry(state: &Path, ids: &[String], all: bool) -> Result<(), Error> {
    if all != ids.is_empty() {
        return Err(Error::Usage(
            "name the e-mail ids to retry, or --failed for all failed e-mails".into(),
        ));
    }
    let (outbox, _) = Outbox::open(state)?;
    let ids = if all { outbox.failed()? } else { ids.to_vec() };
    let mut unknown = Vec::new();
    for id in &ids {
        if outbox.requeue_failed(id)? {
            println!("requeued  {id}");
        } else {
            unknown.push(id.as_str());
        }
    }
    if !unknown.is_empty() {
        return Err(Error::Usage(format!(
            "not failed e-mails of {}: {}",
            state.display(),
            unknown.join(", ")
        )));
    }
    Ok(())
}
