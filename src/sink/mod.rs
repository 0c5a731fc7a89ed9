//! Output writers shared by `replay` and `run`: the alert transition line (one
//! NDJSON object, the same bytes in the alerts file and on the alerts topic) and
//! `.eml` files ([`eml`]).

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
