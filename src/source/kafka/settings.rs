//! The Kafka source's settings (`[kafka]`): brokers, topics, group and the
//! librdkafka properties passed through (values may be secrets), validated.

use crate::config::common::{non_empty, parse_duration, ConfigError, Secret, Src};
use crate::time::SECOND;
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
    /// A partition whose broker has not answered for this long, or that has lag
    /// and has not moved for this long, is stalled (instant units).
    pub stall_after: i64,
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
    properties: std::collections::BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    allow_finite_retention: bool,
    stall_after: Option<Spanned<String>>,
}

/// The librdkafka properties overdued sets itself, and why: a value in
/// `[kafka.properties]` would silently break what the daemon relies on.
fn managed(key: &str) -> Option<&'static str> {
    Some(match key {
        "bootstrap.servers" | "metadata.broker.list" => "from `kafka.brokers`",
        "group.id" => "from `kafka.group_id`",
        "enable.auto.commit" | "enable.auto.offset.store" => {
            "offsets are committed only after their effects are durable"
        }
        "auto.offset.reset" => "a partition is always rebuilt from its beginning",
        "enable.partition.eof" => "a partition's end ends its catch-up",
        "acks" => "dead letters wait for every in-sync replica",
        _ => return None,
    })
}

/// Validates `[kafka]` (defaults when absent); secret values are resolved
/// against `base`.
pub fn validate(src: &Src<'_>, base: &Path, k: &RawKafka) -> Result<KafkaConfig, ConfigError> {
    let mut properties = Vec::new();
    for (key, v) in &k.properties {
        let field = format!("kafka.properties.{key}");
        if let Some(why) = managed(key) {
            return src.err(
                v.span(),
                &field,
                format!("is set by overdued ({why}); remove it"),
            );
        }
        let value = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => return src.err(v.span(), &field, "must be a string, number or boolean"),
        };
        if let Some(secret) = src.secret(&value, base, Some(v.span()), &field)? {
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
        stall_after: match &k.stall_after {
            None => 30 * SECOND,
            Some(d) => match parse_duration(d.get_ref()) {
                Some(v) if v >= SECOND => v,
                _ => {
                    return src.err(
                        d.span(),
                        "kafka.stall_after",
                        format!(
                            "{:?} is not a duration of at least 1s, like 30s or 2m",
                            d.get_ref()
                        ),
                    )
                }
            },
        },
    })
}
