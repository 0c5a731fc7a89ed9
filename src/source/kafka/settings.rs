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
    /// The state topic (`None`: `<group_id>.state`).
    pub state_topic: Option<String>,
    /// Topic configs for creating the state topic (over `cleanup.policy=compact`).
    pub state_topic_config: Vec<(String, String)>,
    /// Replication factor for creating the state topic (-1: the broker's default).
    pub state_topic_replication: i32,
    /// How often each partition's snapshot is written (instant units; 0 = never).
    pub snapshot_interval: i64,
    /// `group.instance.id` (static membership; `None`: a plain member). The
    /// daemon's settings replace `auto` by the host name and the state folder.
    pub instance_id: Option<String>,
    /// `session.timeout.ms`: how long a silent member keeps its partitions.
    pub session_timeout: i64,
    /// `assignment = "all"`: no consumer group; this instance takes every
    /// partition at start-up (a single instance restarts without waiting for
    /// a group; two such instances would both alert).
    pub standalone: bool,
    /// The notify topic: alert transitions re-keyed by unit, e-mailed by the
    /// notifier consumer group `<group_id>.notify` (`None`: each instance
    /// e-mails what its own partitions fire).
    pub notify_topic: Option<String>,
    /// How often each notify partition's notifier state is written (instant
    /// units): what a new owner may e-mail again after a crash.
    pub notify_snapshot_interval: i64,
}

impl KafkaConfig {
    /// The notify stage's view of the cluster: the notify topic, its own
    /// consumer group and state topic (`<group_id>.notify`,
    /// `<group_id>.notify.state`). `None` without `notify_topic`.
    pub fn notify_side(&self) -> Option<KafkaConfig> {
        let topic = self.notify_topic.clone()?;
        Some(KafkaConfig {
            topic,
            group_id: format!("{}.notify", self.group_id),
            state_topic: Some(format!("{}.notify.state", self.group_id)),
            snapshot_interval: self.notify_snapshot_interval,
            instance_id: self.instance_id.as_ref().map(|i| format!("{i}.notify")),
            notify_topic: None,
            ..self.clone()
        })
    }
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
    state_topic: Option<Spanned<String>>,
    #[serde(default)]
    state_topic_config: std::collections::BTreeMap<String, Spanned<toml::Value>>,
    state_topic_replication: Option<Spanned<i64>>,
    snapshot_interval: Option<Spanned<String>>,
    instance_id: Option<Spanned<String>>,
    session_timeout: Option<Spanned<String>>,
    assignment: Option<Spanned<String>>,
    notify_topic: Option<Spanned<String>>,
    notify_snapshot_interval: Option<Spanned<String>>,
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
        "group.instance.id" => "from `kafka.instance_id`",
        "session.timeout.ms" => "from `kafka.session_timeout`",
        "heartbeat.interval.ms" => "a third of `kafka.session_timeout`",
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
    let duration = |d: &Option<Spanned<String>>, field: &str, default: i64, min: i64| match d {
        None => Ok(default),
        Some(d) => match parse_duration(d.get_ref()) {
            Some(v) if v >= min => Ok(v),
            _ => src.err(
                d.span(),
                field,
                format!(
                    "{:?} is not a duration of at least {} s, like 30s or 2m",
                    d.get_ref(),
                    min / SECOND
                ),
            ),
        },
    };
    let mut state_topic_config = Vec::new();
    for (key, v) in &k.state_topic_config {
        let value = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return src.err(
                    v.span(),
                    &format!("kafka.state_topic_config.{key}"),
                    "must be a string, integer or boolean",
                )
            }
        };
        state_topic_config.push((key.clone(), value));
    }
    let state_topic_replication = match &k.state_topic_replication {
        None => -1,
        Some(r) => match i32::try_from(*r.get_ref()) {
            Ok(v) if v == -1 || v >= 1 => v,
            _ => {
                return src.err(
                    r.span(),
                    "kafka.state_topic_replication",
                    "must be -1 (the broker's default) or at least 1",
                )
            }
        },
    };
    let snapshot_interval = match &k.snapshot_interval {
        Some(d) if parse_duration(d.get_ref()) == Some(0) => 0,
        d => duration(d, "kafka.snapshot_interval", 60 * SECOND, SECOND)?,
    };
    Ok(KafkaConfig {
        state_topic: k
            .state_topic
            .as_ref()
            .map(|_| non_empty(src, &k.state_topic, "kafka.state_topic", ""))
            .transpose()?,
        state_topic_config,
        state_topic_replication,
        snapshot_interval,
        instance_id: match &k.instance_id {
            None => None,
            Some(v) => {
                let id = v.get_ref();
                let ok = (1..=249).contains(&id.len())
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if !ok {
                    return src.err(
                        v.span(),
                        "kafka.instance_id",
                        "must be 1 to 249 characters of letters, digits, '.', '_' and '-'",
                    );
                }
                Some(id.clone())
            }
        },
        session_timeout: duration(
            &k.session_timeout,
            "kafka.session_timeout",
            45 * SECOND,
            SECOND,
        )?,
        standalone: match &k.assignment {
            None => false,
            Some(a) => match a.get_ref().as_str() {
                "group" => false,
                "all" => true,
                other => {
                    return src.err(
                        a.span(),
                        "kafka.assignment",
                        format!("{other:?} is not \"group\" (a consumer group, the default) or \"all\" (one instance, every partition, no group)"),
                    )
                }
            },
        },
        notify_topic: k
            .notify_topic
            .as_ref()
            .map(|_| non_empty(src, &k.notify_topic, "kafka.notify_topic", ""))
            .transpose()?,
        notify_snapshot_interval: duration(
            &k.notify_snapshot_interval,
            "kafka.notify_snapshot_interval",
            5 * SECOND,
            SECOND,
        )?,
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
