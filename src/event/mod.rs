//! Decoding and validation of record events (docs/spec.md §2).
//!
//! [`decode`] turns one message (a Kafka value or an NDJSON line) into an [`Event`]
//! that borrows from the input, or into a [`Rejection`] with the spec's reason code.
//! It never panics: the input is bounded ([`MAX_EVENT_BYTES`]) before parsing,
//! serde_json bounds nesting depth, and every field is checked for presence, JSON
//! type, length and allowed values before it is used.
//!
//! Decisions where the spec is silent (documented in the README):
//! * a field whose value is JSON `null` is treated as absent;
//! * unknown fields are ignored (forward compatibility); a repeated key keeps the
//!   last value, as most JSON readers do;
//! * checks run in this order, and the first failure is the reason: size, JSON,
//!   `event_id`, `record_id`, `type`, `at`, the types of the optional fields,
//!   the fields the event type requires, then `due_before_received`;
//! * `unit`, `procedure` and `sector` are capped at [`MAX_CODE_CHARS`] characters.

use crate::time::{parse_rfc3339, Instant};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Largest accepted message, in bytes (spec: 64 KiB).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest `event_id`, in characters.
pub const MAX_EVENT_ID_CHARS: usize = 128;
/// Longest `record_id`, in characters.
pub const MAX_RECORD_ID_CHARS: usize = 64;
/// Longest unit, procedure or sector code, in characters.
pub const MAX_CODE_CHARS: usize = 128;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// The wire spelling.
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s),+ } }
            /// Parses the wire spelling.
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some($name::$v),)+ _ => None } }
            /// Position in [`Self::ALL`].
            pub fn index(self) -> usize { self as usize }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// What happened to a record.
    EventType {
        /// tiếp nhận: opens the record.
        Received = "received",
        /// chuyển xử lý: another unit holds it.
        Forwarded = "forwarded",
        /// the holder recorded an action.
        Advanced = "advanced",
        /// the clock stops.
        Paused = "paused",
        /// the clock runs again.
        Resumed = "resumed",
        /// a new due time (apology letter).
        Extended = "extended",
        /// done: judged.
        Resolved = "resolved",
        /// result returned: closes (and is judged) if still open.
        Returned = "returned",
        /// refused: closes, not judged.
        Rejected = "rejected",
        /// withdrawn by the citizen: closes, not judged.
        Withdrawn = "withdrawn",
        /// state synchronised from the source system.
        Snapshot = "snapshot",
    }
);

string_enum!(
    /// How the application was submitted.
    Channel {
        /// at the counter (default).
        InPerson = "in_person",
        /// on the public-service portal.
        Online = "online",
        /// by post.
        Postal = "postal",
    }
);

string_enum!(
    /// Why the clock stopped.
    PauseReason {
        /// the citizen must supplement the file (restart policy by default).
        Supplement = "supplement",
        /// waiting for a financial obligation.
        Financial = "financial",
        /// anything else.
        Other = "other",
    }
);

string_enum!(
    /// Why an input was rejected (dead-lettered).
    RejectReason {
        /// over 64 KiB.
        TooLarge = "too_large",
        /// not a JSON object.
        InvalidJson = "invalid_json",
        /// a required field is missing.
        MissingField = "missing_field",
        /// a field has the wrong type, length or value.
        InvalidField = "invalid_field",
        /// `type` is not one of the event types.
        UnknownType = "unknown_type",
        /// a time cannot be parsed or has no offset.
        BadTime = "bad_time",
        /// a due time before the receipt.
        DueBeforeReceived = "due_before_received",
        /// an event for a record that is not held.
        UnknownRecord = "unknown_record",
        /// a second `received` for an open record.
        DuplicateRecord = "duplicate_record",
        /// a procedure missing from the catalogue, and no `due_at`.
        UnknownProcedure = "unknown_procedure",
        /// the Kafka message key is not the event's `record_id` (or is absent):
        /// the record's events would be spread over partitions.
        KeyMismatch = "key_mismatch",
    }
);

string_enum!(
    /// Why a valid event was ignored (counted, not dead-lettered).
    IgnoreReason {
        /// an `event_id` already applied to the record.
        DuplicateEvent = "duplicate_event",
        /// the record is closed.
        ClosedRecord = "closed_record",
    }
);

/// A rejection: the spec reason and, for logs, what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason code.
    pub reason: RejectReason,
    /// The field concerned, or a short description.
    pub detail: Cow<'static, str>,
}

impl Rejection {
    /// A rejection about `detail`.
    pub fn new(reason: RejectReason, detail: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.detail)
    }
}

/// A decoded, validated event. Strings borrow from the input where possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Unique id of the event (per record).
    pub event_id: Cow<'a, str>,
    /// The record's code.
    pub record_id: Cow<'a, str>,
    /// What happened.
    pub kind: EventType,
    /// When it happened.
    pub at: Instant,
    /// The unit holding the record after this event.
    pub unit: Option<Cow<'a, str>>,
    /// Procedure code.
    pub procedure: Option<Cow<'a, str>>,
    /// Sector code.
    pub sector: Option<Cow<'a, str>>,
    /// Submission channel (default in person).
    pub channel: Channel,
    /// Promised return time, if the source computed it.
    pub due_at: Option<Instant>,
    /// Why the clock stops (`paused`; optional on `snapshot`).
    pub reason: Option<PauseReason>,
    /// `snapshot`: when the record was received.
    pub received_at: Option<Instant>,
    /// `snapshot`: since when the current unit holds it.
    pub holder_since: Option<Instant>,
    /// `snapshot`: whether the clock is stopped.
    pub paused: bool,
}

/// A JSON value as far as validation needs to know it.
enum Val<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Null,
    Other,
}

impl<'de> de::Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Val<'de>, E> {
                Ok(Val::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_none<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Val<'de>, E> {
                Ok(Val::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Val<'de>, E> {
                Ok(Val::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Val<'de>, E> {
                Ok(Val::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Val<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Val::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Val<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Val::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Field names we know; anything else is skipped.
enum Field {
    EventId,
    RecordId,
    Type,
    At,
    Unit,
    Procedure,
    Sector,
    Channel,
    DueAt,
    Reason,
    ReceivedAt,
    HolderSince,
    Paused,
    Unknown,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "event_id" => Field::EventId,
                    "record_id" => Field::RecordId,
                    "type" => Field::Type,
                    "at" => Field::At,
                    "unit" => Field::Unit,
                    "procedure" => Field::Procedure,
                    "sector" => Field::Sector,
                    "channel" => Field::Channel,
                    "due_at" => Field::DueAt,
                    "reason" => Field::Reason,
                    "received_at" => Field::ReceivedAt,
                    "holder_since" => Field::HolderSince,
                    "paused" => Field::Paused,
                    _ => Field::Unknown,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

#[derive(Default)]
struct Raw<'a> {
    event_id: Option<Val<'a>>,
    record_id: Option<Val<'a>>,
    kind: Option<Val<'a>>,
    at: Option<Val<'a>>,
    unit: Option<Val<'a>>,
    procedure: Option<Val<'a>>,
    sector: Option<Val<'a>>,
    channel: Option<Val<'a>>,
    due_at: Option<Val<'a>>,
    reason: Option<Val<'a>>,
    received_at: Option<Val<'a>>,
    holder_since: Option<Val<'a>>,
    paused: Option<Val<'a>>,
}

impl<'de> de::Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Raw<'de>, A::Error> {
                let mut r = Raw::default();
                while let Some(k) = m.next_key::<Field>()? {
                    let slot = match k {
                        Field::EventId => &mut r.event_id,
                        Field::RecordId => &mut r.record_id,
                        Field::Type => &mut r.kind,
                        Field::At => &mut r.at,
                        Field::Unit => &mut r.unit,
                        Field::Procedure => &mut r.procedure,
                        Field::Sector => &mut r.sector,
                        Field::Channel => &mut r.channel,
                        Field::DueAt => &mut r.due_at,
                        Field::Reason => &mut r.reason,
                        Field::ReceivedAt => &mut r.received_at,
                        Field::HolderSince => &mut r.holder_since,
                        Field::Paused => &mut r.paused,
                        Field::Unknown => {
                            m.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = match m.next_value::<Val<'de>>()? {
                        Val::Null => None,
                        v => Some(v),
                    };
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

fn reject<T>(reason: RejectReason, detail: &'static str) -> Result<T, Rejection> {
    Err(Rejection::new(reason, detail))
}

fn string<'a>(
    v: Option<Val<'a>>,
    name: &'static str,
    max_chars: usize,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        None => Ok(None),
        Some(Val::Str(s)) => {
            // bytes bound chars from above: count only when it could matter
            if s.len() > max_chars && s.chars().count() > max_chars {
                return reject(RejectReason::InvalidField, name);
            }
            Ok(Some(s))
        }
        Some(_) => reject(RejectReason::InvalidField, name),
    }
}

fn required<T>(v: Option<T>, name: &'static str) -> Result<T, Rejection> {
    v.ok_or_else(|| Rejection::new(RejectReason::MissingField, name))
}

fn time(v: Option<Val<'_>>, name: &'static str) -> Result<Option<Instant>, Rejection> {
    // any string is a time attempt: a wrong one is `bad_time`, whatever its length
    match string(v, name, usize::MAX)? {
        None => Ok(None),
        Some(s) => parse_rfc3339(&s)
            .map(Some)
            .ok_or_else(|| Rejection::new(RejectReason::BadTime, name)),
    }
}

fn enumerated<T>(
    v: Option<Val<'_>>,
    name: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, Rejection> {
    match string(v, name, 64)? {
        None => Ok(None),
        Some(s) => parse(&s)
            .map(Some)
            .ok_or_else(|| Rejection::new(RejectReason::InvalidField, name)),
    }
}

/// What is wrong with a message that is not one JSON object, for the dead
/// letter's `detail` (built only on this failure path).
fn json_detail(line: &[u8], e: &serde_json::Error) -> String {
    if line.starts_with(b"\xEF\xBB\xBF") {
        return "starts with a UTF-8 byte-order mark (U+FEFF): send the JSON object without it"
            .into();
    }
    if let Err(u) = std::str::from_utf8(line) {
        return format!("not valid UTF-8 (byte {})", u.valid_up_to());
    }
    let what = e.to_string();
    if what.contains("recursion limit") {
        return format!("nested too deeply ({what})");
    }
    match e.classify() {
        serde_json::error::Category::Data => {
            format!("not a JSON object ({what})")
        }
        _ => format!("JSON syntax error: {what}"),
    }
}

/// Decodes and validates one message. `line` excludes the line terminator.
pub fn decode(line: &[u8]) -> Result<Event<'_>, Rejection> {
    if line.len() > MAX_EVENT_BYTES {
        return reject(RejectReason::TooLarge, "message over 64 KiB");
    }
    let raw: Raw<'_> = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            return Err(Rejection::new(
                RejectReason::InvalidJson,
                json_detail(line, &e),
            ))
        }
    };
    let event_id = required(
        string(raw.event_id, "event_id", MAX_EVENT_ID_CHARS)?,
        "event_id",
    )?;
    let record_id = required(
        string(raw.record_id, "record_id", MAX_RECORD_ID_CHARS)?,
        "record_id",
    )?;
    let kind = match required(raw.kind, "type")? {
        Val::Str(s) => {
            EventType::parse(&s).ok_or_else(|| Rejection::new(RejectReason::UnknownType, "type"))?
        }
        _ => return reject(RejectReason::InvalidField, "type"),
    };
    let at = match raw.at {
        None => return reject(RejectReason::MissingField, "at"),
        v => required(time(v, "at")?, "at")?,
    };
    let unit = string(raw.unit, "unit", MAX_CODE_CHARS)?;
    let procedure = string(raw.procedure, "procedure", MAX_CODE_CHARS)?;
    let sector = string(raw.sector, "sector", MAX_CODE_CHARS)?;
    let channel = enumerated(raw.channel, "channel", Channel::parse)?.unwrap_or(Channel::InPerson);
    let due_at = time(raw.due_at, "due_at")?;
    let reason = enumerated(raw.reason, "reason", PauseReason::parse)?;
    let received_at = time(raw.received_at, "received_at")?;
    let holder_since = time(raw.holder_since, "holder_since")?;
    let paused = match raw.paused {
        None => false,
        Some(Val::Bool(b)) => b,
        Some(_) => return reject(RejectReason::InvalidField, "paused"),
    };
    match kind {
        EventType::Received | EventType::Snapshot => {
            required(unit.as_ref(), "unit")?;
            if procedure.is_none() && due_at.is_none() {
                return reject(RejectReason::MissingField, "procedure");
            }
            let receipt = if kind == EventType::Snapshot {
                received_at.unwrap_or(at)
            } else {
                at
            };
            if due_at.is_some_and(|d| d < receipt) {
                return reject(RejectReason::DueBeforeReceived, "due_at");
            }
        }
        EventType::Forwarded => {
            required(unit.as_ref(), "unit")?;
        }
        EventType::Paused => {
            required(reason, "reason")?;
        }
        EventType::Extended => {
            required(due_at, "due_at")?;
        }
        _ => {}
    }
    Ok(Event {
        event_id,
        record_id,
        kind,
        at,
        unit,
        procedure,
        sector,
        channel,
        due_at,
        reason,
        received_at,
        holder_since,
        paused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reason(line: &str) -> Option<RejectReason> {
        decode(line.as_bytes()).err().map(|r| r.reason)
    }

    #[test]
    fn every_reason() {
        use RejectReason::*;
        let big = format!(
            r#"{{"event_id":"a","record_id":"r","type":"advanced","at":"2024-01-01T00:00:00Z","x":"{}"}}"#,
            "y".repeat(MAX_EVENT_BYTES)
        );
        let cases: &[(&str, Option<RejectReason>)] = &[
            (&big, Some(TooLarge)),
            ("{not json", Some(InvalidJson)),
            ("[1,2]", Some(InvalidJson)),
            ("\"str\"", Some(InvalidJson)),
            (r#"{"a":1} {"b":2}"#, Some(InvalidJson)),
            (
                r#"{"record_id":"r","type":"advanced","at":"2024-01-01T00:00:00Z"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":"e","type":"advanced","at":"2024-01-01T00:00:00Z"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","at":"2024-01-01T00:00:00Z"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"advanced"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":null,"record_id":"r","type":"advanced","at":"2024-01-01T00:00:00Z"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":5,"record_id":"r","type":"advanced","at":"2024-01-01T00:00:00Z"}"#,
                Some(InvalidField),
            ),
            (
                r#"{"event_id":"e","record_id":["r"],"type":"advanced","at":"2024-01-01T00:00:00Z"}"#,
                Some(InvalidField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":true,"at":"2024-01-01T00:00:00Z"}"#,
                Some(InvalidField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"teleported","at":"2024-01-01T00:00:00Z"}"#,
                Some(UnknownType),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"advanced","at":"2024-01-01T00:00:00"}"#,
                Some(BadTime),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"advanced","at":"yesterday"}"#,
                Some(BadTime),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"advanced","at":7}"#,
                Some(InvalidField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"received","at":"2024-01-01T00:00:00Z","procedure":"p"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"received","at":"2024-01-01T00:00:00Z","unit":"U"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"received","at":"2024-01-01T00:00:00Z","unit":"U","procedure":"p","channel":"fax"}"#,
                Some(InvalidField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"received","at":"2024-01-02T00:00:00Z","unit":"U","due_at":"2024-01-01T00:00:00Z"}"#,
                Some(DueBeforeReceived),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"snapshot","at":"2024-01-09T00:00:00Z","received_at":"2024-01-03T00:00:00Z","unit":"U","due_at":"2024-01-02T00:00:00Z"}"#,
                Some(DueBeforeReceived),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"paused","at":"2024-01-01T00:00:00Z"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"paused","at":"2024-01-01T00:00:00Z","reason":"lunch"}"#,
                Some(InvalidField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"extended","at":"2024-01-01T00:00:00Z"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"extended","at":"2024-01-01T00:00:00Z","due_at":"soon"}"#,
                Some(BadTime),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"forwarded","at":"2024-01-01T00:00:00Z"}"#,
                Some(MissingField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"snapshot","at":"2024-01-01T00:00:00Z","unit":"U","procedure":"p","paused":"yes"}"#,
                Some(InvalidField),
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"received","at":"2024-01-01T00:00:00+07:00","unit":"U","procedure":"p","extra":{"deep":[1,2,{"x":null}]}}"#,
                None,
            ),
            (
                r#"{"event_id":"e","record_id":"r","type":"advanced","at":"2024-01-01T00:00:00Z","sector":null}"#,
                None,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(reason(line), *want, "{line}");
        }
        let long_id = format!(
            r#"{{"event_id":"e","record_id":"{}","type":"advanced","at":"2024-01-01T00:00:00Z"}}"#,
            "ạ".repeat(65)
        );
        assert_eq!(reason(&long_id), Some(InvalidField));
        let ok_id = long_id.replace(&"ạ".repeat(65), &"ạ".repeat(64));
        assert_eq!(reason(&ok_id), None);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(reason(&deep), Some(InvalidJson));
        assert!(
            detail(&deep).starts_with("not a JSON object"),
            "{}",
            detail(&deep)
        );
        // nesting inside a field is skipped without recursion: no stack risk,
        // and the field is then judged like any other of the wrong type
        let deep_inside = format!(
            r#"{{"event_id":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(reason(&deep_inside), Some(InvalidField));
    }

    fn detail(line: &str) -> String {
        decode(line.as_bytes())
            .err()
            .map(|r| r.detail.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn invalid_json_details_say_what_is_wrong() {
        let ok =
            r#"{"event_id":"e","record_id":"R","type":"advanced","at":"2024-01-01T00:00:00Z"}"#;
        let bom = format!("\u{feff}{ok}");
        assert!(detail(&bom).contains("byte-order mark"), "{}", detail(&bom));
        let mut bad = ok.as_bytes().to_vec();
        bad[15] = 0xff; // inside the event_id string
        let r = decode(&bad).unwrap_err();
        assert_eq!(r.reason, RejectReason::InvalidJson);
        assert_eq!(r.detail, "not valid UTF-8 (byte 15)");
        assert!(
            detail("{nope").starts_with("JSON syntax error"),
            "{}",
            detail("{nope")
        );
        assert!(
            detail("[1,2]").starts_with("not a JSON object"),
            "{}",
            detail("[1,2]")
        );
        // an unknown field is ignored without being read: its bytes are not
        // checked (documented), the event is accepted
        let mut unknown = br#"{"x":"ab","event_id":"e","record_id":"R","type":"advanced","at":"2024-01-01T00:00:00Z"}"#.to_vec();
        unknown[6] = 0xff;
        assert!(decode(&unknown).is_ok());
    }

    #[test]
    fn escaped_strings_decode() {
        let e = decode(br#"{"event_id":"e\u0031","record_id":"R\n1","type":"advanced","at":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.record_id, "R\n1");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&b);
        }

        #[test]
        fn mutated_events_never_panic(pos in 0usize..160, byte in any::<u8>(), cut in 0usize..170) {
            let base = br#"{"event_id":"e1","record_id":"R1","type":"received","at":"2024-03-04T08:00:00+07:00","unit":"QS","procedure":"1.003003","due_at":"2024-03-05T08:00:00+07:00"}"#;
            let mut v = base.to_vec();
            let p = pos % v.len();
            v[p] = byte;
            v.truncate(cut.min(v.len()));
            let _ = decode(&v);
        }
    }
}
