//! What the source topic must keep. With snapshots (the default) a partition
//! starts from its latest snapshot in the state topic, so the topic needs only
//! the events since then: a time retention of at least [`MIN_RETENTION_MS`]
//! (a day: snapshots are minutes apart, and a daemon down for longer than the
//! retention loses what was deleted meanwhile) is accepted. Without snapshots
//! (`snapshot_interval = "0s"`) a partition is rebuilt from the beginning and
//! the topic must keep every event. Compaction is refused either way: it
//! deletes a record's older events, applied or not.
//!
//! At start-up the topic's `cleanup.policy`, `retention.ms` and
//! `retention.bytes` are read (DescribeConfigs) and a topic that would delete
//! needed events is refused, unless `[kafka] allow_finite_retention = true`.

use super::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use std::time::Duration;

/// The shortest time retention accepted when snapshots are on: one day.
pub const MIN_RETENTION_MS: i64 = 86_400_000;

/// Why the daemon refuses the topic.
#[derive(Debug, thiserror::Error)]
#[error("topic {topic:?} would delete events the daemon still needs ({why}); a deleted event that no snapshot covers is a record forgotten at the next restart. With snapshots on (the default) set retention.ms to at least 86400000 (a day; longer than any downtime) with cleanup.policy=delete; without them, retention.ms=-1 and retention.bytes=-1. Or accept the risk with [kafka] allow_finite_retention = true")]
pub struct RetentionError {
    /// The topic.
    pub topic: String,
    /// The settings that delete events, e.g. `retention.ms=604800000`.
    pub why: String,
}

/// What deletes needed events, given the topic's settings (`None` = not
/// reported by the broker) and whether snapshots are on. Empty = nothing does.
pub fn deleting_settings(
    cleanup_policy: Option<&str>,
    retention_ms: Option<&str>,
    retention_bytes: Option<&str>,
    snapshots: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = cleanup_policy {
        if p.split(',').any(|x| x.trim() == "compact") {
            out.push(format!("cleanup.policy={p}"));
        }
    }
    let finite = |v: &str| v.trim().parse::<i64>().map_or(true, |n| n >= 0);
    let too_short = |v: &str| {
        v.trim()
            .parse::<i64>()
            .map_or(true, |n| n >= 0 && (!snapshots || n < MIN_RETENTION_MS))
    };
    if let Some(v) = retention_ms.filter(|v| too_short(v)) {
        out.push(format!("retention.ms={v}"));
    }
    // a size limit deletes by volume, not age: with snapshots it is the
    // operator's to size (README), without them it loses events
    if let Some(v) = retention_bytes.filter(|v| !snapshots && finite(v)) {
        out.push(format!("retention.bytes={v}"));
    }
    out
}

/// Reads the topic's settings and refuses one that deletes events. Settings the
/// broker does not report, or a topic it cannot describe, are logged at WARN
/// (what the topic needs is in the README) and not refused.
pub async fn check(k: &KafkaConfig) -> Result<(), RetentionError> {
    let admin: AdminClient<DefaultClientContext> = match super::client_config(k).create() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the topic's retention");
            return Ok(());
        }
    };
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let res = admin
        .describe_configs(&[ResourceSpecifier::Topic(&k.topic)], &opts)
        .await;
    let entries = match res.as_ref().map(|v| v.first()) {
        Ok(Some(Ok(r))) => &r.entries,
        Ok(Some(Err(e))) => {
            tracing::warn!(topic = %k.topic, error = %e, "cannot read the topic's retention settings; make sure it keeps every event (README)");
            return Ok(());
        }
        Ok(None) => return Ok(()),
        Err(e) => {
            tracing::warn!(topic = %k.topic, error = %e, "cannot read the topic's retention settings; make sure it keeps every event (README)");
            return Ok(());
        }
    };
    let get = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    };
    let (policy, ms, bytes) = (
        get("cleanup.policy"),
        get("retention.ms"),
        get("retention.bytes"),
    );
    if ms.is_none() && bytes.is_none() && policy.is_none() {
        tracing::warn!(topic = %k.topic, "the broker does not report the topic's retention; make sure it keeps every event (README)");
    }
    let why = deleting_settings(policy, ms, bytes, k.snapshot_interval > 0);
    if why.is_empty() {
        return Ok(());
    }
    let err = RetentionError {
        topic: k.topic.clone(),
        why: why.join(", "),
    };
    if k.allow_finite_retention {
        tracing::warn!(error = %err, "allowed by [kafka] allow_finite_retention");
        return Ok(());
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::deleting_settings;

    #[test]
    fn settings_that_delete_events_are_named() {
        for snapshots in [false, true] {
            assert!(
                deleting_settings(Some("delete"), Some("-1"), Some("-1"), snapshots).is_empty()
            );
            assert!(deleting_settings(None, None, None, snapshots).is_empty());
            assert_eq!(
                deleting_settings(None, Some("junk"), None, snapshots),
                ["retention.ms=junk"]
            );
            assert_eq!(
                deleting_settings(Some("delete"), Some("3600000"), None, snapshots),
                ["retention.ms=3600000"]
            );
        }
        // without snapshots every deletion counts
        assert_eq!(
            deleting_settings(Some("delete"), Some("604800000"), Some("-1"), false),
            ["retention.ms=604800000"]
        );
        assert_eq!(
            deleting_settings(
                Some("compact,delete"),
                Some("-1"),
                Some("1073741824"),
                false
            ),
            [
                "cleanup.policy=compact,delete",
                "retention.bytes=1073741824"
            ]
        );
        // with snapshots a day or more is fine; compaction never is
        assert!(
            deleting_settings(Some("delete"), Some("604800000"), Some("1073741824"), true)
                .is_empty()
        );
        assert!(deleting_settings(Some("delete"), Some("86400000"), None, true).is_empty());
        assert_eq!(
            deleting_settings(Some("compact"), Some("604800000"), None, true),
            ["cleanup.policy=compact"]
        );
    }
}
