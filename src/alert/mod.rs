//! Alert notifications (docs/spec.md §4 "Notifications"): from alert
//! transitions to the e-mails unit heads receive.
//!
//! The [`Notifier`] is a pure state machine of (state, transitions, now), like the
//! engine's rules: time is injected, never read. It decides *what* to send to
//! *whom* and *when*; [`crate::notify`] renders and delivers. Modelled on
//! Alertmanager's dispatcher:
//!
//! - **routing** ([`Notifier::route`]): an alert goes to the unit that holds the
//!   record (`unit:<code>`: its `emails` and `head_email`); `unrouted` goes to the
//!   administrator (`admin`) and to the unit that forwarded the record; an
//!   `overdue` still firing at its escalation instant (`escalate_after` working
//!   hours past due) also goes to the parent unit's head (`head:<parent>`). A
//!   unit without any address, or a record held by a unit missing from the
//!   directory, is routed to the administrator: nothing falls on the floor.
//! - **grouping** per recipient: the first change waits `group_wait`, then at
//!   most one e-mail per `group_interval` lists what newly fired and what
//!   resolved; a resolution is only told to whom the firing was told. A
//!   still-firing alert is never listed again before `repeat_interval`; with the
//!   daily digest on (the default) the digest is the reminder, otherwise an
//!   update lists it again once `repeat_interval` has passed (so nobody gets
//!   reminders on a weekend just because 24 h went by).
//! - **inhibition**: `overdue` hides `due_soon` of the same record.
//! - **digest**: at `digest_at` local time on working days every recipient with
//!   open alerts gets one e-mail listing them all, worst first.
//! - **silences** mute e-mail (never metrics or the alerts file): a muted alert is
//!   not listed while the silence lasts and is listed at the first flush after
//!   it ends if it is still firing.
//! - **acknowledgements** ([`ack`]): a head says a record is handled; its
//!   alerts then get no reminder and no escalation until the record's next
//!   event, and digests list them apart.
//!
//! The whole state is serialisable: the daemon saves it together with its
//! partition watermarks (one atomic file), so after a crash the transitions it
//! sees again are exactly those the saved state has not seen.

pub mod ack;
pub mod settings;
mod silence;
pub mod stream;

use crate::engine::calendar::Calendar;
use crate::engine::directory::Directory;
pub use crate::engine::view::AlertInfo;
use crate::engine::AlertKind;
use crate::time::{Instant, SECOND};
pub use ack::{Ack, AckError, Covered, Reason};
use serde::{Deserialize, Serialize};
pub use settings::Settings;
pub use silence::{NewSilence, Silence, SilenceError};
use std::collections::{BTreeMap, BTreeSet};

/// The administrator's recipient key.
pub const ADMIN: &str = "admin";

/// The key of a firing alert: at most one per (record, kind).
fn key(kind: AlertKind, record_id: &str) -> String {
    format!("{}:{record_id}", kind.as_str())
}

/// Why an alert is in an e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Fired since the recipient was last told.
    New,
    /// Still firing; told more than `repeat_interval` ago (or in a digest).
    Firing,
    /// Escalated to this recipient (the parent unit's head).
    Escalated,
    /// Resolved since the recipient was told it fired.
    Resolved,
    /// Still firing, acknowledged by the unit (digests list it apart).
    Acknowledged,
    /// Fired and ended before the recipient was told, after firing for at
    /// least [`ENDED_WORTH_TELLING`] of working time: named once, so that no
    /// alert that mattered goes unheard (it rides along with the next e-mail,
    /// at the latest the digest).
    Ended,
}

impl Status {
    /// Whether the item tells an end (resolved or ended), not a firing alert.
    pub fn is_end(self) -> bool {
        matches!(self, Status::Resolved | Status::Ended)
    }

    /// Whether the item asks for action: firing and not acknowledged.
    pub fn is_action(self) -> bool {
        !self.is_end() && self != Status::Acknowledged
    }
}

/// How long (working time) an alert must have fired for its end to be told to
/// a recipient who never heard of it: shorter ones were handled in time.
pub const ENDED_WORTH_TELLING: i64 = 3600 * SECOND;

/// One line of an e-mail.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The alert.
    pub info: AlertInfo,
    /// Why it is listed.
    pub status: Status,
    /// For [`Status::Resolved`] and [`Status::Ended`]: when.
    pub resolved_at: Option<Instant>,
}

/// The two kinds of e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// What changed since the last e-mail of the group.
    Update,
    /// The daily list of all open alerts.
    Digest,
}

/// An e-mail decided: to be rendered, stored in the outbox, sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Sequence number (unique, increasing; part of the e-mail id).
    pub seq: u64,
    /// When it is sent (a group flush or digest instant).
    pub at: Instant,
    /// Recipient key: `unit:<code>`, `head:<code>` or `admin`.
    pub recipient: String,
    /// Update or digest.
    pub kind: Kind,
    /// Listed alerts, worst first (firing), then resolutions.
    pub items: Vec<Item>,
    /// Alerts not listed because of `max_items`.
    pub omitted: usize,
    /// Of those, how many of each kind (in [`AlertKind::ALL`] order): with the
    /// listed ones, the true totals.
    pub omitted_by_kind: [usize; AlertKind::ALL.len()],
    /// Per unit holding the records, the firing alerts by kind (listed and
    /// omitted), by unit code: the summary of an e-mail that spans units.
    pub by_unit: Vec<(String, [usize; AlertKind::ALL.len()])>,
    /// [`State::instance`] when decided.
    pub instance: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Group {
    /// Keys of the open alerts routed here (rebuilt from the engines after a
    /// restart: not saved).
    #[serde(skip)]
    members: BTreeSet<String>,
    /// Members to list at the next flush (never told, or due for a reminder).
    /// Saved: after a restart every adopted alert not listed here counts as told.
    #[serde(default)]
    unsent: BTreeSet<String>,
    /// Key → when the recipient was last told it is firing (not saved; an
    /// adopted alert counts as told at its fire time).
    #[serde(skip)]
    notified: BTreeMap<String, Instant>,
    /// Resolutions to tell: (alert, resolved at).
    resolved: Vec<(AlertInfo, Instant)>,
    /// Alerts that ended before this recipient was told: (alert, ended at);
    /// told as [`Status::Ended`] if they fired long enough.
    #[serde(default)]
    ended: Vec<(AlertInfo, Instant)>,
    next_flush: Option<Instant>,
    last_flush: Option<Instant>,
    /// With batch times: the earliest due time of a `due_soon` waiting to be
    /// told — when it comes before the next batch or digest, the group is sent
    /// at once instead (a warning after the due time is no warning).
    #[serde(default)]
    urgent_due: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Firing {
    info: AlertInfo,
    /// Recipient keys it was routed to.
    routed: Vec<String>,
}

/// The notification state. What is saved is small — per recipient what is not
/// yet told, resolutions to tell, flush times; the digest time; the sequence —
/// while the firing alerts themselves (a province can have 100,000) are not:
/// after a restart they are adopted from the rebuilt engines
/// ([`Notifier::adopt`]), which are the source of truth for what fires.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(skip)]
    alerts: BTreeMap<String, Firing>,
    groups: BTreeMap<String, Group>,
    #[serde(skip)]
    escalations: BTreeSet<(Instant, String)>,
    next_digest: Option<Instant>,
    seq: u64,
    /// Silences added through the API (config silences are not saved here).
    pub silences: Vec<Silence>,
    /// Instant up to which [`Notifier::advance`] ran.
    clock: Instant,
    /// Alerts muted by a silence at a flush, since start (for metrics).
    #[serde(default)]
    pub muted: u64,
    /// Acknowledgements, active and ended (kept for the record pages), by
    /// record id. Saved here with the rest (so the ended ones stay ended after a
    /// crash) and in their own file when made (so a new one survives a crash
    /// before the next save).
    #[serde(default)]
    pub acks: BTreeMap<String, Vec<Ack>>,
    /// A token of this state's origin, part of every e-mail id and Message-ID
    /// (the daemon draws one when it starts a fresh state, so two daemons or a
    /// lost state folder never reuse `Message-ID`s; empty in replay, whose file
    /// names stay reproducible).
    #[serde(default)]
    pub instance: String,
}

/// The notification stage's decision maker.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// Alerts are grouped from this instant on at the earliest: a daemon that
    /// starts sets it to its start time, so what came due while it was down
    /// (fire times in the past) is collected for `group_wait` instead of going
    /// out partition by partition as each catches up.
    pub schedule_floor: Instant,
    settings: Settings,
    /// Silences from the configuration (read-only at run time).
    config_silences: Vec<Silence>,
    /// The persistent part.
    pub state: State,
    /// `hanging` e-mails are held: the source is silent, so "no action
    /// recorded" may only mean that no events arrive (not saved: the daemon
    /// decides it again every round).
    hanging_held: bool,
    /// Acknowledgements made here since [`Notifier::take_new_acks`].
    new_acks: Vec<Ack>,
}

impl Notifier {
    /// A notifier with empty state.
    pub fn new(settings: Settings, config_silences: Vec<Silence>) -> Notifier {
        Notifier {
            schedule_floor: i64::MIN,
            settings,
            config_silences,
            state: State::default(),
            hanging_held: false,
            new_acks: Vec::new(),
        }
    }

    /// A notifier resuming from a saved state.
    pub fn with_state(settings: Settings, config_silences: Vec<Silence>, state: State) -> Notifier {
        Notifier {
            schedule_floor: i64::MIN,
            settings,
            config_silences,
            state,
            hanging_held: false,
            new_acks: Vec::new(),
        }
    }

    /// Replaces settings and config silences (SIGHUP reload); state is kept.
    /// Returns what changed: `grouping`, `silences`.
    pub fn reconfigure(
        &mut self,
        settings: Settings,
        config_silences: Vec<Silence>,
    ) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if settings != self.settings {
            changed.push("grouping");
        }
        if settings.digest_at != self.settings.digest_at {
            self.state.next_digest = None;
        }
        let digest_turned_off = settings.digest_at.is_none() && self.settings.digest_at.is_some();
        let silences_changed = config_silences != self.config_silences;
        if silences_changed {
            changed.push("silences");
        }
        self.settings = settings;
        self.config_silences = config_silences;
        if silences_changed {
            // what a removed (or shortened) silence muted is told at the next flush
            self.release(self.state.clock);
        }
        if digest_turned_off {
            // no digest any more: still-firing alerts get reminders from now on
            let keys: Vec<String> = self.state.groups.keys().cloned().collect();
            for k in keys {
                self.arm_reminder(&k, self.state.clock.max(self.schedule_floor));
            }
        }
        changed
    }

    /// Without a digest: the group's next flush is when its earliest told alert
    /// (not muted, i.e. not in `unsent`) is due for a reminder, not before
    /// `not_before` nor within `group_interval` of the group's last e-mail.
    fn arm_reminder(&mut self, rkey: &str, not_before: Instant) {
        if self.settings.digest_at.is_some() {
            return;
        }
        let (repeat, interval) = (self.settings.repeat_interval, self.settings.group_interval);
        let Some(g) = self.state.groups.get_mut(rkey) else {
            return;
        };
        let reminder = g
            .notified
            .iter()
            .filter(|(k, _)| !g.unsent.contains(*k))
            .map(|(_, &l)| l + repeat)
            .min()
            .map(|r| {
                r.max(not_before)
                    .max(g.last_flush.map_or(i64::MIN, |l| l + interval.max(1)))
            });
        if let Some(r) = reminder {
            g.next_flush = Some(g.next_flush.map_or(r, |n| n.min(r)));
        }
    }

    /// Every silence in force or scheduled: configuration's, then the API's.
    pub fn silences(&self) -> impl Iterator<Item = &Silence> {
        self.config_silences
            .iter()
            .chain(self.state.silences.iter())
    }

    /// Schedules a flush of every group holding alerts not yet told (a silence
    /// was deleted: what it muted is told at the next flush).
    pub fn release(&mut self, at: Instant) {
        let keys: Vec<String> = self
            .state
            .groups
            .iter()
            .filter(|(_, g)| !g.unsent.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.schedule(&k, at);
        }
    }

    /// Number of firing alerts known.
    pub fn firing(&self) -> usize {
        self.state.alerts.len()
    }

    /// Recipient keys for an alert (see the module docs).
    pub fn route(info: &AlertInfo, dir: &Directory) -> Vec<String> {
        let addressed = |code: &str| {
            dir.unit_id(code)
                .and_then(|u| dir.units.get(u as usize))
                .is_some_and(|u| !u.emails.is_empty() || u.head_email.is_some())
        };
        let mut out = Vec::new();
        match info.kind {
            AlertKind::Unrouted => {
                out.push(ADMIN.to_string());
                if let Some(f) = &info.forwarder {
                    if addressed(f) {
                        out.push(format!("unit:{f}"));
                    }
                }
            }
            _ => {
                if addressed(&info.unit) {
                    out.push(format!("unit:{}", info.unit));
                } else {
                    out.push(ADMIN.to_string());
                }
            }
        }
        out
    }

    /// The parent unit whose head an `overdue` of `unit` escalates to.
    fn escalation_target(unit: &str, dir: &Directory) -> Option<String> {
        let u = dir.units.get(dir.unit_id(unit)? as usize)?;
        let parent = dir.units.get(u.parent? as usize)?;
        parent.head_email.as_ref()?;
        Some(format!("head:{}", parent.code))
    }

    fn schedule(&mut self, rkey: &str, at: Instant) {
        let at = at.max(self.schedule_floor).max(self.state.clock);
        let (wait, interval) = (self.settings.group_wait, self.settings.group_interval);
        let g = self.state.groups.entry(rkey.to_string()).or_default();
        let earliest = match g.last_flush {
            Some(l) => (at + wait).max(l + interval),
            None => at + wait,
        };
        g.next_flush = Some(match g.next_flush {
            Some(n) => n.min(earliest),
            None => earliest,
        });
    }

    /// An alert fired. A repeat of an alert already known (the same firing seen
    /// again after a restart) changes nothing.
    pub fn fire(&mut self, info: AlertInfo, dir: &Directory) {
        let k = key(info.kind, &info.record_id);
        if let Some(f) = self.state.alerts.get(&k) {
            if f.info.fired_at == info.fired_at && f.info.unit == info.unit {
                return;
            }
            // fired again without a resolution in between (a missed one): start over
            let at = info.fired_at;
            self.resolve(info.kind, &info.record_id.clone(), at);
        }
        let routed = Self::route(&info, dir);
        let at = info.fired_at;
        for r in &routed {
            let g = self.state.groups.entry(r.clone()).or_default();
            g.members.insert(k.clone());
            g.unsent.insert(k.clone());
            if info.kind == AlertKind::DueSoon {
                g.urgent_due = Some(g.urgent_due.map_or(info.due, |d| d.min(info.due)));
            }
            self.schedule(r, at);
        }
        if let Some(e) = info.escalate_at {
            self.state.escalations.insert((e, k.clone()));
        }
        self.state.alerts.insert(k, Firing { info, routed });
    }

    /// An alert resolved at `at`.
    pub fn resolve(&mut self, kind: AlertKind, record_id: &str, at: Instant) {
        let k = key(kind, record_id);
        let Some(f) = self.state.alerts.remove(&k) else {
            return;
        };
        if let Some(e) = f.info.escalate_at {
            self.state.escalations.remove(&(e, k.clone()));
        }
        let send_resolved = self.settings.send_resolved;
        // muted or held, it was not to be told: nor is its end
        let quiet = self.silenced(&f.info, at) || self.held(&f.info) || self.acked(&f.info);
        let no_digest = self.settings.digest_at.is_none();
        for r in &f.routed {
            let (told, ended) = match self.state.groups.get_mut(r) {
                Some(g) => {
                    g.members.remove(&k);
                    let untold = g.unsent.remove(&k);
                    if g.notified.remove(&k).is_some() {
                        g.resolved.push((f.info.clone(), at));
                        (true, false)
                    } else if untold && !quiet && !r.starts_with("head:") {
                        g.ended.push((f.info.clone(), at));
                        (false, true)
                    } else {
                        (false, false)
                    }
                }
                None => (false, false),
            };
            if (told && send_resolved) || (ended && no_digest) {
                self.schedule(r, at);
            }
        }
    }

    /// Forgets alerts for which `keep` is false, without telling anyone (a
    /// partition handed to another daemon).
    pub fn forget(&mut self, mut keep: impl FnMut(&AlertInfo) -> bool) {
        let gone: Vec<String> = self
            .state
            .alerts
            .iter()
            .filter(|(_, f)| !keep(&f.info))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(f) = self.state.alerts.remove(&k) {
                if let Some(e) = f.info.escalate_at {
                    self.state.escalations.remove(&(e, k.clone()));
                }
                for r in &f.routed {
                    if let Some(g) = self.state.groups.get_mut(r) {
                        g.members.remove(&k);
                        g.unsent.remove(&k);
                        g.notified.remove(&k);
                    }
                }
            }
        }
    }

    /// Takes over an alert that is already firing and was told by an earlier
    /// owner (a partition rebuilt after a hand-over): it is known for digests
    /// and resolutions, and not announced again.
    ///
    /// After a restart this rebuilds what the saved state leaves out: an alert
    /// the saved `unsent` lists is still to be told; any other was told. An
    /// escalation whose instant is before the saved clock happened already.
    pub fn adopt(&mut self, info: AlertInfo, dir: &Directory) {
        let k = key(info.kind, &info.record_id);
        if self.state.alerts.contains_key(&k) {
            return;
        }
        let mut routed = Self::route(&info, dir);
        if let Some(e) = info.escalate_at {
            if e <= self.state.clock {
                if let Some(t) = Self::escalation_target(&info.unit, dir) {
                    if !routed.contains(&t) {
                        routed.push(t);
                    }
                }
            } else {
                self.state.escalations.insert((e, k.clone()));
            }
        }
        for r in &routed {
            let g = self.state.groups.entry(r.clone()).or_default();
            g.members.insert(k.clone());
            if !g.unsent.contains(&k) {
                // told at a flush no later than the group's last one (saved):
                // counting from there, a reminder never comes early
                let told = info.fired_at.max(g.last_flush.unwrap_or(i64::MIN));
                g.notified.insert(k.clone(), told);
            }
        }
        let fired_at = info.fired_at;
        self.state.alerts.insert(
            k,
            Firing {
                info,
                routed: routed.clone(),
            },
        );
        // a group without a flush planned (an alert handed over): its reminder
        for r in &routed {
            if self
                .state
                .groups
                .get(r)
                .is_some_and(|g| g.next_flush.is_none())
            {
                self.arm_reminder(r, fired_at.max(self.state.clock).max(self.schedule_floor));
            }
        }
    }

    /// Whether an acknowledgement covers this firing.
    fn acked(&self, info: &AlertInfo) -> bool {
        self.state
            .acks
            .get(&info.record_id)
            .is_some_and(|v| v.iter().any(|a| a.covers(info.kind, info.fired_at)))
    }

    /// The firing alerts of a record (worst first).
    pub fn record_alerts(&self, record_id: &str) -> Vec<&AlertInfo> {
        AlertKind::ALL
            .iter()
            .filter_map(|&k| self.state.alerts.get(&key(k, record_id)))
            .map(|f| &f.info)
            .collect()
    }

    /// Every firing alert known (for the pages).
    pub fn alerts(&self) -> impl Iterator<Item = &AlertInfo> {
        self.state.alerts.values().map(|f| &f.info)
    }

    /// Whether `info` is covered by an acknowledgement (for the pages).
    pub fn is_acknowledged(&self, info: &AlertInfo) -> bool {
        self.acked(info)
    }

    /// An acknowledgement of what fires now for `record_id` (not yet kept:
    /// the caller makes it durable, then [`Notifier::add_ack`]).
    pub fn new_ack(
        &self,
        record_id: &str,
        reason: Reason,
        text: &str,
        by: &str,
        now: Instant,
    ) -> Result<Ack, AckError> {
        let text = text.trim();
        if reason == Reason::Other && text.is_empty() {
            return Err(AckError::TextRequired);
        }
        if text.chars().count() > ack::MAX_TEXT {
            return Err(AckError::TextTooLong);
        }
        let firing = self.record_alerts(record_id);
        let Some(first) = firing.first() else {
            return Err(AckError::NotAlerting(record_id.to_string()));
        };
        let mut id = format!("a-{now:x}");
        let mut k = 0;
        while self.state.acks.values().flatten().any(|a| a.id == id) {
            k += 1;
            id = format!("a-{now:x}-{k}");
        }
        Ok(Ack {
            id,
            record_id: record_id.to_string(),
            unit: first.unit.clone(),
            alerts: firing
                .iter()
                .map(|i| Covered {
                    kind: i.kind,
                    fired_at: i.fired_at,
                })
                .collect(),
            reason,
            text: text.to_string(),
            at: now,
            by: by.to_string(),
            ended_at: None,
        })
    }

    /// Keeps an acknowledgement made here (see [`Notifier::take_new_acks`]).
    pub fn add_ack(&mut self, a: Ack) {
        self.new_acks.push(a.clone());
        self.keep_ack(a);
    }

    /// Keeps an acknowledgement (and drops the oldest ended ones beyond
    /// [`ack::MAX_KEPT`]).
    fn keep_ack(&mut self, a: Ack) {
        self.state
            .acks
            .entry(a.record_id.clone())
            .or_default()
            .push(a);
        let n: usize = self.state.acks.values().map(Vec::len).sum();
        if n > ack::MAX_KEPT {
            let mut ended: Vec<(Instant, String)> = self
                .state
                .acks
                .values()
                .flatten()
                .filter_map(|a| a.ended_at.map(|e| (e, a.id.clone())))
                .collect();
            ended.sort();
            let drop: BTreeSet<String> = ended
                .into_iter()
                .take(n - ack::MAX_KEPT)
                .map(|(_, id)| id)
                .collect();
            for v in self.state.acks.values_mut() {
                v.retain(|a| !drop.contains(&a.id));
            }
            self.state.acks.retain(|_, v| !v.is_empty());
        }
    }

    /// Every acknowledgement, oldest first.
    pub fn acks(&self) -> Vec<&Ack> {
        let mut v: Vec<&Ack> = self.state.acks.values().flatten().collect();
        v.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        v
    }

    /// Takes in acknowledgements kept in their own file: those the saved state
    /// does not know (made after its last save) are added.
    pub fn merge_acks(&mut self, from_file: Vec<Ack>) {
        for a in from_file {
            let known = self
                .state
                .acks
                .get(&a.record_id)
                .is_some_and(|v| v.iter().any(|x| x.id == a.id));
            if !known {
                self.keep_ack(a);
            }
        }
    }

    /// A record had an event at `at` (event time): the acknowledgements made
    /// before it end, and what they held back resumes (an escalation already
    /// due is sent). Cheap when nothing is acknowledged.
    pub fn record_event(&mut self, record_id: &str, at: Instant) {
        if self.state.acks.is_empty() {
            return;
        }
        let Some(v) = self.state.acks.get_mut(record_id) else {
            return;
        };
        let mut ended = Vec::new();
        for a in v.iter_mut() {
            if a.ended_at.is_none() && at > a.at {
                a.ended_at = Some(at);
                ended.extend(a.alerts.iter().map(|c| c.kind));
            }
        }
        for kind in ended {
            let k = key(kind, record_id);
            if let Some(e) = self.state.alerts.get(&k).and_then(|f| f.info.escalate_at) {
                if e <= at {
                    self.state.escalations.insert((at, k));
                }
            }
        }
    }

    fn silenced(&self, info: &AlertInfo, at: Instant) -> bool {
        self.silences().any(|s| s.mutes(info, at))
    }

    /// Whether `info` waits for the source to speak again.
    fn held(&self, info: &AlertInfo) -> bool {
        self.hanging_held && info.kind == AlertKind::Hanging
    }

    /// Holds or releases `hanging` e-mails (docs/spec.md §9.8). Held alerts stay
    /// firing and untold (not in updates, not in digests); on release, every
    /// group with something untold is flushed `group_wait` later, so that the
    /// events that arrive meanwhile can resolve them first.
    pub fn hold_hanging(&mut self, on: bool, now: Instant) {
        if self.hanging_held == on {
            return;
        }
        self.hanging_held = on;
        if !on {
            self.release(now);
        }
    }

    /// Whether `hanging` e-mails are held.
    pub fn hanging_held(&self) -> bool {
        self.hanging_held
    }

    /// Whether `info` is hidden by an `overdue` of the same record.
    fn inhibited(&self, info: &AlertInfo) -> bool {
        info.kind == AlertKind::DueSoon
            && self
                .state
                .alerts
                .contains_key(&key(AlertKind::Overdue, &info.record_id))
    }

    /// Moves the clock to `now`: escalations, group flushes and digests due at or
    /// before it happen, in time order, each at its own instant. Returns the
    /// e-mails decided.
    pub fn advance(&mut self, now: Instant, cal: &Calendar, dir: &Directory) -> Vec<Outgoing> {
        let mut out = Vec::new();
        if self.state.next_digest.is_none() {
            self.state.next_digest = self.next_digest_after(self.state.clock.max(now - 1), cal);
        }
        // silences that ended since the last call: what they muted is told now
        let prev = self.state.clock;
        let ended: Vec<Instant> = self
            .silences()
            .map(|s| s.ends_at)
            .filter(|&e| e > prev && e <= now)
            .collect();
        for e in ended {
            let keys: Vec<String> = self
                .state
                .groups
                .iter()
                .filter(|(_, g)| !g.unsent.is_empty())
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                self.schedule(&k, e - self.settings.group_wait);
            }
        }
        loop {
            let esc = self.state.escalations.first().map(|(t, _)| *t);
            let flush = self
                .state
                .groups
                .iter()
                .filter_map(|(k, g)| g.next_flush.map(|t| (t, k)))
                .min()
                .map(|(t, k)| (t, k.clone()));
            let digest = self.state.next_digest;
            let t_next = [esc, flush.as_ref().map(|f| f.0), digest]
                .into_iter()
                .flatten()
                .min();
            let Some(t) = t_next else { break };
            if t > now {
                break;
            }
            if esc == Some(t) {
                if let Some((_, k)) = self.state.escalations.pop_first() {
                    self.escalate(&k, t, dir);
                }
            } else if flush.as_ref().map(|f| f.0) == Some(t) {
                if let Some((_, k)) = flush {
                    if let Some(later) = self.batch_instant(&k, t, cal) {
                        if let Some(g) = self.state.groups.get_mut(&k) {
                            g.next_flush = later;
                        }
                        continue;
                    }
                    if let Some(o) = self.flush(&k, t, cal) {
                        out.push(o);
                    }
                }
            } else {
                let next = self.next_digest_after(t, cal);
                // a daemon back after days away sends the latest missed digest,
                // not one per missed day
                let stale = t < self.schedule_floor && next.is_some_and(|n| n <= now);
                if !stale {
                    self.digest(t, cal, &mut out);
                }
                self.state.next_digest = next;
            }
        }
        self.state.clock = self.state.clock.max(now);
        out
    }

    fn escalate(&mut self, k: &str, at: Instant, dir: &Directory) {
        let Some(f) = self.state.alerts.get(k) else {
            return;
        };
        let Some(target) = Self::escalation_target(&f.info.unit, dir) else {
            return;
        };
        if f.routed.contains(&target) || self.acked(&f.info) {
            // an acknowledged record escalates only after its next event
            return;
        }
        if let Some(f) = self.state.alerts.get_mut(k) {
            f.routed.push(target.clone());
        }
        let g = self.state.groups.entry(target.clone()).or_default();
        g.members.insert(k.to_string());
        g.unsent.insert(k.to_string());
        self.schedule(&target, at);
    }

    /// The ended-before-told alerts of `g` worth telling, as items; `g.ended`
    /// is emptied.
    fn take_ended(&self, g: &mut Group, cal: &Calendar) -> Vec<Item> {
        std::mem::take(&mut g.ended)
            .into_iter()
            .filter(|(info, when)| {
                cal.working_between(info.fired_at, *when) >= ENDED_WORTH_TELLING
                    // a due_soon ended by its record's overdue is not news
                    && !(info.kind == AlertKind::DueSoon
                        && self
                            .state
                            .alerts
                            .contains_key(&key(AlertKind::Overdue, &info.record_id)))
            })
            .map(|(info, when)| Item {
                info,
                status: Status::Ended,
                resolved_at: Some(when),
            })
            .collect()
    }

    fn flush(&mut self, rkey: &str, at: Instant, cal: &Calendar) -> Option<Outgoing> {
        let repeat = self.settings.repeat_interval;
        let head = rkey.starts_with("head:");
        let digest = self.settings.digest_at.is_some();
        let mut g = self.state.groups.remove(rkey)?;
        g.next_flush = None;
        g.urgent_due = None;
        // without a digest, still-firing alerts are listed again after repeat_interval
        if !digest {
            for (k, &l) in &g.notified {
                if l + repeat <= at {
                    g.unsent.insert(k.clone());
                }
            }
        }
        let mut items = Vec::new();
        let mut keep = BTreeSet::new();
        let mut acked = Vec::new();
        let mut muted = 0;
        for k in std::mem::take(&mut g.unsent) {
            let Some(f) = self.state.alerts.get(&k) else {
                continue;
            };
            if self.inhibited(&f.info) {
                continue;
            }
            if self.held(&f.info) {
                keep.insert(k);
                continue;
            }
            if self.silenced(&f.info, at) {
                muted += 1;
                keep.insert(k);
                continue;
            }
            if self.acked(&f.info) {
                // the unit said it is handled: no reminder until its next event
                acked.push(k);
                continue;
            }
            let status = match g.notified.get(&k) {
                None if head => Status::Escalated,
                None => Status::New,
                Some(_) => Status::Firing,
            };
            items.push(Item {
                info: f.info.clone(),
                status,
                resolved_at: None,
            });
        }
        g.unsent = keep;
        for k in acked {
            g.notified.entry(k).or_insert(at);
        }
        self.state.muted += muted;
        let mut resolved = Vec::new();
        if !items.is_empty() || self.settings.send_resolved {
            for (info, when) in std::mem::take(&mut g.resolved) {
                // a due_soon ended by its record's overdue is not news
                if info.kind == AlertKind::DueSoon
                    && self
                        .state
                        .alerts
                        .contains_key(&key(AlertKind::Overdue, &info.record_id))
                {
                    continue;
                }
                if self.silenced(&info, at) {
                    continue;
                }
                resolved.push(Item {
                    info,
                    status: Status::Resolved,
                    resolved_at: Some(when),
                });
            }
        }
        // Ended-before-told alerts ride along with an e-mail that goes anyway;
        // with a digest, the digest takes them otherwise (no e-mail of their own).
        if !items.is_empty() || !resolved.is_empty() || self.settings.digest_at.is_none() {
            let mut ended = self.take_ended(&mut g, cal);
            sort_worst_first(&mut ended, at);
            resolved.extend(ended);
        }
        // what a silence muted is told when the silence ends
        let release = g
            .unsent
            .iter()
            .filter_map(|k| self.state.alerts.get(k))
            .flat_map(|f| {
                self.silences()
                    .filter(|s| s.mutes(&f.info, at))
                    .map(|s| s.ends_at)
            })
            .min();
        if items.is_empty() && resolved.is_empty() {
            if !g.members.is_empty()
                || !g.resolved.is_empty()
                || !g.ended.is_empty()
                || g.last_flush.is_some()
            {
                self.state.groups.insert(rkey.to_string(), g);
                self.arm_reminder(rkey, at + self.settings.group_interval.max(1));
                if let Some(e) = release {
                    self.schedule(rkey, e - self.settings.group_wait);
                }
            }
            return None;
        }
        g.last_flush = Some(at);
        for it in &items {
            g.notified.insert(key(it.info.kind, &it.info.record_id), at);
        }
        self.state.groups.insert(rkey.to_string(), g);
        self.arm_reminder(rkey, at + self.settings.group_interval.max(1));
        if let Some(e) = release {
            self.schedule(rkey, e - self.settings.group_wait);
        }
        let capped = self.cap(&mut items, at, |i| i.status != Status::Firing);
        items.extend(resolved);
        self.state.seq += 1;
        Some(Outgoing {
            seq: self.state.seq,
            at,
            recipient: rkey.to_string(),
            kind: Kind::Update,
            items,
            omitted: capped.omitted,
            omitted_by_kind: capped.by_kind,
            by_unit: capped.by_unit,
            instance: self.state.instance.clone(),
        })
    }

    fn digest(&mut self, at: Instant, cal: &Calendar, out: &mut Vec<Outgoing>) {
        let keys: Vec<String> = self.state.groups.keys().cloned().collect();
        for rkey in keys {
            // what ended before it was told is named here at the latest
            let mut ended = match self.state.groups.remove(&rkey) {
                Some(mut g) => {
                    let e = self.take_ended(&mut g, cal);
                    self.state.groups.insert(rkey.clone(), g);
                    e
                }
                None => continue,
            };
            sort_worst_first(&mut ended, at);
            let Some(g) = self.state.groups.get(&rkey) else {
                continue;
            };
            let mut items = Vec::new();
            for k in &g.members {
                let Some(f) = self.state.alerts.get(k) else {
                    continue;
                };
                if self.inhibited(&f.info) || self.held(&f.info) || self.silenced(&f.info, at) {
                    continue;
                }
                let status = if self.acked(&f.info) {
                    Status::Acknowledged
                } else if rkey.starts_with("head:") {
                    Status::Escalated
                } else {
                    Status::Firing
                };
                items.push(Item {
                    info: f.info.clone(),
                    status,
                    resolved_at: None,
                });
            }
            if items.is_empty() && ended.is_empty() {
                continue;
            }
            let untold: BTreeSet<String> = g.unsent.clone();
            // what the digest lists is told: no separate reminder for a day
            // (and, with batch times, not listed again as new in the next batch)
            let batches = !self.settings.batch_at.is_empty();
            if let Some(g) = self.state.groups.get_mut(&rkey) {
                for it in &items {
                    let k = key(it.info.kind, &it.info.record_id);
                    if batches {
                        g.unsent.remove(&k);
                    }
                    g.notified.insert(k, at);
                }
                if batches && g.unsent.is_empty() {
                    g.urgent_due = None;
                }
            }
            // acknowledged records are listed apart, after the rest, at most
            // `max_items` of them (the unit page has them all)
            let (mut acked, rest): (Vec<Item>, Vec<Item>) = items
                .into_iter()
                .partition(|i| i.status == Status::Acknowledged);
            items = rest;
            if items.is_empty() && ended.is_empty() {
                // only acknowledged records: nothing asks for action today
                continue;
            }
            let capped = self.cap(&mut items, at, |i| {
                untold.contains(&key(i.info.kind, &i.info.record_id))
            });
            sort_worst_first(&mut acked, at);
            acked.truncate(self.settings.max_items);
            items.extend(acked);
            items.extend(ended);
            self.state.seq += 1;
            out.push(Outgoing {
                seq: self.state.seq,
                at,
                recipient: rkey,
                kind: Kind::Digest,
                items,
                omitted: capped.omitted,
                omitted_by_kind: capped.by_kind,
                by_unit: capped.by_unit,
                instance: self.state.instance.clone(),
            });
        }
        let send_resolved = self.settings.send_resolved;
        self.state.groups.retain(|_, g| {
            // resolutions are told on their own at the flush already scheduled
            if !send_resolved {
                g.resolved.clear();
            }
            !g.members.is_empty() || g.next_flush.is_some()
        });
    }

    /// Orders `items` worst first, those never told before the others, and
    /// keeps at most `max_items` of the ones already told: every alert is named
    /// in at least one e-mail, and the cap only shortens reminders. Returns how
    /// many were left out.
    fn cap(&self, items: &mut Vec<Item>, at: Instant, untold: impl Fn(&Item) -> bool) -> Capped {
        let by_unit = by_unit(items);
        let (mut new, mut told): (Vec<Item>, Vec<Item>) = items.drain(..).partition(|i| untold(i));
        sort_worst_first(&mut new, at);
        sort_worst_first(&mut told, at);
        let mut by_kind = [0; AlertKind::ALL.len()];
        for it in told.iter().skip(self.settings.max_items) {
            by_kind[it.info.kind as usize] += 1;
        }
        let omitted = told.len().saturating_sub(self.settings.max_items);
        told.truncate(self.settings.max_items);
        items.extend(new);
        items.extend(told);
        Capped {
            omitted,
            by_kind,
            by_unit,
        }
    }

    /// With batch times, where a flush of group `rkey` due at `t` goes instead:
    /// `Some(Some(b))` — to the batch instant `b`; `Some(None)` — nowhere (a
    /// parent head hears once a working day, in the digest); `None` — it happens
    /// at `t` (immediate mail, a batch instant, or a `due_soon` that would
    /// otherwise be told after its due time).
    fn batch_instant(&self, rkey: &str, t: Instant, cal: &Calendar) -> Option<Option<Instant>> {
        if self.settings.batch_at.is_empty() {
            return None;
        }
        if rkey.starts_with("head:") && self.settings.digest_at.is_some() {
            return Some(None);
        }
        let b = self.next_batch_at_or_after(t, cal)?;
        if b == t {
            return None;
        }
        let next_send = self.state.next_digest.map_or(b, |d| d.min(b));
        let g = self.state.groups.get(rkey)?;
        if g.urgent_due.is_some_and(|d| d <= next_send) {
            return None;
        }
        Some(Some(b))
    }

    /// The first batch instant at or after `t` (a working day at a `batch_at`).
    fn next_batch_at_or_after(&self, t: Instant, cal: &Calendar) -> Option<Instant> {
        let day0 = cal.local_day(t);
        (day0..day0 + 400)
            .filter(|&d| cal.is_working_day(d))
            .flat_map(|d| {
                let start = cal.day_start(d);
                self.settings
                    .batch_at
                    .iter()
                    .map(move |&s| start + s * SECOND)
            })
            .find(|&i| i >= t)
    }

    /// The first digest instant after `t` (a working day at `digest_at`).
    fn next_digest_after(&self, t: Instant, cal: &Calendar) -> Option<Instant> {
        let at = self.settings.digest_at?;
        let day0 = cal.local_day(t);
        (day0..day0 + 400)
            .filter(|&d| cal.is_working_day(d))
            .map(|d| cal.day_start(d) + at * SECOND)
            .find(|&i| i > t)
    }
}

/// What [`Notifier::cap`] left out.
struct Capped {
    omitted: usize,
    by_kind: [usize; AlertKind::ALL.len()],
    by_unit: Vec<(String, [usize; AlertKind::ALL.len()])>,
}

/// Firing alerts per unit holding the records, by kind, by unit code.
fn by_unit(items: &[Item]) -> Vec<(String, [usize; AlertKind::ALL.len()])> {
    let mut m: BTreeMap<&str, [usize; AlertKind::ALL.len()]> = BTreeMap::new();
    for it in items.iter().filter(|i| i.status.is_action()) {
        m.entry(it.info.unit.as_str()).or_default()[it.info.kind as usize] += 1;
    }
    m.into_iter().map(|(u, c)| (u.to_string(), c)).collect()
}

/// Worst first: overdue (longest overdue first), unrouted, due soon (nearest due
/// first), hanging (oldest first); then by record id for a stable order.
pub fn sort_worst_first(items: &mut [Item], _now: Instant) {
    fn rank(k: AlertKind) -> u8 {
        match k {
            AlertKind::Overdue => 0,
            AlertKind::Unrouted => 1,
            AlertKind::DueSoon => 2,
            AlertKind::Hanging => 3,
        }
    }
    // what asks for action, then what the unit acknowledged, then ends
    let group = |s: Status| (!s.is_action() as u8) + s.is_end() as u8;
    items.sort_by(|a, b| {
        group(a.status)
            .cmp(&group(b.status))
            .then(rank(a.info.kind).cmp(&rank(b.info.kind)))
            .then(match a.info.kind {
                AlertKind::Hanging | AlertKind::Unrouted => a.info.fired_at.cmp(&b.info.fired_at),
                _ => a.info.due.cmp(&b.info.due),
            })
            .then(a.info.record_id.cmp(&b.info.record_id))
    });
}

#[cfg(test)]
mod tests;
