//! The mapping file of `overdued import`: which column of an export holds
//! what, how its times are written, and what its status and channel values
//! mean — validated, every error naming file, line and field.

use super::timefmt::TimeFormat;
use crate::config::common::{parse_hhmm, ConfigError, Src};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// One row per record, or one row per processing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Receipt, due, finish times and the final status on one row.
    Record,
    /// One row per step: record code, step time, status, unit.
    Step,
}

/// A column the mapping can name (`[columns]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Col {
    /// Record code (mã hồ sơ).
    Record,
    /// Procedure code (mã TTHC).
    Procedure,
    /// Receiving unit (record shape) or the step's unit (step shape).
    Unit,
    /// Receipt time.
    Received,
    /// Promised return time (ngày hẹn trả).
    Due,
    /// Finish (return) time.
    Finished,
    /// Status.
    Status,
    /// Time of the current status (record shape: pauses).
    StatusTime,
    /// Time of the step (step shape).
    StepTime,
    /// Channel (hình thức nộp).
    Channel,
    /// Sector code (lĩnh vực).
    Sector,
}

impl Col {
    /// Every column, in `[columns]` order.
    pub const ALL: [Col; 11] = [
        Col::Record,
        Col::Procedure,
        Col::Unit,
        Col::Received,
        Col::Due,
        Col::Finished,
        Col::Status,
        Col::StatusTime,
        Col::StepTime,
        Col::Channel,
        Col::Sector,
    ];
    /// The key in `[columns]`.
    pub fn key(self) -> &'static str {
        match self {
            Col::Record => "record",
            Col::Procedure => "procedure",
            Col::Unit => "unit",
            Col::Received => "received",
            Col::Due => "due",
            Col::Finished => "finished",
            Col::Status => "status",
            Col::StatusTime => "status_time",
            Col::StepTime => "step_time",
            Col::Channel => "channel",
            Col::Sector => "sector",
        }
    }
}

/// What a status value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Still open, nothing to emit (record shape), or a step that is no event.
    Open,
    /// `received`.
    Received,
    /// `advanced`.
    Advanced,
    /// `forwarded` (step shape).
    Forwarded,
    /// `paused` with its reason (`supplement`, `financial`, `other`).
    Paused(&'static str),
    /// `resumed` (step shape).
    Resumed,
    /// `resolved`.
    Resolved,
    /// `returned`.
    Returned,
    /// `rejected`.
    Rejected,
    /// `withdrawn`.
    Withdrawn,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "open" => Action::Open,
            "received" => Action::Received,
            "advanced" => Action::Advanced,
            "forwarded" => Action::Forwarded,
            "paused" | "paused:supplement" => Action::Paused("supplement"),
            "paused:financial" => Action::Paused("financial"),
            "paused:other" => Action::Paused("other"),
            "resumed" => Action::Resumed,
            "resolved" => Action::Resolved,
            "returned" => Action::Returned,
            "rejected" => Action::Rejected,
            "withdrawn" => Action::Withdrawn,
            _ => return None,
        })
    }
    /// The event type it emits (`None` for [`Action::Open`]).
    pub fn event_type(self) -> Option<&'static str> {
        Some(match self {
            Action::Open => return None,
            Action::Received => "received",
            Action::Advanced => "advanced",
            Action::Forwarded => "forwarded",
            Action::Paused(_) => "paused",
            Action::Resumed => "resumed",
            Action::Resolved => "resolved",
            Action::Returned => "returned",
            Action::Rejected => "rejected",
            Action::Withdrawn => "withdrawn",
        })
    }
    /// Whether it closes the record.
    pub fn closes(self) -> bool {
        matches!(
            self,
            Action::Resolved | Action::Returned | Action::Rejected | Action::Withdrawn
        )
    }
}

/// A mapping, validated.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Row shape.
    pub shape: Shape,
    /// Zone of the export's local times.
    pub tz: Tz,
    /// Field delimiter (one ASCII byte).
    pub delimiter: u8,
    /// Header name of each mapped column.
    pub columns: BTreeMap<Col, String>,
    /// Formats tried in order.
    pub formats: Vec<TimeFormat>,
    /// Local time given to a date-only value, seconds after midnight.
    pub date_only_secs: u32,
    /// Status values (normalized, [`normalize`]) → meaning.
    pub status: BTreeMap<String, Action>,
    /// Channel values (normalized) → `in_person` / `online` / `postal`.
    pub channel: BTreeMap<String, &'static str>,
}

/// How status and channel values are compared: trimmed, inner runs of
/// white space made one space, lower-cased (Unicode, so `ĐÃ TRẢ` is `đã trả`).
pub fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    shape: Spanned<String>,
    timezone: Option<Spanned<String>>,
    delimiter: Option<Spanned<String>>,
    encoding: Option<Spanned<String>>,
    columns: Spanned<RawColumns>,
    formats: Option<RawFormats>,
    status: Spanned<BTreeMap<String, Spanned<String>>>,
    channel: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumns {
    record: Option<Spanned<String>>,
    procedure: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    received: Option<Spanned<String>>,
    due: Option<Spanned<String>>,
    finished: Option<Spanned<String>>,
    status: Option<Spanned<String>>,
    status_time: Option<Spanned<String>>,
    step_time: Option<Spanned<String>>,
    channel: Option<Spanned<String>>,
    sector: Option<Spanned<String>>,
}

impl RawColumns {
    fn get(&self, c: Col) -> &Option<Spanned<String>> {
        match c {
            Col::Record => &self.record,
            Col::Procedure => &self.procedure,
            Col::Unit => &self.unit,
            Col::Received => &self.received,
            Col::Due => &self.due,
            Col::Finished => &self.finished,
            Col::Status => &self.status,
            Col::StatusTime => &self.status_time,
            Col::StepTime => &self.step_time,
            Col::Channel => &self.channel,
            Col::Sector => &self.sector,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFormats {
    times: Option<Spanned<Vec<Spanned<String>>>>,
    date_only_time: Option<Spanned<String>>,
}

/// The formats used when `[formats] times` is absent.
pub const DEFAULT_FORMATS: [&str; 4] = [
    "dd/MM/yyyy HH:mm:ss",
    "dd/MM/yyyy HH:mm",
    "dd/MM/yyyy",
    "rfc3339",
];

/// Reads and validates a mapping file.
pub fn load(path: &Path) -> Result<Mapping, ConfigError> {
    let text = crate::config::common::read(path)?;
    validate(&Src::new(path, &text))
}

/// Validates a mapping's text.
pub fn validate(src: &Src<'_>) -> Result<Mapping, ConfigError> {
    let raw: RawMapping = src.parse()?;
    let shape = match raw.shape.get_ref().as_str() {
        "record" => Shape::Record,
        "step" => Shape::Step,
        other => {
            return src.err(
                raw.shape.span(),
                "shape",
                format!("must be \"record\" or \"step\" (got {other:?})"),
            )
        }
    };
    let tz = match &raw.timezone {
        None => chrono_tz::Asia::Ho_Chi_Minh,
        Some(t) => match t.get_ref().parse::<Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                return src.err(
                    t.span(),
                    "timezone",
                    format!("{:?} is not an IANA time zone", t.get_ref()),
                )
            }
        },
    };
    let delimiter = match &raw.delimiter {
        None => b',',
        Some(d) => match d.get_ref().as_bytes() {
            [b] if b.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r' => *b,
            _ => {
                return src.err(
                    d.span(),
                    "delimiter",
                    "must be one ASCII character other than a quote or a line end (\",\", \";\", \"\\t\")",
                )
            }
        },
    };
    if let Some(e) = &raw.encoding {
        let v = e.get_ref().to_ascii_lowercase();
        if v != "utf-8" && v != "utf8" {
            return src.err(
                e.span(),
                "encoding",
                format!(
                    "only \"utf-8\" is read (got {:?}); convert the export to UTF-8 first",
                    e.get_ref()
                ),
            );
        }
    }

    let cols = raw.columns.get_ref();
    let mut columns = BTreeMap::new();
    for c in Col::ALL {
        if let Some(name) = cols.get(c) {
            let field = format!("columns.{}", c.key());
            if name.get_ref().trim().is_empty() {
                return src.err(name.span(), &field, "must not be empty");
            }
            columns.insert(c, name.get_ref().trim().to_string());
        }
    }
    let (required, unused): (&[Col], &[Col]) = match shape {
        Shape::Record => (
            &[
                Col::Record,
                Col::Procedure,
                Col::Unit,
                Col::Received,
                Col::Status,
            ],
            &[Col::StepTime],
        ),
        Shape::Step => (
            &[Col::Record, Col::StepTime, Col::Status, Col::Unit],
            &[Col::Finished, Col::StatusTime],
        ),
    };
    let shape_name = raw.shape.get_ref();
    for c in required {
        if !columns.contains_key(c) {
            return src.err(
                raw.columns.span(),
                &format!("columns.{}", c.key()),
                format!("is required with shape = {shape_name:?}"),
            );
        }
    }
    for c in unused {
        if let Some(n) = cols.get(*c) {
            return src.err(
                n.span(),
                &format!("columns.{}", c.key()),
                format!("is not used with shape = {shape_name:?}"),
            );
        }
    }

    let mut formats = Vec::new();
    let mut date_only_secs = 17 * 3600;
    if let Some(f) = &raw.formats {
        if let Some(list) = &f.times {
            if list.get_ref().is_empty() {
                return src.err(
                    list.span(),
                    "formats.times",
                    "must list at least one format",
                );
            }
            for p in list.get_ref() {
                match TimeFormat::compile(p.get_ref()) {
                    Ok(tf) => formats.push(tf),
                    Err(e) => {
                        return src.err(
                            p.span(),
                            "formats.times",
                            format!("{:?}: {e}", p.get_ref()),
                        )
                    }
                }
            }
        }
        if let Some(t) = &f.date_only_time {
            match parse_hhmm(t.get_ref()) {
                Some(s) if s < 24 * 3600 => date_only_secs = s,
                _ => {
                    return src.err(
                        t.span(),
                        "formats.date_only_time",
                        format!("must be a time HH:MM before 24:00 (got {:?})", t.get_ref()),
                    )
                }
            }
        }
    }
    if formats.is_empty() {
        for p in DEFAULT_FORMATS {
            formats.push(TimeFormat::compile(p).map_err(|e| ConfigError {
                file: src.path.to_path_buf(),
                line: None,
                field: Some("formats.times".into()),
                message: e,
            })?);
        }
    }

    let mut status = BTreeMap::new();
    if raw.status.get_ref().is_empty() {
        return src.err(
            raw.status.span(),
            "status",
            "must map at least one status value",
        );
    }
    for (k, v) in raw.status.get_ref() {
        let field = format!("status.{k:?}");
        let Some(a) = Action::parse(v.get_ref()) else {
            return src.err(
                v.span(),
                &field,
                format!(
                    "{:?} is not one of open, received, advanced, forwarded, paused, paused:financial, paused:other, resumed, resolved, returned, rejected, withdrawn",
                    v.get_ref()
                ),
            );
        };
        if shape == Shape::Record && matches!(a, Action::Forwarded | Action::Resumed) {
            return src.err(
                v.span(),
                &field,
                format!(
                    "{:?} needs the step shape: a record row holds only the final status",
                    v.get_ref()
                ),
            );
        }
        if status.insert(normalize(k), a).is_some() {
            return src.err(
                v.span(),
                &field,
                "is the same status as another key once trimmed and lower-cased",
            );
        }
    }

    let mut channel = BTreeMap::new();
    if let Some(ch) = &raw.channel {
        if !columns.contains_key(&Col::Channel) {
            if let Some((k, v)) = ch.iter().next() {
                return src.err(
                    v.span(),
                    &format!("channel.{k:?}"),
                    "[channel] needs columns.channel",
                );
            }
        }
        for (k, v) in ch {
            let field = format!("channel.{k:?}");
            let c = match v.get_ref().as_str() {
                "in_person" => "in_person",
                "online" => "online",
                "postal" => "postal",
                other => {
                    return src.err(
                        v.span(),
                        &field,
                        format!("must be in_person, online or postal (got {other:?})"),
                    )
                }
            };
            if channel.insert(normalize(k), c).is_some() {
                return src.err(
                    v.span(),
                    &field,
                    "is the same channel as another key once trimmed and lower-cased",
                );
            }
        }
    }

    Ok(Mapping {
        shape,
        tz,
        delimiter,
        columns,
        formats,
        date_only_secs,
        status,
        channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Mapping, ConfigError> {
        validate(&Src::new(Path::new("m.toml"), text))
    }

    const OK: &str = r#"shape = "record"
[columns]
record = "Mã hồ sơ"
procedure = "Mã TTHC"
unit = "Đơn vị tiếp nhận"
received = "Ngày tiếp nhận"
status = "Trạng thái"
[status]
"Đã trả kết quả" = "returned"
"#;

    #[test]
    fn a_minimal_record_mapping_takes_the_defaults() {
        let m = check(OK).unwrap();
        assert_eq!(m.shape, Shape::Record);
        assert_eq!(m.delimiter, b',');
        assert_eq!(m.date_only_secs, 17 * 3600);
        assert_eq!(m.formats.len(), DEFAULT_FORMATS.len());
        assert_eq!(m.columns[&Col::Record], "Mã hồ sơ");
        assert_eq!(m.status["đã trả kết quả"], Action::Returned);
    }

    #[test]
    fn an_unknown_event_type_names_the_status_line() {
        let e = check(&OK.replace("\"returned\"", "\"done\"")).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
        assert_eq!(e.field.as_deref(), Some("status.\"Đã trả kết quả\""), "{e}");
    }

    #[test]
    fn a_missing_required_column_is_named() {
        let e = check(&OK.replace("received = \"Ngày tiếp nhận\"\n", "")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("columns.received"), "{e}");
        assert!(e.message.contains("required"), "{e}");
    }

    #[test]
    fn a_bad_time_pattern_and_encoding_are_refused() {
        let e = check(&format!("{OK}[formats]\ntimes = [\"dd/MM/yy\"]\n")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(11), Some("formats.times")),
            "{e}"
        );
        let e = check(&OK.replace(
            "shape = \"record\"",
            "shape = \"record\"\nencoding = \"windows-1258\"",
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(2), Some("encoding")),
            "{e}"
        );
    }

    #[test]
    fn status_keys_equal_after_normalizing_collide() {
        let e = check(&format!("{OK}\"ĐÃ TRẢ  KẾT QUẢ\" = \"resolved\"\n")).unwrap_err();
        assert!(e.message.contains("same status"), "{e}");
    }

    #[test]
    fn forwarded_needs_the_step_shape() {
        let e = check(&format!("{OK}\"Chuyển xử lý\" = \"forwarded\"\n")).unwrap_err();
        assert!(e.message.contains("step shape"), "{e}");
    }
}
