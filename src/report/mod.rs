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

/// How a unit used pauses and extensions, and the late records it held at
/// their due time (docs/spec.md §3.5): by_unit only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Records judged late that this unit held when their due time passed.
    pub late_held: u64,
    /// `extended` events recorded while this unit held the record (apology
    /// letters with a new appointment).
    pub extensions: u64,
    /// Of those, recorded after the due time they replace.
    pub extensions_after_due: u64,
    /// Supplement `paused` events recorded more than `[rules]
    /// supplement_request_within_days` working days after receipt.
    pub late_supplement_requests: u64,
    /// Records paused (by `paused` events) more than once, counted under the
    /// holder at the second pause.
    pub repeated_pauses: u64,
}

impl Usage {
    /// Whether every count is zero.
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Usage) {
        self.late_held += o.late_held;
        self.extensions += o.extensions;
        self.extensions_after_due += o.extensions_after_due;
        self.late_supplement_requests += o.late_supplement_requests;
        self.repeated_pauses += o.repeated_pauses;
    }
}

/// The `--report` object: counts kept while the report is built; [`Report::to_json`]
/// adds what officials read beside them (rates, names, the threshold flag).
#[derive(Debug, Clone)]
pub struct Report {
    /// As of which instant (RFC 3339, UTC).
    pub as_of: String,
    /// The same instant in local time (RFC 3339 with the zone's offset).
    pub as_of_local: Option<String>,
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
    pub by_area: Option<BTreeMap<String, BTreeMap<String, Counts>>>,
    /// Pause and extension use and late records held, by unit (holder).
    pub usage: BTreeMap<String, Usage>,
    /// Unit (and area) names, by code.
    pub names: BTreeMap<String, String>,
    /// `[report] late_threshold_percent`.
    pub late_threshold_percent: f64,
}

/// One row as written: the counts, then the rates and the flag.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    counts: &'a Counts,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    on_time_rate: Option<f64>,
    late_rate: Option<f64>,
    over_threshold: bool,
}

#[derive(Serialize)]
struct Out<'a> {
    as_of: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of_local: Option<&'a str>,
    late_threshold_percent: f64,
    total: Row<'a>,
    by_level: BTreeMap<&'a str, Row<'a>>,
    by_unit: BTreeMap<&'a str, Row<'a>>,
    by_sector: BTreeMap<&'a str, Row<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_area: Option<BTreeMap<&'a str, BTreeMap<&'a str, Row<'a>>>>,
}

/// A percentage to two decimals, as officials read it.
fn pct(v: Option<f64>) -> Option<f64> {
    v.map(|x| (x * 100.0).round() / 100.0)
}

impl Report {
    /// An empty report.
    pub fn new(as_of: Instant) -> Report {
        Report {
            as_of: format_rfc3339(as_of),
            as_of_local: None,
            total: Counts::default(),
            by_level: BTreeMap::new(),
            by_unit: BTreeMap::new(),
            by_sector: BTreeMap::new(),
            by_area: None,
            usage: BTreeMap::new(),
            names: BTreeMap::new(),
            late_threshold_percent: 5.0,
        }
    }

    /// Fills `by_area` from `by_unit`; `area_of` gives a unit's (area, level,
    /// area name), `None` for a unit in no area.
    pub fn add_areas<'a>(&mut self, area_of: impl Fn(&str) -> Option<(&'a str, &'a str, &'a str)>) {
        let mut areas: BTreeMap<String, BTreeMap<String, Counts>> = BTreeMap::new();
        for (code, c) in &self.by_unit {
            let Some((area, level, name)) = area_of(code) else {
                continue;
            };
            self.names.insert(area.to_string(), name.to_string());
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

    fn row<'a>(
        &'a self,
        c: &'a Counts,
        usage: Option<&'a Usage>,
        name: Option<&'a str>,
    ) -> Row<'a> {
        let late = c.late_rate();
        Row {
            counts: c,
            usage,
            name,
            on_time_rate: pct(c.on_time_rate()),
            late_rate: pct(late),
            over_threshold: late.is_some_and(|r| r > self.late_threshold_percent),
        }
    }

    /// JSON with one-space indentation (the layout of the spec's examples).
    pub fn to_json(&self) -> String {
        const NONE: Usage = Usage {
            late_held: 0,
            extensions: 0,
            extensions_after_due: 0,
            late_supplement_requests: 0,
            repeated_pauses: 0,
        };
        fn group<'a>(r: &'a Report, m: &'a BTreeMap<String, Counts>) -> BTreeMap<&'a str, Row<'a>> {
            m.iter()
                .map(|(k, c)| (k.as_str(), r.row(c, None, None)))
                .collect()
        }
        let out = Out {
            as_of: &self.as_of,
            as_of_local: self.as_of_local.as_deref(),
            late_threshold_percent: self.late_threshold_percent,
            total: self.row(&self.total, None, None),
            by_level: group(self, &self.by_level),
            by_unit: self
                .by_unit
                .iter()
                .map(|(k, c)| {
                    let usage = self.usage.get(k).unwrap_or(&NONE);
                    let name = self.names.get(k).map(String::as_str);
                    (k.as_str(), self.row(c, Some(usage), name))
                })
                .collect(),
            by_sector: group(self, &self.by_sector),
            by_area: self.by_area.as_ref().map(|areas| {
                areas
                    .iter()
                    .map(|(a, levels)| {
                        let name = self.names.get(a).map(String::as_str);
                        let rows = levels
                            .iter()
                            .map(|(l, c)| (l.as_str(), self.row(c, None, name)))
                            .collect();
                        (a.as_str(), rows)
                    })
                    .collect()
            }),
        };
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        if out.serialize(&mut ser).is_err() {
            return String::from("{}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
