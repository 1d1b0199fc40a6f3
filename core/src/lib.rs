//! The Plexus log: durable, partitioned, Kafka-compatible storage, consumer
//! groups, and the embedded `Producer`, `Consumer` and `Admin` clients.
//!
//! A [`Log`] is a data directory of topics, each split into partitions;
//! each partition is an ordered, append-only sequence of Kafka RecordBatch
//! v2 batches in segment files, acknowledged once fsynced (see [`storage`]).
//! The [`client`] module puts Kafka's client API on top, in-process.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use plexus_core::client::{Admin, Consumer, ConsumerConfig, EmbeddedAdmin, EmbeddedConsumer,
//!     EmbeddedProducer, Producer, ProducerConfig};
//! use plexus_core::{Log, LogConfig, Record};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(LogConfig::new(dir.path())).unwrap();
//! EmbeddedAdmin::new(log.clone()).create_topic("orders", 3, Default::default()).await.unwrap();
//!
//! let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).unwrap();
//! let sent = producer.send("orders", Record::with_key("alice", "book")).await.unwrap();
//!
//! let mut config = ConsumerConfig::new("billing");
//! config.set("auto.offset.reset", "earliest").unwrap();
//! let mut consumer = EmbeddedConsumer::new(log.clone(), config);
//! consumer.subscribe(&["orders"]).await.unwrap();
//! let records = consumer.poll(std::time::Duration::from_secs(5)).await.unwrap();
//! assert_eq!((records[0].partition, records[0].offset), (sent.partition, sent.offset));
//! consumer.close().await.unwrap();
//! log.close().unwrap();
//! # });
//! ```

pub mod client;
pub mod config;
pub mod error;
pub mod group;
pub mod log;
pub mod record;
pub mod storage;
pub mod txn;
pub mod types;

pub use config::TopicConfig;
pub use error::{Error, Result};
pub use log::{Log, LogConfig};
pub use record::{ConsumerRecord, Header, Record};
pub use types::{IsolationLevel, Offset, PartitionId, Timestamp, TopicPartition};
