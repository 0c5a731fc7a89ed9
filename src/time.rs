//! Instants as plain integers, and a strict, allocation-free RFC 3339 codec.
//!
//! The engine keeps every time as an [`Instant`]: microseconds since the Unix epoch,
//! UTC. Integers make records compact (8 bytes a time) and comparisons free; the
//! parser and formatter below exist because they sit on the hot path (two timestamps
//! per event) and chrono's general-purpose versions cost several times more.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T` or `t` or a space as the
//! separator, `Z` or `z`. An offset is mandatory (docs/spec.md §2: a time without one is
//! `bad_time`). Years outside [`MIN_YEAR`]..=[`MAX_YEAR`] are rejected too: the
//! working-time tables cover that range with margin, and no record of a
//! one-stop-shop office is dated outside it.

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Instant = i64;

/// One second, in [`Instant`] units.
pub const SECOND: i64 = 1_000_000;
/// One hour, in [`Instant`] units.
pub const HOUR: i64 = 3600 * SECOND;
/// One day of 24 hours, in [`Instant`] units.
pub const DAY: i64 = 86_400 * SECOND;

/// Earliest year accepted in an event time.
pub const MIN_YEAR: i32 = 1970;
/// Latest year accepted in an event time.
pub const MAX_YEAR: i32 = 2199;

/// The wall clock, as an instant.
pub fn now() -> Instant {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y as i64 - 1 } else { y as i64 };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[inline]
fn digits(b: &[u8], n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parses an RFC 3339 timestamp with a mandatory offset; `None` if it is not one.
pub fn parse_rfc3339(s: &str) -> Option<Instant> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let y = digits(b, 4)? as i32;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let mo = digits(&b[5..], 2)?;
    let d = digits(&b[8..], 2)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let h = digits(&b[11..], 2)?;
    let mi = digits(&b[14..], 2)?;
    let sec = digits(&b[17..], 2)?;
    if !(MIN_YEAR..=MAX_YEAR).contains(&y)
        || !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        let mut scale = 100_000i64;
        while i < b.len() && b[i].is_ascii_digit() {
            micros += (b[i] - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        &sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(&b[i + 1..], 2)? as i64;
            let om = digits(&b[i + 4..], 2)? as i64;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + sec) as i64 - offset_secs;
    Some(secs * SECOND + micros)
}

/// Appends `t` as RFC 3339 in UTC (`2024-05-02T03:00:00Z`), with a fraction only if
/// the instant has one.
pub fn write_rfc3339(out: &mut Vec<u8>, t: Instant) {
    let secs = t.div_euclid(SECOND);
    let micros = t.rem_euclid(SECOND);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    fn put(out: &mut Vec<u8>, v: u32, w: usize) {
        let mut tmp = [0u8; 10];
        let mut v = v;
        for k in (0..w).rev() {
            tmp[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&tmp[..w]);
    }
    put(out, y.max(0) as u32, 4);
    out.push(b'-');
    put(out, m, 2);
    out.push(b'-');
    put(out, d, 2);
    out.push(b'T');
    put(out, (sod / 3600) as u32, 2);
    out.push(b':');
    put(out, (sod / 60 % 60) as u32, 2);
    out.push(b':');
    put(out, (sod % 60) as u32, 2);
    if micros != 0 {
        out.push(b'.');
        if micros % 1000 == 0 {
            put(out, (micros / 1000) as u32, 3);
        } else {
            put(out, micros as u32, 6);
        }
    }
    out.push(b'Z');
}

/// Appends `t` as RFC 3339 local time at a UTC offset of `offset_secs`
/// (`2024-03-04T08:00:00+07:00`).
pub fn write_rfc3339_offset(out: &mut Vec<u8>, t: Instant, offset_secs: i64) {
    let start = out.len();
    write_rfc3339(out, t + offset_secs * SECOND);
    if offset_secs == 0 {
        return;
    }
    out.pop(); // the 'Z'
    let (sign, o) = if offset_secs < 0 {
        (b'-', -offset_secs)
    } else {
        (b'+', offset_secs)
    };
    let (h, m) = (o / 3600, o / 60 % 60);
    out.extend_from_slice(&[
        sign,
        b'0' + (h / 10) as u8,
        b'0' + (h % 10) as u8,
        b':',
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
    ]);
    debug_assert!(out.len() > start);
}

/// `t` as an RFC 3339 string in UTC.
pub fn format_rfc3339(t: Instant) -> String {
    let mut v = Vec::with_capacity(32);
    write_rfc3339(&mut v, t);
    String::from_utf8(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_fractions() {
        let a = parse_rfc3339("2024-04-26T10:00:00+07:00").unwrap();
        let b = parse_rfc3339("2024-04-26T03:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_rfc3339(a), "2024-04-26T03:00:00Z");
        let c = parse_rfc3339("2024-04-26T03:00:00.25-00:30").unwrap();
        assert_eq!(format_rfc3339(c), "2024-04-26T03:30:00.250Z");
        let d = parse_rfc3339("2024-02-29 23:59:59.000001z").unwrap();
        assert_eq!(format_rfc3339(d), "2024-02-29T23:59:59.000001Z");
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2024-04-26T10:00:00",
            "2024-04-26",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-26T24:00:00Z",
            "2024-04-26T10:00:00+0700",
            "2024-04-26T10:00:00.Z",
            "2024-04-26T10:00:00Zjunk",
            "1969-12-31T23:59:59Z",
            "9999-01-01T00:00:00Z",
            "２０２４-04-26T10:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn civil_roundtrip() {
        for z in (-1000..100_000).step_by(7) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
