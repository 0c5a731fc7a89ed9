//! The Kafka source: a consumer-group member whose rebalances rebuild partition
//! state, and a producer for dead letters and alert transitions.
//!
//! Decisions (docs/spec.md §9):
//! * librdkafka is built from source by `rdkafka` (2.12; Debian's 2.0.2 fails
//!   against the test broker), with SSL and zlib;
//! * the eager rebalance protocol is used (`partition.assignment.strategy` is
//!   forced to `range,roundrobin` unless set explicitly);
//! * on assignment a partition starts from its latest snapshot in the state
//!   topic ([`state_topic`]), read inside the rebalance callback so that the
//!   partition is assigned at the snapshot's offset; without one it is consumed
//!   from its beginning. Events before the resume point (committed offset, the
//!   snapshot's output offset, or what the state folder says was already
//!   output) are applied silently, so nothing is alerted twice;
//! * `[kafka] session_timeout` (45 s, librdkafka's default): a member cut off
//!   from its broker for less keeps its partitions, and its timers keep firing;
//!   a shorter one moves a dead member's partitions sooner. Static membership (`[kafka] instance_id`, `auto` = the host
//!   name and the state folder) lets a restarted instance take its partitions
//!   back without a rebalance on brokers that implement it; it is off by
//!   default because the test broker (Tansu 0.6.0) never completes the rejoin
//!   of a static member restarted after `kill -9` (it keeps the dead member id
//!   as the group's leader: measured, README);
//! * on revocation the offsets whose effects are durable (what the last saved
//!   state covers) are committed synchronously, with their fired-until instant —
//!   never more: a process that stops on an error (a full disk) must not commit
//!   work it could not write;
//! * `enable.partition.eof` is forced on: reaching a partition's end is what
//!   moves its timers from event time to the wall clock;
//! * `fetch.queue.backoff.ms` defaults to 10 ms instead of librdkafka's 1 s (a
//!   backlog is consumed about four times faster; see BENCHMARKS.md).

pub mod notify_topic;
pub mod retention;
pub mod settings;
pub mod state_topic;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
pub use settings::KafkaConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A partition assigned to this instance, with what it resumes from.
pub struct Assignment {
    /// The partition.
    pub partition: i32,
    /// The committed offset (0 = none).
    pub committed: i64,
    /// The wall-clock instant up to which the previous owner fired timers
    /// (from the commit metadata), if the broker kept it.
    pub committed_wall: Option<i64>,
    /// The latest snapshot in the state topic: the partition was assigned at
    /// its offset.
    pub snapshot: Option<state_topic::Latest>,
    /// The partition's first offset still in the topic.
    pub earliest: i64,
}

/// What happened in a rebalance, for the consumer loop.
pub enum RebalanceEvent {
    /// Partitions assigned.
    Assigned(Vec<Assignment>),
    /// Partitions revoked (their durable offsets were committed).
    Revoked(Vec<i32>),
}

/// Consumer context: handles rebalances, reports them through a queue.
pub struct Ctx {
    /// Rebalance events, drained by the loop after each poll.
    pub events: Mutex<Vec<RebalanceEvent>>,
    /// Per partition, the next offset whose effects are durable (alerts synced,
    /// state saved) and the instant its timers had fired to: what a revocation
    /// commits.
    pub durable: Arc<Mutex<HashMap<i32, (i64, i64)>>>,
    /// High watermark per partition, from librdkafka's statistics (every 5 s).
    pub high: Mutex<HashMap<i32, i64>>,
    /// Per partition, how long its broker had not answered at the last
    /// statistics, and when those were taken (the age grows from there).
    fetch_idle: Mutex<HashMap<i32, (Duration, std::time::Instant)>>,
    /// Per broker (`host:port`), whether its connection is up.
    pub brokers: Mutex<std::collections::BTreeMap<String, bool>>,
    topic: String,
    /// Reads the state topic at assignment (none: snapshots are off).
    snapshots: Option<state_topic::Reader>,
}

impl Ctx {
    /// Per partition, the time since its broker last answered (a fetch, or
    /// anything on that connection): under a second while it works, growing
    /// while the broker is frozen or unreachable.
    pub fn fetch_ages(&self) -> HashMap<i32, Duration> {
        let now = std::time::Instant::now();
        self.fetch_idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(&p, &(idle, at))| (p, idle + now.saturating_duration_since(at)))
            .collect()
    }

    /// The rebalance events since the last call (they happen inside `poll`).
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ClientContext for Ctx {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // the end of a partition is news, not an error (`enable.partition.eof`)
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            tracing::debug!(reason, "end of partition");
            return;
        }
        tracing::error!(error = %error, reason, "librdkafka error");
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        let now = std::time::Instant::now();
        // brokers learned from metadata (the bootstrap and logical entries have
        // no node id): is the connection up, and how long since it last answered
        let mut idle_by_node = HashMap::new();
        let mut brokers = std::collections::BTreeMap::new();
        for b in stats.brokers.values() {
            if b.nodeid < 0 {
                continue;
            }
            let up = b.state == "UP";
            brokers.insert(b.nodename.clone(), up);
            if up && b.rxidle >= 0 {
                idle_by_node.insert(b.nodeid, Duration::from_micros(b.rxidle as u64));
            }
        }
        *self.brokers.lock().unwrap_or_else(|p| p.into_inner()) = brokers;
        let mut high = self.high.lock().unwrap_or_else(|p| p.into_inner());
        let mut idle = self.fetch_idle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = stats.topics.get(&self.topic) {
            for (&p, part) in &t.partitions {
                if p < 0 {
                    continue;
                }
                if part.hi_offset >= 0 {
                    high.insert(p, part.hi_offset);
                }
                match idle_by_node.get(&part.broker) {
                    Some(&d) => {
                        idle.insert(p, (d, now));
                    }
                    // no answer on a live connection yet, or none: the age keeps
                    // growing from the last known one (or from now)
                    None => {
                        idle.entry(p).or_insert((Duration::ZERO, now));
                    }
                }
            }
        }
    }
}

impl Ctx {
    /// Assigns `tpl`'s partitions, each at its latest snapshot's offset (or its
    /// beginning), and queues what they resume from for the loop. Called in
    /// the rebalance callback, or once at start-up without a group.
    fn assign(&self, c: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let committed = c
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .ok();
        let mut parts = Vec::new();
        let mut assign = TopicPartitionList::new();
        for el in tpl.elements() {
            let p = el.partition();
            let found = committed
                .as_ref()
                .and_then(|t| t.find_partition(el.topic(), p));
            let off = found
                .as_ref()
                .and_then(|e| e.offset().to_raw())
                .filter(|&o| o >= 0)
                .unwrap_or(0);
            let wall = found
                .as_ref()
                .and_then(|e| e.metadata().strip_prefix("fired-until=")?.parse().ok());
            let earliest = c
                .fetch_watermarks(el.topic(), p, Duration::from_secs(10))
                .map(|(low, _)| low)
                .unwrap_or(0);
            let t0 = std::time::Instant::now();
            let snapshot = match self.snapshots.as_ref().map(|r| r.latest(p)) {
                None | Some(Ok(None)) => None,
                Some(Ok(Some(s))) => {
                    tracing::info!(
                        partition = p,
                        offset = s.manifest.next,
                        bytes = s.image.len(),
                        read_secs = t0.elapsed().as_secs_f64(),
                        "snapshot read"
                    );
                    Some(s)
                }
                Some(Err(e)) => {
                    tracing::error!(partition = p, error = %e, "cannot read the partition's snapshot; rebuilding it from the topic's beginning");
                    None
                }
            };
            let start = match &snapshot {
                Some(s) => Offset::Offset(s.manifest.next),
                None => Offset::Beginning,
            };
            let _ = assign.add_partition_offset(el.topic(), p, start);
            parts.push(Assignment {
                partition: p,
                committed: off,
                committed_wall: wall,
                snapshot,
                earliest,
            });
        }
        if let Err(e) = c.assign(&assign) {
            tracing::error!(error = %e, "cannot assign partitions");
        }
        tracing::info!(
            partitions = ?parts.iter().map(|a| (a.partition, a.committed, a.snapshot.as_ref().map(|s| s.manifest.next))).collect::<Vec<_>>(),
            "partitions assigned (partition, committed offset, snapshot offset)"
        );
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RebalanceEvent::Assigned(parts));
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(c, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let durable = self
                    .durable
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let mut commit = TopicPartitionList::new();
                let mut parts = Vec::new();
                for el in tpl.elements() {
                    parts.push(el.partition());
                    if let Some(&(o, fired)) = durable.get(&el.partition()) {
                        let _ = commit.add_partition_offset(
                            &self.topic,
                            el.partition(),
                            Offset::Offset(o),
                        );
                        // the next owner fires silently what this one fired
                        if let Some(mut e) = commit.find_partition(&self.topic, el.partition()) {
                            e.set_metadata(format!("fired-until={fired}"));
                        }
                    }
                }
                if commit.count() > 0 {
                    if let Err(e) = c.commit(&commit, rdkafka::consumer::CommitMode::Sync) {
                        tracing::warn!(error = %e, "commit on revocation failed");
                    }
                }
                let _ = c.unassign();
                tracing::info!(?parts, "partitions revoked");
                self.events
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(RebalanceEvent::Revoked(parts));
            }
            other => tracing::error!(error = ?other, "rebalance error"),
        }
    }
}

/// Producer context: counts delivery failures, so a sender can wait and check.
#[derive(Default)]
pub struct Deliveries {
    /// Messages the broker acknowledged.
    pub ok: AtomicU64,
    /// Messages that failed.
    pub failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::warn!(error = %e, "delivery failed");
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    for (key, v) in &k.properties {
        c.set(key, v.expose());
    }
    c
}

/// The group consumer (offsets committed by hand, earliest when none).
pub fn consumer(
    k: &KafkaConfig,
    durable: Arc<Mutex<HashMap<i32, (i64, i64)>>>,
) -> KafkaResult<BaseConsumer<Ctx>> {
    let mut c = client_config(k);
    c.set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", (k.session_timeout / 1000).to_string())
        .set(
            "heartbeat.interval.ms",
            (k.session_timeout / 1000 / 3).clamp(100, 3000).to_string(),
        );
    if let Some(id) = &k.instance_id {
        c.set("group.instance.id", id);
    }
    if !k
        .properties
        .iter()
        .any(|(p, _)| p == "partition.assignment.strategy")
    {
        c.set("partition.assignment.strategy", "range,roundrobin");
    }
    if !k
        .properties
        .iter()
        .any(|(p, _)| p == "statistics.interval.ms")
    {
        c.set("statistics.interval.ms", "5000");
    }
    // The end of a partition is what ends its catch-up (timers on event time,
    // then on the wall clock: docs/spec.md §9.3).
    c.set("enable.partition.eof", "true");
    // librdkafka stops fetching a partition for `fetch.queue.backoff.ms` (1 s by
    // default) whenever its local queue is over `queued.min.messages` or
    // `queued.max.messages.kbytes`. Catching up a backlog hits that constantly and
    // the consumer then idles two thirds of the time: 130k events/s instead of
    // ~500k on the development machine (BENCHMARKS.md, "End to end").
    if !k
        .properties
        .iter()
        .any(|(p, _)| p == "fetch.queue.backoff.ms")
    {
        c.set("fetch.queue.backoff.ms", "10");
    }
    let ctx = Ctx {
        events: Mutex::new(Vec::new()),
        durable,
        high: Mutex::new(HashMap::new()),
        fetch_idle: Mutex::new(HashMap::new()),
        brokers: Mutex::new(Default::default()),
        topic: k.topic.clone(),
        snapshots: if k.snapshot_interval > 0 {
            Some(state_topic::Reader::new(k).map_err(|e| match e {
                state_topic::StateTopicError::Kafka { source, .. } => source,
                _ => rdkafka::error::KafkaError::ClientCreation(e.to_string()),
            })?)
        } else {
            None
        },
    };
    let consumer: BaseConsumer<Ctx> = c.create_with_context(ctx)?;
    if !k.standalone {
        consumer.subscribe(&[&k.topic])?;
        return Ok(consumer);
    }
    // every partition, now: no group to join (and none to wait for)
    let md = consumer.fetch_metadata(Some(&k.topic), Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        if let Some(e) = t.error() {
            return Err(rdkafka::error::KafkaError::MetadataFetch(e.into()));
        }
        for p in t.partitions() {
            tpl.add_partition(&k.topic, p.id());
        }
    }
    tracing::info!(
        partitions = tpl.count(),
        "standalone: taking every partition (no consumer group)"
    );
    consumer.context().assign(&consumer, &tpl);
    Ok(consumer)
}

/// The producer for dead letters and alert transitions (idempotent, acks=all).
pub fn producer(k: &KafkaConfig) -> KafkaResult<BaseProducer<Deliveries>> {
    let mut c = client_config(k);
    c.set("acks", "all");
    if !k.properties.iter().any(|(p, _)| p == "message.timeout.ms") {
        c.set("message.timeout.ms", "10000");
    }
    c.create_with_context(Deliveries::default())
}

/// Why a message was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// librdkafka refused to queue it or to flush.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Flushed, but no acknowledgement (or a delivery failure) came back.
    #[error("the broker did not acknowledge the message")]
    NotAcknowledged,
}

/// Sends one message and waits for the broker's acknowledgement.
pub fn send_sync(
    p: &BaseProducer<Deliveries>,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> Result<(), SendError> {
    let failed_before = p.context().failed.load(Ordering::Relaxed);
    let ok_before = p.context().ok.load(Ordering::Relaxed);
    let mut rec = BaseRecord::<[u8], [u8]>::to(topic).payload(payload);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    if let Some(h) = headers {
        rec = rec.headers(h);
    }
    p.send(rec).map_err(|(e, _)| e)?;
    p.flush(Duration::from_secs(15))?;
    if p.context().failed.load(Ordering::Relaxed) > failed_before
        || p.context().ok.load(Ordering::Relaxed) == ok_before
    {
        return Err(SendError::NotAcknowledged);
    }
    Ok(())
}

/// A dead letter ready to be produced: the rejected message's key and value,
/// with headers saying why and where it came from. A value (or key) longer than
/// [`crate::event::MAX_EVENT_BYTES`] — necessarily a `too_large` rejection — is
/// cut to that size and flagged (`truncated: true`, `original_bytes: N`), so that
/// the dead-letter topic can always take it, whatever its size limit; the whole
/// message stays in the source topic at `source_partition` / `source_offset`.
#[derive(Clone)]
pub struct DeadLetter {
    /// The message key (cut like the value).
    pub key: Option<Vec<u8>>,
    /// The message value (cut when too long).
    pub payload: Vec<u8>,
    /// Reason, detail, source and, when cut, `truncated` / `original_bytes`.
    pub headers: OwnedHeaders,
}

impl DeadLetter {
    /// Builds the dead letter of the message at `partition` / `offset` of `topic`.
    pub fn new(
        reason: &str,
        detail: &str,
        source: (&str, i32, i64),
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> DeadLetter {
        let cap = crate::event::MAX_EVENT_BYTES;
        let (topic, partition, offset) = source;
        let mut headers = dead_letter_headers(reason, detail, topic, partition, offset);
        let cut = payload.len() > cap || key.is_some_and(|k| k.len() > cap);
        if cut {
            headers = headers
                .insert(Header {
                    key: "truncated",
                    value: Some("true"),
                })
                .insert(Header {
                    key: "original_bytes",
                    value: Some(&payload.len().to_string()),
                });
        }
        DeadLetter {
            key: key.map(|k| k[..k.len().min(cap)].to_vec()),
            payload: payload[..payload.len().min(cap)].to_vec(),
            headers,
        }
    }

    /// Produces it and waits for the broker's acknowledgement.
    pub fn send(&self, p: &BaseProducer<Deliveries>, topic: &str) -> Result<(), SendError> {
        send_sync(
            p,
            topic,
            self.key.as_deref(),
            &self.payload,
            Some(self.headers.clone()),
        )
    }
}

/// Dead-letter headers: reason, detail, and where the message came from.
pub fn dead_letter_headers(
    reason: &str,
    detail: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "detail",
            value: Some(detail),
        })
        .insert(Header {
            key: "source_topic",
            value: Some(topic),
        })
        .insert(Header {
            key: "source_partition",
            value: Some(&partition.to_string()),
        })
        .insert(Header {
            key: "source_offset",
            value: Some(&offset.to_string()),
        })
}
