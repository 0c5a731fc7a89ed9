//! Output writers shared by `replay` and `run`: the alert transition line (one
//! NDJSON object, the same bytes in the alerts file and on the alerts topic), the
//! alerts file ([`AlertsFile`]) and `.eml` files ([`eml`]). The daemon
//! produces the same lines to the alerts topic
//! (`source::kafka::notify_topic::Publisher`).

pub mod eml;

use crate::engine::{Engine, Transition};
use crate::time::write_rfc3339;

/// Writes one `--alerts` line.
pub fn write_alert(out: &mut Vec<u8>, engine: &Engine, t: &Transition) {
    out.extend_from_slice(b"{\"at\": \"");
    write_rfc3339(out, t.at);
    out.extend_from_slice(b"\", \"record_id\": ");
    let _ = serde_json::to_writer(&mut *out, engine.record_id(t.slot));
    out.extend_from_slice(b", \"kind\": \"");
    out.extend_from_slice(t.kind.as_str().as_bytes());
    out.extend_from_slice(if t.firing {
        b"\", \"state\": \"firing\", \"unit\": "
    } else {
        b"\", \"state\": \"resolved\", \"unit\": "
    });
    let _ = serde_json::to_writer(&mut *out, engine.unit_code(t.unit));
    out.extend_from_slice(b"}\n");
}

/// The alerts file (`[alerts] file`): alert lines appended, then synced before
/// anything that depends on them (offsets, watermarks) is saved.
pub struct AlertsFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    len: u64,
}

impl AlertsFile {
    /// Opens (creates) `path` for appending, first repairing what a run that
    /// stopped between a write and the save of its watermarks left behind:
    /// * `durable` (the length the saved watermarks name): anything past it is
    ///   cut off — those transitions are output again from the saved offsets, so
    ///   each is written exactly once (a full disk leaves half a line there);
    /// * without a saved length, only a partial last line is cut off.
    ///
    /// Every cut is logged at WARN with the bytes dropped.
    pub fn open(path: &std::path::Path, durable: Option<u64>) -> std::io::Result<AlertsFile> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let mut len = file.metadata()?.len();
        let keep = match durable {
            Some(d) if len > d => Some(d),
            Some(d) if len < d => {
                tracing::warn!(file = %path.display(), length = len, saved_length = d, "the alerts file is shorter than when the state was saved (edited or replaced?); appending to it");
                None
            }
            Some(_) => None,
            None if len > 0 => {
                // cut back to the end of the last complete line
                let mut tail = Vec::new();
                let from = len.saturating_sub(1 << 20);
                file.seek(SeekFrom::Start(from))?;
                file.read_to_end(&mut tail)?;
                match tail.iter().rposition(|&b| b == b'\n') {
                    Some(i) if i as u64 + 1 + from == len => None,
                    Some(i) => Some(from + i as u64 + 1),
                    None if from == 0 => Some(0),
                    // a last line over 1 MiB: not one of ours; leave it
                    None => None,
                }
            }
            None => None,
        };
        if let Some(k) = keep {
            file.set_len(k)?;
            file.sync_data()?;
            tracing::warn!(file = %path.display(), dropped_bytes = len - k, "the end of the alerts file was written by a run that did not save its state: cut off (those transitions are written again)");
            len = k;
        }
        Ok(AlertsFile {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    /// Appends complete lines and syncs them to disk.
    pub fn append_synced(&mut self, lines: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.file.write_all(lines)?;
        self.file.sync_data()?;
        self.len += lines.len() as u64;
        Ok(())
    }

    /// The file's length after the last successful append.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::AlertsFile;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("overdued-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_alerts_file_is_cut_back_to_its_saved_length() {
        let d = dir("saved");
        let p = d.join("alerts.ndjson");
        // two lines saved, then a line and half of another written by a run
        // that never saved its watermarks (a full disk)
        std::fs::write(&p, b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":").unwrap();
        let mut f = AlertsFile::open(&p, Some(16)).unwrap();
        assert_eq!(f.len(), 16);
        f.append_synced(b"{\"a\":3}\n").unwrap();
        assert_eq!(f.len(), 24);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        // shorter than saved: kept as is
        let f = AlertsFile::open(&p, Some(1000)).unwrap();
        assert_eq!(f.len(), 24);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn without_a_saved_length_only_a_partial_last_line_is_cut() {
        let d = dir("partial");
        let p = d.join("alerts.ndjson");
        std::fs::write(&p, b"{\"a\":1}\n{\"a\"").unwrap();
        let f = AlertsFile::open(&p, None).unwrap();
        assert_eq!(f.len(), 8);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n");
        // complete lines are left alone
        let f = AlertsFile::open(&p, None).unwrap();
        assert_eq!(f.len(), 8);
        // a lone fragment goes entirely
        std::fs::write(&p, b"{\"a").unwrap();
        assert_eq!(AlertsFile::open(&p, None).unwrap().len(), 0);
        // a new file
        assert!(AlertsFile::open(&d.join("new.ndjson"), None)
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
