//! The assigned partitions: one engine each, rebuilt from the topic's beginning on
//! assignment (output muted up to where an earlier run got), caught up silently
//! to the instant its timers had fired to, dropped on revocation.
//!
//! Until a partition first reaches its end its timers run on event time, as in
//! `replay`: a backlog (a first start on a topic with history, a restart after
//! downtime) must not fire a timer whose record's closing event is still
//! unread. From its end on, the wall clock drives them.

use crate::alert::Notifier;
use crate::api::{History, HistoryEntry, Partitions};
use crate::engine::directory::Directory;
use crate::engine::{AlertKind, Engine, Outcome, Transition};
use crate::event::Event;
use crate::source::kafka::{Assignment, DeadLetter, RebalanceEvent};
use crate::state::Watermarks;
use crate::time::Instant;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::{Duration, Instant as WallInstant};

/// Per-partition state.
pub(super) struct Part {
    /// The partition's records.
    pub engine: Engine,
    /// Output is muted for offsets below this (already output by an earlier run).
    pub resume_from: i64,
    /// Timers are advanced silently up to this instant when caught up (what the
    /// previous run or owner had fired to).
    silent_until: Instant,
    /// Next offset to process.
    pub next: i64,
    /// Waiting for a dead-letter write to be retried.
    pub blocked_until: Option<WallInstant>,
    /// The dead letter that could not be written, with its offset: retried as
    /// it is (the message is not read, decoded or counted again), and the
    /// partition moves past it only once the broker took it.
    pub pending: Option<(i64, DeadLetter)>,
    /// Failed attempts at `pending`.
    pub attempts: u32,
    /// The next dead-letter retry delay.
    pub backoff: Duration,
    /// The last applied events of each record, for the API (bounded per record).
    pub history: History,
    /// Rebuilt up to its resume point (output no longer muted).
    pub caught_up: bool,
    /// Has reached the partition's end at least once: timers follow the wall
    /// clock. Before, they follow the events consumed (docs/spec.md §9.3).
    pub live: bool,
    /// The latest event time consumed, and the wall instant it was consumed
    /// (what shows a silent source: docs/spec.md §5).
    pub last_event: Option<(Instant, Instant)>,
    /// `next` when it last moved, and when: what shows lag without progress.
    pub progress: (i64, WallInstant),
    /// Stalled at the last check (logged once per incident).
    pub stalled: bool,
    /// The generation of the partition's latest snapshot in the state topic.
    pub snapshot_gen: u64,
}

impl Part {
    fn new(engine: Engine, resume_from: i64, silent_until: Instant) -> Part {
        Part {
            engine,
            resume_from,
            silent_until,
            next: 0,
            blocked_until: None,
            pending: None,
            attempts: 0,
            backoff: Duration::from_millis(100),
            history: HashMap::new(),
            caught_up: false,
            live: false,
            last_event: None,
            progress: (0, WallInstant::now()),
            stalled: false,
            snapshot_gen: 0,
        }
    }

    /// Once a rebuilt partition reaches its resume point: fires silently what the
    /// previous run already output (timers up to its last wall instant), then
    /// goes live. Alerts already firing (told by this process before a restart,
    /// or by the partition's previous owner) are adopted by the notifier: known
    /// for digests and resolutions, not announced again. Returns whether it
    /// caught up now.
    pub fn catch_up(&mut self, p: i32, notifier: Option<&mut Notifier>, dir: &Directory) -> bool {
        if self.caught_up {
            return false;
        }
        self.engine.advance(self.silent_until);
        self.engine.transitions.clear();
        self.caught_up = true;
        if let Some(n) = notifier {
            for info in self.firing_infos(p) {
                n.adopt(info, dir);
            }
        }
        tracing::info!(partition = p, offset = self.next, "partition caught up");
        true
    }

    /// The alerts firing in this partition's engine, as the notification
    /// stages describe them (an `overdue` one fired at its due time).
    pub fn firing_infos(&self, p: i32) -> Vec<crate::engine::view::AlertInfo> {
        let e = &self.engine;
        let (firing, _) = e.firing_alerts(0, usize::MAX, |_, _| true);
        let at = if self.silent_until == i64::MIN {
            e.clock()
        } else {
            self.silent_until
        };
        firing
            .into_iter()
            .map(|(slot, kind)| {
                let t = Transition {
                    at,
                    slot,
                    kind,
                    firing: true,
                    unit: e.record(slot).holder,
                    from: u32::MAX,
                };
                let mut info = e.alert_info(&t);
                info.partition = Some(p);
                if kind == AlertKind::Overdue {
                    // its true fire time is known: the due time
                    info.fired_at = info.due.min(at);
                }
                info
            })
            .collect()
    }

    /// The partition's end is reached: from now on the wall clock drives its
    /// timers. A resume point beyond the end (a topic recreated under the same
    /// group) cannot be reached: output starts here, with a warning. Returns
    /// whether it caught up now.
    pub fn reached_end(
        &mut self,
        p: i32,
        notifier: Option<&mut Notifier>,
        dir: &Directory,
    ) -> bool {
        if self.live || self.blocked_until.is_some() {
            return false;
        }
        if self.next < self.resume_from {
            tracing::warn!(
                partition = p,
                end = self.next,
                resume_from = self.resume_from,
                "the saved offset is beyond the partition's end (was the topic recreated?); output starts at its end"
            );
            self.resume_from = self.next;
        }
        let caught_up = self.catch_up(p, notifier, dir);
        self.live = true;
        tracing::info!(
            partition = p,
            offset = self.next,
            "partition live: timers follow the wall clock"
        );
        caught_up
    }

    /// The instant up to which this partition's timers have fired (what the
    /// next run or owner advances to silently).
    pub fn fired_until(&self) -> Instant {
        self.engine.clock()
    }

    /// Keeps the event in the record's history (at most `keep` per record).
    pub fn remember(&mut self, ev: &Event, offset: i64, outcome: &Outcome, keep: usize) {
        let entry = HistoryEntry {
            event_id: ev.event_id.as_ref().into(),
            r#type: ev.kind.as_str(),
            at: ev.at,
            unit: ev.unit.as_deref().map(Into::into),
            offset,
            ignored: match outcome {
                Outcome::Ignored(r) => Some(r.as_str()),
                _ => None,
            },
        };
        // look up before inserting: no key allocation for a known record
        let h = match self.history.get_mut(ev.record_id.as_ref()) {
            Some(h) => h,
            None => self
                .history
                .entry(ev.record_id.as_ref().into())
                .or_default(),
        };
        if h.len() >= keep {
            h.pop_front();
        }
        h.push_back(entry);
    }
}

/// The assigned partitions, shared with the API (which reads them between
/// consumer rounds).
#[derive(Default)]
pub(super) struct Parts(pub Mutex<HashMap<i32, Part>>);

impl Partitions for Parts {
    fn each(&self, f: &mut dyn FnMut(i32, &Engine, &History) -> ControlFlow<()>) {
        let parts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<i32> = parts.keys().copied().collect();
        ids.sort_unstable();
        for p in ids {
            let part = &parts[&p];
            if f(p, &part.engine, &part.history).is_break() {
                break;
            }
        }
    }
}

/// Applies a rebalance: an assigned partition starts a rebuild (resuming after
/// what the committed offset or the saved watermarks say was output); a revoked
/// one is dropped and its alerts forgotten (the new owner adopts them). A
/// revoked partition's progress goes into the watermarks: its alert lines are
/// in the buffer or the file, so the next save covers them, and this process
/// does not write them again if the partition comes back.
pub(super) fn rebalance(
    ev: RebalanceEvent,
    parts: &mut HashMap<i32, Part>,
    marks: &mut Watermarks,
    engine: &crate::engine::Settings,
    applied: &mut HashMap<i32, i64>,
    durable: &Mutex<HashMap<i32, (i64, i64)>>,
    mut notifier: Option<&mut Notifier>,
) -> Vec<i32> {
    let mut rewind = Vec::new();
    let mut durable = durable.lock().unwrap_or_else(|p| p.into_inner());
    match ev {
        RebalanceEvent::Assigned(list) => {
            for a in list {
                let p = a.partition;
                let (saved_offset, saved_wall) =
                    marks.partitions.get(&p).copied().unwrap_or((0, i64::MIN));
                let mut resume_from = a.committed.max(saved_offset);
                // the previous owner (this process or another) fired timers up to here
                let mut saved_wall = saved_wall.max(a.committed_wall.unwrap_or(i64::MIN));
                let part = match restore(p, &a, engine) {
                    Some((e, m)) => {
                        resume_from = resume_from.max(m.output);
                        saved_wall = saved_wall.max(m.fired_until);
                        let mut part = Part::new(e, resume_from, saved_wall);
                        part.next = m.next;
                        part.progress.0 = m.next;
                        part.snapshot_gen = m.gen;
                        part
                    }
                    None => {
                        if a.snapshot.is_some() {
                            // assigned at the snapshot's offset: start over
                            rewind.push(p);
                        }
                        if a.earliest > 0 {
                            tracing::error!(partition = p, earliest = a.earliest, "the topic no longer holds this partition's first events and no snapshot exists: records opened before offset {} are not known", a.earliest);
                        }
                        Part::new(Engine::new(engine), resume_from, saved_wall)
                    }
                };
                parts.insert(p, part);
                applied.remove(&p);
                durable.remove(&p);
            }
        }
        RebalanceEvent::Revoked(list) => {
            for p in list {
                if let Some(part) = parts.remove(&p) {
                    if part.caught_up {
                        marks.partitions.insert(p, (part.next, part.fired_until()));
                    }
                }
                applied.remove(&p);
                durable.remove(&p);
                if let Some(n) = notifier.as_deref_mut() {
                    n.forget(|i| i.partition != Some(p));
                }
            }
        }
    }
    rewind
}

/// The engine restored from the assignment's snapshot, with its manifest. A
/// snapshot that does not restore (the consumer was assigned at its offset)
/// is an error the caller's seek back to the beginning repairs: `None` here
/// with `snapshot` still set.
fn restore(
    p: i32,
    a: &Assignment,
    engine: &crate::engine::Settings,
) -> Option<(Engine, crate::source::kafka::state_topic::Manifest)> {
    let s = a.snapshot.as_ref()?;
    let t0 = WallInstant::now();
    match Engine::restore(engine, &s.image) {
        Ok(e) => {
            if a.earliest > s.manifest.next {
                tracing::error!(partition = p, snapshot_offset = s.manifest.next, earliest = a.earliest, "events after the snapshot were deleted from the topic before they were applied (retention shorter than the downtime?): they are lost");
            }
            tracing::info!(
                partition = p,
                records = e.held_records(),
                open = e.open_records(),
                offset = s.manifest.next,
                secs = t0.elapsed().as_secs_f64(),
                "partition restored from its snapshot"
            );
            Some((e, s.manifest))
        }
        Err(err) => {
            tracing::error!(partition = p, error = %err, "the partition's snapshot does not restore; rebuilding it from the topic's beginning");
            None
        }
    }
}
