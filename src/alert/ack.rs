//! Acknowledgements: a unit head says an alerting record is handled (outside the
//! system, waiting for the citizen or another agency), so that reminders and
//! escalations for it stop — until the record's next event, or an alert kind
//! it did not cover (an acknowledged `due_soon` that becomes `overdue` is told
//! again). Metrics and the alerts file never change: an acknowledgement is an
//! e-mail matter, like a silence.

use crate::engine::AlertKind;
use crate::time::Instant;
use serde::{Deserialize, Serialize};

/// Why a record is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Settled outside the one-stop system.
    HandledOutsideSystem,
    /// Waiting for the citizen (a supplement, a fee).
    WaitingForCitizen,
    /// Waiting for another agency's answer.
    WaitingForOtherAgency,
    /// Something else, said in the text.
    Other,
}

impl Reason {
    /// Every reason, in display order.
    pub const ALL: [Reason; 4] = [
        Reason::HandledOutsideSystem,
        Reason::WaitingForCitizen,
        Reason::WaitingForOtherAgency,
        Reason::Other,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HandledOutsideSystem => "handled_outside_system",
            Reason::WaitingForCitizen => "waiting_for_citizen",
            Reason::WaitingForOtherAgency => "waiting_for_other_agency",
            Reason::Other => "other",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// One alert an acknowledgement covers: its kind and the firing it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covered {
    /// Alert kind.
    #[serde(with = "crate::engine::view::kind_serde")]
    pub kind: AlertKind,
    /// When that firing began (a later firing of the same kind is not covered).
    pub fired_at: Instant,
}

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// `a-<hex micros>`.
    pub id: String,
    /// The record.
    pub record_id: String,
    /// The unit holding it when acknowledged.
    pub unit: String,
    /// The alerts firing when acknowledged.
    pub alerts: Vec<Covered>,
    /// Why.
    pub reason: Reason,
    /// Free text (required for [`Reason::Other`]); at most [`MAX_TEXT`] characters.
    #[serde(default)]
    pub text: String,
    /// When.
    pub at: Instant,
    /// Who: the scope of the link used (`unit:<code>` or `admin`).
    pub by: String,
    /// When the record's next event ended it (reminders resume).
    #[serde(default)]
    pub ended_at: Option<Instant>,
}

/// Longest acknowledgement text, in characters.
pub const MAX_TEXT: usize = 500;

/// Most acknowledgements kept (ended ones are dropped first, oldest first).
pub const MAX_KEPT: usize = 100_000;

/// Why an acknowledgement is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Nothing fires for the record: there is nothing to stop.
    #[error("record {0:?} has no alert firing")]
    NotAlerting(String),
    /// `other` without a text.
    #[error("the reason \"other\" needs a text")]
    TextRequired,
    /// Text too long.
    #[error("the text is longer than {MAX_TEXT} characters")]
    TextTooLong,
    /// E-mail is not configured: acknowledgements act on e-mail.
    #[error("e-mail is not configured ([email])")]
    NoEmail,
}

impl Ack {
    /// Whether it still stops reminders for the firing (`kind`, `fired_at`).
    pub fn covers(&self, kind: AlertKind, fired_at: Instant) -> bool {
        self.ended_at.is_none()
            && self
                .alerts
                .iter()
                .any(|c| c.kind == kind && c.fired_at == fired_at)
    }
}
