//! What stops the daemon: each variant keeps its cause's own type.

use crate::notify::NotifyError;
use rdkafka::error::KafkaError;

/// A failure that stops `overdued run`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Kafka client could not be created.
    #[error("{what}: {source}")]
    Kafka {
        /// Which client.
        what: &'static str,
        /// The cause.
        #[source]
        source: KafkaError,
    },
    /// The state topic cannot be created or written to.
    #[error(transparent)]
    StateTopic(#[from] crate::source::kafka::state_topic::StateTopicError),
    /// The source topic deletes events (retention or compaction).
    #[error(transparent)]
    Retention(#[from] crate::source::kafka::retention::RetentionError),
    /// A state file could not be read, moved aside or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The e-mail outbox or sender could not be started.
    #[error("{what}: {source}")]
    Mail {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: NotifyError,
    },
}

/// Adds what was being done to an I/O error.
pub(super) trait Context<T> {
    /// Wraps the error with `what`.
    fn ctx(self, what: impl Into<String>) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn ctx(self, what: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            what: what.into(),
            source,
        })
    }
}
