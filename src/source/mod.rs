//! Where events come from: NDJSON files for `replay` (the Kafka consumer comes
//! with the daemon).

pub mod replay;
