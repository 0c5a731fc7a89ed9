//! Notification streams: what the engine side tells the notifiers when
//! e-mail decisions run in their own consumer group (docs/spec.md §9.3b).
//!
//! Records are partitioned by record id, but e-mails are grouped per
//! recipient. So each alert transition is re-keyed by the *stream* it belongs
//! to ([`stream_key`]: the unit the alert is routed to, or the administrator)
//! and handed on as an [`Op`]; whichever notifier owns that key's partition
//! groups and digests the unit's whole stream. Every op is idempotent (a fire
//! seen twice, a resolution of an unknown alert, an acknowledgement already
//! kept change nothing), so the engine side may send a batch again after a
//! failed delivery and a new owner may replay what its predecessor saw.
//!
//! [`Notifier::image`] / [`Notifier::from_image`] carry a notifier's whole
//! state, firing alerts included, to the next owner of its partition.

use super::{Ack, AlertInfo, Notifier, Settings, Silence, State, ADMIN};
use crate::engine::directory::Directory;
use crate::engine::AlertKind;
use crate::time::Instant;
use serde::{Deserialize, Serialize};

/// One input of a notifier, as carried by the notify topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// An alert fired.
    Fire {
        /// The alert.
        info: AlertInfo,
    },
    /// An alert resolved.
    Resolve {
        /// Which alert.
        #[serde(with = "crate::engine::view::kind_serde")]
        kind: AlertKind,
        /// Its record.
        record_id: String,
        /// When (the engine's clock).
        at: Instant,
    },
    /// A record with firing alerts had an event (its acknowledgements end).
    Event {
        /// The record.
        record_id: String,
        /// The event's time.
        at: Instant,
    },
    /// A unit head acknowledged a record (made on any instance's pages).
    Ack {
        /// The acknowledgement.
        ack: Ack,
    },
}

/// The stream an alert belongs to: the code of the unit it is e-mailed to, or
/// `admin` when it goes to the administrator (an unrouted record, a unit
/// without addresses). A unit's grouping and digests are whole in its stream;
/// an escalation to a parent unit's head comes from each child's stream, and
/// the note to the unit that forwarded an unrouted record from the
/// administrator's.
pub fn stream_key(info: &AlertInfo, dir: &Directory) -> String {
    let unit = format!("unit:{}", info.unit);
    if info.kind != AlertKind::Unrouted && Notifier::route(info, dir).contains(&unit) {
        info.unit.clone()
    } else {
        ADMIN.to_string()
    }
}

/// A notifier's state with its firing alerts (those [`State`] leaves out).
#[derive(Serialize, Deserialize)]
struct Image {
    state: State,
    alerts: Vec<AlertInfo>,
}

impl Notifier {
    /// Applies one op from the notify topic.
    pub fn apply(&mut self, op: Op, dir: &Directory) {
        match op {
            Op::Fire { info } => self.fire(info, dir),
            Op::Resolve {
                kind,
                record_id,
                at,
            } => self.resolve(kind, &record_id, at),
            Op::Event { record_id, at } => self.record_event(&record_id, at),
            Op::Ack { ack } => self.merge_acks(vec![ack]),
        }
    }

    /// The whole state, firing alerts included (JSON: a partition's notifier
    /// holds its units' alerts only, and is written a few times a minute).
    pub fn image(&self) -> Vec<u8> {
        let img = Image {
            state: self.state.clone(),
            alerts: self.state.alerts.values().map(|f| f.info.clone()).collect(),
        };
        serde_json::to_vec(&img).unwrap_or_default()
    }

    /// A notifier resuming from [`Notifier::image`]: what the image lists as
    /// not yet told is still to be told, the rest was told (as after a restart).
    pub fn from_image(
        settings: Settings,
        config_silences: Vec<Silence>,
        image: &[u8],
        dir: &Directory,
    ) -> Result<Notifier, serde_json::Error> {
        let img: Image = serde_json::from_slice(image)?;
        let mut n = Notifier::with_state(settings, config_silences, img.state);
        for info in img.alerts {
            n.adopt(info, dir);
        }
        Ok(n)
    }

    /// Acknowledgements added since the last call (the daemon hands them on to
    /// the notifier that owns the record's stream).
    pub fn take_new_acks(&mut self) -> Vec<Ack> {
        std::mem::take(&mut self.new_acks)
    }
}
