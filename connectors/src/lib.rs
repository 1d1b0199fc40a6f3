//! Plexus Connect: move data between the log and outside systems without
//! writing code, from configs in Kafka Connect's shape.
//!
//! A connector ([`connector`]) is a class from the registry (`typetag`),
//! configured with Kafka's keys ([`config`]); it splits its work into
//! tasks. The [`worker`] runs them against the log through the core's
//! client traits: source batches go to their topics in one transaction
//! with their source offsets (`connect-offsets`, [`offsets`]); sinks read
//! with the consumer group `connect-<name>` and commit after each flush.
//! Between the log's bytes and a record's [`data::Value`]s sit the
//! [`converter`]s (JSON with or without schema, string, bytes) and the
//! single message [`transforms`]; records that fail follow
//! `errors.tolerance`, to a dead-letter topic if one is set.
//!
//! Built-in classes: [`file`] (`FileSource`, `FileSink`) and [`postgres`]
//! (`PostgresSource`, `PostgresCdcSource`, `PostgresSink`).
//!
//! ```no_run
//! # async fn run() -> plexus_connectors::Result<()> {
//! use std::sync::Arc;
//! use plexus_connectors::{ConnectorConfig, Worker};
//! use plexus_core::client::EmbeddedClients;
//! use plexus_core::{Log, LogConfig};
//!
//! let log = Log::open(LogConfig::new("plexus-data"))?;
//! let worker = Worker::new(Arc::new(EmbeddedClients::new(log)));
//! let config = ConnectorConfig::from_json(
//!     r#"{"name": "orders-in", "config": {"connector.class": "FileSource", "file": "orders.txt", "topic": "orders"}}"#,
//! ).expect("a valid config");
//! worker.start(config).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod connector;
pub mod converter;
pub mod data;
pub mod datetime;
mod error;
pub mod file;
pub mod offsets;
pub mod postgres;
pub mod record;
pub mod rest;
pub mod transforms;
pub mod worker;

pub use config::{CommonConfig, ConnectorConfig};
pub use connector::{Connector, ConnectorClass, SinkConnector, SinkTask, SourceConnector, SourceTask};
pub use error::{Error, Result};
pub use record::{ConnectRecord, Rejected, SinkRecord, SourceRecord};
pub use worker::{ConnectorStatus, State, Worker};

/// The connector classes this crate registers (`connector.class`).
pub const CLASSES: &[&str] = &["FileSource", "FileSink", "PostgresSource", "PostgresCdcSource", "PostgresSink"];
