//! The observable events of the process: each one logs and counts in one place
//! (`emit`), so a log line and its metric never disagree. Label values come from
//! the enums here.

use super::Metrics;
use std::time::Duration;

/// `overdued_notifications_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationResult {
    /// Accepted by the SMTP server and written to the notification log.
    Sent,
    /// An attempt that failed and will be retried.
    Retry,
    /// Given up: rejected for good, or lost before it reached the outbox.
    Failed,
    /// Muted by a silence.
    Silenced,
}

impl NotificationResult {
    /// Every value, in exposition order.
    pub const ALL: [NotificationResult; 4] = [
        NotificationResult::Sent,
        NotificationResult::Retry,
        NotificationResult::Failed,
        NotificationResult::Silenced,
    ];
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationResult::Sent => "sent",
            NotificationResult::Retry => "retry",
            NotificationResult::Failed => "failed",
            NotificationResult::Silenced => "silenced",
        }
    }
}

/// `overdued_config_reloads_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// Validated and applied.
    Ok,
    /// Refused; the running configuration stays.
    Refused,
}

impl ReloadResult {
    /// Every result, in label order.
    pub const ALL: [ReloadResult; 2] = [ReloadResult::Ok, ReloadResult::Refused];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Refused => "refused",
        }
    }
}

/// One event decoded and applied (or rejected).
pub struct EventApplied {
    /// How long decoding and applying took.
    pub took: Duration,
}

impl EventApplied {
    /// Counts (no log: one per event).
    pub fn emit(&self, m: &Metrics) {
        m.apply_seconds.observe(self.took.as_secs_f64());
    }
}

/// SIGHUP applied a new configuration.
pub struct ConfigReloaded<'a> {
    /// What changed, stage by stage.
    pub changes: &'a [(&'static str, Vec<&'static str>)],
    /// Units in the new directory.
    pub units: usize,
    /// Procedures in the new catalogue.
    pub procedures: usize,
}

impl ConfigReloaded<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.reloads
            .with_label_values(&[ReloadResult::Ok.as_str()])
            .inc();
        let changed: Vec<String> = self
            .changes
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(stage, c)| format!("{stage}: {}", c.join(", ")))
            .collect();
        tracing::info!(
            changed = %changed.join("; "),
            units = self.units,
            procedures = self.procedures,
            "configuration reloaded"
        );
    }
}

/// SIGHUP found an invalid configuration.
pub struct ConfigReloadRefused<'a> {
    /// Why (file, line, field).
    pub error: &'a dyn std::fmt::Display,
}

impl ConfigReloadRefused<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.reloads
            .with_label_values(&[ReloadResult::Refused.as_str()])
            .inc();
        tracing::error!(error = %self.error, "configuration reload refused; the running configuration stays");
    }
}

/// The SMTP server accepted an e-mail and the notification log has it.
pub struct EmailSent<'a> {
    /// The e-mail id.
    pub id: &'a str,
}

impl EmailSent<'_> {
    /// Counts (the acceptance itself is logged when the server answers).
    pub fn emit(&self, m: &Metrics) {
        m.notifications
            .with_label_values(&[NotificationResult::Sent.as_str()])
            .inc();
        tracing::debug!(id = %self.id, "e-mail recorded in the notification log");
    }
}

/// The time one accepted send took.
pub struct EmailSendTime {
    /// From the first byte to the server's acceptance.
    pub took: Duration,
}

impl EmailSendTime {
    /// Counts.
    pub fn emit(&self, m: &Metrics) {
        m.send_seconds.observe(self.took.as_secs_f64());
    }
}

/// An attempt failed and will be retried.
pub struct EmailRetry;

impl EmailRetry {
    /// Counts (the caller logs the reason with the delay it chose).
    pub fn emit(&self, m: &Metrics) {
        m.notifications
            .with_label_values(&[NotificationResult::Retry.as_str()])
            .inc();
    }
}

/// An e-mail given up: rejected for good by the server, or decided but never
/// stored or rendered.
pub struct EmailFailed<'a> {
    /// The e-mail id, or the recipient when it was never rendered.
    pub what: &'a str,
    /// Why.
    pub reason: &'a dyn std::fmt::Display,
    /// Where it went wrong: `rejected`, `not stored`, `not rendered`.
    pub stage: &'static str,
}

impl EmailFailed<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.notifications
            .with_label_values(&[NotificationResult::Failed.as_str()])
            .inc();
        tracing::error!(e_mail = %self.what, reason = %self.reason, stage = self.stage, "e-mail failed");
    }
}

/// Alerts muted by silences since the last count.
pub struct AlertsSilenced {
    /// How many.
    pub n: u64,
}

impl AlertsSilenced {
    /// Counts.
    pub fn emit(&self, m: &Metrics) {
        if self.n > 0 {
            m.notifications
                .with_label_values(&[NotificationResult::Silenced.as_str()])
                .inc_by(self.n);
            tracing::debug!(n = self.n, "alerts silenced");
        }
    }
}

/// A unit acknowledged an alerting record on its page.
pub struct Acknowledged<'a> {
    /// The acknowledgement, as kept.
    pub ack: &'a crate::alert::Ack,
}

impl Acknowledged<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        let a = self.ack;
        m.acknowledgements
            .with_label_values(&[a.reason.as_str()])
            .inc();
        tracing::info!(id = %a.id, record_id = %a.record_id, unit = %a.unit, reason = a.reason.as_str(), by = %a.by, "record acknowledged");
    }
}

/// E-mails waiting in the outbox.
pub struct OutboxDepth(pub usize);

impl OutboxDepth {
    /// Sets the gauge.
    pub fn emit(&self, m: &Metrics) {
        m.outbox_depth.set(self.0 as i64);
    }
}

/// A dead-letter write the broker did not acknowledge; the partition waits and
/// the same dead letter is retried with backoff.
pub struct DeadLetterFailed<'a> {
    /// The source partition.
    pub partition: i32,
    /// The rejected message's offset.
    pub offset: i64,
    /// Why.
    pub error: &'a dyn std::fmt::Display,
    /// The first failure of this message (logged at ERROR; the retries at DEBUG,
    /// one incident, one error line).
    pub first: bool,
}

impl DeadLetterFailed<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.dead_letter_failures.inc();
        if self.first {
            tracing::error!(partition = self.partition, offset = self.offset, error = %self.error, "dead-letter write failed; the partition waits and it is retried");
        } else {
            tracing::debug!(partition = self.partition, offset = self.offset, error = %self.error, "dead-letter write failed again");
        }
    }
}

/// A dead letter written after failed attempts: the partition moves on.
pub struct DeadLetterWritten {
    /// The source partition.
    pub partition: i32,
    /// The rejected message's offset.
    pub offset: i64,
    /// Attempts it took.
    pub attempts: u32,
}

impl DeadLetterWritten {
    /// Logs.
    pub fn emit(&self, _: &Metrics) {
        tracing::warn!(
            partition = self.partition,
            offset = self.offset,
            attempts = self.attempts,
            "dead-letter write succeeded; the partition moves on"
        );
    }
}

/// Partitions stopped at a dead letter not yet written.
pub struct PartitionsBlocked(pub usize);

impl PartitionsBlocked {
    /// Sets the gauge.
    pub fn emit(&self, m: &Metrics) {
        m.partitions_blocked.set(self.0 as i64);
    }
}

/// A decided e-mail the outbox could not store: kept in memory and retried
/// every round; the state is not saved meanwhile, so it is never lost.
pub struct EmailNotStored<'a> {
    /// The e-mail id.
    pub id: &'a str,
    /// Why.
    pub error: &'a dyn std::fmt::Display,
}

impl EmailNotStored<'_> {
    /// Logs and counts (as a retry).
    pub fn emit(&self, m: &Metrics) {
        m.notifications
            .with_label_values(&[NotificationResult::Retry.as_str()])
            .inc();
        tracing::error!(id = %self.id, error = %self.error, "cannot store an e-mail in the outbox; kept and retried, the state is not saved until it is stored");
    }
}

/// A partition stopped moving, or moved again: logged once per incident (the
/// gauge `overdued_partition_stalled` is part of the snapshot).
pub struct PartitionStalled<'a> {
    /// The partition.
    pub partition: i32,
    /// Why it is stalled; `None` when it moves again.
    pub why: Option<&'a str>,
}

impl PartitionStalled<'_> {
    /// Logs.
    pub fn emit(&self) {
        match self.why {
            Some(why) => tracing::warn!(partition = self.partition, why, "partition stalled"),
            None => tracing::info!(partition = self.partition, "partition moves again"),
        }
    }
}

/// The source fell silent, or spoke again: logged once per incident (the gauge
/// `overdued_source_silent` is part of the snapshot).
pub struct SourceSilence {
    /// Silent now.
    pub silent: bool,
    /// When the last event before the silence arrived (or the daemon started
    /// listening), RFC 3339.
    pub since: String,
}

impl SourceSilence {
    /// Logs.
    pub fn emit(&self) {
        if self.silent {
            tracing::warn!(since = %self.since, "the source is silent: no event for [rules] source_silence_after of working time; hanging e-mails are held");
        } else {
            tracing::info!(silent_since = %self.since, "events arrive again; held hanging e-mails are released");
        }
    }
}

/// A partition's snapshot written to the state topic.
pub struct SnapshotWritten {
    /// The source partition.
    pub partition: i32,
    /// The source offset it reflects.
    pub offset: i64,
    /// Records in it.
    pub records: usize,
    /// Its size.
    pub bytes: usize,
    /// Encoding and writing it took.
    pub took: Duration,
}

impl SnapshotWritten {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.snapshots.with_label_values(&["ok"]).inc();
        m.snapshot_last_success
            .set(crate::time::now() as f64 / crate::time::SECOND as f64);
        m.snapshot_bytes.set(self.bytes as i64);
        tracing::info!(
            partition = self.partition,
            offset = self.offset,
            records = self.records,
            bytes = self.bytes,
            secs = self.took.as_secs_f64(),
            "snapshot written"
        );
    }
}

/// A partition's snapshot that could not be written (retried at the next
/// interval; the previous one stays whole).
pub struct SnapshotFailed<'a> {
    /// The source partition.
    pub partition: i32,
    /// Why.
    pub error: &'a dyn std::fmt::Display,
}

impl SnapshotFailed<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.snapshots.with_label_values(&["failed"]).inc();
        tracing::error!(partition = self.partition, error = %self.error, "cannot write the partition's snapshot; retried at the next interval");
    }
}

/// The notifier group's partitions changed (assigned or revoked).
pub struct NotifyStreams(pub usize);

impl NotifyStreams {
    /// Sets the gauge (the assignment itself is logged where it happens).
    pub fn emit(&self, m: &Metrics) {
        m.notify_streams.set(self.0 as i64);
    }
}

/// A notify partition's notifier image written, or not.
pub struct NotifierImage<'a> {
    /// The notify partition.
    pub partition: i32,
    /// The notify offset it reflects.
    pub offset: i64,
    /// Its size.
    pub bytes: usize,
    /// Why it failed (none: written).
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl NotifierImage<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        match self.error {
            None => {
                m.notifier_images.with_label_values(&["ok"]).inc();
                tracing::debug!(
                    partition = self.partition,
                    offset = self.offset,
                    bytes = self.bytes,
                    "notifier image written"
                );
            }
            Some(e) => {
                m.notifier_images.with_label_values(&["failed"]).inc();
                tracing::warn!(partition = self.partition, error = %e, "cannot write the notifier image; retried at the next interval (the previous one stays whole)");
            }
        }
    }
}

/// A webhook accepted a batch (2xx); its spool file is gone.
pub struct WebhookDelivered<'a> {
    /// The `[[webhook]] name`.
    pub webhook: &'a str,
    /// The batch id.
    pub batch: &'a str,
}

impl WebhookDelivered<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.webhook_deliveries
            .with_label_values(&[self.webhook, "sent"])
            .inc();
        tracing::debug!(webhook = %self.webhook, batch = %self.batch, "webhook batch delivered");
    }
}

/// A webhook POST failed in a way worth retrying (no answer, 408, 429, 5xx).
pub struct WebhookRetry<'a> {
    /// The `[[webhook]] name`.
    pub webhook: &'a str,
    /// The batch id.
    pub batch: &'a str,
    /// Why.
    pub error: &'a str,
    /// The wait before the next attempt.
    pub wait: Duration,
}

impl WebhookRetry<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.webhook_deliveries
            .with_label_values(&[self.webhook, "retry"])
            .inc();
        tracing::warn!(webhook = %self.webhook, batch = %self.batch, error = %self.error, retry_in_s = self.wait.as_secs(), "webhook batch not delivered; will retry");
    }
}

/// A webhook refused a batch for good (a 4xx other than 408 and 429): moved
/// to the spool's `failed/`.
pub struct WebhookFailed<'a> {
    /// The `[[webhook]] name`.
    pub webhook: &'a str,
    /// The batch id.
    pub batch: &'a str,
    /// The answer.
    pub error: &'a str,
}

impl WebhookFailed<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.webhook_deliveries
            .with_label_values(&[self.webhook, "failed"])
            .inc();
        tracing::error!(webhook = %self.webhook, batch = %self.batch, error = %self.error, "webhook refused a batch; moved to failed/");
    }
}

/// Batches of a webhook saved and waiting.
pub struct WebhookBacklog<'a> {
    /// The `[[webhook]] name`.
    pub webhook: &'a str,
    /// How many.
    pub batches: usize,
}

impl WebhookBacklog<'_> {
    /// Sets the gauge (no log).
    pub fn emit(&self, m: &Metrics) {
        m.webhook_backlog
            .with_label_values(&[self.webhook])
            .set(self.batches as i64);
    }
}

/// Alertmanager accepted a POST of alerts.
pub struct AlertmanagerPosted {
    /// Alerts in it.
    pub alerts: usize,
}

impl AlertmanagerPosted {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.alertmanager_posts.with_label_values(&["ok"]).inc();
        tracing::debug!(alerts = self.alerts, "alerts posted to Alertmanager");
    }
}

/// A POST to Alertmanager failed (retried while the alerts are current).
pub struct AlertmanagerPostFailed<'a> {
    /// Why.
    pub error: &'a str,
}

impl AlertmanagerPostFailed<'_> {
    /// Logs and counts.
    pub fn emit(&self, m: &Metrics) {
        m.alertmanager_posts.with_label_values(&["failed"]).inc();
        tracing::warn!(error = %self.error, "cannot post alerts to Alertmanager; will retry");
    }
}

/// Firing alerts forwarded to Alertmanager.
pub struct AlertmanagerAlerts(pub usize);

impl AlertmanagerAlerts {
    /// Sets the gauge (no log).
    pub fn emit(&self, m: &Metrics) {
        m.alertmanager_alerts.set(self.0 as i64);
    }
}
