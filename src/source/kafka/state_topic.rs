//! The state topic: per source partition, the latest engine snapshot, so that
//! whichever instance is assigned the partition starts from it instead of the
//! topic's beginning (retention may have deleted that).
//!
//! Layout: partition `p` of the state topic holds the snapshots of source
//! partition `p`. A snapshot is its image cut into chunks (`C` messages, keys
//! `s/<gen mod 2>/<i>`) followed by a manifest (`M`, key `manifest`) naming the
//! source offset it reflects, the offset up to which alerts were output and
//! the instant up to which timers fired. The writer is the partition's owner,
//! one message after the other, so a snapshot's chunks sit just before its
//! manifest.
//!
//! Reading needs neither compaction nor commit metadata (the test broker has
//! neither): the last message of the partition is either a manifest, or a
//! chunk `i` of a snapshot torn by a crash, in which case the manifest before it
//! is `i + 1` offsets back. On real Kafka the topic is compacted: chunk keys
//! alternate between two generations, so writing one snapshot can only ever
//! supersede the one before the previous — the previous stays whole until the
//! new manifest is written.

use super::{client_config, KafkaConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Largest chunk written (brokers take 1 MB messages by default).
const CHUNK: usize = 512 * 1024;
const M_LEN: usize = 1 + 8 * 6 + 4;
const C_HEAD: usize = 1 + 8 + 4 + 4;

/// What a failed state-topic read or write says.
#[derive(Debug, thiserror::Error)]
pub enum StateTopicError {
    /// The client failed.
    #[error("state topic {topic}: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// Why.
        source: rdkafka::error::KafkaError,
    },
    /// The broker did not acknowledge every message in time.
    #[error(
        "state topic {topic}, partition {partition}: the broker did not acknowledge the snapshot"
    )]
    NotAcknowledged {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A message is missing or not what the layout says.
    #[error("state topic {topic}, partition {partition}, offset {offset}: {why}")]
    Layout {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Where.
        offset: i64,
        /// What is wrong.
        why: String,
    },
}

/// A snapshot's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Generation (one more than the snapshot it replaces).
    pub gen: u64,
    /// Number of chunks before it.
    pub chunks: u32,
    /// Image size in bytes.
    pub bytes: u64,
    /// The next source offset: the image reflects every event before it.
    pub next: i64,
    /// Alert transitions were output (durably) for events before this offset.
    pub output: i64,
    /// Timers had fired, and been output, up to this instant.
    pub fired_until: i64,
    /// Wall-clock time it was written (Unix µs), for operators.
    pub written_at: i64,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(M_LEN);
        v.push(b'M');
        v.extend_from_slice(&self.gen.to_le_bytes());
        v.extend_from_slice(&self.chunks.to_le_bytes());
        v.extend_from_slice(&self.bytes.to_le_bytes());
        for x in [self.next, self.output, self.fired_until, self.written_at] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }

    fn decode(b: &[u8]) -> Option<Manifest> {
        if b.len() != M_LEN || b[0] != b'M' {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        Some(Manifest {
            gen: u(1),
            chunks: u32::from_le_bytes(b[9..13].try_into().unwrap_or_default()),
            bytes: u(13),
            next: u(21) as i64,
            output: u(29) as i64,
            fired_until: u(37) as i64,
            written_at: u(45) as i64,
        })
    }
}

/// A chunk's header: generation, index, count.
fn chunk_head(b: &[u8]) -> Option<(u64, u32, u32)> {
    if b.len() < C_HEAD || b[0] != b'C' {
        return None;
    }
    Some((
        u64::from_le_bytes(b[1..9].try_into().ok()?),
        u32::from_le_bytes(b[9..13].try_into().ok()?),
        u32::from_le_bytes(b[13..17].try_into().ok()?),
    ))
}

/// The state topic's name: `[kafka] state_topic`, or `<group_id>.state`.
pub fn name(k: &KafkaConfig) -> String {
    k.state_topic
        .clone()
        .unwrap_or_else(|| format!("{}.state", k.group_id))
}

/// Creates the state topic if it does not exist: as many partitions as the
/// source topic, `cleanup.policy=compact` (plus `[kafka.state_topic_config]`).
/// A topic that exists is left as it is.
pub async fn ensure(k: &KafkaConfig) -> Result<(), StateTopicError> {
    let mut configs: Vec<(String, String)> = vec![("cleanup.policy".into(), "compact".into())];
    for (key, v) in &k.state_topic_config {
        configs.retain(|(k2, _)| k2 != key);
        configs.push((key.clone(), v.clone()));
    }
    ensure_topic(k, &name(k), "state topic", &configs).await
}

/// Creates `topic` if it does not exist, with as many partitions as `k`'s
/// source topic, `configs` and `[kafka] state_topic_replication`; one that
/// exists is left as it is (with an error logged when it has fewer partitions
/// than the source: those beyond it would have nowhere to go).
pub async fn ensure_topic(
    k: &KafkaConfig,
    topic: &str,
    what: &str,
    configs: &[(String, String)],
) -> Result<(), StateTopicError> {
    let err = |source| StateTopicError::Kafka {
        topic: topic.to_string(),
        source,
    };
    let admin: AdminClient<DefaultClientContext> = client_config(k).create().map_err(err)?;
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(err)?;
    let count = |t: &str| {
        md.topics()
            .iter()
            .find(|x| x.name() == t && x.error().is_none())
            .map(|x| x.partitions().len())
    };
    let source = count(&k.topic).unwrap_or(1).max(1);
    if let Some(n) = count(topic) {
        if n < source {
            tracing::error!(
                topic,
                what,
                partitions = n,
                source_partitions = source,
                "this topic has fewer partitions than the source topic: add partitions to it"
            );
        }
        return Ok(());
    }
    let mut nt = NewTopic::new(
        topic,
        source as i32,
        TopicReplication::Fixed(k.state_topic_replication),
    );
    for (key, v) in configs {
        nt = nt.set(key, v);
    }
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let res = admin.create_topics([&nt], &opts).await.map_err(err)?;
    for r in res {
        match r {
            Ok(_) => {
                tracing::info!(topic, what, partitions = source, ?configs, "topic created")
            }
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(rdkafka::error::KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}

/// Writes snapshots (the writer thread; one at a time).
pub struct Writer {
    producer: BaseProducer<super::Deliveries>,
    config: rdkafka::config::ClientConfig,
    topic: String,
}

impl Writer {
    /// A writer to the state topic.
    pub fn new(k: &KafkaConfig) -> Result<Writer, StateTopicError> {
        let topic = name(k);
        let mut c = client_config(k);
        c.set("acks", "all").set("enable.idempotence", "true");
        // a snapshot is large: batch its chunks
        c.set("linger.ms", "5");
        if !k.properties.iter().any(|(p, _)| p == "message.timeout.ms") {
            c.set("message.timeout.ms", "30000");
        }
        let producer = c
            .create_with_context(super::Deliveries::default())
            .map_err(|source| StateTopicError::Kafka {
                topic: topic.clone(),
                source,
            })?;
        Ok(Writer {
            producer,
            config: c,
            topic,
        })
    }

    /// Writes a snapshot (see [`Writer::write_once`]); after a failure the
    /// producer is replaced, because an idempotent producer can be left
    /// fenced for good (the test broker fences it after a freeze) and every
    /// later snapshot would fail with it.
    pub fn write(&mut self, p: i32, image: &[u8], m: &Manifest) -> Result<(), StateTopicError> {
        let r = self.write_once(p, image, m);
        if r.is_err() {
            match self
                .config
                .create_with_context(super::Deliveries::default())
            {
                Ok(fresh) => self.producer = fresh,
                Err(e) => tracing::warn!(error = %e, "cannot create a new state-topic producer"),
            }
        }
        r
    }

    /// Writes `image` as partition `p`'s snapshot (generation `m.gen`), then its
    /// manifest; returns once the broker acknowledged all of it.
    fn write_once(&self, p: i32, image: &[u8], m: &Manifest) -> Result<(), StateTopicError> {
        use std::sync::atomic::Ordering;
        let ctx = self.producer.context();
        let (ok0, failed0) = (
            ctx.ok.load(Ordering::Relaxed),
            ctx.failed.load(Ordering::Relaxed),
        );
        let kafka = |source| StateTopicError::Kafka {
            topic: self.topic.clone(),
            source,
        };
        let chunks: Vec<&[u8]> = image.chunks(CHUNK).collect();
        let n = chunks.len() as u32;
        let mut value = Vec::with_capacity(CHUNK + C_HEAD);
        for (i, c) in chunks.iter().enumerate() {
            value.clear();
            value.push(b'C');
            value.extend_from_slice(&m.gen.to_le_bytes());
            value.extend_from_slice(&(i as u32).to_le_bytes());
            value.extend_from_slice(&n.to_le_bytes());
            value.extend_from_slice(c);
            let key = format!("s/{}/{i}", m.gen % 2);
            self.send(p, key.as_bytes(), &value).map_err(kafka)?;
        }
        // the manifest in a batch of its own, after every chunk is acknowledged
        // (it is what makes the snapshot count)
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(kafka)?;
        if ctx.failed.load(Ordering::Relaxed) > failed0
            || ctx.ok.load(Ordering::Relaxed) - ok0 < u64::from(n)
        {
            return Err(StateTopicError::NotAcknowledged {
                topic: self.topic.clone(),
                partition: p,
            });
        }
        let m = Manifest { chunks: n, ..*m };
        self.send(p, b"manifest", &m.encode()).map_err(kafka)?;
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(kafka)?;
        let acked = ctx.ok.load(Ordering::Relaxed) - ok0;
        if ctx.failed.load(Ordering::Relaxed) > failed0 || acked < u64::from(n) + 1 {
            return Err(StateTopicError::NotAcknowledged {
                topic: self.topic.clone(),
                partition: p,
            });
        }
        Ok(())
    }

    /// Queues one message, waiting for room in the local queue if needed.
    fn send(&self, p: i32, key: &[u8], value: &[u8]) -> Result<(), rdkafka::error::KafkaError> {
        loop {
            let rec = BaseRecord::<[u8], [u8]>::to(&self.topic)
                .partition(p)
                .key(key)
                .payload(value);
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// A snapshot read back: its manifest and image.
pub struct Latest {
    /// The manifest.
    pub manifest: Manifest,
    /// The engine image.
    pub image: Vec<u8>,
}

/// Reads snapshots (at assignment, before the source partition is assigned).
pub struct Reader {
    consumer: BaseConsumer<Quiet>,
    topic: String,
}

/// The reader's client context: the end of a partition is how a read stops,
/// not an error to log.
pub struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        tracing::error!(error = %error, reason, "librdkafka error (state topic reader)");
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

impl Reader {
    /// A reader of the state topic (no group: it only assigns and reads).
    pub fn new(k: &KafkaConfig) -> Result<Reader, StateTopicError> {
        let topic = name(k);
        let mut c = client_config(k);
        c.set("group.id", format!("{}.state-reader", k.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.max.bytes", "52428800")
            // a restart waits for this read: do not let the broker hold fetches
            .set("fetch.wait.max.ms", "10")
            .set("fetch.queue.backoff.ms", "10");
        let consumer = c
            .create_with_context(Quiet)
            .map_err(|source| StateTopicError::Kafka {
                topic: topic.clone(),
                source,
            })?;
        Ok(Reader { consumer, topic })
    }

    fn layout(&self, p: i32, offset: i64, why: impl Into<String>) -> StateTopicError {
        StateTopicError::Layout {
            topic: self.topic.clone(),
            partition: p,
            offset,
            why: why.into(),
        }
    }

    /// Reads messages of partition `p` from `from` on: `count` of them, or
    /// (`None`) every one up to the partition's end: (offset, value).
    fn read(
        &self,
        p: i32,
        from: i64,
        count: Option<usize>,
    ) -> Result<Vec<(i64, Vec<u8>)>, StateTopicError> {
        let kafka = |source| StateTopicError::Kafka {
            topic: self.topic.clone(),
            source,
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(from))
            .map_err(kafka)?;
        self.consumer.assign(&tpl).map_err(kafka)?;
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count.is_none_or(|n| out.len() < n) {
            if Instant::now() > deadline {
                return Err(self.layout(
                    p,
                    from,
                    format!("read only {} messages in 30 s", out.len()),
                ));
            }
            match self.consumer.poll(Duration::from_millis(20)) {
                Some(Ok(m)) if m.partition() == p && m.offset() >= from => {
                    out.push((m.offset(), m.payload().unwrap_or_default().to_vec()))
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(q))) if q == p => {
                    if count.is_none() {
                        break;
                    }
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => return Err(kafka(e)),
            }
        }
        let _ = self.consumer.unassign();
        Ok(out)
    }

    /// The latest complete snapshot of source partition `p`, if any.
    pub fn latest(&self, p: i32) -> Result<Option<Latest>, StateTopicError> {
        let (low, high) =
            match self
                .consumer
                .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
            {
                Ok(w) => w,
                // no such partition (yet): nothing was written
                Err(rdkafka::error::KafkaError::MetadataFetch(_)) => return Ok(None),
                Err(source) => {
                    return Err(StateTopicError::Kafka {
                        topic: self.topic.clone(),
                        source,
                    })
                }
            };
        if high <= low {
            return Ok(None);
        }
        // The last message: a manifest, or a chunk of a torn snapshot. Read from
        // the reported end to the real one: a broker may report the end of a
        // batch of several messages one too early (the test broker does).
        let Some((off, v)) = self.read(p, (high - 1).max(low), None)?.pop() else {
            return Ok(None);
        };
        let (moff, manifest) = match (Manifest::decode(&v), chunk_head(&v)) {
            (Some(m), _) => (off, m),
            (None, Some((_, i, _))) => {
                let at = off - i64::from(i) - 1;
                if at < low {
                    // the first snapshot was torn: there is none
                    return Ok(None);
                }
                let (moff, v) = self
                    .read(p, at, Some(1))?
                    .pop()
                    .ok_or_else(|| self.layout(p, at, "no message"))?;
                match Manifest::decode(&v) {
                    Some(m) => (moff, m),
                    None => {
                        return Err(self.layout(p, moff, "not the manifest before a torn snapshot"))
                    }
                }
            }
            (None, None) => return Err(self.layout(p, off, "neither a manifest nor a chunk")),
        };
        if manifest.chunks == 0 {
            return Err(self.layout(p, moff, "a manifest without chunks"));
        }
        let first = moff - i64::from(manifest.chunks);
        if first < low {
            return Err(self.layout(
                p,
                moff,
                "the snapshot's chunks are gone (deleted by retention?)",
            ));
        }
        let msgs = self.read(p, first, Some(manifest.chunks as usize))?;
        let mut image = Vec::with_capacity(manifest.bytes as usize);
        for (i, (off, v)) in msgs.iter().enumerate() {
            match chunk_head(v) {
                Some((g, idx, n))
                    if g == manifest.gen && idx as usize == i && n == manifest.chunks =>
                {
                    image.extend_from_slice(&v[C_HEAD..])
                }
                _ => {
                    return Err(self.layout(
                        p,
                        *off,
                        format!("not chunk {i} of generation {}", manifest.gen),
                    ))
                }
            }
        }
        if image.len() as u64 != manifest.bytes {
            return Err(self.layout(p, moff, "the chunks do not add up to the image"));
        }
        Ok(Some(Latest { manifest, image }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_chunks_are_told_apart() {
        let m = Manifest {
            gen: 7,
            chunks: 3,
            bytes: 1_234_567,
            next: 99,
            output: 120,
            fired_until: -5,
            written_at: 1_700_000_000_000_000,
        };
        let b = m.encode();
        assert_eq!(b.len(), M_LEN);
        assert_eq!(Manifest::decode(&b), Some(m));
        assert_eq!(chunk_head(&b), None);
        let mut c = vec![b'C'];
        c.extend_from_slice(&7u64.to_le_bytes());
        c.extend_from_slice(&2u32.to_le_bytes());
        c.extend_from_slice(&3u32.to_le_bytes());
        c.extend_from_slice(b"payload");
        assert_eq!(chunk_head(&c), Some((7, 2, 3)));
        assert_eq!(Manifest::decode(&c), None);
    }
}
