//! Silences: time-bounded mutes of e-mail (never of metrics or the alerts file),
//! matching any combination of unit, sector, kind and record. Every matcher
//! given must match; at least one must be given (a silence of everything is a
//! mistake, not a feature).

use super::AlertInfo;
use crate::engine::AlertKind;
use crate::time::{format_rfc3339, parse_rfc3339, Instant};
use serde::{Deserialize, Serialize};

/// Longest accepted free text (comment, author), in bytes.
pub const MAX_TEXT: usize = 1024;
/// Longest accepted matcher value, in bytes.
pub const MAX_VALUE: usize = 256;

/// One silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Identifier (`cfg-N` for the configuration's, `s-…` for the API's).
    pub id: String,
    /// Unit code the alert belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Sector code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector: Option<String>,
    /// Alert kind (`hanging`, `due_soon`, `overdue`, `unrouted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Record id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Start (inclusive).
    #[serde(with = "rfc3339")]
    pub starts_at: Instant,
    /// End (exclusive).
    #[serde(with = "rfc3339")]
    pub ends_at: Instant,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// Who.
    #[serde(default)]
    pub created_by: String,
}

mod rfc3339 {
    use crate::time::{format_rfc3339, parse_rfc3339, Instant};
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
    }
}

/// What is wrong with a silence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No matcher given.
    #[error("a silence needs at least one of unit, sector, kind, record")]
    NoMatcher,
    /// `kind` is not an alert kind.
    #[error("kind {0:?} is not one of unrouted, hanging, due_soon, overdue")]
    BadKind(String),
    /// A time is not RFC 3339.
    #[error("{0} is not an RFC 3339 time")]
    BadTime(&'static str),
    /// `ends_at` is not after `starts_at`.
    #[error("ends_at must be after starts_at")]
    Empty,
    /// A value is too long or has control characters.
    #[error("{0} is too long or contains control characters")]
    BadValue(&'static str),
}

/// A silence as the API receives it (times as text).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Unit code.
    pub unit: Option<String>,
    /// Sector code.
    pub sector: Option<String>,
    /// Alert kind.
    pub kind: Option<String>,
    /// Record id.
    pub record: Option<String>,
    /// Start, RFC 3339 (default: now).
    pub starts_at: Option<String>,
    /// End, RFC 3339.
    pub ends_at: Option<String>,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// Who.
    #[serde(default)]
    pub created_by: String,
}

impl NewSilence {
    /// Validates into a [`Silence`] with id `id`; `now` is the default start.
    pub fn validate(self, id: String, now: Instant) -> Result<Silence, SilenceError> {
        let clean =
            |v: Option<String>, what: &'static str| -> Result<Option<String>, SilenceError> {
                match v {
                    Some(s) if s.len() > MAX_VALUE || s.chars().any(char::is_control) => {
                        Err(SilenceError::BadValue(what))
                    }
                    Some(s) if s.is_empty() => Ok(None),
                    other => Ok(other),
                }
            };
        let unit = clean(self.unit, "unit")?;
        let sector = clean(self.sector, "sector")?;
        let record = clean(self.record, "record")?;
        let kind = clean(self.kind, "kind")?;
        if let Some(k) = &kind {
            if AlertKind::parse(k).is_none() {
                return Err(SilenceError::BadKind(k.clone()));
            }
        }
        if unit.is_none() && sector.is_none() && kind.is_none() && record.is_none() {
            return Err(SilenceError::NoMatcher);
        }
        let starts_at = match self.starts_at {
            Some(s) => parse_rfc3339(&s).ok_or(SilenceError::BadTime("starts_at"))?,
            None => now,
        };
        let ends_at = parse_rfc3339(self.ends_at.as_deref().unwrap_or(""))
            .ok_or(SilenceError::BadTime("ends_at"))?;
        if ends_at <= starts_at {
            return Err(SilenceError::Empty);
        }
        for (v, what) in [(&self.comment, "comment"), (&self.created_by, "created_by")] {
            if v.len() > MAX_TEXT || v.chars().any(|c| c.is_control() && c != '\n') {
                return Err(SilenceError::BadValue(what));
            }
        }
        Ok(Silence {
            id,
            unit,
            sector,
            kind,
            record,
            starts_at,
            ends_at,
            comment: self.comment,
            created_by: self.created_by,
        })
    }
}

impl Silence {
    /// Whether the silence is in force at `at`.
    pub fn active(&self, at: Instant) -> bool {
        self.starts_at <= at && at < self.ends_at
    }

    /// Whether it mutes `info` at `at`.
    pub fn mutes(&self, info: &AlertInfo, at: Instant) -> bool {
        self.active(at)
            && self.unit.as_ref().is_none_or(|u| *u == info.unit)
            && self.sector.as_ref().is_none_or(|s| *s == info.sector)
            && self.record.as_ref().is_none_or(|r| *r == info.record_id)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| AlertKind::parse(k) == Some(info.kind))
    }

    /// The kind matcher, parsed.
    pub fn kind(&self) -> Option<AlertKind> {
        self.kind.as_deref().and_then(AlertKind::parse)
    }

    /// Human-readable window, for logs.
    pub fn window(&self) -> String {
        format!(
            "{} – {}",
            format_rfc3339(self.starts_at),
            format_rfc3339(self.ends_at)
        )
    }
}
