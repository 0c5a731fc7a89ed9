//! Time formats of an export, written as the Java-like patterns one-stop
//! systems document (`dd/MM/yyyy HH:mm`), translated into a small parser;
//! and the local-time-to-instant conversion in the mapping's zone.
//!
//! Letters: `yyyy` (four digits), `MM` / `M`, `dd` / `d`, `HH` / `H` (0–23),
//! `mm` / `m`, `ss` / `s`; a number token reads one or two digits whatever its
//! width, since exports print `5/3/2025` and `05/03/2025` alike. `'text'`
//! is literal text; any other character is literal. `rfc3339` is the RFC 3339
//! format with its own offset (docs/spec.md §2.1).

use crate::time::{parse_rfc3339, Instant, SECOND};
use chrono::{NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;

/// One piece of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Lit(char),
}

/// A compiled time format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFormat {
    /// The pattern as written (for messages).
    pub text: String,
    /// `None`: RFC 3339.
    toks: Option<Vec<Tok>>,
}

/// A parsed value: an instant, or a local date and time still to be placed
/// in the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// RFC 3339: the instant itself.
    Instant(Instant),
    /// Local wall time; `has_time` false for a date-only value.
    Local {
        /// The date.
        date: NaiveDate,
        /// Seconds after midnight (0 for a date-only value).
        secs: u32,
        /// Whether the value carried a time of day.
        has_time: bool,
    },
}

impl TimeFormat {
    /// Compiles a pattern; the error says what is wrong with it.
    pub fn compile(pattern: &str) -> Result<TimeFormat, String> {
        let text = pattern.to_string();
        if pattern.eq_ignore_ascii_case("rfc3339") || pattern.eq_ignore_ascii_case("rfc 3339") {
            return Ok(TimeFormat { text, toks: None });
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == '\'')
                    .ok_or("a quote ' is not closed")?;
                toks.extend(chars[i + 1..i + 1 + end].iter().map(|&q| Tok::Lit(q)));
                i += end + 2;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                toks.push(Tok::Lit(c));
                i += 1;
                continue;
            }
            let run = chars[i..].iter().take_while(|&&q| q == c).count();
            let tok = match (c, run) {
                ('y', 4) => Tok::Year,
                ('M', 1 | 2) => Tok::Month,
                ('d', 1 | 2) => Tok::Day,
                ('H', 1 | 2) => Tok::Hour,
                ('m', 1 | 2) => Tok::Minute,
                ('s', 1 | 2) => Tok::Second,
                ('y', _) => return Err("the year must be written yyyy".into()),
                ('h', _) => return Err("use HH (0-23) for the hour; hh (1-12) is not supported".into()),
                _ => {
                    return Err(format!(
                        "unknown pattern letter {:?} (known: yyyy MM dd HH mm ss, 'text' for literal letters)",
                        c.to_string().repeat(run)
                    ))
                }
            };
            toks.push(tok);
            i += run;
        }
        let count = |t: Tok| toks.iter().filter(|&&x| x == t).count();
        for (t, name) in [(Tok::Year, "yyyy"), (Tok::Month, "MM"), (Tok::Day, "dd")] {
            if count(t) != 1 {
                return Err(format!("must contain {name} exactly once"));
            }
        }
        for (t, name) in [(Tok::Hour, "HH"), (Tok::Minute, "mm"), (Tok::Second, "ss")] {
            if count(t) > 1 {
                return Err(format!("contains {name} more than once"));
            }
        }
        if count(Tok::Hour) != count(Tok::Minute) {
            return Err("HH and mm go together".into());
        }
        if count(Tok::Second) == 1 && count(Tok::Minute) == 0 {
            return Err("ss needs HH:mm".into());
        }
        Ok(TimeFormat {
            text,
            toks: Some(toks),
        })
    }

    /// Parses a (trimmed) value; `None` when it does not match.
    pub fn parse(&self, v: &str) -> Option<Parsed> {
        let Some(toks) = &self.toks else {
            return parse_rfc3339(v).map(Parsed::Instant);
        };
        let b: Vec<char> = v.chars().collect();
        let mut i = 0;
        let (mut y, mut mo, mut d, mut h, mut mi, mut s) = (0i32, 0u32, 0u32, 0u32, 0u32, 0u32);
        let mut has_time = false;
        let digits = |i: &mut usize, min: usize, max: usize| -> Option<u32> {
            let n = b[*i..]
                .iter()
                .take(max)
                .take_while(|c| c.is_ascii_digit())
                .count();
            if n < min {
                return None;
            }
            let val = b[*i..*i + n]
                .iter()
                .fold(0u32, |acc, c| acc * 10 + c.to_digit(10).unwrap_or(0));
            *i += n;
            Some(val)
        };
        for t in toks {
            match *t {
                Tok::Year => y = digits(&mut i, 4, 4)? as i32,
                Tok::Month => mo = digits(&mut i, 1, 2)?,
                Tok::Day => d = digits(&mut i, 1, 2)?,
                Tok::Hour => {
                    h = digits(&mut i, 1, 2)?;
                    has_time = true;
                }
                Tok::Minute => mi = digits(&mut i, 1, 2)?,
                Tok::Second => s = digits(&mut i, 1, 2)?,
                Tok::Lit(c) => {
                    if b.get(i) != Some(&c) {
                        return None;
                    }
                    i += 1;
                }
            }
        }
        if i != b.len() || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        let date = NaiveDate::from_ymd_opt(y, mo, d)?;
        Some(Parsed::Local {
            date,
            secs: h * 3600 + mi * 60 + s,
            has_time,
        })
    }
}

/// The instant of local wall time `secs` after midnight of `date` in `tz`
/// (the earlier one when a clock change makes it ambiguous, the time after a
/// gap when it does not exist).
pub fn local_instant(tz: Tz, date: NaiveDate, secs: u32) -> Option<Instant> {
    let naive = date.and_hms_opt(secs / 3600, secs / 60 % 60, secs % 60)?;
    let dt = tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(dt.timestamp() * SECOND)
}

/// The zone's UTC offset (seconds) at instant `t`, to write times in local
/// form.
pub fn offset_at(tz: Tz, t: Instant) -> i64 {
    chrono::DateTime::from_timestamp(t.div_euclid(SECOND), 0).map_or(0, |u| {
        i64::from(
            tz.offset_from_utc_datetime(&u.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(f: &str, v: &str) -> Option<(String, u32, bool)> {
        match TimeFormat::compile(f).unwrap().parse(v)? {
            Parsed::Local {
                date,
                secs,
                has_time,
            } => Some((date.to_string(), secs, has_time)),
            Parsed::Instant(_) => None,
        }
    }

    #[test]
    fn vietnamese_patterns_read_day_first_with_one_or_two_digits() {
        assert_eq!(
            local("dd/MM/yyyy HH:mm", "05/03/2025 08:30"),
            Some(("2025-03-05".into(), 8 * 3600 + 1800, true))
        );
        assert_eq!(
            local("dd/MM/yyyy HH:mm", "5/3/2025 8:30"),
            Some(("2025-03-05".into(), 8 * 3600 + 1800, true))
        );
        assert_eq!(
            local("dd/MM/yyyy", "31/12/2025"),
            Some(("2025-12-31".into(), 0, false))
        );
        assert_eq!(
            local("yyyy-MM-dd HH:mm:ss", "2025-03-05 14:05:09"),
            Some(("2025-03-05".into(), 14 * 3600 + 5 * 60 + 9, true))
        );
        assert_eq!(
            local("yyyy-MM-dd'T'HH:mm", "2025-03-05T14:05"),
            Some(("2025-03-05".into(), 14 * 3600 + 5 * 60, true))
        );
    }

    #[test]
    fn impossible_dates_and_trailing_text_do_not_match() {
        assert_eq!(local("dd/MM/yyyy", "30/02/2025"), None);
        assert_eq!(local("dd/MM/yyyy", "05/03/2025 08:30"), None);
        assert_eq!(local("dd/MM/yyyy HH:mm", "05/03/2025 24:00"), None);
        assert_eq!(local("dd/MM/yyyy", "2025-03-05"), None);
    }

    #[test]
    fn rfc3339_keeps_its_offset() {
        let f = TimeFormat::compile("rfc3339").unwrap();
        assert_eq!(
            f.parse("2025-03-05T08:00:00+07:00"),
            Some(Parsed::Instant(
                parse_rfc3339("2025-03-05T01:00:00Z").unwrap()
            ))
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(TimeFormat::compile("dd/MM/yy")
            .unwrap_err()
            .contains("yyyy"));
        assert!(TimeFormat::compile("dd/MM/yyyy hh:mm")
            .unwrap_err()
            .contains("HH"));
        assert!(TimeFormat::compile("MM/yyyy").unwrap_err().contains("dd"));
        assert!(TimeFormat::compile("dd/MM/yyyy HH")
            .unwrap_err()
            .contains("HH and mm"));
        assert!(TimeFormat::compile("dd/MM/yyyy Q")
            .unwrap_err()
            .contains("unknown"));
    }

    #[test]
    fn local_times_are_placed_in_the_zone() {
        let d = NaiveDate::from_ymd_opt(2025, 3, 5).unwrap();
        assert_eq!(
            local_instant(chrono_tz::Asia::Ho_Chi_Minh, d, 17 * 3600),
            parse_rfc3339("2025-03-05T10:00:00Z")
        );
        let t = parse_rfc3339("2025-03-05T10:00:00Z").unwrap();
        assert_eq!(offset_at(chrono_tz::Asia::Ho_Chi_Minh, t), 7 * 3600);
    }
}
