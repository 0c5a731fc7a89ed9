//! The notifier consumer group (`[kafka] notify_topic`): e-mail decisions for
//! the streams this instance owns (docs/spec.md §9.3b).
//!
//! Its own thread and consumer, group `<group_id>.notify`, reading the notify
//! topic, where the engine side put each alert transition keyed by its stream
//! (a unit, or `admin`). One [`Notifier`] per assigned partition, so a unit's
//! grouping and digests are decided in one place whichever instance holds its
//! records. Decided e-mails go to the local outbox and the SMTP sender at
//! once.
//!
//! What survives: each partition's notifier image (state and firing alerts,
//! with the notify offset it reflects) in `<group_id>.notify.state`, written
//! only once every e-mail decided before it was accepted by the SMTP server
//! (or failed for good). So whoever is assigned the partition next — this
//! instance after a crash, or another — restores an image that owes nothing,
//! and decides again what came after it: no e-mail is lost; one sent after
//! the image and before a crash may be sent again (the window is
//! `notify_snapshot_interval` plus the sending time, README). For the same
//! reason the local outbox is emptied at start, and a revoked partition's
//! unsent e-mails are withdrawn: they were decided after the last image and
//! will be decided again by the next owner.

use super::error::Error;
use super::mail::{count_muted, render_decided, store_in_order};
use super::{Settings, Shared};
use crate::alert::stream::Op;
use crate::alert::Notifier;
use crate::notify::outbox::Outbox;
use crate::notify::render::Context;
use crate::notify::smtp::SenderHandle;
use crate::source::kafka::state_topic::{Manifest, Writer as StateWriter};
use crate::source::kafka::{self, Ctx, KafkaConfig, RebalanceEvent};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant};

/// One notify partition's notifier and what its next image waits for.
struct Stream {
    n: Notifier,
    /// The next notify offset to apply.
    next: i64,
    /// Generation of its last image written.
    gen: u64,
    /// E-mails it decided that are not sent (or failed for good) yet.
    unsent: BTreeSet<String>,
    /// An image taken, waiting for the e-mails decided before it.
    waiting: Option<(Vec<u8>, Manifest, BTreeSet<String>)>,
    /// Decided, but the outbox refused them (a full disk): stored again
    /// every round, in order; no image is written meanwhile.
    unstored: Vec<crate::notify::Email>,
    /// `n.state.muted` already counted in the metrics.
    muted_counted: u64,
}

/// Starts the notifier group's thread. `None` without `[kafka] notify_topic`
/// or without `[email]`.
pub(super) fn start(
    settings: &Settings,
    shared: Arc<Shared>,
) -> Result<Option<std::thread::JoinHandle<()>>, Error> {
    let Some(k) = settings.daemon.kafka.notify_side() else {
        return Ok(None);
    };
    if !settings.email.enabled {
        tracing::warn!("kafka.notify_topic is set without [email]: nothing to decide; the topic is still written");
        return Ok(None);
    }
    let s = settings.clone();
    let durable: Arc<Mutex<HashMap<i32, (i64, i64)>>> = Default::default();
    let consumer = kafka::consumer(&k, durable.clone()).map_err(|source| Error::Kafka {
        what: "notify consumer",
        source,
    })?;
    let writer = StateWriter::new(&k).map_err(Error::StateTopic)?;
    let (outbox, report) = Outbox::open(&s.daemon.state_dir).map_err(|source| Error::Mail {
        what: "opening the e-mail outbox",
        source,
    })?;
    report.log();
    // decided after the last image: decided again by the partition's owner
    let orphans = outbox
        .set_aside_orphans(&Default::default())
        .map_err(|source| Error::Mail {
            what: "cleaning the e-mail outbox",
            source,
        })?;
    if orphans > 0 {
        tracing::warn!(
            orphans,
            "outbox entries decided after the last notifier image moved to outbox/orphans (they are decided again)"
        );
    }
    let sender = super::mail::start_sender(&s, &outbox, &shared)?;
    tracing::info!(topic = %k.topic, group = %k.group_id, smtp = %s.email.delivery.smtp.url, "notifier group: e-mail enabled");
    let group = Group {
        s,
        k,
        shared,
        outbox,
        sender,
        writer,
        durable,
        streams: HashMap::new(),
        last_image: WallInstant::now(),
    };
    let h = std::thread::Builder::new()
        .name("notify-group".into())
        .spawn(move || group.run(consumer))
        .map_err(|e| Error::Io {
            what: "cannot start the notifier group's thread".into(),
            source: e,
        })?;
    Ok(Some(h))
}

struct Group {
    s: Settings,
    k: KafkaConfig,
    shared: Arc<Shared>,
    outbox: Outbox,
    sender: SenderHandle,
    writer: StateWriter,
    durable: Arc<Mutex<HashMap<i32, (i64, i64)>>>,
    streams: HashMap<i32, Stream>,
    last_image: WallInstant,
}

impl Group {
    fn run(mut self, kc: BaseConsumer<Ctx>) {
        while !self.shared.shutdown.load(Ordering::Relaxed) {
            let mut next = kc.poll(Duration::from_millis(100));
            let mut polled = 0;
            while let Some(m) = next.take() {
                next = if polled < 1000 {
                    kc.poll(Duration::ZERO)
                } else {
                    None
                };
                self.rebalances(&kc);
                polled += 1;
                match m {
                    Ok(m) => self.apply(m.partition(), m.offset(), m.payload()),
                    Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {}
                    Err(e) => tracing::warn!(error = %e, "notify topic: poll error"),
                }
            }
            self.rebalances(&kc);
            crate::metrics::events::NotifyStreams(self.streams.len()).emit(&self.shared.metrics);
            self.take_reload();
            self.decide();
            self.images(&kc);
        }
        if !self.sender.shutdown(Duration::from_secs(5)) {
            tracing::warn!("the SMTP sender did not stop in time; unsent e-mails are decided again by the next owner");
        }
    }

    /// A SIGHUP the consumer loop accepted: every stream's notifier gets the
    /// new grouping and silences; rendering the new templates and directory.
    fn take_reload(&mut self) {
        let new = self
            .shared
            .reloaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(new) = new {
            for st in self.streams.values_mut() {
                st.n.reconfigure(new.email.grouping.clone(), new.email.silences.clone());
            }
            self.s = new;
            tracing::info!("notifier group: reloaded settings taken");
        }
    }

    fn fresh(&self, p: i32) -> Notifier {
        let mut n = Notifier::new(self.s.email.grouping.clone(), self.s.email.silences.clone());
        let seed = format!(
            "{}-{}-{}-{p}",
            crate::time::now(),
            std::process::id(),
            self.s.daemon.state_dir.display()
        );
        n.state.instance = format!("{:08x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) as u32);
        n
    }

    fn rebalances(&mut self, kc: &BaseConsumer<Ctx>) {
        for ev in kc.context().take_events() {
            match ev {
                RebalanceEvent::Assigned(list) => {
                    for a in list {
                        let p = a.partition;
                        let (mut n, next, gen) = match &a.snapshot {
                            Some(img) => match Notifier::from_image(
                                self.s.email.grouping.clone(),
                                self.s.email.silences.clone(),
                                &img.image,
                                &self.s.engine.directory,
                            ) {
                                Ok(n) => (n, img.manifest.next, img.manifest.gen),
                                Err(e) => {
                                    tracing::error!(partition = p, error = %e, "notifier image unreadable; the stream starts over from the topic's beginning");
                                    let _ = kc.seek(
                                        &self.k.topic,
                                        p,
                                        Offset::Beginning,
                                        Duration::from_secs(10),
                                    );
                                    (self.fresh(p), 0, img.manifest.gen)
                                }
                            },
                            None => (self.fresh(p), 0, 0),
                        };
                        // what came due before this owner took over is grouped
                        // from now on
                        n.schedule_floor = crate::time::now();
                        tracing::info!(
                            partition = p,
                            offset = next,
                            alerts = n.firing(),
                            "notify stream assigned"
                        );
                        let muted_counted = n.state.muted;
                        self.streams.insert(
                            p,
                            Stream {
                                n,
                                next,
                                gen,
                                unsent: BTreeSet::new(),
                                waiting: None,
                                unstored: Vec::new(),
                                muted_counted,
                            },
                        );
                    }
                }
                RebalanceEvent::Revoked(ps) => {
                    for p in ps {
                        // What it decided and the server has not accepted came
                        // after its last written image (an image waits for
                        // the e-mails decided before it): the next owner
                        // decides them again, so they must not go from here.
                        if let Some(st) = self.streams.remove(&p) {
                            let owed = st.unsent.iter().chain(st.unstored.iter().map(|e| &e.id));
                            if let Err(e) = self.outbox.withdraw(owed) {
                                tracing::error!(partition = p, error = %e, "cannot withdraw the unsent e-mails of a stream handed over; they may be sent twice");
                            }
                        }
                        self.durable
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&p);
                    }
                }
            }
        }
    }

    fn apply(&mut self, p: i32, offset: i64, payload: Option<&[u8]>) {
        let Some(st) = self.streams.get_mut(&p) else {
            return;
        };
        if offset < st.next {
            return;
        }
        st.next = offset + 1;
        match serde_json::from_slice::<Op>(payload.unwrap_or_default()) {
            Ok(op) => st.n.apply(op, &self.s.engine.directory),
            // an internal topic written by overdued: a message it cannot read
            // is a bug or a foreign writer, not a citizen's record
            Err(e) => {
                tracing::error!(partition = p, offset, error = %e, "notify topic: unreadable message skipped")
            }
        }
    }

    /// Advances every stream's notifier to now; its e-mails go to the outbox
    /// and the sender at once (the image that follows waits for them).
    fn decide(&mut self) {
        let now = crate::time::now();
        let silent = self.shared.api.source_silent.load(Ordering::Relaxed);
        let ctx = Context {
            calendar: &self.s.engine.calendar,
            directory: &self.s.engine.directory,
            settings: &self.s.email.delivery,
            links: self.s.daemon.links.as_ref(),
        };
        for id in super::mail::take_requeued(&self.outbox) {
            self.sender.submit(id);
        }
        let done: BTreeSet<String> = self
            .sender
            .take_sent()
            .into_iter()
            .chain(self.sender.take_failed())
            .collect();
        for st in self.streams.values_mut() {
            st.unsent.retain(|id| !done.contains(id));
            st.n.hold_hanging(silent, now);
            // what an earlier round could not store goes first, in order
            let mut decided = std::mem::take(&mut st.unstored);
            let outs =
                st.n.advance(now, &self.s.engine.calendar, &self.s.engine.directory);
            decided.extend(render_decided(&ctx, outs, &self.shared));
            for email in decided {
                if let Some(id) =
                    store_in_order(&self.outbox, &mut st.unstored, email, &self.shared)
                {
                    st.unsent.insert(id.clone());
                    self.sender.submit(id);
                }
            }
            count_muted(&st.n, &mut st.muted_counted, &self.shared);
        }
    }

    /// Takes images every `notify_snapshot_interval`; writes each once the
    /// e-mails decided before it are sent, then commits its offset.
    fn images(&mut self, kc: &BaseConsumer<Ctx>) {
        let every = Duration::from_micros(self.k.snapshot_interval as u64);
        if self.last_image.elapsed() >= every {
            self.last_image = WallInstant::now();
            for st in self.streams.values_mut() {
                if st.waiting.is_none() {
                    let image = st.n.image();
                    let m = Manifest {
                        gen: st.gen + 1,
                        chunks: 0,
                        bytes: image.len() as u64,
                        next: st.next,
                        output: st.next,
                        fired_until: 0,
                        written_at: crate::time::now(),
                    };
                    st.waiting = Some((image, m, st.unsent.clone()));
                }
            }
        }
        let mut commit = TopicPartitionList::new();
        for (&p, st) in self.streams.iter_mut() {
            let ready = st.unstored.is_empty()
                && st
                    .waiting
                    .as_ref()
                    .is_some_and(|(_, _, owed)| owed.iter().all(|id| !st.unsent.contains(id)));
            if !ready {
                continue;
            }
            let Some((image, m, _)) = st.waiting.take() else {
                continue;
            };
            let r = self.writer.write(p, &image, &m);
            crate::metrics::events::NotifierImage {
                partition: p,
                offset: m.next,
                bytes: image.len(),
                error: r.as_ref().err().map(|e| e as &dyn std::fmt::Display),
            }
            .emit(&self.shared.metrics);
            // failed: the previous image stays whole; the next interval tries again
            if r.is_ok() {
                st.gen = m.gen;
                self.durable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p, (m.next, 0));
                let _ = commit.add_partition_offset(&self.k.topic, p, Offset::Offset(m.next));
            }
        }
        if commit.count() > 0 {
            if let Err(e) = kc.commit(&commit, CommitMode::Async) {
                tracing::debug!(error = %e, "notify topic: commit failed");
            }
        }
    }
}
