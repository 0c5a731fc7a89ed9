//! The source topic must keep every event: on assignment a partition is rebuilt
//! by reading it from the beginning, so an event removed by retention or
//! compaction is a record forgotten at the next restart (no alert, no count).
//! At start-up the topic's `cleanup.policy`, `retention.ms` and
//! `retention.bytes` are read (DescribeConfigs) and a topic that would delete
//! events is refused, unless `[kafka] allow_finite_retention = true`.

use super::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use std::time::Duration;

/// Why the daemon refuses the topic.
#[derive(Debug, thiserror::Error)]
#[error("topic {topic:?} would delete events ({why}); the daemon rebuilds its records from the topic's beginning, so a deleted event is a record forgotten at the next restart. Set retention.ms=-1 and retention.bytes=-1 with cleanup.policy=delete on the topic, or accept the risk with [kafka] allow_finite_retention = true")]
pub struct RetentionError {
    /// The topic.
    pub topic: String,
    /// The settings that delete events, e.g. `retention.ms=604800000`.
    pub why: String,
}

/// What deletes events, given the topic's settings (`None` = not reported by
/// the broker). Empty = nothing does.
pub fn deleting_settings(
    cleanup_policy: Option<&str>,
    retention_ms: Option<&str>,
    retention_bytes: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = cleanup_policy {
        if p.split(',').any(|x| x.trim() == "compact") {
            out.push(format!("cleanup.policy={p}"));
        }
    }
    let finite = |v: &str| v.trim().parse::<i64>().map_or(true, |n| n >= 0);
    if let Some(v) = retention_ms.filter(|v| finite(v)) {
        out.push(format!("retention.ms={v}"));
    }
    if let Some(v) = retention_bytes.filter(|v| finite(v)) {
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
    let why = deleting_settings(policy, ms, bytes);
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
        assert!(deleting_settings(Some("delete"), Some("-1"), Some("-1")).is_empty());
        assert!(deleting_settings(None, None, None).is_empty());
        assert_eq!(
            deleting_settings(Some("delete"), Some("604800000"), Some("-1")),
            ["retention.ms=604800000"]
        );
        assert_eq!(
            deleting_settings(Some("compact,delete"), Some("-1"), Some("1073741824")),
            [
                "cleanup.policy=compact,delete",
                "retention.bytes=1073741824"
            ]
        );
        assert_eq!(
            deleting_settings(None, Some("junk"), None),
            ["retention.ms=junk"]
        );
    }
}
