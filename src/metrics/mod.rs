//! The metrics of docs/spec.md §5, in one place.
//!
//! Two sources, one exposition:
//! * the engines count into their own fields (the engine is pure: it returns
//!   outcomes and keeps tallies, it never calls out). The consumer thread owns
//!   the engines; every second it folds their counters and gauges into a
//!   [`Snapshot`] (label values as strings, so engines of different partitions
//!   aggregate), which [`render`] writes in the text format;
//! * everything the process increments itself is declared in [`Metrics`]
//!   (`registry.rs`) and incremented only through the typed events of
//!   [`events`], each of which logs and counts.
//!
//! `/metrics` is [`render`] followed by [`Metrics::encode`]. Names, labels and
//! HELP texts are stable API.

pub mod events;
#[cfg(target_os = "linux")]
mod process;
mod registry;

pub use registry::Metrics;

use crate::engine::Engine;
use crate::event::{EventType, IgnoreReason, RejectReason};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Label values (level, unit, sector).
pub type Lus = (String, String, String);

/// Everything `/metrics` shows from the engines.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Gauges by (level, holder unit, sector): open, hanging, due_soon, overdue, paused.
    pub gauges: BTreeMap<Lus, [u64; 5]>,
    /// Received by (level, receiving unit, sector, channel).
    pub received: BTreeMap<(String, String, String, String), u64>,
    /// Judged by (level, receiving unit, sector, timeliness).
    pub judged: BTreeMap<(String, String, String, String), u64>,
    /// Events by type.
    pub events: [u64; 11],
    /// Rejections by reason (decoder and engine).
    pub rejected: [u64; RejectReason::ALL.len()],
    /// Ignored events by reason.
    pub ignored: [u64; 2],
    /// Alerts fired by kind.
    pub alerts: [u64; 4],
    /// Consumer lag per partition (messages).
    pub lag: BTreeMap<i32, i64>,
    /// Per partition: the latest event time consumed and the wall instant it
    /// was consumed (microseconds since the epoch).
    pub last_event: BTreeMap<i32, (i64, i64)>,
    /// Per partition: seconds since its broker last answered.
    pub fetch_age: BTreeMap<i32, f64>,
    /// Per partition: stalled (no answer, or lag without progress).
    pub stalled: BTreeMap<i32, bool>,
    /// Per broker (`host:port`): connection up.
    pub brokers: BTreeMap<String, bool>,
    /// No event has arrived for `[rules] source_silence_after` of working time.
    pub source_silent: bool,
    /// The calendar files' reach and what today's receipts need (instants):
    /// [`crate::engine::Coverage`].
    pub calendar: Option<(i64, i64)>,
    /// The directory's units, for `overdued_unit_info` (shared: rebuilt only
    /// when the configuration changes).
    pub units: std::sync::Arc<Vec<UnitInfo>>,
    /// `[report] late_threshold_percent` as a ratio (`None`: not configured here).
    pub late_threshold: Option<f64>,
}

/// One directory unit's labels in `overdued_unit_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitInfo {
    /// Unit code.
    pub unit: String,
    /// Level name.
    pub level: String,
    /// Area code (`[report] area_level`); empty for a unit in no area.
    pub area: String,
    /// Display name.
    pub name: String,
}

impl UnitInfo {
    /// Every unit of `dir`, with its area when `area_level` is set.
    pub fn of_directory(
        dir: &crate::engine::directory::Directory,
        area_level: Option<&str>,
    ) -> Vec<UnitInfo> {
        dir.units
            .iter()
            .map(|u| UnitInfo {
                unit: u.code.clone(),
                level: dir.level_name(u.level).to_string(),
                area: area_level
                    .and_then(|a| dir.area_and_level(&u.code, a))
                    .map(|(area, _, _)| area.to_string())
                    .unwrap_or_default(),
                name: u.name.clone(),
            })
            .collect()
    }
}

/// The label a unit gets: its code when the directory knows it, else
/// `unknown`, so event strings never make series (docs/spec.md §5.1).
fn unit_label(e: &Engine, u: u32) -> String {
    if e.directory().is_known(u) {
        e.unit_code(u).to_string()
    } else {
        UNKNOWN.to_string()
    }
}

/// The label a sector gets: a catalogue sector's code, else `unknown`.
fn sector_label(e: &Engine, s: u32) -> String {
    if e.directory().is_catalogue_sector(s) {
        e.sector_code(s).to_string()
    } else {
        UNKNOWN.to_string()
    }
}

/// The label value of units, sectors and levels outside the configuration.
pub const UNKNOWN: &str = "unknown";

impl Snapshot {
    /// Adds one engine's state (counters are cumulative per engine).
    pub fn add_engine(&mut self, e: &Engine) {
        let mut g = Default::default();
        e.gauges(&mut g);
        for ((u, s), v) in g {
            let key = (e.level(u).to_string(), unit_label(e, u), sector_label(e, s));
            let slot = self.gauges.entry(key).or_default();
            for k in 0..5 {
                slot[k] += v[k];
            }
        }
        for (&(u, s, c), &n) in &e.received_by {
            let ch = crate::event::Channel::ALL
                .get(c as usize)
                .map(|c| c.as_str())
                .unwrap_or("in_person");
            *self
                .received
                .entry((
                    e.level(u).into(),
                    unit_label(e, u),
                    sector_label(e, s),
                    ch.into(),
                ))
                .or_default() += n;
        }
        for (&(u, s, t), &n) in &e.judged_by {
            let tl = ["early", "on_time", "late"][t as usize % 3];
            *self
                .judged
                .entry((
                    e.level(u).into(),
                    unit_label(e, u),
                    sector_label(e, s),
                    tl.into(),
                ))
                .or_default() += n;
        }
        for (a, b) in self.events.iter_mut().zip(e.stats.events) {
            *a += b;
        }
        for (a, b) in self.rejected.iter_mut().zip(e.stats.rejected) {
            *a += b;
        }
        for (a, b) in self.ignored.iter_mut().zip(e.stats.ignored) {
            *a += b;
        }
        for (a, b) in self.alerts.iter_mut().zip(e.stats.alerts) {
            *a += b;
        }
    }
}

/// Escapes a label value for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the docs/spec.md §5 families.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let gauges = [
        (
            "overdued_records_open",
            "Open records, by the unit holding them now.",
        ),
        (
            "overdued_records_hanging",
            "Open records with a firing hanging alert.",
        ),
        (
            "overdued_records_due_soon",
            "Open records with a firing due_soon alert.",
        ),
        (
            "overdued_records_overdue",
            "Open records with a firing overdue alert.",
        ),
        (
            "overdued_records_paused",
            "Open records whose clock is stopped.",
        ),
    ];
    for (k, (name, help)) in gauges.iter().enumerate() {
        family(&mut out, name, "gauge", help);
        for ((l, u, sec), v) in &s.gauges {
            let _ = writeln!(
                out,
                "{name}{{level=\"{}\",unit=\"{}\",sector=\"{}\"}} {}",
                esc(l),
                esc(u),
                esc(sec),
                v[k]
            );
        }
    }
    family(
        &mut out,
        "overdued_records_received_total",
        "counter",
        "Records received, by receiving unit.",
    );
    for ((l, u, sec, c), v) in &s.received {
        let _ = writeln!(out, "overdued_records_received_total{{level=\"{}\",unit=\"{}\",sector=\"{}\",channel=\"{}\"}} {v}", esc(l), esc(u), esc(sec), esc(c));
    }
    family(
        &mut out,
        "overdued_records_judged_total",
        "counter",
        "Closed records judged early, on time or late, by receiving unit.",
    );
    for ((l, u, sec, t), v) in &s.judged {
        let _ = writeln!(out, "overdued_records_judged_total{{level=\"{}\",unit=\"{}\",sector=\"{}\",timeliness=\"{}\"}} {v}", esc(l), esc(u), esc(sec), esc(t));
    }
    family(
        &mut out,
        "overdued_events_total",
        "counter",
        "Events applied or ignored, by type.",
    );
    for t in EventType::ALL {
        let _ = writeln!(
            out,
            "overdued_events_total{{type=\"{}\"}} {}",
            t.as_str(),
            s.events[t.index()]
        );
    }
    family(
        &mut out,
        "overdued_events_rejected_total",
        "counter",
        "Events rejected (dead-lettered), by reason.",
    );
    for r in RejectReason::ALL {
        let _ = writeln!(
            out,
            "overdued_events_rejected_total{{reason=\"{}\"}} {}",
            r.as_str(),
            s.rejected[r.index()]
        );
    }
    family(
        &mut out,
        "overdued_events_ignored_total",
        "counter",
        "Events ignored, by reason.",
    );
    for r in IgnoreReason::ALL {
        let _ = writeln!(
            out,
            "overdued_events_ignored_total{{reason=\"{}\"}} {}",
            r.as_str(),
            s.ignored[r.index()]
        );
    }
    family(
        &mut out,
        "overdued_alerts_total",
        "counter",
        "Alerts fired, by kind.",
    );
    for k in crate::engine::AlertKind::ALL {
        let _ = writeln!(
            out,
            "overdued_alerts_total{{kind=\"{}\"}} {}",
            k.as_str(),
            s.alerts[k as usize]
        );
    }
    // overdued_notifications_total{result} is one of the process's own metrics
    // (Metrics), present at 0 without e-mail.
    family(
        &mut out,
        "overdued_consumer_lag",
        "gauge",
        "Messages behind the partition's high watermark.",
    );
    for (p, v) in &s.lag {
        let _ = writeln!(out, "overdued_consumer_lag{{partition=\"{p}\"}} {v}");
    }
    let secs = |t: i64| t as f64 / crate::time::SECOND as f64;
    family(
        &mut out,
        "overdued_last_event_timestamp_seconds",
        "gauge",
        "Event time (at) of the latest event consumed, by partition.",
    );
    for (p, (at, _)) in &s.last_event {
        let _ = writeln!(
            out,
            "overdued_last_event_timestamp_seconds{{partition=\"{p}\"}} {:.3}",
            secs(*at)
        );
    }
    family(
        &mut out,
        "overdued_last_event_received_seconds",
        "gauge",
        "Wall-clock time the latest event was consumed, by partition.",
    );
    for (p, (_, wall)) in &s.last_event {
        let _ = writeln!(
            out,
            "overdued_last_event_received_seconds{{partition=\"{p}\"}} {:.3}",
            secs(*wall)
        );
    }
    family(
        &mut out,
        "overdued_kafka_broker_up",
        "gauge",
        "1 while the connection to the broker is up, by broker.",
    );
    for (b, up) in &s.brokers {
        let _ = writeln!(
            out,
            "overdued_kafka_broker_up{{broker=\"{}\"}} {}",
            esc(b),
            u8::from(*up)
        );
    }
    family(
        &mut out,
        "overdued_kafka_fetch_age_seconds",
        "gauge",
        "Seconds since the partition's broker last answered, by partition.",
    );
    for (p, v) in &s.fetch_age {
        let _ = writeln!(
            out,
            "overdued_kafka_fetch_age_seconds{{partition=\"{p}\"}} {v:.3}"
        );
    }
    family(
        &mut out,
        "overdued_partition_stalled",
        "gauge",
        "1 while the partition is stalled: no answer from its broker, or lag without progress, for [kafka] stall_after.",
    );
    for (p, v) in &s.stalled {
        let _ = writeln!(
            out,
            "overdued_partition_stalled{{partition=\"{p}\"}} {}",
            u8::from(*v)
        );
    }
    family(
        &mut out,
        "overdued_source_silent",
        "gauge",
        "1 while no event has arrived for [rules] source_silence_after of working time (hanging e-mails held).",
    );
    let _ = writeln!(out, "overdued_source_silent {}", u8::from(s.source_silent));
    // declared even before the first pass, so rules and dashboards never
    // name a family that appears only later
    family(
        &mut out,
        "overdued_calendar_covered_until_seconds",
        "gauge",
        "End of the last year whose days off a calendar file gives, without a gap from the current year.",
    );
    if let Some((covered, _)) = s.calendar {
        let _ = writeln!(
            out,
            "overdued_calendar_covered_until_seconds {:.0}",
            secs(covered)
        );
    }
    family(
        &mut out,
        "overdued_calendar_needed_until_seconds",
        "gauge",
        "Latest due time a record received now can get (the longest procedure): the calendar must cover it.",
    );
    if let Some((_, needed)) = s.calendar {
        let _ = writeln!(
            out,
            "overdued_calendar_needed_until_seconds {:.0}",
            secs(needed)
        );
    }
    family(
        &mut out,
        "overdued_unit_info",
        "gauge",
        "1 for every unit of the directory, with its level, area and name (join on unit).",
    );
    for u in s.units.iter() {
        let _ = writeln!(
            out,
            "overdued_unit_info{{unit=\"{}\",level=\"{}\",area=\"{}\",name=\"{}\"}} 1",
            esc(&u.unit),
            esc(&u.level),
            esc(&u.area),
            esc(&u.name)
        );
    }
    family(
        &mut out,
        "overdued_late_threshold_ratio",
        "gauge",
        "[report] late_threshold_percent as a ratio: a unit or area whose late rate is over it is marked.",
    );
    if let Some(t) = s.late_threshold {
        let _ = writeln!(out, "overdued_late_threshold_ratio {t}");
    }
    out
}

/// `overdued_ready`: the answer of `/readyz` as a series (1 ready, 0 not).
pub fn render_ready(out: &mut String, ready: bool) {
    family(
        out,
        "overdued_ready",
        "gauge",
        "1 while /readyz answers 200: partitions assigned and caught up, none blocked or stalled.",
    );
    let _ = writeln!(out, "overdued_ready {}", u8::from(ready));
}

#[cfg(test)]
mod tests {
    use super::events::{AlertsSilenced, NotificationResult};
    use super::*;

    #[test]
    fn process_metrics_register_once_with_stable_names() {
        let m = Metrics::new();
        AlertsSilenced { n: 1 }.emit(&m);
        let names: Vec<String> = m
            .family_names()
            .into_iter()
            .filter(|n| n.starts_with("overdued_"))
            .collect();
        assert_eq!(
            names,
            [
                "overdued_acknowledgements_total",
                "overdued_alertmanager_alerts",
                "overdued_alertmanager_posts_total",
                "overdued_config_reloads_total",
                "overdued_dead_letter_failures_total",
                "overdued_event_apply_seconds",
                "overdued_notification_send_seconds",
                "overdued_notifications_total",
                "overdued_notifier_images_total",
                "overdued_notify_streams",
                "overdued_outbox_depth",
                "overdued_partitions_blocked",
                "overdued_snapshot_bytes",
                "overdued_snapshot_last_success_timestamp_seconds",
                "overdued_snapshots_total"
            ]
        );
        assert_eq!(m.notifications(NotificationResult::Sent), 0);
        assert_eq!(m.notifications(NotificationResult::Silenced), 1);
        let text = m.encode();
        // declared with no webhook configured (no label values yet)
        for family in [
            "overdued_webhook_deliveries_total counter",
            "overdued_webhook_backlog gauge",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{text}");
        }
        // CPU time in fractions of a second, not whole seconds
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = m.encode();
        let cpu: f64 = after
            .lines()
            .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no process_cpu_seconds_total: {after}"));
        assert!(
            cpu >= 0.2,
            "process_cpu_seconds_total {cpu} after 0.3 s of work"
        );
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(after.contains(&format!("\n{name} ")), "no {name}: {after}");
        }
        for r in NotificationResult::ALL {
            assert!(
                text.contains(&format!(
                    "overdued_notifications_total{{result=\"{}\"}}",
                    r.as_str()
                )),
                "{text}"
            );
        }
    }
}
