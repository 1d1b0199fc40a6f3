//! The errors of Plexus Connect.

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong running connectors. Each variant names
/// what and where; `Display` is one sentence for a person, with the fix
/// where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A connector config that cannot run: an unknown class, a missing,
    /// unknown or ill-typed key.
    #[error("connector {connector:?}: {key}: {reason}")]
    Config {
        /// The connector's name (or the file it came from, before it has one).
        connector: String,
        /// The config key (or `connector.class`, `name`).
        key: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// A config file that is not JSON or TOML of the expected shape.
    #[error("{}: {reason}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },

    /// Reading or writing a file a connector works on.
    #[error("connector {connector:?}: {} : {source}", path.display())]
    Io {
        /// The connector.
        connector: String,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A record a converter or a transform could not handle (the error
    /// handler decides whether this stops the connector).
    #[error("{stage} failed on the record at {topic}-{partition} offset {offset}: {reason}")]
    Record {
        /// The stage: `key converter`, `value converter`, `transform <name>`, `task`.
        stage: String,
        /// Where the record came from (sinks) or goes to (sources).
        topic: String,
        /// Its partition (-1: not yet known).
        partition: i32,
        /// Its offset (-1: not yet known).
        offset: i64,
        /// What went wrong.
        reason: String,
    },

    /// A connector's external system failed (a database, a file system).
    #[error("connector {connector:?}: {reason}")]
    Connector {
        /// The connector.
        connector: String,
        /// What went wrong and what to do.
        reason: String,
    },

    /// No connector of that name is running.
    #[error("connector {0:?} not found")]
    NotFound(String),

    /// The log refused an operation.
    #[error(transparent)]
    Log(#[from] plexus_core::Error),
}

impl Error {
    /// A config error.
    pub fn config(connector: &str, key: &str, reason: impl Into<String>) -> Self {
        Self::Config { connector: connector.to_owned(), key: key.to_owned(), reason: reason.into() }
    }

    /// A connector error.
    pub fn connector(connector: &str, reason: impl Into<String>) -> Self {
        Self::Connector { connector: connector.to_owned(), reason: reason.into() }
    }
}
