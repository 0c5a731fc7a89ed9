//! Working calendar: working periods, weekdays, holidays, make-up days (docs/spec.md §3.1–3.3).
//!
//! Everything is precomputed once into per-day tables over [`TABLE_FIRST_YEAR`] ..
//! [`TABLE_END_YEAR`], so that the questions the engine asks on every event —
//! "how much working time lies between a and b", "which instant is h working hours
//! after t", "which is the n-th working day after this date" — cost a couple of
//! array reads and a binary search instead of a walk over days.
//!
//! The central quantity is `cum(t)`: the working time elapsed from the table's start
//! to instant `t`, a continuous non-decreasing function that only grows inside
//! working periods. Then
//! * working time between `a` and `b` is `cum(b) - cum(a)`;
//! * `forward(t, h)` is the *earliest* instant whose `cum` reaches `cum(t) + h`
//!   (so it may be a period's end, e.g. 17:00);
//! * `backward(d, h)` is the *latest* instant whose `cum` is `cum(d) - h`
//!   (so it may be a period's start, e.g. 07:00);
//!
//! exactly the two rules of docs/spec.md §3.3. For `h = 0` both return the instant itself.
//!
//! Local days are mapped to UTC with the zone's offset at local noon of that day;
//! the shipped zone (`Asia/Ho_Chi_Minh`) has had a fixed offset since 1975, and a
//! zone whose DST switch falls inside a working period is not modelled exactly
//! (documented in the README).

use crate::time::{civil_from_days, days_from_civil, Instant, DAY, SECOND};
use chrono::{Offset, TimeZone};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// First year covered by the working-time tables.
pub const TABLE_FIRST_YEAR: i32 = 1969;
/// The tables end on 1 January of this year; later instants saturate.
pub const TABLE_END_YEAR: i32 = 2301;

/// How a legal duration is counted (docs/spec.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    /// Receipt day not counted; due at close of business of the n-th working day after.
    WorkingDays,
    /// n hours of working time counted forward from the receipt.
    WorkingHours,
    /// Local date plus n days, moved to the next working day; due at its COB.
    CalendarDays,
    /// `n` is a cut-off (seconds after local midnight): received on a working
    /// day at or before it, due at that day's close of business; otherwise at
    /// the next working day's (certification, Decree 23/2015/NĐ-CP art. 7).
    SameDay,
}

impl DurationUnit {
    /// Parses the catalogue spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "working_days" => Some(Self::WorkingDays),
            "working_hours" => Some(Self::WorkingHours),
            "calendar_days" => Some(Self::CalendarDays),
            "same_day" => Some(Self::SameDay),
            _ => None,
        }
    }
}

/// A legal duration: `n` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegalDuration {
    /// How many units (for [`DurationUnit::SameDay`]: the cut-off, seconds
    /// after local midnight).
    pub n: u32,
    /// Which unit.
    pub unit: DurationUnit,
}

/// Inputs of a calendar, as read from configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarSpec {
    /// IANA time zone.
    pub tz: Tz,
    /// Working periods as (start, end) seconds after local midnight, sorted, disjoint.
    pub periods: Vec<(u32, u32)>,
    /// Working weekdays, Monday = index 0.
    pub weekdays: [bool; 7],
    /// Dates off, as days since 1970-01-01.
    pub holidays: BTreeSet<i64>,
    /// Weekend dates that are working days, as days since 1970-01-01.
    pub makeup_days: BTreeSet<i64>,
    /// Seasons with other working periods; the first one containing a date
    /// wins, dates in none use `periods`.
    pub seasons: Vec<Season>,
    /// Years whose holidays a calendar file gives (the rest are guessed).
    pub covered_years: BTreeSet<i32>,
}

impl CalendarSpec {
    /// For every year from the first covered one on that no calendar file
    /// covers, takes `fixed` (month, day) dates off, and a date that falls on a
    /// rest day moves to the next working weekday (Labour Code 45/2019/QH14
    /// art. 111(3)). Lunar holidays (Tết, Giỗ Tổ) and yearly swaps cannot be
    /// guessed: such a year stays a warning. Years before the first file keep
    /// plain weekdays (history is replayed with the files it had).
    pub fn add_fixed_holidays(&mut self, fixed: &[(u32, u32)]) {
        let Some(&first) = self.covered_years.first() else {
            return;
        };
        let rest = |spec: &CalendarSpec, day: i64| {
            !spec.weekdays[(day + 3).rem_euclid(7) as usize] || spec.holidays.contains(&day)
        };
        for year in first..TABLE_END_YEAR {
            if self.covered_years.contains(&year) {
                continue;
            }
            let mut days: Vec<i64> = fixed
                .iter()
                .map(|&(m, d)| days_from_civil(year, m, d))
                .collect();
            days.sort_unstable();
            for day in days {
                let mut d = day;
                while rest(self, d) {
                    d += 1;
                }
                self.holidays.insert(d);
            }
        }
    }
}

/// A part of the year with its own working periods (e.g. winter hours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Season {
    /// First day, as (month, day).
    pub from: (u32, u32),
    /// Last day, as (month, day); earlier than `from` when the season wraps
    /// the year end (October to March).
    pub to: (u32, u32),
    /// Working periods, as in [`CalendarSpec::periods`].
    pub periods: Vec<(u32, u32)>,
}

impl Season {
    /// Whether the season contains the date (month, day).
    pub fn contains(&self, m: u32, d: u32) -> bool {
        let (x, f, t) = (
            m * 100 + d,
            self.from.0 * 100 + self.from.1,
            self.to.0 * 100 + self.to.1,
        );
        if f <= t {
            f <= x && x <= t
        } else {
            x >= f || x <= t
        }
    }
}

impl Default for CalendarSpec {
    fn default() -> Self {
        CalendarSpec {
            tz: chrono_tz::Asia::Ho_Chi_Minh,
            periods: vec![(7 * 3600, 11 * 3600 + 1800), (13 * 3600 + 1800, 17 * 3600)],
            weekdays: [true, true, true, true, true, false, false],
            holidays: BTreeSet::new(),
            makeup_days: BTreeSet::new(),
            seasons: Vec::new(),
            covered_years: BTreeSet::new(),
        }
    }
}

/// A built calendar. Cheap to query, immutable, shareable.
#[derive(Debug, Clone)]
pub struct Calendar {
    spec: CalendarSpec,
    /// Period sets as (start, end) offsets from local midnight, in instant
    /// units: 0 is `spec.periods`, 1.. the seasons'. Their last end is that
    /// day's close of business.
    sets: Vec<Vec<(i64, i64)>>,
    /// The period set of each day (one extra entry); empty when there are no
    /// seasons, so the common calendar reads no extra table.
    set_of: Vec<u8>,
    /// Day number (since 1970-01-01) of table index 0.
    origin: i64,
    /// UTC instant of each day's local midnight; one extra entry at the end.
    start: Vec<i64>,
    /// Working time before each day (from the table start); one extra entry.
    cum: Vec<i64>,
    /// Number of working days before each day; one extra entry.
    wd: Vec<u32>,
    /// Offset guess used to find a day from an instant.
    offset_guess: i64,
}

impl Calendar {
    /// Builds the tables. Periods must be sorted, non-empty and disjoint (config
    /// validation guarantees it).
    pub fn new(spec: CalendarSpec) -> Calendar {
        let origin = days_from_civil(TABLE_FIRST_YEAR, 1, 1);
        let end = days_from_civil(TABLE_END_YEAR, 1, 1);
        let n = (end - origin) as usize;
        let to_instants = |ps: &[(u32, u32)]| -> Vec<(i64, i64)> {
            ps.iter()
                .map(|&(a, b)| (a as i64 * SECOND, b as i64 * SECOND))
                .collect()
        };
        let mut sets = vec![to_instants(&spec.periods)];
        sets.extend(spec.seasons.iter().map(|s| to_instants(&s.periods)));
        let work: Vec<i64> = sets
            .iter()
            .map(|ps| ps.iter().map(|(a, b)| b - a).sum())
            .collect();
        let mut set_of = Vec::new();
        if !spec.seasons.is_empty() {
            set_of.reserve(n + 1);
        }
        let mut start = Vec::with_capacity(n + 1);
        let mut cum = Vec::with_capacity(n + 1);
        let mut wd = Vec::with_capacity(n + 1);
        let (mut c, mut w) = (0i64, 0u32);
        let mut offset_guess = None;
        for i in 0..=n {
            let day = origin + i as i64;
            let noon_utc = day * 86_400 + 12 * 3600;
            let off = match chrono::DateTime::from_timestamp(noon_utc, 0) {
                Some(dt) => spec
                    .tz
                    .offset_from_utc_datetime(&dt.naive_utc())
                    .fix()
                    .local_minus_utc() as i64,
                None => 0,
            };
            offset_guess.get_or_insert(off * SECOND);
            start.push(day * DAY - off * SECOND);
            cum.push(c);
            wd.push(w);
            let set = if spec.seasons.is_empty() {
                0
            } else {
                let (_, m, d) = civil_from_days(day);
                let k = spec.seasons.iter().position(|s| s.contains(m, d));
                let k = k.map_or(0, |k| (k + 1).min(u8::MAX as usize) as u8);
                set_of.push(k);
                k
            };
            if Self::spec_is_working(&spec, day) {
                c += work[set as usize];
                w += 1;
            }
        }
        Calendar {
            spec,
            sets,
            set_of,
            origin,
            start,
            cum,
            wd,
            offset_guess: offset_guess.unwrap_or(0),
        }
    }

    fn spec_is_working(spec: &CalendarSpec, day: i64) -> bool {
        if spec.makeup_days.contains(&day) {
            return true;
        }
        let weekday = (day + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
        spec.weekdays[weekday] && !spec.holidays.contains(&day)
    }

    /// The configuration this calendar was built from.
    pub fn spec(&self) -> &CalendarSpec {
        &self.spec
    }

    /// The working periods of table day `i`.
    #[inline]
    fn periods(&self, i: usize) -> &[(i64, i64)] {
        match self.set_of.get(i) {
            Some(&k) => &self.sets[k as usize],
            None => &self.sets[0],
        }
    }

    /// Close of business of table day `i`, as an offset from its midnight.
    #[inline]
    fn cob(&self, i: usize) -> i64 {
        self.periods(i).last().map(|p| p.1).unwrap_or(0)
    }

    /// Table index of a date (days since 1970-01-01), clamped to the table.
    fn index_of_day(&self, day: i64) -> usize {
        (day - self.origin).clamp(0, self.days() as i64 - 1) as usize
    }

    /// Number of days in the table (without the sentinel).
    fn days(&self) -> usize {
        self.start.len() - 1
    }

    /// Table index of the local day containing `t` (saturating at the table ends).
    #[inline]
    fn index_of(&self, t: Instant) -> usize {
        let guess = (t + self.offset_guess).div_euclid(DAY) - self.origin;
        let last = self.days() as i64 - 1;
        let mut i = guess.clamp(0, last) as usize;
        while i > 0 && self.start[i] > t {
            i -= 1;
        }
        while i < last as usize && self.start[i + 1] <= t {
            i += 1;
        }
        i
    }

    #[inline]
    fn is_working_index(&self, i: usize) -> bool {
        self.wd[i + 1] != self.wd[i]
    }

    /// The local date of `t`, as days since 1970-01-01.
    pub fn local_day(&self, t: Instant) -> i64 {
        self.origin + self.index_of(t) as i64
    }

    /// `HH:MM dd/mm/yyyy` in local time: how e-mails and pages print an instant.
    pub fn format_local(&self, t: Instant) -> String {
        let secs = t.div_euclid(SECOND) + self.utc_offset_secs(t);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        format!("{:02}:{:02} {d:02}/{m:02}/{y}", sod / 3600, sod / 60 % 60)
    }

    /// `dd/mm/yyyy` of a day (days since 1970-01-01).
    pub fn format_day(day: i64) -> String {
        let (y, m, d) = civil_from_days(day);
        format!("{d:02}/{m:02}/{y}")
    }

    /// The last working day before the local date of `due`: the day by which
    /// an apology letter with a new appointment must go out.
    pub fn apology_day(&self, due: Instant) -> i64 {
        let d = self.local_day(due);
        (1..30)
            .map(|k| d - k)
            .find(|&x| self.is_working_day(x))
            .unwrap_or(d - 1)
    }

    /// The local date of `t` as (year, month, day).
    pub fn local_date(&self, t: Instant) -> (i32, u32, u32) {
        civil_from_days(self.local_day(t))
    }

    /// The zone's UTC offset on the local day containing `t`, in seconds.
    pub fn utc_offset_secs(&self, t: Instant) -> i64 {
        let i = self.index_of(t);
        ((self.origin + i as i64) * DAY - self.start[i]) / SECOND
    }

    /// Start of the first working period of `day` (days since 1970-01-01).
    pub fn opening(&self, day: i64) -> Instant {
        let i = self.index_of_day(day);
        self.day_start(day) + self.periods(i).first().map(|p| p.0).unwrap_or(0)
    }

    /// Working time in one working day outside any season (how pages and
    /// e-mails turn working hours into days).
    pub fn day_working_time(&self) -> i64 {
        self.sets[0].iter().map(|(a, b)| b - a).sum()
    }

    /// Whether the local date (days since 1970-01-01) is a working day.
    pub fn is_working_day(&self, day: i64) -> bool {
        let i = day - self.origin;
        if i < 0 || i >= self.days() as i64 {
            return Self::spec_is_working(&self.spec, day);
        }
        self.is_working_index(i as usize)
    }

    /// UTC instant of local midnight starting `day` (days since 1970-01-01).
    pub fn day_start(&self, day: i64) -> Instant {
        let i = (day - self.origin).clamp(0, self.days() as i64) as usize;
        self.start[i]
    }

    /// Close of business of `day`: the end of its last working period.
    pub fn close_of_business(&self, day: i64) -> Instant {
        self.day_start(day) + self.cob(self.index_of_day(day))
    }

    /// Working time from the table start to `t`.
    #[inline]
    fn cum_at(&self, t: Instant) -> i64 {
        let i = self.index_of(t);
        if !self.is_working_index(i) {
            return self.cum[i];
        }
        let off = t - self.start[i];
        let mut c = self.cum[i];
        for &(a, b) in self.periods(i) {
            if off <= a {
                break;
            }
            c += off.min(b) - a;
        }
        c
    }

    /// Working time between `a` and `b` (zero if `b <= a`).
    pub fn working_between(&self, a: Instant, b: Instant) -> i64 {
        if b <= a {
            return 0;
        }
        self.cum_at(b) - self.cum_at(a)
    }

    /// The earliest instant at which the working time elapsed since `t` reaches `h`.
    pub fn forward(&self, t: Instant, h: i64) -> Instant {
        if h <= 0 {
            return t;
        }
        let target = self.cum_at(t) + h;
        let j = gallop(&self.cum, self.index_of(t), |c| c < target);
        if j == 0 || j > self.days() {
            return self.start[self.days()];
        }
        let i = j - 1;
        let mut rem = target - self.cum[i];
        for &(a, b) in self.periods(i) {
            if rem <= b - a {
                return self.start[i] + a + rem;
            }
            rem -= b - a;
        }
        self.start[i] + self.cob(i)
    }

    /// The latest instant from which the working time left until `d` is `h`.
    pub fn backward(&self, d: Instant, h: i64) -> Instant {
        if h <= 0 {
            return d;
        }
        let target = self.cum_at(d) - h;
        if target < 0 {
            return self.start[0];
        }
        let j = gallop_back(&self.cum, self.index_of(d) + 1, |c| c <= target);
        if j == 0 || j > self.days() {
            return self.start[self.days()];
        }
        let i = j - 1;
        let mut rem = target - self.cum[i];
        for &(a, b) in self.periods(i) {
            if rem < b - a {
                return self.start[i] + a + rem;
            }
            rem -= b - a;
        }
        self.start[i] + self.cob(i)
    }

    /// Due time of a record received at `at` with the legal duration `dur` (docs/spec.md §3.2).
    pub fn due(&self, at: Instant, dur: LegalDuration) -> Instant {
        match dur.unit {
            DurationUnit::WorkingHours => self.forward(at, dur.n as i64 * crate::time::HOUR),
            DurationUnit::WorkingDays => {
                let d = self.index_of(at);
                let want = self.wd[d + 1] + dur.n;
                let j = gallop(&self.wd, d + 1, |w| w < want);
                if j == 0 || j > self.days() {
                    return self.start[self.days()];
                }
                self.start[j - 1] + self.cob(j - 1)
            }
            DurationUnit::CalendarDays => {
                let i = self.index_of(at) + dur.n as usize;
                self.next_working_cob(i)
            }
            DurationUnit::SameDay => {
                let i = self.index_of(at);
                let cutoff = dur.n as i64 * SECOND;
                if self.is_working_index(i) && at - self.start[i] <= cutoff {
                    self.start[i] + self.cob(i)
                } else {
                    self.next_working_cob(i + 1)
                }
            }
        }
    }

    /// Close of business of the first working day at or after table day `i`.
    fn next_working_cob(&self, mut i: usize) -> Instant {
        while i < self.days() && !self.is_working_index(i) {
            i += 1;
        }
        let i = i.min(self.days() - 1);
        self.start[i] + self.cob(i)
    }

    /// Years whose holidays a calendar file gives.
    pub fn covered_years(&self) -> &BTreeSet<i32> {
        &self.spec.covered_years
    }
}

/// `v.partition_point(pred)`, searched forward from `from` (where the answer
/// usually is close): galloping keeps the probes in a few cache lines of the
/// per-day tables instead of a binary search over 120,000 days.
#[inline]
fn gallop<T: Copy>(v: &[T], from: usize, pred: impl Fn(T) -> bool) -> usize {
    let from = from.min(v.len());
    if from > 0 && !pred(v[from - 1]) {
        return gallop_back(v, from - 1, pred);
    }
    // the boundary is at or after `from`
    let (mut lo, mut step) = (from, 1);
    loop {
        let hi = lo + step;
        if hi > v.len() || !pred(v[hi - 1]) {
            let hi = hi.min(v.len());
            return lo + v[lo..hi].partition_point(|&x| pred(x));
        }
        lo = hi;
        step *= 2;
    }
}

/// `v.partition_point(pred)` for an answer usually at or just below `from`.
#[inline]
fn gallop_back<T: Copy>(v: &[T], from: usize, pred: impl Fn(T) -> bool) -> usize {
    let from = from.min(v.len());
    if from < v.len() && pred(v[from]) {
        return gallop(v, from + 1, pred);
    }
    // the boundary is at or before `from`
    let (mut hi, mut step) = (from, 1);
    loop {
        let lo = hi.saturating_sub(step);
        if lo == 0 || pred(v[lo - 1]) {
            return lo + v[lo..hi].partition_point(|&x| pred(x));
        }
        hi = lo;
        step *= 2;
    }
}

#[cfg(test)]
mod tests {
    //! Table tests of docs/spec.md §3 on the Vietnamese calendar, and properties of the
    //! working-time arithmetic.
    use super::*;
    use crate::time::{format_rfc3339, parse_rfc3339, HOUR};
    use proptest::prelude::*;

    fn vn() -> &'static Calendar {
        static CAL: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();
        CAL.get_or_init(build_vn)
    }

    fn build_vn() -> Calendar {
        let mut spec = CalendarSpec::default();
        for d in [
            "2024-01-01",
            "2024-02-08",
            "2024-02-09",
            "2024-02-12",
            "2024-02-13",
            "2024-02-14",
            "2024-04-18",
            "2024-04-29",
            "2024-04-30",
            "2024-05-01",
            "2024-09-02",
            "2024-09-03",
            "2025-01-01",
            "2025-01-27",
            "2025-01-28",
            "2025-01-29",
            "2025-01-30",
            "2025-01-31",
            "2025-04-07",
            "2025-04-30",
            "2025-05-01",
            "2025-05-02",
            "2025-09-01",
            "2025-09-02",
        ] {
            spec.holidays.insert(day(d));
        }
        spec.makeup_days.insert(day("2024-05-04"));
        spec.makeup_days.insert(day("2025-04-26"));
        Calendar::new(spec)
    }

    fn day(s: &str) -> i64 {
        let y = s[0..4].parse().unwrap();
        let m = s[5..7].parse().unwrap();
        let d = s[8..10].parse().unwrap();
        days_from_civil(y, m, d)
    }

    fn t(s: &str) -> Instant {
        parse_rfc3339(s).unwrap()
    }

    fn wd(n: u32) -> LegalDuration {
        LegalDuration {
            n,
            unit: DurationUnit::WorkingDays,
        }
    }

    /// Named cases: (name, received at, duration, expected due).
    #[test]
    fn due_table() {
        let cal = vn();
        let cases: &[(&str, &str, LegalDuration, &str)] = &[
            (
                "friday afternoon: 1 working day lands on Monday",
                "2024-03-08T16:00:00+07:00",
                wd(1),
                "2024-03-11T17:00:00+07:00",
            ),
            (
                "received on a Sunday: the receipt day is not counted",
                "2024-03-10T09:00:00+07:00",
                wd(1),
                "2024-03-11T17:00:00+07:00",
            ),
            (
                "received on a holiday (30 Apr 2024)",
                "2024-04-30T09:00:00+07:00",
                wd(1),
                "2024-05-02T17:00:00+07:00",
            ),
            (
                "across Tet 2025: 1 working day after Fri 24 Jan is Mon 3 Feb",
                "2025-01-24T14:00:00+07:00",
                wd(1),
                "2025-02-03T17:00:00+07:00",
            ),
            (
                "the 2024-05-04 make-up Saturday counts as a working day",
                "2024-04-26T10:00:00+07:00",
                wd(3),
                "2024-05-04T17:00:00+07:00",
            ),
            (
                "working hours across the lunch break",
                "2024-03-04T10:30:00+07:00",
                LegalDuration {
                    n: 2,
                    unit: DurationUnit::WorkingHours,
                },
                "2024-03-04T14:30:00+07:00",
            ),
            (
                "working hours ending exactly at a period's end stay there",
                "2024-03-04T07:00:00+07:00",
                LegalDuration {
                    n: 8,
                    unit: DurationUnit::WorkingHours,
                },
                "2024-03-04T17:00:00+07:00",
            ),
            (
                "working hours from Friday 16:30 over the long holiday",
                "2024-04-26T16:30:00+07:00",
                LegalDuration {
                    n: 4,
                    unit: DurationUnit::WorkingHours,
                },
                "2024-05-02T10:30:00+07:00",
            ),
            (
                "calendar days landing on a holiday move to the next working day",
                "2024-04-15T09:00:00+07:00",
                LegalDuration {
                    n: 15,
                    unit: DurationUnit::CalendarDays,
                },
                "2024-05-02T17:00:00+07:00",
            ),
            (
                "calendar days landing on a Sunday",
                "2024-03-01T09:00:00+07:00",
                LegalDuration {
                    n: 9,
                    unit: DurationUnit::CalendarDays,
                },
                "2024-03-11T17:00:00+07:00",
            ),
        ];
        for (name, at, dur, want) in cases {
            let got = cal.due(t(at), *dur);
            assert_eq!(format_rfc3339(got), format_rfc3339(t(want)), "{name}");
        }
    }

    #[test]
    fn forward_backward_table() {
        let cal = vn();
        let cases: &[(&str, &str, i64, &str)] = &[
            (
                "zero is the instant itself, even at night",
                "2024-03-04T22:00:00+07:00",
                0,
                "2024-03-04T22:00:00+07:00",
            ),
            (
                "from night starts at the next period",
                "2024-03-04T22:00:00+07:00",
                1,
                "2024-03-05T08:00:00+07:00",
            ),
            (
                "ending at lunch stays at 11:30",
                "2024-03-04T07:00:00+07:00",
                4,
                "2024-03-04T11:00:00+07:00",
            ),
        ];
        for (name, from, h, want) in cases {
            assert_eq!(cal.forward(t(from), h * HOUR), t(want), "{name}");
        }
        // backward: latest instant, so a period start rather than the previous end.
        let due = t("2024-03-11T17:00:00+07:00");
        assert_eq!(cal.backward(due, 8 * HOUR), t("2024-03-11T07:00:00+07:00"));
        assert_eq!(cal.backward(due, 16 * HOUR), t("2024-03-08T07:00:00+07:00"));
        assert_eq!(
            cal.backward(due, 3 * HOUR + HOUR / 2),
            t("2024-03-11T13:30:00+07:00")
        );
        // the make-up Saturday is a working day for the backward walk too
        let due = t("2024-05-04T17:00:00+07:00");
        assert_eq!(cal.backward(due, 8 * HOUR), t("2024-05-04T07:00:00+07:00"));
        assert_eq!(cal.backward(due, 9 * HOUR), t("2024-05-03T16:00:00+07:00"));
    }

    fn same_day() -> LegalDuration {
        LegalDuration {
            n: 15 * 3600,
            unit: DurationUnit::SameDay,
        }
    }

    /// Same-day procedures (cut-off 15:00): Decree 23/2015/NĐ-CP art. 7.
    #[test]
    fn same_day_table() {
        let cal = vn();
        let cases: &[(&str, &str, &str)] = &[
            (
                "morning: that day's close",
                "2024-03-04T09:00:00+07:00",
                "2024-03-04T17:00:00+07:00",
            ),
            (
                "exactly at the cut-off counts as before it",
                "2024-03-04T15:00:00+07:00",
                "2024-03-04T17:00:00+07:00",
            ),
            (
                "a second after the cut-off: next working day",
                "2024-03-04T15:00:01+07:00",
                "2024-03-05T17:00:00+07:00",
            ),
            (
                "Friday after the cut-off: Monday",
                "2024-03-08T16:00:00+07:00",
                "2024-03-11T17:00:00+07:00",
            ),
            (
                "before opening on a working day: that day",
                "2024-03-04T06:00:00+07:00",
                "2024-03-04T17:00:00+07:00",
            ),
            (
                "Saturday morning: Monday",
                "2024-03-09T09:00:00+07:00",
                "2024-03-11T17:00:00+07:00",
            ),
            (
                "on a holiday (30 Apr 2024): the next working day",
                "2024-04-30T09:00:00+07:00",
                "2024-05-02T17:00:00+07:00",
            ),
            (
                "the make-up Saturday is a working day",
                "2024-05-04T10:00:00+07:00",
                "2024-05-04T17:00:00+07:00",
            ),
        ];
        for (name, at, want) in cases {
            assert_eq!(
                format_rfc3339(cal.due(t(at), same_day())),
                format_rfc3339(t(want)),
                "{name}"
            );
        }
    }

    /// Winter hours from October to March (a season wrapping the year end):
    /// 07:30–11:30 / 13:00–16:30, summer 07:00–11:30 / 13:30–17:00.
    fn seasonal() -> Calendar {
        let mut spec = build_vn().spec().clone();
        spec.seasons = vec![Season {
            from: (10, 1),
            to: (3, 31),
            periods: vec![
                (7 * 3600 + 1800, 11 * 3600 + 1800),
                (13 * 3600, 16 * 3600 + 1800),
            ],
        }];
        Calendar::new(spec)
    }

    #[test]
    fn seasons_table() {
        let cal = seasonal();
        let cases: &[(&str, &str, LegalDuration, &str)] = &[
            (
                "winter close of business is 16:30",
                "2024-03-08T10:00:00+07:00",
                wd(1),
                "2024-03-11T16:30:00+07:00",
            ),
            (
                "the season's last day (31 Mar) is winter",
                "2024-03-28T10:00:00+07:00",
                wd(1),
                "2024-03-29T16:30:00+07:00",
            ),
            (
                "summer from 1 April",
                "2024-03-29T10:00:00+07:00",
                wd(1),
                "2024-04-01T17:00:00+07:00",
            ),
            (
                "winter again from 1 October",
                "2024-09-30T10:00:00+07:00",
                wd(1),
                "2024-10-01T16:30:00+07:00",
            ),
            (
                "December is inside the wrapped season",
                "2024-12-02T10:00:00+07:00",
                wd(1),
                "2024-12-03T16:30:00+07:00",
            ),
            (
                "working hours across a winter lunch break (11:30–13:00)",
                "2024-01-08T10:30:00+07:00",
                LegalDuration {
                    n: 2,
                    unit: DurationUnit::WorkingHours,
                },
                "2024-01-08T14:00:00+07:00",
            ),
            (
                "working hours from a winter Friday into Monday",
                "2024-01-05T16:00:00+07:00",
                LegalDuration {
                    n: 1,
                    unit: DurationUnit::WorkingHours,
                },
                "2024-01-08T08:00:00+07:00",
            ),
            (
                "same-day after the cut-off: next day's winter close",
                "2024-01-08T15:30:00+07:00",
                same_day(),
                "2024-01-09T16:30:00+07:00",
            ),
        ];
        for (name, at, dur, want) in cases {
            assert_eq!(
                format_rfc3339(cal.due(t(at), *dur)),
                format_rfc3339(t(want)),
                "{name}"
            );
        }
        // a winter working day holds 7.5 h, a summer one 8 h
        let w = cal.working_between(
            t("2024-01-08T00:00:00+07:00"),
            t("2024-01-09T00:00:00+07:00"),
        );
        assert_eq!(w, 7 * HOUR + HOUR / 2);
        let s = cal.working_between(
            t("2024-06-03T00:00:00+07:00"),
            t("2024-06-04T00:00:00+07:00"),
        );
        assert_eq!(s, 8 * HOUR);
        assert_eq!(
            cal.backward(t("2024-01-08T16:30:00+07:00"), 8 * HOUR),
            t("2024-01-05T16:00:00+07:00")
        );
        assert_eq!(
            cal.opening(day("2024-01-08")),
            t("2024-01-08T07:30:00+07:00")
        );
        assert_eq!(
            cal.close_of_business(day("2024-06-03")),
            t("2024-06-03T17:00:00+07:00")
        );
    }

    /// A year without a file: the fixed-date days off, one on a rest day
    /// moved to the next working weekday (Labour Code art. 111(3)).
    #[test]
    fn fixed_holidays_fill_uncovered_years() {
        let mut spec = CalendarSpec::default();
        spec.covered_years.insert(2027);
        spec.holidays.insert(day("2027-01-01"));
        spec.add_fixed_holidays(&[(1, 1), (4, 30), (5, 1), (9, 2), (11, 24)]);
        let cal = Calendar::new(spec);
        // 2028: 1 Jan is a Saturday, 30 Apr a Sunday, 2 Sep a Saturday
        for d in [
            "2028-01-03",
            "2028-05-01",
            "2028-05-02",
            "2028-09-04",
            "2028-11-24",
        ] {
            assert!(!cal.is_working_day(day(d)), "{d} is off");
        }
        for d in ["2028-01-04", "2028-05-03", "2028-09-05", "2028-04-28"] {
            assert!(cal.is_working_day(day(d)), "{d} is worked");
        }
        // 2029: 2 Sep is a Sunday (→ Monday 3 Sep), 24 Nov a Saturday (→ Monday 26 Nov)
        for d in [
            "2029-01-01",
            "2029-04-30",
            "2029-05-01",
            "2029-09-03",
            "2029-11-26",
        ] {
            assert!(!cal.is_working_day(day(d)), "{d} is off");
        }
        // the covered year keeps exactly its file; years before the first file plain weekdays
        assert!(cal.is_working_day(day("2027-04-30")));
        assert!(cal.is_working_day(day("2026-01-01")));
        assert_eq!(
            cal.covered_years().iter().copied().collect::<Vec<_>>(),
            vec![2027]
        );
    }

    #[test]
    fn season_contains_wraps_the_year_end() {
        let s = Season {
            from: (10, 1),
            to: (3, 31),
            periods: vec![],
        };
        assert!(s.contains(10, 1) && s.contains(12, 31) && s.contains(1, 1) && s.contains(3, 31));
        assert!(!s.contains(4, 1) && !s.contains(9, 30));
        let s = Season {
            from: (4, 1),
            to: (9, 30),
            periods: vec![],
        };
        assert!(s.contains(4, 1) && s.contains(9, 30) && !s.contains(10, 1) && !s.contains(3, 31));
    }

    #[test]
    fn local_dates() {
        let cal = vn();
        assert_eq!(cal.local_date(t("2024-03-04T16:59:00Z")), (2024, 3, 4));
        assert_eq!(cal.local_date(t("2024-03-04T17:00:00Z")), (2024, 3, 5));
        assert!(cal.is_working_day(day("2024-05-04")));
        assert!(!cal.is_working_day(day("2024-05-01")));
        assert!(!cal.is_working_day(day("2024-05-05")));
    }

    #[test]
    fn gallop_matches_partition_point() {
        let v: Vec<i64> = (0..1000).map(|i| i / 3).collect();
        for target in -2..340 {
            for from in [0usize, 1, 5, 400, 999, 1000, 1200] {
                assert_eq!(
                    gallop(&v, from, |c| c < target),
                    v.partition_point(|&c| c < target)
                );
                assert_eq!(
                    gallop_back(&v, from, |c| c <= target),
                    v.partition_point(|&c| c <= target)
                );
            }
        }
    }

    fn instant() -> impl Strategy<Value = Instant> {
        let lo = t("2023-12-01T00:00:00Z");
        let hi = t("2026-01-31T00:00:00Z");
        // minute granularity plus some sub-second noise
        (lo / 1_000_000..hi / 1_000_000, 0i64..1_000_000).prop_map(|(s, us)| s * 1_000_000 + us)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn forward_elapses_exactly(t0 in instant(), h in 0i64..(200 * HOUR)) {
            let cal = vn();
            let f = cal.forward(t0, h);
            prop_assert!(f >= t0);
            prop_assert_eq!(cal.working_between(t0, f), h);
            // earliest: one microsecond earlier is not enough
            if h > 0 { prop_assert!(cal.working_between(t0, f - 1) < h); }
        }

        #[test]
        fn backward_mirrors_forward(d in instant(), h in 0i64..(200 * HOUR)) {
            let cal = vn();
            let b = cal.backward(d, h);
            prop_assert!(b <= d);
            prop_assert_eq!(cal.working_between(b, d), h);
            // latest: one microsecond later leaves less than h
            if h > 0 { prop_assert!(cal.working_between(b + 1, d) < h); }
            // and going forward again lands at or before d, with the same working time
            let f = cal.forward(b, h);
            prop_assert!(f <= d);
            prop_assert_eq!(cal.working_between(f, d), 0);
        }

        #[test]
        fn seasonal_forward_backward_agree(t0 in instant(), h in 0i64..(200 * HOUR)) {
            static CAL: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();
            let cal = CAL.get_or_init(seasonal);
            let f = cal.forward(t0, h);
            prop_assert_eq!(cal.working_between(t0, f), h);
            if h > 0 { prop_assert!(cal.working_between(t0, f - 1) < h); }
            let b = cal.backward(t0, h);
            prop_assert_eq!(cal.working_between(b, t0), h);
            if h > 0 { prop_assert!(cal.working_between(b + 1, t0) < h); }
        }

        #[test]
        fn monotone(a in instant(), b in instant(), h in 0i64..(100 * HOUR)) {
            let cal = vn();
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(cal.forward(a, h) <= cal.forward(b, h));
            prop_assert!(cal.backward(a, h) <= cal.backward(b, h));
            prop_assert!(cal.due(a, wd(3)) <= cal.due(b, wd(3)));
            prop_assert!(cal.working_between(a, b) <= b - a);
        }
    }
}
