//! Source offsets in the compacted topic `connect-offsets`, as Kafka
//! Connect keeps them: the key is the JSON `["<connector>", <source
//! partition>]`, the value the JSON source offset (a tombstone forgets a
//! partition). A source worker writes them in the same transaction as the
//! records they cover, so a restart resumes exactly after the last
//! committed batch.

use std::time::Duration;

use bytes::Bytes;
use plexus_core::client::{Admin, Clients, ConsumerConfig, SeekTo};
use plexus_core::{Record, TopicConfig, TopicPartition};
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
