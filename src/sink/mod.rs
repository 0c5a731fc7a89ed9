//! Output writers shared by `replay` and `run`: the alert transition line (one
//! NDJSON object, the same bytes in the alerts file and on the alerts topic), the
//! alerts file ([`AlertsFile`]), the alerts topic ([`queue_on_topic`]) and `.eml`
//! files ([`eml`]).

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
}

impl AlertsFile {
    /// Opens (creates) `path` for appending.
    pub fn open(path: &std::path::Path) -> std::io::Result<AlertsFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AlertsFile { file })
    }

    /// Appends complete lines and syncs them to disk.
    pub fn append_synced(&mut self, lines: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.file.write_all(lines)?;
        self.file.sync_data()
    }
}

/// Queues one alert line (without its newline) on the alerts topic, keyed by
/// record id so that a record's transitions stay in order. A refusal to queue
/// is logged; the alerts file stays the record of what fired.
pub fn queue_on_topic(
    producer: &rdkafka::producer::BaseProducer<crate::source::kafka::Deliveries>,
    topic: &str,
    record_id: &str,
    line: &[u8],
) {
    let rec = rdkafka::producer::BaseRecord::<[u8], [u8]>::to(topic)
        .key(record_id.as_bytes())
        .payload(line);
    if let Err((e, _)) = producer.send(rec) {
        tracing::error!(error = %e, "cannot queue an alert for the alerts topic");
    }
}
