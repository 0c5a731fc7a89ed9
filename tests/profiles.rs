//! Calendar profiles, seasons, same-day procedures and configured levels,
//! replayed through the built binary with tests/fixtures/profiles (hand-computed
//! from that file, not from the code).
//!
//! Profiles: TTHC `onestop` 07:30–11:30 / 13:30–17:30 (COB 17:30); SO the
//! default 07:00–11:30 / 13:30–17:00; XA1 `mountain`, winter (Oct–Mar)
//! 07:30–11:30 / 13:00–16:30. Thresholds: hanging 8 h, due_soon 8 h. March
//! 2024: Mon 4, Tue 5 are working days; all times local (+07:00).

mod replay_harness;

use replay_harness::*;
use std::path::{Path, PathBuf};

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/profiles/overdued.toml")
}

fn lt(s: &str) -> String {
    format!("{}:00+07:00", s.replacen(' ', "T", 1))
}

fn a(t: &str, record: &str, kind: &str, state: &str, unit: &str) -> Alert {
    al(&lt(t), record, kind, state, unit)
}

// P1: received Mon 4 08:00 at XA1 (mountain, winter), HT 1 working day → due
//   on the receiving unit's profile: COB of Tue 5 = 16:30 (not 17:00).
//   due_soon set at receipt, on the holder XA1's profile: 8 h before Tue 16:30 =
//   Tue 13:00–16:30 3.5 + 07:30–11:30 4 = 7.5, + 0.5 back from Mon 16:30 →
//   Mon 16:00.
//   forwarded to SO Mon 09:00: hanging re-armed on SO's (default) profile: Mon
//   09:00–11:30 2.5 + 13:30–17:00 3.5 = 6, + 2 h → Tue 09:00 (on XA1's winter
//   hours it would be Tue 09:30).
//   overdue at Tue 16:30, due_soon resolved then. Open at the end → in progress,
//   overdue.
// P2: same-day at TTHC, received Mon 4 14:00 (before the 15:00 cut-off) → due
//   Mon 17:30 (TTHC's COB). due_soon 8 h before = Mon 07:30, not after the
//   receipt → not raised. resolved Mon 17:20 → on time.
// P3: same-day at TTHC, received Mon 4 15:30 (after the cut-off) → due Tue 5
//   17:30. due_soon 8 h before = Tue 07:30. hanging 8 h on onestop from Mon
//   15:30: 2 + Tue 4 = 6, + 2 from 13:30 → Tue 15:30. resolved Tue 17:00: both
//   resolved, on time.
#[test]
fn due_times_use_the_receiving_profile_and_timers_the_holding_one() {
    let events = [
        r#"{"event_id": "p1a", "record_id": "P1", "type": "received", "at": "2024-03-04T08:00:00+07:00", "unit": "XA1", "procedure": "1.003003"}"#,
        r#"{"event_id": "p1b", "record_id": "P1", "type": "forwarded", "at": "2024-03-04T09:00:00+07:00", "unit": "SO"}"#,
        r#"{"event_id": "p2a", "record_id": "P2", "type": "received", "at": "2024-03-04T14:00:00+07:00", "unit": "TTHC", "procedure": "2.000908"}"#,
        r#"{"event_id": "p3a", "record_id": "P3", "type": "received", "at": "2024-03-04T15:30:00+07:00", "unit": "TTHC", "procedure": "2.000908"}"#,
        r#"{"event_id": "p2b", "record_id": "P2", "type": "resolved", "at": "2024-03-04T17:20:00+07:00"}"#,
        r#"{"event_id": "p3b", "record_id": "P3", "type": "resolved", "at": "2024-03-05T17:00:00+07:00"}"#,
    ]
    .join("\n")
        + "\n";
    let dir = unique_dir("profiles");
    std::fs::write(dir.join("events.ndjson"), events).unwrap();
    let out = run_replay(
        &dir,
        &config(),
        Some(&lt("2024-03-05 18:00")),
        &["events.ndjson"],
        None,
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_alerts_spec_order(
        &out.alerts,
        &[
            a("2024-03-04 16:00", "P1", "due_soon", "firing", "SO"),
            a("2024-03-05 07:30", "P3", "due_soon", "firing", "TTHC"),
            a("2024-03-05 09:00", "P1", "hanging", "firing", "SO"),
            a("2024-03-05 15:30", "P3", "hanging", "firing", "TTHC"),
            a("2024-03-05 16:30", "P1", "overdue", "firing", "SO"),
            a("2024-03-05 16:30", "P1", "due_soon", "resolved", "SO"),
            a("2024-03-05 17:00", "P3", "hanging", "resolved", "TTHC"),
            a("2024-03-05 17:00", "P3", "due_soon", "resolved", "TTHC"),
        ],
        "profiles",
    );
    // the configured levels, and nothing else, name the report's groups
    let by_level = out.report["by_level"].as_object().expect("by_level");
    let keys: Vec<&str> = by_level.keys().map(String::as_str).collect();
    assert_eq!(keys, ["agency", "commune"], "{}", out.report);
    assert_eq!(by_level["agency"]["on_time"], 2, "{}", out.report);
    assert_eq!(
        by_level["commune"]["in_progress_overdue"], 1,
        "{}",
        out.report
    );
    assert_eq!(out.report["total"]["received"], 3);
}
