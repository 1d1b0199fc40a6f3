//! What a connector is: a class in the registry, a source or a sink, and
//! the tasks it splits its work into (Kafka Connect's `SourceConnector`,
//! `SourceTask`, `SinkConnector`, `SinkTask`).
//!
//! A connector class registers itself with `typetag` under the name
//! `connector.class` gives:
//!
//! ```no_run
//! use plexus_connectors::file::FileSource;
//! use plexus_connectors::{Connector, ConnectorClass, ConnectorConfig, Error, Result};
//!
//! /// A file source that insists on JSON lines.
//! #[derive(Debug, serde::Deserialize)]
//! struct JsonLinesSource {}
//!
//! #[typetag::deserialize(name = "JsonLinesSource")]
//! impl ConnectorClass for JsonLinesSource {
//!     fn configure(&self, config: &ConnectorConfig) -> Result<Connector> {
//!         if config.get("format") != Some("json") {
//!             return Err(Error::config(&config.name, "format", "must be json"));
//!         }
//!         FileSource {}.configure(config)
//!     }
//! }
//! ```
//!
//! so a crate can add classes without this one knowing them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use plexus_core::TopicPartition;
use serde_json::Value as Json;

use crate::config::ConnectorConfig;
use crate::error::{Error, Result};
use crate::record::{Rejected, SinkRecord, SourceRecord};

/// A connector class: turns a config into a [`Connector`], refusing keys
/// it does not know and values it cannot use.
#[typetag::deserialize(tag = "connector.class")]
pub trait ConnectorClass: Send + Sync + std::fmt::Debug {
    /// Parses and checks the class's own keys (the shared ones are
    /// [`crate::config::CommonConfig`]'s).
    fn configure(&self, config: &ConnectorConfig) -> Result<Connector>;

    /// Whether its JSON converters embed the schema (Kafka Connect's
    /// envelope) when `schemas.enable` is not set. Plexus writes plain JSON
    /// by default; a class whose records carry types plain JSON loses
    /// (PostgreSQL rows: `numeric(p,s)`, microsecond timestamps, `bytea`)
    /// embeds them, as Kafka Connect's worker does by default, so a sink
    /// that auto-creates tables makes the same column types.
    fn schemas_by_default(&self) -> bool {
        false
    }
}

/// Kafka Connect's names for the built-in classes, and what they are here.
const ALIASES: &[(&str, &str)] = &[
    ("FileStreamSource", "FileSource"),
    ("FileStreamSourceConnector", "FileSource"),
    ("FileStreamSink", "FileSink"),
    ("FileStreamSinkConnector", "FileSink"),
    ("FileSourceConnector", "FileSource"),
    ("FileSinkConnector", "FileSink"),
    ("JdbcSourceConnector", "PostgresSource"),
    ("JdbcSinkConnector", "PostgresSink"),
    ("PostgresSourceConnector", "PostgresSource"),
    ("PostgresSinkConnector", "PostgresSink"),
    // Debezium's io.debezium.connector.postgresql.PostgresConnector.
    ("PostgresConnector", "PostgresCdcSource"),
];

/// The class `connector.class` names, from the registry.
pub fn lookup(config: &ConnectorConfig) -> Result<Box<dyn ConnectorClass>> {
    let class = config.class()?;
    let short = class.rsplit('.').next().unwrap_or(class);
    let canonical = ALIASES.iter().find(|(alias, _)| *alias == short).map_or(short, |(_, c)| *c);
    serde_json::from_value(serde_json::json!({ "connector.class": canonical })).map_err(|_| {
        Error::config(
            &config.name,
            "connector.class",
            format!("{class:?} is not a connector class; use one of {}", crate::CLASSES.join(", ")),
        )
    })
}

/// A configured connector.
pub enum Connector {
    /// Reads an outside system into topics.
    Source(Box<dyn SourceConnector>),
    /// Writes topics to an outside system.
    Sink(Box<dyn SinkConnector>),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Source(_) => "Connector::Source",
            Self::Sink(_) => "Connector::Sink",
        })
    }
}

/// A source connector: checks its source and makes tasks.
#[async_trait]
pub trait SourceConnector: Send + Sync {
    /// Checks what cannot be checked from the config alone (a file's
    /// directory exists, a database answers) before anything starts.
    async fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// How many tasks to run, at most `tasks_max`.
    fn task_count(&self, tasks_max: usize) -> usize {
        let _ = tasks_max;
        1
    }

    /// Task `index` of `count`.
    fn task(&self, index: usize, count: usize) -> Result<Box<dyn SourceTask>>;
}

/// The source offsets stored for a connector: source partition → offset.
pub type SourceOffsets = BTreeMap<String, (Json, Json)>;

/// A source task: polls records with their source partition and offset.
///
/// The worker writes each batch [`SourceTask::poll`] returns, with its
/// offsets, to the log in one transaction, then calls
/// [`SourceTask::commit`]: a task that must tell its source (a
/// replication slot) waits for that call, never before.
#[async_trait]
pub trait SourceTask: Send {
    /// Starts from `offsets`, the last offsets stored per source partition
    /// (as `(partition, offset)` keyed by the partition's JSON text).
    async fn start(&mut self, offsets: &SourceOffsets) -> Result<()>;

    /// The next records; waits a little (well under a second) when there
    /// are none, and may return none.
    async fn poll(&mut self) -> Result<Vec<SourceRecord>>;

    /// The records up to these offsets are durably in the log.
    async fn commit(&mut self, offsets: &[(Json, Json)]) -> Result<()> {
        let _ = offsets;
        Ok(())
    }

    /// Stops; releases what it holds.
    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A sink connector: checks its target and makes tasks.
#[async_trait]
pub trait SinkConnector: Send + Sync {
    /// Checks what cannot be checked from the config alone.
    async fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// How many tasks to run, at most `tasks_max`.
    fn task_count(&self, tasks_max: usize) -> usize {
        let _ = tasks_max;
        1
    }

    /// Task `index` of `count`.
    fn task(&self, index: usize, count: usize) -> Result<Box<dyn SinkTask>>;
}

/// A sink task: receives batches of records and makes them durable.
///
/// There is no default for [`SinkTask::open`]: whether the task keeps its
/// own offsets (exactly once: in the same transaction or file as the
/// data) or leaves them to the consumer group is the one decision every
/// sink must make.
#[async_trait]
pub trait SinkTask: Send {
    /// The task now reads `partitions`. Returns the next offset it has
    /// stored for any of them itself; the others start at the consumer
    /// group's committed offsets.
    async fn open(&mut self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>>;

    /// Takes records (it may buffer them until [`SinkTask::flush`]).
    /// A record it cannot write (a value that does not fit its column)
    /// comes back [`Rejected`], for the error handler — so may records of
    /// earlier puts that a write now refused; an `Err` is a failure of the
    /// task (its target is unreachable) and stops it.
    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<Vec<Rejected>>;

    /// Makes everything put so far durable; `offsets` are the next offsets
    /// to read per partition once it is. After it returns, the worker
    /// commits them to the consumer group. Records whose writing the
    /// target refused (a value the database rejects) come back
    /// [`Rejected`], for the error handler; the rest is durable.
    async fn flush(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<Vec<Rejected>>;

    /// The task no longer reads `partitions` (a rebalance); flushes first
    /// are the worker's job.
    async fn close(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let _ = partitions;
        Ok(())
    }

    /// Stops; releases what it holds.
    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}
