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
    /// The value could not be encoded.
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
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
    sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(err)
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
}

impl Watermarks {
    const FILE: &'static str = "watermarks.json";

    /// Reads `dir/watermarks.json`; none (or unreadable) = start from nothing.
    pub fn load(dir: &Path) -> Watermarks {
        std::fs::read_to_string(dir.join(Self::FILE))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// Writes `dir/watermarks.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        write_json(&dir.join(Self::FILE), self, false)
    }
}

/// Loads the silences made through the API. An unreadable file is renamed aside
/// (`.corrupt-<instant>`) for a human, not overwritten by the next change.
pub fn load_silences(path: &Path, now: Instant) -> Vec<Silence> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s).unwrap_or_else(|e| {
            let aside = path.with_extension(format!("json.corrupt-{now}"));
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::error!(file = %path.display(), kept_as = %aside.display(), moved, error = %e, "cannot read silences; starting without them");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

/// Saves the API's silences atomically.
pub fn save_silences(path: &Path, list: &[Silence]) -> Result<(), StateError> {
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
        assert!(Watermarks::load(&dir).partitions.is_empty());
        let mut w = Watermarks::default();
        w.partitions.insert(3, (42, 7));
        w.outbox.insert("e1".into());
        w.save(&dir).unwrap();
        let r = Watermarks::load(&dir);
        assert_eq!(r.partitions[&3], (42, 7));
        assert!(r.outbox.contains("e1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
