//! The engine's settings and their validation: the working calendar, the unit and
//! procedure directory, and the alert rules (thresholds, overrides, the pause
//! policy, retention). The loader in `config/` reads the files and hands the raw
//! sections here; everything the engine needs arrives as one [`Settings`].

use super::calendar::{Calendar, CalendarSpec};
use super::directory::Directory;
use crate::config::common::{hours, parse_date, parse_duration, parse_hhmm, ConfigError, Src};
use crate::time::{HOUR, SECOND};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use toml::Spanned;

/// Everything the engine needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The working calendar.
    pub calendar: Calendar,
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
        if self.calendar.spec() != new.calendar.spec() {
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

/// How a `supplement` pause adjusts the due time on `resumed` (docs/spec.md §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupplementPolicy {
    /// Recompute the due time from the resume, as for a new receipt (Decree 107/2021).
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
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// `[calendar]` as written.
pub struct RawCalendar {
    pub timezone: Option<Spanned<String>>,
    pub periods: Option<Vec<Spanned<String>>>,
    pub weekdays: Option<Vec<Spanned<String>>>,
    pub files: Option<Vec<Spanned<String>>>,
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

/// Validates `[calendar]` and reads the data files it names (relative to `base`).
/// Returns the calendar and the years its files cover.
pub fn calendar(
    src: &Src<'_>,
    base: &Path,
    raw: Option<&RawCalendar>,
) -> Result<(Calendar, BTreeSet<i32>), ConfigError> {
    let mut spec = CalendarSpec::default();
    let mut years = BTreeSet::new();
    if let Some(cal) = raw {
        if let Some(tz) = &cal.timezone {
            spec.tz = tz.get_ref().parse().or_else(|_| {
                src.err(
                    tz.span(),
                    "calendar.timezone",
                    format!("unknown time zone {:?}", tz.get_ref()),
                )
            })?;
        }
        if let Some(periods) = &cal.periods {
            let mut out: Vec<(u32, u32)> = Vec::new();
            for p in periods {
                let parsed = p
                    .get_ref()
                    .split_once('-')
                    .and_then(|(a, b)| Some((parse_hhmm(a.trim())?, parse_hhmm(b.trim())?)));
                let Some((a, b)) = parsed else {
                    return src.err(
                        p.span(),
                        "calendar.periods",
                        format!("{:?} is not HH:MM-HH:MM", p.get_ref()),
                    );
                };
                if a >= b {
                    return src.err(
                        p.span(),
                        "calendar.periods",
                        format!("{:?} ends before it starts", p.get_ref()),
                    );
                }
                if out.last().is_some_and(|&(_, e)| a < e) {
                    return src.err(
                        p.span(),
                        "calendar.periods",
                        format!(
                            "{:?} overlaps or precedes the previous period (list them in order)",
                            p.get_ref()
                        ),
                    );
                }
                out.push((a, b));
            }
            if out.is_empty() {
                return src.err(
                    0..0,
                    "calendar.periods",
                    "at least one working period is needed",
                );
            }
            spec.periods = out;
        }
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
                    years.insert(crate::time::civil_from_days(day).0);
                    if makeup {
                        spec.makeup_days.insert(day);
                    } else {
                        spec.holidays.insert(day);
                    }
                }
            }
        }
    }
    Ok((Calendar::new(spec), years))
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
