//! The error type of the commands (replay, gen, demo, bench, check-config, run). Inner modules have their own: [`overdued::config::ConfigError`]
//! (file, line, field), [`overdued::event::Rejection`] (a reason code, not a failure).

use overdued::config::ConfigError;
use std::io;

/// What can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration or data files are invalid.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// Several configuration errors (`check-config` reports them all).
    #[error("{} configuration errors:{}", .0.len(), list(.0))]
    Configs(Vec<ConfigError>),
    /// Reading or writing a file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A command-line argument is invalid.
    #[error("{0}")]
    Usage(String),
    /// The e-mail outbox or SMTP settings failed.
    #[error("e-mail: {0}")]
    Notify(#[from] overdued::notify::NotifyError),
    /// `.eml` files could not be written.
    #[error("e-mails: {0}")]
    Eml(#[from] overdued::sink::eml::EmlError),
    /// An engine snapshot cannot be restored.
    #[error("{}: {source}", path.display())]
    Snapshot {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: overdued::engine::SnapshotError,
    },
    /// A state file cannot be written.
    #[error(transparent)]
    State(#[from] overdued::state::StateError),
    /// The daemon stopped on an error.
    #[error(transparent)]
    Daemon(#[from] overdued::daemon::Error),
}

/// One error per line, indented.
fn list(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

/// Adds what was being done to an I/O error.
pub trait Context<T> {
    /// Wraps the error with `what`.
    fn ctx(self, what: impl Into<String>) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, io::Error> {
    fn ctx(self, what: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            what: what.into(),
            source,
        })
    }
}
