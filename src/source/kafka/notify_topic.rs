//! Outputs on topics that the state waits for: the notify topic (alert
//! transitions re-keyed by stream — unit code or `admin` — produced by the
//! instance whose engine made them and consumed by the notifier group,
//! docs/spec.md §9.3b) and the alerts topic (§9.4).
//!
//! Nothing is lost: the daemon saves its state and commits source offsets
//! only once every message of the batch since the last save is acknowledged
//! ([`Publisher::settle`]); a batch with a failed delivery is sent again
//! whole. The consumers' ops are idempotent, so the repeats cost nothing, and
//! one message in flight per connection keeps each stream in order.

use super::{client_config, KafkaConfig};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::sync::Mutex;
use std::time::Duration;

/// Creates the notify topic if it does not exist (as many partitions as the
/// source topic; the broker's retention: the notifiers' snapshots hold their
/// offsets, so a day of it is plenty).
pub async fn ensure(k: &KafkaConfig) -> Result<(), super::state_topic::StateTopicError> {
    let Some(topic) = &k.notify_topic else {
        return Ok(());
    };
    super::state_topic::ensure_topic(k, topic, "notify topic", &[]).await
}

/// Delivery reports of the current batch, told apart from earlier batches'
/// late reports by a generation number.
#[derive(Default)]
pub struct BatchAcks {
    /// (generation, acknowledged, failed).
    state: Mutex<(usize, usize, usize)>,
}

impl ClientContext for BatchAcks {}

impl ProducerContext for BatchAcks {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, gen: usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 != gen {
            return;
        }
        match r {
            Ok(_) => s.1 += 1,
            Err((e, _)) => {
                tracing::warn!(error = %e, "delivery failed (sent again with its batch)");
                s.2 += 1;
            }
        }
    }
}

/// What [`Publisher::settle`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Every message since the last save is acknowledged.
    Done,
    /// Some are still in flight (or waiting for room in the local queue).
    InFlight,
    /// A delivery failed: the whole batch is being sent again.
    Resent,
}

/// The notify topic's producer and the batch since the last save.
pub struct Publisher {
    producer: BaseProducer<BatchAcks>,
    topic: String,
    /// (key, value), in the order made.
    batch: Vec<(String, Vec<u8>)>,
    /// How many of `batch` are handed to librdkafka in this generation.
    queued: usize,
    gen: usize,
}

impl Publisher {
    /// A publisher to `[kafka] notify_topic` (`None` without one).
    pub fn new(k: &KafkaConfig) -> rdkafka::error::KafkaResult<Option<Publisher>> {
        match &k.notify_topic {
            Some(t) => Publisher::to(k, t).map(Some),
            None => Ok(None),
        }
    }

    /// A publisher to `topic` (the notify topic, or the alerts topic: any
    /// output that must be acknowledged before the state that made it is
    /// saved).
    pub fn to(k: &KafkaConfig, topic: &str) -> rdkafka::error::KafkaResult<Publisher> {
        let topic = topic.to_string();
        let mut c = client_config(k);
        // not idempotent (a broker freeze can fence an idempotent producer for
        // good); one request in flight keeps retries from reordering a stream
        c.set("acks", "all")
            .set("max.in.flight.requests.per.connection", "1")
            .set("linger.ms", "5");
        if !k.properties.iter().any(|(p, _)| p == "message.timeout.ms") {
            c.set("message.timeout.ms", "10000");
        }
        let producer = c.create_with_context(BatchAcks::default())?;
        Ok(Publisher {
            producer,
            topic,
            batch: Vec::new(),
            queued: 0,
            gen: 0,
        })
    }

    /// Adds a message to the batch and hands it to librdkafka if there is room.
    pub fn push(&mut self, key: String, value: Vec<u8>) {
        self.batch.push((key, value));
        self.queue();
    }

    /// Whether nothing waits to be acknowledged.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    fn queue(&mut self) {
        while self.queued < self.batch.len() {
            let (k, v) = &self.batch[self.queued];
            let rec = BaseRecord::with_opaque_to(&self.topic, self.gen)
                .key(k.as_bytes())
                .payload(v.as_slice());
            match self.producer.send(rec) {
                Ok(()) => self.queued += 1,
                // full: the rest goes at the next call
                Err((e, _)) => {
                    tracing::debug!(error = %e, "local producer queue full");
                    return;
                }
            }
        }
    }

    /// Waits up to `wait` for the batch's acknowledgements. A failed delivery
    /// starts a new generation and sends the whole batch again.
    pub fn settle(&mut self, wait: Duration) -> Settled {
        if self.batch.is_empty() {
            return Settled::Done;
        }
        self.queue();
        let _ = self.producer.flush(wait);
        let (ok, failed) = {
            let s = self
                .producer
                .context()
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            (s.1, s.2)
        };
        if failed > 0 {
            self.next_generation();
            self.queue();
            return Settled::Resent;
        }
        if ok >= self.batch.len() {
            self.batch.clear();
            self.next_generation();
            return Settled::Done;
        }
        Settled::InFlight
    }

    /// Starts counting delivery reports afresh: late reports of earlier
    /// messages no longer count, and the whole batch is to be queued again.
    fn next_generation(&mut self) {
        self.gen += 1;
        self.queued = 0;
        *self
            .producer
            .context()
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (self.gen, 0, 0);
    }
}
