//! A source task's loop: poll, transform, convert, write — each batch and
//! its source offsets in one transaction, so that after a crash the task
//! resumes right after the last committed batch: no record lost, none
//! written twice (Kafka Connect's exactly-once source support, KIP-618,
//! always on).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use plexus_core::Record;
use plexus_core::client::{Producer, ProducerConfig};
use serde_json::Value as Json;

use super::TaskContext;
use super::errors::{Origin, tolerate};
use crate::connector::SourceTask;
use crate::error::{Error, Result};
use crate::offsets::{OFFSETS_TOPIC, record as offset_record};

pub(crate) async fn run(ctx: TaskContext, mut task: Box<dyn SourceTask>) -> Result<()> {
    let offsets = crate::offsets::read(ctx.clients.as_ref(), &ctx.connector).await?;
    let mut config = ProducerConfig::default();
    let set = |c: &mut ProducerConfig, k: &str, v: &str| c.set(k, v).map_err(|e| Error::Log(e.into()));
    set(&mut config, "transactional.id", &format!("connect-{}-{}", ctx.connector, ctx.id))?;
    set(&mut config, "client.id", &format!("connector-producer-{}-{}", ctx.connector, ctx.id))?;
    let producer = ctx.clients.producer(config)?;
    producer.init_transactions().await?;
    task.start(&offsets).await?;
    let result = poll_loop(&ctx, task.as_mut(), producer.as_ref()).await;
    if result.is_err() {
        let _ = producer.abort_transaction().await;
    }
    let stopped = task.stop().await;
    let closed = producer.close().await;
    result?;
    stopped?;
    Ok(closed?)
}

async fn poll_loop(ctx: &TaskContext, task: &mut dyn SourceTask, producer: &dyn Producer) -> Result<()> {
    while !ctx.shared.stopping() {
        if ctx.shared.paused.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let records = task.poll().await?;
        if records.is_empty() {
            continue;
        }
        producer.begin_transaction()?;
        let mut last: Vec<(Arc<Json>, Json)> = Vec::new();
        let mut deliveries = Vec::with_capacity(records.len() + 1);
        let mut written = 0_u64;
        for source in records {
            remember(&mut last, source.source_partition, source.source_offset);
            if let Some(reason) = source.failure {
                let raw = source.record.value.to_text();
                let origin = Origin {
                    topic: &source.record.topic,
                    partition: -1,
                    offset: -1,
                    key: None,
                    value: Some(raw.into()),
                    headers: &[],
                };
                tolerate(ctx, Some(producer), origin, "source task", &reason).await?;
                continue;
            }
            let mut record = Some(source.record);
            for stage in ctx.transforms.iter() {
                let Some(r) = record.take() else { break };
                match stage.apply(r) {
                    Ok(next) => record = next,
                    Err(reason) => {
                        let origin =
                            Origin { topic: "", partition: -1, offset: -1, key: None, value: None, headers: &[] };
                        tolerate(ctx, Some(producer), origin, &format!("transform {}", stage.name), &reason).await?;
                        break;
                    }
                }
            }
            let Some(record) = record else { continue };
            let key = ctx.common.key_converter.from_connect(record.key_schema.as_ref(), &record.key);
            let value = ctx.common.value_converter.from_connect(record.value_schema.as_ref(), &record.value);
            let (key, value) = match (key, value) {
                (Ok(k), Ok(v)) => (k, v),
                (Err(reason), _) | (_, Err(reason)) => {
                    let origin = Origin {
                        topic: &record.topic,
                        partition: -1,
                        offset: -1,
                        key: None,
                        value: None,
                        headers: &[],
                    };
                    tolerate(ctx, Some(producer), origin, "converter", &reason).await?;
                    continue;
                }
            };
            let out = Record { key, value, headers: record.headers, timestamp: record.timestamp };
            deliveries.push(producer.send(&record.topic, out));
            written += 1;
        }
        let last: Vec<(Json, Json)> = last.into_iter().map(|(p, o)| (Json::clone(&p), o)).collect();
        for (partition, offset) in &last {
            deliveries.push(producer.send(OFFSETS_TOPIC, offset_record(&ctx.connector, partition, Some(offset))));
        }
        producer.flush().await?;
        for d in deliveries {
            d.await?;
        }
        producer.commit_transaction().await?;
        ctx.shared.metrics.records.fetch_add(written, Ordering::Relaxed);
        ctx.shared.metrics.commits.fetch_add(1, Ordering::Relaxed);
        task.commit(&last).await?;
    }
    Ok(())
}

/// Keeps the latest offset per source partition (`Null`: none given);
/// records of one partition come in runs sharing one `Arc`, so the last
/// entry is checked first, by pointer.
fn remember(last: &mut Vec<(Arc<Json>, Json)>, partition: Arc<Json>, offset: Json) {
    if offset.is_null() {
        return;
    }
    if let Some(entry) = last.last_mut().filter(|(p, _)| Arc::ptr_eq(p, &partition) || **p == *partition) {
        entry.1 = offset;
    } else if let Some(entry) = last.iter_mut().find(|(p, _)| **p == *partition) {
        entry.1 = offset;
    } else {
        last.push((partition, offset));
    }
}
