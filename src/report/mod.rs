//! Timeliness counts in the Home Affairs categories (docs/spec.md §3.5, §6 `--report`).

pub mod settings;

pub use settings::Settings;

use crate::time::{format_rfc3339, Instant};
use serde::Serialize;
use std::collections::BTreeMap;

/// Counts of one group of records. Field order is the spec's output order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Records received (opened, including by `snapshot`).
    pub received: u64,
    /// Closed before the due date.
    pub early: u64,
    /// Closed on the due date.
    pub on_time: u64,
    /// Closed after the due date.
    pub late: u64,
    /// Open, running, not past the original due time.
    pub in_progress_within: u64,
    /// Open, running, past the original due time.
    pub in_progress_overdue: u64,
    /// Open and paused.
    pub paused: u64,
    /// Closed by `rejected`.
    pub rejected: u64,
    /// Closed by `withdrawn`.
    pub withdrawn: u64,
}

impl Counts {
    /// Whether every count is zero.
    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Counts) {
        self.received += o.received;
        self.early += o.early;
        self.on_time += o.on_time;
        self.late += o.late;
        self.in_progress_within += o.in_progress_within;
        self.in_progress_overdue += o.in_progress_overdue;
        self.paused += o.paused;
        self.rejected += o.rejected;
        self.withdrawn += o.withdrawn;
    }

    /// Judged records: early + on time + late.
    pub fn judged(&self) -> u64 {
        self.early + self.on_time + self.late
    }

    /// (early + on_time) / judged, in percent; `None` if nothing was judged.
    pub fn on_time_rate(&self) -> Option<f64> {
        let j = self.judged();
        (j > 0).then(|| 100.0 * (self.early + self.on_time) as f64 / j as f64)
    }

    /// late / judged, in percent; `None` if nothing was judged.
    pub fn late_rate(&self) -> Option<f64> {
        let j = self.judged();
        (j > 0).then(|| 100.0 * self.late as f64 / j as f64)
    }
}

/// The `--report` object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// As of which instant (RFC 3339).
    pub as_of: String,
    /// All records.
    pub total: Counts,
    /// By level of the receiving unit.
    pub by_level: BTreeMap<String, Counts>,
    /// By receiving unit.
    pub by_unit: BTreeMap<String, Counts>,
    /// By sector.
    pub by_sector: BTreeMap<String, Counts>,
    /// By area (`[report] area_level`), then by level of the receiving unit:
    /// every unit counts in its top-most ancestor-or-self at the area level;
    /// units with none are left out. Absent when no area level is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_area: Option<BTreeMap<String, BTreeMap<String, Counts>>>,
}

impl Report {
    /// An empty report.
    pub fn new(as_of: Instant) -> Report {
        Report {
            as_of: format_rfc3339(as_of),
            total: Counts::default(),
            by_level: BTreeMap::new(),
            by_unit: BTreeMap::new(),
            by_sector: BTreeMap::new(),
            by_area: None,
        }
    }

    /// Fills `by_area` from `by_unit`; `area_of` gives a unit's (area, level),
    /// `None` for a unit in no area.
    pub fn add_areas<'a>(&mut self, area_of: impl Fn(&str) -> Option<(&'a str, &'a str)>) {
        let mut areas: BTreeMap<String, BTreeMap<String, Counts>> = BTreeMap::new();
        for (code, c) in &self.by_unit {
            let Some((area, level)) = area_of(code) else {
                continue;
            };
            areas
                .entry(area.to_string())
                .or_default()
                .entry(level.to_string())
                .or_default()
                .add(c);
        }
        self.by_area = Some(areas);
    }

    /// Adds a receiving unit's counts (to the unit, its level and the total).
    pub fn add(&mut self, unit: &str, level: &str, c: &Counts) {
        self.total.add(c);
        self.by_level.entry(level.to_string()).or_default().add(c);
        self.by_unit.entry(unit.to_string()).or_default().add(c);
    }

    /// JSON with one-space indentation (the layout of the spec's examples).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        if self.serialize(&mut ser).is_err() {
            return String::from("{}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
