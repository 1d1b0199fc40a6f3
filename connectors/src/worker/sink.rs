//! A sink task's loop: read with the consumer group `connect-<name>`,
//! convert, transform, `put`; every `offset.flush.interval.ms` (and before
//! partitions move or the task stops) `flush`, then commit the offsets the
//! flush covered. A task that stores its offsets with its data (exactly
//! once) says so from `open`, and reading resumes there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use plexus_core::client::{Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo};
use plexus_core::{ConsumerRecord, TopicPartition};

use super::TaskContext;
use super::errors::{Origin, tolerate};
use crate::connector::SinkTask;
use crate::error::{Error, Result};
use crate::record::{ConnectRecord, Rejected, SinkRecord};

/// How often `topics.regex` is matched against the topics again.
const REGEX_REFRESH: Duration = Duration::from_secs(5);

pub(crate) async fn run(ctx: TaskContext, mut task: Box<dyn SinkTask>) -> Result<()> {
    let mut config = ConsumerConfig::new(format!("connect-{}", ctx.connector));
    for (k, v) in [
        ("enable.auto.commit", "false".to_owned()),
        ("auto.offset.reset", "earliest".to_owned()),
        ("isolation.level", "read_committed".to_owned()),
        ("max.poll.records", "5000".to_owned()),
        ("client.id", format!("connector-consumer-{}-{}", ctx.connector, ctx.id)),
    ] {
        config.set(k, &v).map_err(|e| Error::Log(e.into()))?;
    }
    let mut consumer = ctx.clients.consumer(config)?;
    let dead_letters = match &ctx.common.dead_letter_topic {
        Some(_) => Some(ctx.clients.producer(ProducerConfig::default())?),
        None => None,
    };
    let mut sink = Sink { ctx: &ctx, positions: BTreeMap::new(), flushed: BTreeMap::new(), dead_letters };
    let result = sink.run(consumer.as_mut(), task.as_mut()).await;
    let result = match result {
        Ok(()) => sink.flush(consumer.as_mut(), task.as_mut()).await,
        Err(e) => Err(e),
    };
    let stopped = task.stop().await;
    let closed = consumer.close().await;
    result?;
    stopped?;
    Ok(closed?)
}

struct Sink<'a> {
    ctx: &'a TaskContext,
    /// The next offset per partition, of what the task was given.
    positions: BTreeMap<TopicPartition, i64>,
    /// What the last flush covered.
    flushed: BTreeMap<TopicPartition, i64>,
    dead_letters: Option<Box<dyn Producer>>,
}

impl Sink<'_> {
    async fn topics(&self) -> Result<Vec<String>> {
        let mut topics: BTreeSet<String> = self.ctx.common.topics.iter().cloned().collect();
        if let Some(regex) = &self.ctx.common.topics_regex {
            for t in self.ctx.clients.admin().list_topics().await? {
                if regex.is_match(&t) {
                    topics.insert(t);
                }
            }
        }
        Ok(topics.into_iter().collect())
    }

    async fn run(&mut self, consumer: &mut dyn Consumer, task: &mut dyn SinkTask) -> Result<()> {
        let mut topics = self.topics().await?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).await?;
        let mut assignment: BTreeSet<TopicPartition> = BTreeSet::new();
        let (mut last_flush, mut last_refresh) = (Instant::now(), Instant::now());
        while !self.ctx.shared.stopping() {
            if self.ctx.shared.paused.load(Ordering::Acquire) {
                self.flush(consumer, task).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if self.ctx.common.topics_regex.is_some() && last_refresh.elapsed() >= REGEX_REFRESH {
                last_refresh = Instant::now();
                let now = self.topics().await?;
                if now != topics {
                    topics = now;
                    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                    consumer.subscribe(&names).await?;
                }
            }
            let mut records = consumer.poll(Duration::from_millis(100)).await?;
            let now: BTreeSet<TopicPartition> = consumer.assignment().into_iter().collect();
            if now != assignment {
                let revoked: Vec<TopicPartition> = assignment.difference(&now).cloned().collect();
                if !revoked.is_empty() {
                    self.flush(consumer, task).await?;
                    task.close(&revoked).await?;
                    for tp in &revoked {
                        self.positions.remove(tp);
                        self.flushed.remove(tp);
                    }
                }
                let added: Vec<TopicPartition> = now.difference(&assignment).cloned().collect();
                if !added.is_empty() {
                    let stored = task.open(&added).await?;
                    for (tp, offset) in &stored {
                        consumer.seek(tp, SeekTo::Offset(*offset)).await?;
                    }
                    // Records fetched before the seek are not where the task resumes.
                    records.retain(|r| !stored.contains_key(&TopicPartition::new(r.topic.clone(), r.partition)));
                }
                assignment = now;
            }
            if !records.is_empty() {
                self.put(records, task).await?;
            }
            if last_flush.elapsed() >= self.ctx.common.offset_flush_interval {
                last_flush = Instant::now();
                self.flush(consumer, task).await?;
            }
        }
        Ok(())
    }

    /// Converts and transforms a batch and gives it to the task; what the
    /// task rejects goes to the error handler.
    async fn put(&mut self, records: Vec<ConsumerRecord>, task: &mut dyn SinkTask) -> Result<()> {
        let mut batch = Vec::with_capacity(records.len());
        for r in &records {
            self.positions.insert(TopicPartition::new(r.topic.clone(), r.partition), r.offset + 1);
            if let Some(record) = self.convert(r).await? {
                batch.push(SinkRecord { record, partition: r.partition, offset: r.offset });
            }
        }
        let n = batch.len() as u64;
        let rejected = if self.ctx.common.retry_timeout.is_none() {
            task.put(batch).await?
        } else {
            // A retry needs the batch again: copied only when retries are on.
            let mut retry = Retry::new(self.ctx);
            loop {
                match task.put(batch.clone()).await {
                    Ok(rejected) => break rejected,
                    Err(e) => retry.wait("put", e).await?,
                }
            }
        };
        self.report(&rejected, &records).await?;
        self.ctx.shared.metrics.records.fetch_add(n.saturating_sub(rejected.len() as u64), Ordering::Relaxed);
        Ok(())
    }

    /// Gives what the task rejected to the error handler, with the record
    /// as it is in the log: from `current` (the batch just put), or read
    /// again from the log for a record of an earlier batch (a write the
    /// target refused at a later put or a flush).
    async fn report(&self, rejected: &[Rejected], current: &[ConsumerRecord]) -> Result<()> {
        for reject in rejected {
            let found = current
                .iter()
                .find(|r| r.offset == reject.offset && r.partition == reject.partition && r.topic == reject.topic);
            let reread;
            let record = match found {
                Some(r) => r,
                None => {
                    reread = self.read_again(reject).await?;
                    &reread
                }
            };
            tolerate(self.ctx, self.dead_letters.as_deref(), Origin::read(record), "task", &reject.reason).await?;
        }
        Ok(())
    }

    /// The record a rejection names, read from the log.
    async fn read_again(&self, reject: &Rejected) -> Result<ConsumerRecord> {
        let tp = TopicPartition::new(reject.topic.clone(), reject.partition);
        let mut consumer = self.ctx.clients.consumer(ConsumerConfig::without_group())?;
        consumer.assign(std::slice::from_ref(&tp)).await?;
        consumer.seek(&tp, SeekTo::Offset(reject.offset)).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found = None;
        while found.is_none() && Instant::now() < deadline {
            found = consumer.poll(Duration::from_millis(100)).await?.into_iter().find(|r| r.offset == reject.offset);
        }
        let _ = consumer.close().await;
        found.ok_or_else(|| {
            Error::connector(
                &self.ctx.connector,
                format!(
                    "the rejected record at {tp} offset {} is no longer in the log: {}",
                    reject.offset, reject.reason
                ),
            )
        })
    }

    /// One record through the converters and transforms (`None`: dropped
    /// by a transform, or skipped as failed).
    async fn convert(&self, r: &ConsumerRecord) -> Result<Option<ConnectRecord>> {
        let origin = || Origin::read(r);
        let dead_letters = self.dead_letters.as_deref();
        let (key_schema, key) = match self.ctx.common.key_converter.to_connect(r.key.as_deref()) {
            Ok(k) => k,
            Err(reason) => {
                tolerate(self.ctx, dead_letters, origin(), "key converter", &reason).await?;
                return Ok(None);
            }
        };
        let (value_schema, value) = match self.ctx.common.value_converter.to_connect(r.value.as_deref()) {
            Ok(v) => v,
            Err(reason) => {
                tolerate(self.ctx, dead_letters, origin(), "value converter", &reason).await?;
                return Ok(None);
            }
        };
        let mut record = Some(ConnectRecord {
            topic: r.topic.clone(),
            key,
            key_schema,
            value,
            value_schema,
            timestamp: Some(r.timestamp),
            headers: r.headers.clone(),
        });
        for stage in self.ctx.transforms.iter() {
            let Some(current) = record.take() else { break };
            match stage.apply(current) {
                Ok(next) => record = next,
                Err(reason) => {
                    tolerate(self.ctx, dead_letters, origin(), &format!("transform {}", stage.name), &reason).await?;
                    return Ok(None);
                }
            }
        }
        Ok(record)
    }

    /// Flushes the task and commits what the flush covered.
    async fn flush(&mut self, consumer: &mut dyn Consumer, task: &mut dyn SinkTask) -> Result<()> {
        if self.positions == self.flushed {
            return Ok(());
        }
        let positions = self.positions.clone();
        let mut retry = Retry::new(self.ctx);
        let rejected = loop {
            match task.flush(&positions).await {
                Ok(rejected) => break rejected,
                Err(e) => retry.wait("flush", e).await?,
            }
        };
        self.report(&rejected, &[]).await?;
        self.flushed.clone_from(&positions);
        self.ctx.shared.metrics.commits.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = consumer.commit_offsets(positions).await {
            // Partitions moved: the new owner resumes from the task's own
            // offsets (exactly-once sinks) or re-reads (at least once).
            tracing::warn!(connector = %self.ctx.connector, error = %e, "committing the sink's offsets failed");
        }
        Ok(())
    }
}

/// `errors.retry.timeout`: a failed `put` or `flush` is retried with
/// exponential backoff (capped at `errors.retry.delay.max.ms`) until the
/// timeout has passed.
struct Retry<'a> {
    ctx: &'a TaskContext,
    started: Instant,
    delay: Duration,
}

impl<'a> Retry<'a> {
    fn new(ctx: &'a TaskContext) -> Self {
        Self { ctx, started: Instant::now(), delay: Duration::from_millis(100) }
    }

    /// Waits before the next try, or gives the error back when no time is left.
    async fn wait(&mut self, what: &str, error: Error) -> Result<()> {
        let Some(timeout) = self.ctx.common.retry_timeout else { return Err(error) };
        if self.started.elapsed() + self.delay > timeout || self.ctx.shared.stopping() {
            return Err(error);
        }
        tracing::warn!(connector = %self.ctx.connector, task = self.ctx.id, %error, delay = ?self.delay, "{what} failed; retrying");
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.ctx.common.retry_delay_max);
        Ok(())
    }
}
