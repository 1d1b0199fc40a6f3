//! What happens to a record a converter, a transform or a task could not
//! handle: with `errors.tolerance=none` the task stops with an error that
//! names the stage and the record; with `all` the record is skipped —
//! logged if `errors.log.enable`, and sent as it was read to
//! `errors.deadletterqueue.topic.name` with the failure in Kafka Connect's
//! `__connect.errors.*` headers — and the rest flow on.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use plexus_core::client::Producer;
use plexus_core::{Header, Record};

use super::TaskContext;
use crate::config::Tolerance;
use crate::error::{Error, Result};

/// The headers a dead letter carries (Kafka Connect's names).
pub const DEAD_LETTER_HEADERS: [&str; 8] = [
    "__connect.errors.topic",
    "__connect.errors.partition",
    "__connect.errors.offset",
    "__connect.errors.connector.name",
    "__connect.errors.task.id",
    "__connect.errors.stage",
    "__connect.errors.exception.class.name",
    "__connect.errors.exception.message",
];

/// A record as it was read (sinks) or made (sources), to name it and to
/// send it to the dead-letter topic.
pub(crate) struct Origin<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: &'a [Header],
}

impl<'a> Origin<'a> {
    /// A record as a sink read it.
    pub(crate) fn read(r: &'a plexus_core::ConsumerRecord) -> Self {
        Self {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: &r.headers,
        }
    }
}

/// Handles a failed record (see the module docs): `Err` stops the task.
pub(crate) async fn tolerate(
    ctx: &TaskContext,
    dead_letters: Option<&dyn Producer>,
    origin: Origin<'_>,
    stage: &str,
    reason: &str,
) -> Result<()> {
    let error = Error::Record {
        stage: stage.to_owned(),
        topic: origin.topic.to_owned(),
        partition: origin.partition,
        offset: origin.offset,
        reason: reason.to_owned(),
    };
    if ctx.common.tolerance == Tolerance::None {
        return Err(error);
    }
    ctx.shared.metrics.skipped.fetch_add(1, Ordering::Relaxed);
    if ctx.common.log_errors {
        if ctx.common.log_messages {
            let value = origin.value.as_deref().map(String::from_utf8_lossy);
            tracing::warn!(connector = %ctx.connector, task = ctx.id, %error, value = ?value, "skipping a record");
        } else {
            tracing::warn!(connector = %ctx.connector, task = ctx.id, %error, "skipping a record");
        }
    }
    if let (Some(topic), Some(producer)) = (&ctx.common.dead_letter_topic, dead_letters) {
        let mut headers = origin.headers.to_vec();
        if ctx.common.dead_letter_headers {
            let values = [
                origin.topic.to_owned(),
                origin.partition.to_string(),
                origin.offset.to_string(),
                ctx.connector.clone(),
                ctx.id.to_string(),
                stage.to_owned(),
                "org.apache.kafka.connect.errors.DataException".to_owned(),
                reason.to_owned(),
            ];
            headers.extend(DEAD_LETTER_HEADERS.iter().zip(values).map(|(k, v)| Header::new(*k, v)));
        }
        let record = Record { key: origin.key, value: origin.value, headers, timestamp: None };
        let failed = |e: plexus_core::Error| {
            Error::connector(&ctx.connector, format!("cannot write to the dead-letter topic {topic:?}: {e}"))
        };
        let delivery = producer.send(topic, record);
        producer.flush().await.map_err(failed)?;
        delivery.await.map_err(failed)?;
    }
    Ok(())
}
