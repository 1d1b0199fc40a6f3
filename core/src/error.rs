//! The errors of the log and its clients.

use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::types::{Offset, TopicPartition};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log and its embedded clients.
///
/// Each variant carries what and where (topic, partition, offset, file,
/// position); its `Display` is a sentence for a person, saying what to do
/// where there is something to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a file of the log failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// An fsync failed. The data directory is taken offline: the kernel may
    /// already have dropped the unsynced pages, so retrying could report
    /// data as durable that is not.
    #[error(
        "fsync of {} failed: {source}; the data directory is now offline — check the disk, then restart",
        path.display()
    )]
    FsyncFailed {
        /// The file or directory whose sync failed.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// An earlier fatal I/O error took the data directory offline.
    #[error("the data directory {} is offline after an earlier fsync failure; check the disk, then restart", dir.display())]
    Offline {
        /// The data directory.
        dir: PathBuf,
    },

    /// Another process holds the data directory's lock.
    #[error("data directory {} is in use by process {pid}; stop it or choose another --data-dir", dir.display())]
    DirLocked {
        /// The data directory.
        dir: PathBuf,
        /// The process holding the lock, as it wrote it into the lock file.
        pid: String,
    },

    /// A file of the data directory has content the log cannot read.
    #[error("{} is damaged: {reason}", path.display())]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A stored batch failed its checks below the durable point.
    #[error(
        "partition {tp} is corrupt: {} at byte {position}: {reason}; offsets from {offset} on are not served (restore the segment from a backup or replica, or move it aside to truncate the partition there)",
        path.display()
    )]
    Corrupt {
        /// The partition.
        tp: TopicPartition,
        /// The segment file.
        path: PathBuf,
        /// Byte position of the bad batch in the file.
        position: u64,
        /// The first offset that cannot be served.
        offset: Offset,
        /// What check failed.
        reason: String,
    },

    /// The topic does not exist.
    #[error("topic {0:?} does not exist; create it with `plexus topic create {0}`")]
    UnknownTopic(String),

    /// A topic of that name exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),

    /// The partition does not exist in its topic.
    #[error("partition {partition} of topic {topic:?} does not exist: the topic has {count} partitions")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: i32,
    },

    /// A partition count that cannot be applied.
    #[error("invalid partition count for topic {topic:?}: {reason}")]
    InvalidPartitions {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },

    /// A topic or client configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A batch is larger than the topic allows.
    #[error(
        "a record batch of {size} bytes for {tp} exceeds the topic's max.message.bytes of {max}; send smaller records or raise it with `plexus topic alter {} --config max.message.bytes=N`",
        tp.topic
    )]
    RecordTooLarge {
        /// The partition.
        tp: TopicPartition,
        /// The batch size.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// A produced batch is malformed.
    #[error("invalid record batch for {tp}: {reason}")]
    InvalidRecord {
        /// The partition.
        tp: TopicPartition,
        /// What is wrong.
        reason: String,
    },

    /// An offset outside the partition's range was asked for.
    #[error("offset {offset} is out of range for {tp}: it holds offsets {start} to {end} (exclusive)")]
    OffsetOutOfRange {
        /// The partition.
        tp: TopicPartition,
        /// The offset asked for.
        offset: Offset,
        /// The log start offset.
        start: Offset,
        /// The log end offset.
        end: Offset,
    },

    /// An idempotent producer's sequence number has a gap.
    #[error("out-of-order sequence from producer {producer_id} on {tp}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        /// The partition.
        tp: TopicPartition,
        /// The producer.
        producer_id: i64,
        /// The next sequence the log expected.
        expected: i32,
        /// The sequence received.
        got: i32,
    },

    /// A producer with an older epoch than the partition has seen.
    #[error("producer {producer_id} with epoch {epoch} is fenced by a newer instance (epoch {current}) on {tp}")]
    ProducerFenced {
        /// The partition.
        tp: TopicPartition,
        /// The producer.
        producer_id: i64,
        /// The epoch it sent.
        epoch: i16,
        /// The newest epoch known.
        current: i16,
    },

    /// A group operation failed; the consumer rejoins where that helps.
    #[error("group {group}: {kind}")]
    Group {
        /// The group.
        group: String,
        /// What happened.
        kind: crate::group::GroupErrorKind,
    },

    /// A transaction operation failed.
    #[error("transactional id {transactional_id:?}: {kind}")]
    Transaction {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// What happened.
        kind: crate::txn::TxnErrorKind,
    },

    /// The operation timed out.
    #[error("{0} timed out")]
    Timeout(String),

    /// A client was used in a way its API does not allow.
    #[error("{0}")]
    InvalidState(String),

    /// A batch failed; every record in it gets this shared error.
    #[error("{0}")]
    Send(std::sync::Arc<Error>),

    /// The log was closed while the operation was under way.
    #[error("the log is closed")]
    Closed,
}

impl Error {
    /// An I/O error on a path.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Attaches a path to an [`io::Result`].
pub(crate) trait IoContext<T> {
    /// Maps the error to [`Error::Io`] on `path`.
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
