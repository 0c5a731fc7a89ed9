//! The Kafka source's settings (`[kafka]`): brokers, topics, group and the
//! librdkafka properties passed through (values may be secrets), validated.

use crate::config::common::{non_empty, ConfigError, Secret, Src};
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

/// `[kafka]`: the daemon's source (docs/spec.md §7).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// The record-event topic.
    pub topic: String,
    /// Consumer group.
    pub group_id: String,
    /// Where rejected messages go.
    pub dead_letter_topic: String,
    /// librdkafka properties passed through (values may be secrets).
    pub properties: Vec<(String, Secret)>,
    /// Start even when the topic's retention or compaction deletes events.
    pub allow_finite_retention: bool,
}

/// `[kafka]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    brokers: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    group_id: Option<Spanned<String>>,
    dead_letter_topic: Option<Spanned<String>>,
    #[serde(default)]
    properties: toml::Table,
    #[serde(default)]
    allow_finite_retention: bool,
}

/// Validates `[kafka]` (defaults when absent); secret values are resolved
/// against `base`.
pub fn validate(src: &Src<'_>, base: &Path, k: &RawKafka) -> Result<KafkaConfig, ConfigError> {
    let mut properties = Vec::new();
    for (key, v) in &k.properties {
        let field = format!("kafka.properties.{key}");
        let value = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(ConfigError {
                    file: src.path.to_path_buf(),
                    line: None,
                    field: Some(field),
                    message: "must be a string, number or boolean".into(),
                })
            }
        };
        if let Some(secret) = src.secret(&value, base, None, &field)? {
            properties.push((key.clone(), secret));
        }
    }
    Ok(KafkaConfig {
        brokers: non_empty(src, &k.brokers, "kafka.brokers", "127.0.0.1:9092")?,
        topic: non_empty(src, &k.topic, "kafka.topic", "records.events")?,
        group_id: non_empty(src, &k.group_id, "kafka.group_id", "overdued")?,
        dead_letter_topic: non_empty(
            src,
            &k.dead_letter_topic,
            "kafka.dead_letter_topic",
            "records.events.dlq",
        )?,
        properties,
        allow_finite_retention: k.allow_finite_retention,
    })
}
