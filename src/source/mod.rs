//! Where events come from: NDJSON files for `replay`, Kafka for `run`.

pub mod kafka;
pub mod replay;
