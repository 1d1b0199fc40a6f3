//! [`TopologyTestDriver`]: runs a topology in memory, deterministically —
//! no log, no threads, no disk — for unit tests of topologies.
//!
//! Topics are in-memory partitions. A piped record is appended to its
//! partition (chosen from its key with Kafka's murmur2 partitioner, as a
//! producer would) and processed at once by the task owning that
//! partition; records that sinks write to topics that other sub-topologies
//! read (repartition topics) are processed by those tasks in turn, until
//! nothing is left. Unlike Kafka Streams' driver, topics may have several
//! partitions, so key changes and co-partitioned joins behave as they do
//! on a cluster. Internal topics are named `test-driver-<name>`, as if
//! the application id were `test-driver`. After each piped record every
//! task commits, as Kafka Streams' driver does: processors forward what the
//! record cache held back (so an aggregation emits one update per key per
//! piped record), changelog records go to their in-memory topics and the
//! stores' writes are applied.
//!
//! ```
//! use plexus_runtime::processor::{Processor, ProcessorContext, Record};
//! use plexus_runtime::serde::StringSerde;
//! use plexus_runtime::{Topology, TopologyTestDriver};
//!
//! struct Upper;
//! impl Processor<String, String> for Upper {
//!     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, String>) -> plexus_runtime::Result<()> {
//!         let upper = r.value.to_uppercase();
//!         ctx.forward(r.with_value(upper))
//!     }
//! }
//!
//! let mut topology = Topology::new();
//! let source = topology.add_source("in", &["words"], StringSerde, StringSerde).unwrap();
//! let upper = topology.add_processor("upper", || Upper, &[source]).unwrap();
//! topology.add_sink("out", "shouted", StringSerde, StringSerde, &[upper]).unwrap();
//!
//! let mut driver = TopologyTestDriver::new(topology).unwrap();
//! driver.pipe_input("words", &StringSerde, &StringSerde, &"k".to_owned(), &"hello".to_owned(), 1_000).unwrap();
//! let out = driver.read_output("shouted", &StringSerde, &StringSerde).unwrap();
//! assert_eq!(out[0].value, "HELLO");
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use plexus_core::client::partitioner::partition_for_key;
use plexus_core::{ConsumerRecord, Header, Timestamp};

use crate::error::{Error, Result};
use crate::processor::{CacheBudget, OutputRecord, Record, TaskId};
use crate::serde::Serde;
use crate::state::{
    BytesStore, InMemoryStore, KeyValueStoreRef, ReadOnlyKeyValueStore, ReadOnlySessionStore, ReadOnlyWindowStore,
    SessionBytesStore, SessionStoreRef, WindowBytesStore, WindowStoreRef,
};
use crate::task::StreamTask;
use crate::topology::{StoreKind, Topology};

/// The application id the driver names changelog topics with.
const APPLICATION_ID: &str = "test-driver";

#[derive(Debug, Default)]
struct TestTopic {
    partitions: Vec<Vec<ConsumerRecord>>,
    /// How far each partition was read by `read_output`.
    read: Vec<usize>,
}

/// Runs a topology in memory (see the module docs).
pub struct TopologyTestDriver {
    topology: Topology,
    /// The partition counts of the internal (repartition) topics, derived
    /// at the first piped record from the topics then known.
    internal_partitions: Option<BTreeMap<String, i32>>,
    topics: BTreeMap<String, TestTopic>,
    default_partitions: i32,
    tasks: BTreeMap<TaskId, StreamTask>,
    /// Which sub-topology reads each source topic.
    readers: BTreeMap<String, u32>,
    /// Records appended but not yet processed, in order.
    pending: VecDeque<(String, i32, usize)>,
    wall_clock: Timestamp,
    dropped_records: u64,
    /// The global stores, in memory, updated as their topics get records.
    globals: crate::task::OpenStores,
    /// The record cache (`cache.max.bytes.buffering`'s default).
    cache: Arc<CacheBudget>,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver").field("tasks", &self.tasks.keys()).finish_non_exhaustive()
    }
}

impl TopologyTestDriver {
    /// A driver whose topics have one partition.
    pub fn new(topology: Topology) -> Result<Self> {
        Self::with_partitions(topology, 1)
    }

    /// A driver whose topics have `partitions` partitions each (change one
    /// topic's count with [`Self::create_topic`] before piping).
    pub fn with_partitions(mut topology: Topology, partitions: i32) -> Result<Self> {
        if partitions < 1 {
            return Err(Error::Topology(format!("{partitions} partitions: topics need at least one")));
        }
        topology.resolve_internal_topics(APPLICATION_ID)?;
        let readers = topology.readers();
        let globals = topology
            .global_stores()
            .iter()
            .map(|g| (g.store.clone(), Arc::new(InMemoryStore::new(g.store.name())) as Arc<dyn BytesStore>))
            .collect();
        Ok(Self {
            topology,
            internal_partitions: None,
            topics: BTreeMap::new(),
            default_partitions: partitions,
            tasks: BTreeMap::new(),
            readers,
            pending: VecDeque::new(),
            wall_clock: 0,
            dropped_records: 0,
            globals,
            cache: Arc::new(CacheBudget::new(
                crate::streams::StreamsConfig::new(APPLICATION_ID).cache_max_bytes_buffering,
            )),
        })
    }

    /// Creates a topic with its own partition count.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        if self.topics.contains_key(name) {
            return Err(Error::Topology(format!("topic {name:?} exists already")));
        }
        let n = usize::try_from(partitions.max(1)).unwrap_or(1);
        self.topics.insert(name.to_owned(), TestTopic { partitions: vec![Vec::new(); n], read: vec![0; n] });
        Ok(())
    }

    fn topic(&mut self, name: &str) -> &mut TestTopic {
        let partitions = self.internal_partitions.as_ref().and_then(|c| c.get(name).copied());
        let n = usize::try_from(partitions.unwrap_or(self.default_partitions)).unwrap_or(1);
        self.topics
            .entry(name.to_owned())
            .or_insert_with(|| TestTopic { partitions: vec![Vec::new(); n], read: vec![0; n] })
    }

    /// Sets the wall clock and fires the wall-clock punctuators due.
    pub fn advance_wall_clock_time(&mut self, by: Duration) -> Result<()> {
        self.wall_clock = self.wall_clock.saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        let now = self.wall_clock;
        for task in self.tasks.values_mut() {
            task.advance_wall_clock(now)?;
        }
        self.run()
    }

    /// Pipes a record into an input topic and processes everything it
    /// leads to.
    pub fn pipe_input<K, V>(
        &mut self,
        topic: &str,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
        key: &K,
        value: &V,
        timestamp: Timestamp,
    ) -> Result<()> {
        let ser = |e: crate::serde::SerdeError| Error::Topology(format!("piping into {topic:?}: {e}"));
        let key = key_serde.serialize(key).map_err(ser)?;
        let value = value_serde.serialize(value).map_err(ser)?;
        self.pipe_raw(topic, key, value, timestamp, Vec::new())
    }

    /// Pipes a record given as bytes (for malformed input, say).
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: Timestamp,
        headers: Vec<Header>,
    ) -> Result<()> {
        if self.internal_partitions.is_none() {
            let (topics, default) = (&self.topics, self.default_partitions);
            let counts = self.topology.internal_topic_partitions(|t| {
                Ok(topics.get(t).map_or(default, |t| i32::try_from(t.partitions.len()).unwrap_or(1)))
            })?;
            self.internal_partitions = Some(counts);
        }
        self.append(OutputRecord { topic: topic.to_owned(), partition: None, key, value, timestamp, headers });
        self.run()
    }

    fn append(&mut self, r: OutputRecord) {
        let topic = self.topic(&r.topic);
        let count = i32::try_from(topic.partitions.len()).unwrap_or(1);
        let partition = r.partition.unwrap_or_else(|| match &r.key {
            Some(k) => partition_for_key(k, count),
            None => 0,
        });
        let p = usize::try_from(partition).unwrap_or(0).min(topic.partitions.len() - 1);
        let offset = topic.partitions[p].len();
        topic.partitions[p].push(ConsumerRecord {
            topic: r.topic.clone(),
            partition,
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers,
        });
        if self.readers.contains_key(&r.topic) {
            self.pending.push_back((r.topic, partition, offset));
        } else if let Some(g) = self.topology.global_stores().iter().find(|g| g.topic == r.topic) {
            // A global table's topic: its store takes the record at once.
            let mut batch = crate::state::WriteBatch::new();
            let record = &self.topics[&r.topic].partitions[p][offset];
            if let Some(k) = &record.key {
                match &record.value {
                    Some(v) => batch.put(k.clone(), v.clone()),
                    None => batch.delete(k.clone()),
                }
            }
            if let Some((_, store)) = self.globals.iter().find(|(s, _)| s.name() == g.store.name())
                && let Err(e) = store.write(batch)
            {
                tracing::error!(error = %e, "a global store of the test driver refused a write");
            }
        }
    }

    /// Processes pending records (and what they produce) until none is
    /// left, flushes every task's record cache (processing what that
    /// produces in turn), then commits every task.
    fn run(&mut self) -> Result<()> {
        while let Some((topic, partition, offset)) = self.pending.pop_front() {
            let Some(&subtopology) = self.readers.get(&topic) else { continue };
            let id = TaskId { subtopology, partition };
            let record = self.topics[&topic].partitions[usize::try_from(partition).unwrap_or(0)][offset].clone();
            let task = self.task(id)?;
            task.process(&record)?;
            for out in task.take_outputs() {
                self.append(out);
            }
        }
        for task in self.tasks.values_mut() {
            task.flush()?;
        }
        self.dropped_records += self.tasks.values_mut().map(StreamTask::take_dropped_records).sum::<u64>();
        for out in self.tasks.values_mut().flat_map(StreamTask::take_outputs).collect::<Vec<_>>() {
            self.append(out);
        }
        if !self.pending.is_empty() {
            return self.run();
        }
        self.commit()
    }

    fn task(&mut self, id: TaskId) -> Result<&mut StreamTask> {
        if !self.tasks.contains_key(&id) {
            let mut open = |_: TaskId, spec: &crate::topology::StoreBuilder| -> Result<Arc<dyn BytesStore>> {
                Ok(Arc::new(InMemoryStore::new(spec.name())))
            };
            let cache = Arc::clone(&self.cache);
            let task = StreamTask::build(&self.topology, id, self.wall_clock, &mut open, &self.globals, cache)?;
            self.tasks.insert(id, task);
        }
        self.tasks.get_mut(&id).ok_or_else(|| Error::Topology(format!("task {id} vanished")))
    }

    /// Commits every task: changelog records to their topics, then the stores.
    fn commit(&mut self) -> Result<()> {
        let mut changelog = Vec::new();
        for task in self.tasks.values_mut() {
            let mut offsets = BTreeMap::new();
            for (spec, writes) in task.changelog_writes() {
                let topic = spec.changelog_topic(APPLICATION_ID);
                for (key, value) in writes {
                    changelog.push(OutputRecord {
                        topic: topic.clone(),
                        partition: Some(task.id().partition),
                        key: Some(key),
                        value,
                        timestamp: task.stream_time(),
                        headers: Vec::new(),
                    });
                }
                let already = self.topics.get(&topic).map_or(0, |t| {
                    t.partitions.get(usize::try_from(task.id().partition).unwrap_or(0)).map_or(0, Vec::len)
                });
                let n =
                    changelog.iter().filter(|r| r.topic == topic && r.partition == Some(task.id().partition)).count();
                offsets.insert(spec.name().to_owned(), i64::try_from(already + n).unwrap_or(i64::MAX));
            }
            task.commit_stores(&offsets)?;
        }
        for r in changelog {
            self.append(r);
        }
        Ok(())
    }

    /// The records written to a topic since the last read, deserialized,
    /// partition by partition.
    pub fn read_output<K, V>(
        &mut self,
        topic: &str,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Vec<Record<K, V>>> {
        let Some(t) = self.topics.get_mut(topic) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for (p, records) in t.partitions.iter().enumerate() {
            for r in &records[t.read[p]..] {
                let de = |what: &str, e: crate::serde::SerdeError| Error::Deserialization {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    offset: r.offset,
                    reason: format!("{what}: {e}"),
                };
                let key = key_serde.deserialize(r.key.as_deref()).map_err(|e| de("key", e))?;
                let value = value_serde.deserialize(r.value.as_deref()).map_err(|e| de("value", e))?;
                out.push(Record { key, value, timestamp: r.timestamp, headers: r.headers.clone() });
            }
            t.read[p] = records.len();
        }
        Ok(out)
    }

    /// Every record ever written to a topic, as bytes, per partition.
    pub fn topic_records(&self, topic: &str) -> Vec<Vec<ConsumerRecord>> {
        self.topics.get(topic).map(|t| t.partitions.clone()).unwrap_or_default()
    }

    fn committed(&self, name: &str) -> Vec<Arc<dyn BytesStore>> {
        self.tasks
            .values()
            .flat_map(|t| t.committed_stores().filter(|(s, _)| s.name() == name).map(|(_, b)| Arc::clone(b)))
            .collect()
    }

    /// The entries of a key-value store, over all tasks, ascending per task.
    pub fn key_value_store_all<K, V>(&self, store: &KeyValueStoreRef<K, V>) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        for bytes in self.committed(store.name()) {
            out.extend(ReadOnlyKeyValueStore { bytes: &*bytes, store }.all()?);
        }
        Ok(out)
    }

    /// The value of a key in a key-value store (whichever task holds it).
    pub fn key_value_store_get<K, V>(&self, store: &KeyValueStoreRef<K, V>, key: &K) -> Result<Option<V>> {
        for bytes in self.committed(store.name()) {
            if let Some(v) = (ReadOnlyKeyValueStore { bytes: &*bytes, store }).get(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Every window of a window store starting in `[from, to]`, over all tasks.
    pub fn window_store_fetch_all<K, V>(
        &self,
        store: &WindowStoreRef<K, V>,
        from: i64,
        to: i64,
    ) -> Result<Vec<(K, i64, V)>> {
        let Some(spec) = self.topology.stores.iter().find(|s| s.name() == store.name()) else { return Ok(Vec::new()) };
        let StoreKind::Window { retention, retain_duplicates } = spec.kind else {
            return Err(Error::Topology(format!("state store {:?} is not a window store", store.name())));
        };
        let mut out = Vec::new();
        for bytes in self.committed(store.name()) {
            let duplicates =
                if retain_duplicates { crate::state::Duplicates::Retain } else { crate::state::Duplicates::Overwrite };
            let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            let windows = WindowBytesStore::new(bytes, retention, duplicates)?;
            out.extend(ReadOnlyWindowStore { bytes: &windows, store }.fetch_all(from, to)?);
        }
        Ok(out)
    }

    /// Every session of a key in a session store, over all tasks.
    pub fn session_store_fetch<K, V>(&self, store: &SessionStoreRef<K, V>, key: &K) -> Result<Vec<(i64, i64, V)>> {
        let Some(spec) = self.topology.stores.iter().find(|s| s.name() == store.name()) else { return Ok(Vec::new()) };
        let StoreKind::Session { retention } = spec.kind else {
            return Err(Error::Topology(format!("state store {:?} is not a session store", store.name())));
        };
        let mut out = Vec::new();
        for bytes in self.committed(store.name()) {
            let sessions = SessionBytesStore::new(bytes, i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))?;
            out.extend(ReadOnlySessionStore { bytes: &sessions, store }.fetch(key)?);
        }
        Ok(out)
    }

    /// Records processors dropped so far (late for their window, say):
    /// the runtime's `records_dropped` metric.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// Closes every task.
    pub fn close(mut self) -> Result<()> {
        for task in self.tasks.values_mut() {
            task.close()?;
        }
        Ok(())
    }
}
