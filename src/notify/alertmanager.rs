//! Forwarding to a Prometheus Alertmanager (`[alertmanager]`), so a province
//! that already routes alerts (chat, SMS gateways, on-call) reuses it.
//!
//! Alertmanager keeps an alert active while it is re-sent within its
//! `resolve_timeout`; so the daemon POSTs each transition (`POST
//! /api/v2/alerts`) and, every `resend_interval`, every alert still firing
//! on its partitions. A resolution is POSTed with `endsAt`. This state is
//! derived from the engines (after a restart or a hand-over the firing
//! alerts are POSTed again), so nothing is spooled: a resolution not yet
//! POSTed when the process dies is resolved by Alertmanager's own
//! `resolve_timeout`, since no one re-sends the alert.

use super::post::{backoff, bounded_duration, Outcome, Poster};
use crate::config::common::ConfigError;
use crate::config::common::Src;
use crate::engine::view::AlertInfo;
use crate::engine::AlertKind;
use crate::metrics::events::{AlertmanagerPostFailed, AlertmanagerPosted};
use crate::metrics::Metrics;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use toml::Spanned;

/// Alerts per POST.
const CHUNK: usize = 1000;
/// Resolutions kept for a retry while Alertmanager does not answer (the
/// oldest go first; Alertmanager's `resolve_timeout` ends them anyway).
const MAX_PENDING: usize = 100_000;

/// `[alertmanager]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `<url>/api/v2/alerts` receives the alerts.
    pub url: String,
    /// Every firing alert is POSTed again this often.
    pub resend_interval: Duration,
    /// Request timeout.
    pub timeout: Duration,
}

impl Settings {
    /// The endpoint alerts are POSTed to.
    pub fn endpoint(&self) -> String {
        format!("{}/api/v2/alerts", self.url.trim_end_matches('/'))
    }
}

/// `[alertmanager]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    url: Spanned<String>,
    resend_interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

/// Validates `[alertmanager]` (none when the section is absent).
pub fn validate(
    src: &Src<'_>,
    raw: Option<&RawAlertmanager>,
) -> Result<Option<Settings>, ConfigError> {
    let Some(r) = raw else {
        return Ok(None);
    };
    let url = r.url.get_ref().trim().trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return src.err(
            r.url.span(),
            "alertmanager.url",
            "must be an http:// or https:// URL (the Alertmanager, e.g. \"http://127.0.0.1:9093\")",
        );
    }
    Ok(Some(Settings {
        url,
        resend_interval: bounded_duration(
            src,
            &r.resend_interval,
            "alertmanager.resend_interval",
            Duration::from_secs(60),
            3600,
        )?,
        timeout: bounded_duration(
            src,
            &r.timeout,
            "alertmanager.timeout",
            Duration::from_secs(10),
            300,
        )?,
    }))
}

/// The `alertname` of an alert kind.
pub fn alertname(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Hanging => "OverduedRecordHanging",
        AlertKind::DueSoon => "OverduedRecordDueSoon",
        AlertKind::Overdue => "OverduedRecordOverdue",
        AlertKind::Unrouted => "OverduedRecordUnrouted",
    }
}

/// One Alertmanager alert (API v2 `postableAlert`): firing, or resolved at
/// `ends`.
pub fn alert_json(
    info: &AlertInfo,
    level: &str,
    ends: Option<crate::time::Instant>,
) -> serde_json::Value {
    use crate::time::format_rfc3339 as f;
    let severity = match info.kind {
        AlertKind::Overdue | AlertKind::Unrouted => "warning",
        AlertKind::Hanging | AlertKind::DueSoon => "info",
    };
    let summary = match info.kind {
        AlertKind::Hanging => format!(
            "record {} received at {} has no action recorded",
            info.record_id, info.unit
        ),
        AlertKind::DueSoon => format!("record {} at {} is due soon", info.record_id, info.unit),
        AlertKind::Overdue => format!("record {} at {} is overdue", info.record_id, info.unit),
        AlertKind::Unrouted => format!(
            "record {} is held by {}, a unit outside the directory",
            info.record_id, info.unit
        ),
    };
    let mut a = serde_json::json!({
        "labels": {
            "alertname": alertname(info.kind),
            "kind": info.kind.as_str(),
            "unit": info.unit,
            "level": level,
            "sector": info.sector,
            "record_id": info.record_id,
            "severity": severity,
        },
        "annotations": {
            "summary": summary,
            "due_at": f(info.due),
        },
        "startsAt": f(info.fired_at),
    });
    if let Some(t) = ends {
        a["endsAt"] = serde_json::Value::String(f(t));
    }
    a
}

/// What waits for the sender: the latest full list of firing alerts (a
/// newer one replaces an unsent older one) and the changes since.
#[derive(Default)]
struct Pending {
    full: Option<Vec<serde_json::Value>>,
    changes: Vec<serde_json::Value>,
}

/// The sender's queue, shared with the daemon.
#[derive(Default)]
pub struct Queue {
    pending: Mutex<Pending>,
    ready: Condvar,
    stop: AtomicBool,
}

impl Queue {
    /// Queues alerts that changed (fired or resolved).
    pub fn changes(&self, alerts: Vec<serde_json::Value>) {
        if alerts.is_empty() {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.changes.extend(alerts);
        let over = p.changes.len().saturating_sub(MAX_PENDING);
        p.changes.drain(..over);
        self.ready.notify_all();
    }

    /// Queues the full list of firing alerts (the periodic re-send).
    pub fn full(&self, alerts: Vec<serde_json::Value>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.full = Some(alerts);
        self.ready.notify_all();
    }

    /// Stops the sender at its next wait.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.ready.notify_all();
    }

    fn take(&self) -> Option<Pending> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while p.full.is_none() && p.changes.is_empty() {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            p = self
                .ready
                .wait_timeout(p, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Some(std::mem::take(&mut *p))
    }

    /// Puts back what could not be sent, before anything queued since.
    fn put_back(&self, mut back: Pending) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.full.is_none() {
            p.full = back.full.take();
        }
        back.changes.append(&mut p.changes);
        p.changes = back.changes;
        let over = p.changes.len().saturating_sub(MAX_PENDING);
        p.changes.drain(..over);
    }
}

/// Starts the sender thread.
pub fn start_sender(
    s: &Settings,
    queue: Arc<Queue>,
    metrics: Metrics,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let poster = Poster::new(s.timeout).map_err(std::io::Error::other)?;
    let url = s.endpoint();
    let max_wait = s.resend_interval;
    std::thread::Builder::new()
        .name("alertmanager".into())
        .spawn(move || {
            let mut failures = 0u32;
            while let Some(p) = queue.take() {
                // changes first (resolutions), then the full list
                let all: Vec<&serde_json::Value> =
                    p.changes.iter().chain(p.full.iter().flatten()).collect();
                let mut failed = None;
                for chunk in all.chunks(CHUNK) {
                    let body = match serde_json::to_vec(chunk) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot encode alerts for Alertmanager");
                            continue;
                        }
                    };
                    match poster.post_json(&url, &body, &[]) {
                        Outcome::Accepted => AlertmanagerPosted {
                            alerts: chunk.len(),
                        }
                        .emit(&metrics),
                        Outcome::Retry(why) | Outcome::Refused(why) => {
                            failed = Some(why);
                            break;
                        }
                    }
                }
                match failed {
                    None => failures = 0,
                    Some(why) => {
                        AlertmanagerPostFailed { error: &why }.emit(&metrics);
                        queue.put_back(p);
                        let wait = backoff(failures, max_wait);
                        failures = failures.saturating_add(1);
                        let until = std::time::Instant::now() + wait;
                        while !queue.stop.load(Ordering::Relaxed)
                            && std::time::Instant::now() < until
                        {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: AlertKind) -> AlertInfo {
        AlertInfo {
            record_id: "R1".into(),
            kind,
            unit: "U1".into(),
            sector: "DD".into(),
            procedure: "P1".into(),
            received_at: 0,
            due: 86_400 * crate::time::SECOND,
            fired_at: 3_600 * crate::time::SECOND,
            escalate_at: None,
            forwarder: None,
            partition: Some(0),
        }
    }

    #[test]
    fn an_alert_carries_the_labels_provinces_route_on() {
        let a = alert_json(&info(AlertKind::Overdue), "district", None);
        assert_eq!(
            a["labels"],
            serde_json::json!({"alertname": "OverduedRecordOverdue", "kind": "overdue",
                "unit": "U1", "level": "district", "sector": "DD", "record_id": "R1",
                "severity": "warning"})
        );
        assert_eq!(a["startsAt"], "1970-01-01T01:00:00Z");
        assert!(a.get("endsAt").is_none());
        let r = alert_json(
            &info(AlertKind::Hanging),
            "district",
            Some(7_200 * crate::time::SECOND),
        );
        assert_eq!(r["labels"]["alertname"], "OverduedRecordHanging");
        assert_eq!(r["labels"]["severity"], "info");
        assert_eq!(r["endsAt"], "1970-01-01T02:00:00Z");
    }

    #[test]
    fn a_newer_full_list_replaces_an_unsent_one_and_changes_keep_their_order() {
        let q = Queue::default();
        q.changes(vec![serde_json::json!(1)]);
        q.full(vec![serde_json::json!("old")]);
        let p = q.take().unwrap();
        q.changes(vec![serde_json::json!(2)]);
        q.full(vec![serde_json::json!("new")]);
        q.put_back(p);
        let p = q.take().unwrap();
        assert_eq!(p.full, Some(vec![serde_json::json!("new")]));
        assert_eq!(p.changes, vec![serde_json::json!(1), serde_json::json!(2)]);
    }
}
