//! Source offsets in the compacted topic `connect-offsets`, as Kafka
//! Connect keeps them: the key is the JSON `["<connector>", <source
//! partition>]`, the value the JSON source offset (a tombstone forgets a
//! partition). A source worker writes them in the same transaction as the
//! records they cover, so a restart resumes exactly after the last
//! committed batch.
//!
//! A sink's offsets are its consumer group's (`connect-<name>`) committed
//! offsets. Both kinds are listed, altered and reset in Kafka Connect's
//! REST shape ([`ConnectorOffsets`]): a source partition and offset are the
//! connector's own JSON; a sink's are `{"kafka_topic", "kafka_partition"}`
//! and `{"kafka_offset"}`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use plexus_core::client::{Admin, Clients, ConsumerConfig, ProducerConfig, SeekTo};
use plexus_core::{Record, TopicConfig, TopicPartition};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::connector::SourceOffsets;
use crate::error::{Error, Result};

/// The topic of source offsets.
pub const OFFSETS_TOPIC: &str = "connect-offsets";

/// Creates `connect-offsets` (compacted, one partition) if it is missing.
pub async fn ensure_topic(admin: &dyn Admin) -> Result<()> {
    if admin.list_topics().await?.iter().any(|t| t == OFFSETS_TOPIC) {
        return Ok(());
    }
    let mut config = TopicConfig::default();
    config.set("cleanup.policy", "compact").map_err(|e| Error::Log(e.into()))?;
    match admin.create_topic(OFFSETS_TOPIC, 1, config).await {
        Ok(()) => Ok(()),
        // Another worker created it meanwhile.
        Err(_) if admin.list_topics().await?.iter().any(|t| t == OFFSETS_TOPIC) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The key under which `connector`'s offset for `partition` is stored.
pub fn key(connector: &str, partition: &Json) -> Bytes {
    Bytes::from(serde_json::json!([connector, partition]).to_string())
}

/// The record storing an offset (`None`: forget the partition).
pub fn record(connector: &str, partition: &Json, offset: Option<&Json>) -> Record {
    let key = key(connector, partition);
    match offset {
        Some(o) => Record::with_key(key, o.to_string()),
        None => Record::tombstone(key),
    }
}

/// Reads every committed offset of `connector`: the latest per partition.
pub async fn read(clients: &dyn Clients, connector: &str) -> Result<SourceOffsets> {
    let mut config = ConsumerConfig::without_group();
    config.set("isolation.level", "read_committed").map_err(|e| Error::Log(e.into()))?;
    let mut consumer = clients.consumer(config)?;
    let tp = TopicPartition::new(OFFSETS_TOPIC, 0);
    consumer.assign(std::slice::from_ref(&tp)).await?;
    consumer.seek(&tp, SeekTo::Beginning).await?;
    let end = clients.admin().describe_topic(OFFSETS_TOPIC).await?.partitions.first().map_or(0, |p| p.high_watermark);
    let mut offsets = SourceOffsets::new();
    let mut idle = 0;
    while consumer.position(&tp).unwrap_or(0) < end {
        let records = consumer.poll(Duration::from_millis(50)).await?;
        if records.is_empty() {
            // The tail is a transaction still open (a worker that died
            // mid-batch): it is aborted when it times out; what it holds
            // was never committed, so reading stops here.
            idle += 1;
            if idle > 100 {
                tracing::warn!(
                    connector,
                    "connect-offsets ends in an open transaction; starting from the offsets before it"
                );
                break;
            }
            continue;
        }
        idle = 0;
        for r in records {
            let Some(key) = r.key.as_deref() else { continue };
            let Ok(Json::Array(parts)) = serde_json::from_slice::<Json>(key) else { continue };
            let [Json::String(name), partition] = parts.as_slice() else { continue };
            if name != connector {
                continue;
            }
            let text = partition.to_string();
            match r.value.as_deref().map(serde_json::from_slice::<Json>) {
                Some(Ok(offset)) => {
                    offsets.insert(text, (partition.clone(), offset));
                }
                None => {
                    offsets.remove(&text);
                }
                Some(Err(e)) => {
                    tracing::warn!(connector, partition = %text, error = %e, "ignoring an unreadable stored offset");
                }
            }
        }
    }
    consumer.close().await?;
    Ok(offsets)
}

/// A connector's offsets in Kafka Connect's REST shape
/// (`{"offsets": [{"partition": {…}, "offset": {…}}]}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorOffsets {
    /// One entry per partition.
    pub offsets: Vec<ConnectorOffset>,
}

/// One partition's offset (`null`: none, or forget it when altering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorOffset {
    /// A source partition, or a sink's `{"kafka_topic", "kafka_partition"}`.
    pub partition: Json,
    /// A source offset, or a sink's `{"kafka_offset"}`.
    #[serde(default)]
    pub offset: Json,
}

/// A source connector's committed offsets, in the REST shape.
pub async fn source_offsets(clients: &dyn Clients, connector: &str) -> Result<ConnectorOffsets> {
    let offsets = read(clients, connector).await?;
    Ok(ConnectorOffsets {
        offsets: offsets.into_values().map(|(partition, offset)| ConnectorOffset { partition, offset }).collect(),
    })
}

/// Writes a source connector's offsets to `connect-offsets` (a `null`
/// offset forgets the partition), durable before it returns. The
/// connector must not be running: its tasks would overwrite them.
pub async fn alter_source_offsets(clients: &dyn Clients, connector: &str, offsets: &ConnectorOffsets) -> Result<()> {
    for (i, o) in offsets.offsets.iter().enumerate() {
        if o.partition.is_null() {
            return Err(Error::connector(
                connector,
                format!(
                    "offsets[{i}]: the source partition is null; give it as GET /connectors/{connector}/offsets lists it"
                ),
            ));
        }
    }
    ensure_topic(clients.admin().as_ref()).await?;
    let producer = clients.producer(ProducerConfig::default())?;
    let deliveries: Vec<_> = offsets
        .offsets
        .iter()
        .map(|o| {
            producer.send(OFFSETS_TOPIC, record(connector, &o.partition, Some(&o.offset).filter(|v| !v.is_null())))
        })
        .collect();
    let flushed = producer.flush().await;
    let mut delivered = Ok(());
    for d in deliveries {
        if let Err(e) = d.await {
            delivered = Err(e);
        }
    }
    let closed = producer.close().await;
    flushed?;
    delivered?;
    Ok(closed?)
}

/// The consumer group of a sink connector.
pub fn sink_group(connector: &str) -> String {
    format!("connect-{connector}")
}

/// A sink connector's committed offsets (its group's), in the REST shape.
pub async fn sink_offsets(clients: &dyn Clients, connector: &str) -> Result<ConnectorOffsets> {
    let committed = clients.admin().committed_offsets(&sink_group(connector)).await?;
    Ok(ConnectorOffsets {
        offsets: committed
            .into_iter()
            .map(|(tp, o)| ConnectorOffset {
                partition: serde_json::json!({"kafka_topic": tp.topic, "kafka_partition": tp.partition}),
                offset: serde_json::json!({"kafka_offset": o.offset}),
            })
            .collect(),
    })
}

/// Commits a sink connector's offsets for its group (a `null` offset puts
/// the partition back at its log start, where a sink with no committed
/// offset begins). The group must have no members: the connector is
/// stopped.
pub async fn alter_sink_offsets(clients: &dyn Clients, connector: &str, offsets: &ConnectorOffsets) -> Result<()> {
    let admin = clients.admin();
    let mut commits = BTreeMap::new();
    for (i, o) in offsets.offsets.iter().enumerate() {
        let bad = |reason: &str| {
            Error::connector(
                connector,
                format!(
                    "offsets[{i}]: {reason}; a sink's entry is {{\"partition\": {{\"kafka_topic\": \"orders\", \"kafka_partition\": 0}}, \"offset\": {{\"kafka_offset\": 42}}}}"
                ),
            )
        };
        let topic = o
            .partition
            .get("kafka_topic")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("the partition needs kafka_topic, a string"))?;
        let partition = o
            .partition
            .get("kafka_partition")
            .and_then(Json::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p >= 0)
            .ok_or_else(|| bad("the partition needs kafka_partition, a number from 0"))?;
        let description = admin.describe_topic(topic).await.map_err(|e| bad(&format!("topic {topic:?}: {e}")))?;
        let Some(p) = description.partitions.iter().find(|p| p.partition == partition) else {
            return Err(bad(&format!("topic {topic:?} has no partition {partition}")));
        };
        let offset = if o.offset.is_null() {
            p.log_start_offset
        } else {
            o.offset
                .get("kafka_offset")
                .and_then(Json::as_i64)
                .filter(|o| *o >= 0)
                .ok_or_else(|| bad("the offset needs kafka_offset, a number from 0 (or is null)"))?
        };
        commits.insert(TopicPartition::new(topic, partition), offset);
    }
    if commits.is_empty() {
        return Ok(());
    }
    let mut config = ConsumerConfig::new(sink_group(connector));
    config.set("enable.auto.commit", "false").map_err(|e| Error::Log(e.into()))?;
    let mut consumer = clients.consumer(config)?;
    let committed = consumer.commit_offsets(commits).await;
    let closed = consumer.close().await;
    committed?;
    Ok(closed?)
}
