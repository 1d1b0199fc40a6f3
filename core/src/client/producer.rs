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
//!
//! With a `transactional.id` the producer is transactional: after
//! `init_transactions` its batches carry the producer id and epoch the
//! transaction coordinator assigned and the transactional bit; each
//! partition is registered with the coordinator before the transaction's
//! first record goes to it; `commit_transaction` sends what is buffered,
//! waits for it, and has the coordinator write the markers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{Notify, oneshot, watch};

use super::partitioner::{StickyPartitioner, partition_for_key};
use super::{ConsumerGroupMetadata, Delivery, Producer, ProducerConfig, RecordMetadata};
use crate::error::{Error, Result};
use crate::group::OffsetAndMetadata;
use crate::log::Log;
use crate::record::{ProducerStamp, Record, encode_batch};
use crate::txn::TxnErrorKind;
use crate::types::{Offset, PartitionId, TopicPartition, now_ms};

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
    /// The producer id (-1: not idempotent, or transactional before
    /// `init_transactions`) and epoch stamped into batches.
    producer_id: i64,
    producer_epoch: i16,
}

/// Where a transactional producer stands.
#[derive(Debug, Default)]
struct Txn {
    initialized: bool,
    in_transaction: bool,
    /// Partitions registered with the coordinator in this transaction.
    partitions: HashSet<TopicPartition>,
    /// The first send of this transaction that failed: it cannot commit.
    failed: Option<String>,
    /// Set once a newer instance fenced this one: it can only be closed.
    fenced: Option<String>,
}

#[derive(Debug)]
struct Shared {
    log: Log,
    config: ProducerConfig,
    state: Mutex<State>,
    txn: Mutex<Txn>,
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

    fn txn(&self) -> MutexGuard<'_, Txn> {
        self.txn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn transactional_id(&self) -> Result<&str> {
        self.config.transactional_id.as_deref().ok_or_else(|| {
            Error::InvalidState("this producer is not transactional: set transactional.id to use transactions".into())
        })
    }

    /// Remembers a failed send: a transaction it belonged to cannot commit,
    /// and a fenced producer can do nothing more.
    fn note_failure(&self, error: &Error) {
        if self.config.transactional_id.is_none() {
            return;
        }
        let mut txn = self.txn();
        if is_fencing(error) {
            txn.fenced.get_or_insert_with(|| error.to_string());
        }
        if txn.in_transaction {
            txn.failed.get_or_insert_with(|| error.to_string());
        }
    }
}

fn is_fencing(error: &Error) -> bool {
    match error {
        Error::ProducerFenced { .. }
        | Error::Transaction {
            kind: TxnErrorKind::ProducerFenced { .. } | TxnErrorKind::InvalidProducerIdMapping,
            ..
        } => true,
        Error::Send(inner) => is_fencing(inner),
        _ => false,
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
        if config.transactional_id.is_some() && !config.enable_idempotence {
            return Err(Error::InvalidState(
                "a transactional producer must be idempotent: remove enable.idempotence=false or transactional.id"
                    .into(),
            ));
        }
        let producer_id = if config.enable_idempotence && config.transactional_id.is_none() {
            log.allocate_producer_id()?
        } else {
            -1
        };
        let seed = u64::try_from(producer_id).unwrap_or(0) ^ u64::from(std::process::id()) ^ now_ms().unsigned_abs();
        let shared = Arc::new(Shared {
            log,
            config,
            state: Mutex::new(State {
                batches: HashMap::new(),
                closed: std::collections::VecDeque::new(),
                sequences: HashMap::new(),
                sticky: StickyPartitioner::new(seed),
                flush_requested: false,
                producer_id,
                producer_epoch: 0,
            }),
            txn: Mutex::new(Txn::default()),
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
        if self.shared.config.transactional_id.is_some() {
            self.register_partition(&tp)?;
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

    /// A transactional send: checks that a transaction is open and
    /// registers the partition with the coordinator on its first record.
    fn register_partition(&self, tp: &TopicPartition) -> Result<()> {
        let mut txn = self.shared.txn();
        check_usable(&txn)?;
        if !txn.in_transaction {
            return Err(Error::InvalidState(
                "a transactional producer sends only inside a transaction: call begin_transaction first".into(),
            ));
        }
        if txn.partitions.contains(tp) {
            return Ok(());
        }
        let (pid, epoch) = self.identity();
        let id = self.shared.transactional_id()?;
        let result = self.shared.log.transaction_coordinator().add_partitions(id, pid, epoch, std::slice::from_ref(tp));
        if let Err(e) = result {
            if is_fencing(&e) {
                txn.fenced.get_or_insert_with(|| e.to_string());
            }
            return Err(e);
        }
        txn.partitions.insert(tp.clone());
        Ok(())
    }

    fn identity(&self) -> (i64, i16) {
        let state = self.shared.lock();
        (state.producer_id, state.producer_epoch)
    }

    /// The transaction's id, producer id and epoch, if one is open.
    fn open_transaction(&self) -> Result<(&str, i64, i16)> {
        let id = self.shared.transactional_id()?;
        let txn = self.shared.txn();
        check_usable(&txn)?;
        if !txn.in_transaction {
            return Err(Error::InvalidState("no transaction is open: call begin_transaction first".into()));
        }
        let (pid, epoch) = self.identity();
        Ok((id, pid, epoch))
    }

    /// Ends the open transaction (after sending what is buffered).
    async fn end_transaction(&self, commit: bool) -> Result<()> {
        let (id, pid, epoch) = self.open_transaction()?;
        let flushed = self.flush().await;
        if commit {
            flushed?;
            if let Some(why) = self.shared.txn().failed.clone() {
                return Err(Error::InvalidState(format!(
                    "the transaction cannot commit because a send failed ({why}); abort it"
                )));
            }
        }
        let registered = !self.shared.txn().partitions.is_empty();
        if registered {
            let result = self.shared.log.transaction_coordinator().end_txn(id, pid, epoch, commit);
            if let Err(e) = result {
                self.shared.note_failure(&e);
                return Err(e);
            }
        }
        let mut txn = self.shared.txn();
        txn.in_transaction = false;
        txn.partitions.clear();
        txn.failed = None;
        Ok(())
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
        let flushed = self.flush().await;
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        flushed
    }

    async fn init_transactions(&self) -> Result<()> {
        let id = self.shared.transactional_id()?;
        {
            let txn = self.shared.txn();
            check_usable(&txn)?;
            if txn.in_transaction {
                return Err(Error::InvalidState("init_transactions called inside a transaction".into()));
            }
        }
        let timeout = i64::try_from(self.shared.config.transaction_timeout.as_millis()).unwrap_or(i64::MAX);
        let (pid, epoch) = self.shared.log.transaction_coordinator().init_producer_id(id, timeout)?;
        {
            let mut state = self.shared.lock();
            state.producer_id = pid;
            state.producer_epoch = epoch;
            state.sequences.clear();
        }
        self.shared.txn().initialized = true;
        Ok(())
    }

    fn begin_transaction(&self) -> Result<()> {
        self.shared.transactional_id()?;
        let mut txn = self.shared.txn();
        check_usable(&txn)?;
        if !txn.initialized {
            return Err(Error::InvalidState("call init_transactions before the first transaction".into()));
        }
        if txn.in_transaction {
            return Err(Error::InvalidState("a transaction is already open: commit or abort it first".into()));
        }
        txn.in_transaction = true;
        Ok(())
    }

    async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<TopicPartition, Offset>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let (id, pid, epoch) = self.open_transaction()?;
        let log = &self.shared.log;
        let result = log.transaction_coordinator().add_offsets(id, pid, epoch, &group.group_id);
        if let Err(e) = result {
            self.shared.note_failure(&e);
            return Err(e);
        }
        let offsets_tp = TopicPartition::new(
            crate::config::CONSUMER_OFFSETS_TOPIC,
            log.group_coordinator().offsets_partition(&group.group_id)?,
        );
        self.shared.txn().partitions.insert(offsets_tp);
        let now = now_ms();
        let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = offsets
            .iter()
            .map(|(tp, o)| {
                (tp.clone(), OffsetAndMetadata { offset: *o, metadata: String::new(), commit_timestamp: now })
            })
            .collect();
        let result = log
            .group_coordinator()
            .txn_offset_commit(&group.group_id, pid, epoch, &group.member_id, group.generation_id, &offsets)
            .await;
        if let Err(e) = &result {
            self.shared.note_failure(e);
        }
        result
    }

    async fn commit_transaction(&self) -> Result<()> {
        self.end_transaction(true).await
    }

    async fn abort_transaction(&self) -> Result<()> {
        self.end_transaction(false).await
    }
}

fn check_usable(txn: &Txn) -> Result<()> {
    match &txn.fenced {
        Some(why) => {
            Err(Error::InvalidState(format!("this producer was fenced ({why}); close it and create a new one")))
        }
        None => Ok(()),
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
        let transactional = shared.config.transactional_id.is_some();
        for (tp, batch) in taken {
            let count = i32::try_from(batch.records.len()).unwrap_or(i32::MAX);
            let base_sequence = if state.producer_id >= 0 {
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
            let stamp = ProducerStamp {
                producer_id: state.producer_id,
                producer_epoch: state.producer_epoch,
                base_sequence,
                transactional,
            };
            ready.push((tp, batch, stamp));
        }
        let next = state.batches.values().map(|b| b.opened + linger).min();
        // Counted in flight before the state lock is released, so that a
        // flush never sees a batch that is neither queued nor in flight.
        shared.in_flight.send_modify(|n| *n += ready.len());
        (ready, next)
    };
    for (tp, batch, stamp) in ready {
        append_batch(shared, tp, batch, stamp);
    }
    next
}

fn append_batch(shared: &Arc<Shared>, tp: TopicPartition, batch: OpenBatch, stamp: ProducerStamp) {
    let now = now_ms();
    let timestamps: Vec<i64> = batch.records.iter().map(|r| r.timestamp.unwrap_or(now)).collect();
    let encoded = encode_batch(&batch.records, stamp, now);
    match shared.log.append_pipelined(&tp, encoded) {
        Ok((info, acknowledged)) => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let result = acknowledged.await;
                if let Err(e) = &result {
                    shared.note_failure(e);
                }
                answer(batch.waiters, &tp, result.map(|()| (info.base_offset, info.log_append_time, timestamps)));
                shared.in_flight.send_modify(|n| *n = n.saturating_sub(1));
            });
        }
        Err(e) => {
            shared.note_failure(&e);
            answer(batch.waiters, &tp, Err(e));
            shared.in_flight.send_modify(|n| *n = n.saturating_sub(1));
        }
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
