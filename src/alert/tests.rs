//! Table-style tests of the notifier: time is injected, every outcome asserted.

use super::*;
use crate::config::Config;
use crate::time::parse_rfc3339;

const MINUTE: i64 = 60 * SECOND;

fn cfg() -> Config {
    Config::load(std::path::Path::new("config/overdued.toml")).expect("sample config")
}

fn t(s: &str) -> Instant {
    parse_rfc3339(s).expect("time")
}

fn info(record: &str, kind: AlertKind, unit: &str, at: Instant) -> AlertInfo {
    AlertInfo {
        record_id: record.into(),
        kind,
        unit: unit.into(),
        sector: "DD".into(),
        procedure: "1.004227".into(),
        received_at: at - 86_400 * SECOND,
        due: at + 86_400 * SECOND,
        fired_at: at,
        escalate_at: None,
        forwarder: None,
        partition: None,
    }
}

/// The defaults with immediate mail (no batch times): what these tables test.
fn immediate() -> Settings {
    Settings {
        batch_at: vec![],
        ..Settings::default()
    }
}

fn settings() -> Settings {
    Settings {
        digest_at: None,
        ..immediate()
    }
}

fn summary(o: &Outgoing) -> (String, Kind, Vec<(String, &'static str, Status)>) {
    (
        o.recipient.clone(),
        o.kind,
        o.items
            .iter()
            .map(|i| (i.info.record_id.clone(), i.info.kind.as_str(), i.status))
            .collect(),
    )
}

#[test]
fn five_hundred_overdue_records_make_one_email() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    for i in 0..500 {
        n.fire(
            info(
                &format!("R{i:03}"),
                AlertKind::Overdue,
                "VPDKDD",
                t0 + i * SECOND / 10,
            ),
            &c.engine.directory,
        );
    }
    // nothing before group_wait
    assert!(n
        .advance(t0 + 29 * SECOND, &c.engine.calendar, &c.engine.directory)
        .is_empty());
    let out = n.advance(t0 + 60 * SECOND, &c.engine.calendar, &c.engine.directory);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].recipient, "unit:VPDKDD");
    assert_eq!(out[0].at, t0 + 30 * SECOND);
    assert_eq!(out[0].items.len(), 500);
    assert!(out[0].items.iter().all(|i| i.status == Status::New));
    // nothing new: nothing sent within the repeat interval
    assert!(n
        .advance(
            t0 + 20 * 3600 * SECOND,
            &c.engine.calendar,
            &c.engine.directory
        )
        .is_empty());
    // after repeat_interval: one reminder listing them again
    let out = n.advance(
        t0 + 25 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert_eq!(out.len(), 1);
    assert!(out[0].items.iter().all(|i| i.status == Status::Firing));
}

#[test]
fn group_interval_batches_changes_and_resolutions_are_told_once() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    n.fire(
        info("A", AlertKind::Hanging, "VPDKDD", t0),
        &c.engine.directory,
    );
    let out = n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory);
    assert_eq!(out.len(), 1);
    // B fires 1 min after the first e-mail, A resolves: one e-mail at last + 5 min
    n.fire(
        info("B", AlertKind::Hanging, "VPDKDD", t0 + 90 * SECOND),
        &c.engine.directory,
    );
    n.resolve(AlertKind::Hanging, "A", t0 + 100 * SECOND);
    // C fires and resolves before any e-mail: never told
    n.fire(
        info("C", AlertKind::Hanging, "VPDKDD", t0 + 110 * SECOND),
        &c.engine.directory,
    );
    n.resolve(AlertKind::Hanging, "C", t0 + 120 * SECOND);
    assert!(n
        .advance(t0 + 5 * MINUTE, &c.engine.calendar, &c.engine.directory)
        .is_empty());
    let out = n.advance(t0 + 10 * MINUTE, &c.engine.calendar, &c.engine.directory);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].at, t0 + 30 * SECOND + 5 * MINUTE);
    assert_eq!(
        summary(&out[0]).2,
        vec![
            ("B".to_string(), "hanging", Status::New),
            ("A".to_string(), "hanging", Status::Resolved)
        ]
    );
}

#[test]
fn overdue_inhibits_due_soon_of_the_same_record() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    n.fire(
        info("A", AlertKind::DueSoon, "VPDKDD", t0),
        &c.engine.directory,
    );
    n.fire(
        info("A", AlertKind::Overdue, "VPDKDD", t0 + SECOND),
        &c.engine.directory,
    );
    n.fire(
        info("B", AlertKind::DueSoon, "VPDKDD", t0 + SECOND),
        &c.engine.directory,
    );
    let out = n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory);
    assert_eq!(
        summary(&out[0]).2,
        vec![
            ("A".to_string(), "overdue", Status::New),
            ("B".to_string(), "due_soon", Status::New)
        ]
    );
    // the engine resolves A's due_soon when overdue fires: not news either
    n.resolve(AlertKind::DueSoon, "A", t0 + 2 * MINUTE);
    assert!(n
        .advance(t0 + 20 * MINUTE, &c.engine.calendar, &c.engine.directory)
        .is_empty());
}

#[test]
fn unrouted_goes_to_admin_and_the_forwarder_overdue_escalates_to_parent_head() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut u = info("U", AlertKind::Unrouted, "NOWHERE", t0);
    u.forwarder = Some("VPDKDD".into());
    n.fire(u, &c.engine.directory);
    let mut o = info("O", AlertKind::Overdue, "VPDKDD", t0);
    o.escalate_at = Some(t0 + 3600 * SECOND);
    n.fire(o, &c.engine.directory);
    let out = n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory);
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            (
                "admin".to_string(),
                Kind::Update,
                vec![("U".to_string(), "unrouted", Status::New)]
            ),
            (
                "unit:VPDKDD".to_string(),
                Kind::Update,
                vec![
                    ("O".to_string(), "overdue", Status::New),
                    ("U".to_string(), "unrouted", Status::New)
                ]
            ),
        ]
    );
    let out = n.advance(
        t0 + 2 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert_eq!(
        out.iter().map(summary).collect::<Vec<_>>(),
        vec![(
            "head:STNMT".to_string(),
            Kind::Update,
            vec![("O".to_string(), "overdue", Status::Escalated)]
        )]
    );
    assert_eq!(out[0].at, t0 + 3600 * SECOND + 30 * SECOND);
    // resolution reaches both the unit and the parent head (when resolutions
    // are sent on their own)
    n.reconfigure(
        Settings {
            send_resolved: true,
            ..settings()
        },
        vec![],
    );
    n.resolve(AlertKind::Overdue, "O", t0 + 3 * 3600 * SECOND);
    let out = n.advance(
        t0 + 4 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    let mut who: Vec<_> = out.iter().map(|o| o.recipient.clone()).collect();
    who.sort();
    assert_eq!(who, vec!["head:STNMT", "unit:VPDKDD"]);
}

#[test]
fn an_overdue_resolved_before_its_escalation_is_not_escalated() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut o = info("O", AlertKind::Overdue, "VPDKDD", t0);
    o.escalate_at = Some(t0 + 3600 * SECOND);
    n.fire(o, &c.engine.directory);
    n.resolve(AlertKind::Overdue, "O", t0 + 10 * SECOND);
    let out = n.advance(
        t0 + 5 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn unknown_or_unaddressed_holders_fall_back_to_the_administrator() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    n.fire(
        info("H", AlertKind::Hanging, "NOWHERE", t0),
        &c.engine.directory,
    );
    let out = n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory);
    assert_eq!(out[0].recipient, "admin");
}

#[test]
fn silences_mute_then_release() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let s = NewSilence {
        unit: Some("VPDKDD".into()),
        kind: Some("hanging".into()),
        ends_at: Some("2026-03-02T10:00:00+07:00".into()),
        ..Default::default()
    }
    .validate("s-1".into(), t0)
    .unwrap();
    let mut n = Notifier::new(settings(), vec![]);
    n.state.silences.push(s);
    n.fire(
        info("H", AlertKind::Hanging, "VPDKDD", t0),
        &c.engine.directory,
    );
    n.fire(
        info("O", AlertKind::Overdue, "VPDKDD", t0),
        &c.engine.directory,
    );
    let out = n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory);
    assert_eq!(
        summary(&out[0]).2,
        vec![("O".to_string(), "overdue", Status::New)]
    );
    assert_eq!(n.state.muted, 1);
    // the silence ends at 10:00: the still-firing hanging is told then
    let out = n.advance(
        t0 + 2 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert_eq!(
        summary(&out[0]).2,
        vec![("H".to_string(), "hanging", Status::New)]
    );
    assert_eq!(out[0].at, t("2026-03-02T10:00:00+07:00"));
}

#[test]
fn digest_lists_everything_open_worst_first_on_working_days_only() {
    let c = cfg();
    let mut n = Notifier::new(immediate(), vec![]);
    // Friday evening
    let t0 = t("2026-03-06T18:00:00+07:00");
    let mut a = info("H1", AlertKind::Hanging, "VPDKDD", t0);
    a.fired_at = t0 - 3600 * SECOND;
    n.fire(a, &c.engine.directory);
    let mut o1 = info("O1", AlertKind::Overdue, "VPDKDD", t0);
    o1.due = t0 - 10 * 3600 * SECOND;
    n.fire(o1, &c.engine.directory);
    let mut o2 = info("O2", AlertKind::Overdue, "VPDKDD", t0);
    o2.due = t0 - 50 * 3600 * SECOND;
    n.fire(o2, &c.engine.directory);
    n.fire(
        info("D", AlertKind::DueSoon, "VPDKDD", t0),
        &c.engine.directory,
    );
    let first = n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory);
    assert_eq!(first.len(), 1);
    // the weekend passes without a digest; Monday 07:30 brings one
    let out = n.advance(
        t("2026-03-09T08:00:00+07:00"),
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].kind, Kind::Digest);
    assert_eq!(out[0].at, t("2026-03-09T07:30:00+07:00"));
    let ids: Vec<_> = out[0]
        .items
        .iter()
        .map(|i| i.info.record_id.as_str())
        .collect();
    assert_eq!(ids, vec!["O2", "O1", "D", "H1"]);
}

#[test]
fn a_restart_adopts_firing_alerts_and_tells_only_what_was_not_told() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    let a = info("A", AlertKind::Hanging, "VPDKDD", t0);
    n.fire(a.clone(), &c.engine.directory);
    let out = n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory);
    assert_eq!(out.len(), 1);
    // B fires and is not told yet when the state is saved
    let b = info("B", AlertKind::Hanging, "VPDKDD", t0 + 2 * MINUTE);
    n.fire(b.clone(), &c.engine.directory);
    let saved = serde_json::to_string(&n.state).unwrap();
    assert!(saved.len() < 400, "the saved state stays small: {saved}");
    let state: State = serde_json::from_str(&saved).unwrap();
    // a restart: the engines are rebuilt and their firing alerts adopted
    let mut m = Notifier::with_state(settings(), vec![], state);
    m.adopt(a.clone(), &c.engine.directory);
    m.adopt(b, &c.engine.directory);
    m.fire(a, &c.engine.directory);
    let out = m.advance(t0 + 3600 * SECOND, &c.engine.calendar, &c.engine.directory);
    // A was told before the restart; B, decided-not-yet-told, is told once
    assert_eq!(out.len(), 1);
    assert_eq!(
        summary(&out[0]).2,
        vec![("B".to_string(), "hanging", Status::New)]
    );
}

#[test]
fn silence_validation() {
    let now = t("2026-03-02T09:00:00+07:00");
    let ok = |s: NewSilence| s.validate("x".into(), now);
    assert_eq!(
        ok(NewSilence {
            ends_at: Some("2026-03-03T00:00:00Z".into()),
            ..Default::default()
        }),
        Err(SilenceError::NoMatcher)
    );
    assert_eq!(
        ok(NewSilence {
            kind: Some("late".into()),
            ends_at: Some("2026-03-03T00:00:00Z".into()),
            ..Default::default()
        }),
        Err(SilenceError::BadKind("late".into()))
    );
    assert_eq!(
        ok(NewSilence {
            unit: Some("X".into()),
            ends_at: Some("2026-03-01T00:00:00Z".into()),
            ..Default::default()
        }),
        Err(SilenceError::Empty)
    );
    assert_eq!(
        ok(NewSilence {
            unit: Some("X\r\nBcc: a@b".into()),
            ends_at: Some("2026-03-04T00:00:00Z".into()),
            ..Default::default()
        }),
        Err(SilenceError::BadValue("unit"))
    );
    assert_eq!(
        ok(NewSilence {
            unit: Some("X".into()),
            ..Default::default()
        }),
        Err(SilenceError::BadTime("ends_at"))
    );
}

#[test]
fn resolutions_ride_along_with_the_next_firing_by_default() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    n.fire(
        info("A", AlertKind::Hanging, "VPDKDD", t0),
        &c.engine.directory,
    );
    assert_eq!(
        n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    n.resolve(AlertKind::Hanging, "A", t0 + 2 * MINUTE);
    assert!(n
        .advance(t0 + 3600 * SECOND, &c.engine.calendar, &c.engine.directory)
        .is_empty());
    n.fire(
        info("B", AlertKind::Overdue, "VPDKDD", t0 + 2 * 3600 * SECOND),
        &c.engine.directory,
    );
    let out = n.advance(
        t0 + 3 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert_eq!(
        summary(&out[0]).2,
        vec![
            ("B".to_string(), "overdue", Status::New),
            ("A".to_string(), "hanging", Status::Resolved)
        ]
    );
}

#[test]
fn an_escalation_before_the_saved_clock_is_not_repeated_after_a_restart() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut o = info("O", AlertKind::Overdue, "VPDKDD", t0);
    o.escalate_at = Some(t0 + 3600 * SECOND);
    n.fire(o.clone(), &c.engine.directory);
    let out = n.advance(
        t0 + 2 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert_eq!(out.len(), 2); // the unit, then the parent's head
    let state: State = serde_json::from_str(&serde_json::to_string(&n.state).unwrap()).unwrap();
    let mut m = Notifier::with_state(settings(), vec![], state);
    m.adopt(o, &c.engine.directory);
    assert!(m
        .advance(
            t0 + 5 * 3600 * SECOND,
            &c.engine.calendar,
            &c.engine.directory
        )
        .is_empty());
    // …and its resolution still reaches both
    m.reconfigure(
        Settings {
            send_resolved: true,
            ..settings()
        },
        vec![],
    );
    m.resolve(AlertKind::Overdue, "O", t0 + 6 * 3600 * SECOND);
    let out = m.advance(
        t0 + 7 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    let mut who: Vec<_> = out.iter().map(|o| o.recipient.clone()).collect();
    who.sort();
    assert_eq!(who, vec!["head:STNMT", "unit:VPDKDD"]);
}

#[test]
fn after_days_of_downtime_only_the_latest_missed_digest_is_sent() {
    let c = cfg();
    let mut n = Notifier::new(immediate(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00"); // Monday
    n.fire(
        info("A", AlertKind::Overdue, "VPDKDD", t0),
        &c.engine.directory,
    );
    assert_eq!(
        n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    let state: State = serde_json::from_str(&serde_json::to_string(&n.state).unwrap()).unwrap();
    // the daemon comes back on Thursday at noon: Tue, Wed, Thu digests were missed
    let back = t("2026-03-05T12:00:00+07:00");
    let mut m = Notifier::with_state(immediate(), vec![], state);
    m.schedule_floor = back;
    m.adopt(
        info("A", AlertKind::Overdue, "VPDKDD", t0),
        &c.engine.directory,
    );
    let out = m.advance(back, &c.engine.calendar, &c.engine.directory);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].kind, Kind::Digest);
    assert_eq!(out[0].at, t("2026-03-05T07:30:00+07:00"));
    // in a replay (no floor) every day's digest is decided
    let mut r = Notifier::new(immediate(), vec![]);
    r.fire(
        info("A", AlertKind::Overdue, "VPDKDD", t0),
        &c.engine.directory,
    );
    r.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory);
    let out = r.advance(back, &c.engine.calendar, &c.engine.directory);
    assert_eq!(out.iter().filter(|o| o.kind == Kind::Digest).count(), 3);
}

// ---- review-mail: adversarial probes ----

fn restart(n: &Notifier, s: Settings) -> Notifier {
    let state: State = serde_json::from_str(&serde_json::to_string(&n.state).unwrap()).unwrap();
    Notifier::with_state(s, vec![], state)
}

fn silence_until(record: &str, from: Instant, until: &str) -> Silence {
    NewSilence {
        record: Some(record.into()),
        ends_at: Some(until.into()),
        ..Default::default()
    }
    .validate("s-r".into(), from)
    .unwrap()
}

/// With `digest_at = ""`, an alert due for its reminder while a silence mutes it
/// must not make `advance` loop forever (next_flush was set back to the past
/// reminder instant, and the loop flushed it again and again).
#[test]
fn a_muted_reminder_without_digest_does_not_hang_advance() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let c = cfg();
        let mut n = Notifier::new(settings(), vec![]);
        let t0 = t("2026-03-02T09:00:00+07:00");
        n.fire(
            info("A", AlertKind::Hanging, "VPDKDD", t0),
            &c.engine.directory,
        );
        assert_eq!(
            n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
                .len(),
            1
        );
        n.state.silences.push(silence_until(
            "A",
            t0 + 3600 * SECOND,
            "2026-03-05T09:00:00+07:00",
        ));
        let out = n.advance(
            t0 + 25 * 3600 * SECOND,
            &c.engine.calendar,
            &c.engine.directory,
        );
        let _ = tx.send(out.len());
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(20));
    assert_eq!(got, Ok(0), "advance hung (or sent a muted reminder)");
}

/// A silence ends while an earlier flush of the same group happens within the
/// same `advance` call: what it muted must still be told when it ends.
#[test]
fn a_silence_ending_after_an_earlier_flush_in_the_same_advance_is_released() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut n = Notifier::new(settings(), vec![]);
    n.state
        .silences
        .push(silence_until("H", t0, "2026-03-02T10:00:00+07:00"));
    n.fire(
        info("H", AlertKind::Hanging, "VPDKDD", t0),
        &c.engine.directory,
    );
    assert!(n
        .advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
        .is_empty());
    n.fire(
        info("O", AlertKind::Overdue, "VPDKDD", t0 + 58 * MINUTE),
        &c.engine.directory,
    );
    // one call spanning both the flush at 09:58:30 and the silence's end at 10:00
    let out = n.advance(
        t0 + 3 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    let listed: Vec<_> = out.iter().flat_map(|o| summary(o).2).collect();
    assert_eq!(
        listed,
        vec![
            ("O".to_string(), "overdue", Status::New),
            ("H".to_string(), "hanging", Status::New)
        ],
        "{out:?}"
    );
}

/// With `send_resolved = true`, a resolution waiting for its flush must not be
/// thrown away by a digest that happens in between.
#[test]
fn with_send_resolved_a_digest_does_not_swallow_a_pending_resolution() {
    let c = cfg();
    let s = Settings {
        send_resolved: true,
        ..immediate()
    };
    let mut n = Notifier::new(s, vec![]);
    let t0 = t("2026-03-02T07:00:00+07:00"); // Monday
    n.fire(
        info("A", AlertKind::Hanging, "VPDKDD", t0),
        &c.engine.directory,
    );
    assert_eq!(
        n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    n.resolve(AlertKind::Hanging, "A", t("2026-03-02T07:29:50+07:00"));
    let out = n.advance(
        t("2026-03-02T08:00:00+07:00"),
        &c.engine.calendar,
        &c.engine.directory,
    );
    let listed: Vec<_> = out.iter().flat_map(|o| summary(o).2).collect();
    assert_eq!(
        listed,
        vec![("A".to_string(), "hanging", Status::Resolved)],
        "{out:?}"
    );
}

/// After a restart the daemon adopts the rebuilt partitions' alerts before it
/// advances the notifier (it used to advance first, every round: a flush then
/// dropped the `unsent` keys of alerts not adopted yet, and an escalation due
/// while down counted as sent; see `daemon_sends_an_escalation_that_came_due_
/// while_it_was_down`). What the saved state lists as not yet told is told.
#[test]
fn after_a_restart_what_was_not_told_is_told_once_adopted() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut n = Notifier::new(settings(), vec![]);
    let a = info("A", AlertKind::Hanging, "VPDKDD", t0);
    n.fire(a.clone(), &c.engine.directory);
    n.advance(t0 + 10 * SECOND, &c.engine.calendar, &c.engine.directory); // saved before its flush
    let mut m = restart(&n, settings());
    m.schedule_floor = t0 + MINUTE;
    m.adopt(a, &c.engine.directory);
    let out = m.advance(t0 + 10 * MINUTE, &c.engine.calendar, &c.engine.directory);
    let listed: Vec<_> = out.iter().flat_map(|o| summary(o).2).collect();
    assert_eq!(listed, vec![("A".to_string(), "hanging", Status::New)]);
}

/// An escalation that came due while the daemon was down must be sent once
/// after the restart (docs/spec.md §4: "fires what came due while it was down, once"):
/// adopted before the notifier's clock moves past it.
#[test]
fn an_escalation_due_while_down_is_sent_after_a_restart() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut n = Notifier::new(settings(), vec![]);
    let mut o = info("O", AlertKind::Overdue, "VPDKDD", t0);
    o.escalate_at = Some(t0 + 3600 * SECOND);
    n.fire(o.clone(), &c.engine.directory);
    assert_eq!(
        n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    // down from 09:01 to 11:00; the escalation was due at 10:00
    let restart_at = t0 + 2 * 3600 * SECOND;
    let mut m = restart(&n, settings());
    m.schedule_floor = restart_at;
    m.adopt(o, &c.engine.directory);
    let out = m.advance(
        restart_at + 10 * MINUTE,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert_eq!(
        out.iter().map(summary).collect::<Vec<_>>(),
        vec![(
            "head:STNMT".to_string(),
            Kind::Update,
            vec![("O".to_string(), "overdue", Status::Escalated)]
        )]
    );
}

/// With `digest_at = ""`, an alert told as a reminder just before a restart is
/// not listed again before `repeat_interval` (spec: "The same alert is not
/// e-mailed again before repeat_interval").
#[test]
fn a_reminder_is_not_repeated_early_after_a_restart() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut n = Notifier::new(settings(), vec![]);
    let a = info("A", AlertKind::Hanging, "VPDKDD", t0);
    n.fire(a.clone(), &c.engine.directory);
    assert_eq!(
        n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    // the reminder at t0 + 24 h 30 s
    let out = n.advance(
        t0 + 25 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert_eq!(summary(&out[0]).2[0].2, Status::Firing);
    let mut m = restart(&n, settings());
    m.adopt(a, &c.engine.directory);
    // a new alert for the unit one hour later
    m.fire(
        info("B", AlertKind::Hanging, "VPDKDD", t0 + 26 * 3600 * SECOND),
        &c.engine.directory,
    );
    let out = m.advance(
        t0 + 27 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    let listed: Vec<_> = out.iter().flat_map(|o| summary(o).2).collect();
    assert_eq!(listed, vec![("B".to_string(), "hanging", Status::New)]);
}

/// With `digest_at = ""`, an alert adopted from another owner (or after a
/// restart) still gets its reminder after `repeat_interval`.
#[test]
fn an_adopted_alert_gets_reminders_without_digest() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut n = Notifier::new(settings(), vec![]);
    n.adopt(
        info("A", AlertKind::Hanging, "VPDKDD", t0),
        &c.engine.directory,
    );
    let out = n.advance(
        t0 + 3 * 86_400 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    let listed: Vec<_> = out.iter().flat_map(|o| summary(o).2).collect();
    assert!(
        listed.contains(&("A".to_string(), "hanging", Status::Firing)),
        "{out:?}"
    );
}

/// Turning the digest off by a reload: still-firing alerts get reminders after
/// `repeat_interval` from then on.
#[test]
fn reminders_start_when_a_reload_turns_the_digest_off() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut n = Notifier::new(immediate(), vec![]);
    n.fire(
        info("A", AlertKind::Hanging, "VPDKDD", t0),
        &c.engine.directory,
    );
    assert_eq!(
        n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    n.reconfigure(settings(), vec![]);
    let out = n.advance(
        t0 + 3 * 86_400 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    assert!(!out.is_empty(), "no reminder in three days");
}

/// A daemon down over several working days sends one digest when it comes
/// back, not one per missed day, all at once.
#[test]
fn one_digest_after_a_long_downtime() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00"); // Monday
    let mut n = Notifier::new(immediate(), vec![]);
    let a = info("A", AlertKind::Hanging, "VPDKDD", t0);
    n.fire(a.clone(), &c.engine.directory);
    assert_eq!(
        n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    // down until Friday 09:00
    let back = t("2026-03-06T09:00:00+07:00");
    let mut m = restart(&n, immediate());
    m.schedule_floor = back;
    m.adopt(a, &c.engine.directory);
    let out = m.advance(back, &c.engine.calendar, &c.engine.directory);
    let digests = out.iter().filter(|o| o.kind == Kind::Digest).count();
    assert!(digests <= 1, "{digests} digests at once");
}

/// A configuration silence removed by a reload (SIGHUP): what it muted and is
/// still firing is told at the next flush, as when an API silence is deleted.
#[test]
fn a_config_silence_removed_by_a_reload_releases_what_it_muted() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let s = silence_until("H", t0, "2026-03-09T09:00:00+07:00");
    let mut n = Notifier::new(settings(), vec![s]);
    n.fire(
        info("H", AlertKind::Hanging, "VPDKDD", t0),
        &c.engine.directory,
    );
    assert!(n
        .advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
        .is_empty());
    n.reconfigure(settings(), vec![]);
    let out = n.advance(t0 + 10 * MINUTE, &c.engine.calendar, &c.engine.directory);
    let listed: Vec<_> = out.iter().flat_map(|o| summary(o).2).collect();
    assert_eq!(listed, vec![("H".to_string(), "hanging", Status::New)]);
}

/// With `digest_at = ""`, reminders respect `group_interval` too. After a
/// restart adopted alerts count as told at their fire time, which can be less
/// than `group_interval` apart: the reminders must still come at most one
/// e-mail per `group_interval`.
#[test]
fn reminders_respect_group_interval() {
    let c = cfg();
    let t0 = t("2026-03-02T09:00:00+07:00");
    let a = info("A", AlertKind::Hanging, "VPDKDD", t0);
    let b = info("B", AlertKind::Hanging, "VPDKDD", t0 + 2 * MINUTE);
    let mut n = Notifier::new(settings(), vec![]);
    n.fire(a.clone(), &c.engine.directory);
    assert_eq!(
        n.advance(t0 + MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    n.fire(b.clone(), &c.engine.directory);
    // B is told with the group_interval: at 09:05:30
    assert_eq!(
        n.advance(t0 + 10 * MINUTE, &c.engine.calendar, &c.engine.directory)
            .len(),
        1
    );
    let mut m = restart(&n, settings());
    m.adopt(a, &c.engine.directory);
    m.adopt(b, &c.engine.directory);
    let out = m.advance(
        t0 + 25 * 3600 * SECOND,
        &c.engine.calendar,
        &c.engine.directory,
    );
    let at: Vec<_> = out.iter().map(|o| o.at).collect();
    for w in at.windows(2) {
        assert!(w[1] - w[0] >= 300 * SECOND, "e-mails at {at:?}");
    }
}

/// `repeat_interval = "0s"` (accepted by the configuration) must not make
/// `advance` loop forever.
#[test]
fn a_zero_repeat_interval_does_not_hang_advance() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let c = cfg();
        let s = Settings {
            repeat_interval: 0,
            ..settings()
        };
        let mut n = Notifier::new(s, vec![]);
        let t0 = t("2026-03-02T09:00:00+07:00");
        n.fire(
            info("A", AlertKind::Hanging, "VPDKDD", t0),
            &c.engine.directory,
        );
        let out = n.advance(t0 + 3600 * SECOND, &c.engine.calendar, &c.engine.directory);
        let _ = tx.send(out.len());
    });
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("advance hung");
    assert!(got <= 13, "{got} e-mails in one hour");
}

#[test]
fn hanging_is_held_while_the_source_is_silent_and_told_after_unless_resolved() {
    let c = cfg();
    let (cal, dir) = (&c.engine.calendar, &c.engine.directory);
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    n.hold_hanging(true, t0);
    n.fire(info("H1", AlertKind::Hanging, "VPDKDD", t0), dir);
    n.fire(info("H2", AlertKind::Hanging, "VPDKDD", t0), dir);
    n.fire(info("O1", AlertKind::Overdue, "VPDKDD", t0), dir);
    // held: only the overdue is told
    let out = n.advance(t0 + 10 * MINUTE, cal, dir);
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        [(
            "unit:VPDKDD".to_string(),
            Kind::Update,
            vec![("O1".to_string(), "overdue", Status::New)]
        )]
    );
    // events flow again; one of them resolves H1 before the release's flush
    n.hold_hanging(false, t0 + 20 * MINUTE);
    n.resolve(AlertKind::Hanging, "H1", t0 + 20 * MINUTE + SECOND);
    assert!(!n.hanging_held());
    let out = n.advance(t0 + 40 * MINUTE, cal, dir);
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        [(
            "unit:VPDKDD".to_string(),
            Kind::Update,
            vec![("H2".to_string(), "hanging", Status::New)]
        )]
    );
    assert_eq!(out[0].at, t0 + 20 * MINUTE + n.settings.group_wait);
}

#[test]
fn with_batch_times_mail_waits_for_the_batch_unless_a_due_soon_would_come_too_late() {
    let c = cfg();
    let (cal, dir) = (&c.engine.calendar, &c.engine.directory);
    // digest 07:30, batches 10:00 and 14:30 (local, working days)
    let s = Settings {
        batch_at: vec![10 * 3600, 14 * 3600 + 1800],
        ..Settings::default()
    };
    let mut n = Notifier::new(s, vec![]);
    let t0 = t("2026-03-02T08:00:00+07:00"); // a Monday
    n.advance(t0, cal, dir);
    n.fire(info("O1", AlertKind::Overdue, "VPDKDD", t0), dir);
    n.fire(info("H1", AlertKind::Hanging, "VPDKDD", t0 + MINUTE), dir);
    // nothing before the batch
    assert!(n
        .advance(t("2026-03-02T09:59:00+07:00"), cal, dir)
        .is_empty());
    let out = n.advance(t("2026-03-02T10:00:00+07:00"), cal, dir);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].at, t("2026-03-02T10:00:00+07:00"));
    assert_eq!(out[0].items.len(), 2);
    // a due_soon due before the next batch (14:30) is sent at once
    let mut d = info(
        "D1",
        AlertKind::DueSoon,
        "VPDKDD",
        t("2026-03-02T11:00:00+07:00"),
    );
    d.due = t("2026-03-02T14:00:00+07:00");
    n.fire(d, dir);
    let out = n.advance(t("2026-03-02T11:05:00+07:00"), cal, dir);
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        [(
            "unit:VPDKDD".to_string(),
            Kind::Update,
            vec![("D1".to_string(), "due_soon", Status::New)]
        )]
    );
    assert_eq!(out[0].at, t("2026-03-02T11:00:30+07:00"));
    // one due later than the next batch waits for it
    let mut d = info(
        "D2",
        AlertKind::DueSoon,
        "VPDKDD",
        t("2026-03-02T11:10:00+07:00"),
    );
    d.due = t("2026-03-04T14:00:00+07:00");
    n.fire(d, dir);
    assert!(n
        .advance(t("2026-03-02T14:29:00+07:00"), cal, dir)
        .is_empty());
    let out = n.advance(t("2026-03-02T14:30:00+07:00"), cal, dir);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].items[0].info.record_id, "D2");
    // the next morning's digest lists everything open, once
    let out = n.advance(t("2026-03-03T07:30:00+07:00"), cal, dir);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, Kind::Digest);
    assert_eq!(out[0].items.len(), 4);
    // and the 10:00 batch does not repeat it
    assert!(n
        .advance(t("2026-03-03T10:00:00+07:00"), cal, dir)
        .is_empty());
}

#[test]
fn a_record_due_minutes_after_receipt_is_told_as_due_soon_first() {
    let c = cfg();
    let (cal, dir) = (&c.engine.calendar, &c.engine.directory);
    for s in [Settings::default(), immediate()] {
        let batches = !s.batch_at.is_empty();
        let mut n = Notifier::new(s, vec![]);
        let t0 = t("2026-03-02T09:00:00+07:00");
        n.advance(t0, cal, dir);
        // due_soon fires at receipt: the record is due 6 minutes later
        let mut d = info("R6", AlertKind::DueSoon, "VPDKDD", t0);
        d.due = t0 + 6 * MINUTE;
        n.fire(d.clone(), dir);
        let out = n.advance(t0 + 5 * MINUTE, cal, dir);
        let got: Vec<_> = out.iter().map(summary).collect();
        assert_eq!(
            got,
            [(
                "unit:VPDKDD".to_string(),
                Kind::Update,
                vec![("R6".to_string(), "due_soon", Status::New)]
            )],
            "batches: {batches}"
        );
        assert!(out[0].at < d.due, "told while it is still due soon");
    }
}

#[test]
fn an_alert_that_ends_before_it_is_told_is_named_once_if_it_fired_a_working_hour() {
    let c = cfg();
    let (cal, dir) = (&c.engine.calendar, &c.engine.directory);
    // default: digest 07:30, one batch at 13:30
    let mut n = Notifier::new(Settings::default(), vec![]);
    let t0 = t("2026-03-02T13:40:00+07:00"); // a Monday, after the batch
    n.advance(t0, cal, dir);
    // H1 hangs 2 working hours, H2 only 20 minutes: both end before any send
    n.fire(info("H1", AlertKind::Hanging, "VPDKDD", t0), dir);
    n.fire(info("H2", AlertKind::Hanging, "VPDKDD", t0 + MINUTE), dir);
    n.resolve(AlertKind::Hanging, "H2", t0 + 21 * MINUTE);
    n.resolve(AlertKind::Hanging, "H1", t0 + 120 * MINUTE);
    // nothing fires any more, so no update: the digest names H1 as ended
    assert!(n
        .advance(t("2026-03-03T07:29:00+07:00"), cal, dir)
        .is_empty());
    let out = n.advance(t("2026-03-03T07:30:00+07:00"), cal, dir);
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        [(
            "unit:VPDKDD".to_string(),
            Kind::Digest,
            vec![("H1".to_string(), "hanging", Status::Ended)]
        )]
    );
    assert_eq!(out[0].items[0].resolved_at, Some(t0 + 120 * MINUTE));
    // once: the next digest has nothing to say
    assert!(n
        .advance(t("2026-03-04T08:00:00+07:00"), cal, dir)
        .is_empty());

    // when an update goes anyway, the ended alert rides along with it
    let mut n = Notifier::new(Settings::default(), vec![]);
    let t1 = t("2026-03-02T08:00:00+07:00");
    n.advance(t1, cal, dir);
    n.fire(info("H3", AlertKind::Hanging, "VPDKDD", t1), dir);
    n.resolve(AlertKind::Hanging, "H3", t1 + 90 * MINUTE);
    n.fire(
        info("O1", AlertKind::Overdue, "VPDKDD", t1 + 100 * MINUTE),
        dir,
    );
    let out = n.advance(t("2026-03-02T13:30:00+07:00"), cal, dir);
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        [(
            "unit:VPDKDD".to_string(),
            Kind::Update,
            vec![
                ("O1".to_string(), "overdue", Status::New),
                ("H3".to_string(), "hanging", Status::Ended)
            ]
        )]
    );
    // a silenced alert's end is not told either
    let mut n = Notifier::new(Settings::default(), vec![]);
    n.advance(t1, cal, dir);
    n.state
        .silences
        .push(silence_until("H4", t1, "2026-03-09T00:00:00+07:00"));
    n.fire(info("H4", AlertKind::Hanging, "VPDKDD", t1), dir);
    n.resolve(AlertKind::Hanging, "H4", t1 + 180 * MINUTE);
    assert!(n
        .advance(t("2026-03-03T08:00:00+07:00"), cal, dir)
        .is_empty());
}

#[test]
fn an_acknowledged_record_gets_no_reminder_or_escalation_until_its_next_event() {
    let c = cfg();
    let (cal, dir) = (&c.engine.calendar, &c.engine.directory);
    // immediate mail with digest (07:30): the digest is the daily reminder
    let mut n = Notifier::new(immediate(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00"); // a Monday
    n.advance(t0, cal, dir);
    let mut o = info("O", AlertKind::Overdue, "VPDKDD", t0);
    o.escalate_at = Some(t0 + 3600 * SECOND);
    n.fire(o, dir);
    n.fire(info("D", AlertKind::DueSoon, "VPDKDD", t0), dir);
    assert_eq!(n.advance(t0 + MINUTE, cal, dir).len(), 1);
    // nothing to acknowledge on a record without alerts; "other" needs a text
    assert_eq!(
        n.new_ack("NONE", Reason::WaitingForCitizen, "", "admin", t0),
        Err(AckError::NotAlerting("NONE".into()))
    );
    assert_eq!(
        n.new_ack("O", Reason::Other, "  ", "admin", t0),
        Err(AckError::TextRequired)
    );
    let a = n
        .new_ack(
            "O",
            Reason::WaitingForCitizen,
            "",
            "unit:VPDKDD",
            t0 + 10 * MINUTE,
        )
        .unwrap();
    assert_eq!(a.alerts.len(), 1);
    n.add_ack(a.clone());
    n.add_ack(
        n.new_ack(
            "D",
            Reason::HandledOutsideSystem,
            "",
            "unit:VPDKDD",
            t0 + 10 * MINUTE,
        )
        .unwrap(),
    );
    // the escalation due at 10:00 is not sent
    assert!(n.advance(t0 + 2 * 3600 * SECOND, cal, dir).is_empty());
    // the next digest lists both apart, acknowledged; nothing asks for action,
    // so no digest at all
    assert!(n
        .advance(t("2026-03-03T08:00:00+07:00"), cal, dir)
        .is_empty());
    // an acknowledged due_soon that becomes overdue is told again
    let t1 = t("2026-03-03T09:00:00+07:00");
    n.resolve(AlertKind::DueSoon, "D", t1);
    n.fire(info("D", AlertKind::Overdue, "VPDKDD", t1), dir);
    let out = n.advance(t1 + MINUTE, cal, dir);
    assert_eq!(
        out.iter().map(summary).collect::<Vec<_>>(),
        [(
            "unit:VPDKDD".to_string(),
            Kind::Update,
            vec![("D".to_string(), "overdue", Status::New)]
        )]
    );
    // the next digest: D asks for action, O is listed apart
    let out = n.advance(t("2026-03-04T07:30:00+07:00"), cal, dir);
    assert_eq!(
        out.iter().map(summary).collect::<Vec<_>>(),
        [(
            "unit:VPDKDD".to_string(),
            Kind::Digest,
            vec![
                ("D".to_string(), "overdue", Status::Firing),
                ("O".to_string(), "overdue", Status::Acknowledged)
            ]
        )]
    );
    // the record's next event ends the acknowledgement: the escalation goes
    let t2 = t("2026-03-04T09:00:00+07:00");
    n.record_event("O", t2);
    assert!(n
        .acks()
        .iter()
        .any(|x| x.id == a.id && x.ended_at == Some(t2)));
    let out = n.advance(t2 + MINUTE, cal, dir);
    assert_eq!(
        out.iter().map(summary).collect::<Vec<_>>(),
        [(
            "head:STNMT".to_string(),
            Kind::Update,
            vec![("O".to_string(), "overdue", Status::Escalated)]
        )]
    );
    // an event older than the acknowledgement (a replay after a crash) does
    // not end a newer one; a restart keeps them
    let b = n
        .new_ack(
            "D",
            Reason::WaitingForOtherAgency,
            "",
            "admin",
            t2 + 2 * MINUTE,
        )
        .unwrap();
    n.add_ack(b.clone());
    n.record_event("D", t2 + MINUTE);
    let n2 = restart(&n, immediate());
    assert!(n2
        .acks()
        .iter()
        .any(|x| x.id == b.id && x.ended_at.is_none()));
    let mut n3 = Notifier::new(immediate(), vec![]);
    n3.merge_acks(n.acks().into_iter().cloned().collect());
    n3.merge_acks(n.acks().into_iter().cloned().collect());
    assert_eq!(n3.acks().len(), n.acks().len());
}

#[test]
fn stream_keys_follow_the_unit_an_alert_is_emailed_to() {
    let c = cfg();
    let dir = &c.engine.directory;
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut unrouted = info("U", AlertKind::Unrouted, "NOWHERE", t0);
    unrouted.forwarder = Some("VPDKDD".into());
    let cases = [
        (info("O", AlertKind::Overdue, "VPDKDD", t0), "VPDKDD"),
        (info("H", AlertKind::Hanging, "VPDKDD", t0), "VPDKDD"),
        // a holder missing from the directory: the administrator's stream
        (info("H", AlertKind::Hanging, "NOWHERE", t0), "admin"),
        // unrouted: the administrator's, although the forwarder is told too
        (unrouted, "admin"),
    ];
    for (i, want) in cases {
        assert_eq!(stream::stream_key(&i, dir), want, "{i:?}");
    }
}

#[test]
fn stream_ops_round_trip_as_json_and_repeats_change_nothing() {
    use stream::Op;
    let c = cfg();
    let dir = &c.engine.directory;
    let t0 = t("2026-03-02T09:00:00+07:00");
    let ops = vec![
        Op::Fire {
            info: info("O", AlertKind::Overdue, "VPDKDD", t0),
        },
        Op::Event {
            record_id: "O".into(),
            at: t0 + SECOND,
        },
        Op::Resolve {
            kind: AlertKind::Overdue,
            record_id: "O".into(),
            at: t0 + 2 * SECOND,
        },
    ];
    for op in &ops {
        let v = serde_json::to_vec(op).unwrap();
        assert_eq!(&serde_json::from_slice::<Op>(&v).unwrap(), op);
    }
    // the engine side may send a batch again after a failed delivery: the
    // same fire twice, a resolution of an alert already resolved
    let mut once = Notifier::new(settings(), vec![]);
    let mut twice = Notifier::new(settings(), vec![]);
    for op in &ops[..1] {
        once.apply(op.clone(), dir);
        twice.apply(op.clone(), dir);
        twice.apply(op.clone(), dir);
    }
    let a = once.advance(t0 + MINUTE, &c.engine.calendar, dir);
    let b = twice.advance(t0 + MINUTE, &c.engine.calendar, dir);
    assert_eq!(
        a.iter().map(summary).collect::<Vec<_>>(),
        b.iter().map(summary).collect::<Vec<_>>()
    );
    for op in &ops[1..] {
        once.apply(op.clone(), dir);
        twice.apply(op.clone(), dir);
        twice.apply(op.clone(), dir);
    }
    assert_eq!(once.firing(), 0);
    assert_eq!(twice.firing(), 0);
}

#[test]
fn a_notifier_image_carries_firing_alerts_and_what_is_still_untold() {
    let c = cfg();
    let dir = &c.engine.directory;
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut n = Notifier::new(settings(), vec![]);
    n.fire(info("A", AlertKind::Overdue, "VPDKDD", t0), dir);
    let told = n.advance(t0 + MINUTE, &c.engine.calendar, dir);
    assert_eq!(told.len(), 1);
    // B fires after the last e-mail: the next owner must still tell it, and
    // only it
    n.fire(
        info("B", AlertKind::Overdue, "VPDKDD", t0 + 2 * MINUTE),
        dir,
    );
    let mut next = Notifier::from_image(settings(), vec![], &n.image(), dir).unwrap();
    assert_eq!(next.firing(), 2);
    let out = next.advance(t0 + 10 * MINUTE, &c.engine.calendar, dir);
    assert_eq!(
        out.iter().map(summary).collect::<Vec<_>>(),
        vec![(
            "unit:VPDKDD".to_string(),
            Kind::Update,
            vec![("B".to_string(), "overdue", Status::New)]
        )]
    );
    assert!(Notifier::from_image(settings(), vec![], b"{not json", dir).is_err());
}
