//! The consumer loop: one thread polls Kafka, applies each event to its
//! partition's engine, dead-letters rejections (waiting for the broker's
//! acknowledgement, never committing past a message that is not safely
//! somewhere), fires timers every round (≤ 100 ms) — on the events' time while a
//! partition catches up, then on the wall clock (docs/spec.md §9.3) —, writes
//! alert transitions to the alerts file and topic, lets the e-mail stage decide,
//! and commits offsets only after the alerts file is synced and the watermarks
//! are saved (docs/spec.md §9).

use super::error::{Context, Error};
use super::forward::Forward;
use super::mail::Mail;
use super::partition::{rebalance, Part};
use super::{reload::reload, Reload, Settings, Shared};
use crate::alert::stream::{stream_key, Op};
use crate::alert::Notifier;
use crate::engine::{Engine, Outcome};
use crate::event::{decode, RejectReason};
use crate::metrics::events::{
    DeadLetterFailed, DeadLetterWritten, EventApplied, PartitionStalled, PartitionsBlocked,
    SnapshotFailed, SnapshotWritten, SourceSilence,
};
use crate::metrics::{Snapshot, UnitInfo};
use crate::sink::{write_alert, AlertsFile};
use crate::source::kafka::notify_topic::{Publisher, Settled};
use crate::source::kafka::state_topic::{Manifest, Writer as StateWriter};
use crate::source::kafka::{self, Ctx, DeadLetter, Deliveries};
use crate::state::Watermarks;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant};

/// The rejection of a message whose key is not its event's `record_id`.
fn key_mismatch(key: Option<&[u8]>, record_id: &str) -> crate::event::Rejection {
    let shown = |s: &str| s.chars().take(80).collect::<String>();
    let detail = match key {
        None => format!(
            "the message has no key; the key must be the record_id {:?}",
            shown(record_id)
        ),
        Some(k) => format!(
            "the message key {:?} is not the record_id {:?}",
            shown(&String::from_utf8_lossy(k)),
            shown(record_id)
        ),
    };
    crate::event::Rejection::new(RejectReason::KeyMismatch, detail)
}

/// Queues one op on the notify topic, keyed by its stream.
fn publish(pb: &mut Publisher, key: String, op: &Op) {
    match serde_json::to_vec(op) {
        Ok(v) => pb.push(key, v),
        Err(e) => tracing::error!(error = %e, "cannot encode a notify op"),
    }
}

/// Everything the loop owns; the partitions and the notifier live in [`Shared`]
/// (the API reads them between rounds).
pub(super) struct Consumer<'s> {
    settings: Settings,
    load: Reload,
    shared: &'s Shared,
    producer: BaseProducer<Deliveries>,
    /// Next offset per partition whose events are applied and whose alert lines
    /// are in `out` or the alerts file (what the next save may cover).
    applied: HashMap<i32, i64>,
    /// What the last saved state covers, per partition: (next offset, fired
    /// until). Shared with the Kafka context, which commits it on revocation.
    durable: Arc<Mutex<HashMap<i32, (i64, i64)>>>,
    alerts_file: Option<AlertsFile>,
    marks: Watermarks,
    mail: Option<Mail>,
    /// Alert lines not yet written.
    out: Vec<u8>,
    /// Messages the decoder rejected, by reason (the engine counts the rest).
    decoder_rejected: [u64; RejectReason::ALL.len()],
    /// Since when every assigned partition is live: the source's silence is
    /// counted from here when no event has arrived since (a daemon still
    /// joining its group or catching up cannot hear it).
    listening_since: Option<crate::time::Instant>,
    /// The source is silent since this instant's last event (docs/spec.md §9.8).
    source_silent: Option<crate::time::Instant>,
    /// Hands snapshots to the writer thread (none: snapshots are off).
    snapshots: Option<SnapshotWriter>,
    /// When snapshots were last taken.
    last_snapshot: WallInstant,
    /// The notify topic's producer (`[kafka] notify_topic`): transitions go
    /// there for the notifier group instead of to a local e-mail stage.
    notify: Option<Publisher>,
    /// The alerts topic's producer (`[alerts] topic`), acknowledged before a
    /// save like the notify topic.
    alerts_topic: Option<Publisher>,
    /// When a save last waited in vain for a topic (logged once a while, not
    /// every round).
    notify_waiting_since: Option<WallInstant>,
    /// `overdued_unit_info`'s series, rebuilt when the configuration changes.
    unit_info: Arc<Vec<UnitInfo>>,
    /// `[alertmanager]`, `[[webhook]]` (none when neither is configured).
    forward: Option<Forward>,
}

/// One partition's snapshot, encoded by the loop, written by the writer thread.
struct SnapshotJob {
    partition: i32,
    image: Vec<u8>,
    manifest: Manifest,
    records: usize,
    encoded: Duration,
}

/// What the writer thread reports back.
struct SnapshotDone {
    job: SnapshotJob,
    took: Duration,
    result: Result<(), crate::source::kafka::state_topic::StateTopicError>,
}

/// The writer thread and its two channels. Writing (chunks, acknowledgements)
/// happens off the loop, so a slow or frozen broker never holds back events,
/// timers or the API; one batch of snapshots is in flight at a time (the next
/// interval waits for it), and its results come back to the loop, which owns
/// the partitions' generations.
struct SnapshotWriter {
    jobs: std::sync::mpsc::SyncSender<Vec<SnapshotJob>>,
    done: std::sync::mpsc::Receiver<SnapshotDone>,
    /// Jobs handed over and not reported back yet.
    in_flight: usize,
}

impl SnapshotWriter {
    fn start(mut w: StateWriter) -> std::io::Result<SnapshotWriter> {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Vec<SnapshotJob>>(1);
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    for job in batch {
                        let t0 = WallInstant::now();
                        let result = w.write(job.partition, &job.image, &job.manifest);
                        let took = t0.elapsed() + job.encoded;
                        if tx.send(SnapshotDone { job, took, result }).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(SnapshotWriter {
            jobs,
            done,
            in_flight: 0,
        })
    }
}

impl<'s> Consumer<'s> {
    /// Creates the Kafka clients, opens the alerts file, loads the watermarks and
    /// starts the e-mail stage. The Kafka consumer is returned beside the loop's
    /// state: the messages it lends out must not borrow the state being changed.
    pub fn new(
        settings: Settings,
        load: Reload,
        shared: &'s Shared,
    ) -> Result<(Self, BaseConsumer<Ctx>), Error> {
        let d = &settings.daemon;
        let durable: Arc<Mutex<HashMap<i32, (i64, i64)>>> = Default::default();
        let consumer =
            kafka::consumer(&d.kafka, durable.clone()).map_err(|source| Error::Kafka {
                what: "kafka consumer",
                source,
            })?;
        let producer = kafka::producer(&d.kafka).map_err(|source| Error::Kafka {
            what: "kafka producer",
            source,
        })?;
        let mut marks = Watermarks::load(&d.state_dir, crate::time::now())?;
        let alerts_file = match &d.alerts_file {
            Some(p) => {
                // the length the saved state vouches for, if it is this file's
                let durable = marks
                    .alerts_file
                    .as_ref()
                    .filter(|(saved, _)| saved == p)
                    .map(|&(_, len)| len);
                Some(AlertsFile::open(p, durable).ctx(format!("cannot open {}", p.display()))?)
            }
            None => None,
        };
        let notify = Publisher::new(&d.kafka).map_err(|source| Error::Kafka {
            what: "notify topic producer",
            source,
        })?;
        let alerts_topic = match &d.alerts_topic {
            Some(t) => Some(Publisher::to(&d.kafka, t).map_err(|source| Error::Kafka {
                what: "alerts topic producer",
                source,
            })?),
            None => None,
        };
        let opened = if notify.is_some() {
            // e-mail is decided by the notifier group; this notifier only
            // knows what fires here, for the pages and acknowledgements
            if settings.email.enabled {
                let n = super::mail::restore_notifier(&settings, &mut marks, shared)?;
                *shared
                    .api
                    .notifier
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(n);
            }
            None
        } else {
            Mail::open(&settings, &mut marks, shared)?
        };
        let mail = match opened {
            Some((mail, n)) => {
                *shared
                    .api
                    .notifier
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(n);
                Some(mail)
            }
            None => None,
        };
        // a spool file past the saved sequence belongs to an unsaved state;
        // without saved watermarks every spooled batch is kept
        let saved_seq =
            (!marks.partitions.is_empty() || marks.webhook_seq > 0).then_some(marks.webhook_seq);
        let forward = Forward::start(
            &settings.forwarding,
            &d.state_dir,
            saved_seq,
            &shared.metrics,
        )
        .ctx("cannot start forwarding (webhook spool, senders)")?;
        let snapshots = if d.kafka.snapshot_interval > 0 {
            let w = StateWriter::new(&d.kafka).map_err(Error::StateTopic)?;
            Some(SnapshotWriter::start(w).ctx("cannot start the snapshot writer")?)
        } else {
            None
        };
        let state = Consumer {
            unit_info: Arc::new(UnitInfo::of_directory(
                &settings.engine.directory,
                settings.report.area_level.as_deref(),
            )),
            settings,
            load,
            shared,
            producer,
            applied: HashMap::new(),
            durable,
            alerts_file,
            marks,
            mail,
            out: Vec::with_capacity(1 << 16),
            decoder_rejected: [0; RejectReason::ALL.len()],
            listening_since: None,
            source_silent: None,
            snapshots,
            last_snapshot: WallInstant::now(),
            notify,
            alerts_topic,
            notify_waiting_since: None,
            forward,
        };
        Ok((state, consumer))
    }

    /// Consumes until shutdown, then flushes and commits what was done.
    pub fn run(mut self, kc: &BaseConsumer<Ctx>) -> Result<(), Error> {
        let shared = self.shared;
        let mut last_flush = WallInstant::now();
        let mut last_metrics = WallInstant::now() - Duration::from_secs(10);
        tracing::info!(topic = %self.settings.daemon.kafka.topic, group = %self.settings.daemon.kafka.group_id, "consuming");

        // A message polled ahead (each message is handled after the poll that
        // follows it, so that a rebalance seen in that poll is applied first). It
        // must survive the end of a round: dropping it would skip an event for good.
        let mut carried = None;
        while !shared.shutdown.load(Ordering::Relaxed) {
            // Wait for a message without holding the engines (the API reads them
            // then); the round that follows holds them: up to 1000 messages,
            // timers, housekeeping.
            let mut next_msg = match carried.take() {
                Some(m) => Some(m),
                None => kc.poll(Duration::from_millis(100)),
            };
            let mut guard = shared.parts.0.lock().unwrap_or_else(|p| p.into_inner());
            let parts = &mut *guard;
            let mut nguard = shared
                .api
                .notifier
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if shared.reload.swap(false, Ordering::Relaxed) {
                reload(
                    &mut self.settings,
                    &mut self.load,
                    parts,
                    shared,
                    nguard.as_mut(),
                );
                self.unit_info = Arc::new(UnitInfo::of_directory(
                    &self.settings.engine.directory,
                    self.settings.report.area_level.as_deref(),
                ));
            }
            let mut polled = 0;
            while polled < 1000 {
                let Some(m) = next_msg.take() else {
                    break;
                };
                next_msg = kc.poll(Duration::ZERO);
                self.rebalances(kc, parts, nguard.as_mut());
                let m = match m {
                    Ok(m) => m,
                    Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                        if let Some(part) = parts.get_mut(&p) {
                            if part.reached_end(p, nguard.as_mut(), &self.settings.engine.directory)
                            {
                                self.mark_applied(p, part.next);
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        // e.g. a partition EOF or a transient broker error; the
                        // message already polled next is still handled
                        tracing::warn!(error = %e, "kafka poll error");
                        continue;
                    }
                };
                polled += 1;
                self.handle(kc, &m, parts, nguard.as_mut());
            }
            carried = next_msg;
            self.rebalances(kc, parts, nguard.as_mut());
            self.resume_blocked(kc, parts);
            // Wall-clock timers, for the partitions that are live (the others
            // advance with the events they consume).
            let now = crate::time::now();
            for (&p, part) in parts.iter_mut() {
                if part.next >= part.resume_from {
                    self.catch_up(p, part, nguard.as_mut());
                }
                if part.caught_up && part.live {
                    part.engine.advance(now);
                    self.drain(&mut part.engine, p, false, nguard.as_mut());
                }
            }
            // The notifier's clock moves only once every assigned partition is
            // rebuilt, its firing alerts adopted and its backlog consumed: after a
            // restart, an earlier advance would drop what the saved state lists as
            // not yet told (its alerts not known yet), count escalations that came
            // due while down as already sent, and send the digest without the
            // adopted alerts; during a catch-up, alerts that fire and resolve
            // inside the backlog are history, not news.
            let ready = !parts.is_empty() && parts.values().all(|p| p.caught_up && p.live);
            if ready && self.listening_since.is_none() {
                // What came due before the daemon was ready (down, joining the
                // group, catching up) is grouped from now on: replayed at its
                // historical instants it would go out as several e-mails at once.
                if let Some(n) = nguard.as_mut() {
                    n.schedule_floor = n.schedule_floor.max(now);
                }
            }
            self.watch_source(parts, ready, now, nguard.as_mut());
            if let Some(n) = nguard.as_mut() {
                // acknowledgements made on this instance's pages go to the
                // notifier that owns the record's stream
                for ack in n.take_new_acks() {
                    if let Some(pb) = self.notify.as_mut() {
                        let dir = &self.settings.engine.directory;
                        let key = n
                            .record_alerts(&ack.record_id)
                            .first()
                            .map_or_else(|| ack.unit.clone(), |i| stream_key(i, dir));
                        publish(pb, key, &Op::Ack { ack });
                    }
                }
            }
            if let (Some(n), Some(m), true) = (nguard.as_mut(), self.mail.as_mut(), ready) {
                m.decide(n, &self.settings, now, &mut self.marks, shared);
            }
            drop(nguard);
            shared.api.ready.store(ready, Ordering::Relaxed);
            let new_mail = self.mail.as_ref().is_some_and(Mail::has_new);
            if !self.out.is_empty() || new_mail || last_flush.elapsed() >= Duration::from_secs(1) {
                // a failed save is logged; the next round tries again
                let saved = self.flush_and_commit(kc, parts)?;
                last_flush = WallInstant::now();
                let every =
                    Duration::from_micros(self.settings.daemon.kafka.snapshot_interval as u64);
                self.snapshots_done(parts);
                if saved && ready && self.last_snapshot.elapsed() >= every {
                    self.take_snapshots(parts);
                }
            }
            if last_metrics.elapsed() >= Duration::from_secs(1) {
                if let Some(f) = self.forward.as_mut() {
                    f.tick(&|p| parts.contains_key(&p));
                }
                self.publish_metrics(kc, parts);
                last_metrics = WallInstant::now();
            }
        }
        let mut guard = shared.parts.0.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.finish(kc, &mut guard);
        if let Some(m) = self.mail.as_mut() {
            if !m.sender.shutdown(Duration::from_secs(5)) {
                tracing::warn!(
                    "the SMTP sender did not stop in time; unsent e-mails stay in the outbox"
                );
            }
        }
        r
    }

    /// A silent source (no event arrived for `[rules] source_silence_after` of
    /// working time) holds `hanging` e-mails: without events, "no action
    /// recorded" may only mean that nothing reaches the daemon.
    fn watch_source(
        &mut self,
        parts: &HashMap<i32, Part>,
        ready: bool,
        now: crate::time::Instant,
        n: Option<&mut Notifier>,
    ) {
        if !ready {
            self.listening_since = None;
            return;
        }
        let since = *self.listening_since.get_or_insert(now);
        let after = self.settings.engine.rules.source_silence_after;
        let last = parts
            .values()
            .filter_map(|p| p.last_event.map(|(_, arrived)| arrived))
            .max()
            .unwrap_or(i64::MIN)
            .max(since);
        let silent = after > 0 && self.settings.engine.calendar.working_between(last, now) >= after;
        if silent != self.source_silent.is_some() {
            let quiet_since = self.source_silent.unwrap_or(last);
            self.source_silent = silent.then_some(last);
            SourceSilence {
                silent,
                since: crate::time::format_rfc3339(quiet_since),
            }
            .emit();
            self.shared
                .api
                .source_silent
                .store(silent, Ordering::Relaxed);
        }
        if let Some(n) = n {
            n.hold_hanging(silent, now);
        }
    }

    /// Records that everything of partition `p` before `next` is applied and
    /// output (what a commit may cover).
    fn mark_applied(&mut self, p: i32, next: i64) {
        self.applied.insert(p, next);
    }

    /// Applies the rebalances librdkafka reported inside the last poll.
    fn rebalances(
        &mut self,
        kc: &BaseConsumer<Ctx>,
        parts: &mut HashMap<i32, Part>,
        mut n: Option<&mut Notifier>,
    ) {
        for ev in kc.context().take_events() {
            let rewind = rebalance(
                ev,
                parts,
                &mut self.marks,
                &self.settings.engine,
                &mut self.applied,
                &self.durable,
                n.as_deref_mut(),
            );
            let topic = &self.settings.daemon.kafka.topic;
            for p in rewind {
                if let Err(e) = kc.seek(topic, p, Offset::Beginning, Duration::from_secs(10)) {
                    tracing::error!(partition = p, error = %e, "cannot rewind the partition to its beginning");
                }
            }
        }
    }

    fn catch_up(&mut self, p: i32, part: &mut Part, n: Option<&mut Notifier>) {
        if part.catch_up(p, n, &self.settings.engine.directory) {
            self.mark_applied(p, part.next);
            if let Some(f) = self.forward.as_mut().filter(|f| f.wants_adoption()) {
                f.adopt(p, &part.firing_infos(p), &self.settings.engine.directory);
            }
        }
    }

    /// One message: decode, apply, keep its history, dead-letter a rejection,
    /// output the transitions.
    fn handle(
        &mut self,
        kc: &BaseConsumer<Ctx>,
        m: &BorrowedMessage<'_>,
        parts: &mut HashMap<i32, Part>,
        mut n: Option<&mut Notifier>,
    ) {
        let p = m.partition();
        let offset = m.offset();
        let Some(part) = parts.get_mut(&p) else {
            return;
        };
        if offset < part.next || part.blocked_until.is_some() {
            // a redelivery of something already applied, or the partition waits
            // for a dead letter (it is rewound when it resumes)
            return;
        }
        let muted = offset < part.resume_from;
        if !muted {
            self.catch_up(p, part, n.as_deref_mut());
        }
        let keep = self.settings.daemon.record_history;
        let payload = m.payload().unwrap_or(&[]);
        let t0 = WallInstant::now();
        let rejection = match decode(payload) {
            Err(r) => {
                self.decoder_rejected[r.reason.index()] += 1;
                Some(r)
            }
            // Records are partitioned by key: an event keyed otherwise would be
            // applied on a partition that does not hold its record (and its
            // record's later events elsewhere). The producer's bug shows at once.
            Ok(ev) if m.key() != Some(ev.record_id.as_bytes()) => {
                let r = key_mismatch(m.key(), &ev.record_id);
                self.decoder_rejected[r.reason.index()] += 1;
                Some(r)
            }
            Ok(ev) => {
                let latest = part.last_event.map_or(ev.at, |(at, _)| at.max(ev.at));
                part.last_event = Some((latest, crate::time::now()));
                let outcome = part.engine.apply(&ev);
                if let Some(n) = n.as_deref_mut() {
                    // the record's next event ends its acknowledgements
                    n.record_event(&ev.record_id, ev.at);
                    if let (Some(pb), Some(info)) =
                        (self.notify.as_mut(), n.record_alerts(&ev.record_id).first())
                    {
                        let op = Op::Event {
                            record_id: ev.record_id.to_string(),
                            at: ev.at,
                        };
                        publish(pb, stream_key(info, &self.settings.engine.directory), &op);
                    }
                }
                if keep > 0 && !matches!(outcome, Outcome::Rejected(_)) {
                    part.remember(&ev, offset, &outcome, keep);
                }
                match outcome {
                    Outcome::Rejected(r) => Some(r),
                    _ => None,
                }
            }
        };
        EventApplied { took: t0.elapsed() }.emit(&self.shared.metrics);
        if let Some(r) = rejection {
            if r.reason != RejectReason::TooLarge || !muted {
                tracing::warn!(partition = p, offset, reason = r.reason.as_str(), detail = %r.detail, "rejected event");
            }
            if !muted {
                let k = &self.settings.daemon.kafka;
                let dl = DeadLetter::new(
                    r.reason.as_str(),
                    &r.detail,
                    (&k.topic, p, offset),
                    m.key(),
                    payload,
                );
                // Nothing is lost: until the broker takes it, the partition waits
                // (paused; this dead letter retried with backoff) and nothing past
                // it is committed; other partitions and the timers go on.
                match dl.send(&self.producer, &k.dead_letter_topic) {
                    Ok(()) => part.backoff = Duration::from_millis(100),
                    Err(e) => {
                        DeadLetterFailed {
                            partition: p,
                            offset,
                            error: &e,
                            first: true,
                        }
                        .emit(&self.shared.metrics);
                        part.pending = Some((offset, dl));
                        part.attempts = 1;
                        part.blocked_until = Some(WallInstant::now() + part.backoff);
                        part.backoff = (part.backoff * 2).min(Duration::from_secs(5));
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(&k.topic, p);
                        if let Err(e) = kc.pause(&tpl) {
                            tracing::warn!(error = %e, "cannot pause the partition");
                        }
                        return;
                    }
                }
            }
        }
        self.drain(&mut part.engine, p, muted, n);
        part.next = offset + 1;
        if !muted {
            self.mark_applied(p, part.next);
        }
    }

    /// Partitions waiting for a dead letter: when it is time, write it again;
    /// once the broker took it, move past it, rewind and resume.
    fn resume_blocked(&mut self, kc: &BaseConsumer<Ctx>, parts: &mut HashMap<i32, Part>) {
        let k = &self.settings.daemon.kafka;
        for (&p, part) in parts.iter_mut() {
            if part.blocked_until.is_none_or(|t| t > WallInstant::now()) {
                continue;
            }
            if let Some((offset, dl)) = &part.pending {
                let offset = *offset;
                if let Err(e) = dl.send(&self.producer, &k.dead_letter_topic) {
                    part.attempts += 1;
                    DeadLetterFailed {
                        partition: p,
                        offset,
                        error: &e,
                        first: false,
                    }
                    .emit(&self.shared.metrics);
                    part.blocked_until = Some(WallInstant::now() + part.backoff);
                    part.backoff = (part.backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                DeadLetterWritten {
                    partition: p,
                    offset,
                    attempts: part.attempts + 1,
                }
                .emit(&self.shared.metrics);
                part.pending = None;
                part.attempts = 0;
                part.backoff = Duration::from_millis(100);
                part.next = offset + 1;
                self.applied.insert(p, part.next);
            }
            part.blocked_until = None;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&k.topic, p);
            if let Err(e) = kc.seek(
                &k.topic,
                p,
                Offset::Offset(part.next),
                Duration::from_secs(5),
            ) {
                tracing::warn!(error = %e, partition = p, "cannot rewind the partition");
            }
            if let Err(e) = kc.resume(&tpl) {
                tracing::warn!(error = %e, "cannot resume the partition");
            }
        }
        let blocked = parts.values().filter(|p| p.pending.is_some()).count();
        PartitionsBlocked(blocked).emit(&self.shared.metrics);
        self.shared
            .api
            .blocked
            .store(blocked, std::sync::atomic::Ordering::Relaxed);
    }

    /// Moves the engine's transitions to the notifier and the outputs (or drops
    /// them when muted: an earlier run output them).
    fn drain(
        &mut self,
        engine: &mut Engine,
        partition: i32,
        muted: bool,
        mut notifier: Option<&mut Notifier>,
    ) {
        if engine.transitions.is_empty() {
            return;
        }
        let mut ts = std::mem::take(&mut engine.transitions);
        if !muted {
            let dir = &self.settings.engine.directory;
            for t in &ts {
                // described once, for every stage that takes the alert
                let wants = self.notify.is_some()
                    || self.forward.is_some()
                    || (t.firing && notifier.is_some());
                let info = wants.then(|| {
                    let mut i = engine.alert_info(t);
                    i.partition = Some(partition);
                    i
                });
                if let (Some(f), Some(info)) = (self.forward.as_mut(), info.as_ref()) {
                    f.transition(info, t.firing, t.at, dir);
                }
                if let (Some(pb), Some(info)) = (self.notify.as_mut(), info.as_ref()) {
                    // a resolution goes to the stream its firing went to
                    let known = notifier.as_deref().and_then(|n| {
                        n.record_alerts(engine.record_id(t.slot))
                            .into_iter()
                            .find(|i| i.kind == t.kind)
                            .map(|i| stream_key(i, dir))
                    });
                    let key = match known {
                        Some(k) if !t.firing => k,
                        _ => stream_key(info, dir),
                    };
                    let op = if t.firing {
                        Op::Fire { info: info.clone() }
                    } else {
                        Op::Resolve {
                            kind: t.kind,
                            record_id: engine.record_id(t.slot).to_string(),
                            at: t.at,
                        }
                    };
                    publish(pb, key, &op);
                }
                if let Some(n) = notifier.as_deref_mut() {
                    match info {
                        Some(info) if t.firing => n.fire(info, dir),
                        _ => n.resolve(t.kind, engine.record_id(t.slot), t.at),
                    }
                }
                let start = self.out.len();
                write_alert(&mut self.out, engine, t);
                tracing::info!(
                    record_id = engine.record_id(t.slot),
                    kind = t.kind.as_str(),
                    state = if t.firing { "firing" } else { "resolved" },
                    unit = engine.unit_code(t.unit),
                    "alert"
                );
                if let Some(pb) = self.alerts_topic.as_mut() {
                    let line = self.out[start..self.out.len() - 1].to_vec();
                    pb.push(engine.record_id(t.slot).to_string(), line);
                }
            }
        }
        ts.clear();
        engine.transitions = ts;
    }

    /// Writes and syncs the alert lines, saves the watermarks (with the
    /// notifier's state and the alerts file's length), releases the decided
    /// e-mails, then commits. Returns whether the state was saved (nothing is
    /// committed when it was not).
    fn flush_and_commit(
        &mut self,
        kc: &BaseConsumer<Ctx>,
        parts: &mut HashMap<i32, Part>,
    ) -> Result<bool, Error> {
        if let Some(f) = self.alerts_file.as_mut() {
            if !self.out.is_empty() {
                f.append_synced(&self.out).ctx("writing alerts")?;
            }
        }
        self.out.clear();
        // webhook batches are spooled before the save that covers them
        if let Some(f) = self.forward.as_mut() {
            if let Err(e) = f.spool() {
                tracing::error!(error = %e, "cannot spool webhook batches; state not saved, nothing committed");
                return Ok(false);
            }
            self.marks.webhook_seq = f.seq();
        }
        let topic = &self.settings.daemon.kafka.topic;
        let mut tpl = TopicPartitionList::new();
        let mut covered = Vec::with_capacity(parts.len());
        for (&p, part) in parts.iter() {
            let fired = if part.caught_up {
                self.marks
                    .partitions
                    .insert(p, (part.next, part.fired_until()));
                part.fired_until()
            } else {
                i64::MIN
            };
            if let Some(&o) = self.applied.get(&p) {
                covered.push((p, o, fired));
                let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
                // hand-over: the next owner fires silently what this one fired
                if part.caught_up {
                    if let Some(mut e) = tpl.find_partition(topic, p) {
                        e.set_metadata(format!("fired-until={fired}"));
                    }
                }
            }
        }
        // the transitions must be on the notify and alerts topics before the
        // state that made them is saved and the source committed past them
        for (what, pb) in [
            ("notify", &mut self.notify),
            ("alerts", &mut self.alerts_topic),
        ] {
            let Some(pb) = pb.as_mut() else {
                continue;
            };
            if let r @ (Settled::InFlight | Settled::Resent) = pb.settle(Duration::from_secs(1)) {
                let since = *self
                    .notify_waiting_since
                    .get_or_insert_with(WallInstant::now);
                if since.elapsed() >= Duration::from_secs(10) {
                    tracing::warn!(topic = what, resent = (r == Settled::Resent), "a topic has not acknowledged the alert transitions; state not saved, nothing committed");
                    self.notify_waiting_since = Some(WallInstant::now());
                }
                return Ok(false);
            }
        }
        self.notify_waiting_since = None;
        if let Some(m) = self.mail.as_ref() {
            m.finished(&mut self.marks);
        }
        self.marks.notifier = self
            .shared
            .api
            .notifier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|n| serde_json::to_value(&n.state).ok());
        if self.mail.as_ref().is_some_and(Mail::holds_unstored) {
            // an e-mail decided but not stored: saving the notifier's state now
            // would lose it at a crash
            tracing::debug!("e-mails wait to be stored; state not saved, nothing committed");
            self.marks.notifier = None;
            return Ok(false);
        }
        self.marks.alerts_file = self
            .alerts_file
            .as_ref()
            .map(|f| (f.path().to_path_buf(), f.len()));
        let saved = self.marks.save(&self.settings.daemon.state_dir);
        self.marks.notifier = None;
        match saved {
            Err(e) => {
                // Nothing that depends on an unsaved state is committed: after a
                // crash the offsets, the alerts file and the notifier must agree.
                tracing::error!(error = %e, "cannot save watermarks; not committing");
                return Ok(false);
            }
            Ok(()) => {
                // only now may the decided e-mails go: a crash before the save
                // decides them again instead of sending them twice
                if let Some(m) = self.mail.as_mut() {
                    m.saved();
                }
                if let Some(f) = self.forward.as_ref() {
                    f.saved();
                }
                // and only now may a revocation commit these offsets
                let mut durable = self.durable.lock().unwrap_or_else(|p| p.into_inner());
                for (p, o, fired) in covered {
                    durable.insert(p, (o, fired));
                }
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = kc.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, "commit failed");
            }
        }
        Ok(true)
    }

    /// Takes each live partition's snapshot and hands them to the writer
    /// thread, with what the last save made durable (the output offset and the
    /// fired-until instant the next owner resumes from). Called right after a
    /// save, so an image reflects exactly the events before its `next` and
    /// claims only output that is on disk. A failed write is logged and retried
    /// at the next interval: the previous snapshot stays whole, and the source
    /// still holds what followed it.
    fn take_snapshots(&mut self, parts: &mut HashMap<i32, Part>) {
        let Some(w) = self.snapshots.as_mut() else {
            return;
        };
        if w.in_flight > 0 {
            return;
        }
        self.last_snapshot = WallInstant::now();
        let durable = self
            .durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut ids: Vec<i32> = parts.keys().copied().collect();
        ids.sort_unstable();
        let mut batch = Vec::new();
        for p in ids {
            let Some(part) = parts.get(&p) else {
                continue;
            };
            let Some(&(output, fired_until)) = durable.get(&p) else {
                continue;
            };
            if !part.live || part.pending.is_some() || output != part.next {
                continue;
            }
            let t0 = WallInstant::now();
            let mut image = Vec::new();
            part.engine.snapshot(&mut image);
            let manifest = Manifest {
                gen: part.snapshot_gen + 1,
                chunks: 0,
                bytes: image.len() as u64,
                next: part.next,
                output,
                fired_until,
                written_at: crate::time::now(),
            };
            batch.push(SnapshotJob {
                partition: p,
                image,
                manifest,
                records: part.engine.held_records(),
                encoded: t0.elapsed(),
            });
        }
        let n = batch.len();
        if n > 0 && w.jobs.try_send(batch).is_ok() {
            w.in_flight = n;
        }
    }

    /// Takes in what the writer thread finished: generations move on, metrics
    /// and logs say how it went.
    fn snapshots_done(&mut self, parts: &mut HashMap<i32, Part>) {
        let Some(w) = self.snapshots.as_mut() else {
            return;
        };
        while let Ok(d) = w.done.try_recv() {
            let p = d.job.partition;
            match &d.result {
                Ok(()) => {
                    // a partition revoked meanwhile is another owner's now
                    if let Some(part) = parts.get_mut(&p) {
                        part.snapshot_gen = part.snapshot_gen.max(d.job.manifest.gen);
                    }
                    SnapshotWritten {
                        partition: p,
                        offset: d.job.manifest.next,
                        records: d.job.records,
                        bytes: d.job.image.len(),
                        took: d.took,
                    }
                    .emit(&self.shared.metrics);
                }
                Err(e) => SnapshotFailed {
                    partition: p,
                    error: e,
                }
                .emit(&self.shared.metrics),
            }
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }

    /// The once-a-second metrics pass; also forgets the history of records the
    /// engines no longer hold.
    fn publish_metrics(&self, kc: &BaseConsumer<Ctx>, parts: &mut HashMap<i32, Part>) {
        let coverage = self.settings.engine.coverage(crate::time::now());
        let mut snap = Snapshot {
            rejected: self.decoder_rejected,
            source_silent: self.source_silent.is_some(),
            calendar: Some((coverage.covered_until, coverage.needed_until)),
            units: Arc::clone(&self.unit_info),
            late_threshold: Some(self.settings.report.late_threshold_percent / 100.0),
            brokers: kc
                .context()
                .brokers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ..Default::default()
        };
        for part in parts.values_mut() {
            if part.history.len() > part.engine.held_records() {
                let e = &part.engine;
                part.history.retain(|id, _| e.find(id).is_some());
            }
        }
        let high = kc
            .context()
            .high
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let ages = kc.context().fetch_ages();
        let stall_after = Duration::from_micros(self.settings.daemon.kafka.stall_after as u64);
        let mut stalled = 0;
        for (&p, part) in parts.iter_mut() {
            snap.add_engine(&part.engine);
            let lag = high.get(&p).map(|&h| (h - part.next).max(0));
            if let Some(lag) = lag {
                snap.lag.insert(p, lag);
            }
            if let Some(last) = part.last_event {
                snap.last_event.insert(p, last);
            }
            // "no progress" counts from when the partition last moved or had
            // nothing to do
            if part.next != part.progress.0 || lag.is_none_or(|l| l == 0) {
                part.progress = (part.next, WallInstant::now());
            }
            let age = ages.get(&p).copied();
            if let Some(a) = age {
                snap.fetch_age.insert(p, a.as_secs_f64());
            }
            // a partition waiting for a dead letter has its own signal
            let why = if part.pending.is_some() {
                None
            } else if let Some(a) = age.filter(|&a| a >= stall_after) {
                Some(format!("its broker has not answered for {} s", a.as_secs()))
            } else if let Some(l) = lag.filter(|&l| l > 0) {
                let still = part.progress.1.elapsed();
                (still >= stall_after).then(|| {
                    format!(
                        "{l} messages behind and no progress for {} s",
                        still.as_secs()
                    )
                })
            } else {
                None
            };
            if why.is_some() != part.stalled {
                part.stalled = why.is_some();
                PartitionStalled {
                    partition: p,
                    why: why.as_deref(),
                }
                .emit();
            }
            stalled += usize::from(part.stalled);
            snap.stalled.insert(p, part.stalled);
        }
        self.shared.api.stalled.store(stalled, Ordering::Relaxed);
        *self
            .shared
            .api
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = snap;
    }

    /// Shutdown: flushes the producer, writes and commits what was done, then
    /// commits synchronously.
    fn finish(
        &mut self,
        kc: &BaseConsumer<Ctx>,
        parts: &mut HashMap<i32, Part>,
    ) -> Result<(), Error> {
        let _ = self.producer.flush(Duration::from_secs(10));
        let saved = self.flush_and_commit(kc, parts)?;
        if let Some(f) = self.forward.take() {
            f.stop();
        }
        if !saved {
            tracing::warn!("stopped without saving the state; offsets not committed");
            return Ok(());
        }
        let topic = &self.settings.daemon.kafka.topic;
        let durable = self
            .durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut tpl = TopicPartitionList::new();
        for (&p, &(o, fired)) in &durable {
            let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
            if let Some(mut e) = tpl.find_partition(topic, p) {
                e.set_metadata(format!("fired-until={fired}"));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = kc.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "final commit failed");
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}
