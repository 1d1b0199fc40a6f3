//! Source and sink nodes: where records enter a sub-topology from a topic
//! (deserialized) and leave it for a topic (serialized).

use std::sync::Arc;

use plexus_core::ConsumerRecord;

use crate::error::{Error, Result};
use crate::processor::node::Node;
use crate::processor::{Child, OutputRecord, Record, TaskContext};
use crate::serde::Serde;

/// A source as the task feeds it: raw records from its topics.
pub(crate) trait RawSource {
    fn process_raw(&mut self, raw: &ConsumerRecord, task: &mut TaskContext) -> Result<()>;
}

/// Picks a record's event time from its key, value and the timestamp it
/// has in the log (Kafka's `TimestampExtractor`).
pub(crate) type TimestampExtractor<K, V> =
    Arc<dyn Fn(&K, &V, plexus_core::Timestamp) -> plexus_core::Timestamp + Send + Sync>;

pub(crate) struct SourceNode<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) extractor: Option<TimestampExtractor<K, V>>,
    pub(crate) children: Vec<Child<K, V>>,
}

impl<K: Clone, V: Clone> RawSource for SourceNode<K, V> {
    fn process_raw(&mut self, raw: &ConsumerRecord, task: &mut TaskContext) -> Result<()> {
        let at = |what: &str, e: crate::serde::SerdeError| Error::Deserialization {
            topic: raw.topic.clone(),
            partition: raw.partition,
            offset: raw.offset,
            reason: format!("{what}: {e}"),
        };
        let key = self.key_serde.deserialize(raw.key.as_deref()).map_err(|e| at("key", e))?;
        let value = self.value_serde.deserialize(raw.value.as_deref()).map_err(|e| at("value", e))?;
        let timestamp = match &self.extractor {
            Some(extract) => extract(&key, &value, raw.timestamp),
            None => raw.timestamp,
        };
        if timestamp < 0 {
            // As Kafka Streams: a record without a valid event time is
            // skipped and counted.
            tracing::warn!(topic = %raw.topic, partition = raw.partition, offset = raw.offset, timestamp, "skipping a record with a negative timestamp");
            task.dropped_records += 1;
            return Ok(());
        }
        task.stream_time = task.stream_time.max(timestamp);
        let record = Record { key, value, timestamp, headers: raw.headers.clone() };
        let Some((last, rest)) = self.children.split_last() else { return Ok(()) };
        for child in rest {
            child.process(record.clone(), task)?;
        }
        last.process(record, task)
    }
}

/// Picks a record's topic (Kafka's `TopicNameExtractor`).
pub(crate) type TopicExtractor<K, V> = Arc<dyn Fn(&K, &V) -> String + Send + Sync>;

/// Where a sink writes: one topic, or a topic chosen per record.
pub(crate) enum SinkTopic<K, V> {
    Fixed(String),
    Dynamic(TopicExtractor<K, V>),
}

pub(crate) struct SinkNode<K, V> {
    pub(crate) name: String,
    pub(crate) topic: SinkTopic<K, V>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Node<K, V> for SinkNode<K, V> {
    fn process(&mut self, record: Record<K, V>, task: &mut TaskContext) -> Result<()> {
        let topic = match &self.topic {
            SinkTopic::Fixed(t) => t.clone(),
            SinkTopic::Dynamic(extract) => {
                let t = extract(&record.key, &record.value);
                plexus_core::config::validate_topic_name(&t).map_err(|e| Error::Serialization {
                    node: self.name.clone(),
                    topic: t.clone(),
                    reason: format!("the topic name extractor chose an invalid topic: {e}"),
                })?;
                t
            }
        };
        let at = |what: &str, e: crate::serde::SerdeError| Error::Serialization {
            node: self.name.clone(),
            topic: topic.clone(),
            reason: format!("{what}: {e}"),
        };
        let key = self.key_serde.serialize(&record.key).map_err(|e| at("key", e))?;
        let value = self.value_serde.serialize(&record.value).map_err(|e| at("value", e))?;
        task.outputs.push(OutputRecord {
            topic,
            partition: None,
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        });
        Ok(())
    }
}
