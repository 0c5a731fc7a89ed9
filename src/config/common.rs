//! The leaf every stage's settings use: errors that name file, line and field;
//! source positions; secrets; duration, date and time-of-day parsing; address and
//! code checks. It imports nothing of the project but `time`.

use crate::time::{days_from_civil, HOUR, SECOND};
use serde::Deserialize;
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

/// Why a secret could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `env:NAME` names an unset variable.
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    /// `file:PATH` cannot be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Resolves `env:NAME` / `file:PATH` (relative to `base`); other values are literal.
pub fn resolve_secret(value: &str, base: &Path) -> Result<Secret, SecretError> {
    if let Some(name) = value.strip_prefix("env:") {
        return std::env::var(name)
            .map(Secret)
            .map_err(|_| SecretError::EnvUnset(name.to_string()));
    }
    if let Some(p) = value.strip_prefix("file:") {
        let path = base.join(p);
        return std::fs::read_to_string(&path)
            .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|source| SecretError::File { path, source });
    }
    Ok(Secret(value.to_string()))
}

impl Secret {
    /// A secret given as a literal (tests, generated configurations).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
}

/// A TOML source being validated: turns byte spans into line numbers.
pub struct Src<'a> {
    /// The file.
    pub path: &'a Path,
    /// Its text.
    pub text: &'a str,
    /// Whether a secret that cannot be resolved (an unset `env:`, a missing
    /// `file:`) is only a warning: for the commands that connect nowhere
    /// (replay, check-config), which do not use secrets.
    pub secrets_optional: bool,
    /// Warnings gathered while validating (the loader reports them).
    pub notes: std::cell::RefCell<Vec<String>>,
}

impl<'a> Src<'a> {
    /// A source whose secrets must resolve.
    pub fn new(path: &'a Path, text: &'a str) -> Src<'a> {
        Src {
            path,
            text,
            secrets_optional: false,
            notes: Default::default(),
        }
    }

    /// Resolves the secret `value` of `field` (at `span`, when known). When it
    /// cannot be resolved: an error naming file, line and field, or — with
    /// [`Src::secrets_optional`] — `None` and a warning.
    pub fn secret(
        &self,
        value: &str,
        base: &Path,
        span: Option<std::ops::Range<usize>>,
        field: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        match resolve_secret(value, base) {
            Ok(s) => Ok(Some(s)),
            Err(e) if self.secrets_optional => {
                let line = span.map_or(String::new(), |s| format!(":{}", self.line(s.start)));
                self.notes.borrow_mut().push(format!(
                    "{}{line}: field `{field}`: {e} (not needed by this command)",
                    self.path.display()
                ));
                Ok(None)
            }
            Err(e) => Err(ConfigError {
                file: self.path.to_path_buf(),
                line: span.map(|s| self.line(s.start)),
                field: Some(field.to_string()),
                message: e.to_string(),
            }),
        }
    }
}

impl Src<'_> {
    /// The 1-based line of byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }
    /// An error at `span`, naming `field`.
    pub fn err<T>(
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
    /// Deserializes the whole file, turning serde's message into a [`ConfigError`].
    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ConfigError> {
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

/// Reads a file; an error names it.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: None,
        message: format!("cannot read: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = at
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        ConfigError {
            file: path.to_path_buf(),
            line: Some(line),
            field: None,
            message: format!("not valid UTF-8 (column {column}; save the file as UTF-8)"),
        }
    })
}

/// Parses `HH:MM` into seconds after midnight (24:00 allowed as an end).
pub fn parse_hhmm(s: &str) -> Option<u32> {
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

/// A `*_hours` field as working time (instant units), bounded to 0–100000 h.
pub fn hours(
    src: &Src<'_>,
    v: &Option<Spanned<f64>>,
    field: &str,
) -> Result<Option<i64>, ConfigError> {
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

/// A string field that must not be blank when given; `default` when absent.
pub fn non_empty(
    src: &Src<'_>,
    v: &Option<Spanned<String>>,
    field: &str,
    default: &str,
) -> Result<String, ConfigError> {
    match v {
        Some(s) if s.get_ref().trim().is_empty() => src.err(s.span(), field, "must not be empty"),
        Some(s) => Ok(s.get_ref().clone()),
        None => Ok(default.to_string()),
    }
}

/// Whether `s` looks like one e-mail address (no display name, no list).
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        })
}

/// Whether `s` is a unit, procedure or sector code.
pub fn valid_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
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
    fn a_file_that_is_not_utf8_is_named_with_its_line() {
        let p = std::env::temp_dir().join(format!("overdued-latin1-{}.csv", std::process::id()));
        std::fs::write(&p, b"code,name\nU1,ok\nU2,H\xe0 N\xf4i\n").unwrap();
        let e = read(&p).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.to_string()
                .ends_with(":3: not valid UTF-8 (column 5; save the file as UTF-8)"),
            "{e}"
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn dates() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("2024-2-29").is_none());
    }
}
