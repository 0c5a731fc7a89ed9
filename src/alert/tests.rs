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

fn settings() -> Settings {
    Settings {
        digest_at: None,
        ..Settings::default()
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
            &c.directory,
        );
    }
    // nothing before group_wait
    assert!(n
        .advance(t0 + 29 * SECOND, &c.calendar, &c.directory)
        .is_empty());
    let out = n.advance(t0 + 60 * SECOND, &c.calendar, &c.directory);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].recipient, "unit:VPDKDD");
    assert_eq!(out[0].at, t0 + 30 * SECOND);
    assert_eq!(out[0].items.len(), 500);
    assert!(out[0].items.iter().all(|i| i.status == Status::New));
    // nothing new: nothing sent within the repeat interval
    assert!(n
        .advance(t0 + 20 * 3600 * SECOND, &c.calendar, &c.directory)
        .is_empty());
    // after repeat_interval: one reminder listing them again
    let out = n.advance(t0 + 25 * 3600 * SECOND, &c.calendar, &c.directory);
    assert_eq!(out.len(), 1);
    assert!(out[0].items.iter().all(|i| i.status == Status::Firing));
}

#[test]
fn group_interval_batches_changes_and_resolutions_are_told_once() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    n.fire(info("A", AlertKind::Hanging, "VPDKDD", t0), &c.directory);
    let out = n.advance(t0 + MINUTE, &c.calendar, &c.directory);
    assert_eq!(out.len(), 1);
    // B fires 1 min after the first e-mail, A resolves: one e-mail at last + 5 min
    n.fire(
        info("B", AlertKind::Hanging, "VPDKDD", t0 + 90 * SECOND),
        &c.directory,
    );
    n.resolve(AlertKind::Hanging, "A", t0 + 100 * SECOND);
    // C fires and resolves before any e-mail: never told
    n.fire(
        info("C", AlertKind::Hanging, "VPDKDD", t0 + 110 * SECOND),
        &c.directory,
    );
    n.resolve(AlertKind::Hanging, "C", t0 + 120 * SECOND);
    assert!(n
        .advance(t0 + 5 * MINUTE, &c.calendar, &c.directory)
        .is_empty());
    let out = n.advance(t0 + 10 * MINUTE, &c.calendar, &c.directory);
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
    n.fire(info("A", AlertKind::DueSoon, "VPDKDD", t0), &c.directory);
    n.fire(
        info("A", AlertKind::Overdue, "VPDKDD", t0 + SECOND),
        &c.directory,
    );
    n.fire(
        info("B", AlertKind::DueSoon, "VPDKDD", t0 + SECOND),
        &c.directory,
    );
    let out = n.advance(t0 + MINUTE, &c.calendar, &c.directory);
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
        .advance(t0 + 20 * MINUTE, &c.calendar, &c.directory)
        .is_empty());
}

#[test]
fn unrouted_goes_to_admin_and_the_forwarder_overdue_escalates_to_parent_head() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    let mut u = info("U", AlertKind::Unrouted, "NOWHERE", t0);
    u.forwarder = Some("VPDKDD".into());
    n.fire(u, &c.directory);
    let mut o = info("O", AlertKind::Overdue, "VPDKDD", t0);
    o.escalate_at = Some(t0 + 3600 * SECOND);
    n.fire(o, &c.directory);
    let out = n.advance(t0 + MINUTE, &c.calendar, &c.directory);
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
    let out = n.advance(t0 + 2 * 3600 * SECOND, &c.calendar, &c.directory);
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
    let out = n.advance(t0 + 4 * 3600 * SECOND, &c.calendar, &c.directory);
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
    n.fire(o, &c.directory);
    n.resolve(AlertKind::Overdue, "O", t0 + 10 * SECOND);
    let out = n.advance(t0 + 5 * 3600 * SECOND, &c.calendar, &c.directory);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn unknown_or_unaddressed_holders_fall_back_to_the_administrator() {
    let c = cfg();
    let mut n = Notifier::new(settings(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00");
    n.fire(info("H", AlertKind::Hanging, "NOWHERE", t0), &c.directory);
    let out = n.advance(t0 + MINUTE, &c.calendar, &c.directory);
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
    n.fire(info("H", AlertKind::Hanging, "VPDKDD", t0), &c.directory);
    n.fire(info("O", AlertKind::Overdue, "VPDKDD", t0), &c.directory);
    let out = n.advance(t0 + MINUTE, &c.calendar, &c.directory);
    assert_eq!(
        summary(&out[0]).2,
        vec![("O".to_string(), "overdue", Status::New)]
    );
    assert_eq!(n.state.muted, 1);
    // the silence ends at 10:00: the still-firing hanging is told then
    let out = n.advance(t0 + 2 * 3600 * SECOND, &c.calendar, &c.directory);
    assert_eq!(
        summary(&out[0]).2,
        vec![("H".to_string(), "hanging", Status::New)]
    );
    assert_eq!(out[0].at, t("2026-03-02T10:00:00+07:00"));
}

#[test]
fn digest_lists_everything_open_worst_first_on_working_days_only() {
    let c = cfg();
    let mut n = Notifier::new(Settings::default(), vec![]);
    // Friday evening
    let t0 = t("2026-03-06T18:00:00+07:00");
    let mut a = info("H1", AlertKind::Hanging, "VPDKDD", t0);
    a.fired_at = t0 - 3600 * SECOND;
    n.fire(a, &c.directory);
    let mut o1 = info("O1", AlertKind::Overdue, "VPDKDD", t0);
    o1.due = t0 - 10 * 3600 * SECOND;
    n.fire(o1, &c.directory);
    let mut o2 = info("O2", AlertKind::Overdue, "VPDKDD", t0);
    o2.due = t0 - 50 * 3600 * SECOND;
    n.fire(o2, &c.directory);
    n.fire(info("D", AlertKind::DueSoon, "VPDKDD", t0), &c.directory);
    let first = n.advance(t0 + MINUTE, &c.calendar, &c.directory);
    assert_eq!(first.len(), 1);
    // the weekend passes without a digest; Monday 07:30 brings one
    let out = n.advance(t("2026-03-09T08:00:00+07:00"), &c.calendar, &c.directory);
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
    n.fire(a.clone(), &c.directory);
    let out = n.advance(t0 + MINUTE, &c.calendar, &c.directory);
    assert_eq!(out.len(), 1);
    // B fires and is not told yet when the state is saved
    let b = info("B", AlertKind::Hanging, "VPDKDD", t0 + 2 * MINUTE);
    n.fire(b.clone(), &c.directory);
    let saved = serde_json::to_string(&n.state).unwrap();
    assert!(saved.len() < 400, "the saved state stays small: {saved}");
    let state: State = serde_json::from_str(&saved).unwrap();
    // a restart: the engines are rebuilt and their firing alerts adopted
    let mut m = Notifier::with_state(settings(), vec![], state);
    m.adopt(a.clone(), &c.directory);
    m.adopt(b, &c.directory);
    m.fire(a, &c.directory);
    let out = m.advance(t0 + 3600 * SECOND, &c.calendar, &c.directory);
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
    n.fire(info("A", AlertKind::Hanging, "VPDKDD", t0), &c.directory);
    assert_eq!(n.advance(t0 + MINUTE, &c.calendar, &c.directory).len(), 1);
    n.resolve(AlertKind::Hanging, "A", t0 + 2 * MINUTE);
    assert!(n
        .advance(t0 + 3600 * SECOND, &c.calendar, &c.directory)
        .is_empty());
    n.fire(
        info("B", AlertKind::Overdue, "VPDKDD", t0 + 2 * 3600 * SECOND),
        &c.directory,
    );
    let out = n.advance(t0 + 3 * 3600 * SECOND, &c.calendar, &c.directory);
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
    n.fire(o.clone(), &c.directory);
    let out = n.advance(t0 + 2 * 3600 * SECOND, &c.calendar, &c.directory);
    assert_eq!(out.len(), 2); // the unit, then the parent's head
    let state: State = serde_json::from_str(&serde_json::to_string(&n.state).unwrap()).unwrap();
    let mut m = Notifier::with_state(settings(), vec![], state);
    m.adopt(o, &c.directory);
    assert!(m
        .advance(t0 + 5 * 3600 * SECOND, &c.calendar, &c.directory)
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
    let out = m.advance(t0 + 7 * 3600 * SECOND, &c.calendar, &c.directory);
    let mut who: Vec<_> = out.iter().map(|o| o.recipient.clone()).collect();
    who.sort();
    assert_eq!(who, vec!["head:STNMT", "unit:VPDKDD"]);
}

#[test]
fn after_days_of_downtime_only_the_latest_missed_digest_is_sent() {
    let c = cfg();
    let mut n = Notifier::new(Settings::default(), vec![]);
    let t0 = t("2026-03-02T09:00:00+07:00"); // Monday
    n.fire(info("A", AlertKind::Overdue, "VPDKDD", t0), &c.directory);
    assert_eq!(n.advance(t0 + MINUTE, &c.calendar, &c.directory).len(), 1);
    let state: State = serde_json::from_str(&serde_json::to_string(&n.state).unwrap()).unwrap();
    // the daemon comes back on Thursday at noon: Tue, Wed, Thu digests were missed
    let back = t("2026-03-05T12:00:00+07:00");
    let mut m = Notifier::with_state(Settings::default(), vec![], state);
    m.schedule_floor = back;
    m.adopt(info("A", AlertKind::Overdue, "VPDKDD", t0), &c.directory);
    let out = m.advance(back, &c.calendar, &c.directory);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].kind, Kind::Digest);
    assert_eq!(out[0].at, t("2026-03-05T07:30:00+07:00"));
    // in a replay (no floor) every day's digest is decided
    let mut r = Notifier::new(Settings::default(), vec![]);
    r.fire(info("A", AlertKind::Overdue, "VPDKDD", t0), &c.directory);
    r.advance(t0 + MINUTE, &c.calendar, &c.directory);
    let out = r.advance(back, &c.calendar, &c.directory);
    assert_eq!(out.iter().filter(|o| o.kind == Kind::Digest).count(), 3);
}
