//! The Processor API: typed records flowing through processors, as in
//! Kafka Streams' `org.apache.kafka.streams.processor.api`.
//!
//! A [`Processor`] receives [`Record`]s of one key and value type and
//! forwards records of another through its [`ProcessorContext`] to the
//! processors downstream. Inside a sub-topology records travel as Rust
//! values: a forward is a call into the child with the record moved (or,
//! for all but the last of several children, cloned) — no serialization
//! and no `dyn Any`. Serialization happens only at sources, sinks and
//! state stores.
//!
//! Punctuators are scheduled through the context and delivered to the
//! processor's [`Processor::punctuate`]: on stream time (advanced by the
//! records' timestamps) or on wall-clock time.
//!
//! Processors that hold updates back (the DSL's aggregations, with the
//! record cache on) forward them in [`Processor::flush`], which the task
//! calls on every processor, parents before children, before each commit;
//! the bytes they hold count against one budget per stream thread
//! ([`ProcessorContext::cache_resize`]).

pub(crate) mod node;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use plexus_core::Header;
use plexus_core::Timestamp;

use crate::error::{Error, Result};
use crate::state::task_store::{Layout, TaskStore};
use crate::state::{
    KeyValueStore, KeyValueStoreRef, ReadOnlyKeyValueStore, ReadOnlySessionStore, ReadOnlyWindowStore, SessionStore,
    SessionStoreRef, WindowStore, WindowStoreRef,
};
pub(crate) use node::Child;

/// A record inside a topology: a typed key and value, a timestamp (event
/// time) and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time, ms since the Unix epoch.
    pub timestamp: Timestamp,
    /// Headers, carried along unchanged unless a processor changes them.
    pub headers: Vec<Header>,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: Timestamp) -> Self {
        Self { key, value, timestamp, headers: Vec::new() }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record { key, value: self.value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record { key: self.key, value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = timestamp;
        self
    }
}

/// Where the record being processed came from: its input topic, partition
/// and offset (absent for records a punctuator created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The source topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
}

/// A task: one sub-topology working on one partition of its input topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology's number (as `describe()` prints it).
    pub subtopology: u32,
    /// The input partition.
    pub partition: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// What drives a punctuator (Kafka's `PunctuationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// The task's stream time: the largest record timestamp seen. Does not
    /// move while no records arrive.
    StreamTime,
    /// The wall clock (in the test driver: the time it is told).
    WallClockTime,
}

/// A punctuator a processor scheduled, as passed back to [`Processor::punctuate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Punctuator {
    /// Its number, as [`ProcessorContext::schedule`] returned it.
    pub id: u32,
    /// What drives it.
    pub kind: PunctuationType,
    /// Its interval.
    pub interval: Duration,
}

/// The task-wide state a processor's context reaches: the current record's
/// metadata, time, scheduled punctuators and the records sinks produced.
#[derive(Debug)]
pub(crate) struct TaskContext {
    pub(crate) task: TaskId,
    pub(crate) current: Option<RecordMetadata>,
    pub(crate) stream_time: Timestamp,
    pub(crate) wall_clock: Timestamp,
    pub(crate) schedules: Vec<Schedule>,
    pub(crate) outputs: Vec<OutputRecord>,
    pub(crate) commit_requested: bool,
    pub(crate) stores: Vec<TaskStore>,
    /// Records processors dropped (late for their window, say) since the
    /// metrics last took them.
    pub(crate) dropped_records: u64,
    /// The record cache's budget, shared with the other tasks of the thread.
    pub(crate) cache: Arc<CacheBudget>,
    /// The bytes of it this task's processors hold.
    pub(crate) cache_used: usize,
}

impl Drop for TaskContext {
    /// A task closed with updates held back (its transaction aborted)
    /// gives their bytes back.
    fn drop(&mut self) {
        let used = self.cache.used.load(Ordering::Relaxed).saturating_sub(self.cache_used);
        self.cache.used.store(used, Ordering::Relaxed);
    }
}

/// The bytes the processors of one stream thread's tasks may hold back
/// before forwarding (`cache.max.bytes.buffering` divided among the
/// threads, as Kafka Streams divides it); 0 turns the cache off.
#[derive(Debug)]
pub(crate) struct CacheBudget {
    max: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    pub(crate) fn new(max: usize) -> Self {
        Self { max, used: AtomicUsize::new(0) }
    }
}

impl TaskContext {
    pub(crate) fn new(task: TaskId, wall_clock: Timestamp, cache: Arc<CacheBudget>) -> Self {
        Self {
            cache,
            cache_used: 0,
            task,
            current: None,
            stream_time: Timestamp::MIN,
            wall_clock,
            schedules: Vec::new(),
            outputs: Vec::new(),
            commit_requested: false,
            stores: Vec::new(),
            dropped_records: 0,
        }
    }
}

/// A punctuator as the task keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) node: usize,
    pub(crate) punctuator: Punctuator,
    /// When it fires next (`None`: at the first time observed).
    pub(crate) next: Option<Timestamp>,
    pub(crate) cancelled: bool,
}

/// A record a sink produced: serialized, on its way to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// The topic.
    pub topic: String,
    /// The partition, when the sink chose one; else the producer's
    /// partitioner picks it from the key.
    pub partition: Option<i32>,
    /// The serialized key.
    pub key: Option<bytes::Bytes>,
    /// The serialized value (`None`: a tombstone).
    pub value: Option<bytes::Bytes>,
    /// The timestamp.
    pub timestamp: Timestamp,
    /// Headers.
    pub headers: Vec<Header>,
}

/// A processor's window on its task: forward records downstream, read the
/// time and the current record's origin, schedule punctuators, ask for a
/// commit.
pub struct ProcessorContext<'a, KOut, VOut> {
    pub(crate) task: &'a mut TaskContext,
    pub(crate) children: &'a [Child<KOut, VOut>],
    pub(crate) node: usize,
}

impl<KOut: Clone, VOut: Clone> ProcessorContext<'_, KOut, VOut> {
    /// Sends a record to every child processor, in the order they were
    /// added; each gets its own copy (the last one the original).
    pub fn forward(&mut self, record: Record<KOut, VOut>) -> Result<()> {
        let Some((last, rest)) = self.children.split_last() else { return Ok(()) };
        for child in rest {
            child.process(record.clone(), self.task)?;
        }
        last.process(record, self.task)
    }
}

impl<KOut, VOut> ProcessorContext<'_, KOut, VOut> {
    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.task.task
    }

    /// Where the record being processed came from (`None` in a punctuation).
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.task.current.as_ref()
    }

    /// The task's stream time: the largest timestamp among the records it
    /// has processed (`i64::MIN` before the first).
    pub fn stream_time(&self) -> Timestamp {
        self.task.stream_time
    }

    /// The wall-clock time as the task sees it (the test driver's clock in tests).
    pub fn wall_clock_time(&self) -> Timestamp {
        self.task.wall_clock
    }

    /// Schedules [`Processor::punctuate`] every `interval` of stream time or
    /// wall-clock time; returns the punctuator's id, for [`Self::cancel`].
    /// A stream-time punctuator first fires at the next record, a
    /// wall-clock one after one interval.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> u32 {
        let id = u32::try_from(self.task.schedules.len()).unwrap_or(u32::MAX);
        let punctuator = Punctuator { id, kind, interval };
        // As in Kafka Streams: a stream-time punctuator fires at the first
        // record; a wall-clock one first after one interval.
        let next = match kind {
            PunctuationType::StreamTime => None,
            PunctuationType::WallClockTime => {
                Some(self.task.wall_clock.saturating_add(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX)))
            }
        };
        self.task.schedules.push(Schedule { node: self.node, punctuator, next, cancelled: false });
        id
    }

    /// Cancels a punctuator this processor scheduled.
    pub fn cancel(&mut self, id: u32) {
        let node = self.node;
        if let Some(s) = self.task.schedules.iter_mut().find(|s| s.punctuator.id == id && s.node == node) {
            s.cancelled = true;
        }
    }

    /// Counts a record this processor dropped — too late for its window,
    /// say — in the task's dropped-records metric (Kafka's
    /// `dropped-records-total`).
    pub fn record_dropped(&mut self) {
        self.task.dropped_records += 1;
    }

    /// Asks for a commit as soon as possible (after the current record).
    pub fn commit(&mut self) {
        self.task.commit_requested = true;
    }

    /// Whether the record cache is on (`cache.max.bytes.buffering` > 0):
    /// a processor may then hold updates back until [`Processor::flush`]
    /// and forward only the latest per key.
    pub fn caching(&self) -> bool {
        self.task.cache.max > 0
    }

    /// Accounts for the bytes a processor holds back: `added` more,
    /// `released` fewer. Returns whether the thread's cache is now over its
    /// budget, in which case the processor should forward what it holds
    /// (Kafka Streams evicts from the cache being written to, too).
    pub fn cache_resize(&mut self, added: usize, released: usize) -> bool {
        // One thread's tasks share the budget and only that thread writes
        // it, so a load and a store do not race.
        self.task.cache_used = (self.task.cache_used + added).saturating_sub(released);
        let cache = &self.task.cache;
        let used = (cache.used.load(Ordering::Relaxed) + added).saturating_sub(released);
        cache.used.store(used, Ordering::Relaxed);
        used > cache.max
    }

    fn store(&self, name: &str) -> Result<&TaskStore> {
        let store = self.task.stores.iter().find(|s| s.spec.name == name).ok_or_else(|| {
            Error::Topology(format!(
                "task {} has no state store {name:?}: add it to the topology and connect it to this processor",
                self.task.task
            ))
        })?;
        if !store.connected.contains(&self.node) {
            return Err(Error::Topology(format!(
                "state store {name:?} is not connected to this processor; connect it with connect_processor_and_state_stores"
            )));
        }
        Ok(store)
    }

    fn wrong_kind(name: &str, wanted: &str) -> Error {
        Error::Topology(format!("state store {name:?} is not a {wanted} store"))
    }

    /// A key-value store connected to this processor. Its writes become
    /// durable (and visible to queries) at the task's next commit.
    pub fn key_value_store<'s, K, V>(&'s self, store: &'s KeyValueStoreRef<K, V>) -> Result<KeyValueStore<'s, K, V>> {
        let s = self.store(store.name())?;
        match &s.layout {
            Layout::KeyValue => Ok(KeyValueStore { read: ReadOnlyKeyValueStore { bytes: &*s.overlay, store } }),
            _ => Err(Self::wrong_kind(store.name(), "key-value")),
        }
    }

    /// A window store connected to this processor.
    pub fn window_store<'s, K, V>(&'s self, store: &'s WindowStoreRef<K, V>) -> Result<WindowStore<'s, K, V>> {
        let s = self.store(store.name())?;
        match &s.layout {
            Layout::Window(bytes) => Ok(WindowStore { read: ReadOnlyWindowStore { bytes, store } }),
            _ => Err(Self::wrong_kind(store.name(), "window")),
        }
    }

    /// A session store connected to this processor.
    pub fn session_store<'s, K, V>(&'s self, store: &'s SessionStoreRef<K, V>) -> Result<SessionStore<'s, K, V>> {
        let s = self.store(store.name())?;
        match &s.layout {
            Layout::Session(bytes) => Ok(SessionStore { read: ReadOnlySessionStore { bytes, store } }),
            _ => Err(Self::wrong_kind(store.name(), "session")),
        }
    }
}

/// A step of a topology: takes records of one type, forwards records of
/// another (Kafka's `Processor<KIn, VIn, KOut, VOut>`).
///
/// One instance runs per task, built on the thread that runs the task and
/// never moved off it (so it need not be `Send`); `init` runs before the
/// first record, `flush` before each commit, `close` when the task closes.
///
/// ```
/// use plexus_runtime::processor::{Processor, ProcessorContext, Record};
///
/// /// Forwards records whose value is longer than `min` characters.
/// struct LongValues { min: usize }
///
/// impl Processor<String, String> for LongValues {
///     fn process(&mut self, record: Record<String, String>, ctx: &mut ProcessorContext<'_, String, String>) -> plexus_runtime::Result<()> {
///         if record.value.len() > self.min {
///             ctx.forward(record)?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Processor<KIn, VIn, KOut = KIn, VOut = VIn>: 'static {
    /// Called once before the first record: schedule punctuators here.
    fn init(&mut self, context: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = context;
        Ok(())
    }

    /// Processes one record.
    fn process(&mut self, record: Record<KIn, VIn>, context: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()>;

    /// A scheduled punctuator fired at `timestamp`.
    fn punctuate(
        &mut self,
        punctuator: Punctuator,
        timestamp: Timestamp,
        context: &mut ProcessorContext<'_, KOut, VOut>,
    ) -> Result<()> {
        let _ = (punctuator, timestamp, context);
        Ok(())
    }

    /// Forwards what the processor held back (see
    /// [`ProcessorContext::caching`]). The task calls it on every
    /// processor, parents before children, before each commit, so that a
    /// commit covers every update the committed input caused.
    fn flush(&mut self, context: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = context;
        Ok(())
    }

    /// Called once when the task closes.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
