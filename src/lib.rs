//! Plexus: an event-streaming platform in one Rust library and one binary.
//!
//! This crate is the facade: it re-exports the parts so that an application
//! depends on `plexus` alone. Today that is the log ([`core`], the crate
//! `plexus-core`): durable partitioned storage, consumer groups and the
//! embedded `Producer`, `Consumer` and `Admin` clients. The stream-processing
//! DSL and runtime, the connectors and the query endpoints join it in later
//! releases.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use plexus::client::{Consumer, ConsumerConfig, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig};
//! use plexus::{Log, LogConfig, Record};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(LogConfig::new(dir.path())).unwrap();
//! let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).unwrap();
//! producer.send("payments", Record::with_key("alice", "12.50")).await.unwrap();
//!
//! let mut config = ConsumerConfig::new("ledger");
//! config.set("auto.offset.reset", "earliest").unwrap();
//! let mut consumer = EmbeddedConsumer::new(log.clone(), config);
//! consumer.subscribe(&["payments"]).await.unwrap();
//! let records = consumer.poll(std::time::Duration::from_secs(5)).await.unwrap();
//! assert_eq!(records[0].value.as_deref(), Some(&b"12.50"[..]));
//! consumer.close().await.unwrap();
//! log.close().unwrap();
//! # });
//! ```

pub use plexus_core as core;
pub use plexus_core::{
    ConsumerRecord, Error, Header, Log, LogConfig, Offset, PartitionId, Record, Result, Timestamp, TopicConfig,
    TopicPartition, client, group,
};

/// The README's code, compiled as a doctest so that it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
