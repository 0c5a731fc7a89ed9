//! How the e-mail policy lands on the people it serves, measured over the
//! e-mails decided for a stream (the demo prints it; a test holds the default
//! policy to its targets, docs/email-delivery.md):
//!
//! * **e-mails per unit per working day** — an e-mail counts once for every unit
//!   whose `emails` or `head_email` is among its addresses, on the local date it
//!   is sent; the distribution is over the (unit, working day) pairs that had
//!   mail;
//! * **delay from firing to the first e-mail to its unit** that names the
//!   alert, in working time, by kind;
//! * **misses**: a `due_soon` that fired at least a working hour before its due
//!   time but was first told after it (or never); an alert that stayed firing a
//!   working hour and never reached its unit.

use super::render::{addresses, Context};
use crate::alert::{Outgoing, Status};
use crate::engine::calendar::Calendar;
use crate::engine::view::AlertInfo;
use crate::engine::AlertKind;
use crate::time::{Instant, SECOND};
use std::collections::HashMap;

const HOUR: i64 = 3600 * SECOND;

/// A firing alert not yet told to its unit.
struct Untold {
    fired_at: Instant,
    due: Instant,
    unit: String,
}

/// The collector.
pub struct MailStats {
    /// Address (lower case) → the units it belongs to.
    units_of: HashMap<String, Vec<u32>>,
    /// Unit code → its addresses (lower case).
    addresses_of: HashMap<String, Vec<String>>,
    calendar: Calendar,
    /// (unit, local day) → e-mails.
    per_unit_day: HashMap<(u32, i64), u32>,
    untold: HashMap<(AlertKind, String), Untold>,
    /// Ended while untold, waiting to be named as ended (`Status::Ended`) in
    /// an e-mail to the unit: with when it ended. One alert can fire and end
    /// more than once before the next e-mail, which then names each instance
    /// (by its fire time).
    ended: HashMap<(AlertKind, String), Vec<(Untold, Instant)>>,
    /// Working-time delays, by kind.
    delays: [Vec<i64>; AlertKind::ALL.len()],
    /// Firing a working hour or more, ended (or still firing) never told.
    never_told: [u64; AlertKind::ALL.len()],
    /// `due_soon` fired a working hour or more before due, first told after it.
    due_soon_late: u64,
    /// E-mails seen.
    emails: u64,
    /// The latest instant an e-mail was sent.
    last_sent: Instant,
}

/// A distribution's summary.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    /// How many values.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
        Spread {
            n: v.len(),
            median: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// What [`MailStats::finish`] reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MailSummary {
    /// E-mails decided.
    pub emails: u64,
    /// E-mails per unit per working day (days with mail).
    pub per_unit_day: Spread,
    /// Working hours from firing to the first e-mail to its unit, by kind
    /// (in [`AlertKind::ALL`] order).
    pub delay_hours: [Spread; AlertKind::ALL.len()],
    /// Alerts firing a working hour or more that never reached their unit, by kind.
    pub never_told: [u64; AlertKind::ALL.len()],
    /// `due_soon` alerts told only after their due time.
    pub due_soon_late: u64,
}

impl MailStats {
    /// A collector for the units of `ctx.directory`.
    pub fn new(ctx: &Context<'_>) -> MailStats {
        let mut units_of: HashMap<String, Vec<u32>> = HashMap::new();
        let mut addresses_of = HashMap::new();
        for (i, u) in ctx.directory.units.iter().enumerate() {
            let own: Vec<String> = u
                .emails
                .iter()
                .chain(&u.head_email)
                .map(|a| a.to_ascii_lowercase())
                .collect();
            for a in &own {
                let e = units_of.entry(a.clone()).or_default();
                if !e.contains(&(i as u32)) {
                    e.push(i as u32);
                }
            }
            addresses_of.insert(u.code.clone(), own);
        }
        MailStats {
            units_of,
            addresses_of,
            calendar: ctx.calendar.clone(),
            per_unit_day: HashMap::new(),
            untold: HashMap::new(),
            ended: HashMap::new(),
            delays: Default::default(),
            never_told: [0; AlertKind::ALL.len()],
            due_soon_late: 0,
            emails: 0,
            last_sent: i64::MIN,
        }
    }

    /// An alert fired.
    pub fn fire(&mut self, info: &AlertInfo) {
        self.untold.insert(
            (info.kind, info.record_id.clone()),
            Untold {
                fired_at: info.fired_at,
                due: info.due,
                unit: info.unit.clone(),
            },
        );
    }

    /// An alert resolved: if it was never told, it is a miss unless an e-mail
    /// names its end before the stream ends (a `due_soon` told only after its
    /// due time is late either way).
    pub fn resolve(&mut self, kind: AlertKind, record_id: &str, at: Instant) {
        let key = (kind, record_id.to_string());
        if let Some(u) = self.untold.remove(&key) {
            if kind == AlertKind::DueSoon
                && self.calendar.working_between(u.fired_at, u.due) >= HOUR
                && at >= u.due
            {
                self.due_soon_late += 1;
            }
            self.ended.entry(key).or_default().push((u, at));
        }
    }

    fn never_told_if_long(&mut self, kind: AlertKind, u: &Untold, end: Instant) {
        if self.calendar.working_between(u.fired_at, end) >= HOUR {
            self.never_told[kind as usize] += 1;
        }
    }

    /// Whether an e-mail to `to` reaches the unit `unit`.
    fn reaches(&self, unit: &str, to: &[String]) -> bool {
        self.addresses_of
            .get(unit)
            .is_some_and(|own| own.iter().any(|a| to.contains(a)))
            // a unit without addresses is served by the administrator
            || self.addresses_of.get(unit).is_none_or(|own| own.is_empty())
    }

    /// An e-mail decided, with the addresses it goes to.
    pub fn sent(&mut self, ctx: &Context<'_>, o: &Outgoing) {
        self.emails += 1;
        self.last_sent = self.last_sent.max(o.at);
        let to: Vec<String> = addresses(ctx, &o.recipient)
            .into_iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        let day = self.calendar.local_day(o.at);
        let mut units: Vec<u32> = to
            .iter()
            .filter_map(|a| self.units_of.get(a))
            .flatten()
            .copied()
            .collect();
        units.sort_unstable();
        units.dedup();
        for u in units {
            *self.per_unit_day.entry((u, day)).or_default() += 1;
        }
        for it in &o.items {
            let key = (it.info.kind, it.info.record_id.clone());
            if it.status == Status::Ended {
                let named = self.ended.get(&key).and_then(|list| {
                    list.iter().position(|(u, _)| {
                        u.fired_at == it.info.fired_at && self.reaches(&u.unit, &to)
                    })
                });
                if let Some(list) = self.ended.get_mut(&key) {
                    if let Some(i) = named {
                        list.swap_remove(i);
                    }
                    if list.is_empty() {
                        self.ended.remove(&key);
                    }
                }
                continue;
            }
            if it.status == Status::Resolved {
                continue;
            }
            let Some(u) = self.untold.get(&key) else {
                continue;
            };
            if !self.reaches(&u.unit, &to) {
                continue;
            }
            let Some(u) = self.untold.remove(&key) else {
                continue;
            };
            let kind = it.info.kind;
            self.delays[kind as usize].push(self.calendar.working_between(u.fired_at, o.at));
            if kind == AlertKind::DueSoon
                && self.calendar.working_between(u.fired_at, u.due) >= HOUR
                && o.at > u.due
            {
                self.due_soon_late += 1;
            }
        }
    }

    /// The summary at `end`. Alerts still firing untold count as ended then,
    /// except those fired after the last e-mail of all (the stream ends before
    /// their next send).
    pub fn finish(&mut self, end: Instant) -> MailSummary {
        let left: Vec<((AlertKind, String), Untold)> = self.untold.drain().collect();
        for ((kind, _), u) in &left {
            if u.fired_at <= self.last_sent {
                self.never_told_if_long(*kind, u, end);
            }
        }
        // ended untold and never named; those that ended after the last e-mail
        // of all had no send left to be named in
        let ended: Vec<((AlertKind, String), (Untold, Instant))> = self
            .ended
            .drain()
            .flat_map(|(k, list)| list.into_iter().map(move |x| (k.clone(), x)))
            .collect();
        for ((kind, _), (u, at)) in &ended {
            if *at <= self.last_sent {
                self.never_told_if_long(*kind, u, *at);
            }
        }
        let working_days: Vec<f64> = self
            .per_unit_day
            .iter()
            .filter(|((_, day), _)| self.calendar.is_working_day(*day))
            .map(|(_, &n)| n as f64)
            .collect();
        let hours = |v: &Vec<i64>| Spread::of(v.iter().map(|&d| d as f64 / HOUR as f64).collect());
        MailSummary {
            emails: self.emails,
            per_unit_day: Spread::of(working_days),
            delay_hours: std::array::from_fn(|k| hours(&self.delays[k])),
            never_told: self.never_told,
            due_soon_late: self.due_soon_late,
        }
    }
}
