//! The alert stage's settings: grouping, repeat, digest and the silences written
//! in the configuration (`[email]` grouping keys, `[[email.silence]]`), with their
//! validation. Errors name the file, the line and the field.

use super::{NewSilence, Silence};
use crate::config::common::{parse_duration, parse_hhmm, ConfigError, Src};
use crate::time::SECOND;
use serde::Deserialize;
use toml::Spanned;

/// Grouping and digest settings (`[email]`), in instant units.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Wait before the first e-mail of a group.
    pub group_wait: i64,
    /// At most one e-mail per group per this.
    pub group_interval: i64,
    /// A still-firing alert is listed again after this.
    pub repeat_interval: i64,
    /// Digest time of day, seconds after local midnight (`None` = no digest).
    pub digest_at: Option<i64>,
    /// Batch times of day on working days, seconds after local midnight, in
    /// order. Empty: each group is sent `group_wait` after its first alert, then
    /// at most every `group_interval` (immediate mail).
    pub batch_at: Vec<i64>,
    /// At most this many alerts already told per e-mail (the rest are counted,
    /// not listed; alerts never told are always listed).
    pub max_items: usize,
    /// Whether a resolution alone triggers an e-mail. Off by default: unit heads
    /// act on what fires; resolutions ride along in the next e-mail that has
    /// something firing, and the digest shows what is still open.
    pub send_resolved: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            group_wait: 30 * SECOND,
            group_interval: 300 * SECOND,
            repeat_interval: 86_400 * SECOND,
            digest_at: Some(7 * 3600 + 1800),
            batch_at: vec![13 * 3600 + 1800],
            max_items: 50,
            send_resolved: false,
        }
    }
}

/// The grouping keys of `[email]`, as written.
#[derive(Default)]
pub struct RawGrouping {
    /// `group_wait`.
    pub group_wait: Option<Spanned<String>>,
    /// `group_interval`.
    pub group_interval: Option<Spanned<String>>,
    /// `repeat_interval`.
    pub repeat_interval: Option<Spanned<String>>,
    /// `digest_at` (`""` = no digest).
    pub digest_at: Option<Spanned<String>>,
    /// `batch_at` (`[]` = immediate mail).
    pub batch_at: Option<Spanned<Vec<Spanned<String>>>>,
    /// `max_items`.
    pub max_items: Option<Spanned<i64>>,
    /// `[[email.silence]]`.
    pub silence: Vec<Spanned<RawSilence>>,
}

/// One `[[email.silence]]`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSilence {
    unit: Option<String>,
    sector: Option<String>,
    kind: Option<String>,
    record: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(default)]
    comment: String,
}

/// Validates the grouping keys and the configured silences.
pub fn validate(src: &Src<'_>, raw: &RawGrouping) -> Result<(Settings, Vec<Silence>), ConfigError> {
    let mut c = Settings::default();
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
    dur(&raw.group_wait, "email.group_wait", &mut c.group_wait)?;
    dur(
        &raw.group_interval,
        "email.group_interval",
        &mut c.group_interval,
    )?;
    dur(
        &raw.repeat_interval,
        "email.repeat_interval",
        &mut c.repeat_interval,
    )?;
    if let Some(d) = &raw.digest_at {
        c.digest_at = match d.get_ref().as_str() {
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
    if let Some(list) = &raw.batch_at {
        let mut times = Vec::new();
        for t in list.get_ref() {
            let v = parse_hhmm(t.get_ref())
                .filter(|&x| x < 86_400)
                .map(i64::from)
                .ok_or(())
                .or_else(|_| {
                    src.err(
                        t.span(),
                        "email.batch_at",
                        format!("{:?} is not a local time like 10:00", t.get_ref()),
                    )
                })?;
            if times.last().is_some_and(|&p| p >= v) {
                return src.err(
                    t.span(),
                    "email.batch_at",
                    "list the times once each, in order",
                );
            }
            times.push(v);
        }
        c.batch_at = times;
    }
    if let Some(m) = &raw.max_items {
        if !(1..=100_000).contains(m.get_ref()) {
            return src.err(m.span(), "email.max_items", "must be from 1 to 100000");
        }
        c.max_items = *m.get_ref() as usize;
    }
    let mut silences = Vec::new();
    for (i, s) in raw.silence.iter().enumerate() {
        let field = format!("email.silence[{i}]");
        let r = s.get_ref();
        let new = NewSilence {
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
            Ok(sil) => silences.push(sil),
            Err(m) => return src.err(s.span(), &field, m.to_string()),
        }
    }
    Ok((c, silences))
}
