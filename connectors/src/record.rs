//! Records as connectors see them.
//!
//! A [`SourceRecord`] is what a source task produces: a [`ConnectRecord`]
//! bound for a topic, with the source partition and offset that say how
//! far the source has been read (a file name and a byte position, a table
//! and a last id). A [`SinkRecord`] is what a sink task receives: a
//! [`ConnectRecord`] with the topic, partition and offset it was read from.

use std::sync::Arc;

use arrow_schema::DataType;
use plexus_core::Header;
use serde_json::Value as Json;

use crate::data::Value;

/// A record between a converter and a connector: key and value as
/// [`Value`]s with optional schemas, the topic, timestamp and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRecord {
    /// The topic it goes to (sources) or came from (sinks).
    pub topic: String,
    /// The key ([`Value::Null`]: none).
    pub key: Value,
    /// The key's schema, when known.
    pub key_schema: Option<DataType>,
    /// The value ([`Value::Null`]: a tombstone).
    pub value: Value,
    /// The value's schema, when known.
    pub value_schema: Option<DataType>,
    /// Milliseconds since the epoch (`None`: the log's append time).
    pub timestamp: Option<i64>,
    /// Headers.
    pub headers: Vec<Header>,
}

impl ConnectRecord {
    /// A record for `topic` with no key and no schema.
    pub fn new(topic: impl Into<String>, value: Value) -> Self {
        Self {
            topic: topic.into(),
            key: Value::Null,
            key_schema: None,
            value,
            value_schema: None,
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// With a key.
    #[must_use]
    pub fn with_key(mut self, key: Value) -> Self {
        self.key = key;
        self
    }

    /// With a value schema.
    #[must_use]
    pub fn with_value_schema(mut self, schema: DataType) -> Self {
        self.value_schema = Some(schema);
        self
    }

    /// With a timestamp (milliseconds since the epoch).
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// A record a source task produced, with where in its source it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// Which part of the source it came from (Kafka Connect's source
    /// partition: `{"filename": …}`, `{"table": …}`), a JSON object;
    /// shared, since a task gives the same one to many records.
    pub source_partition: Arc<Json>,
    /// How far that part has been read once this record is in the log
    /// (Kafka Connect's source offset: `{"position": …}`), a JSON object.
    /// Since a batch is written whole or not at all, only the last offset
    /// per partition in a batch is stored: a task may leave the others
    /// `Json::Null` and spare building them.
    pub source_offset: Json,
    /// The record.
    pub record: ConnectRecord,
    /// Why the source could not read this record (a malformed line): the
    /// worker hands it to the error handler (`errors.tolerance`), with the
    /// raw input as the record's value, and moves past it.
    pub failure: Option<String>,
}

/// A record a sink task receives.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// The record (its `topic` is the one it was read from).
    pub record: ConnectRecord,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// A record a sink task could not write, and why: the worker hands it to
/// the error handler (`errors.tolerance`, the dead-letter topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Why, naming the field or column.
    pub reason: String,
}

impl Rejected {
    /// `record` was rejected for `reason`.
    pub fn new(record: &SinkRecord, reason: impl Into<String>) -> Self {
        Self {
            topic: record.record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            reason: reason.into(),
        }
    }
}
