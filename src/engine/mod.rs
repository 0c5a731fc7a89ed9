//! The deadline engine: record state, timers and alert rules (docs/spec.md §2–§4).
//!
//! One [`Engine`] holds every record of a stream. It is driven by two calls, both
//! with time injected by the caller (replay: event time; daemon: wall clock):
//! * [`Engine::apply`] — one validated event; returns whether it was applied,
//!   ignored or rejected. A rejected event changes nothing, not even the clock.
//!   Before an accepted event is applied, every timer due at or before its `at`
//!   fires (docs/spec.md §6);
//! * [`Engine::advance`] — fire every timer due at or before an instant.
//!
//! Alert transitions are appended to [`Engine::transitions`]; callers drain it after
//! each call (a transition names its record by slot, valid until the next call).
//!
//! Each record has one timer in the [`wheel`], at the earliest of its pending
//! instants (`hanging`, `due_soon`, `overdue`, or, once closed, the end of its
//! retention). Firing handles every kind due at that instant in the spec's kind
//! order, then re-arms the record at its next instant; batches of one second are
//! sorted by (time, record id) so the output order is exactly the spec's.
//!
//! The rules, as implemented (docs/spec.md §4; decisions the spec leaves open are marked):
//! * every firing alert belongs to the current holder: a `forwarded` to another
//!   unit resolves them all and re-fires `unrouted` (unknown unit), `due_soon` and
//!   `overdue` (if they were firing) for the new holder at the same instant;
//! * thresholds are resolved (unit override, then sector override, then default)
//!   when a timer is set: `hanging` on every event that restarts it, `due_soon`
//!   when the due time is set (`received`, `snapshot`, `resumed`, `extended`);
//! * a timer whose instant is at or before the event that sets it fires with that
//!   event's `at`, right after it;
//! * decision: `paused` on a paused record and `resumed` on a running one change no
//!   due time; like any event they resolve `hanging`, and the latter restarts it;
//! * decision: a `snapshot` of an open record replaces holder, due time, receipt and
//!   pause state (resolving and re-firing alerts as a `forwarded` / `extended`
//!   would), but keeps the report attribution (receiving unit, sector) of the
//!   event that opened it, so a record is never counted twice.

pub mod calendar;
pub mod directory;
mod rules;
pub mod settings;
mod snapshot;
mod store;
pub mod view;
mod wheel;

use crate::event::{Channel, Event, EventType, IgnoreReason, PauseReason, RejectReason, Rejection};
use crate::report::{Counts, Report, Usage};
use crate::time::{Instant, SECOND};
use calendar::{Calendar, DurationUnit, LegalDuration};
use directory::Directory;
pub use settings::{Coverage, Rules, Settings, SupplementPolicy, ThresholdOverride, Thresholds};
pub use snapshot::SnapshotError;
use std::fmt;
use store::{flag, Life, Record, Store};
use wheel::Wheel;

/// The kinds of alert, in the spec's tie-break order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    /// The record names a unit missing from the directory.
    Unrouted = 0,
    /// No action recorded for `hanging_after` working hours.
    Hanging = 1,
    /// The due time is near.
    DueSoon = 2,
    /// The due time has passed.
    Overdue = 3,
}

impl AlertKind {
    /// All kinds, in order.
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Unrouted,
        AlertKind::Hanging,
        AlertKind::DueSoon,
        AlertKind::Overdue,
    ];
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Unrouted => "unrouted",
            AlertKind::Hanging => "hanging",
            AlertKind::DueSoon => "due_soon",
            AlertKind::Overdue => "overdue",
        }
    }
    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    #[inline]
    fn bit(self) -> u16 {
        1 << (flag::FIRING_SHIFT + self as u16)
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Fire time (firing) or time of what resolved it (resolved).
    pub at: Instant,
    /// The record's slot ([`Engine::record_id`]).
    pub slot: u32,
    /// Which alert.
    pub kind: AlertKind,
    /// Firing (true) or resolved (false).
    pub firing: bool,
    /// The unit the alert belongs to ([`Engine::unit_code`]).
    pub unit: u32,
    /// For `unrouted` raised by a forward: the unit that forwarded the record
    /// (it is told, docs/spec.md §4); `u32::MAX` otherwise.
    pub from: u32,
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied to the record.
    Applied,
    /// Valid but ignored (counted, not dead-lettered).
    Ignored(IgnoreReason),
    /// Rejected: dead-letter it.
    Rejected(Rejection),
}

/// Counters the engine keeps (exported as metrics by the daemon).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Applied or ignored events by type.
    pub events: [u64; 11],
    /// Rejections by reason (engine-level ones; the decoder's are counted by the caller).
    pub rejected: [u64; RejectReason::ALL.len()],
    /// Ignored events by reason.
    pub ignored: [u64; 2],
    /// Alerts fired by kind.
    pub alerts: [u64; 4],
    /// Timer fires handled.
    pub fires: u64,
}

/// The engine.
pub struct Engine {
    /// The default calendar, then the named profiles (a unit's `calendar`
    /// indexes it). Local dates are the same in all of them.
    cals: Vec<Calendar>,
    dir: Directory,
    rules: Rules,
    unit_over: Vec<Option<ThresholdOverride>>,
    sector_over: Vec<Option<ThresholdOverride>>,
    unknown_sector: u32,
    store: Store,
    wheel: Wheel,
    clock: Instant,
    batch: Vec<(Instant, u32)>,
    keyed: Vec<Due>,
    open: usize,
    /// Alert transitions since the last drain.
    pub transitions: Vec<Transition>,
    /// Counters.
    pub stats: Stats,
    by_unit: Vec<Counts>,
    /// Pause and extension use and late records held, by unit (the holder).
    usage: Vec<Usage>,
    by_sector: Vec<Counts>,
    /// Records received by (receiving unit, sector, channel) — `overdued_records_received_total`.
    pub received_by: hashbrown::HashMap<(u32, u32, u8), u64>,
    /// Records judged by (receiving unit, sector, timeliness 0 early / 1 on time / 2 late).
    pub judged_by: hashbrown::HashMap<(u32, u32, u8), u64>,
    /// Counts by (local month as year*12+month-1, receiving unit, sector): receipts
    /// count in the month received, closures in the month closed (the rates API).
    pub monthly: hashbrown::HashMap<(i32, u32, u32), Counts>,
}

/// A record as the JSON API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordView {
    /// Record code.
    pub record_id: String,
    /// `open` or `closed`.
    pub state: &'static str,
    /// Whether the clock is stopped.
    pub paused: bool,
    /// Unit holding it.
    pub holder: String,
    /// Unit that received it (report attribution).
    pub receiving_unit: String,
    /// Level of the receiving unit.
    pub level: String,
    /// Sector.
    pub sector: String,
    /// Procedure code (empty when not in the catalogue).
    pub procedure: String,
    /// Submission channel.
    pub channel: &'static str,
    /// Receipt time.
    pub received_at: String,
    /// Current due time.
    pub due_at: String,
    /// Due time before extensions (judging).
    pub original_due_at: String,
    /// Working time left until the due time (negative: overdue by), in hours, as of now.
    pub working_hours_left: f64,
    /// Firing alerts.
    pub firing: Vec<&'static str>,
    /// Pending timers.
    pub hanging_at: Option<String>,
    /// Pending timers.
    pub due_soon_at: Option<String>,
}

/// Month index (year*12 + month-1) of a local date.
pub fn month_index(cal: &Calendar, t: Instant) -> i32 {
    let (y, m, _) = cal.local_date(t);
    y * 12 + m as i32 - 1
}

/// Open records by (holder unit, sector): open, hanging, due_soon, overdue, paused.
pub type GaugeMap = std::collections::HashMap<(u32, u32), [u64; 5]>;

/// Event-id hashes keep 40 bits: duplicates are looked for among one
/// record's events only, where two distinct ids collide with a chance of
/// about n²/2⁴¹ (10⁻¹¹ for a record's five events), and a snapshot then
/// spends 5 bytes on each instead of 8.
pub(crate) const EVENT_HASH_MASK: u64 = (1 << 40) - 1;

#[inline]
fn event_hash(id: &str) -> u64 {
    (xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), 0x6576_656e_7469_6473) & EVENT_HASH_MASK)
        .max(1)
}

impl Engine {
    /// An engine over a validated configuration.
    pub fn new(cfg: &Settings) -> Engine {
        let mut dir = cfg.directory.clone();
        let unknown_sector = dir.sectors.intern("unknown");
        let mut e = Engine {
            cals: calendars(cfg),
            rules: cfg.rules.clone(),
            unit_over: Vec::new(),
            sector_over: Vec::new(),
            unknown_sector,
            store: Store::default(),
            wheel: Wheel::default(),
            clock: i64::MIN,
            batch: Vec::new(),
            keyed: Vec::new(),
            open: 0,
            transitions: Vec::new(),
            stats: Stats::default(),
            by_unit: Vec::new(),
            usage: Vec::new(),
            by_sector: Vec::new(),
            received_by: Default::default(),
            judged_by: Default::default(),
            monthly: Default::default(),
            dir,
        };
        e.set_overrides(&cfg.rules);
        e
    }

    fn set_overrides(&mut self, rules: &Rules) {
        self.unit_over.clear();
        self.sector_over.clear();
        for (code, o) in &rules.by_unit {
            if let Some(u) = self.dir.unit_id(code) {
                set_over(&mut self.unit_over, u, *o);
            }
        }
        for (code, o) in &rules.by_sector {
            let s = self.dir.sectors.intern(code);
            set_over(&mut self.sector_over, s, *o);
        }
    }

    /// Swaps in a new configuration (SIGHUP), keeping every record.
    ///
    /// Unit, sector and procedure ids are re-interned by code, so records, counts
    /// and firing alerts carry over. New calendar and thresholds apply to timers
    /// set from now on; timers already armed keep their instants. A record whose
    /// procedure left the catalogue keeps its due time; a later supplement restart
    /// then counts the working time between its receipt and its original due time.
    pub fn reconfigure(&mut self, cfg: &Settings) {
        let old = std::mem::replace(&mut self.dir, cfg.directory.clone());
        self.unknown_sector = self.dir.sectors.intern("unknown");
        let units: Vec<u32> = (0..old.unit_names.len() as u32)
            .map(|i| self.dir.unit_names.intern(old.unit_names.name(i)))
            .collect();
        let sectors: Vec<u32> = (0..old.sectors.len() as u32)
            .map(|i| self.dir.sectors.intern(old.sectors.name(i)))
            .collect();
        let procs: Vec<u32> = old
            .procedures
            .iter()
            .map(|p| {
                self.dir
                    .procedure_ids
                    .get(&p.code)
                    .copied()
                    .unwrap_or(u32::MAX)
            })
            .collect();
        let map = |v: &[u32], i: u32| v.get(i as usize).copied().unwrap_or(i);
        let slots: Vec<u32> = self.store.slots().collect();
        for slot in slots {
            let r = self.store.get_mut(slot);
            // the old directory's profile: the due time was set on it
            let cal = &self.cals[old.calendar_of(r.recv_unit).min(self.cals.len() - 1)];
            if r.life() == Life::Free {
                continue;
            }
            r.holder = map(&units, r.holder);
            r.recv_unit = map(&units, r.recv_unit);
            r.due_holder = map(&units, r.due_holder);
            let sec = map(&sectors, r.sector());
            r.set_sector(sec);
            if r.procedure != u32::MAX {
                r.procedure = map(&procs, r.procedure);
                if r.procedure == u32::MAX && r.flags() & flag::FROM_DUE_AT == 0 {
                    r.base_secs = (cal.working_between(r.received_at, r.orig_due) / SECOND)
                        .clamp(0, u32::MAX as i64) as u32;
                    r.set(flag::FROM_DUE_AT, true);
                }
            }
        }
        let mut by_unit = vec![Counts::default(); self.dir.unit_names.len()];
        for (i, c) in self.by_unit.iter().enumerate() {
            by_unit[map(&units, i as u32) as usize].add(c);
        }
        self.by_unit = by_unit;
        let mut usage = vec![Usage::default(); self.dir.unit_names.len()];
        for (i, c) in self.usage.iter().enumerate() {
            usage[map(&units, i as u32) as usize].add(c);
        }
        self.usage = usage;
        let mut by_sector = vec![Counts::default(); self.dir.sectors.len()];
        for (i, c) in self.by_sector.iter().enumerate() {
            by_sector[map(&sectors, i as u32) as usize].add(c);
        }
        self.by_sector = by_sector;
        self.received_by = self
            .received_by
            .drain()
            .map(|((u, s, c), n)| ((map(&units, u), map(&sectors, s), c), n))
            .collect();
        self.judged_by = self
            .judged_by
            .drain()
            .map(|((u, s, t), n)| ((map(&units, u), map(&sectors, s), t), n))
            .collect();
        let monthly: Vec<_> = self.monthly.drain().collect();
        for ((m, u, s), c) in monthly {
            self.monthly
                .entry((m, map(&units, u), map(&sectors, s)))
                .or_default()
                .add(&c);
        }
        self.cals = calendars(cfg);
        self.rules = cfg.rules.clone();
        self.set_overrides(&cfg.rules);
    }

    /// The simulated (or wall) clock: the largest instant seen.
    pub fn clock(&self) -> Instant {
        self.clock
    }

    /// Number of open records.
    pub fn open_records(&self) -> usize {
        self.open
    }

    /// Records held, open or closed (retained).
    pub fn held_records(&self) -> usize {
        self.store.len()
    }

    /// Armed timers.
    pub fn armed_timers(&self) -> usize {
        self.wheel.len()
    }

    /// The default calendar (local dates and times).
    pub fn calendar(&self) -> &Calendar {
        &self.cals[0]
    }

    /// The calendar profile of the unit `code` (the default for units outside
    /// the directory).
    pub fn calendar_of(&self, code: &str) -> &Calendar {
        self.dir
            .unit_id(code)
            .map_or(&self.cals[0], |u| self.cal(u))
    }

    /// The calendar profile of unit id `u`.
    #[inline]
    fn cal(&self, u: u32) -> &Calendar {
        &self.cals[self.dir.calendar_of(u)]
    }

    /// The directory (with unknown unit codes seen so far).
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// Id of the record in `slot`.
    pub fn record_id(&self, slot: u32) -> &str {
        self.store.id(slot)
    }

    /// Code of unit id `u`.
    pub fn unit_code(&self, u: u32) -> &str {
        self.dir.unit_names.name(u)
    }

    /// The record state in `slot`.
    pub fn record(&self, slot: u32) -> &Record {
        self.store.get(slot)
    }

    /// Slot of a held record.
    pub fn find(&self, record_id: &str) -> Option<u32> {
        self.store.find(record_id)
    }

    fn thresholds(&self, unit: u32, sector: u32) -> Thresholds {
        rules::thresholds(
            self.rules.defaults,
            self.sector_over
                .get(sector as usize)
                .and_then(Option::as_ref),
            self.unit_over.get(unit as usize).and_then(Option::as_ref),
        )
    }

    fn unit_of(&mut self, code: &str) -> u32 {
        let u = self.dir.unit_names.intern(code);
        if self.by_unit.len() <= u as usize {
            self.by_unit.resize(u as usize + 1, Counts::default());
            self.usage.resize(u as usize + 1, Usage::default());
        }
        u
    }

    fn sector_of(&mut self, code: &str) -> u32 {
        let s = self.dir.sectors.intern(code);
        if self.by_sector.len() <= s as usize {
            self.by_sector.resize(s as usize + 1, Counts::default());
        }
        s
    }

    /// Applies one validated event (docs/spec.md §2, §4, §6).
    pub fn apply(&mut self, ev: &Event<'_>) -> Outcome {
        self.store.recycle();
        let evh = event_hash(&ev.event_id);
        let found = self.store.find(&ev.record_id).filter(|&s| {
            let r = self.store.get(s);
            // a closed record past its retention is forgotten, even before its purge fires
            !(r.life() == Life::Closed && r.node.at <= ev.at)
        });
        enum Plan {
            New,
            Open(u32),
            Ignore(IgnoreReason),
        }
        let plan = match found {
            Some(s) => {
                let r = self.store.get(s);
                if r.has_event(evh) {
                    Plan::Ignore(IgnoreReason::DuplicateEvent)
                } else if r.life() == Life::Closed {
                    Plan::Ignore(IgnoreReason::ClosedRecord)
                } else {
                    match ev.kind {
                        EventType::Received => {
                            return self
                                .reject(RejectReason::DuplicateRecord, "record already open")
                        }
                        EventType::Extended if ev.due_at.is_some_and(|d| d < r.received_at) => {
                            return self.reject(RejectReason::DueBeforeReceived, "due_at")
                        }
                        EventType::Snapshot if ev.due_at.is_none() && !self.known_procedure(ev) => {
                            return self.reject(RejectReason::UnknownProcedure, "procedure")
                        }
                        _ => Plan::Open(s),
                    }
                }
            }
            None => match ev.kind {
                EventType::Received | EventType::Snapshot => {
                    if ev.due_at.is_none() && !self.known_procedure(ev) {
                        return self.reject(RejectReason::UnknownProcedure, "procedure");
                    }
                    Plan::New
                }
                _ => {
                    return self.reject(RejectReason::UnknownRecord, "no open record with this id")
                }
            },
        };
        self.advance(ev.at);
        self.stats.events[ev.kind.index()] += 1;
        let first = self.transitions.len();
        match plan {
            Plan::Ignore(r) => {
                self.stats.ignored[r.index()] += 1;
                return Outcome::Ignored(r);
            }
            Plan::New => self.open_record(ev, evh),
            Plan::Open(s) => self.apply_open(s, ev, evh),
        }
        // One event's transitions share its instant: resolutions first, then what
        // fires, each in the spec's kind order.
        self.transitions[first..].sort_by_key(|t| (t.firing, t.kind));
        Outcome::Applied
    }

    fn known_procedure(&self, ev: &Event<'_>) -> bool {
        ev.procedure
            .as_ref()
            .is_some_and(|p| self.dir.procedure_ids.contains_key(p.as_ref()))
    }

    fn reject(&mut self, reason: RejectReason, detail: &'static str) -> Outcome {
        self.stats.rejected[reason.index()] += 1;
        Outcome::Rejected(Rejection::new(reason, detail))
    }

    fn emit(&mut self, at: Instant, slot: u32, kind: AlertKind, firing: bool) {
        let r = self.store.get_mut(slot);
        r.set(kind.bit(), firing);
        let unit = r.holder;
        if firing {
            self.stats.alerts[kind as usize] += 1;
        }
        self.transitions.push(Transition {
            at,
            slot,
            kind,
            firing,
            unit,
            from: u32::MAX,
        });
    }

    #[inline]
    fn firing(&self, slot: u32, kind: AlertKind) -> bool {
        self.store.get(slot).flags() & kind.bit() != 0
    }

    /// Resolves every firing alert of the record, in kind order.
    fn resolve_all(&mut self, slot: u32, at: Instant) {
        for k in AlertKind::ALL {
            if self.firing(slot, k) {
                self.emit(at, slot, k, false);
            }
        }
    }

    fn open_record(&mut self, ev: &Event<'_>, evh: u64) {
        let unit = self.unit_of(ev.unit.as_deref().unwrap_or_default());
        let proc = ev
            .procedure
            .as_ref()
            .and_then(|p| self.dir.procedure_ids.get(p.as_ref()).copied());
        let sector = match (&ev.sector, proc) {
            (Some(s), _) => self.sector_of(s),
            (None, Some(p)) => {
                let s = self.dir.procedures[p as usize].sector;
                if self.by_sector.len() <= s as usize {
                    self.by_sector.resize(s as usize + 1, Counts::default());
                }
                s
            }
            (None, None) => {
                let s = self.unknown_sector;
                if self.by_sector.len() <= s as usize {
                    self.by_sector.resize(s as usize + 1, Counts::default());
                }
                s
            }
        };
        let mut rec = Record::default();
        rec.holder = unit;
        rec.recv_unit = unit;
        rec.due_holder = unit;
        rec.procedure = proc.unwrap_or(u32::MAX);
        rec.set_sector(sector);
        rec.set_life(Life::Open);
        rec.set_field(
            flag::CHANNEL,
            flag::CHANNEL_SHIFT,
            ev.channel.index() as u16,
        );
        rec.add_event(evh);
        set_due_source(self.cal(unit), &self.dir, &mut rec, ev);
        let slot = self.store.insert(&ev.record_id, rec);
        self.open += 1;
        self.by_unit[unit as usize].received += 1;
        self.by_sector[sector as usize].received += 1;
        *self
            .received_by
            .entry((unit, sector, ev.channel.index() as u8))
            .or_default() += 1;
        let month = month_index(self.calendar(), ev.at);
        self.monthly
            .entry((month, unit, sector))
            .or_default()
            .received += 1;
        if ev.kind == EventType::Snapshot && ev.paused {
            self.pause(slot, ev.at, ev.reason.unwrap_or(PauseReason::Supplement));
            return;
        }
        if !self.dir.is_known(unit) {
            self.emit(ev.at, slot, AlertKind::Unrouted, true);
        }
        let hang_from = if ev.kind == EventType::Snapshot {
            ev.holder_since.unwrap_or(ev.at)
        } else {
            ev.at
        };
        self.arm_hanging(slot, hang_from);
        self.arm_due_soon(slot, ev.at);
        self.reschedule(slot, ev.at);
    }

    fn arm_hanging(&mut self, slot: u32, from: Instant) {
        let r = self.store.get(slot);
        let th = self.thresholds(r.holder, r.sector());
        let at = rules::hanging_at(self.cal(r.holder), from, th.hanging_after);
        self.store.get_mut(slot).hang_at = at;
    }

    /// Arms `due_soon` for a due time set by an event at `set_at`: only if its
    /// instant is later than that event (docs/spec.md §4).
    fn arm_due_soon(&mut self, slot: u32, set_at: Instant) {
        let r = self.store.get(slot);
        let th = self.thresholds(r.holder, r.sector());
        let ds = rules::due_soon_at(self.cal(r.holder), r.due, th.due_soon_before, set_at);
        self.store.get_mut(slot).due_soon_at = ds.unwrap_or(i64::MAX);
    }

    /// Puts the record's timer at its earliest pending instant (not before `now`).
    fn reschedule(&mut self, slot: u32, now: Instant) {
        let r = self.store.get(slot);
        let next = match r.life() {
            Life::Open if r.running() => {
                let mut n = r.hang_at;
                let f = r.flags();
                if f & AlertKind::DueSoon.bit() == 0 {
                    n = n.min(r.due_soon_at);
                }
                if f & AlertKind::Overdue.bit() == 0 {
                    n = n.min(r.due);
                }
                n
            }
            Life::Closed => r.node.at,
            _ => i64::MAX,
        };
        if next == i64::MAX {
            self.wheel.cancel(&mut self.store, slot);
        } else {
            self.wheel.arm(&mut self.store, slot, next.max(now));
        }
    }

    fn pause(&mut self, slot: u32, at: Instant, reason: PauseReason) {
        self.resolve_all(slot, at);
        let r = self.store.get_mut(slot);
        r.set(flag::PAUSED, true);
        r.set_field(flag::REASON, flag::REASON_SHIFT, reason.index() as u16);
        r.hang_at = i64::MAX;
        r.due_soon_at = at; // the pause start, while paused
        self.wheel.cancel(&mut self.store, slot);
    }

    fn apply_open(&mut self, slot: u32, ev: &Event<'_>, evh: u64) {
        let at = ev.at;
        self.store.get_mut(slot).add_event(evh);
        // Any event of the record resolves `hanging`.
        if self.firing(slot, AlertKind::Hanging) {
            self.emit(at, slot, AlertKind::Hanging, false);
        }
        let running = self.store.get(slot).running();
        if running {
            self.store.get_mut(slot).hang_at = i64::MAX;
        }
        match ev.kind {
            EventType::Advanced => {
                if running {
                    self.arm_hanging(slot, at);
                }
            }
            EventType::Forwarded => {
                let to = self.unit_of(ev.unit.as_deref().unwrap_or_default());
                if running {
                    self.rehome(slot, to, at);
                    self.arm_hanging(slot, at);
                } else {
                    self.store.get_mut(slot).holder = to;
                    self.note_holder(slot, to, at);
                }
            }
            EventType::Paused => {
                if running {
                    let reason = ev.reason.unwrap_or(PauseReason::Supplement);
                    self.count_pause(slot, at, reason);
                    self.pause(slot, at, reason);
                }
            }
            EventType::Resumed => {
                if running {
                    self.arm_hanging(slot, at);
                } else {
                    self.resume(slot, at);
                }
            }
            EventType::Extended => {
                let r = self.store.get(slot);
                let due = ev.due_at.unwrap_or(r.due);
                let u = &mut self.usage[r.holder as usize];
                u.extensions += 1;
                u.extensions_after_due += u64::from(at > r.due);
                self.store.get_mut(slot).due = due;
                if running {
                    self.settle_due(slot, at);
                    self.arm_hanging(slot, at);
                }
            }
            EventType::Resolved
            | EventType::Returned
            | EventType::Rejected
            | EventType::Withdrawn => {
                self.close(slot, ev.kind, at);
                return;
            }
            EventType::Snapshot => self.resnapshot(slot, ev),
            EventType::Received => {} // rejected before (duplicate_record)
        }
        self.reschedule(slot, at);
    }

    /// After the due time changed on a running record: resolve what the move ends,
    /// arm `due_soon` for the new due time (docs/spec.md §4, `extended`).
    fn settle_due(&mut self, slot: u32, at: Instant) {
        let due = self.store.get(slot).due;
        if self.firing(slot, AlertKind::Overdue) && rules::extension_ends_overdue(due, at) {
            self.emit(at, slot, AlertKind::Overdue, false);
        }
        if self.firing(slot, AlertKind::DueSoon) {
            let r = self.store.get(slot);
            let th = self.thresholds(r.holder, r.sector());
            if rules::extension_ends_due_soon(self.cal(r.holder), due, th.due_soon_before, at) {
                self.emit(at, slot, AlertKind::DueSoon, false);
                self.arm_due_soon(slot, at);
            }
        } else if self.firing(slot, AlertKind::Overdue) {
            self.store.get_mut(slot).due_soon_at = i64::MAX;
        } else {
            self.arm_due_soon(slot, at);
        }
    }

    /// The record is now held by `to` (from `at`, or its original due time
    /// moved to after `at`): while the original due time has not passed, that
    /// is who holds it at its due time.
    fn note_holder(&mut self, slot: u32, to: u32, at: Instant) {
        let r = self.store.get_mut(slot);
        if at <= r.orig_due {
            r.due_holder = to;
        }
    }

    /// Counts a `paused` event of a running record: a supplement asked later
    /// than `[rules] supplement_request_within_days` working days after
    /// receipt, and a record paused a second time.
    fn count_pause(&mut self, slot: u32, at: Instant, reason: PauseReason) {
        let r = self.store.get(slot);
        let holder = r.holder as usize;
        if reason == PauseReason::Supplement {
            let within = LegalDuration {
                n: self.rules.supplement_request_within_days,
                unit: DurationUnit::WorkingDays,
            };
            if at > self.cal(r.recv_unit).due(r.received_at, within) {
                self.usage[holder].late_supplement_requests += 1;
            }
        }
        let f = r.flags();
        if f & flag::PAUSED_BEFORE != 0 && f & flag::REPEAT_COUNTED == 0 {
            self.usage[holder].repeated_pauses += 1;
            self.store.get_mut(slot).set(flag::REPEAT_COUNTED, true);
        }
        self.store.get_mut(slot).set(flag::PAUSED_BEFORE, true);
    }

    /// Moves a running record to unit `to` (docs/spec.md §4, `forwarded`).
    fn rehome(&mut self, slot: u32, to: u32, at: Instant) {
        let from = self.store.get(slot).holder;
        self.note_holder(slot, to, at);
        if from == to {
            if !self.dir.is_known(to) && !self.firing(slot, AlertKind::Unrouted) {
                self.emit(at, slot, AlertKind::Unrouted, true);
            }
            return;
        }
        let was_ds = self.firing(slot, AlertKind::DueSoon);
        let was_od = self.firing(slot, AlertKind::Overdue);
        self.resolve_all(slot, at);
        self.store.get_mut(slot).holder = to;
        if !self.dir.is_known(to) {
            self.emit(at, slot, AlertKind::Unrouted, true);
            if let Some(t) = self.transitions.last_mut() {
                t.from = from;
            }
        }
        if was_ds {
            self.emit(at, slot, AlertKind::DueSoon, true);
        }
        if was_od {
            self.emit(at, slot, AlertKind::Overdue, true);
        }
    }

    fn resume(&mut self, slot: u32, at: Instant) {
        let policy = self.rules.supplement_policy;
        let r = self.store.get(slot);
        let reason = PauseReason::ALL[r.field(flag::REASON, flag::REASON_SHIFT) as usize % 3];
        let pause_start = r.due_soon_at;
        let basis = match self.dir.procedures.get(r.procedure as usize) {
            Some(p) if r.flags() & flag::FROM_DUE_AT == 0 => rules::DueBasis::Procedure(p.duration),
            _ => rules::DueBasis::WorkingTime(r.base_secs as i64 * SECOND),
        };
        let (due, orig) = rules::due_after_resume(
            self.cal(r.recv_unit),
            policy,
            reason,
            basis,
            pause_start,
            at,
            r.due,
            r.orig_due,
        );
        let r = self.store.get_mut(slot);
        r.due = due;
        r.orig_due = orig;
        r.set(flag::PAUSED, false);
        r.due_soon_at = i64::MAX;
        let holder = r.holder;
        self.note_holder(slot, holder, at);
        if !self.dir.is_known(holder) {
            self.emit(at, slot, AlertKind::Unrouted, true);
        }
        self.arm_due_soon(slot, at);
        self.arm_hanging(slot, at);
    }

    fn resnapshot(&mut self, slot: u32, ev: &Event<'_>) {
        let at = ev.at;
        let to = self.unit_of(ev.unit.as_deref().unwrap_or_default());
        let was_running = self.store.get(slot).running();
        let proc = ev
            .procedure
            .as_ref()
            .and_then(|p| self.dir.procedure_ids.get(p.as_ref()).copied());
        let rec = self.store.get_mut(slot);
        if let Some(p) = proc {
            rec.procedure = p;
        }
        let cal = &self.cals[self.dir.calendar_of(rec.recv_unit)];
        set_due_source(cal, &self.dir, rec, ev);
        self.note_holder(slot, to, at);
        if ev.paused {
            if was_running {
                self.pause(slot, at, ev.reason.unwrap_or(PauseReason::Supplement));
            }
            self.store.get_mut(slot).holder = to;
            return;
        }
        if !was_running {
            let r = self.store.get_mut(slot);
            r.set(flag::PAUSED, false);
            r.due_soon_at = i64::MAX;
            r.holder = to;
            if !self.dir.is_known(to) {
                self.emit(at, slot, AlertKind::Unrouted, true);
            }
            self.arm_due_soon(slot, at);
        } else {
            self.settle_due(slot, at);
            self.rehome(slot, to, at);
        }
        self.arm_hanging(slot, ev.holder_since.unwrap_or(at));
    }

    fn close(&mut self, slot: u32, kind: EventType, at: Instant) {
        self.resolve_all(slot, at);
        let retention = self.rules.closed_retention;
        let r = self.store.get_mut(slot);
        r.set_life(Life::Closed);
        r.hang_at = i64::MAX;
        r.due_soon_at = i64::MAX;
        let (unit, sector, orig_due) = (r.recv_unit as usize, r.sector() as usize, r.orig_due);
        let due_holder = r.due_holder as usize;
        let field = match kind {
            EventType::Rejected => Field::Rejected,
            EventType::Withdrawn => Field::Withdrawn,
            _ => match rules::timeliness(&self.cals[0], at, orig_due) {
                rules::Timeliness::Early => Field::Early,
                rules::Timeliness::OnTime => Field::OnTime,
                rules::Timeliness::Late => Field::Late,
            },
        };
        let t = match field {
            Field::Early => Some(0),
            Field::OnTime => Some(1),
            Field::Late => Some(2),
            _ => None,
        };
        if field == Field::Late {
            self.usage[due_holder].late_held += 1;
        }
        if let Some(t) = t {
            *self
                .judged_by
                .entry((unit as u32, sector as u32, t))
                .or_default() += 1;
        }
        let month = month_index(&self.cals[0], at);
        let monthly = self
            .monthly
            .entry((month, unit as u32, sector as u32))
            .or_default();
        for c in [
            &mut self.by_unit[unit],
            &mut self.by_sector[sector],
            monthly,
        ] {
            match field {
                Field::Rejected => c.rejected += 1,
                Field::Withdrawn => c.withdrawn += 1,
                Field::Early => c.early += 1,
                Field::OnTime => c.on_time += 1,
                _ => c.late += 1,
            }
        }
        self.open -= 1;
        // The timer now marks the end of the retention: the record is purged then.
        let purge_at = at.saturating_add(retention);
        self.wheel.arm(&mut self.store, slot, purge_at);
    }

    /// Fires every timer due at or before `now` (and moves the clock to `now` if later).
    pub fn advance(&mut self, now: Instant) {
        if now > self.clock {
            self.clock = now;
        }
        let now = self.clock;
        let mut batch = std::mem::take(&mut self.batch);
        loop {
            batch.clear();
            let Some(tick) = self.wheel.take_due_tick(&mut self.store, now, &mut batch) else {
                break;
            };
            if batch.len() == 1 {
                // The common case while events stream in: nothing to order.
                let (at, slot) = batch[0];
                self.fire(slot, at);
                continue;
            }
            // Pop from the end: sort descending by (time, record id). The keys
            // copy the ids' first bytes, so the sort reads each record once.
            let st = &self.store;
            let mut keyed: Vec<Due> = batch
                .iter()
                .map(|&(at, slot)| Due::new(st, at, slot))
                .collect();
            keyed.sort_unstable_by(|a, b| b.cmp(a, st));
            while let Some(d) = keyed.pop() {
                let slot = d.slot;
                self.fire(slot, d.at);
                // A re-arm within this same second must keep the global order.
                if Wheel::is_armed(&mut self.store, slot) {
                    let next = self.store.get(slot).node.at;
                    if next <= now && next.div_euclid(SECOND) as u64 == tick {
                        self.wheel.cancel(&mut self.store, slot);
                        let st = &self.store;
                        let k = Due::new(st, next, slot);
                        let pos =
                            keyed.partition_point(|x| x.cmp(&k, st) == std::cmp::Ordering::Greater);
                        keyed.insert(pos, k);
                    }
                }
            }
            self.keyed = keyed;
        }
        self.batch = batch;
    }

    /// Handles the record's timer at `t`: every kind due at `t`, in kind order.
    fn fire(&mut self, slot: u32, t: Instant) {
        self.stats.fires += 1;
        let r = self.store.get(slot);
        match r.life() {
            Life::Closed => {
                self.store.remove(slot);
                return;
            }
            Life::Free => return,
            Life::Open => {}
        }
        if !r.running() {
            return;
        }
        if r.hang_at <= t {
            self.store.get_mut(slot).hang_at = i64::MAX;
            self.emit(t, slot, AlertKind::Hanging, true);
        }
        let r = self.store.get(slot);
        if r.flags() & AlertKind::DueSoon.bit() == 0 && r.due_soon_at <= t {
            self.store.get_mut(slot).due_soon_at = i64::MAX;
            self.emit(t, slot, AlertKind::DueSoon, true);
        }
        let r = self.store.get(slot);
        if r.flags() & AlertKind::Overdue.bit() == 0 && r.due <= t {
            self.store.get_mut(slot).due_soon_at = i64::MAX;
            self.emit(t, slot, AlertKind::Overdue, true);
            if self.firing(slot, AlertKind::DueSoon) {
                self.emit(t, slot, AlertKind::DueSoon, false);
            }
        }
        self.reschedule(slot, t);
    }

    /// Counts as of `as_of` (docs/spec.md §6 `--report`): closed records from the running
    /// totals, open ones classified now.
    pub fn report(&self, as_of: Instant) -> Report {
        let mut by_unit = self.by_unit.clone();
        let mut by_sector = self.by_sector.clone();
        for slot in self.store.slots() {
            let r = self.store.get(slot);
            if r.life() != Life::Open {
                continue;
            }
            let cat = match rules::in_progress(as_of, r.orig_due, r.flags() & flag::PAUSED != 0) {
                rules::InProgress::Paused => Field::Paused,
                rules::InProgress::Overdue => Field::InProgressOverdue,
                rules::InProgress::Within => Field::InProgressWithin,
            };
            for c in [
                &mut by_unit[r.recv_unit as usize],
                &mut by_sector[r.sector() as usize],
            ] {
                match cat {
                    Field::Paused => c.paused += 1,
                    Field::InProgressOverdue => c.in_progress_overdue += 1,
                    _ => c.in_progress_within += 1,
                }
            }
        }
        let mut rep = Report::new(as_of);
        let mut local = Vec::with_capacity(32);
        let offset = self.calendar().utc_offset_secs(as_of);
        crate::time::write_rfc3339_offset(&mut local, as_of, offset);
        rep.as_of_local = String::from_utf8(local).ok();
        for (u, c) in by_unit.iter().enumerate() {
            let usage = self.usage.get(u).copied().unwrap_or_default();
            if c.is_empty() && usage.is_empty() {
                continue;
            }
            let code = self.dir.unit_names.name(u as u32);
            if !c.is_empty() {
                rep.add(code, self.dir.level_name(self.dir.level(u as u32)), c);
            } else {
                // held late records or used pauses, received none
                rep.by_unit.insert(code.to_string(), Counts::default());
            }
            if !usage.is_empty() {
                rep.usage.insert(code.to_string(), usage);
            }
            if let Some(unit) = self.dir.units.get(u) {
                rep.names.insert(code.to_string(), unit.name.clone());
            }
        }
        for (s, c) in by_sector.iter().enumerate() {
            if !c.is_empty() {
                rep.by_sector
                    .insert(self.dir.sectors.name(s as u32).to_string(), *c);
            }
        }
        rep
    }

    /// Adds this engine's open records to `out`, by (holder, sector).
    pub fn gauges(&self, out: &mut GaugeMap) {
        for slot in self.store.slots() {
            let r = self.store.get(slot);
            if r.life() != Life::Open {
                continue;
            }
            let g = out.entry((r.holder, r.sector())).or_default();
            let f = r.flags();
            g[0] += 1;
            g[1] += (f & AlertKind::Hanging.bit() != 0) as u64;
            g[2] += (f & AlertKind::DueSoon.bit() != 0) as u64;
            g[3] += (f & AlertKind::Overdue.bit() != 0) as u64;
            g[4] += (f & flag::PAUSED != 0) as u64;
        }
    }

    /// The API view of a held record, as of `now`.
    pub fn view(&self, slot: u32, now: Instant) -> RecordView {
        use crate::time::format_rfc3339 as f;
        let r = self.store.get(slot);
        let flags = r.flags();
        let firing = AlertKind::ALL
            .iter()
            .filter(|k| flags & k.bit() != 0)
            .map(|k| k.as_str())
            .collect();
        let cal = self.cal(r.recv_unit);
        let left = if r.due >= now {
            cal.working_between(now, r.due)
        } else {
            -cal.working_between(r.due, now)
        };
        let running = r.running();
        RecordView {
            record_id: self.store.id(slot).to_string(),
            state: if r.life() == Life::Open {
                "open"
            } else {
                "closed"
            },
            paused: flags & flag::PAUSED != 0,
            holder: self.unit_code(r.holder).to_string(),
            receiving_unit: self.unit_code(r.recv_unit).to_string(),
            level: self.level(r.recv_unit).to_string(),
            sector: self.sector_code(r.sector()).to_string(),
            procedure: self
                .dir
                .procedures
                .get(r.procedure as usize)
                .map(|p| p.code.clone())
                .unwrap_or_default(),
            channel: self.channel(slot).as_str(),
            received_at: f(r.received_at),
            due_at: f(r.due),
            original_due_at: f(r.orig_due),
            working_hours_left: left as f64 / crate::time::HOUR as f64,
            firing,
            hanging_at: (running && r.hang_at != i64::MAX).then(|| f(r.hang_at)),
            due_soon_at: (running
                && r.due_soon_at != i64::MAX
                && flags & AlertKind::DueSoon.bit() == 0)
                .then(|| f(r.due_soon_at)),
        }
    }

    /// What the notification stage needs to know about an alert transition:
    /// the record as it is now (due time, procedure, sector), the unit the alert
    /// belongs to, and for `overdue` the escalation instant (`escalate_after`
    /// working hours past due, thresholds of the holder and sector).
    pub fn alert_info(&self, t: &Transition) -> view::AlertInfo {
        let r = self.store.get(t.slot);
        let th = self.thresholds(t.unit, r.sector());
        let proc = self.dir.procedures.get(r.procedure as usize);
        view::AlertInfo {
            record_id: self.store.id(t.slot).to_string(),
            kind: t.kind,
            unit: self.unit_code(t.unit).to_string(),
            sector: self.sector_code(r.sector()).to_string(),
            procedure: proc.map(|p| p.code.clone()).unwrap_or_default(),
            received_at: r.received_at,
            due: r.due,
            fired_at: t.at,
            escalate_at: (t.kind == AlertKind::Overdue && t.firing)
                .then(|| self.cal(t.unit).forward(r.due, th.escalate_after)),
            forwarder: (t.from != u32::MAX).then(|| self.unit_code(t.from).to_string()),
            partition: None,
        }
    }

    /// Firing alerts of open records from slot `from` on: (slot, kind), at most `limit`;
    /// also returns the slot to continue from.
    pub fn firing_alerts(
        &self,
        from: u32,
        limit: usize,
        mut keep: impl FnMut(u32, AlertKind) -> bool,
    ) -> (Vec<(u32, AlertKind)>, Option<u32>) {
        let mut out = Vec::new();
        for slot in self.store.slots().skip(from as usize) {
            let r = self.store.get(slot);
            if r.life() != Life::Open || r.flags() & flag::FIRING == 0 {
                continue;
            }
            let mut kinds = [AlertKind::Overdue; AlertKind::ALL.len()];
            let mut n = 0;
            for k in AlertKind::ALL {
                if r.flags() & k.bit() != 0 && keep(slot, k) {
                    kinds[n] = k;
                    n += 1;
                }
            }
            // a page never holds more than `limit`, nor half a record's alerts
            // (unless one record alone has more)
            if n > 0 && out.len() + n > limit && !out.is_empty() || out.len() >= limit && n > 0 {
                return (out, Some(slot));
            }
            out.extend(kinds[..n].iter().map(|&k| (slot, k)));
        }
        (out, None)
    }

    /// Sector code of sector id `s`.
    pub fn sector_code(&self, s: u32) -> &str {
        self.dir.sectors.name(s)
    }

    /// Level name of unit id `u` (`unknown` outside the directory).
    pub fn level(&self, u: u32) -> &str {
        self.dir.level_name(self.dir.level(u))
    }

    /// The channel a record was submitted through.
    pub fn channel(&self, slot: u32) -> Channel {
        Channel::ALL[self
            .store
            .get(slot)
            .field(flag::CHANNEL, flag::CHANNEL_SHIFT) as usize
            % 3]
    }
}

/// A due timer with its sort key: fire time, then record id (docs/spec.md §6 order).
#[derive(Clone, Copy)]
struct Due {
    at: Instant,
    pre: [u8; 24],
    len: u8,
    slot: u32,
}

impl Due {
    fn new(st: &Store, at: Instant, slot: u32) -> Due {
        let id = st.id_bytes(slot);
        let mut pre = [0u8; 24];
        let n = id.len().min(24);
        pre[..n].copy_from_slice(&id[..n]);
        Due {
            at,
            pre,
            len: id.len().min(255) as u8,
            slot,
        }
    }

    /// Byte order of ids equals the order of their strings. Zero-padded prefixes
    /// then lengths order ids of up to 24 bytes exactly; longer ties read the ids.
    fn cmp(&self, o: &Due, st: &Store) -> std::cmp::Ordering {
        self.at
            .cmp(&o.at)
            .then_with(|| self.pre.cmp(&o.pre))
            .then_with(|| {
                if self.len <= 24 && o.len <= 24 {
                    self.len.cmp(&o.len)
                } else {
                    st.id_bytes(self.slot).cmp(st.id_bytes(o.slot))
                }
            })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Early,
    OnTime,
    Late,
    Rejected,
    Withdrawn,
    Paused,
    InProgressOverdue,
    InProgressWithin,
}

/// The default calendar and the profiles, in the order units index them.
fn calendars(cfg: &Settings) -> Vec<Calendar> {
    std::iter::once(cfg.calendar.clone())
        .chain(cfg.profiles.iter().map(|p| p.1.clone()))
        .collect()
}

/// Sets receipt, due time and restart base from a `received` / `snapshot`.
fn set_due_source(cal: &Calendar, dir: &Directory, rec: &mut Record, ev: &Event<'_>) {
    let receipt = match ev.kind {
        EventType::Snapshot => ev.received_at.unwrap_or(ev.at),
        _ => ev.at,
    };
    rec.received_at = receipt;
    if let Some(d) = ev.due_at {
        rec.due = d;
        rec.base_secs = (cal.working_between(receipt, d) / SECOND).clamp(0, u32::MAX as i64) as u32;
        rec.set(flag::FROM_DUE_AT, true);
    } else if let Some(p) = dir.procedures.get(rec.procedure as usize) {
        rec.due = cal.due(receipt, p.duration);
        rec.set(flag::FROM_DUE_AT, false);
    }
    rec.orig_due = rec.due;
}

fn set_over(v: &mut Vec<Option<ThresholdOverride>>, i: u32, o: ThresholdOverride) {
    if v.len() <= i as usize {
        v.resize(i as usize + 1, None);
    }
    v[i as usize] = Some(o);
}
