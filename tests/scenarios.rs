//! Hand-computed replay scenarios, checked against docs/spec.md (not against the code).
//!
//! Every scenario replays a small NDJSON stream through the built binary with the
//! example configuration (tests/fixtures/examples/config/overdued.toml):
//! working periods 07:00-11:30 and 13:30-17:00 (8 working hours a day),
//! Asia/Ho_Chi_Minh (+07:00), Monday-Friday, the 2024-2025 holidays and make-up
//! days of its calendar files; hanging_after = 8 h, due_soon_before = 8 h, sector
//! DD hanging override 4 h, unit TRAGIAC hanging override 12 h, supplement_policy
//! = restart. Procedures: 1.004227 DD 10 working days, 1.001009 KD 3 working days,
//! 2.000908 CT 4 working hours, 1.003003 HT 1 working day, 1.005461 XD 15 calendar
//! days, 2.001157 MT 25 working days.
//!
//! Most scenarios live in March 2024, which has no holiday: Mon 4, Tue 5, Wed 6,
//! Thu 7, Fri 8, Mon 11, Tue 12 ... All times in the comments are local (+07:00);
//! "WD" = working day, "h" = working hours. A working day has 4.5 h in the morning
//! (07:00-11:30) and 3.5 h in the afternoon (13:30-17:00).
//!
//! Alert lines are compared in the spec's order (§6: transitions "in the order
//! they happen"; timers fire by fire time, then record_id, then kind; before an
//! event is applied every timer due at or before its `at` fires): the sequence of
//! (instant, record_id) groups must match exactly, and inside one group the lines
//! are a multiset (the spec does not order e.g. "overdue firing" / "due_soon
//! resolved" of one record at one instant). Where the spec fixes the order inside
//! a group too (timer kinds), the test checks it explicitly.

mod replay_harness;

use replay_harness::*;
use serde_json::Value;
use std::path::PathBuf;

const F: &str = "firing";
const R: &str = "resolved";

// "2024-03-05 08:00" (local time, +07:00) -> RFC 3339.
fn lt(s: &str) -> String {
    format!("{}:00+07:00", s.replacen(' ', "T", 1))
}

// An expected alert at local time `t` ("2024-03-05 08:00").
fn a(t: &str, record: &str, kind: &str, state: &str, unit: &str) -> Alert {
    al(&lt(t), record, kind, state, unit)
}

// Joins event lines into an NDJSON text.
fn nd(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

// Writes `files` into a fresh folder and replays `inputs` from there.
fn replay_files(
    files: &[(&str, &str)],
    inputs: &[&str],
    stdin: Option<&str>,
    until: Option<&str>,
) -> RunOut {
    let dir = unique_dir("scenario");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let cfg: PathBuf = example_config();
    let until = until.map(lt);
    let out = run_replay(
        &dir,
        &cfg,
        until.as_deref(),
        inputs,
        stdin.map(str::as_bytes),
    );
    let _ = std::fs::remove_dir_all(&dir);
    out
}

// Replays one events file.
fn replay(events: &str, until: Option<&str>) -> RunOut {
    replay_files(
        &[("events.ndjson", events)],
        &["events.ndjson"],
        None,
        until,
    )
}

fn no_dead_letter(out: &RunOut, ctx: &str) {
    assert_dead_letter(&out.dead_letter, &[], ctx);
}

// ---------------------------------------------------------------------------
// hanging
// ---------------------------------------------------------------------------

// H1: received Mon 4 08:00 at BTM, KD (3 WD) -> due = COB of the 3rd WD after
//   Mon 4 = Thu 7 17:00; due_soon = 8 h before = Thu 7 07:00 (> receipt: raised).
//   hanging (BTM, KD: no override, 8 h) = Mon 08:00-11:30 3.5 + 13:30-17:00 3.5
//   = 7, + 1 h on Tue -> Tue 5 08:00 (fires).
//   advanced Tue 5 10:00 resolves hanging (any later event) and re-arms it:
//   Tue 10:00-11:30 1.5 + 3.5 = 5, + 3 h Wed -> Wed 6 10:00 (fires).
//   advanced Wed 6 11:00 resolves it; re-armed: 0.5 + 3.5 = 4, + 4 h Thu -> Thu 7
//   11:00. due_soon fires Thu 7 07:00. resolved Thu 7 09:00 closes: due_soon
//   resolved (hanging not firing, its timer is dropped). Judged against Thu 7:
//   closed Thu 7 -> on_time.
// H2: received Mon 4 08:00 at QS, KD; advanced Mon 4 15:00 before any alert
//   postpones hanging: Mon 15:00-17:00 2 + Tue 4.5 = 6.5, + 1.5 h from 13:30 ->
//   Tue 5 15:00 (fires, stays firing). due_soon Thu 7 07:00 fires. Open at the
//   end (Thu 7 09:00 < due Thu 7 17:00) -> in_progress_within.
#[test]
fn hanging_fires_is_resolved_by_advanced_and_rearmed() {
    let events = nd(&[
        r#"{"event_id": "h1", "record_id": "H1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "k1", "record_id": "H2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.001009"}"#,
        r#"{"event_id": "k2", "record_id": "H2", "type": "advanced", "at": "2024-03-04T15:00:00+07:00"}"#,
        r#"{"event_id": "h2", "record_id": "H1", "type": "advanced", "at": "2024-03-05T10:00:00+07:00"}"#,
        r#"{"event_id": "h3", "record_id": "H1", "type": "advanced", "at": "2024-03-06T11:00:00+07:00"}"#,
        r#"{"event_id": "h4", "record_id": "H1", "type": "resolved", "at": "2024-03-07T09:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    let ctx = "hanging/advanced";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 08:00", "H1", "hanging", F, "BTM"),
            a("2024-03-05 10:00", "H1", "hanging", R, "BTM"),
            a("2024-03-05 15:00", "H2", "hanging", F, "QS"),
            a("2024-03-06 10:00", "H1", "hanging", F, "BTM"),
            a("2024-03-06 11:00", "H1", "hanging", R, "BTM"),
            a("2024-03-07 07:00", "H1", "due_soon", F, "BTM"),
            a("2024-03-07 07:00", "H2", "due_soon", F, "QS"),
            a("2024-03-07 09:00", "H1", "due_soon", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-07 09:00"),
            &[("BTM", "KD", Cat::OnTime), ("QS", "KD", Cat::Within)],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// Threshold overrides (docs/spec.md §4: per sector and per unit, the unit override wins).
// All received Mon 4 08:00; --until Tue 5 15:00.
// D1 BTM.VPDK, DD 10 WD: sector DD -> 4 h: Mon 08:00-11:30 3.5, + 0.5 from 13:30
//    -> Mon 4 14:00. due Mon 18 17:00, due_soon Mon 18 07:00 (after --until).
// D2 TRAGIAC, DD: unit override 12 h wins over DD's 4 h: Mon 7 h, Tue 07:00-11:30
//    4.5 -> 11.5, + 0.5 from 13:30 -> Tue 5 14:00.
// D3 QS, HT 1 WD: no override, 8 h -> Tue 5 08:00; due Tue 5 17:00, due_soon =
//    8 h before = Tue 5 07:00.
// D4 QS, HT but `sector: "DD"` (the event's sector replaces the catalogue's) ->
//    4 h -> Mon 4 14:00; due_soon Tue 5 07:00 (the override is for hanging only).
// D5 QUEXUAN (commune, no unit override), DD -> 4 h -> Mon 4 14:00.
// Report at Tue 5 15:00: all open and before their due time -> in_progress_within.
#[test]
fn hanging_threshold_sector_and_unit_overrides() {
    let events = nd(&[
        r#"{"event_id": "d1", "record_id": "D1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM.VPDK", "procedure": "1.004227"}"#,
        r#"{"event_id": "d2", "record_id": "D2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "TRAGIAC", "procedure": "1.004227"}"#,
        r#"{"event_id": "d3", "record_id": "D3", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "d4", "record_id": "D4", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003", "sector": "DD"}"#,
        r#"{"event_id": "d5", "record_id": "D5", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QUEXUAN", "procedure": "1.004227"}"#,
    ]);
    let out = replay(&events, Some("2024-03-05 15:00"));
    let ctx = "overrides";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-04 14:00", "D1", "hanging", F, "BTM.VPDK"),
            a("2024-03-04 14:00", "D4", "hanging", F, "QS"),
            a("2024-03-04 14:00", "D5", "hanging", F, "QUEXUAN"),
            a("2024-03-05 07:00", "D3", "due_soon", F, "QS"),
            a("2024-03-05 07:00", "D4", "due_soon", F, "QS"),
            a("2024-03-05 08:00", "D3", "hanging", F, "QS"),
            a("2024-03-05 14:00", "D2", "hanging", F, "TRAGIAC"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-05 15:00"),
            &[
                ("BTM.VPDK", "DD", Cat::Within),
                ("TRAGIAC", "DD", Cat::Within),
                ("QS", "HT", Cat::Within),
                ("QS", "DD", Cat::Within),
                ("QUEXUAN", "DD", Cat::Within),
            ],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// ---------------------------------------------------------------------------
// extended
// ---------------------------------------------------------------------------

// E1: received Mon 4 08:00 BTM KD -> due Thu 7 17:00, due_soon Thu 7 07:00,
//   hanging Tue 5 08:00.
//   Before `extended` Thu 7 09:00: hanging (Tue 5 08:00) and due_soon (Thu 7
//   07:00) fire. `extended` to Mon 11 17:00: hanging resolved (any later event);
//   the new due_soon instant is 8 h before Mon 11 17:00 = Mon 11 07:00, later than
//   now -> the due time moved out of the window: due_soon resolved at Thu 7 09:00
//   and armed again for Mon 11 07:00 (later than the extended's `at`: raised).
//   hanging restarts (extended is in the list): Thu 09:00-11:30 2.5 + 3.5 = 6,
//   + 2 h Fri -> Fri 8 09:00.
//   Then due_soon Mon 11 07:00, overdue Mon 11 17:00 (+ due_soon resolved then).
//   resolved Tue 12 10:00: hanging and overdue resolved. Judged against the
//   ORIGINAL due date Thu 7: closed Tue 12 -> late.
#[test]
fn extended_moves_due_soon_out_of_the_window() {
    let events = nd(&[
        r#"{"event_id": "e1", "record_id": "E1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "e2", "record_id": "E1", "type": "extended", "at": "2024-03-07T09:00:00+07:00", "due_at": "2024-03-11T17:00:00+07:00"}"#,
        r#"{"event_id": "e3", "record_id": "E1", "type": "resolved", "at": "2024-03-12T10:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    let ctx = "extended/due_soon";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 08:00", "E1", "hanging", F, "BTM"),
            a("2024-03-07 07:00", "E1", "due_soon", F, "BTM"),
            a("2024-03-07 09:00", "E1", "hanging", R, "BTM"),
            a("2024-03-07 09:00", "E1", "due_soon", R, "BTM"),
            a("2024-03-08 09:00", "E1", "hanging", F, "BTM"),
            a("2024-03-11 07:00", "E1", "due_soon", F, "BTM"),
            a("2024-03-11 17:00", "E1", "overdue", F, "BTM"),
            a("2024-03-11 17:00", "E1", "due_soon", R, "BTM"),
            a("2024-03-12 10:00", "E1", "hanging", R, "BTM"),
            a("2024-03-12 10:00", "E1", "overdue", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-12 10:00"), &[("BTM", "KD", Cat::Late)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// E2: received Mon 4 08:00 BTM HT 1 WD -> due Tue 5 17:00; due_soon Tue 5 07:00;
//   hanging Tue 5 08:00. overdue fires Tue 5 17:00 and ends due_soon.
//   `extended` Wed 6 08:00 to Fri 8 17:00 (in the future): overdue resolved,
//   hanging resolved; new due_soon Fri 8 07:00 (not reached); hanging restarts ->
//   Wed 08:00 + 8 h = Thu 7 08:00 (fires).
//   resolved Thu 7 10:00 (before the new due time, but after the original one):
//   hanging resolved; the record stays late (docs/spec.md §2 `extended`, §3.5).
#[test]
fn extended_resolves_overdue_and_record_stays_late() {
    let events = nd(&[
        r#"{"event_id": "e1", "record_id": "E2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "e2", "record_id": "E2", "type": "extended", "at": "2024-03-06T08:00:00+07:00", "due_at": "2024-03-08T17:00:00+07:00"}"#,
        r#"{"event_id": "e3", "record_id": "E2", "type": "resolved", "at": "2024-03-07T10:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    let ctx = "extended/overdue";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "E2", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "E2", "hanging", F, "BTM"),
            a("2024-03-05 17:00", "E2", "overdue", F, "BTM"),
            a("2024-03-05 17:00", "E2", "due_soon", R, "BTM"),
            a("2024-03-06 08:00", "E2", "hanging", R, "BTM"),
            a("2024-03-06 08:00", "E2", "overdue", R, "BTM"),
            a("2024-03-07 08:00", "E2", "hanging", F, "BTM"),
            a("2024-03-07 10:00", "E2", "hanging", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-07 10:00"), &[("BTM", "HT", Cat::Late)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// E3: received Mon 4 08:00 BTM HT -> due Tue 5 17:00, due_soon Tue 5 07:00 (fires).
//   `extended` Tue 5 07:30 to Tue 5 17:30 (outside working periods: used as given,
//   §3.3). New due_soon instant: the working time from Tue 07:00 to 17:30 is 8 h,
//   so it is Tue 5 07:00 -- the record is still inside the window: due_soon is
//   NOT resolved (only "an extended moves the due time out of the window" does)
//   and not raised again. hanging (Tue 5 08:00) was not firing; restarted from
//   07:30: 4 + 3.5 = 7.5, + 0.5 -> Wed 6 07:30 (after --until).
//   overdue at the new due time Tue 5 17:30, ending due_soon.
//   Report at Tue 5 18:00: past the ORIGINAL due time Tue 5 17:00 ->
//   in_progress_overdue.
#[test]
fn extended_inside_the_window_keeps_due_soon_firing() {
    let events = nd(&[
        r#"{"event_id": "e1", "record_id": "E3", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "e2", "record_id": "E3", "type": "extended", "at": "2024-03-05T07:30:00+07:00", "due_at": "2024-03-05T17:30:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-05 18:00"));
    let ctx = "extended/inside window";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "E3", "due_soon", F, "BTM"),
            a("2024-03-05 17:30", "E3", "overdue", F, "BTM"),
            a("2024-03-05 17:30", "E3", "due_soon", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-05 18:00"), &[("BTM", "HT", Cat::Overdue)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// ---------------------------------------------------------------------------
// pauses
// ---------------------------------------------------------------------------

// P1: received Mon 4 08:00 BTM HT -> due_soon Tue 5 07:00, hanging Tue 5 08:00,
//   due Tue 5 17:00. paused Tue 5 10:00 (supplement): both firing alerts resolve
//   at the pause's `at`; nothing fires while paused (no overdue at Tue 17:00).
// P2: received Mon 4 08:00 BTM HT with due_at Mon 4 10:00: due_soon instant = 8 h
//   before Mon 10:00 = Fri 1 10:00 (Mon 3 h + Fri afternoon 3.5 h + 1.5 h of the
//   morning), not later than the receipt -> not raised. overdue Mon 4 10:00;
//   hanging Tue 5 08:00. paused Tue 5 09:00 (other): overdue and hanging resolved.
//   forwarded Wed 6 09:00 to QS and extended Thu 7 09:00 (due Thu 7 10:00) while
//   paused: they change holder / due time but raise nothing.
// --until Fri 8 12:00. Report: both open and paused -> `paused`, under BTM (the
// receiving unit).
#[test]
fn paused_resolves_every_alert_and_nothing_fires_while_paused() {
    let events = nd(&[
        r#"{"event_id": "p1", "record_id": "P1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "q1", "record_id": "P2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003", "due_at": "2024-03-04T10:00:00+07:00"}"#,
        r#"{"event_id": "q2", "record_id": "P2", "type": "paused", "at": "2024-03-05T09:00:00+07:00", "reason": "other"}"#,
        r#"{"event_id": "p2", "record_id": "P1", "type": "paused", "at": "2024-03-05T10:00:00+07:00", "reason": "supplement"}"#,
        r#"{"event_id": "q3", "record_id": "P2", "type": "forwarded", "at": "2024-03-06T09:00:00+07:00", "unit": "QS"}"#,
        r#"{"event_id": "q4", "record_id": "P2", "type": "extended", "at": "2024-03-07T09:00:00+07:00", "due_at": "2024-03-07T10:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-08 12:00"));
    let ctx = "paused";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-04 10:00", "P2", "overdue", F, "BTM"),
            a("2024-03-05 07:00", "P1", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "P1", "hanging", F, "BTM"),
            a("2024-03-05 08:00", "P2", "hanging", F, "BTM"),
            a("2024-03-05 09:00", "P2", "overdue", R, "BTM"),
            a("2024-03-05 09:00", "P2", "hanging", R, "BTM"),
            a("2024-03-05 10:00", "P1", "due_soon", R, "BTM"),
            a("2024-03-05 10:00", "P1", "hanging", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-08 12:00"),
            &[("BTM", "HT", Cat::Paused), ("BTM", "HT", Cat::Paused)],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// F1: received Mon 4 08:00 BTM KD -> due Thu 7 17:00; hanging Tue 5 08:00 fires.
//   paused Tue 5 09:00, reason financial: hanging resolved.
//   resumed Wed 6 09:00: reason financial -> extend behaviour even under the
//   restart policy (§3.4). Working time paused: Tue 09:00-11:30 2.5 + 3.5 + Wed
//   07:00-09:00 2 = 8 h. Due = 8 h after Thu 7 17:00 = Fri 8 17:00 (a restart
//   would give Mon 11 17:00). due_soon = Fri 8 07:00 (> resume: raised). hanging
//   restarts: Wed 09:00 + 8 h = Thu 7 09:00. overdue Fri 8 17:00.
//   (`reason` is given on the `resumed` too, so either reading agrees.)
//   Report at Tue 12 00:00: past the due time after the pause adjustment ->
//   in_progress_overdue.
#[test]
fn resumed_after_financial_pause_extends_under_restart_policy() {
    let events = nd(&[
        r#"{"event_id": "f1", "record_id": "F1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "f2", "record_id": "F1", "type": "paused", "at": "2024-03-05T09:00:00+07:00", "reason": "financial"}"#,
        r#"{"event_id": "f3", "record_id": "F1", "type": "resumed", "at": "2024-03-06T09:00:00+07:00", "reason": "financial"}"#,
    ]);
    let out = replay(&events, Some("2024-03-12 00:00"));
    let ctx = "financial";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 08:00", "F1", "hanging", F, "BTM"),
            a("2024-03-05 09:00", "F1", "hanging", R, "BTM"),
            a("2024-03-07 09:00", "F1", "hanging", F, "BTM"),
            a("2024-03-08 07:00", "F1", "due_soon", F, "BTM"),
            a("2024-03-08 17:00", "F1", "overdue", F, "BTM"),
            a("2024-03-08 17:00", "F1", "due_soon", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-12 00:00"), &[("BTM", "KD", Cat::Overdue)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// F3: supplement pause under restart for a record whose due time came from
//   `due_at` (§3.4: the duration is the working time between its receipt and that
//   due_at). received Mon 4 08:00 BTM KD, due_at Wed 6 12:00: Mon 7 h + Tue 8 h +
//   Wed 07:00-11:30 4.5 h (12:00 is in the lunch break) = 19.5 h.
//   paused Mon 4 10:00 (supplement) before any alert (hanging would be Tue 08:00).
//   resumed Thu 7 09:00: due = 19.5 h after Thu 09:00 = Thu 2.5 + 3.5 = 6, Fri 8
//   -> 14, Mon 11 07:00-11:30 -> 18.5, + 1 h from 13:30 -> Mon 11 14:30.
//   due_soon = 8 h before Mon 11 14:30: Mon 13:30-14:30 1 + morning 4.5 = 5.5,
//   + 2.5 back from Fri 17:00 -> Fri 8 14:30 (> resume: raised).
//   hanging: Thu 09:00 + 8 h = Fri 8 09:00.
//   Report at Tue 12 00:00: past Mon 11 14:30 -> in_progress_overdue.
#[test]
fn resumed_supplement_restart_uses_due_at_duration() {
    let events = nd(&[
        r#"{"event_id": "f1", "record_id": "F3", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009", "due_at": "2024-03-06T12:00:00+07:00"}"#,
        r#"{"event_id": "f2", "record_id": "F3", "type": "paused", "at": "2024-03-04T10:00:00+07:00", "reason": "supplement"}"#,
        r#"{"event_id": "f3", "record_id": "F3", "type": "resumed", "at": "2024-03-07T09:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-12 00:00"));
    let ctx = "supplement restart with due_at";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-08 09:00", "F3", "hanging", F, "BTM"),
            a("2024-03-08 14:30", "F3", "due_soon", F, "BTM"),
            a("2024-03-11 14:30", "F3", "overdue", F, "BTM"),
            a("2024-03-11 14:30", "F3", "due_soon", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-12 00:00"), &[("BTM", "KD", Cat::Overdue)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// O1: received Mon 4 08:00 BTM KD with due_at Mon 4 17:30 (outside working time,
//   used as given). due_soon: working time Mon 07:00 -> 17:30 is 8 h, so the
//   instant is Mon 07:00, before the receipt: not raised. hanging Tue 5 08:00.
//   paused Mon 4 17:10 (financial) -- nothing had fired.
//   resumed Tue 5 06:30: working time elapsed while paused = 0 (17:10 -> 06:30 is
//   all outside working periods), so the due time stays Mon 4 17:30, which fell
//   inside the pause: overdue fires right after the resume with the resume's `at`
//   (§4). due_soon (Mon 07:00) is not later than the resume: not raised.
//   hanging restarts: from 06:30 counting starts 07:00, + 8 h -> Tue 5 17:00.
// O2: the same stream with a supplement pause (restart): duration = working time
//   Mon 08:00 -> Mon 17:30 = 3.5 + 3.5 = 7 h; from Tue 06:30 (counting from 07:00)
//   -> 4.5 + 2.5 -> Tue 5 16:00. due_soon = 8 h before Tue 16:00 = Mon 4 16:00,
//   not later than the resume: not raised. overdue Tue 5 16:00; hanging Tue 5
//   17:00.
// --until Tue 5 18:00: both past their (pause-adjusted) due time ->
// in_progress_overdue.
#[test]
fn resumed_after_due_time_inside_the_pause_fires_overdue_at_resume() {
    let events = nd(&[
        r#"{"event_id": "o1", "record_id": "O1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009", "due_at": "2024-03-04T17:30:00+07:00"}"#,
        r#"{"event_id": "v1", "record_id": "O2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009", "due_at": "2024-03-04T17:30:00+07:00"}"#,
        r#"{"event_id": "o2", "record_id": "O1", "type": "paused", "at": "2024-03-04T17:10:00+07:00", "reason": "financial"}"#,
        r#"{"event_id": "v2", "record_id": "O2", "type": "paused", "at": "2024-03-04T17:10:00+07:00", "reason": "supplement"}"#,
        r#"{"event_id": "o3", "record_id": "O1", "type": "resumed", "at": "2024-03-05T06:30:00+07:00", "reason": "financial"}"#,
        r#"{"event_id": "v3", "record_id": "O2", "type": "resumed", "at": "2024-03-05T06:30:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-05 18:00"));
    let ctx = "resume after due";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 06:30", "O1", "overdue", F, "BTM"),
            a("2024-03-05 16:00", "O2", "overdue", F, "BTM"),
            a("2024-03-05 17:00", "O1", "hanging", F, "BTM"),
            a("2024-03-05 17:00", "O2", "hanging", F, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-05 18:00"),
            &[("BTM", "KD", Cat::Overdue), ("BTM", "KD", Cat::Overdue)],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// ---------------------------------------------------------------------------
// forwarding and unrouted
// ---------------------------------------------------------------------------

// W1: received Mon 4 08:00 BTM HT -> due Tue 5 17:00, due_soon Tue 5 07:00,
//   hanging (8 h) Tue 5 08:00; both fire.
//   forwarded Tue 5 10:00 to TRAGIAC: hanging and due_soon resolve for BTM,
//   due_soon fires again for TRAGIAC at 10:00; hanging restarts with TRAGIAC's
//   12 h: Tue 1.5 + 3.5 = 5, Wed 07:00-11:30 -> 9.5, + 2.5 from 13:30 -> Wed 6
//   16:00. overdue Tue 5 17:00 for TRAGIAC, ending due_soon.
// W2: received Mon 4 08:00 BTM.VPDK DD with due_at Tue 5 10:00. hanging (sector
//   DD, 4 h) Mon 4 14:00. due_soon = 8 h before Tue 10:00: Tue 3 h + Mon
//   afternoon 3.5 h + 1.5 h back from 11:30 -> Mon 4 10:00 (> receipt: raised).
//   overdue Tue 5 10:00 (ends due_soon) -- a timer at the same instant as W1's
//   forward, so it fires BEFORE that event is applied (§6).
//   forwarded Tue 5 14:00 to TRAGIAC: hanging and overdue resolve for BTM.VPDK,
//   overdue fires for TRAGIAC; hanging restarts with TRAGIAC's 12 h (the unit
//   override beats DD's 4 h): Tue 14:00-17:00 3, Wed 8 -> 11, + 1 h Thu -> Thu 7
//   08:00.
// --until Thu 7 12:00. Report: counted under the receiving units; both past due.
#[test]
fn forwarded_between_known_units_moves_alerts_to_new_holder() {
    let events = nd(&[
        r#"{"event_id": "w1", "record_id": "W1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "x1", "record_id": "W2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM.VPDK", "procedure": "1.004227", "due_at": "2024-03-05T10:00:00+07:00"}"#,
        r#"{"event_id": "w2", "record_id": "W1", "type": "forwarded", "at": "2024-03-05T10:00:00+07:00", "unit": "TRAGIAC"}"#,
        r#"{"event_id": "x2", "record_id": "W2", "type": "forwarded", "at": "2024-03-05T14:00:00+07:00", "unit": "TRAGIAC"}"#,
    ]);
    let out = replay(&events, Some("2024-03-07 12:00"));
    let ctx = "forwarded known";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-04 10:00", "W2", "due_soon", F, "BTM.VPDK"),
            a("2024-03-04 14:00", "W2", "hanging", F, "BTM.VPDK"),
            a("2024-03-05 07:00", "W1", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "W1", "hanging", F, "BTM"),
            a("2024-03-05 10:00", "W2", "overdue", F, "BTM.VPDK"),
            a("2024-03-05 10:00", "W2", "due_soon", R, "BTM.VPDK"),
            a("2024-03-05 10:00", "W1", "hanging", R, "BTM"),
            a("2024-03-05 10:00", "W1", "due_soon", R, "BTM"),
            a("2024-03-05 10:00", "W1", "due_soon", F, "TRAGIAC"),
            a("2024-03-05 14:00", "W2", "hanging", R, "BTM.VPDK"),
            a("2024-03-05 14:00", "W2", "overdue", R, "BTM.VPDK"),
            a("2024-03-05 14:00", "W2", "overdue", F, "TRAGIAC"),
            a("2024-03-05 17:00", "W1", "overdue", F, "TRAGIAC"),
            a("2024-03-05 17:00", "W1", "due_soon", R, "TRAGIAC"),
            a("2024-03-06 16:00", "W1", "hanging", F, "TRAGIAC"),
            a("2024-03-07 08:00", "W2", "hanging", F, "TRAGIAC"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-07 12:00"),
            &[
                ("BTM", "HT", Cat::Overdue),
                ("BTM.VPDK", "DD", Cat::Overdue),
            ],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// U1: received Mon 4 08:00 QS HT -> due Tue 5 17:00 (due_soon Tue 07:00, hanging
//   Tue 08:00). paused Mon 4 10:00 (other) before any alert. forwarded Mon 4 14:00
//   to XYZ (not in the directory) while paused: raises nothing (§4).
//   resumed Tue 5 09:00: the holder is unknown -> unrouted fires at once (09:00).
//   Extend: working time paused = Mon 10:00-11:30 1.5 + 3.5 + Tue 07:00-09:00 2 =
//   7 h; due = 7 h after Tue 17:00 = Wed 4.5 + 2.5 from 13:30 -> Wed 6 16:00.
//   due_soon = 8 h before Wed 16:00: Wed 2.5 + 4.5 = 7, + 1 back from Tue 17:00
//   -> Tue 5 16:00 (> resume: raised). hanging (XYZ: no override, HT) from Tue
//   09:00: 2.5 + 3.5 = 6, + 2 -> Wed 6 09:00.
// --until Wed 6 12:00: before Wed 16:00 -> in_progress_within (under QS).
#[test]
fn forwarded_to_unknown_unit_while_paused_then_resumed_fires_unrouted() {
    let events = nd(&[
        r#"{"event_id": "u1", "record_id": "U1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "u2", "record_id": "U1", "type": "paused", "at": "2024-03-04T10:00:00+07:00", "reason": "other"}"#,
        r#"{"event_id": "u3", "record_id": "U1", "type": "forwarded", "at": "2024-03-04T14:00:00+07:00", "unit": "XYZ"}"#,
        r#"{"event_id": "u4", "record_id": "U1", "type": "resumed", "at": "2024-03-05T09:00:00+07:00", "reason": "other"}"#,
    ]);
    let out = replay(&events, Some("2024-03-06 12:00"));
    let ctx = "forwarded unknown while paused";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 09:00", "U1", "unrouted", F, "XYZ"),
            a("2024-03-05 16:00", "U1", "due_soon", F, "XYZ"),
            a("2024-03-06 09:00", "U1", "hanging", F, "XYZ"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-06 12:00"), &[("QS", "HT", Cat::Within)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// N1: received Mon 4 08:00 at GHOST (unknown): unrouted fires at once (08:00).
//   HT -> due Tue 5 17:00, due_soon Tue 5 07:00. forwarded Mon 4 15:00 to QUEXUAN
//   (known): unrouted resolved; hanging restarts (QUEXUAN, HT: 8 h): Mon 15:00-
//   17:00 2 + Tue morning 4.5 = 6.5, + 1.5 from 13:30 -> Tue 5 15:00.
//   due_soon fires Tue 5 07:00 for the holder then, QUEXUAN. resolved Tue 5 16:00:
//   due_soon and hanging resolved; closed on the due date -> on_time.
// N2: received Mon 4 08:00 at GHOST2 (unknown): unrouted fires at once; withdrawn
//   Mon 4 09:00 closes it: unrouted resolved; counted `withdrawn`.
// Report at Tue 5 16:00 (last event). Both count under their (unknown) receiving
// units; the spec gives such units no level, so only "by_level sums to total" is
// checked for by_level.
#[test]
fn unrouted_at_receipt_resolved_by_forward_to_known_unit_or_close() {
    let events = nd(&[
        r#"{"event_id": "n1", "record_id": "N1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "GHOST", "procedure": "1.003003"}"#,
        r#"{"event_id": "m1", "record_id": "N2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "GHOST2", "procedure": "1.003003"}"#,
        r#"{"event_id": "m2", "record_id": "N2", "type": "withdrawn", "at": "2024-03-04T09:00:00+07:00"}"#,
        r#"{"event_id": "n2", "record_id": "N1", "type": "forwarded", "at": "2024-03-04T15:00:00+07:00", "unit": "QUEXUAN"}"#,
        r#"{"event_id": "n3", "record_id": "N1", "type": "resolved", "at": "2024-03-05T16:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    let ctx = "unrouted";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-04 08:00", "N1", "unrouted", F, "GHOST"),
            a("2024-03-04 08:00", "N2", "unrouted", F, "GHOST2"),
            a("2024-03-04 09:00", "N2", "unrouted", R, "GHOST2"),
            a("2024-03-04 15:00", "N1", "unrouted", R, "GHOST"),
            a("2024-03-05 07:00", "N1", "due_soon", F, "QUEXUAN"),
            a("2024-03-05 15:00", "N1", "hanging", F, "QUEXUAN"),
            a("2024-03-05 16:00", "N1", "due_soon", R, "QUEXUAN"),
            a("2024-03-05 16:00", "N1", "hanging", R, "QUEXUAN"),
        ],
        ctx,
    );
    assert_report_unknown_level(
        &out.report,
        &expected_report(
            &lt("2024-03-05 16:00"),
            &[
                ("GHOST", "HT", Cat::OnTime),
                ("GHOST2", "HT", Cat::Withdrawn),
            ],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// ---------------------------------------------------------------------------
// snapshot
// ---------------------------------------------------------------------------

// All snapshots at Mon 11 10:00; --until Tue 12 09:00.
// SN1: BTM, KD, received_at Mon 4 08:00 -> due Thu 7 17:00 (passed): overdue
//   fires right after the snapshot with its `at` (Mon 11 10:00); due_soon (Thu 7
//   07:00) is not later than the snapshot's `at`: not raised. holder_since Fri 8
//   09:00: 8 h after = Fri 2.5 + 3.5 = 6, + 2 on Mon -> Mon 11 09:00 <= 10:00 ->
//   hanging fires with the snapshot's `at` too. Both timers fire at one instant
//   for one record: kind order (§6) puts hanging before overdue.
// SN2: QS, HT, received_at Mon 11 08:00 -> due Tue 12 17:00, due_soon Tue 12 07:00
//   (fires); holder_since defaults to `at` -> hanging Mon 10:00 + 8 h = Tue 12
//   10:00 (after --until).
// SN3: TRAGIAC, HT, received_at Fri 8 08:00 (due Mon 11 17:00), paused: true ->
//   nothing fires; counted `paused`.
// Report at Tue 12 09:00: SN1 in_progress_overdue, SN2 in_progress_within, SN3
// paused; each counted as received under the snapshot's unit.
#[test]
fn snapshot_of_old_record_fires_overdue_and_hanging_at_its_at() {
    let events = nd(&[
        r#"{"event_id": "s1", "record_id": "SN1", "type": "snapshot", "at": "2024-03-11T10:00:00+07:00", "unit": "BTM", "procedure": "1.001009", "received_at": "2024-03-04T08:00:00+07:00", "holder_since": "2024-03-08T09:00:00+07:00"}"#,
        r#"{"event_id": "s2", "record_id": "SN2", "type": "snapshot", "at": "2024-03-11T10:00:00+07:00", "unit": "QS", "procedure": "1.003003", "received_at": "2024-03-11T08:00:00+07:00"}"#,
        r#"{"event_id": "s3", "record_id": "SN3", "type": "snapshot", "at": "2024-03-11T10:00:00+07:00", "unit": "TRAGIAC", "procedure": "1.003003", "received_at": "2024-03-08T08:00:00+07:00", "paused": true}"#,
    ]);
    let out = replay(&events, Some("2024-03-12 09:00"));
    let ctx = "snapshot";
    let expected = [
        a("2024-03-11 10:00", "SN1", "hanging", F, "BTM"),
        a("2024-03-11 10:00", "SN1", "overdue", F, "BTM"),
        a("2024-03-12 07:00", "SN2", "due_soon", F, "QS"),
    ];
    assert_alerts_spec_order(&out.alerts, &expected, ctx);
    // Same instant, same record: timers fire in kind order (hanging < overdue).
    assert_alerts_exact(&out.alerts, &expected, ctx);
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-12 09:00"),
            &[
                ("BTM", "KD", Cat::Overdue),
                ("QS", "HT", Cat::Within),
                ("TRAGIAC", "HT", Cat::Paused),
            ],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// ---------------------------------------------------------------------------
// closing events
// ---------------------------------------------------------------------------

// C1: received Mon 4 08:00 BTM HT -> due_soon Tue 5 07:00, hanging Tue 5 08:00
//   (both fire). rejected Tue 5 09:00 closes it: both resolved; counted
//   `rejected`, not judged. advanced Wed 6 09:00 afterwards: closed_record,
//   ignored (not dead-lettered, no effect).
// C2: received Mon 4 08:00 QS HT, due_at Mon 4 10:00 (due_soon instant Fri 1 10:00
//   is before the receipt: not raised): overdue Mon 4 10:00. withdrawn Mon 4 11:00:
//   overdue resolved; counted `withdrawn`. resumed Wed 6 10:00 afterwards: ignored.
// Event ids c1, c2, c3 are used once per record: a duplicate is "a second event
// with the same id for the same record" (§2), so none of these is a duplicate.
// --until Fri 8 12:00.
#[test]
fn rejected_and_withdrawn_close_records_without_judging() {
    let events = nd(&[
        r#"{"event_id": "c1", "record_id": "C1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "c1", "record_id": "C2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003", "due_at": "2024-03-04T10:00:00+07:00"}"#,
        r#"{"event_id": "c2", "record_id": "C2", "type": "withdrawn", "at": "2024-03-04T11:00:00+07:00"}"#,
        r#"{"event_id": "c2", "record_id": "C1", "type": "rejected", "at": "2024-03-05T09:00:00+07:00"}"#,
        r#"{"event_id": "c3", "record_id": "C1", "type": "advanced", "at": "2024-03-06T09:00:00+07:00"}"#,
        r#"{"event_id": "c3", "record_id": "C2", "type": "resumed", "at": "2024-03-06T10:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-08 12:00"));
    let ctx = "rejected/withdrawn";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-04 10:00", "C2", "overdue", F, "QS"),
            a("2024-03-04 11:00", "C2", "overdue", R, "QS"),
            a("2024-03-05 07:00", "C1", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "C1", "hanging", F, "BTM"),
            a("2024-03-05 09:00", "C1", "due_soon", R, "BTM"),
            a("2024-03-05 09:00", "C1", "hanging", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-08 12:00"),
            &[("BTM", "HT", Cat::Rejected), ("QS", "HT", Cat::Withdrawn)],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// T1: received Mon 4 08:00 BTM KD (due Thu 7 17:00); resolved Mon 4 15:00 before
//   any alert (hanging would be Tue 5 08:00) -> early. returned Tue 5 10:00: the
//   record is closed -> ignored (closed_record), no effect, not dead-lettered.
// T2: received Mon 4 08:00 QS HT -> due_soon Tue 5 07:00, hanging Tue 5 08:00,
//   overdue Tue 5 17:00 (ends due_soon). returned Wed 6 08:00 while open: closes
//   it (hanging and overdue resolved) and is judged like `resolved`: Wed 6 > Tue 5
//   -> late.
// Report at the last event, Wed 6 08:00.
#[test]
fn returned_closes_open_record_and_is_ignored_after_resolved() {
    let events = nd(&[
        r#"{"event_id": "t1", "record_id": "T1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "u1", "record_id": "T2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "t2", "record_id": "T1", "type": "resolved", "at": "2024-03-04T15:00:00+07:00"}"#,
        r#"{"event_id": "t3", "record_id": "T1", "type": "returned", "at": "2024-03-05T10:00:00+07:00"}"#,
        r#"{"event_id": "u2", "record_id": "T2", "type": "returned", "at": "2024-03-06T08:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    let ctx = "returned";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "T2", "due_soon", F, "QS"),
            a("2024-03-05 08:00", "T2", "hanging", F, "QS"),
            a("2024-03-05 17:00", "T2", "overdue", F, "QS"),
            a("2024-03-05 17:00", "T2", "due_soon", R, "QS"),
            a("2024-03-06 08:00", "T2", "hanging", R, "QS"),
            a("2024-03-06 08:00", "T2", "overdue", R, "QS"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-06 08:00"),
            &[("BTM", "KD", Cat::Early), ("QS", "HT", Cat::Late)],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// Timeliness compares LOCAL calendar dates (§3.5). Three BTM HT records received
// Mon 4 08:00 (due Tue 5 17:00; due_soon Tue 07:00, hanging Tue 08:00, overdue
// Tue 17:00 ending due_soon):
// L3 resolved Mon 4 23:59 local -> early; no alert had fired.
// L1 resolved 2024-03-05T16:30Z = Tue 5 23:30 local -> same date -> on_time
//    (hanging and overdue resolved at that instant).
// L2 resolved 2024-03-05T17:30Z = Wed 6 00:30 local -> late (in UTC it would
//    still be Mar 5).
#[test]
fn timeliness_uses_local_dates() {
    let events = nd(&[
        r#"{"event_id": "l1", "record_id": "L1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "l2", "record_id": "L2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "l3", "record_id": "L3", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "l4", "record_id": "L3", "type": "resolved", "at": "2024-03-04T23:59:00+07:00"}"#,
        r#"{"event_id": "l5", "record_id": "L1", "type": "resolved", "at": "2024-03-05T16:30:00Z"}"#,
        r#"{"event_id": "l6", "record_id": "L2", "type": "resolved", "at": "2024-03-05T17:30:00+00:00"}"#,
    ]);
    let out = replay(&events, None);
    let ctx = "local dates";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "L1", "due_soon", F, "BTM"),
            a("2024-03-05 07:00", "L2", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "L1", "hanging", F, "BTM"),
            a("2024-03-05 08:00", "L2", "hanging", F, "BTM"),
            a("2024-03-05 17:00", "L1", "overdue", F, "BTM"),
            a("2024-03-05 17:00", "L1", "due_soon", R, "BTM"),
            a("2024-03-05 17:00", "L2", "overdue", F, "BTM"),
            a("2024-03-05 17:00", "L2", "due_soon", R, "BTM"),
            a("2024-03-05 23:30", "L1", "hanging", R, "BTM"),
            a("2024-03-05 23:30", "L1", "overdue", R, "BTM"),
            a("2024-03-06 00:30", "L2", "hanging", R, "BTM"),
            a("2024-03-06 00:30", "L2", "overdue", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-06 00:30"),
            &[
                ("BTM", "HT", Cat::OnTime),
                ("BTM", "HT", Cat::Late),
                ("BTM", "HT", Cat::Early),
            ],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// ---------------------------------------------------------------------------
// due times (§3.2)
// ---------------------------------------------------------------------------

// K4 HCC, MT 25 WD, received Mon 29 Jan 10:00. Working days after 29 Jan: Jan 30,
//    31, Feb 1, 2, 5, 6, 7 (7), [Feb 8-14 Tet: 8, 9, 12, 13, 14 off], 15, 16, 19,
//    20, 21, 22, 23, 26, 27, 28, 29 (18), Mar 1, 4, 5, 6, 7, 8 (24), Mar 11 (25)
//    -> due Mon 11 Mar 17:00; due_soon Mon 11 Mar 07:00; hanging Tue 30 Jan 10:00.
// K1 QS.VPDK, XD 15 calendar days, received Fri 1 Mar 10:00: Mar 1 + 15 = Sat 16
//    -> next working day Mon 18 Mar -> due 17:00; due_soon Mon 18 Mar 07:00;
//    hanging: Fri 1.5 + 3.5 = 5, + 3 on Mon -> Mon 4 Mar 10:00.
// K5 BTM.TCKH, CT 4 working hours, received Mon 4 Mar 10:00: 10:00-11:30 1.5,
//    + 2.5 from 13:30 -> due Mon 4 Mar 16:00; due_soon would be 8 h before, i.e.
//    before the receipt: not raised. hanging Tue 5 Mar 10:00.
//    (K1's hanging timer at Mon 4 10:00 fires before K5's receipt is applied.)
// K6 QS, KD 3 WD, received Sat 9 Mar 10:00 (not a working day): WDs strictly
//    after Sat 9: Mon 11, Tue 12, Wed 13 -> due Wed 13 Mar 17:00, due_soon Wed 13
//    07:00; hanging counts from Mon 11 07:00 -> Mon 11 Mar 17:00 (same instant as
//    K4's overdue: K4 before K6 by record_id).
// K7 QUEXUAN, CT 4 working hours, received Sun 10 Mar 20:00: counting starts at
//    the next working period, Mon 11 07:00 -> due Mon 11 Mar 11:00 (due_soon
//    before the receipt: not raised); hanging Mon 07:00 + 8 h = Mon 11 Mar 17:00
//    (same instant as K4's overdue and K6's hanging: K4, K6, K7).
// K2 HCC, XD, received Mon 15 Apr 10:00: Apr 15 + 15 = Tue 30 Apr (holiday), Wed
//    1 May (holiday) -> Thu 2 May -> due 2 May 17:00, due_soon 2 May 07:00;
//    hanging Tue 16 Apr 10:00.
// K3 STNMT, XD, received Fri 19 Apr 09:00: Apr 19 + 15 = Sat 4 May, a make-up
//    working day -> due Sat 4 May 17:00, due_soon Sat 4 May 07:00; hanging: Fri
//    2.5 + 3.5 = 6, then Mon 22 Apr + 2 -> 09:00.
// Every overdue ends its due_soon. --until Mon 6 May 00:00: all in_progress_overdue.
#[test]
fn due_times_calendar_days_working_days_and_hours() {
    let events = nd(&[
        r#"{"event_id": "k4", "record_id": "K4", "type": "received", "at": "2024-01-29T10:00:00+07:00", "unit": "HCC", "procedure": "2.001157"}"#,
        r#"{"event_id": "k1", "record_id": "K1", "type": "received", "at": "2024-03-01T10:00:00+07:00", "unit": "QS.VPDK", "procedure": "1.005461"}"#,
        r#"{"event_id": "k5", "record_id": "K5", "type": "received", "at": "2024-03-04T10:00:00+07:00", "unit": "BTM.TCKH", "procedure": "2.000908"}"#,
        r#"{"event_id": "k6", "record_id": "K6", "type": "received", "at": "2024-03-09T10:00:00+07:00", "unit": "QS", "procedure": "1.001009"}"#,
        r#"{"event_id": "k7", "record_id": "K7", "type": "received", "at": "2024-03-10T20:00:00+07:00", "unit": "QUEXUAN", "procedure": "2.000908"}"#,
        r#"{"event_id": "k2", "record_id": "K2", "type": "received", "at": "2024-04-15T10:00:00+07:00", "unit": "HCC", "procedure": "1.005461"}"#,
        r#"{"event_id": "k3", "record_id": "K3", "type": "received", "at": "2024-04-19T09:00:00+07:00", "unit": "STNMT", "procedure": "1.005461"}"#,
    ]);
    let out = replay(&events, Some("2024-05-06 00:00"));
    let ctx = "due times";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-01-30 10:00", "K4", "hanging", F, "HCC"),
            a("2024-03-04 10:00", "K1", "hanging", F, "QS.VPDK"),
            a("2024-03-04 16:00", "K5", "overdue", F, "BTM.TCKH"),
            a("2024-03-05 10:00", "K5", "hanging", F, "BTM.TCKH"),
            a("2024-03-11 07:00", "K4", "due_soon", F, "HCC"),
            a("2024-03-11 11:00", "K7", "overdue", F, "QUEXUAN"),
            a("2024-03-11 17:00", "K4", "overdue", F, "HCC"),
            a("2024-03-11 17:00", "K4", "due_soon", R, "HCC"),
            a("2024-03-11 17:00", "K6", "hanging", F, "QS"),
            a("2024-03-11 17:00", "K7", "hanging", F, "QUEXUAN"),
            a("2024-03-13 07:00", "K6", "due_soon", F, "QS"),
            a("2024-03-13 17:00", "K6", "overdue", F, "QS"),
            a("2024-03-13 17:00", "K6", "due_soon", R, "QS"),
            a("2024-03-18 07:00", "K1", "due_soon", F, "QS.VPDK"),
            a("2024-03-18 17:00", "K1", "overdue", F, "QS.VPDK"),
            a("2024-03-18 17:00", "K1", "due_soon", R, "QS.VPDK"),
            a("2024-04-16 10:00", "K2", "hanging", F, "HCC"),
            a("2024-04-22 09:00", "K3", "hanging", F, "STNMT"),
            a("2024-05-02 07:00", "K2", "due_soon", F, "HCC"),
            a("2024-05-02 17:00", "K2", "overdue", F, "HCC"),
            a("2024-05-02 17:00", "K2", "due_soon", R, "HCC"),
            a("2024-05-04 07:00", "K3", "due_soon", F, "STNMT"),
            a("2024-05-04 17:00", "K3", "overdue", F, "STNMT"),
            a("2024-05-04 17:00", "K3", "due_soon", R, "STNMT"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-05-06 00:00"),
            &[
                ("HCC", "MT", Cat::Overdue),
                ("QS.VPDK", "XD", Cat::Overdue),
                ("BTM.TCKH", "CT", Cat::Overdue),
                ("QS", "KD", Cat::Overdue),
                ("QUEXUAN", "CT", Cat::Overdue),
                ("HCC", "XD", Cat::Overdue),
                ("STNMT", "XD", Cat::Overdue),
            ],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// ---------------------------------------------------------------------------
// bad input, duplicates
// ---------------------------------------------------------------------------

// X1: received Mon 4 08:00 BTM HT -> due_soon Tue 5 07:00, hanging Tue 5 08:00,
// due Tue 5 17:00.
// line 2: exact duplicate of line 1 -> ignored (duplicate_event).
// line 3: event_id "x1" again, as an `advanced` Tue 5 09:00 -> ignored: it must
//         NOT resolve the hanging alert.
// line 4: blank (skipped, but it is a line: numbering goes on).
// line 5: `received` with a new event_id for the open X1 -> duplicate_record.
// line 6: `advanced` for an unknown record -> unknown_record.
// line 7: `extended` of X1 with due_at Mon 4 07:00, before its receipt ->
//         due_before_received (and no effect: hanging stays firing).
// line 8: `received` X3 whose due_at precedes its `at` -> due_before_received.
// line 9: `advanced` X3 -> unknown_record (line 8 opened nothing).
// line 10: resolved X1 Tue 5 16:00: due_soon and hanging resolved; on_time.
// line 11: `resolved` for unknown X9 on Fri 8 -> unknown_record; a rejected line
//          never moves the clock, so the report is as of Tue 5 16:00.
#[test]
fn duplicates_unknown_records_and_due_before_received() {
    let lines = [
        r#"{"event_id": "x1", "record_id": "X1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "x1", "record_id": "X1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "x1", "record_id": "X1", "type": "advanced", "at": "2024-03-05T09:00:00+07:00"}"#,
        "",
        r#"{"event_id": "x2", "record_id": "X1", "type": "received", "at": "2024-03-05T09:30:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "n1", "record_id": "NOSUCH", "type": "advanced", "at": "2024-03-05T09:40:00+07:00"}"#,
        r#"{"event_id": "x3", "record_id": "X1", "type": "extended", "at": "2024-03-05T10:00:00+07:00", "due_at": "2024-03-04T07:00:00+07:00"}"#,
        r#"{"event_id": "z1", "record_id": "X3", "type": "received", "at": "2024-03-05T10:30:00+07:00", "unit": "BTM", "procedure": "1.003003", "due_at": "2024-03-05T10:29:00+07:00"}"#,
        r#"{"event_id": "z2", "record_id": "X3", "type": "advanced", "at": "2024-03-05T11:00:00+07:00"}"#,
        r#"{"event_id": "x4", "record_id": "X1", "type": "resolved", "at": "2024-03-05T16:00:00+07:00"}"#,
        r#"{"event_id": "x5", "record_id": "X9", "type": "resolved", "at": "2024-03-08T16:00:00+07:00"}"#,
    ];
    let out = replay(&nd(&lines), None);
    let ctx = "duplicates";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "X1", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "X1", "hanging", F, "BTM"),
            a("2024-03-05 16:00", "X1", "due_soon", R, "BTM"),
            a("2024-03-05 16:00", "X1", "hanging", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-05 16:00"), &[("BTM", "HT", Cat::OnTime)]),
        ctx,
    );
    let f = "events.ndjson";
    assert_dead_letter(
        &out.dead_letter,
        &[
            dl(f, 5, "duplicate_record", lines[4]),
            dl(f, 6, "unknown_record", lines[5]),
            dl(f, 7, "due_before_received", lines[6]),
            dl(f, 8, "due_before_received", lines[7]),
            dl(f, 9, "unknown_record", lines[8]),
            dl(f, 11, "unknown_record", lines[10]),
        ],
        ctx,
    );
}

// ---------------------------------------------------------------------------
// several inputs, stdin, --until
// ---------------------------------------------------------------------------

const MULTI_A: [&str; 3] = [
    r#"{"event_id": "m1", "record_id": "M1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
    "not json at all",
    r#"{"event_id": "m9", "record_id": "M1", "type": "advanced"}"#,
];
const MULTI_B: [&str; 4] = [
    "[1, 2, 3]",
    r#"{"event_id": "m2", "record_id": "M1", "type": "advanced", "at": "2024-03-04T15:00:00+07:00"}"#,
    r#"{"event_id": "m3", "record_id": "M1", "type": "advanced", "at": "2024-03-04T16:00:00"}"#,
    r#"{"event_id": "m4", "record_id": "M1", "type": "resolved", "at": "2024-03-05T16:00:00+07:00"}"#,
];

// a.ndjson then b.ndjson (or stdin for b):
// M1 received Mon 4 08:00 BTM HT (due_soon Tue 5 07:00, due Tue 5 17:00);
// a:2 not JSON -> invalid_json; a:3 no `at` -> missing_field;
// b:1 a JSON array, not an object -> invalid_json;
// b:2 advanced Mon 4 15:00 -> hanging restarts: Mon 2 h + Tue morning 4.5 = 6.5,
//     + 1.5 from 13:30 -> Tue 5 15:00;
// b:3 time without offset -> bad_time;
// b:4 resolved Tue 5 16:00 -> due_soon (07:00) and hanging (15:00) had fired;
//     both resolved; on_time.
fn multi_file_expectations(out: &RunOut, b_name: &str, ctx: &str) {
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "M1", "due_soon", F, "BTM"),
            a("2024-03-05 15:00", "M1", "hanging", F, "BTM"),
            a("2024-03-05 16:00", "M1", "due_soon", R, "BTM"),
            a("2024-03-05 16:00", "M1", "hanging", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-05 16:00"), &[("BTM", "HT", Cat::OnTime)]),
        ctx,
    );
    assert_dead_letter(
        &out.dead_letter,
        &[
            dl("a.ndjson", 2, "invalid_json", MULTI_A[1]),
            dl("a.ndjson", 3, "missing_field", MULTI_A[2]),
            dl(b_name, 1, "invalid_json", MULTI_B[0]),
            dl(b_name, 3, "bad_time", MULTI_B[2]),
        ],
        ctx,
    );
}

#[test]
fn several_input_files_in_order_with_per_file_line_numbers() {
    let out = replay_files(
        &[("a.ndjson", &nd(&MULTI_A)), ("b.ndjson", &nd(&MULTI_B))],
        &["a.ndjson", "b.ndjson"],
        None,
        None,
    );
    multi_file_expectations(&out, "b.ndjson", "two files");
}

#[test]
fn stdin_input_is_named_dash() {
    let out = replay_files(
        &[("a.ndjson", &nd(&MULTI_A))],
        &["a.ndjson", "-"],
        Some(&nd(&MULTI_B)),
        None,
    );
    multi_file_expectations(&out, "-", "file then stdin");
}

// The same files in the other order: b's events for M1 come before M1 is
// received -> unknown_record (b:2, b:4); rejected lines do not move the clock, so
// the clock ends at a:1's Mon 4 08:00; M1 is open and within its time; no alert.
#[test]
fn input_files_are_applied_in_command_line_order() {
    let out = replay_files(
        &[("a.ndjson", &nd(&MULTI_A)), ("b.ndjson", &nd(&MULTI_B))],
        &["b.ndjson", "a.ndjson"],
        None,
        None,
    );
    let ctx = "b then a";
    assert_alerts_spec_order(&out.alerts, &[], ctx);
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-04 08:00"), &[("BTM", "HT", Cat::Within)]),
        ctx,
    );
    assert_dead_letter(
        &out.dead_letter,
        &[
            dl("b.ndjson", 1, "invalid_json", MULTI_B[0]),
            dl("b.ndjson", 2, "unknown_record", MULTI_B[1]),
            dl("b.ndjson", 3, "bad_time", MULTI_B[2]),
            dl("b.ndjson", 4, "unknown_record", MULTI_B[3]),
            dl("a.ndjson", 2, "invalid_json", MULTI_A[1]),
            dl("a.ndjson", 3, "missing_field", MULTI_A[2]),
        ],
        ctx,
    );
}

// Q1: received Mon 4 08:00 BTM KD -> hanging Tue 5 08:00, due_soon Thu 7 07:00,
// overdue Thu 7 17:00 (ends due_soon).
// * no --until: the clock stays at Mon 4 08:00: no alert; in_progress_within.
// * --until Fri 8 00:00: all timers fire; past due -> in_progress_overdue.
// * --until Thu 7 17:00 exactly: "fires what is due" = at or before, so overdue
//   fires; but the report instant is not PAST the due time -> in_progress_within.
// * --until Thu 7 16:59:59: no overdue yet; in_progress_within.
#[test]
fn until_fires_timers_after_the_last_event() {
    let events = nd(&[
        r#"{"event_id": "q1", "record_id": "Q1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
    ]);
    let all = [
        a("2024-03-05 08:00", "Q1", "hanging", F, "BTM"),
        a("2024-03-07 07:00", "Q1", "due_soon", F, "BTM"),
        a("2024-03-07 17:00", "Q1", "overdue", F, "BTM"),
        a("2024-03-07 17:00", "Q1", "due_soon", R, "BTM"),
    ];

    let out = replay(&events, None);
    assert_alerts_spec_order(&out.alerts, &[], "no until");
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-04 08:00"), &[("BTM", "KD", Cat::Within)]),
        "no until",
    );

    let out = replay(&events, Some("2024-03-08 00:00"));
    assert_alerts_spec_order(&out.alerts, &all, "until Fri 8");
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-08 00:00"), &[("BTM", "KD", Cat::Overdue)]),
        "until Fri 8",
    );

    let out = replay(&events, Some("2024-03-07 17:00"));
    assert_alerts_spec_order(&out.alerts, &all, "until = due");
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-07 17:00"), &[("BTM", "KD", Cat::Within)]),
        "until = due",
    );

    let dir = unique_dir("until");
    std::fs::write(dir.join("events.ndjson"), &events).unwrap();
    let out = run_replay(
        &dir,
        &example_config(),
        Some("2024-03-07T16:59:59+07:00"),
        &["events.ndjson"],
        None,
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_alerts_spec_order(&out.alerts, &all[..2], "until 1 s before due");
    assert_report(
        &out.report,
        &expected_report("2024-03-07T16:59:59+07:00", &[("BTM", "KD", Cat::Within)]),
        "until 1 s before due",
    );
}

// ---------------------------------------------------------------------------
// ordering
// ---------------------------------------------------------------------------

// RB then RA (file order), both received Mon 4 09:00 at BTM, KD with due_at Wed 6
// 09:00 (16 working hours later). hanging = 8 h after Mon 09:00: Mon 2.5 + 3.5 =
// 6, + 2 -> Tue 5 09:00. due_soon = 8 h before Wed 09:00: Wed 2 + Tue afternoon
// 3.5 = 5.5, + 2.5 back from 11:30 -> Tue 5 09:00 (> receipt: raised). So four
// timers fire at the same instant; §6 orders them by record_id, then kind:
// RA hanging, RA due_soon, RB hanging, RB due_soon (exactly).
// Then overdue Wed 6 09:00 for both (each ending its due_soon): RA's lines before
// RB's. --until Wed 6 12:00; both past due.
#[test]
fn timers_at_one_instant_fire_by_record_id_then_kind() {
    let events = nd(&[
        r#"{"event_id": "b1", "record_id": "RB", "type": "received", "at": "2024-03-04T09:00:00+07:00", "unit": "BTM", "procedure": "1.001009", "due_at": "2024-03-06T09:00:00+07:00"}"#,
        r#"{"event_id": "a1", "record_id": "RA", "type": "received", "at": "2024-03-04T09:00:00+07:00", "unit": "BTM", "procedure": "1.001009", "due_at": "2024-03-06T09:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-06 12:00"));
    let ctx = "ordering";
    let first = [
        a("2024-03-05 09:00", "RA", "hanging", F, "BTM"),
        a("2024-03-05 09:00", "RA", "due_soon", F, "BTM"),
        a("2024-03-05 09:00", "RB", "hanging", F, "BTM"),
        a("2024-03-05 09:00", "RB", "due_soon", F, "BTM"),
    ];
    let mut all = first.to_vec();
    all.extend([
        a("2024-03-06 09:00", "RA", "overdue", F, "BTM"),
        a("2024-03-06 09:00", "RA", "due_soon", R, "BTM"),
        a("2024-03-06 09:00", "RB", "overdue", F, "BTM"),
        a("2024-03-06 09:00", "RB", "due_soon", R, "BTM"),
    ]);
    assert_alerts_spec_order(&out.alerts, &all, ctx);
    assert!(out.alerts.len() >= 4);
    assert_alerts_exact(&out.alerts[..4], &first, ctx);
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-06 12:00"),
            &[("BTM", "KD", Cat::Overdue), ("BTM", "KD", Cat::Overdue)],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// Sanity check of the harness itself: a wrong expectation must fail.
#[test]
#[should_panic(expected = "alert lines differ")]
fn harness_detects_a_wrong_alert() {
    let got = vec![
        r#"{"at": "2024-03-05T01:00:00Z", "record_id": "R", "kind": "hanging", "state": "firing", "unit": "BTM"}"#
            .to_string(),
    ];
    assert_alerts_spec_order(
        &got,
        &[a("2024-03-05 09:00", "R", "hanging", F, "BTM")],
        "self-test",
    );
}

#[test]
fn harness_accepts_any_offset() {
    let got = vec![
        r#"{"at": "2024-03-05T01:00:00Z", "record_id": "R", "kind": "hanging", "state": "firing", "unit": "BTM"}"#
            .to_string(),
    ];
    assert_alerts_spec_order(
        &got,
        &[a("2024-03-05 08:00", "R", "hanging", F, "BTM")],
        "self-test",
    );
    let v: Value = serde_json::json!({"as_of": "2024-03-05T08:00:00+07:00", "total": 1});
    let w: Value = serde_json::json!({"as_of": "2024-03-05T01:00:00Z", "total": 1});
    assert_report(&v, &w, "self-test");
}

// ---------------------------------------------------------------------------
// more edges
// ---------------------------------------------------------------------------

// G1: received Mon 4 08:00 BTM HT -> due_soon Tue 5 07:00, hanging Tue 5 08:00
//   (both fire). forwarded Tue 5 09:00 to BTM, the unit that already holds it:
//   it does not move the record "to another unit" (§4), so due_soon stays firing
//   for BTM; hanging resolves (any later event) and restarts: Tue 09:00 + 8 h =
//   Wed 6 09:00. overdue Tue 5 17:00 ends due_soon. --until Wed 6 12:00.
#[test]
fn forwarded_to_the_same_unit_only_restarts_hanging() {
    let events = nd(&[
        r#"{"event_id": "g1", "record_id": "G1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "g2", "record_id": "G1", "type": "forwarded", "at": "2024-03-05T09:00:00+07:00", "unit": "BTM"}"#,
    ]);
    let out = replay(&events, Some("2024-03-06 12:00"));
    let ctx = "forward to same unit";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "G1", "due_soon", F, "BTM"),
            a("2024-03-05 08:00", "G1", "hanging", F, "BTM"),
            a("2024-03-05 09:00", "G1", "hanging", R, "BTM"),
            a("2024-03-05 17:00", "G1", "overdue", F, "BTM"),
            a("2024-03-05 17:00", "G1", "due_soon", R, "BTM"),
            a("2024-03-06 09:00", "G1", "hanging", F, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-06 12:00"), &[("BTM", "HT", Cat::Overdue)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// N3: received Mon 4 08:00 at GHOST3 (unknown): unrouted fires for GHOST3.
//   forwarded Mon 4 09:00 to GHOST4 (unknown): the alert firing for the old unit
//   resolves; the new holder is unknown too -> unrouted fires for GHOST4.
//   forwarded Mon 4 10:00 to BTM (known): unrouted resolved for GHOST4.
//   resolved Mon 4 11:00 (HT, due Tue 5 17:00) -> early; hanging never fired.
#[test]
fn forwarded_between_unknown_units_moves_unrouted() {
    let events = nd(&[
        r#"{"event_id": "n1", "record_id": "N3", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "GHOST3", "procedure": "1.003003"}"#,
        r#"{"event_id": "n2", "record_id": "N3", "type": "forwarded", "at": "2024-03-04T09:00:00+07:00", "unit": "GHOST4"}"#,
        r#"{"event_id": "n3", "record_id": "N3", "type": "forwarded", "at": "2024-03-04T10:00:00+07:00", "unit": "BTM"}"#,
        r#"{"event_id": "n4", "record_id": "N3", "type": "resolved", "at": "2024-03-04T11:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    let ctx = "unknown to unknown";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-04 08:00", "N3", "unrouted", F, "GHOST3"),
            a("2024-03-04 09:00", "N3", "unrouted", R, "GHOST3"),
            a("2024-03-04 09:00", "N3", "unrouted", F, "GHOST4"),
            a("2024-03-04 10:00", "N3", "unrouted", R, "GHOST4"),
        ],
        ctx,
    );
    assert_report_unknown_level(
        &out.report,
        &expected_report(&lt("2024-03-04 11:00"), &[("GHOST3", "HT", Cat::Early)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// B1: received Mon 4 09:00 BTM HT with due_at Tue 5 09:00. due_soon = 8 h before
//   Tue 09:00: Tue 07:00-09:00 2 + Mon afternoon 3.5 + Mon 09:00-11:30 2.5 = 8 ->
//   Mon 4 09:00, equal to the receipt: "not later than" -> not raised.
//   hanging = Mon 09:00 + 8 h = Tue 5 09:00 = the due time: both timers fire at
//   one instant, in kind order: hanging, then overdue. --until Tue 5 12:00.
#[test]
fn due_soon_at_the_receipt_instant_is_not_raised() {
    let events = nd(&[
        r#"{"event_id": "b1", "record_id": "B1", "type": "received", "at": "2024-03-04T09:00:00+07:00", "unit": "BTM", "procedure": "1.003003", "due_at": "2024-03-05T09:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-05 12:00"));
    let ctx = "due_soon = receipt";
    assert_alerts_exact(
        &out.alerts,
        &[
            a("2024-03-05 09:00", "B1", "hanging", F, "BTM"),
            a("2024-03-05 09:00", "B1", "overdue", F, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-05 12:00"), &[("BTM", "HT", Cat::Overdue)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// Field validation (§2). V1 received Mon 4 08:00 BTM HT (due_soon Tue 5 07:00,
// due Tue 5 17:00). Every other line but two is rejected with the reason shown:
// line 12, an `advanced` of V1 at Mon 4 09:00 padded with spaces to exactly
// 64 KiB (65536 bytes), is NOT over 64 KiB and is applied: hanging restarts ->
// Mon 09:00 + 8 h = Tue 5 09:00. Line 13, the same padded to 65537 bytes (at Mon
// 09:30), is `too_large` (had it been applied, hanging would be Tue 09:30).
// Last line: resolved Tue 5 10:00 -> due_soon (07:00) and hanging (09:00) had
// fired and resolve; on_time.
#[test]
fn invalid_fields_are_dead_lettered_with_their_reason() {
    let pad = |head: &str, len: usize| -> String {
        let mut s = head.to_string();
        while s.len() < len - 1 {
            s.push(' ');
        }
        s.push('}');
        assert_eq!(s.len(), len);
        s
    };
    let long_id = "e".repeat(129);
    let long_rec = "R".repeat(65);
    let line9 = format!(
        r#"{{"event_id": "{long_id}", "record_id": "V1", "type": "advanced", "at": "2024-03-04T09:00:00+07:00"}}"#
    );
    let line10 = format!(
        r#"{{"event_id": "v10", "record_id": "{long_rec}", "type": "received", "at": "2024-03-04T09:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}}"#
    );
    let line12 = pad(
        r#"{"event_id": "v12", "record_id": "V1", "type": "advanced", "at": "2024-03-04T09:00:00+07:00""#,
        65536,
    );
    let line13 = pad(
        r#"{"event_id": "v13", "record_id": "V1", "type": "advanced", "at": "2024-03-04T09:30:00+07:00""#,
        65537,
    );
    let lines: Vec<String> = vec![
        /* 1 */ r#"{"event_id": "v1", "record_id": "V1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#.into(),
        /* 2 */ r#"{"event_id": "v2", "record_id": "V2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003", "channel": "fax"}"#.into(),
        /* 3 */ r#"{"event_id": "v3", "record_id": "V1", "type": "paused", "at": "2024-03-04T08:10:00+07:00"}"#.into(),
        /* 4 */ r#"{"event_id": "v4", "record_id": "V1", "type": "paused", "at": "2024-03-04T08:20:00+07:00", "reason": "vacation"}"#.into(),
        /* 5 */ r#"{"event_id": "v5", "record_id": "V1", "type": "extended", "at": "2024-03-04T08:30:00+07:00"}"#.into(),
        /* 6 */ r#"{"event_id": "v6", "record_id": "V1", "type": "forwarded", "at": "2024-03-04T08:40:00+07:00"}"#.into(),
        /* 7 */ r#"{"event_id": "v7", "record_id": "V3", "type": "received", "at": "2024-03-04T08:00:00+07:00", "procedure": "1.003003"}"#.into(),
        /* 8 */ r#"{"event_id": "v8", "record_id": "V4", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM"}"#.into(),
        /* 9 */ line9,
        /* 10 */ line10,
        /* 11 */ r#"{"event_id": "v11", "record_id": "V1", "type": "advanced", "at": "yesterday"}"#.into(),
        /* 12 */ line12,
        /* 13 */ line13,
        /* 14 */ "42".into(),
        /* 15 */ r#"{"event_id": "v15", "record_id": "V1", "type": "advanced", "at": "2024-03-04T10:00:00+07:00", "unit": 5}"#.into(),
        /* 16 */ r#"{"event_id": "v16", "record_id": "V1", "type": 7, "at": "2024-03-04T10:00:00+07:00"}"#.into(),
        /* 17 */ r#"{"record_id": "V1", "type": "advanced", "at": "2024-03-04T10:00:00+07:00"}"#.into(),
        /* 18 */ r#"{"event_id": "v18", "record_id": "V5", "type": "snapshot", "at": "2024-03-04T10:00:00+07:00", "unit": "BTM", "procedure": "1.003003", "paused": "yes"}"#.into(),
        /* 19 */ r#"{"event_id": "v19", "record_id": "V1", "type": "resolved", "at": "2024-03-05T10:00:00+07:00"}"#.into(),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = replay(&nd(&refs), None);
    let ctx = "field validation";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 07:00", "V1", "due_soon", F, "BTM"),
            a("2024-03-05 09:00", "V1", "hanging", F, "BTM"),
            a("2024-03-05 10:00", "V1", "due_soon", R, "BTM"),
            a("2024-03-05 10:00", "V1", "hanging", R, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-05 10:00"), &[("BTM", "HT", Cat::OnTime)]),
        ctx,
    );
    let f = "events.ndjson";
    let expected: Vec<Value> = [
        (2, "invalid_field"),
        (3, "missing_field"),
        (4, "invalid_field"),
        (5, "missing_field"),
        (6, "missing_field"),
        (7, "missing_field"),
        (8, "missing_field"),
        (9, "invalid_field"),
        (10, "invalid_field"),
        (11, "bad_time"),
        (13, "too_large"),
        (14, "invalid_json"),
        (15, "invalid_field"),
        (16, "invalid_field"),
        (17, "missing_field"),
        (18, "invalid_field"),
    ]
    .iter()
    .map(|(n, r)| dl(f, *n, r, &lines[*n as usize - 1]))
    .collect();
    assert_dead_letter(&out.dead_letter, &expected, ctx);
}

// J1: received Mon 4 08:00 BTM HT; resolved Mon 4 10:00 -> early (no alert yet).
//   A `received` with a new event_id at Mon 4 11:00 for the now CLOSED record is
//   an event for a closed record: ignored (closed_record), not dead-lettered as
//   duplicate_record (that is for a record "already open"), not counted again.
//   advanced Mon 4 12:00: ignored too. Ignored events are valid events: the clock
//   is the largest `at` seen, Mon 4 12:00.
#[test]
fn received_for_a_closed_record_is_ignored() {
    let events = nd(&[
        r#"{"event_id": "j1", "record_id": "J1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "j2", "record_id": "J1", "type": "resolved", "at": "2024-03-04T10:00:00+07:00"}"#,
        r#"{"event_id": "j3", "record_id": "J1", "type": "received", "at": "2024-03-04T11:00:00+07:00", "unit": "QS", "procedure": "1.003003"}"#,
        r#"{"event_id": "j4", "record_id": "J1", "type": "advanced", "at": "2024-03-04T12:00:00+07:00"}"#,
    ]);
    let out = replay(&events, None);
    let ctx = "received for closed record";
    assert_alerts_spec_order(&out.alerts, &[], ctx);
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-04 12:00"), &[("BTM", "HT", Cat::Early)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// `due_at` overrides the catalogue (§2, §3.2): `procedure` is required "unless
// due_at given", and unknown_procedure is only for "not in the catalogue and no
// due_at".
// I1: QS, procedure 9.999999 (not in the catalogue), sector HT, due_at Tue 5
//   10:00 -> accepted. due_soon = 8 h before Tue 10:00: Tue 3 h + Mon afternoon
//   3.5 h + 1.5 h back from 11:30 -> Mon 4 10:00 (> receipt: raised). hanging
//   Tue 5 08:00. overdue Tue 5 10:00 (ends due_soon).
// I2: QS, no procedure, sector KD, due_at Mon 4 16:00 -> accepted. due_soon
//   instant before the receipt: not raised. overdue Mon 4 16:00; hanging Tue 08:00.
// I3: procedure 9.999999 and no due_at -> unknown_procedure.
// --until Tue 5 12:00: both past due.
#[test]
fn due_at_overrides_the_catalogue() {
    let lines = [
        r#"{"event_id": "i1", "record_id": "I1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "9.999999", "sector": "HT", "due_at": "2024-03-05T10:00:00+07:00"}"#,
        r#"{"event_id": "i2", "record_id": "I2", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "sector": "KD", "due_at": "2024-03-04T16:00:00+07:00"}"#,
        r#"{"event_id": "i3", "record_id": "I3", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "9.999999"}"#,
    ];
    let out = replay(&nd(&lines), Some("2024-03-05 12:00"));
    let ctx = "due_at overrides";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-04 10:00", "I1", "due_soon", F, "QS"),
            a("2024-03-04 16:00", "I2", "overdue", F, "QS"),
            a("2024-03-05 08:00", "I1", "hanging", F, "QS"),
            a("2024-03-05 08:00", "I2", "hanging", F, "QS"),
            a("2024-03-05 10:00", "I1", "overdue", F, "QS"),
            a("2024-03-05 10:00", "I1", "due_soon", R, "QS"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-05 12:00"),
            &[("QS", "HT", Cat::Overdue), ("QS", "KD", Cat::Overdue)],
        ),
        ctx,
    );
    assert_dead_letter(
        &out.dead_letter,
        &[dl("events.ndjson", 3, "unknown_procedure", lines[2])],
        ctx,
    );
}

// Y1: received Mon 4 08:00 BTM HT (due Tue 5 17:00). paused Mon 4 09:00 (other);
//   forwarded Mon 4 10:00 to TRAGIAC while paused (raises nothing). resumed Mon 4
//   11:00: working time paused = 2 h -> due = 2 h after Tue 5 17:00 = Wed 6 09:00.
//   due_soon = 8 h before Wed 09:00: Wed 2 + Tue afternoon 3.5 = 5.5, + 2.5 back
//   from 11:30 -> Tue 5 09:00 (> resume: raised). hanging restarts at the resume
//   with the holder's threshold, TRAGIAC 12 h: Mon 0.5 + 3.5 = 4, + Tue 8 = 12 ->
//   Tue 5 17:00. overdue Wed 6 09:00 (ends due_soon). --until Wed 6 12:00.
#[test]
fn forwarded_while_paused_uses_new_holder_threshold_after_resume() {
    let events = nd(&[
        r#"{"event_id": "y1", "record_id": "Y1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        r#"{"event_id": "y2", "record_id": "Y1", "type": "paused", "at": "2024-03-04T09:00:00+07:00", "reason": "other"}"#,
        r#"{"event_id": "y3", "record_id": "Y1", "type": "forwarded", "at": "2024-03-04T10:00:00+07:00", "unit": "TRAGIAC"}"#,
        r#"{"event_id": "y4", "record_id": "Y1", "type": "resumed", "at": "2024-03-04T11:00:00+07:00", "reason": "other"}"#,
    ]);
    let out = replay(&events, Some("2024-03-06 12:00"));
    let ctx = "forward while paused";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 09:00", "Y1", "due_soon", F, "TRAGIAC"),
            a("2024-03-05 17:00", "Y1", "hanging", F, "TRAGIAC"),
            a("2024-03-06 09:00", "Y1", "overdue", F, "TRAGIAC"),
            a("2024-03-06 09:00", "Y1", "due_soon", R, "TRAGIAC"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-06 12:00"), &[("BTM", "HT", Cat::Overdue)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// Z1: received Mon 4 08:00 BTM, CT 4 working hours -> due Mon 4 14:00 (3.5 h to
//   11:30 + 0.5 h). paused Mon 4 09:00 (supplement) before any alert. resumed Mon
//   4 16:00: restart as a new receipt: 4 h from Mon 16:00 = 1 h Mon + 3 h Tue ->
//   Tue 5 10:00. due_soon = 8 h before Tue 10:00 = Mon 4 10:00, not later than the
//   resume: not raised. hanging from Mon 16:00: 1 + 4.5 = 5.5, + 2.5 from 13:30 ->
//   Tue 5 16:00. --until Tue 5 17:00: past due.
#[test]
fn supplement_restart_of_a_working_hours_procedure() {
    let events = nd(&[
        r#"{"event_id": "z1", "record_id": "Z1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "2.000908"}"#,
        r#"{"event_id": "z2", "record_id": "Z1", "type": "paused", "at": "2024-03-04T09:00:00+07:00", "reason": "supplement"}"#,
        r#"{"event_id": "z3", "record_id": "Z1", "type": "resumed", "at": "2024-03-04T16:00:00+07:00"}"#,
    ]);
    let out = replay(&events, Some("2024-03-05 17:00"));
    let ctx = "restart working hours";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-05 10:00", "Z1", "overdue", F, "BTM"),
            a("2024-03-05 16:00", "Z1", "hanging", F, "BTM"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-05 17:00"), &[("BTM", "CT", Cat::Overdue)]),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// The 2025 calendar file, and a year boundary.
// Y25A BTM, KD 3 WD, received Tue 31 Dec 2024 10:00: 1 Jan 2025 is a holiday ->
//   Thu 2 (1), Fri 3 (2), Mon 6 Jan (3) -> due Mon 6 Jan 17:00, due_soon 6 Jan
//   07:00; hanging: Dec 31 1.5 + 3.5 = 5, + 3 on Thu 2 Jan -> 2 Jan 10:00.
// Y25B QS, KD, received Thu 24 Apr 2025 10:00: Fri 25 (1), Sat 26 (make-up day,
//   2), Mon 28 (3) -> due Mon 28 Apr 17:00, due_soon 28 Apr 07:00; hanging Fri
//   25 Apr 10:00.
// Y25C QUEXUAN, HT 1 WD, received Fri 25 Apr 15:00 -> the next working day is the
//   make-up Saturday 26 Apr: due Sat 26 Apr 17:00, due_soon Sat 07:00; hanging:
//   Fri 2 h + Sat morning 4.5 = 6.5, + 1.5 from 13:30 -> Sat 26 Apr 15:00.
// Y25D HCC, DD 10 WD, received Tue 29 Apr 09:00: 30 Apr, 1 and 2 May are
//   holidays -> May 5, 6, 7, 8, 9, 12, 13, 14, 15, 16 -> due Fri 16 May 17:00,
//   due_soon 16 May 07:00; hanging (sector DD, 4 h): 2.5 + 1.5 from 13:30 -> Tue
//   29 Apr 15:00.
// Y25E STNMT, CT 4 working hours, received Fri 29 Aug 16:00: 1 h Fri; 1-2 Sep are
//   holidays; + 3 h on Wed 3 Sep -> due Wed 3 Sep 10:00. due_soon = 8 h before =
//   Fri 29 Aug 10:00, before the receipt: not raised. hanging: 1 + 4.5 = 5.5, +
//   2.5 from 13:30 -> Wed 3 Sep 16:00.
// --until 5 Sep 2025 00:00: all in_progress_overdue.
#[test]
fn calendar_2025_year_boundary_makeup_day_and_holidays() {
    let events = nd(&[
        r#"{"event_id": "a", "record_id": "Y25A", "type": "received", "at": "2024-12-31T10:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "b", "record_id": "Y25B", "type": "received", "at": "2025-04-24T10:00:00+07:00", "unit": "QS", "procedure": "1.001009"}"#,
        r#"{"event_id": "c", "record_id": "Y25C", "type": "received", "at": "2025-04-25T15:00:00+07:00", "unit": "QUEXUAN", "procedure": "1.003003"}"#,
        r#"{"event_id": "d", "record_id": "Y25D", "type": "received", "at": "2025-04-29T09:00:00+07:00", "unit": "HCC", "procedure": "1.004227"}"#,
        r#"{"event_id": "e", "record_id": "Y25E", "type": "received", "at": "2025-08-29T16:00:00+07:00", "unit": "STNMT", "procedure": "2.000908"}"#,
    ]);
    let out = replay(&events, Some("2025-09-05 00:00"));
    let ctx = "calendar 2025";
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2025-01-02 10:00", "Y25A", "hanging", F, "BTM"),
            a("2025-01-06 07:00", "Y25A", "due_soon", F, "BTM"),
            a("2025-01-06 17:00", "Y25A", "overdue", F, "BTM"),
            a("2025-01-06 17:00", "Y25A", "due_soon", R, "BTM"),
            a("2025-04-25 10:00", "Y25B", "hanging", F, "QS"),
            a("2025-04-26 07:00", "Y25C", "due_soon", F, "QUEXUAN"),
            a("2025-04-26 15:00", "Y25C", "hanging", F, "QUEXUAN"),
            a("2025-04-26 17:00", "Y25C", "overdue", F, "QUEXUAN"),
            a("2025-04-26 17:00", "Y25C", "due_soon", R, "QUEXUAN"),
            a("2025-04-28 07:00", "Y25B", "due_soon", F, "QS"),
            a("2025-04-28 17:00", "Y25B", "overdue", F, "QS"),
            a("2025-04-28 17:00", "Y25B", "due_soon", R, "QS"),
            a("2025-04-29 15:00", "Y25D", "hanging", F, "HCC"),
            a("2025-05-16 07:00", "Y25D", "due_soon", F, "HCC"),
            a("2025-05-16 17:00", "Y25D", "overdue", F, "HCC"),
            a("2025-05-16 17:00", "Y25D", "due_soon", R, "HCC"),
            a("2025-09-03 10:00", "Y25E", "overdue", F, "STNMT"),
            a("2025-09-03 16:00", "Y25E", "hanging", F, "STNMT"),
        ],
        ctx,
    );
    assert_report(
        &out.report,
        &expected_report(
            &lt("2025-09-05 00:00"),
            &[
                ("BTM", "KD", Cat::Overdue),
                ("QS", "KD", Cat::Overdue),
                ("QUEXUAN", "HT", Cat::Overdue),
                ("HCC", "DD", Cat::Overdue),
                ("STNMT", "CT", Cat::Overdue),
            ],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// Timeliness is judged against the original due time "after pause adjustments,
// before any extended" (§3.5).
// PA and PB: received Mon 4 08:00 BTM KD (due Thu 7 17:00); hanging Tue 5 08:00
//   fires; paused Tue 5 09:00 (financial) resolves it; resumed Wed 6 09:00: 8 h
//   paused -> due Fri 8 17:00 (the judged due date is now Fri 8), due_soon Fri 8
//   07:00; hanging restarts -> Thu 7 09:00 (fires). extended Fri 8 10:00 to Wed
//   13 17:00: hanging resolved; new due_soon Wed 13 07:00 is later than now -> out
//   of the window: due_soon resolved; hanging restarts -> Fri 1.5 + 3.5 = 5, + 3
//   on Mon -> Mon 11 10:00.
// PA resolved Fri 8 15:00 -> on the pause-adjusted due date: on_time (the
//   pre-pause date Thu 7 would make it late).
// PB resolved Mon 11 09:00 -> after Fri 8: late (the extension does not count).
// Neither has an alert firing when it closes.
#[test]
fn judged_against_pause_adjusted_due_not_extended() {
    let mut lines = Vec::new();
    for r in ["PA", "PB"] {
        lines.push(format!(r#"{{"event_id": "1", "record_id": "{r}", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}}"#));
    }
    for r in ["PA", "PB"] {
        lines.push(format!(r#"{{"event_id": "2", "record_id": "{r}", "type": "paused", "at": "2024-03-05T09:00:00+07:00", "reason": "financial"}}"#));
    }
    for r in ["PA", "PB"] {
        lines.push(format!(r#"{{"event_id": "3", "record_id": "{r}", "type": "resumed", "at": "2024-03-06T09:00:00+07:00", "reason": "financial"}}"#));
    }
    for r in ["PA", "PB"] {
        lines.push(format!(r#"{{"event_id": "4", "record_id": "{r}", "type": "extended", "at": "2024-03-08T10:00:00+07:00", "due_at": "2024-03-13T17:00:00+07:00"}}"#));
    }
    lines.push(r#"{"event_id": "5", "record_id": "PA", "type": "resolved", "at": "2024-03-08T15:00:00+07:00"}"#.to_string());
    lines.push(r#"{"event_id": "5", "record_id": "PB", "type": "resolved", "at": "2024-03-11T09:00:00+07:00"}"#.to_string());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = replay(&nd(&refs), None);
    let ctx = "judged after pause";
    let mut expected = Vec::new();
    for (t, kind, state) in [
        ("2024-03-05 08:00", "hanging", F),
        ("2024-03-05 09:00", "hanging", R),
        ("2024-03-07 09:00", "hanging", F),
        ("2024-03-08 07:00", "due_soon", F),
    ] {
        for r in ["PA", "PB"] {
            expected.push(a(t, r, kind, state, "BTM"));
        }
    }
    for r in ["PA", "PB"] {
        expected.push(a("2024-03-08 10:00", r, "hanging", R, "BTM"));
        expected.push(a("2024-03-08 10:00", r, "due_soon", R, "BTM"));
    }
    assert_alerts_spec_order(&out.alerts, &expected, ctx);
    assert_report(
        &out.report,
        &expected_report(
            &lt("2024-03-11 09:00"),
            &[("BTM", "KD", Cat::OnTime), ("BTM", "KD", Cat::Late)],
        ),
        ctx,
    );
    no_dead_letter(&out, ctx);
}

// A 3 MiB line neither stops the replay nor shifts the line numbers: it is
// dead-lettered as too_large (line 2) and the next line (3) is applied.
// (The spec asks for the raw line "as read"; the implementation keeps at most
// 1 MiB of such a line and flags the copy -- only a prefix is required here.)
// R received Mon 4 08:00 BTM HT, resolved Mon 4 09:00 -> early.
#[test]
fn huge_line_is_dead_lettered_and_numbering_goes_on() {
    let huge = format!(
        r#"{{"event_id": "h", "record_id": "R", "type": "advanced", "at": "2024-03-04T08:30:00+07:00", "x": "{}"}}"#,
        "y".repeat(3 << 20)
    );
    let events = format!(
        "{}\n{}\n{}\n",
        r#"{"event_id": "r1", "record_id": "R", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.003003"}"#,
        huge,
        r#"{"event_id": "r2", "record_id": "R", "type": "resolved", "at": "2024-03-04T09:00:00+07:00"}"#
    );
    let out = replay(&events, None);
    let ctx = "huge line";
    assert_alerts_spec_order(&out.alerts, &[], ctx);
    assert_report(
        &out.report,
        &expected_report(&lt("2024-03-04 09:00"), &[("BTM", "HT", Cat::Early)]),
        ctx,
    );
    assert_eq!(out.dead_letter.len(), 1, "{ctx}");
    let d: Value = serde_json::from_str(&out.dead_letter[0]).unwrap();
    assert_eq!(d["file"], "events.ndjson");
    assert_eq!(d["line"], 2);
    assert_eq!(d["reason"], "too_large");
    let raw = d["raw"].as_str().unwrap();
    assert!(
        raw.len() >= 65_537 && huge.starts_with(raw),
        "{ctx}: raw is not a prefix of the line"
    );
}

// ---------------------------------------------------------------------------
// what the report tells officials
// ---------------------------------------------------------------------------

// L1: received Mon 4 08:00 at BTM, KD (3 WD) → due Thu 7 17:00; forwarded to QS
//   Tue 5 09:00, to TRAGIAC Fri 8 10:00 (after the due time), resolved Fri 8
//   11:00 → late: `late` under BTM (received it), `late_held` under QS (held it
//   when the due time passed), not TRAGIAC.
// E1: received Mon 4 08:00 at BTM, KD → due Thu 7 17:00. extended Wed 6 10:00
//   to Mon 11 17:00 (before the due time it replaces), extended Tue 12 09:00 to
//   Wed 13 17:00 (after Mon 11 17:00): BTM extensions 2, after due 1. resolved
//   Wed 13 10:00: judged against the original Thu 7 → late; held by BTM at Thu 7
//   17:00 → BTM late_held 1.
// S1: received Mon 4 08:00 at QS, KD. Supplement asked (paused) Fri 8 09:00:
//   3 working days after receipt end Thu 7 17:00 → a late request (QS). resumed
//   Mon 11 09:00 (restart), paused again Tue 12 09:00 (supplement, late too):
//   QS late_supplement_requests 2, repeated_pauses 1; resumed Wed 13 09:00;
//   paused a third time Thu 14 09:00 (financial): repeated_pauses stays 1 (a
//   record counts once), not a supplement. Paused at the end.
// Report as of Fri 15 17:00 local = 10:00 UTC.
#[test]
fn the_report_attributes_lateness_to_the_holder_and_counts_pauses_and_extensions() {
    let events = nd(&[
        r#"{"event_id": "l1", "record_id": "L1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "e1", "record_id": "E1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "BTM", "procedure": "1.001009"}"#,
        r#"{"event_id": "s1", "record_id": "S1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "QS", "procedure": "1.001009"}"#,
        r#"{"event_id": "l2", "record_id": "L1", "type": "forwarded", "at": "2024-03-05T09:00:00+07:00", "unit": "QS"}"#,
        r#"{"event_id": "e2", "record_id": "E1", "type": "extended", "at": "2024-03-06T10:00:00+07:00", "due_at": "2024-03-11T17:00:00+07:00"}"#,
        r#"{"event_id": "s2", "record_id": "S1", "type": "paused", "at": "2024-03-08T09:00:00+07:00", "reason": "supplement"}"#,
        r#"{"event_id": "l3", "record_id": "L1", "type": "forwarded", "at": "2024-03-08T10:00:00+07:00", "unit": "TRAGIAC"}"#,
        r#"{"event_id": "l4", "record_id": "L1", "type": "resolved", "at": "2024-03-08T11:00:00+07:00"}"#,
        r#"{"event_id": "s3", "record_id": "S1", "type": "resumed", "at": "2024-03-11T09:00:00+07:00"}"#,
        r#"{"event_id": "e3", "record_id": "E1", "type": "extended", "at": "2024-03-12T09:00:00+07:00", "due_at": "2024-03-13T17:00:00+07:00"}"#,
        r#"{"event_id": "s4", "record_id": "S1", "type": "paused", "at": "2024-03-12T09:00:00+07:00", "reason": "supplement"}"#,
        r#"{"event_id": "e4", "record_id": "E1", "type": "resolved", "at": "2024-03-13T10:00:00+07:00"}"#,
        r#"{"event_id": "s5", "record_id": "S1", "type": "resumed", "at": "2024-03-13T09:00:00+07:00"}"#,
        r#"{"event_id": "s6", "record_id": "S1", "type": "paused", "at": "2024-03-14T09:00:00+07:00", "reason": "financial"}"#,
    ]);
    let out = replay(&events, Some("2024-03-15 17:00"));
    no_dead_letter(&out, "report use");
    let r = &out.report;
    assert_eq!(r["as_of"], "2024-03-15T10:00:00Z", "{r}");
    assert_eq!(r["as_of_local"], "2024-03-15T17:00:00+07:00", "{r}");
    assert_eq!(r["late_threshold_percent"], 5.0);
    let use_of = |unit: &str| -> [u64; 5] {
        let u = &r["by_unit"][unit];
        [
            "late_held",
            "extensions",
            "extensions_after_due",
            "late_supplement_requests",
            "repeated_pauses",
        ]
        .map(|k| u[k].as_u64().unwrap_or_else(|| panic!("{unit}.{k} in {r}")))
    };
    assert_eq!(use_of("BTM"), [1, 2, 1, 0, 0], "{r}");
    assert_eq!(use_of("QS"), [1, 0, 0, 2, 1], "{r}");
    // TRAGIAC closed L1 but received nothing and held nothing late: not listed
    assert!(r["by_unit"].get("TRAGIAC").is_none(), "{r}");
    // BTM received both late records
    assert_eq!(r["by_unit"]["BTM"]["late"], 2);
    assert_eq!(r["by_unit"]["BTM"]["late_rate"], 100.0);
    assert_eq!(r["by_unit"]["BTM"]["on_time_rate"], 0.0);
    assert_eq!(r["by_unit"]["BTM"]["over_threshold"], true);
    assert_eq!(r["by_unit"]["BTM"]["name"], "UBND huyện Bắc Trà My");
    assert_eq!(r["by_unit"]["QS"]["paused"], 1);
    assert_eq!(r["by_unit"]["QS"]["late_rate"], serde_json::Value::Null);
    assert_eq!(r["by_unit"]["QS"]["over_threshold"], false);
    assert_eq!(r["by_level"]["district"]["late_rate"], 100.0);
    assert_eq!(r["total"]["received"], 3);
}
