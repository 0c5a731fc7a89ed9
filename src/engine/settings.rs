//! The engine's settings and their validation: the working calendar, the unit and
//! procedure directory, and the alert rules (thresholds, overrides, the pause
//! policy, retention). The loader in `config/` reads the files and hands the raw
//! sections here; everything the engine needs arrives as one [`Settings`].

use super::calendar::{Calendar, CalendarSpec, Season};
use super::directory::Directory;
use crate::config::common::{hours, parse_date, parse_duration, parse_hhmm, ConfigError, Src};
use crate::time::{Instant, HOUR, SECOND};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use toml::Spanned;

/// Everything the engine needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The default working calendar (`[calendar]`): local dates and times.
    pub calendar: Calendar,
    /// The named calendar profiles; a unit's `calendar` k > 0 is entry k - 1.
    pub profiles: Vec<(String, Calendar)>,
    /// Units, procedures, sectors.
    pub directory: Directory,
    /// Alert rules.
    pub rules: Rules,
}

impl Settings {
    /// What differs in `new` (for the reload log): `calendar`, `units`,
    /// `procedures`, `rules`.
    pub fn changes(&self, new: &Settings) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.calendar.spec() != new.calendar.spec()
            || self.profiles.len() != new.profiles.len()
            || self
                .profiles
                .iter()
                .zip(&new.profiles)
                .any(|(a, b)| a.0 != b.0 || a.1.spec() != b.1.spec())
        {
            out.push("calendar");
        }
        if self.directory.units != new.directory.units {
            out.push("units");
        }
        if self.directory.procedures != new.directory.procedures {
            out.push("procedures");
        }
        if self.rules != new.rules {
            out.push("rules");
        }
        out
    }
}

/// How far the calendar files reach, against the due times of today's receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Local midnight after the last year covered by a file without a gap
    /// from the current year (the current year's start when it is not covered).
    pub covered_until: Instant,
    /// The latest due time a record received now can get.
    pub needed_until: Instant,
    /// The procedure that gives it.
    pub longest: Option<String>,
    /// The local year of the instant asked about.
    pub current_year: i32,
}

impl Coverage {
    /// A warning when the files do not reach `needed_until`.
    pub fn warning(&self, cal: &Calendar) -> Option<String> {
        if self.needed_until < self.covered_until {
            return None;
        }
        let first = cal.local_date(self.covered_until).0;
        let last = cal.local_date(self.needed_until).0;
        let years = if first == last {
            first.to_string()
        } else {
            format!("{first}–{last}")
        };
        let reach = match first > self.current_year {
            true => format!("the calendar files give days off until 31/12/{}", first - 1),
            false => {
                let covered: Vec<String> =
                    cal.covered_years().iter().map(|y| y.to_string()).collect();
                format!(
                    "the calendar files do not cover the current year {first} (covered: {})",
                    if covered.is_empty() {
                        "none".into()
                    } else {
                        covered.join(", ")
                    }
                )
            }
        };
        Some(format!(
            "{reach}, but a record received now can be due as late as {}{}: for {years} only the fixed-date statutory days off apply (calendar.fixed_holidays), not Tết, Giỗ Tổ or swaps; add the year's calendar file",
            cal.format_local(self.needed_until),
            self.longest
                .as_ref()
                .map(|p| format!(" (procedure {p})"))
                .unwrap_or_default(),
        ))
    }
}

impl Settings {
    /// The calendars' reach against the longest procedure received at `now`.
    pub fn coverage(&self, now: Instant) -> Coverage {
        let cal = &self.calendar;
        let years = cal.covered_years();
        let current_year = cal.local_date(now).0;
        let mut year = current_year;
        while years.contains(&year) {
            year += 1;
        }
        let covered_until = cal.day_start(crate::time::days_from_civil(year, 1, 1));
        let mut needed_until = now;
        let mut longest = None;
        for p in &self.directory.procedures {
            for c in std::iter::once(cal).chain(self.profiles.iter().map(|p| &p.1)) {
                let due = c.due(now, p.duration);
                if due > needed_until {
                    needed_until = due;
                    longest = Some(p.code.clone());
                }
            }
        }
        Coverage {
            covered_until,
            needed_until,
            longest,
            current_year,
        }
    }
}

/// How a `supplement` pause adjusts the due time on `resumed` (docs/spec.md §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupplementPolicy {
    /// Recompute the due time from the resume, as for a new receipt (the rule of
    /// the former Decree 61/2018; docs/legal-basis.md).
    Restart,
    /// Move the due time later by the working time spent paused.
    Extend,
}

/// Alert thresholds, in instant units (microseconds of working time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// `hanging` fires this much working time after the last event.
    pub hanging_after: i64,
    /// `due_soon` fires this much working time before the due time.
    pub due_soon_before: i64,
    /// `overdue` escalates to the parent unit this much working time past due.
    pub escalate_after: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            hanging_after: 8 * HOUR,
            due_soon_before: 16 * HOUR,
            escalate_after: 16 * HOUR,
        }
    }
}

/// A partial override of [`Thresholds`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThresholdOverride {
    /// Replaces `hanging_after` if set.
    pub hanging_after: Option<i64>,
    /// Replaces `due_soon_before` if set.
    pub due_soon_before: Option<i64>,
    /// Replaces `escalate_after` if set.
    pub escalate_after: Option<i64>,
}

/// The `[rules]` section, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Defaults.
    pub defaults: Thresholds,
    /// Supplement pause policy.
    pub supplement_policy: SupplementPolicy,
    /// How long a closed record's event ids are remembered (instant units).
    pub closed_retention: i64,
    /// Overrides by sector code.
    pub by_sector: HashMap<String, ThresholdOverride>,
    /// Overrides by unit code (win over sector ones).
    pub by_unit: HashMap<String, ThresholdOverride>,
    /// Working time without any event arriving after which the source counts as
    /// silent and `hanging` e-mails are held (0 = never; the daemon only:
    /// docs/spec.md §9.8).
    pub source_silence_after: i64,
    /// A supplement asked (`paused`) later than this many working days after
    /// receipt counts in `late_supplement_requests`.
    pub supplement_request_within_days: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            defaults: Thresholds::default(),
            supplement_policy: SupplementPolicy::Restart,
            closed_retention: 7 * 86_400 * SECOND,
            by_sector: HashMap::new(),
            by_unit: HashMap::new(),
            source_silence_after: 3600 * SECOND,
            supplement_request_within_days: 3,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// `[calendar]` as written.
pub struct RawCalendar {
    pub timezone: Option<Spanned<String>>,
    pub periods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub season: Vec<Spanned<RawSeason>>,
    pub weekdays: Option<Vec<Spanned<String>>>,
    pub files: Option<Vec<Spanned<String>>>,
    pub fixed_holidays: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub profiles: std::collections::BTreeMap<String, Spanned<RawProfile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[calendar.profiles.NAME]` as written.
pub struct RawProfile {
    pub periods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub season: Vec<Spanned<RawSeason>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[...season]]` as written.
pub struct RawSeason {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub periods: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// `[rules]` as written.
pub struct RawRules {
    pub hanging_after_hours: Option<Spanned<f64>>,
    pub due_soon_before_hours: Option<Spanned<f64>>,
    pub escalate_after_hours: Option<Spanned<f64>>,
    pub supplement_policy: Option<Spanned<String>>,
    pub closed_retention: Option<Spanned<String>>,
    pub source_silence_after: Option<Spanned<String>>,
    pub supplement_request_within_days: Option<Spanned<i64>>,
    #[serde(rename = "override", default)]
    pub overrides: Vec<Spanned<RawOverride>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[rules.override]]` as written.
pub struct RawOverride {
    pub sector: Option<String>,
    pub unit: Option<String>,
    pub hanging_after_hours: Option<Spanned<f64>>,
    pub due_soon_before_hours: Option<Spanned<f64>>,
    pub escalate_after_hours: Option<Spanned<f64>>,
}

/// A calendar data file (`holidays`, `makeup_days`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendarFile {
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
    #[serde(default)]
    makeup_days: Vec<Spanned<String>>,
}

/// The fixed-date statutory days off of Vietnam, for a year no file covers:
/// 1 January, 30 April, 1 May, 2 September (Labour Code 45/2019/QH14 art.
/// 112(1)) and 24 November (Resolution 28/2026/QH16 art. 2).
pub const VN_FIXED_HOLIDAYS: [(u32, u32); 5] = [(1, 1), (4, 30), (5, 1), (9, 2), (11, 24)];

/// The default calendar and the named profiles, validated.
pub struct Calendars {
    /// `[calendar] periods` (and `[[calendar.season]]`).
    pub default: Calendar,
    /// `[calendar.profiles.NAME]`, sorted by name.
    pub profiles: Vec<(String, Calendar)>,
}

/// Parses a list of working periods `"HH:MM-HH:MM"`: sorted, disjoint, non-empty.
fn periods(
    src: &Src<'_>,
    list: &[Spanned<String>],
    field: &str,
    whole: std::ops::Range<usize>,
) -> Result<Vec<(u32, u32)>, ConfigError> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for p in list {
        let parsed = p
            .get_ref()
            .split_once('-')
            .and_then(|(a, b)| Some((parse_hhmm(a.trim())?, parse_hhmm(b.trim())?)));
        let Some((a, b)) = parsed else {
            return src.err(
                p.span(),
                field,
                format!("{:?} is not HH:MM-HH:MM", p.get_ref()),
            );
        };
        if a >= b {
            return src.err(
                p.span(),
                field,
                format!("{:?} ends before it starts", p.get_ref()),
            );
        }
        if out.last().is_some_and(|&(_, e)| a < e) {
            return src.err(
                p.span(),
                field,
                format!(
                    "{:?} overlaps or precedes the previous period (list them in order)",
                    p.get_ref()
                ),
            );
        }
        out.push((a, b));
    }
    if out.is_empty() {
        return src.err(whole, field, "at least one working period is needed");
    }
    Ok(out)
}

/// Parses `"MM-DD"` (any year's date; 02-29 is allowed).
fn month_day(s: &str) -> Option<(u32, u32)> {
    let (m, d) = s.split_once('-')?;
    if m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    let days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    ((1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1]).then_some((m, d))
}

fn seasons(
    src: &Src<'_>,
    raw: &[Spanned<RawSeason>],
    field: &str,
) -> Result<Vec<Season>, ConfigError> {
    let mut out = Vec::new();
    for (k, s) in raw.iter().enumerate() {
        let field = format!("{field}[{k}]");
        let r = s.get_ref();
        let mut ends = [(0, 0); 2];
        for (i, (v, name)) in [(&r.from, "from"), (&r.to, "to")].into_iter().enumerate() {
            ends[i] = month_day(v.get_ref()).ok_or(()).or_else(|_| {
                src.err(
                    v.span(),
                    &format!("{field}.{name}"),
                    format!("{:?} is not a date MM-DD", v.get_ref()),
                )
            })?;
        }
        out.push(Season {
            from: ends[0],
            to: ends[1],
            periods: periods(src, &r.periods, &format!("{field}.periods"), s.span())?,
        });
    }
    Ok(out)
}

/// Validates `[calendar]` and reads the data files it names (relative to `base`).
pub fn calendar(
    src: &Src<'_>,
    base: &Path,
    raw: Option<&RawCalendar>,
) -> Result<Calendars, ConfigError> {
    let mut spec = CalendarSpec::default();
    let Some(cal) = raw else {
        return Ok(Calendars {
            default: Calendar::new(spec),
            profiles: Vec::new(),
        });
    };
    if let Some(tz) = &cal.timezone {
        spec.tz = tz.get_ref().parse().or_else(|_| {
            src.err(
                tz.span(),
                "calendar.timezone",
                format!("unknown time zone {:?}", tz.get_ref()),
            )
        })?;
    }
    if let Some(p) = &cal.periods {
        spec.periods = periods(src, p, "calendar.periods", 0..0)?;
    }
    spec.seasons = seasons(src, &cal.season, "calendar.season")?;
    if let Some(days) = &cal.weekdays {
        let mut mask = [false; 7];
        for d in days {
            let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .position(|&n| n == d.get_ref().to_ascii_lowercase());
            match i {
                Some(i) => mask[i] = true,
                None => {
                    return src.err(
                        d.span(),
                        "calendar.weekdays",
                        format!(
                            "{:?} is not one of mon, tue, wed, thu, fri, sat, sun",
                            d.get_ref()
                        ),
                    )
                }
            }
        }
        spec.weekdays = mask;
    }
    for (k, f) in cal.files.iter().flatten().enumerate() {
        let fpath = base.join(f.get_ref());
        let ftext = std::fs::read_to_string(&fpath).map_err(|e| ConfigError {
            file: src.path.to_path_buf(),
            line: Some(src.line(f.span().start)),
            field: Some(format!("calendar.files[{k}]")),
            message: format!("cannot read {}: {e}", fpath.display()),
        })?;
        let fsrc = Src::new(&fpath, &ftext);
        let file: RawCalendarFile = fsrc.parse()?;
        for (list, name, makeup) in [
            (&file.holidays, "holidays", false),
            (&file.makeup_days, "makeup_days", true),
        ] {
            for (k, d) in list.iter().enumerate() {
                let field = format!("{name}[{k}]");
                let Some(day) = parse_date(d.get_ref()) else {
                    return fsrc.err(
                        d.span(),
                        &field,
                        format!("{:?} is not a date YYYY-MM-DD", d.get_ref()),
                    );
                };
                spec.covered_years
                    .insert(crate::time::civil_from_days(day).0);
                if makeup {
                    spec.makeup_days.insert(day);
                } else {
                    spec.holidays.insert(day);
                }
            }
        }
    }
    let mut fixed = VN_FIXED_HOLIDAYS.to_vec();
    if let Some(list) = &cal.fixed_holidays {
        fixed.clear();
        for (k, d) in list.iter().enumerate() {
            fixed.push(month_day(d.get_ref()).ok_or(()).or_else(|_| {
                src.err(
                    d.span(),
                    &format!("calendar.fixed_holidays[{k}]"),
                    format!("{:?} is not a date MM-DD", d.get_ref()),
                )
            })?);
        }
    }
    spec.add_fixed_holidays(&fixed);
    let mut profiles = Vec::new();
    for (name, p) in &cal.profiles {
        let field = format!("calendar.profiles.{name}");
        if !crate::config::common::valid_code(name) || name == "default" {
            return src.err(
                p.span(),
                &field,
                format!("{name:?} is not a profile name (letters, digits, '.', '-', '_'; not \"default\")"),
            );
        }
        let r = p.get_ref();
        let mut pspec = spec.clone();
        if let Some(list) = &r.periods {
            pspec.periods = periods(src, list, &format!("{field}.periods"), p.span())?;
        }
        pspec.seasons = seasons(src, &r.season, &format!("{field}.season"))?;
        profiles.push((name.clone(), Calendar::new(pspec)));
    }
    Ok(Calendars {
        default: Calendar::new(spec),
        profiles,
    })
}

/// Validates `[rules]` against the directory (an override's unit must exist; a
/// sector no procedure has is a warning).
pub fn rules(
    src: &Src<'_>,
    raw: Option<&RawRules>,
    directory: &Directory,
    warnings: &mut Vec<String>,
) -> Result<Rules, ConfigError> {
    let mut rules = Rules::default();
    if let Some(r) = raw {
        if let Some(h) = hours(src, &r.hanging_after_hours, "rules.hanging_after_hours")? {
            rules.defaults.hanging_after = h;
        }
        if let Some(h) = hours(src, &r.due_soon_before_hours, "rules.due_soon_before_hours")? {
            rules.defaults.due_soon_before = h;
        }
        if let Some(h) = hours(src, &r.escalate_after_hours, "rules.escalate_after_hours")? {
            rules.defaults.escalate_after = h;
        }
        if let Some(p) = &r.supplement_policy {
            rules.supplement_policy = match p.get_ref().as_str() {
                "restart" => SupplementPolicy::Restart,
                "extend" => SupplementPolicy::Extend,
                other => {
                    return src.err(
                        p.span(),
                        "rules.supplement_policy",
                        format!("must be \"restart\" or \"extend\" (got {other:?})"),
                    )
                }
            };
        }
        if let Some(d) = &r.closed_retention {
            rules.closed_retention = parse_duration(d.get_ref()).ok_or(()).or_else(|_| {
                src.err(
                    d.span(),
                    "rules.closed_retention",
                    format!("{:?} is not a duration like 7d, 24h, 30m", d.get_ref()),
                )
            })?;
        }
        if let Some(d) = &r.source_silence_after {
            rules.source_silence_after = parse_duration(d.get_ref()).ok_or(()).or_else(|_| {
                src.err(
                    d.span(),
                    "rules.source_silence_after",
                    format!(
                        "{:?} is not a working-time duration like 1h, 90m (0s = never)",
                        d.get_ref()
                    ),
                )
            })?;
        }
        if let Some(d) = &r.supplement_request_within_days {
            rules.supplement_request_within_days = u32::try_from(*d.get_ref())
                .ok()
                .filter(|&n| n <= 365)
                .ok_or(())
                .or_else(|_| {
                    src.err(
                        d.span(),
                        "rules.supplement_request_within_days",
                        format!(
                            "must be a whole number of working days from 0 to 365 (got {})",
                            d.get_ref()
                        ),
                    )
                })?;
        }
        for (k, o) in r.overrides.iter().enumerate() {
            let field = format!("rules.override[{k}]");
            let ov = o.get_ref();
            let t = ThresholdOverride {
                hanging_after: hours(
                    src,
                    &ov.hanging_after_hours,
                    &format!("{field}.hanging_after_hours"),
                )?,
                due_soon_before: hours(
                    src,
                    &ov.due_soon_before_hours,
                    &format!("{field}.due_soon_before_hours"),
                )?,
                escalate_after: hours(
                    src,
                    &ov.escalate_after_hours,
                    &format!("{field}.escalate_after_hours"),
                )?,
            };
            match (&ov.sector, &ov.unit) {
                (Some(s), None) => {
                    if directory.sectors.get(s).is_none() {
                        warnings.push(format!("{}:{}: override for sector {s:?}, which no procedure of the catalogue has", src.path.display(), src.line(o.span().start)));
                    }
                    rules.by_sector.insert(s.clone(), t);
                }
                (None, Some(u)) => {
                    if directory.unit_id(u).is_none() {
                        return src.err(
                            o.span(),
                            &format!("{field}.unit"),
                            format!("unit {u:?} is not in the unit directory"),
                        );
                    }
                    rules.by_unit.insert(u.clone(), t);
                }
                _ => {
                    return src.err(
                        o.span(),
                        &field,
                        "an override names exactly one of `sector` or `unit`",
                    )
                }
            }
        }
    }
    Ok(rules)
}
