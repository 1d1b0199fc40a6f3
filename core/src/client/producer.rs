//! The embedded producer: batching per partition, Kafka's partitioners,
//! idempotence, and several appends in flight.
//!
//! `send` puts the record into its partition's open batch. A sender task
//! closes batches that are full (`batch.size`) or old enough (`linger.ms`),
//! stamps them with the producer id and the partition's next sequence
//! number, and appends them — in order, one after another, so per-partition
//! order holds — without waiting for the fsync; a separate task per batch
//! waits for the acknowledgement and answers the batch's senders. Records
//! that arrive while the log syncs gather into the next batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{Notify, oneshot, watch};

use super::partitioner::{StickyPartitioner, partition_for_key};
use super::{Delivery, Producer, ProducerConfig, RecordMetadata};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::record::{ProducerStamp, Record, encode_batch};
use crate::types::{PartitionId, TopicPartition, now_ms};

type Waiter = oneshot::Sender<Result<RecordMetadata>>;

#[derive(Debug)]
struct OpenBatch {
    records: Vec<Record>,
    waiters: Vec<Waiter>,
    bytes: usize,
    opened: Instant,
}

#[derive(Debug)]
struct State {
    /// Each partition's open batch, taking new records.
    batches: HashMap<TopicPartition, OpenBatch>,
    /// Batches closed at `batch.size`, oldest first; sent before any open
    /// batch of their partition, so records keep their order.
    closed: std::collections::VecDeque<(TopicPartition, OpenBatch)>,
    sequences: HashMap<TopicPartition, i32>,
    sticky: StickyPartitioner,
    flush_requested: bool,
}

#[derive(Debug)]
struct Shared {
    log: Log,
    config: ProducerConfig,
    producer_id: i64,
    state: Mutex<State>,
    wake: Arc<Notify>,
    /// Batches appended whose acknowledgement is not in yet.
    in_flight: watch::Sender<usize>,
    closed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoned only by a panic in this module; the state stays consistent
        // batch by batch.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Producer`] on a local [`Log`]. Create it inside a tokio runtime: it
/// runs a sender task there.
#[derive(Debug, Clone)]
pub struct EmbeddedProducer {
    shared: Arc<Shared>,
}

impl EmbeddedProducer {
    /// A producer with its own producer id (when idempotent).
    pub fn new(log: Log, config: ProducerConfig) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::InvalidState("an EmbeddedProducer must be created inside a tokio runtime".into()))?;
        let producer_id = if config.enable_idempotence { log.allocate_producer_id()? } else { -1 };
        let seed = u64::try_from(producer_id).unwrap_or(0) ^ u64::from(std::process::id());
        let shared = Arc::new(Shared {
            log,
            config,
            producer_id,
            state: Mutex::new(State {
                batches: HashMap::new(),
                closed: std::collections::VecDeque::new(),
                sequences: HashMap::new(),
                sticky: StickyPartitioner::new(seed),
                flush_requested: false,
            }),
            wake: Arc::new(Notify::new()),
            in_flight: watch::Sender::new(0),
            closed: AtomicBool::new(false),
        });
        runtime.spawn(sender(Arc::downgrade(&shared)));
        Ok(Self { shared })
    }

    fn enqueue(&self, tp: TopicPartition, record: Record) -> Result<oneshot::Receiver<Result<RecordMetadata>>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::InvalidState("the producer is closed".into()));
        }
        let (tx, rx) = oneshot::channel();
        let size = record.estimated_size();
        let wake = {
            let mut state = self.shared.lock();
            let batch_size = self.shared.config.batch_size;
            // A full batch is closed (as Kafka's RecordAccumulator does) so
            // that batches stay near `batch.size` however fast records come.
            let full = state.batches.get(&tp).is_some_and(|b| b.bytes + size > batch_size && !b.records.is_empty());
            if full && let Some(batch) = state.batches.remove(&tp) {
                state.closed.push_back((tp.clone(), batch));
            }
            let mut opened = false;
            let batch = state.batches.entry(tp).or_insert_with(|| {
                opened = true;
                OpenBatch { records: Vec::new(), waiters: Vec::new(), bytes: 0, opened: Instant::now() }
            });
            batch.records.push(record);
            batch.waiters.push(tx);
            batch.bytes += size;
            // A new batch needs the sender to arm its linger timer; a closed
            // or full one goes now. Otherwise the sender is already due.
            opened || full || batch.bytes >= batch_size
        };
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(rx)
    }

    fn partition_for(&self, topic: &str, record: &Record) -> Result<TopicPartition> {
        self.shared.log.ensure_topic(topic)?;
        let partitions = self.shared.log.partition_count(topic)?;
        let partition = match &record.key {
            Some(key) => partition_for_key(key, partitions),
            None => self.shared.lock().sticky.partition(topic, partitions),
        };
        Ok(TopicPartition::new(topic, partition))
    }

    fn checked_partition(&self, topic: &str, partition: PartitionId) -> Result<TopicPartition> {
        self.shared.log.ensure_topic(topic)?;
        let count = self.shared.log.partition_count(topic)?;
        if partition < 0 || partition >= count {
            return Err(Error::UnknownPartition { topic: topic.into(), partition, count });
        }
        Ok(TopicPartition::new(topic, partition))
    }
}

#[async_trait]
impl Producer for EmbeddedProducer {
    fn send(&self, topic: &str, record: Record) -> Delivery {
        match self.partition_for(topic, &record).and_then(|tp| self.enqueue(tp, record)) {
            Ok(rx) => Delivery::pending(rx),
            Err(e) => Delivery::failed(e),
        }
    }

    fn send_to(&self, topic: &str, partition: PartitionId, record: Record) -> Delivery {
        match self.checked_partition(topic, partition).and_then(|tp| self.enqueue(tp, record)) {
            Ok(rx) => Delivery::pending(rx),
            Err(e) => Delivery::failed(e),
        }
    }

    async fn flush(&self) -> Result<()> {
        self.shared.lock().flush_requested = true;
        self.shared.wake.notify_one();
        let mut rx = self.shared.in_flight.subscribe();
        loop {
            let idle = {
                let state = self.shared.lock();
                state.batches.is_empty() && state.closed.is_empty()
            } && *rx.borrow_and_update() == 0;
            if idle {
                return Ok(());
            }
            self.shared.wake.notify_one();
            // Wake on each completed batch, or re-check shortly.
            let _ = tokio::time::timeout(super::defaults::POLL_SLICE, rx.changed()).await;
        }
    }

    async fn close(&self) -> Result<()> {
        self.flush().await?;
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        Ok(())
    }
}

/// The sender task: closes ready batches and appends them, until the
/// producer is dropped or closed.
async fn sender(weak: std::sync::Weak<Shared>) {
    let Some(notify) = weak.upgrade().map(|s| Arc::clone(&s.wake)) else { return };
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let next_deadline = send_ready(&shared);
        let drained = {
            let state = shared.lock();
            state.batches.is_empty() && state.closed.is_empty()
        };
        if shared.closed.load(Ordering::Acquire) && drained {
            return;
        }
        let wake = notify.notified();
        drop(shared);
        match next_deadline {
            Some(deadline) => {
                let _ = tokio::time::timeout_at(deadline.into(), wake).await;
            }
            // Re-check now and then so a dropped producer ends its task.
            None => {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wake).await;
            }
        }
    }
}

/// Appends every batch that is ready; returns when the next one will be.
fn send_ready(shared: &Arc<Shared>) -> Option<Instant> {
    let now = Instant::now();
    let linger = shared.config.linger;
    let (ready, next) = {
        let mut state = shared.lock();
        let force = std::mem::take(&mut state.flush_requested) || shared.closed.load(Ordering::Acquire);
        let ready_tps: Vec<TopicPartition> = state
            .batches
            .iter()
            .filter(|(_, b)| force || b.bytes >= shared.config.batch_size || now >= b.opened + linger)
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut taken: Vec<(TopicPartition, OpenBatch)> = state.closed.drain(..).collect();
        taken.extend(ready_tps.into_iter().filter_map(|tp| state.batches.remove(&tp).map(|b| (tp, b))));
        let mut ready = Vec::with_capacity(taken.len());
        for (tp, batch) in taken {
            let count = i32::try_from(batch.records.len()).unwrap_or(i32::MAX);
            let base_sequence = if shared.producer_id >= 0 {
                let seq = state.sequences.entry(tp.clone()).or_insert(0);
                let base = *seq;
                *seq = seq.wrapping_add(count) & i32::MAX;
                base
            } else {
                -1
            };
            let partitions = shared.log.partition_count(&tp.topic).unwrap_or(1);
            if batch.records.iter().any(|r| r.key.is_none()) {
                state.sticky.on_new_batch(&tp.topic, partitions, tp.partition);
            }
            ready.push((tp, batch, base_sequence));
        }
        let next = state.batches.values().map(|b| b.opened + linger).min();
        (ready, next)
    };
    for (tp, batch, base_sequence) in ready {
        append_batch(shared, tp, batch, base_sequence);
    }
    next
}

fn append_batch(shared: &Arc<Shared>, tp: TopicPartition, batch: OpenBatch, base_sequence: i32) {
    let now = now_ms();
    let stamp = ProducerStamp { producer_id: shared.producer_id, producer_epoch: 0, base_sequence };
    let timestamps: Vec<i64> = batch.records.iter().map(|r| r.timestamp.unwrap_or(now)).collect();
    let encoded = encode_batch(&batch.records, stamp, now);
    match shared.log.append_pipelined(&tp, encoded) {
        Ok((info, acknowledged)) => {
            shared.in_flight.send_modify(|n| *n += 1);
            let in_flight = shared.in_flight.clone();
            tokio::spawn(async move {
                let result = acknowledged.await;
                answer(batch.waiters, &tp, result.map(|()| (info.base_offset, info.log_append_time, timestamps)));
                in_flight.send_modify(|n| *n = n.saturating_sub(1));
            });
        }
        Err(e) => answer(batch.waiters, &tp, Err(e)),
    }
}

fn answer(waiters: Vec<Waiter>, tp: &TopicPartition, result: Result<(i64, Option<i64>, Vec<i64>)>) {
    match result {
        Ok((base, append_time, timestamps)) => {
            for (i, (w, ts)) in waiters.into_iter().zip(timestamps).enumerate() {
                let _ = w.send(Ok(RecordMetadata {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: base + i as i64,
                    timestamp: append_time.unwrap_or(ts),
                }));
            }
        }
        Err(e) => {
            let shared = Arc::new(e);
            for w in waiters {
                let _ = w.send(Err(Error::Send(Arc::clone(&shared))));
            }
        }
    }
}
