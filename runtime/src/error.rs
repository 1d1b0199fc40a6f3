//! The errors of the runtime.

use std::io;
use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the runtime.
///
/// Each variant carries what and where (store, directory, operation); its
/// `Display` is a sentence for a person, saying what to do where there is
/// something to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A state store name that cannot be used as a directory name.
    #[error("invalid state store name {name:?}: {reason}")]
    InvalidStoreName {
        /// The name asked for.
        name: String,
        /// Why it cannot be used.
        reason: &'static str,
    },

    /// A store option that cannot be applied.
    #[error("invalid configuration of state store {store:?}: {reason}")]
    InvalidStoreConfig {
        /// The store.
        store: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// Creating a store's directory failed.
    #[error("could not create the directory {} of state store {store:?}: {source}", path.display())]
    Io {
        /// The store.
        store: String,
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// RocksDB refused to open a store's directory: it is damaged, locked by
    /// another instance, or was written with other column families.
    #[error(
        "could not open state store {store:?} at {}: {source}; if another instance holds it, stop that one; if the directory is damaged, delete it and the store is restored from its changelog",
        path.display()
    )]
    Open {
        /// The store.
        store: String,
        /// The store's RocksDB directory.
        path: PathBuf,
        /// What RocksDB said.
        #[source]
        source: rocksdb::Error,
    },

    /// A session whose end is before its start.
    #[error("state store {store:?}: a session cannot end ({end}) before it starts ({start})")]
    InvalidSession {
        /// The store.
        store: String,
        /// The session's start, in milliseconds.
        start: i64,
        /// The session's end, in milliseconds.
        end: i64,
    },

    /// A read or write of an open RocksDB store failed.
    #[error("{operation} of state store {store:?} failed: {source}")]
    Store {
        /// The store.
        store: String,
        /// What was being done (`get`, `write`, `range scan`, …).
        operation: &'static str,
        /// What RocksDB said.
        #[source]
        source: rocksdb::Error,
    },

    /// A store holds bytes that its layout does not allow.
    #[error("state store {store:?} is corrupt: {reason}; delete its directory to restore it from its changelog")]
    Corrupt {
        /// The store.
        store: String,
        /// What is wrong with which entry.
        reason: String,
    },

    /// A thread panicked while it held the store's lock, possibly in the
    /// middle of applying a batch, so the store's contents can no longer be
    /// trusted.
    #[error("state store {store:?} is unusable: a thread panicked while writing it; recreate the store")]
    Poisoned {
        /// The store.
        store: String,
    },

    /// A topology that cannot be built or run as described.
    #[error("topology: {0}")]
    Topology(String),

    /// A configuration key with a missing or wrong value.
    #[error("config key {key}: {reason}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// A record from a topic whose key or value its serde cannot read.
    #[error("cannot deserialize the record at {topic}-{partition} offset {offset}: {reason}")]
    Deserialization {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// What the serde said.
        reason: String,
    },

    /// A sink could not serialize a record.
    #[error("sink {node:?} cannot serialize a record for topic {topic:?}: {reason}")]
    Serialization {
        /// The sink node.
        node: String,
        /// Its topic.
        topic: String,
        /// What the serde said.
        reason: String,
    },

    /// A store's serde could not write or read a key or value.
    #[error("state store {store:?}: {reason}")]
    StoreSerde {
        /// The store.
        store: String,
        /// What the serde said.
        reason: String,
    },

    /// A processor failed (returned an error or panicked) while forwarding
    /// the updates it held back, before a commit.
    #[error("task {task} failed forwarding its cached updates before a commit: {reason}")]
    FlushFailed {
        /// The task (`<sub-topology>_<partition>`).
        task: String,
        /// The processor's error or panic message.
        reason: String,
    },

    /// Processing a record failed (an error or a panic in user code): the
    /// task stops, and the record that failed is named.
    #[error("task {task} failed on the record at {topic}-{partition} offset {offset}: {reason}")]
    TaskFailed {
        /// The task.
        task: String,
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// What happened.
        reason: String,
    },

    /// The log (or its clients) failed.
    #[error(transparent)]
    Log(#[from] plexus_core::Error),
}
