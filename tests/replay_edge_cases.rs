//! Replay edge cases: small replays probing the spec's exact semantics (§2–§4, §6)
//! where an independent implementation could disagree with this one.
//!
//! Tests that pass are regression tests of the behaviour the spec requires (or, for
//! points where the spec is silent, of the behaviour documented in the README —
//! marked "ambiguous" or "Decision" in their comment, with the alternative reading).
//!
//! Configuration: tests/fixtures/examples/config/overdued.toml — periods
//! 07:00-11:30 and 13:30-17:00 (+07:00), Mon-Fri, hanging 8 h (sector DD 4 h, unit
//! TRAGIAC 12 h), due_soon 8 h, restart policy. Procedures: 1.004227 DD 10 WD,
//! 1.001009 KD 3 WD, 2.000908 CT 4 working hours, 1.003003 HT 1 WD. March 2024
//! has no holiday: Mon 4, Tue 5, Wed 6, Thu 7, Fri 8, Mon 11, Tue 12. All times in
//! comments are local (+07:00).

mod replay_harness;

use replay_harness::*;
use serde_json::Value;

const F: &str = "firing";
const R: &str = "resolved";

// "2024-03-05 08:00" (local, +07:00) -> RFC 3339.
fn lt(s: &str) -> String {
    format!("{}:00+07:00", s.replacen(' ', "T", 1))
}

fn a(t: &str, record: &str, kind: &str, state: &str, unit: &str) -> Alert {
    al(&lt(t), record, kind, state, unit)
}

fn nd(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn replay(events: &str, until: Option<&str>) -> RunOut {
    let dir = unique_dir("review");
    std::fs::write(dir.join("events.ndjson"), events).unwrap();
    let until = until.map(lt);
    let out = run_replay(
        &dir,
        &example_config(),
        until.as_deref(),
        &["events.ndjson"],
        None,
    );
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn no_dead_letter(out: &RunOut, ctx: &str) {
    assert_dead_letter(&out.dead_letter, &[], ctx);
}

fn dl_reasons(out: &RunOut) -> Vec<(u64, String)> {
    out.dead_letter
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["line"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Timer order (§6: "every timer due at or before its at fires, in order of fire
// time, then record_id, then kind")
// ---------------------------------------------------------------------------

// W1 (in-order stream): RA received Mon 4 08:00 BTM KD -> hanging Tue 5 08:00.
//   RB received Mon 4 09:00 QS KD -> hanging Tue 5 09:00.
//   RC received Tue 5 07:50 QS DD (4 h) -> hanging 07:50-11:30 3h40 + 20 min ->
//   Tue 5 13:50. (This event also moves the clock within an hour of RA's timer.)
//   RA advanced Tue 5 07:55 postpones RA's hanging to Tue 07:55 + 8 h =
//   (3h35 + 3h30 = 7h05) + 55 min Wed -> Wed 6 07:55.
//   Nothing else is due before Wed 12:00 (KD due Thu 7 17:00, due_soon Thu 07:00).
//   The three hangings must come out in fire-time order: RB, RC, RA.
// Actual: RA's postponed timer is handed out with the batch of its *old* second
//   (Tue 08:00) because `Wheel::take_due_tick` returns any node of the slot whose
//   `at <= now`, even one re-armed later (`Wheel::arm` only rewrites `at` for a
//   later instant) -> RA (Wed 07:55) is written before RB (Tue 09:00) and RC.
#[test]
fn postponed_timer_fires_in_time_order_until() {
    let events = nd(&[
        r#"{"event_id": "a1", "record_id": "RA", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "b1", "record_id": "RB", "type": "received", "at": "2024-03-04T09:00:00+07:00", "unit": "QS", "procedure": "1.001009"}"#,
        r#"{"event_id": "c1", "record_id": "RC", "type": "received", "at": "2024-03-05T07:50:00+07:00", "unit": "QS", "procedure": "1.004227"}"#,
        r#"{"event_id": "a2", "record_id": "RA", "type": "advanced", "at": "2024-03-05T07:55:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-06 12:00"));
    assert_alerts_exact(
        &out.alerts,
        &[
            a("2024-03-05 09:00", "RB", "hanging", F, "QS"),
            a("2024-03-05 13:50", "RC", "hanging", F, "QS"),
            a("2024-03-06 07:55", "RA", "hanging", F, "BTM"),
        ],
        "postponed timer, --until",
    );
}

// W2: the same, without --until: a later event (RD received Wed 6 12:00) is what
//   makes the timers fire. The order must be the same.
#[test]
fn postponed_timer_fires_in_time_order_mid_stream() {
    let events = nd(&[
        r#"{"event_id": "a1", "record_id": "RA", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "b1", "record_id": "RB", "type": "received", "at": "2024-03-04T09:00:00+07:00", "unit": "QS", "procedure": "1.001009"}"#,
        r#"{"event_id": "c1", "record_id": "RC", "type": "received", "at": "2024-03-05T07:50:00+07:00", "unit": "QS", "procedure": "1.004227"}"#,
        r#"{"event_id": "a2", "record_id": "RA", "type": "advanced", "at": "2024-03-05T07:55:00+07:00"}"#,
        r#"{"event_id": "d1", "record_id": "RD", "type": "received", "at": "2024-03-06T12:00:00+07:00", "unit": "QS", "procedure": "1.001009"}"#,
    ]);
    let out = replay(&events, None);
    assert_alerts_exact(
        &out.alerts,
        &[
            a("2024-03-05 09:00", "RB", "hanging", F, "QS"),
            a("2024-03-05 13:50", "RC", "hanging", F, "QS"),
            a("2024-03-06 07:55", "RA", "hanging", F, "BTM"),
        ],
        "postponed timer, mid-stream",
    );
}

// T1: ties between timers and an event at the same instant. T0 and T1 received
//   Mon 4 08:00 (BTM, KD): hanging Tue 5 08:00 for both. T1 advanced at exactly
//   Tue 5 08:00: both timers fire first (record order T0, T1), then the event
//   resolves T1's hanging at 08:00.
#[test]
fn timers_at_the_event_instant_fire_before_it() {
    let events = nd(&[
        r#"{"event_id": "x1", "record_id": "T1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "x1", "record_id": "T0", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "x2", "record_id": "T1", "type": "advanced", "at": "2024-03-05T08:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    assert_alerts_exact(
        &out.alerts,
        &[
            a("2024-03-05 08:00", "T0", "hanging", F, "BTM"),
            a("2024-03-05 08:00", "T1", "hanging", F, "BTM"),
            a("2024-03-05 08:00", "T1", "hanging", R, "BTM"),
        ],
        "tie",
    );
    no_dead_letter(&out, "tie");
}

// T2: "A timer whose instant is at or before the at of the event that sets it (a
//   snapshot of an old record ...) fires right after that event, with that event's
//   at." Z1 snapshot Mon 11 10:00 (received_at Mon 4 08:00, HT: due Tue 5 17:00,
//   long past; holder_since = at, so hanging is Tue 12 10:00). Then A1 received at
//   the same instant by an unknown unit. Z1's overdue fires right after Z1's
//   snapshot, i.e. before A1's `unrouted`, although "A1" < "Z1".
#[test]
fn deferred_timer_fires_right_after_its_event() {
    let events = nd(&[
        r#"{"event_id": "z", "record_id": "Z1", "type": "snapshot", "at": "2024-03-11T10:00:00+07:00", "unit": "BTM", "procedure": "1.003003", "received_at": "2024-03-04T08:00:00+07:00"}"#,
        r#"{"event_id": "a", "record_id": "A1", "type": "received", "at": "2024-03-11T10:00:00+07:00", "unit": "NOPE", "procedure": "1.003003"}"#,
    ]);
    let out = replay(&events, None);
    assert_alerts_exact(
        &out.alerts,
        &[
            a("2024-03-11 10:00", "Z1", "overdue", F, "BTM"),
            a("2024-03-11 10:00", "A1", "unrouted", F, "NOPE"),
        ],
        "deferred",
    );
}

// T3 (out-of-order stream): "before an event is applied, every timer due at or
//   before ITS at fires". A received Mon 4 08:00 BTM KD (hanging Tue 5 08:00).
//   Z received Wed 6 08:00: the clock moves to Wed 08:00, A's hanging fires
//   (Tue 08:00). Late events of A: advanced Mon 4 09:00 resolves it and restarts
//   it at Tue 5 09:00 (already behind the clock); advanced Mon 4 10:00: no timer
//   is due at or before Mon 10:00, so nothing fires before it; it restarts
//   hanging at Tue 5 10:00, which fires at the end (clock Wed 6 08:00).
// Decision (README "Decisions"): the engine fires every timer up to the clock
//   (Wed 08:00) before each event, so the hanging restarted by the late a2 (Tue 5
//   09:00, already behind the clock) fires before a3 is applied, with its true fire
//   time, and a3 resolves it. The literal alternative (only timers up to the late
//   event's own at) would leave out the Tue 09:00 firing and its resolution. Only
//   streams that are not in time order can tell the two apart.
#[test]
fn out_of_order_event_fires_timers_up_to_the_clock() {
    let events = nd(&[
        r#"{"event_id": "a1", "record_id": "A", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "z1", "record_id": "Z", "type": "received", "at": "2024-03-06T08:00:00+07:00", "unit": "QS", "procedure": "1.001009"}"#,
        r#"{"event_id": "a2", "record_id": "A", "type": "advanced", "at": "2024-03-04T09:00:00+07:00"}"#,
        r#"{"event_id": "a3", "record_id": "A", "type": "advanced", "at": "2024-03-04T10:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    assert_alerts_exact(
        &out.alerts,
        &[
            a("2024-03-05 08:00", "A", "hanging", F, "BTM"),
            a("2024-03-04 09:00", "A", "hanging", R, "BTM"),
            a("2024-03-05 09:00", "A", "hanging", F, "BTM"),
            a("2024-03-04 10:00", "A", "hanging", R, "BTM"),
            a("2024-03-05 10:00", "A", "hanging", F, "BTM"),
        ],
        "out of order",
    );
}

// ---------------------------------------------------------------------------
// Clock (§6)
// ---------------------------------------------------------------------------

// C1: "the simulated clock is the largest at seen so far"; "a rejected line never
//   moves the clock". R received Mon 4 08:00 QS HT, resolved Mon 4 09:00 (early),
//   returned Tue 5 10:00 for the closed record: ignored (closed_record), but seen:
//   the clock moves to Tue 10:00 (ambiguous; README: ignored events move it).
//   An `advanced` for an unknown record at Fri 8 is rejected: no move.
#[test]
fn ignored_events_move_the_clock_rejected_ones_do_not() {
    let events = nd(&[
        r#"{"event_id": "r1", "record_id": "R", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "r2", "record_id": "R", "type": "resolved", "at": "2024-03-04T09:00:00+07:00"}"#,
        r#"{"event_id": "r3", "record_id": "R", "type": "returned", "at": "2024-03-05T10:00:00+07:00"}"#,
        r#"{"event_id": "x1", "record_id": "NOBODY", "type": "advanced", "at": "2024-03-08T10:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    assert_eq!(dl_reasons(&out), vec![(4, "unknown_record".to_string())]);
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-05 10:00"), &[("QS", "HT", Cat::Early)]),
        "clock",
    );
    assert!(out.alerts.is_empty());
}

// C2: --until earlier than the last event: the clock never goes back (it "advances
//   to --until"); the report is as of the largest at. R received Wed 6 10:00 QS HT
//   -> due Thu 7 17:00. --until Tue 5 00:00 -> as_of Wed 6 10:00, within.
#[test]
fn until_before_the_clock_does_not_move_it_back() {
    let events = nd(&[
        r#"{"event_id": "r1", "record_id": "R", "type": "received", "at": "2024-03-06T10:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
    ]);
    let out = replay(&events, Some("2024-03-05 00:00"));
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-06 10:00"), &[("QS", "HT", Cat::Within)]),
        "until before clock",
    );
    assert!(out.alerts.is_empty());
}

// C3: §3.5 "in_progress_overdue if that instant is PAST its original due time".
//   B1 received Mon 4 08:00 QS HT -> due Tue 5 17:00. --until exactly Tue 5 17:00:
//   overdue fires at that instant (timer at or before the clock) but the record is
//   not past its due time: in_progress_within.
#[test]
fn report_at_exactly_the_due_time_is_within() {
    let events = nd(&[
        r#"{"event_id": "b1", "record_id": "B1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "b2", "record_id": "B1", "type": "advanced", "at": "2024-03-05T07:30:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-05 17:00"));
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "B1", "due_soon", F, "QS"),
            a("2024-03-05 17:00", "B1", "overdue", F, "QS"),
            a("2024-03-05 17:00", "B1", "due_soon", R, "QS"),
        ],
        "boundary",
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-05 17:00"), &[("QS", "HT", Cat::Within)]),
        "boundary",
    );
}

// ---------------------------------------------------------------------------
// Retention, duplicates (§2)
// ---------------------------------------------------------------------------

// K1: K received Mon 4 08:00 QS HT (k1), resolved Mon 4 09:00 (k2): early.
//   advanced Mon 11 08:59 (6 d 23 h 59 min after closing): closed_record, ignored.
//   k2 repeated Mon 11 08:59:30: duplicate_event, ignored (remembered for 7 days).
//   returned Mon 11 09:01 (past the retention): the record is no longer held ->
//   unknown_record (dead-lettered). received k5 Mon 11 10:00: a new record
//   (counted again as received). Report as of Mon 11 10:00: QS/HT received 2,
//   early 1, within 1 (due Tue 12 17:00).
#[test]
fn closed_retention_closed_record_then_unknown_record_then_new_record() {
    let events = nd(&[
        r#"{"event_id": "k1", "record_id": "K", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "k2", "record_id": "K", "type": "resolved", "at": "2024-03-04T09:00:00+07:00"}"#,
        r#"{"event_id": "k3", "record_id": "K", "type": "advanced", "at": "2024-03-11T08:59:00+07:00"}"#,
        r#"{"event_id": "k2", "record_id": "K", "type": "resolved", "at": "2024-03-11T08:59:30+07:00"}"#,
        r#"{"event_id": "k4", "record_id": "K", "type": "returned", "at": "2024-03-11T09:01:00+07:00"}"#,
        r#"{"event_id": "k5", "record_id": "K", "type": "received", "at": "2024-03-11T10:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
    ]);
    let out = replay(&events, None);
    assert_eq!(dl_reasons(&out), vec![(5, "unknown_record".to_string())]);
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-11 10:00"),
            &[("QS", "HT", Cat::Early), ("QS", "HT", Cat::Within)],
        ),
        "retention",
    );
    assert!(out.alerts.is_empty(), "{:?}", out.alerts);
}

// K2 (out-of-order stream): closed_retention counted in event time. K closed Mon 4
//   09:00. Another record's event at Wed 13 10:00 moves the clock past Mon 11
//   09:00. Then K's `returned` stamped Fri 8 (4 days after closing, within the 7
//   days "after it closes") arrives: an event for a closed record -> ignored
//   (closed_record), not dead-lettered.
// Decision (README "Decisions"): closed records are purged when the CLOCK passes
//   the end of their retention (Mon 11 09:00), so the late event is dead-lettered
//   as unknown_record. Measuring the retention in the late event's own time would
//   ignore it as closed_record instead; only out-of-order streams differ.
#[test]
fn closed_retention_is_measured_against_the_clock() {
    let events = nd(&[
        r#"{"event_id": "k1", "record_id": "K", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "k2", "record_id": "K", "type": "resolved", "at": "2024-03-04T09:00:00+07:00"}"#,
        r#"{"event_id": "o1", "record_id": "O", "type": "received", "at": "2024-03-13T10:00:00+07:00", "unit": "QS", "procedure": "1.004227"}"#,
        r#"{"event_id": "k3", "record_id": "K", "type": "returned", "at": "2024-03-08T10:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    assert_eq!(dl_reasons(&out), vec![(4, "unknown_record".to_string())]);
}

// D1: duplicate_event wins over duplicate_record: "a second event with the same id
//   for the same record is a duplicate and is ignored"; "A received with a NEW
//   event_id for a record already open is rejected as duplicate_record".
#[test]
fn duplicate_event_before_duplicate_record() {
    let events = nd(&[
        r#"{"event_id": "d1", "record_id": "D", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "d1", "record_id": "D", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "d2", "record_id": "D", "type": "received", "at": "2024-03-04T08:05:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "d3", "record_id": "D", "type": "resolved", "at": "2024-03-04T09:00:00+07:00"}"#,
        r#"{"event_id": "d1", "record_id": "D", "type": "received", "at": "2024-03-04T10:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "d4", "record_id": "D", "type": "received", "at": "2024-03-04T10:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
    ]);
    let out = replay(&events, None);
    // d1 again after closing: duplicate (ignored); d4 for a closed record: closed_record (ignored)
    assert_eq!(dl_reasons(&out), vec![(3, "duplicate_record".to_string())]);
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-04 10:00"), &[("QS", "HT", Cat::Early)]),
        "duplicates",
    );
}

// ---------------------------------------------------------------------------
// Validation (§2)
// ---------------------------------------------------------------------------

// V1: line 1 received with an unknown procedure AND due_at: accepted (the due_at
//   is the due time; "A procedure code not in the catalogue and no due_at:
//   rejected") -- sector unknown (README). line 2 snapshot without unit:
//   missing_field. line 3 extended without due_at: missing_field. line 4 event_id
//   a number: invalid_field. line 5 `paused` (bool) on an `advanced`: the field is
//   only meaningful on a snapshot, the event is valid. line 6 a string `paused` on
//   a snapshot: invalid_field. line 7 received with unit missing from the directory:
//   accepted (unrouted). line 8 snapshot with due_at before its received_at
//   (default at): due_before_received. line 9 extended with due_at before the
//   record's receipt: due_before_received (README).
#[test]
fn validation_reasons() {
    let events = nd(&[
        r#"{"event_id": "v1", "record_id": "V", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "9.999999", "due_at": "2024-03-06T17:00:00+07:00"}"#,
        r#"{"event_id": "v2", "record_id": "S", "type": "snapshot", "at": "2024-03-04T08:00:00+07:00", "procedure": "1.003003"}"#,
        r#"{"event_id": "v3", "record_id": "V", "type": "extended", "at": "2024-03-04T09:00:00+07:00"}"#,
        r#"{"event_id": 4, "record_id": "V", "type": "advanced", "at": "2024-03-04T09:00:00+07:00"}"#,
        r#"{"event_id": "v5", "record_id": "V", "type": "advanced", "at": "2024-03-04T09:00:00+07:00", "paused": true}"#,
        r#"{"event_id": "v6", "record_id": "S", "type": "snapshot", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003", "paused": "yes"}"#,
        r#"{"event_id": "v7", "record_id": "U", "type": "received", "at": "2024-03-04T09:30:00+07:00", "unit": "NOPE", "procedure": "1.003003"}"#,
        r#"{"event_id": "v8", "record_id": "S", "type": "snapshot", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "due_at": "2024-03-01T17:00:00+07:00"}"#,
        r#"{"event_id": "v9", "record_id": "V", "type": "extended", "at": "2024-03-04T10:00:00+07:00", "due_at": "2024-03-04T07:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    assert_eq!(
        dl_reasons(&out),
        vec![
            (2, "missing_field".to_string()),
            (3, "missing_field".to_string()),
            (4, "invalid_field".to_string()),
            (6, "invalid_field".to_string()),
            (8, "due_before_received".to_string()),
            (9, "due_before_received".to_string()),
        ]
    );
    assert_alerts_spec_order(
        &out.alerts,
        &[a("2024-03-04 09:30", "U", "unrouted", F, "NOPE")],
        "validation",
    );
    assert_report_unknown_level(
        &out.report,
        &expected_report(
            &lt("2024-03-04 09:30"),
            &[("QS", "unknown", Cat::Within), ("NOPE", "HT", Cat::Within)],
        ),
        "validation",
    );
}

// ---------------------------------------------------------------------------
// Snapshots (§2, §4)
// ---------------------------------------------------------------------------

// S1: snapshot of an OPEN record (ambiguous: README "replaces holder, due time,
//   receipt and pause state ... keeps the report attribution").
//   S received Mon 4 08:00 BTM HT -> due Tue 5 17:00: due_soon Tue 07:00, hanging
//   Tue 08:00, overdue Tue 17:00 (ends due_soon).
//   snapshot Wed 6 09:00: unit QS, procedure 1.001009 (KD 3 WD), received_at Mon 4
//   08:00 -> due Thu 7 17:00 (in the future: overdue resolves, like an extension),
//   holder_since Wed 6 08:00. At Wed 09:00: hanging and overdue resolve for BTM.
//   due_soon: 8 h before Thu 17:00 = Thu 07:00 > Wed 09:00 -> armed, fires for QS.
//   hanging from holder_since: Wed 08:00 + 8 h = Thu 08:00 (QS).
//   overdue Thu 17:00 (QS), ending due_soon. --until Thu 7 18:00.
//   Report: still under BTM / HT (the receiving event); original due = the
//   snapshot's (Thu 17:00) -> in_progress_overdue.
#[test]
fn snapshot_of_an_open_record_replaces_due_and_holder() {
    let events = nd(&[
        r#"{"event_id": "s1", "record_id": "S", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "s2", "record_id": "S", "type": "snapshot", "at": "2024-03-06T09:00:00+07:00", "unit": "QS", "procedure": "1.001009", "received_at": "2024-03-04T08:00:00+07:00", "holder_since": "2024-03-06T08:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-07 18:00"));
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "S", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "S", "hanging", F, "BTM"),
            a("2024-03-05 17:00", "S", "overdue", F, "BTM"),
            a("2024-03-05 17:00", "S", "due_soon", R, "BTM"),
            a("2024-03-06 09:00", "S", "hanging", R, "BTM"),
            a("2024-03-06 09:00", "S", "overdue", R, "BTM"),
            a("2024-03-07 07:00", "S", "due_soon", F, "QS"),
            a("2024-03-07 08:00", "S", "hanging", F, "QS"),
            a("2024-03-07 17:00", "S", "overdue", F, "QS"),
            a("2024-03-07 17:00", "S", "due_soon", R, "QS"),
        ],
        "resnapshot",
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-07 18:00"), &[("BTM", "HT", Cat::Overdue)]),
        "resnapshot",
    );
    no_dead_letter(&out, "resnapshot");
}

// S2: a paused snapshot of a new record, then resumed (ambiguous: the snapshot has
//   no pause reason; README: default supplement -> restart policy).
//   P snapshot Tue 5 10:00 QS KD, received_at Mon 4 08:00, paused: counted
//   received under QS, nothing fires. resumed Wed 6 09:00: restart -> 3 WD after
//   Wed 6 = Mon 11 17:00; due_soon Mon 11 07:00; hanging Wed 09:00 + 8 h = Thu 7
//   09:00. Under a default of financial/other (extend) the due time would instead
//   be Thu 7 17:00 + (Tue 10:00 -> Wed 09:00 = 7 h... ) -> a different stream.
#[test]
fn paused_snapshot_without_reason_restarts_on_resume() {
    let events = nd(&[
        r#"{"event_id": "p1", "record_id": "P", "type": "snapshot", "at": "2024-03-05T10:00:00+07:00", "unit": "QS", "procedure": "1.001009", "received_at": "2024-03-04T08:00:00+07:00", "paused": true}"#,
        r#"{"event_id": "p2", "record_id": "P", "type": "resumed", "at": "2024-03-06T09:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-11 18:00"));
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-07 09:00", "P", "hanging", F, "QS"),
            a("2024-03-11 07:00", "P", "due_soon", F, "QS"),
            a("2024-03-11 17:00", "P", "overdue", F, "QS"),
            a("2024-03-11 17:00", "P", "due_soon", R, "QS"),
        ],
        "paused snapshot",
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-11 18:00"), &[("QS", "KD", Cat::Overdue)]),
        "paused snapshot",
    );
}

// ---------------------------------------------------------------------------
// Pauses with forwarded / extended inside (§3.4, §4)
// ---------------------------------------------------------------------------

// P1 (financial -> extend by the paused working time): received Mon 4 08:00 BTM
//   KD -> due Thu 7 17:00; hanging Tue 5 08:00 fires. paused Tue 5 09:00
//   (financial): hanging resolves. extended Tue 5 10:00 to Fri 8 17:00 and
//   forwarded Tue 5 11:00 to NOPE: "raise nothing". resumed Wed 6 09:00: paused
//   working time = Tue 2.5 + 3.5 + Wed 2 = 8 h -> due Fri 8 17:00 + 8 h = Mon 11
//   17:00; original due Thu 7 17:00 + 8 h = Fri 8 17:00. "on resumed, a holder
//   missing from the directory raises unrouted at once". due_soon Mon 11 07:00,
//   hanging Thu 7 09:00, overdue Mon 11 17:00 -- all for NOPE.
// P2 (supplement -> restart): same until the pause; forwarded Tue 5 11:00 to QS,
//   extended Tue 5 10:00 to Fri 8 17:00 (discarded by the restart); resumed
//   Thu 7 09:00 -> 3 WD after Thu 7 = Tue 12 17:00 (also the original due).
//   hanging Fri 8 09:00 (QS).
// --until Mon 11 18:00: P1 past its original due (Fri 8 17:00): overdue; P2 within.
#[test]
fn forwarded_and_extended_while_paused_then_resumed() {
    let events = nd(&[
        r#"{"event_id": "e1", "record_id": "P1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "e1", "record_id": "P2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "e2", "record_id": "P1", "type": "paused", "at": "2024-03-05T09:00:00+07:00", "reason": "financial"}"#,
        r#"{"event_id": "e2", "record_id": "P2", "type": "paused", "at": "2024-03-05T09:00:00+07:00", "reason": "supplement"}"#,
        r#"{"event_id": "e3", "record_id": "P1", "type": "extended", "at": "2024-03-05T10:00:00+07:00", "due_at": "2024-03-08T17:00:00+07:00"}"#,
        r#"{"event_id": "e3", "record_id": "P2", "type": "extended", "at": "2024-03-05T10:00:00+07:00", "due_at": "2024-03-08T17:00:00+07:00"}"#,
        r#"{"event_id": "e4", "record_id": "P1", "type": "forwarded", "at": "2024-03-05T11:00:00+07:00", "unit": "NOPE"}"#,
        r#"{"event_id": "e4", "record_id": "P2", "type": "forwarded", "at": "2024-03-05T11:00:00+07:00", "unit": "QS"}"#,
        r#"{"event_id": "e5", "record_id": "P1", "type": "resumed", "at": "2024-03-06T09:00:00+07:00"}"#,
        r#"{"event_id": "e5", "record_id": "P2", "type": "resumed", "at": "2024-03-07T09:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-11 18:00"));
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 08:00", "P1", "hanging", F, "BTM"),
            a("2024-03-05 08:00", "P2", "hanging", F, "BTM"),
            a("2024-03-05 09:00", "P1", "hanging", R, "BTM"),
            a("2024-03-05 09:00", "P2", "hanging", R, "BTM"),
            a("2024-03-06 09:00", "P1", "unrouted", F, "NOPE"),
            a("2024-03-07 09:00", "P1", "hanging", F, "NOPE"),
            a("2024-03-08 09:00", "P2", "hanging", F, "QS"),
            a("2024-03-11 07:00", "P1", "due_soon", F, "NOPE"),
            a("2024-03-11 17:00", "P1", "overdue", F, "NOPE"),
            a("2024-03-11 17:00", "P1", "due_soon", R, "NOPE"),
        ],
        "paused forwards/extensions",
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-11 18:00"),
            &[("BTM", "KD", Cat::Overdue), ("BTM", "KD", Cat::Within)],
        ),
        "paused forwards/extensions",
    );
    no_dead_letter(&out, "paused forwards/extensions");
}

// ---------------------------------------------------------------------------
// extended and due_soon / overdue (§4)
// ---------------------------------------------------------------------------

// X1: E received Mon 4 08:00 BTM HT -> due Tue 5 17:00: due_soon Tue 07:00,
//   hanging Tue 08:00, overdue Tue 17:00 (ends due_soon). extended Wed 6 09:00 to
//   Wed 6 15:00: "moves the due time into the future" -> overdue resolves; the new
//   due_soon instant (8 h before Wed 15:00 = Tue 5 15:00) is not later than the
//   extension's at -> not raised; hanging resolves and restarts (Thu 7 09:00).
//   overdue fires again Wed 15:00. resolved Wed 16:00: overdue resolves; judged
//   against the ORIGINAL due (Tue 5) -> late.
#[test]
fn extension_out_of_overdue_into_the_window_raises_no_due_soon() {
    let events = nd(&[
        r#"{"event_id": "x1", "record_id": "E", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "x2", "record_id": "E", "type": "extended", "at": "2024-03-06T09:00:00+07:00", "due_at": "2024-03-06T15:00:00+07:00"}"#,
        r#"{"event_id": "x3", "record_id": "E", "type": "resolved", "at": "2024-03-06T16:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "E", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "E", "hanging", F, "BTM"),
            a("2024-03-05 17:00", "E", "overdue", F, "BTM"),
            a("2024-03-05 17:00", "E", "due_soon", R, "BTM"),
            a("2024-03-06 09:00", "E", "hanging", R, "BTM"),
            a("2024-03-06 09:00", "E", "overdue", R, "BTM"),
            a("2024-03-06 15:00", "E", "overdue", F, "BTM"),
            a("2024-03-06 16:00", "E", "overdue", R, "BTM"),
        ],
        "extension",
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-06 16:00"), &[("BTM", "HT", Cat::Late)]),
        "extension",
    );
}

// ---------------------------------------------------------------------------
// Resolution order inside one event (low confidence: the spec orders kinds only for
// timers; the examples compare lines of one instant as a set)
// ---------------------------------------------------------------------------

// O1: U received Mon 4 08:00 by NOPE: unrouted at once; hanging Tue 5 08:00.
//   forwarded Wed 6 08:00 to BTM resolves "every alert firing for the old unit";
//   a reference looping over kinds in the spec's order writes unrouted, then hanging.
// Actual: hanging is resolved first ("any later event"), then the others.
#[test]
fn resolutions_of_one_event_in_kind_order() {
    let events = nd(&[
        r#"{"event_id": "u1", "record_id": "U", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "NOPE", "procedure": "1.001009"}"#,
        r#"{"event_id": "u2", "record_id": "U", "type": "forwarded", "at": "2024-03-06T08:00:00+07:00", "unit": "BTM"}"#,
    ]);
    let out = replay(&events, None);
    assert_alerts_exact(
        &out.alerts,
        &[
            a("2024-03-04 08:00", "U", "unrouted", F, "NOPE"),
            a("2024-03-05 08:00", "U", "hanging", F, "NOPE"),
            a("2024-03-06 08:00", "U", "unrouted", R, "NOPE"),
            a("2024-03-06 08:00", "U", "hanging", R, "NOPE"),
        ],
        "resolution order",
    );
}
