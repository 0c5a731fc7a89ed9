//! Every metric the process increments itself, declared and registered in one
//! place, with the exposition's names and HELP texts. The engines' counters and
//! gauges are not here: the engine is pure and counts into its own fields, which
//! [`super::Snapshot`] reads every second. Increments go through the typed events
//! of [`super::events`], never through label strings typed elsewhere.

use super::events::{NotificationResult, ReloadResult};
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// The process's own metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `overdued_event_apply_seconds`: time to decode and apply one event.
    pub(super) apply_seconds: Histogram,
    /// `overdued_config_reloads_total{result}`.
    pub(super) reloads: IntCounterVec,
    /// `overdued_notifications_total{result}`.
    pub(super) notifications: IntCounterVec,
    /// `overdued_notification_send_seconds`: time of accepted SMTP sends.
    pub(super) send_seconds: Histogram,
    /// `overdued_outbox_depth`: e-mails waiting to be sent.
    pub(super) outbox_depth: IntGauge,
    /// `overdued_dead_letter_failures_total`: failed dead-letter writes.
    pub(super) dead_letter_failures: prometheus::IntCounter,
    /// `overdued_partitions_blocked`: partitions waiting for a dead-letter write.
    pub(super) partitions_blocked: IntGauge,
    /// `overdued_webhook_deliveries_total{webhook,result}`.
    pub(super) webhook_deliveries: IntCounterVec,
    /// `overdued_webhook_backlog{webhook}`: batches waiting to be sent.
    pub(super) webhook_backlog: prometheus::IntGaugeVec,
    /// `overdued_alertmanager_posts_total{result}`.
    pub(super) alertmanager_posts: IntCounterVec,
    /// `overdued_alertmanager_alerts`: firing alerts forwarded by this instance.
    pub(super) alertmanager_alerts: IntGauge,
    /// `overdued_acknowledgements_total{reason}`: acknowledgements made on the pages.
    pub(super) acknowledgements: IntCounterVec,
    /// `overdued_snapshots_total{result}`: partition snapshots written or failed.
    pub(super) snapshots: IntCounterVec,
    /// `overdued_snapshot_last_success_timestamp_seconds`.
    pub(super) snapshot_last_success: prometheus::Gauge,
    /// `overdued_snapshot_bytes`: size of the last snapshot written.
    pub(super) snapshot_bytes: IntGauge,
    /// `overdued_notify_streams`: notify partitions this instance e-mails.
    pub(super) notify_streams: IntGauge,
    /// `overdued_notifier_images_total{result}`: notifier images written or failed.
    pub(super) notifier_images: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The metrics, registered together with the process collector (CPU,
    /// memory, file descriptors) in their own registry.
    pub fn new() -> Metrics {
        let m = Metrics::unregistered();
        #[cfg(target_os = "linux")]
        {
            let _ = m
                .registry
                .register(Box::new(super::process::ProcessMetrics::new()));
        }
        // The options are static and the registry is new: registering cannot
        // clash; an error here would only drop a family from the exposition.
        let _ = m.registry.register(Box::new(m.apply_seconds.clone()));
        let _ = m.registry.register(Box::new(m.reloads.clone()));
        let _ = m.registry.register(Box::new(m.notifications.clone()));
        let _ = m.registry.register(Box::new(m.send_seconds.clone()));
        let _ = m.registry.register(Box::new(m.outbox_depth.clone()));
        let _ = m
            .registry
            .register(Box::new(m.dead_letter_failures.clone()));
        let _ = m.registry.register(Box::new(m.partitions_blocked.clone()));
        let _ = m.registry.register(Box::new(m.acknowledgements.clone()));
        let _ = m.registry.register(Box::new(m.snapshots.clone()));
        let _ = m
            .registry
            .register(Box::new(m.snapshot_last_success.clone()));
        let _ = m.registry.register(Box::new(m.snapshot_bytes.clone()));
        let _ = m.registry.register(Box::new(m.notify_streams.clone()));
        let _ = m.registry.register(Box::new(m.notifier_images.clone()));
        let _ = m.registry.register(Box::new(m.webhook_deliveries.clone()));
        let _ = m.registry.register(Box::new(m.webhook_backlog.clone()));
        let _ = m.registry.register(Box::new(m.alertmanager_posts.clone()));
        let _ = m.registry.register(Box::new(m.alertmanager_alerts.clone()));
        m
    }

    /// The same metrics, in a registry that exposes nothing (tools, tests).
    pub fn unregistered() -> Metrics {
        let apply_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "overdued_event_apply_seconds",
                "Time to decode and apply one event.",
            )
            .buckets(vec![1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2]),
        )
        .expect("static histogram options");
        let reloads = IntCounterVec::new(
            Opts::new(
                "overdued_config_reloads_total",
                "Configuration reloads (SIGHUP), by result.",
            ),
            &["result"],
        )
        .expect("static metric options");
        // present at 0 from start-up, like every family (docs/spec.md §5.1)
        for r in ReloadResult::ALL {
            reloads.with_label_values(&[r.as_str()]);
        }
        let notifications = IntCounterVec::new(
            Opts::new(
                "overdued_notifications_total",
                "Notifications by result (sent, retry, failed, silenced)",
            ),
            &["result"],
        )
        .expect("static metric options");
        // Present at 0 from the start, so rates work before the first event.
        for r in NotificationResult::ALL {
            notifications.with_label_values(&[r.as_str()]);
        }
        let send_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "overdued_notification_send_seconds",
                "Time to hand one e-mail to the SMTP server (accepted sends)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )
        .expect("static histogram options");
        let outbox_depth = IntGauge::new("overdued_outbox_depth", "E-mails waiting in the outbox")
            .expect("static metric options");
        let dead_letter_failures = prometheus::IntCounter::new(
            "overdued_dead_letter_failures_total",
            "Dead-letter writes the broker did not acknowledge (each retried).",
        )
        .expect("static metric options");
        let partitions_blocked = IntGauge::new(
            "overdued_partitions_blocked",
            "Partitions stopped at a message whose dead letter could not be written yet.",
        )
        .expect("static metric options");
        let acknowledgements = IntCounterVec::new(
            Opts::new(
                "overdued_acknowledgements_total",
                "Alerting records acknowledged by their unit on the pages, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric options");
        for r in crate::alert::Reason::ALL {
            acknowledgements.with_label_values(&[r.as_str()]);
        }
        let snapshots = IntCounterVec::new(
            Opts::new(
                "overdued_snapshots_total",
                "Partition snapshots written to the state topic, by result (ok, failed).",
            ),
            &["result"],
        )
        .expect("static metric options");
        for r in ["ok", "failed"] {
            snapshots.with_label_values(&[r]);
        }
        let snapshot_last_success = prometheus::Gauge::new(
            "overdued_snapshot_last_success_timestamp_seconds",
            "When a partition snapshot was last written (Unix seconds; 0 = never).",
        )
        .expect("static metric options");
        let snapshot_bytes = IntGauge::new(
            "overdued_snapshot_bytes",
            "Size of the last partition snapshot written.",
        )
        .expect("static metric options");
        let notify_streams = IntGauge::new(
            "overdued_notify_streams",
            "Partitions of the notify topic whose e-mail this instance decides (0 without a notify topic).",
        )
        .expect("static metric options");
        let notifier_images = IntCounterVec::new(
            Opts::new(
                "overdued_notifier_images_total",
                "Notifier images written to the notify state topic, by result (ok, failed).",
            ),
            &["result"],
        )
        .expect("static metric options");
        for r in ["ok", "failed"] {
            notifier_images.with_label_values(&[r]);
        }
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "overdued_webhook_deliveries_total",
                "Webhook batches by result: sent (2xx), retry (an attempt that failed and will be retried), failed (refused for good).",
            ),
            &["webhook", "result"],
        )
        .expect("static metric options");
        let webhook_backlog = prometheus::IntGaugeVec::new(
            Opts::new(
                "overdued_webhook_backlog",
                "Webhook batches saved and waiting to be sent, by webhook.",
            ),
            &["webhook"],
        )
        .expect("static metric options");
        let alertmanager_posts = IntCounterVec::new(
            Opts::new(
                "overdued_alertmanager_posts_total",
                "POSTs of alerts to Alertmanager, by result (ok, failed).",
            ),
            &["result"],
        )
        .expect("static metric options");
        for r in ["ok", "failed"] {
            alertmanager_posts.with_label_values(&[r]);
        }
        let alertmanager_alerts = IntGauge::new(
            "overdued_alertmanager_alerts",
            "Firing alerts this instance forwards to Alertmanager (0 without [alertmanager]).",
        )
        .expect("static metric options");
        Metrics {
            webhook_deliveries,
            webhook_backlog,
            alertmanager_posts,
            alertmanager_alerts,
            notify_streams,
            notifier_images,
            acknowledgements,
            registry: Registry::new(),
            dead_letter_failures,
            partitions_blocked,
            apply_seconds,
            reloads,
            notifications,
            send_seconds,
            outbox_depth,
            snapshots,
            snapshot_last_success,
            snapshot_bytes,
        }
    }

    /// The registered families in the text format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        // families with no label values yet are left out by the encoder;
        // declared anyway, so rules and dashboards never name a family that
        // appears only later (docs/spec.md §5.1)
        for (name, kind, help) in [
            (
                "overdued_webhook_deliveries_total",
                "counter",
                "Webhook batches by result: sent (2xx), retry (an attempt that failed and will be retried), failed (refused for good).",
            ),
            (
                "overdued_webhook_backlog",
                "gauge",
                "Webhook batches saved and waiting to be sent, by webhook.",
            ),
        ] {
            if !text.contains(&format!("# TYPE {name} ")) {
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            }
        }
        text
    }

    /// The names of the registered families.
    pub fn family_names(&self) -> Vec<String> {
        self.registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    }

    /// The current value of `overdued_notifications_total{result}`.
    pub fn notifications(&self, result: NotificationResult) -> u64 {
        self.notifications
            .with_label_values(&[result.as_str()])
            .get()
    }

    /// Accepted sends observed by `overdued_notification_send_seconds`.
    pub fn sends_timed(&self) -> u64 {
        self.send_seconds.get_sample_count()
    }

    /// The current value of `overdued_outbox_depth`.
    pub fn outbox_depth(&self) -> i64 {
        self.outbox_depth.get()
    }

    /// The current value of `overdued_dead_letter_failures_total`.
    pub fn dead_letter_failures(&self) -> u64 {
        self.dead_letter_failures.get()
    }

    /// The current value of `overdued_acknowledgements_total{reason}`.
    pub fn acknowledgements(&self, reason: crate::alert::Reason) -> u64 {
        self.acknowledgements
            .with_label_values(&[reason.as_str()])
            .get()
    }

    /// The current value of `overdued_config_reloads_total{result}`.
    pub fn reloads(&self, result: ReloadResult) -> u64 {
        self.reloads.with_label_values(&[result.as_str()]).get()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
