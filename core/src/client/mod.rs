//! Kafka's client API — [`Producer`], [`Consumer`], [`Admin`] — and its
//! embedded implementation on a local [`Log`](crate::Log), with no sockets.
//!
//! The traits are what the stream runtime and the connectors program
//! against, so that the same code runs on the embedded log and, through a
//! Kafka-protocol backend, on any Kafka cluster. Configuration keys are
//! Kafka's (`linger.ms`, `batch.size`, `group.id`, `auto.offset.reset`, ...).

mod admin;
mod config;
mod consumer;
pub mod partitioner;
mod producer;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::types::IsolationLevel;
pub use admin::{EmbeddedAdmin, GroupLag, OffsetSpec, PartitionLag};
pub use config::{AutoOffsetReset, ConsumerConfig, ProducerConfig};
pub use consumer::EmbeddedConsumer;
pub use producer::EmbeddedProducer;

use crate::config::TopicConfig;
use crate::error::Result;
use crate::group::{GroupDescription, OffsetAndMetadata};
use crate::log::TopicDescription;
use crate::record::{ConsumerRecord, Record};
use crate::types::{Offset, PartitionId, Timestamp, TopicPartition};

/// Where a sent record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: PartitionId,
    /// The record's offset.
    pub offset: Offset,
    /// The record's timestamp.
    pub timestamp: Timestamp,
}

/// The acknowledgement of one sent record: resolves to where it landed.
///
/// The record is already queued when `send` returns, so records sent one
/// after another keep their order within a partition whether or not their
/// deliveries are awaited in between.
#[derive(Debug)]
#[must_use = "a Delivery reports whether the record was written; await it"]
pub struct Delivery(DeliveryState);

#[derive(Debug)]
enum DeliveryState {
    Pending(tokio::sync::oneshot::Receiver<Result<RecordMetadata>>),
    Failed(Option<crate::Error>),
}

impl Delivery {
    pub(crate) fn pending(rx: tokio::sync::oneshot::Receiver<Result<RecordMetadata>>) -> Self {
        Self(DeliveryState::Pending(rx))
    }

    pub(crate) fn failed(error: crate::Error) -> Self {
        Self(DeliveryState::Failed(Some(error)))
    }
}

impl std::future::Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            DeliveryState::Pending(rx) => {
                std::pin::Pin::new(rx).poll(cx).map(|r| r.unwrap_or(Err(crate::Error::Closed)))
            }
            DeliveryState::Failed(e) => std::task::Poll::Ready(Err(e.take().unwrap_or(crate::Error::Closed))),
        }
    }
}

/// Sends records to topics. Sends are batched per partition (`linger.ms`,
/// `batch.size`) and idempotent (`enable.idempotence`, on by default).
#[async_trait]
pub trait Producer: Send + Sync {
    /// Queues a record and returns at once; the [`Delivery`] resolves once
    /// the record is acknowledged. The partition comes from the key
    /// (Kafka's murmur2 partitioner) or, for records without a key, from
    /// the sticky partitioner.
    fn send(&self, topic: &str, record: Record) -> Delivery;

    /// Queues a record for a given partition.
    fn send_to(&self, topic: &str, partition: PartitionId, record: Record) -> Delivery;

    /// Sends everything buffered now and waits until it is acknowledged.
    async fn flush(&self) -> Result<()>;

    /// Flushes and stops the producer.
    async fn close(&self) -> Result<()>;

    /// Registers this producer's `transactional.id` with the transaction
    /// coordinator: fences any older producer with the same id and
    /// completes or aborts what it left open. Call once, before the first
    /// transaction.
    async fn init_transactions(&self) -> Result<()>;

    /// Starts a transaction: every record sent until it commits or aborts
    /// belongs to it.
    fn begin_transaction(&self) -> Result<()>;

    /// Commits a consumer group's offsets as part of the transaction: they
    /// take effect only if the transaction commits (the consume-transform-
    /// produce loop of exactly-once processing). `group` comes from
    /// [`Consumer::group_metadata`], so that a consumer that lost its
    /// partitions in a rebalance cannot commit for them.
    async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<TopicPartition, Offset>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()>;

    /// Sends everything buffered, then commits the transaction: its records
    /// and offsets become visible to `read_committed` readers, atomically.
    /// If a send of the transaction failed, this fails and the transaction
    /// must be aborted.
    async fn commit_transaction(&self) -> Result<()>;

    /// Aborts the transaction: `read_committed` readers never see its records.
    async fn abort_transaction(&self) -> Result<()>;
}

/// A consumer's group membership as a transactional producer needs it
/// (Kafka's `ConsumerGroupMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// `group.id`.
    pub group_id: String,
    /// The generation the member joined in (-1 outside a generation).
    pub generation_id: i32,
    /// The member id ("" when not a member).
    pub member_id: String,
    /// `group.instance.id`, for static membership.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata that names only the group, for offsets committed outside a
    /// live membership (no zombie fencing).
    pub fn new(group_id: impl Into<String>) -> Self {
        Self { group_id: group_id.into(), generation_id: -1, member_id: String::new(), group_instance_id: None }
    }
}

/// Where to move a consumer's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// An offset.
    Offset(Offset),
    /// The log start offset.
    Beginning,
    /// The high watermark: only new records.
    End,
    /// The first record at or after a timestamp (the end if none).
    Timestamp(Timestamp),
}

/// Reads records from topics, alone (`assign`) or in a consumer group
/// (`subscribe`), and commits its progress.
#[async_trait]
pub trait Consumer: Send {
    /// Joins the group `group.id` and consumes the partitions it assigns
    /// from these topics.
    async fn subscribe(&mut self, topics: &[&str]) -> Result<()>;

    /// Consumes exactly these partitions, outside any group membership.
    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()>;

    /// Leaves the group (or drops the manual assignment).
    async fn unsubscribe(&mut self) -> Result<()>;

    /// Returns the next records, waiting up to `timeout` for some; takes
    /// part in rebalances and auto-commits as Kafka's `poll` does.
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>>;

    /// Moves the position of an assigned partition.
    async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()>;

    /// The partitions currently assigned.
    fn assignment(&self) -> Vec<TopicPartition>;

    /// The group membership, for [`Producer::send_offsets_to_transaction`];
    /// `None` without a `group.id`.
    fn group_metadata(&self) -> Option<ConsumerGroupMetadata>;

    /// The next offset to be returned for a partition, if known.
    fn position(&self, tp: &TopicPartition) -> Option<Offset>;

    /// Commits the current positions and waits until they are durable.
    async fn commit_sync(&mut self) -> Result<()>;

    /// Commits given offsets (the *next* offset to consume, as Kafka does).
    async fn commit_offsets(&mut self, offsets: BTreeMap<TopicPartition, Offset>) -> Result<()>;

    /// Commits the current positions in the background; errors are logged.
    fn commit_async(&mut self);

    /// The group's committed offsets for these partitions.
    async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, Offset>>;

    /// Commits (with auto-commit on), leaves the group and stops.
    async fn close(&mut self) -> Result<()>;
}

/// Manages topics and groups.
#[async_trait]
pub trait Admin: Send + Sync {
    /// Creates a topic.
    async fn create_topic(&self, name: &str, partitions: i32, config: TopicConfig) -> Result<()>;
    /// Deletes a topic.
    async fn delete_topic(&self, name: &str) -> Result<()>;
    /// Lists topic names (internal ones too).
    async fn list_topics(&self) -> Result<Vec<String>>;
    /// Describes a topic.
    async fn describe_topic(&self, name: &str) -> Result<TopicDescription>;
    /// Changes a topic's config keys (and resets `delete` ones to defaults).
    async fn alter_topic_config(&self, name: &str, set: &[(String, String)], delete: &[String]) -> Result<TopicConfig>;
    /// Grows a topic to `total` partitions.
    async fn create_partitions(&self, name: &str, total: i32) -> Result<()>;
    /// Lists groups with their state.
    async fn list_groups(&self) -> Result<Vec<(String, String)>>;
    /// Describes a group: members, assignment, committed offsets.
    async fn describe_group(&self, group: &str) -> Result<GroupDescription>;
    /// Per-partition lag of a group.
    async fn group_lag(&self, group: &str) -> Result<GroupLag>;
    /// Resets a group's offsets for a topic (the group must have no members).
    async fn reset_offsets(&self, group: &str, topic: &str, to: OffsetSpec)
    -> Result<BTreeMap<TopicPartition, Offset>>;
    /// The committed offsets of a group.
    async fn committed_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>>;
}

/// Makes clients of one backend: what the stream runtime and the
/// connectors are given, so that the same code runs on the embedded log
/// and, through a Kafka-protocol backend, on any Kafka cluster.
pub trait Clients: Send + Sync + std::fmt::Debug {
    /// A producer.
    fn producer(&self, config: ProducerConfig) -> Result<Box<dyn Producer>>;
    /// A consumer.
    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>>;
    /// An admin client.
    fn admin(&self) -> Box<dyn Admin>;
}

/// The clients of a local [`Log`](crate::Log), in-process.
#[derive(Debug, Clone)]
pub struct EmbeddedClients {
    log: crate::Log,
}

impl EmbeddedClients {
    /// Clients of `log`.
    pub fn new(log: crate::Log) -> Self {
        Self { log }
    }

    /// The log.
    pub fn log(&self) -> &crate::Log {
        &self.log
    }
}

impl Clients for EmbeddedClients {
    fn producer(&self, config: ProducerConfig) -> Result<Box<dyn Producer>> {
        Ok(Box::new(EmbeddedProducer::new(self.log.clone(), config)?))
    }

    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(EmbeddedConsumer::new(self.log.clone(), config)))
    }

    fn admin(&self) -> Box<dyn Admin> {
        Box::new(EmbeddedAdmin::new(self.log.clone()))
    }
}

/// Defaults in one place.
pub(crate) mod defaults {
    use super::Duration;

    /// How long a consumer waits in one poll step before re-checking.
    pub(crate) const POLL_SLICE: Duration = Duration::from_millis(100);
}
