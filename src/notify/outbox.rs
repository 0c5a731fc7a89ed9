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
//! Permanent SMTP rejections are moved to `outbox/failed/` with a `.reason`
//! file: never silently dropped, never retried.
//!
//! One process owns a state folder. An `Outbox` is a cheap handle (clone it):
//! the daemon's loop `put`s while the sender thread logs and deletes.

use super::{Email, NotifyError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

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
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing folder {}", dir.display())))
}

/// Writes `bytes` to `path` atomically: temporary file in the same folder,
/// fsync, rename. The caller fsyncs the folder (once for several files).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NotifyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(io(format!("writing {}", path.display())))
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
    /// temporary files, a torn last log line.
    pub fn open(state_dir: &Path) -> Result<(Outbox, OpenReport), NotifyError> {
        let dir = state_dir.join("outbox");
        let failed_dir = dir.join("failed");
        let log_path = state_dir.join("notifications.log");
        fs::create_dir_all(&failed_dir)
            .map_err(io(format!("creating {}", failed_dir.display())))?;

        let mut report = OpenReport::default();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let (logged, valid_len) = read_log(&mut file, &mut report)
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

    /// Deletes the pending e-mails whose id is not in `keep` (the caller's
    /// durable state decides, at start-up); returns how many.
    pub fn remove_orphans(&self, keep: &HashSet<String>) -> Result<usize, NotifyError> {
        let mut n = 0;
        for id in self.pending()? {
            if !keep.contains(&id) {
                remove_if_exists(&self.path(&id, ENV))?;
                remove_if_exists(&self.path(&id, MSG))?;
                n += 1;
            }
        }
        if n > 0 {
            sync_dir(&self.inner.dir)?;
        }
        Ok(n)
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
        assert_eq!(o.remove_orphans(&keep).unwrap(), 1);
        assert_eq!(o.pending().unwrap(), vec!["b3"]);
        assert_eq!(o.depth().unwrap(), 1);
    }
}
