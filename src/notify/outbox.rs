//! The durable outbox and the notification log (`<state_dir>/outbox/`,
//! `<state_dir>/notifications.log`).
//!
//! An e-mail is *accepted for sending* once [`Outbox::put`] returned: its message
//! (`<id>.eml`) and envelope (`<id>.env`, JSON `{from, to}`) are on disk, each
//! written to a temporary file, fsynced, renamed into place, and the folder
//! fsynced. The `.env` file is written last and is the commit marker: an `.eml`
//! without its `.env` is an interrupted `put` and is removed at open.
//!
//! The notification log is append-only NDJSON, one line per e-mail the SMTP
//! server accepted (`{"id", "sent_at", "to", "response"}`). A line is fsynced
//! *before* the outbox files are deleted, so after any crash an id is either
//! still pending (not logged: it will be sent again) or logged (its leftover
//! files are deleted at open, never sent twice). The log is read back at open;
//! a torn last line (a crash in the middle of an append) is cut off.
//!
//! **Rotation.** At open, a log larger than a threshold ([`LOG_ROTATE_BYTES`],
//! or the one given to [`Outbox::open_with`]) is rotated: the old file becomes
//! `notifications.log.1` (replacing an older one) and a fresh log keeps only the
//! lines of ids whose outbox files still exist — the only ids the log must
//! still answer for (normally none, as the repair above just deleted them).
//! `notifications.log` is replaced by one atomic rename of a complete, fsynced
//! file, so at every instant it names either the old log or the new one, and
//! both hold every id that needs it; see `docs/email-delivery.md`.
//!
//! Permanent SMTP rejections are moved to `outbox/failed/` with a `.reason`
//! file: never silently dropped, never retried.
//!
//! One process owns a state folder. An `Outbox` is a cheap handle (clone it):
//! the daemon's loop `put`s while the sender thread logs and deletes.

use super::{Email, NotifyError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Above this size (bytes) the notification log is rotated by [`Outbox::open`]:
/// ~600,000 e-mails at ~110 bytes a line. Reading it back at start-up then
/// costs well under a second, and the set of ids held in memory stays small.
pub const LOG_ROTATE_BYTES: u64 = 64 << 20;

/// Names next to `notifications.log`: the previous log, and the temporary files
/// of a rotation (removed at open if a crash left them).
const LOG_OLD_SUFFIX: &str = ".1";
const LOG_NEW_SUFFIX: &str = ".new";
const LOG_OLD_NEW_SUFFIX: &str = ".1.new";

/// File name suffixes in the outbox folder.
const MSG: &str = "eml";
const ENV: &str = "env";
const REASON: &str = "reason";

/// The envelope stored next to a message (`<id>.env`).
#[derive(Debug, Serialize, Deserialize)]
struct StoredEnvelope {
    from: String,
    to: Vec<String>,
}

/// One line of the notification log.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogEntry {
    /// The e-mail's id.
    pub id: String,
    /// When the server accepted it (RFC 3339, UTC).
    pub sent_at: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The server's reply, e.g. `250 2.0.0 OK`.
    pub response: String,
}

/// What [`Outbox::open`] found and repaired (logged by the caller).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Ids pending in the outbox.
    pub pending: usize,
    /// Leftover files of ids already in the log (crash between log and delete).
    pub already_sent: usize,
    /// Interrupted `put`s (message without envelope) removed.
    pub incomplete: usize,
    /// Interrupted moves to `failed/` completed.
    pub failed_completed: usize,
    /// A torn last line was cut off the notification log.
    pub torn_log_line: bool,
    /// Unreadable lines in the middle of the log (skipped, left in place).
    pub bad_log_lines: usize,
    /// The log was larger than the threshold and was rotated to
    /// `notifications.log.1`.
    pub log_rotated: bool,
    /// Lines carried over into the fresh log by the rotation (ids whose outbox
    /// files still exist).
    pub log_lines_kept: usize,
    /// The rotation was due but failed (the log stays as it is, complete, and
    /// the rotation is tried again at the next open).
    pub log_rotation_error: Option<String>,
}

impl OpenReport {
    /// Logs what opening found, one field per number (readable as JSON logs).
    pub fn log(&self) {
        tracing::info!(
            pending = self.pending,
            already_sent = self.already_sent,
            incomplete = self.incomplete,
            failed_completed = self.failed_completed,
            torn_log_line = self.torn_log_line,
            bad_log_lines = self.bad_log_lines,
            log_rotated = self.log_rotated,
            log_lines_kept = self.log_lines_kept,
            log_rotation_error = self.log_rotation_error.as_deref().unwrap_or(""),
            "outbox opened"
        );
    }
}

/// The outbox of one state folder (a cheap, shareable handle).
#[derive(Debug, Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    failed_dir: PathBuf,
    log_path: PathBuf,
    log: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    file: File,
    logged: HashSet<String>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NotifyError {
    let what = what.into();
    move |source| NotifyError::Io { what, source }
}

/// Ids become file names: only `[A-Za-z0-9._-]`, not starting with a dot (so
/// they never collide with our temporary files or `.`/`..`).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_id(id: &str) -> Result<(), NotifyError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(NotifyError::InvalidId(id.to_string()))
    }
}

/// fsync a folder so that renames and creations in it are durable.
fn sync_dir(dir: &Path) -> Result<(), NotifyError> {
    crate::state::sync_dir(dir).map_err(io(format!("syncing folder {}", dir.display())))
}

/// Writes `bytes` to `path` atomically ([`crate::state::write_synced`]); the
/// caller fsyncs the folder (once for several files).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NotifyError> {
    crate::state::write_synced(path, bytes).map_err(io(format!("writing {}", path.display())))
}

fn remove_if_exists(path: &Path) -> Result<bool, NotifyError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(format!("removing {}", path.display()))(e)),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> Result<bool, NotifyError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(format!("moving {} to {}", from.display(), to.display()))(e)),
    }
}

/// `notifications.log` + `suffix` (`notifications.log.1`, ...).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Rotates the notification log at `log_path` (complete lines only: a torn
/// tail was cut before): the lines of the ids in `keep` go to a fresh log, the
/// old file becomes `<log>.1`. Returns how many lines were kept.
///
/// Order, so that a crash at any point leaves `<log>` complete for every id in
/// `keep` (the argument is in `docs/email-delivery.md`):
/// 1. write the kept lines to `<log>.new`, fsync it;
/// 2. hard-link the old log as `<log>.1.new` (a copy, fsynced, where hard
///    links are not supported) and rename that over `<log>.1`;
/// 3. rename `<log>.new` over `<log>` (atomic: the old log or the new one,
///    never neither), then fsync the folder.
///
/// Nothing appends meanwhile: the caller holds the only handle, not yet shared.
fn rotate_log(log_path: &Path, keep: &HashSet<String>) -> Result<usize, NotifyError> {
    let new = with_suffix(log_path, LOG_NEW_SUFFIX);
    let old = with_suffix(log_path, LOG_OLD_SUFFIX);
    let old_new = with_suffix(log_path, LOG_OLD_NEW_SUFFIX);
    let dir = log_path.parent().unwrap_or(Path::new("."));

    let mut kept = 0usize;
    let res = (|| -> std::io::Result<()> {
        let src = File::open(log_path)?;
        let mut out = std::io::BufWriter::new(File::create(&new)?);
        // Streamed line by line: a log past the threshold is not held twice.
        for line in std::io::BufReader::new(src).split(b'\n') {
            let line = line?;
            let Ok(entry) = serde_json::from_slice::<LogEntry>(&line) else {
                // Blank or unreadable lines are history: they stay in `.1`.
                continue;
            };
            if keep.contains(&entry.id) {
                out.write_all(&line)?;
                out.write_all(b"\n")?;
                kept += 1;
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&new);
        return Err(io(format!("writing {}", new.display()))(e));
    }

    remove_if_exists(&old_new)?;
    if fs::hard_link(log_path, &old_new).is_err() {
        // Some file systems have no hard links: a copy is slower, as safe.
        let copied = fs::copy(log_path, &old_new)
            .and_then(|_| File::open(&old_new))
            .and_then(|f| f.sync_all());
        if let Err(e) = copied {
            let _ = fs::remove_file(&old_new);
            let _ = fs::remove_file(&new);
            return Err(io(format!(
                "copying {} to {}",
                log_path.display(),
                old_new.display()
            ))(e));
        }
    }
    fs::rename(&old_new, &old).map_err(io(format!(
        "moving {} to {}",
        old_new.display(),
        old.display()
    )))?;
    // When `.1` already was this very file (a rotation interrupted after this
    // step, redone), rename does nothing and leaves the link: drop it.
    remove_if_exists(&old_new)?;
    fs::rename(&new, log_path).map_err(io(format!(
        "moving {} to {}",
        new.display(),
        log_path.display()
    )))?;
    sync_dir(dir)?;
    Ok(kept)
}

/// Ids of the files with suffix `ext` in `dir` (temporary files excluded).
fn ids_with(dir: &Path, ext: &str) -> Result<Vec<String>, NotifyError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
    };
    let mut ids = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(ext)
            .and_then(|s| s.strip_suffix('.'))
            .filter(|id| valid_id(id))
        {
            ids.push(id.to_string());
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads the notification log: the logged ids, and the length of its valid
/// prefix (a torn last line is not part of it).
fn read_log(file: &mut File, report: &mut OpenReport) -> std::io::Result<(HashSet<String>, u64)> {
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut buf)?;
    let mut logged = HashSet::new();
    let mut valid_len = 0u64;
    let mut pos = 0usize;
    while pos < buf.len() {
        let (line, next, complete) = match buf[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[pos..pos + i], pos + i + 1, true),
            None => (&buf[pos..], buf.len(), false),
        };
        if !complete {
            // A last line without its newline: the append was interrupted.
            // Even if it parses, the fsync that made it count never returned,
            // so it is cut off and the e-mail stays pending.
            report.torn_log_line = true;
            break;
        }
        match serde_json::from_slice::<LogEntry>(line) {
            Ok(e) => {
                logged.insert(e.id);
            }
            Err(_) if line.iter().all(|b| b.is_ascii_whitespace()) => {}
            Err(_) => {
                // Not the tail: left in place (it is history), skipped.
                report.bad_log_lines += 1;
            }
        }
        valid_len = next as u64;
        pos = next;
    }
    Ok((logged, valid_len))
}

impl Outbox {
    /// Opens (creating if needed) the outbox of `state_dir`, reads the
    /// notification log and repairs what a crash may have left: leftover files
    /// of logged ids, interrupted `put`s, interrupted moves to `failed/`,
    /// temporary files, a torn last log line. Rotates a notification log
    /// larger than [`LOG_ROTATE_BYTES`].
    pub fn open(state_dir: &Path) -> Result<(Outbox, OpenReport), NotifyError> {
        Outbox::open_with(state_dir, LOG_ROTATE_BYTES)
    }

    /// [`Outbox::open`], rotating the notification log when it is larger than
    /// `rotate_above` bytes.
    pub fn open_with(
        state_dir: &Path,
        rotate_above: u64,
    ) -> Result<(Outbox, OpenReport), NotifyError> {
        let dir = state_dir.join("outbox");
        let failed_dir = dir.join("failed");
        let log_path = state_dir.join("notifications.log");
        fs::create_dir_all(&failed_dir)
            .map_err(io(format!("creating {}", failed_dir.display())))?;

        // Leftovers of a rotation a crash interrupted: while the log itself
        // exists they are never the truth (step 3 of `rotate_log` is the one
        // that counts), and the rotation is simply done again below.
        for suffix in [LOG_NEW_SUFFIX, LOG_OLD_NEW_SUFFIX] {
            remove_if_exists(&with_suffix(&log_path, suffix))?;
        }

        let mut report = OpenReport::default();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let (mut logged, valid_len) = read_log(&mut file, &mut report)
            .map_err(io(format!("reading {}", log_path.display())))?;
        if report.torn_log_line {
            file.set_len(valid_len)
                .and_then(|()| file.sync_all())
                .map_err(io(format!("truncating {}", log_path.display())))?;
        }

        // Temporary files of interrupted writes.
        for d in [&dir, &failed_dir] {
            let rd = fs::read_dir(d).map_err(io(format!("listing {}", d.display())))?;
            for entry in rd.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    remove_if_exists(&entry.path())?;
                }
            }
        }

        let msgs: HashSet<String> = ids_with(&dir, MSG)?.into_iter().collect();
        let envs: HashSet<String> = ids_with(&dir, ENV)?.into_iter().collect();
        for id in msgs.union(&envs) {
            let msg = dir.join(format!("{id}.{MSG}"));
            let env = dir.join(format!("{id}.{ENV}"));
            if logged.contains(id) {
                // Crash between the log append and the delete.
                remove_if_exists(&msg)?;
                remove_if_exists(&env)?;
                report.already_sent += 1;
            } else if !envs.contains(id) {
                // `put` writes the envelope last: the put never returned.
                remove_if_exists(&msg)?;
                report.incomplete += 1;
            } else if !msgs.contains(id) {
                // `move_to_failed` moves the message first: finish the move.
                // (Without a message in failed/ either, the envelope alone
                // still goes there: nothing is deleted silently.)
                if !failed_dir.join(format!("{id}.{REASON}")).exists() {
                    write_atomic(
                        &failed_dir.join(format!("{id}.{REASON}")),
                        b"message file missing from the outbox\n",
                    )?;
                }
                rename_if_exists(&env, &failed_dir.join(format!("{id}.{ENV}")))?;
                report.failed_completed += 1;
            } else {
                report.pending += 1;
            }
        }
        sync_dir(&dir)?;
        sync_dir(&failed_dir)?;

        // Rotation comes after the repair, which deleted (and made durable the
        // deletion of) the files of every logged id: what must survive in the
        // log is what an outbox file could still be sent again for.
        if valid_len > rotate_above {
            let mut present: HashSet<String> = ids_with(&dir, MSG)?.into_iter().collect();
            present.extend(ids_with(&dir, ENV)?);
            let keep: HashSet<String> = logged.intersection(&present).cloned().collect();
            drop(file);
            match rotate_log(&log_path, &keep) {
                Ok(kept) => {
                    report.log_rotated = true;
                    report.log_lines_kept = kept;
                    // The in-memory set matches the file, as after any
                    // restart: the rotated-out ids have no outbox files and
                    // none can come back (see `docs/email-delivery.md`).
                    logged = keep;
                }
                Err(e) => {
                    // Not a reason to stop sending: whichever file is now
                    // `notifications.log` (the old one, or the new one if only
                    // the folder fsync failed) is complete. It is read again.
                    tracing::warn!(error = %e, "cannot rotate the notification log; it keeps growing");
                    report.log_rotation_error = Some(e.to_string());
                }
            }
            file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&log_path)
                .map_err(io(format!("opening {}", log_path.display())))?;
            if report.log_rotation_error.is_some() {
                let mut again = OpenReport::default();
                logged = read_log(&mut file, &mut again)
                    .map_err(io(format!("reading {}", log_path.display())))?
                    .0;
            }
        }

        let outbox = Outbox {
            inner: Arc::new(Inner {
                dir,
                failed_dir,
                log_path,
                log: Mutex::new(LogState { file, logged }),
            }),
        };
        Ok((outbox, report))
    }

    /// The outbox folder (`<state_dir>/outbox`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The folder of permanently rejected e-mails (`<state_dir>/outbox/failed`).
    pub fn failed_dir(&self) -> &Path {
        &self.inner.failed_dir
    }

    /// The notification log (`<state_dir>/notifications.log`).
    pub fn log_path(&self) -> &Path {
        &self.inner.log_path
    }

    fn state(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock cannot leave the set inconsistent
        // with the file in a way that matters (the file is the truth).
        self.inner.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.{ext}"))
    }

    /// Whether the server accepted `id` (it is in the notification log).
    pub fn is_sent(&self, id: &str) -> bool {
        self.state().logged.contains(id)
    }

    /// Whether `id` is pending in the outbox.
    pub fn contains(&self, id: &str) -> bool {
        self.path(id, ENV).exists()
    }

    /// Whether `id` was moved to `failed/`.
    pub fn is_failed(&self, id: &str) -> bool {
        self.inner.failed_dir.join(format!("{id}.{ENV}")).exists()
            || self.inner.failed_dir.join(format!("{id}.{MSG}")).exists()
    }

    /// Stores `email` durably. Returns `false` (and writes nothing) if the id is
    /// already pending, sent or failed: a repeated `put` after a crash of the
    /// caller is harmless.
    pub fn put(&self, email: &Email) -> Result<bool, NotifyError> {
        check_id(&email.id)?;
        if self.is_sent(&email.id) || self.contains(&email.id) || self.is_failed(&email.id) {
            return Ok(false);
        }
        let env = serde_json::to_vec(&StoredEnvelope {
            from: email.from.clone(),
            to: email.to.clone(),
        })
        .map_err(|e| NotifyError::Corrupt(format!("envelope of {}: {e}", email.id)))?;
        write_atomic(&self.path(&email.id, MSG), &email.bytes)?;
        // The envelope is the commit marker: written after the message.
        write_atomic(&self.path(&email.id, ENV), &env)?;
        sync_dir(&self.inner.dir)?;
        Ok(true)
    }

    /// Reads a pending e-mail back. `Ok(None)` if it is not in the outbox
    /// (removed meanwhile).
    pub fn get(&self, id: &str) -> Result<Option<Email>, NotifyError> {
        check_id(id)?;
        let env_path = self.path(id, ENV);
        let env = match fs::read(&env_path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("reading {}", env_path.display()))(e)),
        };
        let env: StoredEnvelope = serde_json::from_slice(&env)
            .map_err(|e| NotifyError::Corrupt(format!("{}: {e}", env_path.display())))?;
        let msg_path = self.path(id, MSG);
        let bytes = match fs::read(&msg_path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("reading {}", msg_path.display()))(e)),
        };
        Ok(Some(Email {
            id: id.to_string(),
            from: env.from,
            to: env.to,
            bytes,
        }))
    }

    /// Ids waiting in the outbox (complete, not in the log), oldest first
    /// (ids sort in creation order by the caller's construction).
    pub fn pending(&self) -> Result<Vec<String>, NotifyError> {
        let ids = ids_with(&self.inner.dir, ENV)?;
        let st = self.state();
        Ok(ids
            .into_iter()
            .filter(|id| !st.logged.contains(id))
            .collect())
    }

    /// How many e-mails are pending.
    pub fn depth(&self) -> Result<usize, NotifyError> {
        Ok(self.pending()?.len())
    }

    /// Records that the server accepted `id`: appends to the notification log,
    /// fsyncs it, and only then deletes the outbox files.
    pub fn mark_sent(&self, id: &str, to: &[String], response: &str) -> Result<(), NotifyError> {
        check_id(id)?;
        let mut line = serde_json::to_vec(&LogEntry {
            id: id.to_string(),
            sent_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            to: to.to_vec(),
            response: response.to_string(),
        })
        .map_err(|e| NotifyError::Corrupt(format!("log entry of {id}: {e}")))?;
        line.push(b'\n');
        {
            let mut st = self.state();
            if !st.logged.contains(id) {
                let what = format!("appending to {}", self.inner.log_path.display());
                st.file.write_all(&line).map_err(io(what.clone()))?;
                st.file.sync_data().map_err(io(what))?;
                st.logged.insert(id.to_string());
            }
        }
        // The message first: a lone envelope of a logged id is cleaned at open
        // either way, and the log already says "sent".
        remove_if_exists(&self.path(id, MSG))?;
        remove_if_exists(&self.path(id, ENV))?;
        Ok(())
    }

    /// Moves `id` to `failed/` with a `.reason` file (permanent rejection).
    pub fn move_to_failed(&self, id: &str, reason: &str) -> Result<(), NotifyError> {
        check_id(id)?;
        let failed = &self.inner.failed_dir;
        let mut text = reason.trim_end().to_string();
        text.push('\n');
        write_atomic(&failed.join(format!("{id}.{REASON}")), text.as_bytes())?;
        // Message first, envelope last: an envelope alone in the outbox means
        // "move interrupted" to `open`, which finishes it.
        rename_if_exists(&self.path(id, MSG), &failed.join(format!("{id}.{MSG}")))?;
        rename_if_exists(&self.path(id, ENV), &failed.join(format!("{id}.{ENV}")))?;
        sync_dir(failed)?;
        sync_dir(&self.inner.dir)?;
        Ok(())
    }

    /// Moves the pending e-mails whose id is not in `keep` (the caller's
    /// durable state decides, at start-up) to `outbox/orphans/`, each logged at
    /// WARN: never deleted, an operator may want them. Returns how many.
    pub fn set_aside_orphans(&self, keep: &HashSet<String>) -> Result<usize, NotifyError> {
        let ids: Vec<String> = self
            .pending()?
            .into_iter()
            .filter(|id| !keep.contains(id))
            .collect();
        self.set_aside(&ids, "an outbox e-mail no saved decision lists (a crash before the save): moved aside, it will be decided again")
    }

    /// Moves pending e-mails that another owner will decide again (their
    /// stream was handed over before they were sent) to `outbox/orphans/`:
    /// the sender drops an id it no longer finds. Returns how many moved.
    pub fn withdraw<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a String>,
    ) -> Result<usize, NotifyError> {
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| self.contains(id))
            .cloned()
            .collect();
        self.set_aside(
            &ids,
            "an unsent e-mail of a stream handed over: withdrawn, its new owner decides it again",
        )
    }

    /// Moves `ids` to `outbox/orphans/` (never deleted: an operator may want
    /// them), each logged at WARN with `why`.
    fn set_aside(&self, ids: &[String], why: &str) -> Result<usize, NotifyError> {
        let orphans = self.inner.dir.join("orphans");
        for id in ids {
            fs::create_dir_all(&orphans).map_err(io(format!("creating {}", orphans.display())))?;
            rename_if_exists(&self.path(id, MSG), &orphans.join(format!("{id}.{MSG}")))?;
            rename_if_exists(&self.path(id, ENV), &orphans.join(format!("{id}.{ENV}")))?;
            tracing::warn!(id = %id, kept_in = %orphans.display(), "{why}");
        }
        if !ids.is_empty() {
            sync_dir(&orphans)?;
            sync_dir(&self.inner.dir)?;
        }
        Ok(ids.len())
    }

    /// Operator side: queues a failed e-mail to be sent again, by moving its
    /// files from `failed/` to `requeue/`; the daemon (running or at its next
    /// start) takes it from there ([`Outbox::take_requeued`]). Returns whether
    /// `id` was a failed e-mail.
    pub fn requeue_failed(&self, id: &str) -> Result<bool, NotifyError> {
        check_id(id)?;
        let failed = &self.inner.failed_dir;
        let requeue = self.inner.dir.join("requeue");
        if !failed.join(format!("{id}.{MSG}")).exists() {
            return Ok(false);
        }
        fs::create_dir_all(&requeue).map_err(io(format!("creating {}", requeue.display())))?;
        // message first, envelope last: `take_requeued` takes complete pairs
        rename_if_exists(
            &failed.join(format!("{id}.{MSG}")),
            &requeue.join(format!("{id}.{MSG}")),
        )?;
        rename_if_exists(
            &failed.join(format!("{id}.{ENV}")),
            &requeue.join(format!("{id}.{ENV}")),
        )?;
        remove_if_exists(&failed.join(format!("{id}.{REASON}")))?;
        sync_dir(&requeue)?;
        sync_dir(failed)?;
        Ok(true)
    }

    /// Daemon side: moves the requeued e-mails (complete pairs) back into the
    /// outbox and returns their ids, for the caller to record in its state and
    /// submit.
    pub fn take_requeued(&self) -> Result<Vec<String>, NotifyError> {
        let requeue = self.inner.dir.join("requeue");
        let envs: HashSet<String> = ids_with(&requeue, ENV)?.into_iter().collect();
        let mut out = Vec::new();
        for id in ids_with(&requeue, MSG)? {
            if !envs.contains(&id) {
                continue; // the operator's move is not finished
            }
            // message first, envelope last, as `put` does
            rename_if_exists(&requeue.join(format!("{id}.{MSG}")), &self.path(&id, MSG))?;
            rename_if_exists(&requeue.join(format!("{id}.{ENV}")), &self.path(&id, ENV))?;
            out.push(id);
        }
        if !out.is_empty() {
            sync_dir(&self.inner.dir)?;
            sync_dir(&requeue)?;
        }
        Ok(out)
    }

    /// Ids waiting in `requeue/` (operator tools).
    pub fn requeued(&self) -> Result<Vec<String>, NotifyError> {
        ids_with(&self.inner.dir.join("requeue"), MSG)
    }

    /// Ids in `failed/`, sorted.
    pub fn failed(&self) -> Result<Vec<String>, NotifyError> {
        ids_with(&self.inner.failed_dir, REASON)
    }

    /// The recorded reason of a failed e-mail.
    pub fn failure_reason(&self, id: &str) -> Result<Option<String>, NotifyError> {
        check_id(id)?;
        let p = self.inner.failed_dir.join(format!("{id}.{REASON}"));
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", p.display()))(e)),
        }
    }

    /// Reads the whole notification log (tests, tools).
    pub fn log_entries(&self) -> Result<Vec<LogEntry>, NotifyError> {
        let text = fs::read_to_string(&self.inner.log_path)
            .map_err(io(format!("reading {}", self.inner.log_path.display())))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("overdued-outbox-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn email(id: &str) -> Email {
        Email {
            id: id.into(),
            from: "a@x.vn".into(),
            to: vec!["b@y.vn".into()],
            bytes: b"Subject: t\r\n\r\nhi\r\n".to_vec(),
        }
    }

    #[test]
    fn put_pending_sent_and_reopen() {
        let d = tmp("basic");
        let (o, _) = Outbox::open(&d).unwrap();
        assert!(o.put(&email("0002")).unwrap());
        assert!(o.put(&email("0001")).unwrap());
        assert!(!o.put(&email("0001")).unwrap());
        assert!(o.put(&email("../x")).is_err());
        assert_eq!(o.pending().unwrap(), vec!["0001", "0002"]);
        assert_eq!(o.get("0001").unwrap().unwrap(), email("0001"));
        o.mark_sent("0001", &["b@y.vn".into()], "250 OK").unwrap();
        assert!(!o.put(&email("0001")).unwrap());
        assert_eq!(o.pending().unwrap(), vec!["0002"]);
        drop(o);
        let (o, rep) = Outbox::open(&d).unwrap();
        assert_eq!(rep.pending, 1);
        assert!(o.is_sent("0001"));
        assert_eq!(o.log_entries().unwrap()[0].response, "250 OK");
    }

    #[test]
    fn crash_leftovers_are_repaired() {
        let d = tmp("repair");
        let (o, _) = Outbox::open(&d).unwrap();
        for id in ["a1", "a2", "a3", "a4"] {
            o.put(&email(id)).unwrap();
        }
        o.mark_sent("a1", &[], "250 OK").unwrap();
        // Crash after the log append, before the delete of a1:
        fs::write(o.dir().join("a1.eml"), b"x").unwrap();
        fs::write(o.dir().join("a1.env"), b"{}").unwrap();
        // Interrupted put of a5 (message, no envelope):
        fs::write(o.dir().join("a5.eml"), b"x").unwrap();
        // Interrupted move of a3 (message moved, envelope not):
        fs::rename(o.dir().join("a3.eml"), o.failed_dir().join("a3.eml")).unwrap();
        // Torn log line for a2:
        let mut f = OpenOptions::new().append(true).open(o.log_path()).unwrap();
        f.write_all(br#"{"id":"a2","sent_at":"x","to":[],"respo"#)
            .unwrap();
        drop(o);
        let (o, rep) = Outbox::open(&d).unwrap();
        assert!(rep.torn_log_line);
        assert_eq!(
            (rep.already_sent, rep.incomplete, rep.failed_completed),
            (1, 1, 1)
        );
        assert_eq!(o.pending().unwrap(), vec!["a2", "a4"]);
        assert!(o.is_failed("a3"));
        // The log is appendable after the cut.
        o.mark_sent("a2", &[], "250 OK").unwrap();
        drop(o);
        let (o, _) = Outbox::open(&d).unwrap();
        assert_eq!(o.pending().unwrap(), vec!["a4"]);
        assert_eq!(o.log_entries().unwrap().len(), 2);
    }

    #[test]
    fn failed_and_orphans() {
        let d = tmp("failed");
        let (o, _) = Outbox::open(&d).unwrap();
        for id in ["b1", "b2", "b3"] {
            o.put(&email(id)).unwrap();
        }
        o.move_to_failed("b1", "550 no such user").unwrap();
        assert_eq!(o.failed().unwrap(), vec!["b1"]);
        assert!(o.failure_reason("b1").unwrap().unwrap().contains("550"));
        assert!(!o.put(&email("b1")).unwrap());
        let keep: HashSet<String> = ["b3".to_string()].into();
        assert_eq!(o.set_aside_orphans(&keep).unwrap(), 1);
        assert_eq!(o.pending().unwrap(), vec!["b3"]);
        assert_eq!(o.depth().unwrap(), 1);
        // set aside, not deleted
        assert!(d.join("outbox/orphans/b2.eml").exists());
        assert!(d.join("outbox/orphans/b2.env").exists());
    }

    #[test]
    fn a_failed_email_requeued_by_an_operator_goes_back_to_the_outbox() {
        let d = tmp("requeue");
        let (o, _) = Outbox::open(&d).unwrap();
        for id in ["c1", "c2"] {
            o.put(&email(id)).unwrap();
            o.move_to_failed(id, "550 mailbox full").unwrap();
        }
        assert!(o.requeue_failed("c1").unwrap());
        assert!(!o.requeue_failed("nope").unwrap());
        assert_eq!(o.failed().unwrap(), vec!["c2"]);
        assert_eq!(o.requeued().unwrap(), vec!["c1"]);
        // the orphan sweep of a start does not touch it
        assert_eq!(o.set_aside_orphans(&HashSet::new()).unwrap(), 0);
        assert_eq!(o.take_requeued().unwrap(), vec!["c1"]);
        assert_eq!(o.pending().unwrap(), vec!["c1"]);
        assert!(o.get("c1").unwrap().is_some());
        assert!(o.requeued().unwrap().is_empty());
        assert!(!o.is_failed("c1"));
        // it survives a reopen as a pending e-mail
        drop(o);
        let (o, _) = Outbox::open(&d).unwrap();
        assert_eq!(o.pending().unwrap(), vec!["c1"]);
    }

    /// Fills the log with `n` sent e-mails `s000..`, returns its size.
    fn sent_many(o: &Outbox, n: usize) -> u64 {
        for i in 0..n {
            let id = format!("s{i:03}");
            o.put(&email(&id)).unwrap();
            o.mark_sent(&id, &["b@y.vn".into()], "250 2.0.0 OK")
                .unwrap();
        }
        fs::metadata(o.log_path()).unwrap().len()
    }

    fn lines(p: &Path) -> Vec<String> {
        fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn log_rotates_above_the_threshold_keeping_what_is_needed() {
        let d = tmp("rotate");
        let (o, _) = Outbox::open(&d).unwrap();
        let size = sent_many(&o, 20);
        o.put(&email("p1")).unwrap();
        let log = o.log_path().to_path_buf();
        let old = with_suffix(&log, ".1");
        drop(o);

        // Below the threshold: nothing happens.
        let (o, rep) = Outbox::open_with(&d, size).unwrap();
        assert!(!rep.log_rotated);
        assert!(!old.exists());
        drop(o);

        // Above it: the old log becomes .1, whole; the fresh one is empty
        // (no logged id has outbox files after the repair); the pending
        // e-mail is untouched.
        let before = fs::read(&log).unwrap();
        let (o, rep) = Outbox::open_with(&d, size - 1).unwrap();
        assert!(rep.log_rotated);
        assert_eq!((rep.log_lines_kept, rep.pending), (0, 1));
        assert_eq!(fs::read(&old).unwrap(), before);
        assert!(lines(&log).is_empty());
        assert_eq!(o.pending().unwrap(), vec!["p1"]);
        assert!(!o.is_sent("s000"));
        // Appends go to the fresh log, not to the rotated file.
        o.mark_sent("p1", &["b@y.vn".into()], "250 OK").unwrap();
        assert_eq!(lines(&log).len(), 1);
        assert_eq!(fs::read(&old).unwrap(), before);
        for f in [".new", ".1.new"] {
            assert!(!with_suffix(&log, f).exists(), "{f} left behind");
        }
        drop(o);
        let (o, rep) = Outbox::open_with(&d, 1 << 20).unwrap();
        assert!(o.is_sent("p1") && rep.pending == 0);
        drop(o);

        // A second rotation replaces the older .1.
        let (o, _) = Outbox::open(&d).unwrap();
        sent_many(&o, 3);
        drop(o);
        let (_, rep) = Outbox::open_with(&d, 10).unwrap();
        assert!(rep.log_rotated);
        assert_eq!(lines(&old).len(), 4, "p1 + 3: the older .1 was replaced");
    }

    #[test]
    fn rotation_keeps_the_lines_of_ids_with_outbox_files() {
        let d = tmp("rotate-keep");
        let (o, _) = Outbox::open(&d).unwrap();
        sent_many(&o, 5);
        let log = o.log_path().to_path_buf();
        // A bad line in the middle is history: it stays in .1 only.
        OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        drop(o);
        let keep: HashSet<String> = ["s001".to_string(), "s003".to_string()].into();
        assert_eq!(rotate_log(&log, &keep).unwrap(), 2);
        let kept = lines(&log);
        assert_eq!(kept.len(), 2);
        assert!(kept[0].contains(r#""id":"s001""#) && kept[0].contains("250 2.0.0 OK"));
        assert!(kept[1].contains(r#""id":"s003""#));
        assert_eq!(lines(&with_suffix(&log, ".1")).len(), 6);
        let (o, rep) = Outbox::open(&d).unwrap();
        assert!(o.is_sent("s001") && o.is_sent("s003") && !o.is_sent("s002"));
        assert_eq!(rep.bad_log_lines, 0);
    }

    #[test]
    fn interrupted_rotations_are_harmless() {
        let d = tmp("rotate-crash");
        let (o, _) = Outbox::open(&d).unwrap();
        let size = sent_many(&o, 10);
        let log = o.log_path().to_path_buf();
        drop(o);
        let full = fs::read(&log).unwrap();

        // Crash after step 1 (fresh log written, nothing renamed) and in the
        // middle of step 2 (`.1.new` made): the log itself is the old one.
        fs::write(with_suffix(&log, ".new"), b"").unwrap();
        fs::hard_link(&log, with_suffix(&log, ".1.new")).unwrap();
        let (o, rep) = Outbox::open_with(&d, size).unwrap();
        assert!(!rep.log_rotated);
        assert!(o.is_sent("s009"), "the log still answers for every id");
        assert!(!with_suffix(&log, ".new").exists());
        assert!(!with_suffix(&log, ".1.new").exists());
        drop(o);

        // Crash after step 2 (`.1` is the very same file as the log): the
        // rotation is redone, and leaves no stray link.
        fs::hard_link(&log, with_suffix(&log, ".1")).unwrap();
        let (o, rep) = Outbox::open_with(&d, size - 1).unwrap();
        assert!(rep.log_rotated);
        assert_eq!(fs::read(with_suffix(&log, ".1")).unwrap(), full);
        assert!(!with_suffix(&log, ".1.new").exists());
        assert!(lines(&log).is_empty());
        drop(o);

        // A torn tail is cut before the size is compared and before rotating.
        let (o, _) = Outbox::open(&d).unwrap();
        let size = sent_many(&o, 2);
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&vec![b'x'; 4096]).unwrap();
        drop((f, o));
        let (_, rep) = Outbox::open_with(&d, size).unwrap();
        assert!(rep.torn_log_line && !rep.log_rotated);
    }

    #[test]
    fn a_failed_rotation_keeps_the_log_and_the_outbox_working() {
        let d = tmp("rotate-fail");
        let (o, _) = Outbox::open(&d).unwrap();
        let size = sent_many(&o, 5);
        o.put(&email("p1")).unwrap();
        let log = o.log_path().to_path_buf();
        drop(o);
        let full = fs::read(&log).unwrap();
        // `.1` cannot be replaced: a non-empty folder stands in its way.
        fs::create_dir_all(with_suffix(&log, ".1").join("x")).unwrap();
        let (o, rep) = Outbox::open_with(&d, size - 1).unwrap();
        assert!(!rep.log_rotated);
        assert!(rep.log_rotation_error.is_some(), "{rep:?}");
        assert_eq!(fs::read(&log).unwrap(), full, "the log is untouched");
        assert!(o.is_sent("s004"));
        assert_eq!(o.pending().unwrap(), vec!["p1"]);
        o.mark_sent("p1", &[], "250 OK").unwrap();
        assert_eq!(lines(&log).len(), 6);
        drop(o);
        // Once the obstacle is gone, the next open rotates.
        fs::remove_dir_all(with_suffix(&log, ".1")).unwrap();
        let (_, rep) = Outbox::open_with(&d, size - 1).unwrap();
        assert!(rep.log_rotated && rep.log_rotation_error.is_none());
        assert_eq!(lines(&with_suffix(&log, ".1")).len(), 6);
        assert!(!with_suffix(&log, ".new").exists());
    }
}
