//! A stream thread: a consumer-group member that runs the tasks of the
//! partitions it owns, and commits them.
//!
//! Each thread has its own current-thread async runtime (the clients are
//! async) and its own producer. The loop: poll; if the assignment changed,
//! build the new tasks (restoring their stores from the changelogs) and
//! close the lost ones; process the records one by one, sending what sinks
//! produce; commit every `commit.interval.ms`, when a processor asks, or
//! when the uncommitted store writes pass `cache.max.bytes.buffering`.
//!
//! A commit first has every task's processors forward what they held back
//! (the record cache: aggregations forward the latest update per key once
//! per commit), then sends each store's uncommitted writes (one record per key) to
//! its changelog partition, waits until every send is acknowledged, then:
//! at least once — applies the store writes with the changelog offsets
//! reached and commits the input offsets; exactly once — sends the input
//! offsets into the transaction, commits it, then applies the store writes.
//! Under exactly once an assignment change aborts the open transaction and
//! rebuilds every task from its committed state, so nothing of a
//! transaction that did not commit survives anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use plexus_core::client::{ConsumerConfig, Delivery, ProducerConfig, SeekTo};
use plexus_core::config::TopicConfig;
use plexus_core::types::now_ms;
use plexus_core::{ConsumerRecord, Header, Record, TopicPartition};

use super::{DeserializationHandler, ProcessingGuarantee, Shared, StreamsState};
use crate::error::{Error, Result};
use crate::processor::{CacheBudget, TaskId};
use crate::state::{BytesStore, InMemoryStore, RocksDbStore};
use crate::task::StreamTask;
use crate::topology::{NodeKind, StoreBuilder};

/// The message of a panic caught in user code.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// How long one poll waits for records.
const POLL: Duration = Duration::from_millis(50);

/// Creates the internal topics before the threads start: repartition
/// topics (partition counts as [`crate::topology::InternalTopic`] says) and
/// changelog topics (compacted, as many partitions as the store's
/// sub-topology has input partitions). Fails when a source topic is
/// missing or joined topics are not co-partitioned.
pub(super) fn create_internal_topics(shared: &Shared) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Io {
        store: "runtime".into(),
        path: std::path::PathBuf::new(),
        source: e,
    })?;
    runtime.block_on(async {
        let admin = shared.clients.admin();
        let topology = &shared.topology;
        let existing: BTreeSet<String> = admin.list_topics().await.map_err(Error::Log)?.into_iter().collect();
        let internal: BTreeSet<&str> = topology.internal_topics().iter().map(|t| t.name.as_str()).collect();
        let mut counts = BTreeMap::new();
        for topic in
            topology.source_topics().into_iter().chain(topology.copartition_groups.iter().flatten().map(String::as_str))
        {
            if internal.contains(topic) || counts.contains_key(topic) {
                continue;
            }
            let d = admin.describe_topic(topic).await.map_err(|e| {
                Error::Topology(format!(
                    "source topic {topic:?} cannot be read ({e}); create it before starting the application"
                ))
            })?;
            counts.insert(topic.to_owned(), i32::try_from(d.partitions.len()).unwrap_or(1));
        }
        let internal_counts = topology.internal_topic_partitions(|t| {
            counts.get(t).copied().ok_or_else(|| Error::Topology(format!("topic {t:?} is not known")))
        })?;
        let create = |topic: String, partitions: i32, compact: bool| {
            let admin = &admin;
            async move {
                let mut config = TopicConfig::default();
                let set = |config: &mut TopicConfig, k, v| config.set(k, v).map_err(|e| Error::Log(e.into()));
                if compact {
                    set(&mut config, "cleanup.policy", "compact")?;
                } else {
                    // Repartition topics keep records whatever their
                    // timestamps, as Kafka Streams creates them: time
                    // retention would drop old-stamped records unread.
                    set(&mut config, "retention.ms", "-1")?;
                }
                match admin.create_topic(&topic, partitions, config).await {
                    Ok(()) | Err(plexus_core::Error::TopicExists(_)) => Ok(()),
                    Err(e) => Err(Error::Log(e)),
                }
            }
        };
        for (topic, &partitions) in &internal_counts {
            if !existing.contains(topic) {
                create(topic.clone(), partitions, false).await?;
            }
        }
        counts.extend(internal_counts);
        let subtopologies = topology.subtopologies();
        for store in topology.stores.iter().filter(|s| s.logging) {
            let topic = store.changelog_topic(&shared.config.application_id);
            if existing.contains(&topic) {
                continue;
            }
            let partitions = subtopologies
                .iter()
                .filter(|members| members.iter().any(|&i| topology.nodes[i].stores.contains(&store.name)))
                .flatten()
                .filter_map(|&i| match &topology.nodes[i].kind {
                    NodeKind::Source { topics } => Some(topics.iter().filter_map(|t| counts.get(t).copied())),
                    _ => None,
                })
                .flatten()
                .max()
                .unwrap_or(1);
            create(topic, partitions, true).await?;
        }
        Ok(())
    })
}

/// The records of one poll in the order a task should see them: each
/// partition's records in offset order, the partitions interleaved by
/// their next record's timestamp (Kafka Streams' `PartitionGroup` choice),
/// so that a join sees a table update before a later-stamped stream record
/// fetched in the same poll.
fn in_timestamp_order(records: Vec<ConsumerRecord>) -> Vec<ConsumerRecord> {
    use std::collections::VecDeque;
    let mut queues: Vec<VecDeque<ConsumerRecord>> = Vec::new();
    for r in records {
        match queues.iter_mut().find(|q| q.front().is_some_and(|h| h.partition == r.partition && h.topic == r.topic)) {
            Some(q) => q.push_back(r),
            None => queues.push(VecDeque::from([r])),
        }
    }
    if queues.len() <= 1 {
        return queues.pop().map(Vec::from).unwrap_or_default();
    }
    let mut out = Vec::with_capacity(queues.iter().map(VecDeque::len).sum());
    while let Some(q) = queues.iter_mut().filter(|q| !q.is_empty()).min_by_key(|q| q.front().map(|r| r.timestamp)) {
        out.extend(q.pop_front());
    }
    out
}

/// Opens a task's RocksDB store, waiting while another thread of this
/// process still holds it: in a rebalance a task can be assigned here
/// before the thread that had it has closed it (Kafka Streams retries its
/// task-directory lock the same way).
pub(super) fn open_when_released(
    dir: &std::path::Path,
    name: &str,
    memory: &crate::state::RocksDbMemory,
) -> Result<RocksDbStore> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match RocksDbStore::open(dir, name, memory) {
            Err(Error::Open { source, .. }) if source.to_string().contains("lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// The thread's body: runs until shutdown or a failure.
pub(super) fn run(shared: &Arc<Shared>, index: usize) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            shared.fail(Error::Io { store: "runtime".into(), path: std::path::PathBuf::new(), source: e });
            return;
        }
    };
    let result = runtime.block_on(async {
        let mut thread = StreamThread::new(Arc::clone(shared), index)?;
        let result = thread.run().await;
        thread.shutdown(result.is_ok()).await;
        result
    });
    if let Err(e) = result {
        shared.fail(e);
    }
}

struct StreamThread {
    shared: Arc<Shared>,
    readers: BTreeMap<String, u32>,
    consumer: Box<dyn plexus_core::client::Consumer>,
    producer: Box<dyn plexus_core::client::Producer>,
    eos: bool,
    in_transaction: bool,
    tasks: BTreeMap<TaskId, StreamTask>,
    /// Output sends not yet known to be acknowledged (at least once).
    pending: Vec<Delivery>,
    /// Next offset to commit per input partition.
    positions: BTreeMap<TopicPartition, i64>,
    assignment: BTreeSet<TopicPartition>,
    last_commit: Instant,
    /// The record cache of this thread's tasks.
    cache: Arc<CacheBudget>,
}

impl StreamThread {
    fn new(shared: Arc<Shared>, index: usize) -> Result<Self> {
        let config = &shared.config;
        let eos = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let mut cc = ConsumerConfig::new(config.application_id.clone());
        let pairs = [
            // Kafka Streams' client id; the process id in it tells other
            // instances who runs which task (standby placement).
            (
                "client.id",
                format!("{}-{}-StreamThread-{}-consumer", config.application_id, shared.process_id, index + 1),
            ),
            ("enable.auto.commit", "false".into()),
            ("auto.offset.reset", config.auto_offset_reset.clone()),
            ("partition.assignment.strategy", "range".into()),
            ("max.poll.records", "1000".into()),
            ("isolation.level", if eos { "read_committed" } else { "read_uncommitted" }.into()),
        ];
        for (k, v) in &pairs {
            cc.set(k, v).map_err(|e| Error::Log(e.into()))?;
        }
        let consumer = shared.clients.consumer(cc).map_err(Error::Log)?;
        let mut pc = ProducerConfig::default();
        pc.set("client.id", &format!("{}-StreamThread-{}-producer", config.application_id, index + 1))
            .map_err(|e| Error::Log(e.into()))?;
        if eos {
            let id = format!("{}-{}-{}", config.application_id, shared.process_id, index + 1);
            pc.set("transactional.id", &id).map_err(|e| Error::Log(e.into()))?;
            pc.set("transaction.timeout.ms", "10000").map_err(|e| Error::Log(e.into()))?;
        }
        let producer = shared.clients.producer(pc).map_err(Error::Log)?;
        let cache = Arc::new(CacheBudget::new(config.cache_max_bytes_buffering / config.num_stream_threads.max(1)));
        Ok(Self {
            cache,
            readers: shared.topology.readers(),
            shared,
            consumer,
            producer,
            eos,
            in_transaction: false,
            tasks: BTreeMap::new(),
            pending: Vec::new(),
            positions: BTreeMap::new(),
            assignment: BTreeSet::new(),
            last_commit: Instant::now(),
        })
    }

    async fn run(&mut self) -> Result<()> {
        if self.eos {
            self.producer.init_transactions().await.map_err(Error::Log)?;
        }
        let topics: Vec<&str> = self.readers.keys().map(String::as_str).collect();
        self.consumer.subscribe(&topics).await.map_err(Error::Log)?;
        while !self.shared.shutdown.load(Ordering::Acquire) {
            let records = self.consumer.poll(POLL).await.map_err(Error::Log)?;
            let assignment: BTreeSet<TopicPartition> = self.consumer.assignment().into_iter().collect();
            let mut records = records;
            if assignment != self.assignment {
                let repositioned = self.reassign(assignment).await?;
                if self.eos {
                    continue; // positions went back to the committed offsets: fetched again
                }
                // Records fetched before a partition was repositioned (its
                // topic's own reset policy) are not where it now starts.
                records.retain(|r| !repositioned.contains(&TopicPartition::new(r.topic.clone(), r.partition)));
            }
            for record in in_timestamp_order(records) {
                self.process(&record).await?;
            }
            let now = now_ms();
            for task in self.tasks.values_mut() {
                task.advance_wall_clock(now)?;
            }
            self.send_outputs().await?;
            let dirty: usize = self.tasks.values().map(StreamTask::dirty_bytes).sum();
            let due = self.last_commit.elapsed() >= self.shared.config.commit_interval
                || self.tasks.values().any(StreamTask::commit_requested)
                || dirty > self.shared.config.cache_max_bytes_buffering;
            if due {
                self.commit().await?;
            }
        }
        Ok(())
    }

    /// Runs one record through its task, catching panics in user code.
    async fn process(&mut self, record: &ConsumerRecord) -> Result<()> {
        let tp = TopicPartition::new(record.topic.clone(), record.partition);
        let Some(&subtopology) = self.readers.get(&record.topic) else { return Ok(()) };
        let id = TaskId { subtopology, partition: record.partition };
        if self.eos && !self.in_transaction {
            self.producer.begin_transaction().map_err(Error::Log)?;
            self.in_transaction = true;
        }
        let Some(task) = self.tasks.get_mut(&id) else { return Ok(()) };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| task.process(record)));
        let result = match result {
            Ok(r) => r,
            Err(panic) => Err(Error::TaskFailed {
                task: id.to_string(),
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                reason: format!("user code panicked: {}", panic_message(panic.as_ref())),
            }),
        };
        match result {
            Ok(()) => {}
            Err(Error::Deserialization { topic, partition, offset, reason }) => {
                self.on_bad_record(record, &topic, partition, offset, &reason)?;
            }
            Err(e @ Error::TaskFailed { .. }) => return Err(e),
            Err(e) => {
                return Err(Error::TaskFailed {
                    task: id.to_string(),
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                    reason: e.to_string(),
                });
            }
        }
        self.positions.insert(tp, record.offset + 1);
        self.shared.metrics.records_processed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn on_bad_record(
        &mut self,
        record: &ConsumerRecord,
        topic: &str,
        partition: i32,
        offset: i64,
        reason: &str,
    ) -> Result<()> {
        match &self.shared.config.deserialization_handler {
            DeserializationHandler::LogAndFail => Err(Error::Deserialization {
                topic: topic.to_owned(),
                partition,
                offset,
                reason: format!("{reason} (default.deserialization.exception.handler=log_and_fail)"),
            }),
            DeserializationHandler::LogAndContinue => {
                tracing::warn!(topic, partition, offset, reason, "skipping a record that cannot be deserialized");
                self.shared.metrics.records_skipped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            DeserializationHandler::DeadLetterQueue { topic: dlq } => {
                tracing::warn!(topic, partition, offset, reason, dlq = %dlq, "sending a record that cannot be deserialized to the dead-letter topic");
                let mut headers = record.headers.clone();
                headers.push(Header::new("__plexus.errors.exception.message", reason.to_owned()));
                headers.push(Header::new("__plexus.errors.topic", topic.to_owned()));
                headers.push(Header::new("__plexus.errors.partition", partition.to_string()));
                headers.push(Header::new("__plexus.errors.offset", offset.to_string()));
                let r = Record {
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers,
                    timestamp: Some(record.timestamp),
                };
                let delivery = self.producer.send(dlq, r);
                self.pending.push(delivery);
                Ok(())
            }
        }
    }

    /// Sends what the tasks' sinks produced.
    async fn send_outputs(&mut self) -> Result<()> {
        let dropped: u64 = self.tasks.values_mut().map(StreamTask::take_dropped_records).sum();
        self.shared.metrics.records_dropped.fetch_add(dropped, Ordering::Relaxed);
        let outputs: Vec<_> = self.tasks.values_mut().flat_map(StreamTask::take_outputs).collect();
        if outputs.is_empty() {
            return Ok(());
        }
        if self.eos && !self.in_transaction {
            self.producer.begin_transaction().map_err(Error::Log)?;
            self.in_transaction = true;
        }
        for o in outputs {
            let record = Record { key: o.key, value: o.value, headers: o.headers, timestamp: Some(o.timestamp) };
            let delivery = match o.partition {
                Some(p) => self.producer.send_to(&o.topic, p, record),
                None => self.producer.send(&o.topic, record),
            };
            self.pending.push(delivery);
        }
        Ok(())
    }

    /// Commits every task (see the module docs).
    async fn commit(&mut self) -> Result<()> {
        self.last_commit = Instant::now();
        for (id, task) in &mut self.tasks {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| task.flush()));
            let reason = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!("user code panicked: {}", panic_message(panic.as_ref())),
            };
            return Err(Error::FlushFailed { task: id.to_string(), reason });
        }
        self.send_outputs().await?;
        if self.eos && !self.in_transaction && !self.tasks.values().any(StreamTask::has_changelog_writes) {
            return Ok(()); // nothing processed since the last commit
        }
        if self.eos && !self.in_transaction {
            self.producer.begin_transaction().map_err(Error::Log)?;
            self.in_transaction = true;
        }
        let app = self.shared.config.application_id.clone();
        let mut last: Vec<(TaskId, String, Delivery)> = Vec::new();
        for (id, task) in &self.tasks {
            for (spec, writes) in task.changelog_writes() {
                let topic = spec.changelog_topic(&app);
                let mut delivery = None;
                for (key, value) in writes {
                    let r = Record {
                        key: Some(key),
                        value,
                        headers: Vec::new(),
                        timestamp: Some(task.stream_time().max(0)),
                    };
                    if let Some(previous) = delivery.replace(self.producer.send_to(&topic, id.partition, r)) {
                        self.pending.push(previous);
                    }
                }
                if let Some(d) = delivery {
                    last.push((*id, spec.name().to_owned(), d));
                }
            }
        }
        self.producer.flush().await.map_err(Error::Log)?;
        for d in self.pending.drain(..) {
            d.await.map_err(Error::Log)?;
        }
        let mut offsets: BTreeMap<TaskId, BTreeMap<String, i64>> = BTreeMap::new();
        for (id, store, d) in last {
            let meta = d.await.map_err(Error::Log)?;
            offsets.entry(id).or_default().insert(store, meta.offset + 1);
        }
        if self.eos {
            let group =
                self.consumer.group_metadata().ok_or_else(|| Error::Topology("the consumer has no group".into()))?;
            self.producer.send_offsets_to_transaction(&self.positions, &group).await.map_err(Error::Log)?;
            self.producer.commit_transaction().await.map_err(Error::Log)?;
            self.in_transaction = false;
        }
        for (id, task) in &mut self.tasks {
            task.commit_stores(offsets.get(id).unwrap_or(&BTreeMap::new()))?;
        }
        if !self.eos
            && !self.positions.is_empty()
            && let Err(e) = self.consumer.commit_offsets(self.positions.clone()).await
        {
            // A rebalance took partitions away: their records are
            // processed again by the new owner (at least once).
            tracing::warn!(error = %e, "committing offsets failed; the records since the last commit will be processed again");
        }
        self.shared.metrics.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The assignment changed: build tasks for new partitions (restoring
    /// their stores), close the others. Under exactly once the open
    /// transaction is aborted and every task rebuilt from committed state.
    /// Returns the partitions it repositioned (beyond the committed offsets).
    async fn reassign(&mut self, assignment: BTreeSet<TopicPartition>) -> Result<BTreeSet<TopicPartition>> {
        let mut repositioned = BTreeSet::new();
        self.shared.set_state(StreamsState::Rebalancing);
        if self.eos {
            if self.in_transaction {
                self.producer.abort_transaction().await.map_err(Error::Log)?;
                self.in_transaction = false;
            }
            self.pending.clear();
            for (_, mut task) in std::mem::take(&mut self.tasks) {
                task.discard_uncommitted();
                self.unregister(&task);
                task.close()?;
            }
            self.positions.clear();
            // Positions go back to the committed offsets.
            let committed =
                self.consumer.committed(&assignment.iter().cloned().collect::<Vec<_>>()).await.map_err(Error::Log)?;
            for tp in &assignment {
                let to = committed.get(tp).map_or_else(|| self.reset_for(&tp.topic), |o| SeekTo::Offset(*o));
                self.consumer.seek(tp, to).await.map_err(Error::Log)?;
            }
        } else {
            self.commit().await?;
            // New partitions of topics with their own reset policy and no
            // committed offset start where the policy says.
            let new: Vec<TopicPartition> = assignment
                .iter()
                .filter(|tp| !self.assignment.contains(*tp) && self.shared.topology.offset_reset(&tp.topic).is_some())
                .cloned()
                .collect();
            if !new.is_empty() {
                let committed = self.consumer.committed(&new).await.map_err(Error::Log)?;
                for tp in new.iter().filter(|tp| !committed.contains_key(*tp)) {
                    let to = self.reset_for(&tp.topic);
                    self.consumer.seek(tp, to).await.map_err(Error::Log)?;
                    repositioned.insert(tp.clone());
                }
            }
        }
        let wanted: BTreeSet<TaskId> = assignment
            .iter()
            .filter_map(|tp| self.readers.get(&tp.topic).map(|&s| TaskId { subtopology: s, partition: tp.partition }))
            .collect();
        let gone: Vec<TaskId> = self.tasks.keys().filter(|id| !wanted.contains(id)).copied().collect();
        for id in gone {
            if let Some(mut task) = self.tasks.remove(&id) {
                self.unregister(&task);
                task.close()?;
            }
        }
        self.positions.retain(|tp, _| assignment.contains(tp));
        for id in wanted {
            if !self.tasks.contains_key(&id) {
                let task = self.build_task(id).await?;
                self.register(&task);
                self.tasks.insert(id, task);
            }
        }
        self.assignment = assignment;
        self.shared.set_state(StreamsState::Running);
        Ok(repositioned)
    }

    /// Where a partition without a committed offset starts: its topic's
    /// own policy (`Consumed`), else `auto.offset.reset`.
    fn reset_for(&self, topic: &str) -> SeekTo {
        let policy = self.shared.topology.offset_reset(topic).unwrap_or(&self.shared.config.auto_offset_reset);
        if policy == "latest" { SeekTo::End } else { SeekTo::Beginning }
    }

    async fn build_task(&mut self, id: TaskId) -> Result<StreamTask> {
        let dir = self.shared.config.task_dir(id).join("rocksdb");
        let memory = self.shared.memory.clone();
        let mut open = |_: TaskId, spec: &StoreBuilder| -> Result<Arc<dyn BytesStore>> {
            if spec.is_persistent() {
                Ok(Arc::new(open_when_released(&dir, spec.name(), &memory)?))
            } else {
                Ok(Arc::new(InMemoryStore::new(spec.name())))
            }
        };
        let globals = self.shared.globals.get().map_or(&[][..], Vec::as_slice);
        let task = StreamTask::build(&self.shared.topology, id, now_ms(), &mut open, globals, Arc::clone(&self.cache))?;
        self.restore(&task).await?;
        Ok(task)
    }

    /// Reads each logged store's changelog partition from the offset the
    /// store reached to the end, into the store.
    async fn restore(&self, task: &StreamTask) -> Result<()> {
        let app = &self.shared.config.application_id;
        let stores: Vec<StoreBuilder> = task.committed_stores().map(|(s, _)| s.clone()).filter(|s| s.logging).collect();
        for spec in stores {
            let tp = TopicPartition::new(spec.changelog_topic(app), task.id().partition);
            let mut cc = ConsumerConfig::without_group();
            cc.set("isolation.level", "read_committed").map_err(|e| Error::Log(e.into()))?;
            cc.set("max.poll.records", "10000").map_err(|e| Error::Log(e.into()))?;
            let mut consumer = self.shared.clients.consumer(cc).map_err(Error::Log)?;
            consumer.assign(std::slice::from_ref(&tp)).await.map_err(Error::Log)?;
            consumer.seek(&tp, SeekTo::End).await.map_err(Error::Log)?;
            let end = consumer.position(&tp).unwrap_or(0);
            let start = task.restored_offset(spec.name())?.unwrap_or(0);
            if start >= end {
                continue;
            }
            consumer.seek(&tp, SeekTo::Offset(start)).await.map_err(Error::Log)?;
            let started = Instant::now();
            let mut restored = 0usize;
            loop {
                let position = consumer.position(&tp).unwrap_or(end);
                if position >= end {
                    break;
                }
                let records = consumer.poll(Duration::from_millis(200)).await.map_err(Error::Log)?;
                let batch: Vec<_> = records.into_iter().filter_map(|r| r.key.map(|k| (k, r.value))).collect();
                restored += batch.len();
                self.shared.metrics.records_restored.fetch_add(batch.len() as u64, Ordering::Relaxed);
                let next = consumer.position(&tp).unwrap_or(end);
                task.restore(spec.name(), &batch, next)?;
            }
            tracing::info!(task = %task.id(), store = spec.name(), records = restored, from = start, to = end, elapsed_ms = started.elapsed().as_millis() as u64, "restored a store from its changelog");
        }
        Ok(())
    }

    fn register(&self, task: &StreamTask) {
        let mut stores = self.shared.stores.lock().unwrap_or_else(PoisonError::into_inner);
        for (spec, bytes) in task.committed_stores() {
            stores.entry(spec.name().to_owned()).or_default().insert(task.id(), Arc::clone(bytes));
        }
    }

    fn unregister(&self, task: &StreamTask) {
        let mut stores = self.shared.stores.lock().unwrap_or_else(PoisonError::into_inner);
        for map in stores.values_mut() {
            map.remove(&task.id());
        }
    }

    /// Last commit (if the thread is healthy), then closes everything.
    async fn shutdown(&mut self, healthy: bool) {
        if healthy {
            if let Err(e) = self.commit().await {
                tracing::error!(error = %e, "the last commit failed");
                self.shared.fail(e);
            }
        } else if self.in_transaction {
            let _ = self.producer.abort_transaction().await;
        }
        for (_, mut task) in std::mem::take(&mut self.tasks) {
            self.unregister(&task);
            if let Err(e) = task.close() {
                tracing::warn!(error = %e, "closing a task failed");
            }
        }
        if let Err(e) = self.consumer.close().await {
            tracing::warn!(error = %e, "closing the consumer failed");
        }
        if let Err(e) = self.producer.close().await {
            tracing::warn!(error = %e, "closing the producer failed");
        }
    }
}
