//! The daemon's state files, and the one crash-safe way they are written: a
//! temporary file beside the target, fsync, rename over the target, fsync of the
//! folder (so the rename itself survives a power cut). Readers see the old file
//! or the new one, never a mix.
//!
//! Files: `watermarks.json` (per partition the offset up to which output was
//! written and the wall instant up to which timers fired, with the notifier's
//! state and the outbox ids decided but not yet confirmed sent, all in one write)
//! and `silences.json` (the silences made through the API).

use crate::alert::Silence;
use crate::time::Instant;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A state file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Creating, writing, syncing or renaming failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An unreadable state file could not be moved aside (so it would be
    /// overwritten, and what it held lost for good).
    #[error("cannot read {} and cannot move it aside: {source}", path.display())]
    SetAside {
        /// The file.
        path: PathBuf,
        /// Why the rename failed.
        source: std::io::Error,
    },
    /// The value could not be encoded.
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// The folder holding `path` (`.` for a bare file name, whose parent is "").
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or a file creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder
/// (`.tmp-<pid>-<name>`: a dot, so never taken for a state file), fsync, rename.
/// The folder is not synced: a caller writing several files syncs it once
/// ([`sync_dir`]); [`write_atomic`] does both.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = folder_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Writes `bytes` to `path` atomically and durably (the rename included).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    write_synced(path, bytes).map_err(err)?;
    sync_dir(folder_of(path)).map_err(err)
}

fn write_json<T: Serialize>(path: &Path, v: &T, pretty: bool) -> Result<(), StateError> {
    let bytes = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    }
    .map_err(|source| StateError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Reads a state file. Missing: `None`. Unreadable (not a file, not UTF-8, not
/// the expected JSON, truncated): the file is renamed `<name>.corrupt-<now>` for a
/// human, the reason logged at ERROR, and `None` returned, so that nothing ever
/// writes over it. Only a failure to move it aside is an error.
fn read_state<T: serde::de::DeserializeOwned>(
    path: &Path,
    now: Instant,
    what: &str,
) -> Result<Option<T>, StateError> {
    let why = match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => e.to_string(),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => return Ok(Some(v)),
            Err(e) => e.to_string(),
        },
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{now}"));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside).map_err(|source| StateError::SetAside {
        path: path.to_path_buf(),
        source,
    })?;
    tracing::error!(file = %path.display(), kept_as = %aside.display(), error = %why, "cannot read {what}; kept aside, starting without it");
    Ok(None)
}

/// What a restart resumes from (`watermarks.json`).
#[derive(Serialize, Deserialize, Default)]
pub struct Watermarks {
    /// partition → (next offset output, wall instant up to which timers fired)
    pub partitions: BTreeMap<i32, (i64, Instant)>,
    /// The notification state as of these watermarks (saved in the same atomic
    /// write, so after a crash the transitions seen again are exactly those it
    /// has not seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifier: Option<serde_json::Value>,
    /// E-mails decided and stored in the outbox, not yet confirmed sent: what a
    /// restart must send (an outbox file not listed here was written by a run
    /// that crashed before saving its decision, and is decided again).
    #[serde(default)]
    pub outbox: BTreeSet<String>,
    /// The alerts file and its length when these watermarks were saved: what is
    /// past that length was written by a run that did not get to save, and is
    /// written again (from the saved offsets) after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts_file: Option<(PathBuf, u64)>,
    /// Webhook batches below this sequence were spooled for these watermarks;
    /// a spool file at or past it was written by a run that did not get to
    /// save, and its transitions come again from the source.
    #[serde(default)]
    pub webhook_seq: u64,
}

impl Watermarks {
    const FILE: &'static str = "watermarks.json";

    /// Reads `dir/watermarks.json`. None = start from nothing (the committed
    /// offsets still say what was output); unreadable = kept aside and logged,
    /// then the same.
    pub fn load(dir: &Path, now: Instant) -> Result<Watermarks, StateError> {
        Ok(read_state(&dir.join(Self::FILE), now, "the watermarks")?.unwrap_or_default())
    }

    /// Writes `dir/watermarks.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        write_json(&dir.join(Self::FILE), self, false)
    }
}

/// Loads the silences made through the API. An unreadable file (or a folder in
/// its place) is renamed aside (`.corrupt-<instant>`) for a human and logged, not
/// overwritten by the next change.
pub fn load_silences(path: &Path, now: Instant) -> Result<Vec<Silence>, StateError> {
    Ok(read_state(path, now, "the silences")?.unwrap_or_default())
}

/// Saves the API's silences atomically.
pub fn save_silences(path: &Path, list: &[Silence]) -> Result<(), StateError> {
    write_json(path, &list, true)
}

/// Loads the acknowledgements (`acknowledgements.json`); unreadable: kept aside
/// and logged, like the silences.
pub fn load_acks(path: &Path, now: Instant) -> Result<Vec<crate::alert::Ack>, StateError> {
    Ok(read_state(path, now, "the acknowledgements")?.unwrap_or_default())
}

/// Saves the acknowledgements atomically (before a page says "acknowledged").
pub fn save_acks(path: &Path, list: &[&crate::alert::Ack]) -> Result<(), StateError> {
    write_json(path, &list, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("overdued-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.json");
        write_atomic(&p, b"first, longer content").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn watermarks_round_trip_and_missing_file_is_empty() {
        let dir = std::env::temp_dir().join(format!("overdued-marks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Watermarks::load(&dir, 1).unwrap().partitions.is_empty());
        let mut w = Watermarks::default();
        w.partitions.insert(3, (42, 7));
        w.outbox.insert("e1".into());
        w.save(&dir).unwrap();
        let r = Watermarks::load(&dir, 1).unwrap();
        assert_eq!(r.partitions[&3], (42, 7));
        assert!(r.outbox.contains("e1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn corrupt_files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".corrupt-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn unreadable_state_files_are_kept_aside_not_overwritten() {
        let dir = std::env::temp_dir().join(format!("overdued-corrupt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // silences.json that is not UTF-8
        let sil = dir.join("silences.json");
        std::fs::write(&sil, b"[{\"id\": \"s-\xff\"}]").unwrap();
        assert!(load_silences(&sil, 7).unwrap().is_empty());
        assert!(
            !sil.exists(),
            "the unreadable file must not stay where a save would overwrite it"
        );
        assert_eq!(corrupt_files_in(&dir), ["silences.json.corrupt-7"]);
        assert_eq!(
            std::fs::read(dir.join("silences.json.corrupt-7")).unwrap(),
            b"[{\"id\": \"s-\xff\"}]"
        );
        // a folder in its place
        std::fs::create_dir_all(&sil).unwrap();
        assert!(load_silences(&sil, 8).unwrap().is_empty());
        assert!(!sil.exists());
        assert!(dir.join("silences.json.corrupt-8").is_dir());
        // a save after that writes a fresh file, the kept ones stay
        save_silences(&sil, &[]).unwrap();
        assert_eq!(corrupt_files_in(&dir).len(), 2);
        // a truncated watermarks.json
        std::fs::write(dir.join("watermarks.json"), b"{\"partitions\": {\"0\": [12").unwrap();
        assert!(Watermarks::load(&dir, 9).unwrap().partitions.is_empty());
        assert!(dir.join("watermarks.json.corrupt-9").exists());
        assert!(!dir.join("watermarks.json").exists());
        // missing is not corrupt
        assert!(load_silences(&dir.join("none.json"), 10)
            .unwrap()
            .is_empty());
        assert_eq!(corrupt_files_in(&dir).len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
