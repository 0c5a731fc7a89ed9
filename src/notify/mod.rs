//! E-mail delivery (issue 4): the stage after [`crate::alert`] decided *what* to
//! send to *whom*. Pipeline, in the spirit of Alertmanager's composed stages:
//!
//! 1. [`crate::alert`] (grouping, dedup, silences, escalation, digests) produces
//!    [`Email`]s — already rendered, complete RFC 5322 messages;
//! 2. [`outbox`] persists each one (`state/outbox/`) *before* anything is sent,
//!    so an e-mail accepted for sending survives a crash;
//! 3. [`smtp`] delivers from the outbox (lettre, connection reuse, retries with
//!    exponential backoff and jitter, per-domain rate limit) and appends the id
//!    to the **notification log** only after the SMTP server accepted it (250);
//!    the log is what makes a restart neither lose nor repeat an e-mail.

pub mod eml;
pub mod outbox;
pub mod render;
pub mod smtp;

use crate::config::Secret;
use std::time::Duration;

/// One rendered e-mail, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Stable id (also the file name in the outbox and the key in the
    /// notification log): only `[A-Za-z0-9._-]`.
    pub id: String,
    /// Envelope sender (bare address, e.g. `no-reply@example.vn`).
    pub from: String,
    /// Envelope recipients (bare addresses), deduplicated.
    pub to: Vec<String>,
    /// The complete message (headers + multipart body), CRLF line ends.
    pub bytes: Vec<u8>,
}

/// How to reach the SMTP server (`[email]` in the configuration).
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtp://host:port` (STARTTLS if offered), `smtp://host:port?tls=required`,
    /// `smtp://host:port?tls=none`, `smtps://host:port` (implicit TLS).
    pub url: String,
    /// Login, if the server wants one.
    pub username: Option<String>,
    /// Password (from `env:` / `file:`), never logged.
    pub password: Option<Secret>,
    /// At most this many e-mails per recipient domain per minute (0 = no limit).
    pub rate_per_domain_per_minute: u32,
    /// Per-command SMTP timeout.
    pub timeout: Duration,
    /// Retry backoff: first delay and cap (doubling, with jitter).
    pub backoff_min: Duration,
    /// Cap of the retry backoff.
    pub backoff_max: Duration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            url: "smtp://127.0.0.1:2525".into(),
            username: None,
            password: None,
            rate_per_domain_per_minute: 60,
            timeout: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// Failures of the delivery stage.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The outbox or the notification log could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The SMTP URL or credentials are unusable.
    #[error("invalid SMTP settings: {0}")]
    Settings(String),
    /// An e-mail id that cannot be a file name (only `[A-Za-z0-9._-]`, not
    /// starting with a dot).
    #[error("invalid e-mail id {0:?}")]
    InvalidId(String),
    /// A stored file could not be decoded or encoded.
    #[error("corrupt outbox data: {0}")]
    Corrupt(String),
}
