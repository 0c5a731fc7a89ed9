//! The read side the later stages see: [`AlertInfo`], what the alert stage keeps
//! of a firing alert, built by [`super::Engine::alert_info`] from a transition.
//! It lives with the engine so that the engine never imports the stages after it.

use super::AlertKind;
use crate::time::Instant;
use serde::{Deserialize, Serialize};

/// What the notification stage keeps of a firing alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertInfo {
    /// The record.
    pub record_id: String,
    /// Which alert.
    #[serde(with = "kind_serde")]
    pub kind: AlertKind,
    /// The unit holding the record when it fired (the alert's unit).
    pub unit: String,
    /// Sector code.
    pub sector: String,
    /// Procedure code (empty if not in the catalogue).
    pub procedure: String,
    /// Receipt time.
    pub received_at: Instant,
    /// Due time when it fired.
    pub due: Instant,
    /// Fire time.
    pub fired_at: Instant,
    /// `overdue` only: when it escalates to the parent unit's head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_at: Option<Instant>,
    /// `unrouted` raised by a forward: the unit that forwarded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<String>,
    /// The Kafka partition of the record (daemon only: a revoked partition's
    /// alerts are forgotten, its new owner adopts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

pub(crate) mod kind_serde {
    use crate::engine::AlertKind;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(k: &AlertKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(k.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AlertKind, D::Error> {
        let s = String::deserialize(d)?;
        AlertKind::parse(&s).ok_or_else(|| serde::de::Error::custom("unknown alert kind"))
    }
}
