//! The deadline and alert rules as pure functions of (state, time) — docs/spec.md §3–§4.
//!
//! The engine owns state and timers; every decision it makes about *when* and
//! *whether* is one of these functions, so each is tested on its own with a table.
//! Time is always an argument: nothing here reads a clock.

use super::settings::{SupplementPolicy, ThresholdOverride, Thresholds};
use crate::engine::calendar::{Calendar, LegalDuration};
use crate::event::PauseReason;
use crate::time::Instant;

/// Thresholds for a record: defaults, then the sector's override, then the unit's
/// (a unit override wins, field by field).
pub fn thresholds(
    defaults: Thresholds,
    sector: Option<&ThresholdOverride>,
    unit: Option<&ThresholdOverride>,
) -> Thresholds {
    let mut t = defaults;
    for o in [sector, unit].into_iter().flatten() {
        if let Some(v) = o.hanging_after {
            t.hanging_after = v;
        }
        if let Some(v) = o.due_soon_before {
            t.due_soon_before = v;
        }
        if let Some(v) = o.escalate_after {
            t.escalate_after = v;
        }
    }
    t
}

/// When `hanging` fires: `hanging_after` working time after the last event that
/// left the record open and running.
pub fn hanging_at(cal: &Calendar, last_event: Instant, hanging_after: i64) -> Instant {
    cal.forward(last_event, hanging_after)
}

/// When `due_soon` fires for a due time set by an event at `set_at`: `before`
/// working time before `due`, and only if that is later than `set_at`.
pub fn due_soon_at(cal: &Calendar, due: Instant, before: i64, set_at: Instant) -> Option<Instant> {
    let ds = cal.backward(due, before);
    (ds > set_at).then_some(ds)
}

/// What a record's due time was derived from, for a restart after a supplement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueBasis {
    /// The catalogue's legal duration.
    Procedure(LegalDuration),
    /// The working time between receipt and the `due_at` it was received with.
    WorkingTime(i64),
}

/// (due, original due) after a `resumed` at `resume` of a pause that started at
/// `pause_start` (docs/spec.md §3.4): a supplement under `restart` recomputes from the
/// resume as for a new receipt; otherwise both move later by the paused working time.
#[allow(clippy::too_many_arguments)]
pub fn due_after_resume(
    cal: &Calendar,
    policy: SupplementPolicy,
    reason: PauseReason,
    basis: DueBasis,
    pause_start: Instant,
    resume: Instant,
    due: Instant,
    orig_due: Instant,
) -> (Instant, Instant) {
    if reason == PauseReason::Supplement && policy == SupplementPolicy::Restart {
        let d = match basis {
            DueBasis::Procedure(dur) => cal.due(resume, dur),
            DueBasis::WorkingTime(w) => cal.forward(resume, w),
        };
        (d, d)
    } else {
        let paused = cal.working_between(pause_start, resume);
        (cal.forward(due, paused), cal.forward(orig_due, paused))
    }
}

/// An `extended` ends a firing `overdue` when it moves the due time into the future.
pub fn extension_ends_overdue(new_due: Instant, at: Instant) -> bool {
    new_due > at
}

/// An `extended` ends a firing `due_soon` when it moves the due time out of the
/// window: the new `due_soon` instant is later than the extension.
pub fn extension_ends_due_soon(cal: &Calendar, new_due: Instant, before: i64, at: Instant) -> bool {
    cal.backward(new_due, before) > at
}

/// Home Affairs timeliness of a closed record (docs/spec.md §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeliness {
    /// closed before the due date (trước hạn).
    Early,
    /// closed on the due date (đúng hạn).
    OnTime,
    /// closed after the due date (trễ hạn).
    Late,
}

/// Judges a record closed at `closed` against its original due time, by local date.
pub fn timeliness(cal: &Calendar, closed: Instant, orig_due: Instant) -> Timeliness {
    match cal.local_day(closed).cmp(&cal.local_day(orig_due)) {
        std::cmp::Ordering::Less => Timeliness::Early,
        std::cmp::Ordering::Equal => Timeliness::OnTime,
        std::cmp::Ordering::Greater => Timeliness::Late,
    }
}

/// Category of an open record at the end of a report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InProgress {
    /// Running, not past the original due time.
    Within,
    /// Running, past the original due time.
    Overdue,
    /// Paused.
    Paused,
}

/// Classifies an open record as of `as_of`.
pub fn in_progress(as_of: Instant, orig_due: Instant, paused: bool) -> InProgress {
    if paused {
        InProgress::Paused
    } else if as_of > orig_due {
        InProgress::Overdue
    } else {
        InProgress::Within
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::calendar::{CalendarSpec, DurationUnit};
    use crate::time::{parse_rfc3339, HOUR};

    fn cal() -> &'static Calendar {
        static C: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();
        C.get_or_init(|| {
            let mut spec = CalendarSpec::default();
            for d in ["2024-04-29", "2024-04-30", "2024-05-01"] {
                spec.holidays
                    .insert(crate::config::common::parse_date(d).unwrap_or_default());
            }
            spec.makeup_days
                .insert(crate::config::common::parse_date("2024-05-04").unwrap_or_default());
            Calendar::new(spec)
        })
    }

    fn t(s: &str) -> Instant {
        parse_rfc3339(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn threshold_precedence() {
        let d = Thresholds::default();
        let sector = ThresholdOverride {
            hanging_after: Some(4 * HOUR),
            due_soon_before: Some(4 * HOUR),
            ..Default::default()
        };
        let unit = ThresholdOverride {
            hanging_after: Some(12 * HOUR),
            ..Default::default()
        };
        let cases = [
            ("defaults", None, None, (8, 16)),
            ("sector only", Some(&sector), None, (4, 4)),
            ("unit only", None, Some(&unit), (12, 16)),
            (
                "unit wins, field by field",
                Some(&sector),
                Some(&unit),
                (12, 4),
            ),
        ];
        for (name, s, u, (h, ds)) in cases {
            let got = thresholds(d, s, u);
            assert_eq!(
                (got.hanging_after / HOUR, got.due_soon_before / HOUR),
                (h, ds),
                "{name}"
            );
        }
    }

    #[test]
    fn hanging_table() {
        let cases = [
            (
                "Friday 10:00 + 8 h skips the long holiday",
                "2024-04-26T10:00:00+07:00",
                8,
                "2024-05-02T10:00:00+07:00",
            ),
            (
                "received at night counts from the next opening",
                "2024-03-04T20:00:00+07:00",
                8,
                "2024-03-05T17:00:00+07:00",
            ),
            (
                "zero hours fires at the event",
                "2024-03-04T20:00:00+07:00",
                0,
                "2024-03-04T20:00:00+07:00",
            ),
        ];
        for (name, at, h, want) in cases {
            assert_eq!(hanging_at(cal(), t(at), h * HOUR), t(want), "{name}");
        }
    }

    #[test]
    fn due_soon_table() {
        let due = t("2024-05-04T17:00:00+07:00");
        let cases = [
            (
                "8 h before a make-up Saturday's COB is its opening",
                8,
                "2024-04-26T10:00:00+07:00",
                Some("2024-05-04T07:00:00+07:00"),
            ),
            (
                "16 h before",
                16,
                "2024-04-26T10:00:00+07:00",
                Some("2024-05-03T07:00:00+07:00"),
            ),
            (
                "not raised when not later than the setting event",
                8,
                "2024-05-04T07:00:00+07:00",
                None,
            ),
            (
                "not raised when earlier than the setting event",
                8,
                "2024-05-04T09:00:00+07:00",
                None,
            ),
        ];
        for (name, h, set_at, want) in cases {
            assert_eq!(
                due_soon_at(cal(), due, h * HOUR, t(set_at)),
                want.map(t),
                "{name}"
            );
        }
    }

    #[test]
    fn resume_table() {
        let kd = DueBasis::Procedure(LegalDuration {
            n: 3,
            unit: DurationUnit::WorkingDays,
        });
        let (p, r) = (
            t("2024-03-05T09:00:00+07:00"),
            t("2024-03-06T09:00:00+07:00"),
        );
        let due = t("2024-03-07T17:00:00+07:00");
        let cases = [
            (
                "supplement, restart: 3 working days from the resume",
                SupplementPolicy::Restart,
                PauseReason::Supplement,
                kd,
                "2024-03-11T17:00:00+07:00",
            ),
            (
                "supplement, extend: + 8 working hours paused",
                SupplementPolicy::Extend,
                PauseReason::Supplement,
                kd,
                "2024-03-08T17:00:00+07:00",
            ),
            (
                "financial always extends",
                SupplementPolicy::Restart,
                PauseReason::Financial,
                kd,
                "2024-03-08T17:00:00+07:00",
            ),
            (
                "other always extends",
                SupplementPolicy::Restart,
                PauseReason::Other,
                kd,
                "2024-03-08T17:00:00+07:00",
            ),
            (
                "due_at record restarts with its working time",
                SupplementPolicy::Restart,
                PauseReason::Supplement,
                DueBasis::WorkingTime(2 * HOUR),
                "2024-03-06T11:00:00+07:00",
            ),
        ];
        for (name, policy, reason, basis, want) in cases {
            let (d, o) = due_after_resume(cal(), policy, reason, basis, p, r, due, due);
            assert_eq!((d, o), (t(want), t(want)), "{name}");
        }
        // an extension before the pause moves with it, the original due time too
        let ext = t("2024-03-12T17:00:00+07:00");
        let (d, o) = due_after_resume(
            cal(),
            SupplementPolicy::Extend,
            PauseReason::Supplement,
            kd,
            p,
            r,
            ext,
            due,
        );
        assert_eq!(
            (d, o),
            (
                t("2024-03-13T17:00:00+07:00"),
                t("2024-03-08T17:00:00+07:00")
            )
        );
    }

    #[test]
    fn extension_table() {
        let at = t("2024-03-08T09:00:00+07:00");
        assert!(extension_ends_overdue(t("2024-03-08T10:00:00+07:00"), at));
        assert!(
            !extension_ends_overdue(at, at),
            "a due time equal to the event is not in the future"
        );
        // new due Mon 11 Mar 17:00: 8 h before is Mon 07:00, later than Fri 09:00 → out of the window
        assert!(extension_ends_due_soon(
            cal(),
            t("2024-03-11T17:00:00+07:00"),
            8 * HOUR,
            at
        ));
        // new due Fri 8 Mar 17:00: 8 h before is Fri 07:00, not later → still in the window
        assert!(!extension_ends_due_soon(
            cal(),
            t("2024-03-08T17:00:00+07:00"),
            8 * HOUR,
            at
        ));
    }

    #[test]
    fn timeliness_table() {
        let due = t("2024-03-07T17:00:00+07:00");
        let cases = [
            (
                "the day before",
                "2024-03-06T16:00:00+07:00",
                Timeliness::Early,
            ),
            (
                "the due date, after COB",
                "2024-03-07T23:30:00+07:00",
                Timeliness::OnTime,
            ),
            (
                "the due date, at opening",
                "2024-03-07T07:00:00+07:00",
                Timeliness::OnTime,
            ),
            (
                "the next day, just after midnight local",
                "2024-03-08T00:00:00+07:00",
                Timeliness::Late,
            ),
            (
                "same UTC date, next local date",
                "2024-03-07T17:30:00Z",
                Timeliness::Late,
            ),
        ];
        for (name, closed, want) in cases {
            assert_eq!(timeliness(cal(), t(closed), due), want, "{name}");
        }
    }

    #[test]
    fn in_progress_table() {
        let due = t("2024-03-07T17:00:00+07:00");
        assert_eq!(
            in_progress(due, due, false),
            InProgress::Within,
            "at the due time is not past it"
        );
        assert_eq!(in_progress(due + 1, due, false), InProgress::Overdue);
        assert_eq!(in_progress(due + 1, due, true), InProgress::Paused);
    }
}
