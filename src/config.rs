//! Configuration: `overdued.toml` and the data files it names (SPEC §7).
//!
//! Loading validates everything before anything runs, and every error names the
//! file, the line and the field, e.g.
//! `config/units.csv:7: field \`level\`: must be province, district or commune (got "xa")`.
//! Paths inside the TOML file are relative to its folder.

use crate::engine::calendar::{Calendar, CalendarSpec, DurationUnit, LegalDuration};
use crate::engine::directory::{Directory, Level, Unit};
use crate::time::{days_from_civil, HOUR, SECOND};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration error: where, which field, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file concerned.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field (dotted path or CSV column), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// How a `supplement` pause adjusts the due time on `resumed` (SPEC §3.4).
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
#[derive(Debug, Clone)]
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
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            defaults: Thresholds::default(),
            supplement_policy: SupplementPolicy::Restart,
            closed_retention: 7 * 86_400 * SECOND,
            by_sector: HashMap::new(),
            by_unit: HashMap::new(),
        }
    }
}

/// Everything the engine needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file.
    pub path: PathBuf,
    /// The working calendar.
    pub calendar: Calendar,
    /// Units, procedures, sectors.
    pub directory: Directory,
    /// Alert rules.
    pub rules: Rules,
    /// Sections only the daemon reads (`kafka`, `http`, `state`, `alerts`).
    pub daemon: DaemonConfig,
    /// `[email]`: how alerts become e-mails (defaults when the section is absent;
    /// `enabled` says whether it was given).
    pub email: EmailConfig,
    /// Non-fatal findings (e.g. the calendar does not cover the current year).
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    calendar: Option<RawCalendar>,
    directory: Option<RawDirectory>,
    rules: Option<RawRules>,
    kafka: Option<RawKafka>,
    http: Option<RawHttp>,
    state: Option<RawState>,
    alerts: Option<RawAlerts>,
    email: Option<RawEmail>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp_url: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    tls_ca_file: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    admin: Option<Spanned<String>>,
    language: Option<Spanned<String>>,
    group_wait: Option<Spanned<String>>,
    group_interval: Option<Spanned<String>>,
    repeat_interval: Option<Spanned<String>>,
    digest_at: Option<Spanned<String>>,
    templates: Option<Spanned<String>>,
    rate_limit_per_domain: Option<Spanned<i64>>,
    max_items: Option<Spanned<i64>>,
    #[serde(default)]
    silence: Vec<Spanned<RawSilence>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSilence {
    unit: Option<String>,
    sector: Option<String>,
    kind: Option<String>,
    record: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(default)]
    comment: String,
}

/// `[email]` (SPEC §7; issue 4), validated.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// Whether the configuration has an `[email]` section (the daemon sends
    /// e-mail only then; replay and demo render with these settings either way).
    pub enabled: bool,
    /// SMTP server and delivery settings.
    pub smtp: crate::notify::SmtpConfig,
    /// `From:` as written (`name <address>`).
    pub from: String,
    /// Receives `unrouted` and alerts of units without addresses.
    pub admin: Vec<String>,
    /// `vi` or `en`.
    pub language: String,
    /// Grouping and digest.
    pub settings: crate::alert::Settings,
    /// The compiled templates.
    pub templates: crate::notify::render::Templates,
    /// `[[email.silence]]`.
    pub silences: Vec<crate::alert::Silence>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            enabled: false,
            smtp: crate::notify::SmtpConfig::default(),
            from: "overdued <no-reply@example.vn>".into(),
            admin: vec!["hcc@example.vn".into()],
            language: "vi".into(),
            settings: crate::alert::Settings::default(),
            templates: crate::notify::render::Templates::embedded("vi"),
            silences: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    brokers: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    group_id: Option<Spanned<String>>,
    dead_letter_topic: Option<Spanned<String>>,
    #[serde(default)]
    properties: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    record_history: Option<Spanned<i64>>,
    api_token: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    file: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
}

/// A secret value (password, token): resolved from `env:NAME` or `file:PATH` at
/// load time; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Resolves `env:NAME` / `file:PATH` (relative to `base`); other values are literal.
pub fn resolve_secret(value: &str, base: &Path) -> Result<Secret, String> {
    if let Some(name) = value.strip_prefix("env:") {
        return std::env::var(name)
            .map(Secret)
            .map_err(|_| format!("environment variable {name} is not set"));
    }
    if let Some(p) = value.strip_prefix("file:") {
        let path = base.join(p);
        return std::fs::read_to_string(&path)
            .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()));
    }
    Ok(Secret(value.to_string()))
}

/// `[kafka]`: the daemon's source (SPEC §7).
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// The record-event topic.
    pub topic: String,
    /// Consumer group.
    pub group_id: String,
    /// Where rejected messages go.
    pub dead_letter_topic: String,
    /// librdkafka properties passed through (values may be secrets).
    pub properties: Vec<(String, Secret)>,
}

/// Sections only the daemon (`overdued run`) reads.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[http] listen`.
    pub http_listen: std::net::SocketAddr,
    /// `[http] record_history`: events kept per record for the API (0 = none).
    pub record_history: usize,
    /// `[state] dir` (absolute, resolved against the config folder).
    pub state_dir: PathBuf,
    /// `[alerts] file`: alert transitions as NDJSON (default `<state dir>/alerts.ndjson`).
    pub alerts_file: Option<PathBuf>,
    /// `[alerts] topic`: alert transitions as Kafka messages (key: record id).
    pub alerts_topic: Option<String>,
    /// `[http] api_token`: bearer token of the API's mutating endpoints (none =
    /// they are refused).
    pub api_token: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    timezone: Option<Spanned<String>>,
    periods: Option<Vec<Spanned<String>>>,
    weekdays: Option<Vec<Spanned<String>>>,
    files: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    units: Spanned<String>,
    procedures: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    hanging_after_hours: Option<Spanned<f64>>,
    due_soon_before_hours: Option<Spanned<f64>>,
    escalate_after_hours: Option<Spanned<f64>>,
    supplement_policy: Option<Spanned<String>>,
    closed_retention: Option<Spanned<String>>,
    #[serde(rename = "override", default)]
    overrides: Vec<Spanned<RawOverride>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    sector: Option<String>,
    unit: Option<String>,
    hanging_after_hours: Option<Spanned<f64>>,
    due_soon_before_hours: Option<Spanned<f64>>,
    escalate_after_hours: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendarFile {
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
    #[serde(default)]
    makeup_days: Vec<Spanned<String>>,
}

/// A TOML source being validated: turns byte spans into line numbers.
struct Src<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        msg: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.path.to_path_buf(),
            line: Some(self.line(span.start)),
            field: Some(field.to_string()),
            message: msg.into(),
        })
    }
    fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let mut msg = e
                .message()
                .trim()
                .replace("expected f64", "expected a number of hours");
            if !msg.starts_with("invalid type")
                && !msg.starts_with("unknown field")
                && !msg.starts_with("missing field")
                && !msg.starts_with("duplicate")
            {
                msg = format!("TOML syntax error: {msg}");
            }
            let (line, field) = match e.span() {
                Some(s) => {
                    let line_start = self.text[..s.start.min(self.text.len())]
                        .rfind('\n')
                        .map_or(0, |i| i + 1);
                    let col = s.start.saturating_sub(line_start) + 1;
                    if !msg.starts_with("unknown field") {
                        msg = format!("{msg} (column {col})");
                    }
                    (Some(self.line(s.start)), self.field_at(s.start))
                }
                None => (None, None),
            };
            ConfigError {
                file: self.path.to_path_buf(),
                line,
                field,
                message: msg,
            }
        })
    }

    /// The dotted key at byte `offset`: the enclosing `[section]` and the key of
    /// the line (best effort: for error messages only).
    fn field_at(&self, offset: usize) -> Option<String> {
        let upto = &self.text[..offset.min(self.text.len())];
        let line_start = upto.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text[line_start..].lines().next().unwrap_or("");
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string());
        let section = upto[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        match (section, key) {
            (_, Some(k)) if k.is_empty() || k.starts_with('#') || k.contains(' ') => None,
            (Some(s), Some(k)) => Some(format!("{s}.{k}")),
            (None, Some(k)) => Some(k),
            (Some(s), None) if line.trim_start().starts_with('[') => Some(
                line.trim()
                    .trim_matches(|c| c == '[' || c == ']')
                    .to_string(),
            )
            .filter(|_| !s.is_empty()),
            _ => None,
        }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: None,
        message: format!("cannot read: {e}"),
    })
}

/// Parses `HH:MM` into seconds after midnight (24:00 allowed as an end).
fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 3600 + m * 60)
}

/// Parses a duration string such as `30s`, `5m`, `24h`, `7d` into instant units.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    if n < 0 {
        return None;
    }
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)?.checked_mul(SECOND)
}

/// Parses a `YYYY-MM-DD` date into days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // reject 2023-02-30 and friends: the round trip must agree
    (crate::time::civil_from_days(days) == (y, m, d)).then_some(days)
}

fn hours(src: &Src<'_>, v: &Option<Spanned<f64>>, field: &str) -> Result<Option<i64>, ConfigError> {
    match v {
        None => Ok(None),
        Some(s) => {
            let h = *s.get_ref();
            if !h.is_finite() || !(0.0..=100_000.0).contains(&h) {
                return src.err(
                    s.span(),
                    field,
                    format!("must be a number of hours between 0 and 100000 (got {h})"),
                );
            }
            Ok(Some((h * HOUR as f64).round() as i64))
        }
    }
}

impl Config {
    /// Loads and validates `path` and every file it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        let src = Src { path, text: &text };
        let raw: RawConfig = src.parse()?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut warnings = Vec::new();

        // [calendar]
        let mut spec = CalendarSpec::default();
        let mut years = BTreeSet::new();
        if let Some(cal) = &raw.calendar {
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
                        return src.err(p.span(), "calendar.periods", format!("{:?} overlaps or precedes the previous period (list them in order)", p.get_ref()));
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
                    file: path.to_path_buf(),
                    line: Some(src.line(f.span().start)),
                    field: Some(format!("calendar.files[{k}]")),
                    message: format!("cannot read {}: {e}", fpath.display()),
                })?;
                let fsrc = Src {
                    path: &fpath,
                    text: &ftext,
                };
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
        let calendar = Calendar::new(spec);
        let this_year = chrono::Utc::now()
            .format("%Y")
            .to_string()
            .parse::<i32>()
            .unwrap_or(0);
        if !years.contains(&this_year) {
            warnings.push(format!(
                "{}: the calendar files do not cover the current year {this_year} (covered: {}); holidays of {this_year} are unknown and only weekdays count",
                path.display(),
                if years.is_empty() { "none".to_string() } else { years.iter().map(|y| y.to_string()).collect::<Vec<_>>().join(", ") }
            ));
        }

        // [directory]
        let Some(dir) = &raw.directory else {
            return Err(ConfigError {
                file: path.to_path_buf(),
                line: None,
                field: Some("directory".into()),
                message: "missing section [directory] (units, procedures)".into(),
            });
        };
        for (f, name) in [
            (&dir.units, "directory.units"),
            (&dir.procedures, "directory.procedures"),
        ] {
            let p = base.join(f.get_ref());
            if let Err(e) = std::fs::metadata(&p) {
                return src.err(f.span(), name, format!("cannot read {}: {e}", p.display()));
            }
        }
        let units = load_units(&base.join(dir.units.get_ref()))?;
        let procedures = load_procedures(&base.join(dir.procedures.get_ref()))?;
        let directory = Directory::new(units, procedures);

        // [rules]
        let mut rules = Rules::default();
        if let Some(r) = &raw.rules {
            if let Some(h) = hours(&src, &r.hanging_after_hours, "rules.hanging_after_hours")? {
                rules.defaults.hanging_after = h;
            }
            if let Some(h) = hours(
                &src,
                &r.due_soon_before_hours,
                "rules.due_soon_before_hours",
            )? {
                rules.defaults.due_soon_before = h;
            }
            if let Some(h) = hours(&src, &r.escalate_after_hours, "rules.escalate_after_hours")? {
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
            for (k, o) in r.overrides.iter().enumerate() {
                let field = format!("rules.override[{k}]");
                let ov = o.get_ref();
                let t = ThresholdOverride {
                    hanging_after: hours(
                        &src,
                        &ov.hanging_after_hours,
                        &format!("{field}.hanging_after_hours"),
                    )?,
                    due_soon_before: hours(
                        &src,
                        &ov.due_soon_before_hours,
                        &format!("{field}.due_soon_before_hours"),
                    )?,
                    escalate_after: hours(
                        &src,
                        &ov.escalate_after_hours,
                        &format!("{field}.escalate_after_hours"),
                    )?,
                };
                match (&ov.sector, &ov.unit) {
                    (Some(s), None) => {
                        if directory.sectors.get(s).is_none() {
                            warnings.push(format!("{}:{}: override for sector {s:?}, which no procedure of the catalogue has", path.display(), src.line(o.span().start)));
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
        let daemon = daemon_section(&src, base, &raw)?;
        let email = email_section(&src, base, raw.email.as_ref(), &mut warnings)?;
        Ok(Config {
            path: path.to_path_buf(),
            calendar,
            directory,
            rules,
            daemon,
            email,
            warnings,
        })
    }
}

fn daemon_section(
    src: &Src<'_>,
    base: &Path,
    raw: &RawConfig,
) -> Result<DaemonConfig, ConfigError> {
    let text =
        |v: &Option<Spanned<String>>, field: &str, default: &str| -> Result<String, ConfigError> {
            match v {
                Some(s) if s.get_ref().trim().is_empty() => {
                    src.err(s.span(), field, "must not be empty")
                }
                Some(s) => Ok(s.get_ref().clone()),
                None => Ok(default.to_string()),
            }
        };
    let k = raw.kafka.as_ref();
    let mut properties = Vec::new();
    if let Some(k) = k {
        for (key, v) in &k.properties {
            let field = format!("kafka.properties.{key}");
            let value = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ => {
                    return Err(ConfigError {
                        file: src.path.to_path_buf(),
                        line: None,
                        field: Some(field),
                        message: "must be a string, number or boolean".into(),
                    })
                }
            };
            let secret = resolve_secret(&value, base).map_err(|m| ConfigError {
                file: src.path.to_path_buf(),
                line: None,
                field: Some(field.clone()),
                message: m,
            })?;
            properties.push((key.clone(), secret));
        }
    }
    let kafka = KafkaConfig {
        brokers: text(
            &k.and_then(|k| k.brokers.clone()),
            "kafka.brokers",
            "127.0.0.1:9092",
        )?,
        topic: text(
            &k.and_then(|k| k.topic.clone()),
            "kafka.topic",
            "records.events",
        )?,
        group_id: text(
            &k.and_then(|k| k.group_id.clone()),
            "kafka.group_id",
            "overdued",
        )?,
        dead_letter_topic: text(
            &k.and_then(|k| k.dead_letter_topic.clone()),
            "kafka.dead_letter_topic",
            "records.events.dlq",
        )?,
        properties,
    };
    let listen = raw.http.as_ref().and_then(|h| h.listen.clone());
    let http_listen = match &listen {
        Some(l) => l.get_ref().parse().or_else(|_| {
            src.err(
                l.span(),
                "http.listen",
                format!("{:?} is not an address like 127.0.0.1:9464", l.get_ref()),
            )
        })?,
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
    };
    let state_dir = base.join(text(
        &raw.state.as_ref().and_then(|s| s.dir.clone()),
        "state.dir",
        "state",
    )?);
    let alerts = raw.alerts.as_ref();
    let alerts_topic = match alerts.and_then(|a| a.topic.clone()) {
        Some(t) if t.get_ref().is_empty() => None,
        Some(t) => Some(t.into_inner()),
        None => None,
    };
    let alerts_file = match alerts.and_then(|a| a.file.clone()) {
        Some(f) if f.get_ref().is_empty() => None,
        Some(f) => Some(base.join(f.get_ref())),
        None if alerts_topic.is_none() => Some(state_dir.join("alerts.ndjson")),
        None => None,
    };
    let record_history = match raw.http.as_ref().and_then(|h| h.record_history.clone()) {
        Some(n) if !(0..=10_000).contains(n.get_ref()) => {
            return src.err(
                n.span(),
                "http.record_history",
                "must be a number of events from 0 to 10000",
            );
        }
        Some(n) => *n.get_ref() as usize,
        None => 64,
    };
    let api_token = match raw.http.as_ref().and_then(|h| h.api_token.clone()) {
        None => None,
        Some(t) => {
            let v = resolve_secret(t.get_ref(), base)
                .or_else(|m| src.err(t.span(), "http.api_token", m))?;
            if v.expose().len() < 16 {
                return src.err(
                    t.span(),
                    "http.api_token",
                    "must be at least 16 characters (use env:NAME or file:PATH)",
                );
            }
            Some(v)
        }
    };
    Ok(DaemonConfig {
        kafka,
        http_listen,
        record_history,
        state_dir,
        alerts_file,
        alerts_topic,
        api_token,
    })
}

fn email_section(
    src: &Src<'_>,
    base: &Path,
    raw: Option<&RawEmail>,
    warnings: &mut Vec<String>,
) -> Result<EmailConfig, ConfigError> {
    let mut c = EmailConfig::default();
    let Some(e) = raw else {
        return Ok(c);
    };
    c.enabled = true;
    if let Some(u) = &e.smtp_url {
        let v = u.get_ref();
        let ok = (v.starts_with("smtp://") || v.starts_with("smtps://"))
            && v.split("://").nth(1).is_some_and(|h| !h.is_empty());
        if !ok {
            return src.err(
                u.span(),
                "email.smtp_url",
                format!("{v:?} is not smtp://host:port or smtps://host:port"),
            );
        }
        c.smtp.url = v.clone();
    }
    if let Some(u) = &e.username {
        c.smtp.username = Some(u.get_ref().clone());
    }
    if let Some(p) = &e.password {
        c.smtp.password = Some(
            resolve_secret(p.get_ref(), base)
                .or_else(|m| src.err(p.span(), "email.password", m))?,
        );
    }
    if let Some(f) = &e.tls_ca_file {
        // Read and parsed now: a missing or garbled CA file is a configuration
        // error at start-up, not a TLS failure retried forever at send time.
        let path = base.join(f.get_ref());
        let ca = crate::notify::TlsCa::from_file(&path)
            .or_else(|m| src.err(f.span(), "email.tls_ca_file", m))?;
        if crate::notify::smtp::parse_url(&c.smtp.url)
            .is_ok_and(|ep| ep.tls == crate::notify::smtp::TlsMode::None)
        {
            warnings.push(format!(
                "{}:{}: email.tls_ca_file is not used: smtp_url has tls=none",
                src.path.display(),
                src.line(f.span().start)
            ));
        }
        c.smtp.tls_ca = Some(ca);
    }
    if let Some(f) = &e.from {
        let v = f.get_ref();
        if v.parse::<lettre::message::Mailbox>().is_err() || v.contains(['\r', '\n']) {
            return src.err(
                f.span(),
                "email.from",
                format!("{v:?} is not an address like \"overdued <no-reply@example.vn>\""),
            );
        }
        c.from = v.clone();
    }
    if let Some(a) = &e.admin {
        let list: Vec<String> = a
            .get_ref()
            .split(';')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|x| !valid_email(x)) {
            return src.err(
                a.span(),
                "email.admin",
                format!("{:?} is not a ';'-separated list of addresses", a.get_ref()),
            );
        }
        c.admin = list;
    }
    if let Some(l) = &e.language {
        if !matches!(l.get_ref().as_str(), "vi" | "en") {
            return src.err(l.span(), "email.language", "must be \"vi\" or \"en\"");
        }
        c.language = l.get_ref().clone();
    }
    let dur =
        |v: &Option<Spanned<String>>, field: &str, slot: &mut i64| -> Result<(), ConfigError> {
            if let Some(d) = v {
                *slot = parse_duration(d.get_ref()).ok_or(()).or_else(|_| {
                    src.err(
                        d.span(),
                        field,
                        format!("{:?} is not a duration like 30s, 5m, 24h", d.get_ref()),
                    )
                })?;
            }
            Ok(())
        };
    dur(
        &e.group_wait,
        "email.group_wait",
        &mut c.settings.group_wait,
    )?;
    dur(
        &e.group_interval,
        "email.group_interval",
        &mut c.settings.group_interval,
    )?;
    dur(
        &e.repeat_interval,
        "email.repeat_interval",
        &mut c.settings.repeat_interval,
    )?;
    if let Some(d) = &e.digest_at {
        c.settings.digest_at = match d.get_ref().as_str() {
            "" => None,
            v => Some(
                parse_hhmm(v)
                    .filter(|&x| x < 86_400)
                    .map(i64::from)
                    .ok_or(())
                    .or_else(|_| {
                        src.err(
                            d.span(),
                            "email.digest_at",
                            format!("{v:?} is not a local time like 07:30 (or \"\" for no digest)"),
                        )
                    })?,
            ),
        };
    }
    if let Some(r) = &e.rate_limit_per_domain {
        if !(0..=100_000).contains(r.get_ref()) {
            return src.err(
                r.span(),
                "email.rate_limit_per_domain",
                "must be e-mails per minute from 0 (no limit) to 100000",
            );
        }
        c.smtp.rate_per_domain_per_minute = *r.get_ref() as u32;
    }
    if let Some(m) = &e.max_items {
        if !(1..=100_000).contains(m.get_ref()) {
            return src.err(m.span(), "email.max_items", "must be from 1 to 100000");
        }
        c.settings.max_items = *m.get_ref() as usize;
    }
    let dir = match &e.templates {
        Some(t) => Some((base.join(t.get_ref()), Some(t))),
        None => {
            let d = base.join("templates");
            d.join(&c.language).is_dir().then_some((d, None))
        }
    };
    c.templates = match dir {
        None => crate::notify::render::Templates::embedded(&c.language),
        Some((d, span)) => crate::notify::render::Templates::load(&d.join(&c.language)).map_err(
            |(file, line, msg)| ConfigError {
                file,
                line,
                field: span.map(|_| "email.templates".to_string()),
                message: msg,
            },
        )?,
    };
    for (i, s) in e.silence.iter().enumerate() {
        let field = format!("email.silence[{i}]");
        let r = s.get_ref();
        let new = crate::alert::NewSilence {
            unit: r.unit.clone(),
            sector: r.sector.clone(),
            kind: r.kind.clone(),
            record: r.record.clone(),
            starts_at: Some(
                r.starts_at
                    .clone()
                    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
            ),
            ends_at: r.ends_at.clone(),
            comment: r.comment.clone(),
            created_by: "config".into(),
        };
        match new.validate(format!("cfg-{}", i + 1), 0) {
            Ok(sil) => c.silences.push(sil),
            Err(m) => return src.err(s.span(), &field, m.to_string()),
        }
    }
    Ok(c)
}

fn csv_err(path: &Path, line: Option<u64>, field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: line.map(|l| l as usize),
        field: Some(field.to_string()),
        message: msg.into(),
    }
}

/// Reads a CSV with the exact header `want`; yields (line, fields).
fn read_csv(path: &Path, want: &[&str]) -> Result<Vec<(u64, Vec<String>)>, ConfigError> {
    let text = read(path)?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = rdr
        .headers()
        .map_err(|e| csv_err(path, Some(1), "header", e.to_string()))?
        .clone();
    let got: Vec<&str> = header.iter().collect();
    if got != want {
        return Err(csv_err(
            path,
            Some(1),
            "header",
            format!(
                "expected columns {} (got {})",
                want.join(","),
                got.join(",")
            ),
        ));
    }
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line());
            csv_err(path, line, "row", e.to_string())
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        rows.push((line, rec.iter().map(|s| s.to_string()).collect()));
    }
    Ok(rows)
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        })
}

fn valid_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Loads `units.csv`: `code,name,level,parent,emails,head_email`.
pub fn load_units(path: &Path) -> Result<Vec<Unit>, ConfigError> {
    let rows = read_csv(
        path,
        &["code", "name", "level", "parent", "emails", "head_email"],
    )?;
    let mut units = Vec::with_capacity(rows.len());
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut parents = Vec::new();
    for (line, f) in rows {
        let l = Some(line);
        let code = &f[0];
        if !valid_code(code) {
            return Err(csv_err(
                path,
                l,
                "code",
                format!("{code:?} is not a unit code (letters, digits, '.', '-', '_')"),
            ));
        }
        if ids.insert(code.clone(), units.len()).is_some() {
            return Err(csv_err(
                path,
                l,
                "code",
                format!("unit {code:?} is listed twice"),
            ));
        }
        let level = Level::parse(&f[2]).ok_or_else(|| {
            csv_err(
                path,
                l,
                "level",
                format!("must be province, district or commune (got {:?})", f[2]),
            )
        })?;
        let emails: Vec<String> = f[4]
            .split(';')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for e in &emails {
            if !valid_email(e) {
                return Err(csv_err(
                    path,
                    l,
                    "emails",
                    format!("{e:?} is not an e-mail address"),
                ));
            }
        }
        let head = f[5].trim();
        if !head.is_empty() && !valid_email(head) {
            return Err(csv_err(
                path,
                l,
                "head_email",
                format!("{head:?} is not an e-mail address"),
            ));
        }
        parents.push((line, f[3].clone()));
        units.push(Unit {
            code: code.clone(),
            name: f[1].clone(),
            level,
            parent: None,
            emails,
            head_email: (!head.is_empty()).then(|| head.to_string()),
        });
    }
    let parent_lines = parents.clone();
    for (i, (line, p)) in parents.into_iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        match ids.get(&p) {
            Some(&j) if j != i => units[i].parent = Some(j as u32),
            Some(_) => {
                return Err(csv_err(
                    path,
                    Some(line),
                    "parent",
                    "a unit cannot be its own parent",
                ))
            }
            None => {
                return Err(csv_err(
                    path,
                    Some(line),
                    "parent",
                    format!("unit {p:?} is not in the directory"),
                ))
            }
        }
    }
    // parent chains must end: escalation walks them
    for (start, &(line, _)) in parent_lines.iter().enumerate() {
        let (mut i, mut steps) = (start, 0);
        while let Some(p) = units[i].parent {
            i = p as usize;
            steps += 1;
            if steps > units.len() {
                return Err(csv_err(
                    path,
                    Some(line),
                    "parent",
                    format!("the parents of unit {:?} form a cycle", units[start].code),
                ));
            }
        }
    }
    Ok(units)
}

/// Loads `procedures.csv`: `code,name,sector,duration,duration_unit`.
pub fn load_procedures(
    path: &Path,
) -> Result<Vec<(String, String, String, LegalDuration)>, ConfigError> {
    let rows = read_csv(
        path,
        &["code", "name", "sector", "duration", "duration_unit"],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = BTreeSet::new();
    for (line, f) in rows {
        let l = Some(line);
        if !valid_code(&f[0]) {
            return Err(csv_err(
                path,
                l,
                "code",
                format!("{:?} is not a procedure code", f[0]),
            ));
        }
        if !seen.insert(f[0].clone()) {
            return Err(csv_err(
                path,
                l,
                "code",
                format!("procedure {:?} is listed twice", f[0]),
            ));
        }
        if !valid_code(&f[2]) {
            return Err(csv_err(
                path,
                l,
                "sector",
                format!("{:?} is not a sector code", f[2]),
            ));
        }
        let n: u32 = match f[3].parse() {
            Ok(n) if (1..=3650).contains(&n) => n,
            _ => {
                return Err(csv_err(
                    path,
                    l,
                    "duration",
                    format!("must be a whole number from 1 to 3650 (got {:?})", f[3]),
                ))
            }
        };
        let unit = DurationUnit::parse(&f[4]).ok_or_else(|| {
            csv_err(
                path,
                l,
                "duration_unit",
                format!(
                    "must be working_days, working_hours or calendar_days (got {:?})",
                    f[4]
                ),
            )
        })?;
        out.push((
            f[0].clone(),
            f[1].clone(),
            f[2].clone(),
            LegalDuration { n, unit },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30 * SECOND));
        assert_eq!(parse_duration("7d"), Some(7 * 86_400 * SECOND));
        assert_eq!(parse_duration("5m"), Some(300 * SECOND));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("1ế"), None);
    }

    #[test]
    fn dates() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("2024-2-29").is_none());
    }
}
