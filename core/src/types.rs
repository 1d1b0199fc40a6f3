//! Small shared value types: offsets, partitions, timestamps.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A position in a partition: the offset of a record.
pub type Offset = i64;

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub type Timestamp = i64;

/// The epoch of a partition's leader, stored in every batch so that replicas
/// can find where their logs diverge. Single-node logs use epoch 0.
pub type LeaderEpoch = i32;

/// A producer's id, assigned by the log to idempotent and transactional producers.
pub type ProducerId = i64;

/// Partition number inside a topic.
pub type PartitionId = i32;

/// A topic's partition: the unit of order, storage and assignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition number, from 0.
    pub partition: PartitionId,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: PartitionId) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Which records a fetch returns (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record up to the high watermark, aborted and open transactions included.
    #[default]
    ReadUncommitted,
    /// Records up to the last stable offset, without aborted transactions.
    ReadCommitted,
}

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
