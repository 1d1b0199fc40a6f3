//! [`Streams`]: runs a [`Topology`] on a log — the embedded one or, through
//! the core's client traits, any Kafka-protocol cluster.
//!
//! An application (`application.id`) is a consumer group: every stream
//! thread of every instance is a member, and the group assigns it
//! partitions of the source topics. A thread runs one task per
//! (sub-topology, partition) it owns (`thread`): it polls records, runs
//! them through the task's processors, sends what sinks produce, and every
//! `commit.interval.ms` commits — changelog writes, outputs, then the input
//! offsets; under `exactly_once_v2` all of it in one transaction of the
//! thread's transactional producer.
//!
//! Stores live in RocksDB under `state.dir`, all sharing one memory budget
//! ([`RocksDbMemory`]), and record the changelog offset they reached in the
//! same atomic write as their contents, so that a clean restart restores
//! nothing and a crash restores only the tail. [`Streams::store`] reads
//! the committed contents of the stores of this instance's tasks.

mod config;
mod global;
mod query;
mod standby;
mod thread;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use plexus_core::client::Clients;

pub use config::{DeserializationHandler, ProcessingGuarantee, StreamsConfig};
pub use query::{QueryableKeyValueStore, QueryableSessionStore, QueryableWindowStore};

use crate::error::{Error, Result};
use crate::processor::TaskId;
use crate::state::{BytesStore, KeyValueStoreRef, RocksDbMemory, SessionStoreRef, WindowStoreRef};
use crate::topology::Topology;

/// The life of a [`Streams`] application (Kafka's `KafkaStreams.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamsState {
    /// Built, not started.
    Created,
    /// Threads are joining the group and restoring state.
    Rebalancing,
    /// Processing.
    Running,
    /// Closing.
    PendingShutdown,
    /// Closed.
    NotRunning,
    /// A thread failed; [`Streams::close`] returns its error.
    Error,
}

/// Committed stores by store name, then task.
pub(crate) type StoreRegistry = BTreeMap<String, BTreeMap<TaskId, Arc<dyn BytesStore>>>;

type StateListener = Box<dyn Fn(StreamsState, StreamsState) + Send + Sync>;

/// What the threads and the application share.
pub(crate) struct Shared {
    pub(crate) topology: Topology,
    pub(crate) config: StreamsConfig,
    pub(crate) clients: Arc<dyn Clients>,
    pub(crate) memory: RocksDbMemory,
    pub(crate) shutdown: AtomicBool,
    /// The committed stores of this instance's tasks, by store name.
    pub(crate) stores: Mutex<StoreRegistry>,
    state: Mutex<StreamsState>,
    listener: Mutex<Option<StateListener>>,
    /// The first error a thread failed with.
    pub(crate) failure: Mutex<Option<Error>>,
    /// A process id, stable across restarts of this instance (kept in
    /// `state.dir`), naming its transactional producers.
    pub(crate) process_id: String,
    pub(crate) metrics: Metrics,
    /// The global stores, once `start` opened them.
    pub(crate) globals: std::sync::OnceLock<crate::task::OpenStores>,
}

/// Counters the threads keep.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) records_processed: AtomicU64,
    pub(crate) records_restored: AtomicU64,
    pub(crate) records_skipped: AtomicU64,
    pub(crate) records_dropped: AtomicU64,
    pub(crate) records_standby: AtomicU64,
    pub(crate) commits: AtomicU64,
}

/// A snapshot of an application's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamsMetrics {
    /// Input records processed.
    pub records_processed: u64,
    /// Changelog records read back into stores on task creation.
    pub records_restored: u64,
    /// Input records skipped by the deserialization handler.
    pub records_skipped: u64,
    /// Records processors dropped: too late for their window (after its
    /// grace period), say (Kafka's `dropped-records-total`).
    pub records_dropped: u64,
    /// Changelog records applied to standby replicas.
    pub records_standby: u64,
    /// Commits completed.
    pub commits: u64,
}

impl Shared {
    pub(crate) fn set_state(&self, new: StreamsState) {
        let old = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let old = *state;
            // Error and NotRunning are final; a failure is not overwritten.
            if old == new
                || old == StreamsState::Error
                || (old == StreamsState::NotRunning && new != StreamsState::Error)
            {
                return;
            }
            *state = new;
            old
        };
        tracing::info!(application_id = %self.config.application_id, from = ?old, to = ?new, "state change");
        if let Some(listener) = self.listener.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            listener(old, new);
        }
    }

    pub(crate) fn fail(&self, error: Error) {
        // Logged for a service's operators; whoever runs the topology also
        // gets the error from `Streams` (a command prints it once, with
        // the `plexus::failure` target off).
        tracing::error!(target: "plexus::failure", application_id = %self.config.application_id, %error, "stream thread failed");
        self.failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(error);
        self.set_state(StreamsState::Error);
        self.shutdown.store(true, Ordering::Release);
    }
}

/// A running stream-processing application (Kafka's `KafkaStreams`).
///
/// ```no_run
/// use plexus_core::client::EmbeddedClients;
/// use plexus_core::{Log, LogConfig};
/// use plexus_runtime::{Streams, StreamsConfig, Topology};
///
/// # fn topology() -> Topology { Topology::new() }
/// let log = Log::open(LogConfig::new("data")).unwrap();
/// let mut streams = Streams::new(topology(), StreamsConfig::new("word-count"), EmbeddedClients::new(log)).unwrap();
/// streams.start().unwrap();
/// // ...
/// streams.close().unwrap();
/// ```
pub struct Streams {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").field("application_id", &self.shared.config.application_id).finish_non_exhaustive()
    }
}

impl Streams {
    /// An application running `topology` with `config` on the log behind `clients`.
    pub fn new(mut topology: Topology, config: StreamsConfig, clients: impl Clients + 'static) -> Result<Self> {
        config.validate()?;
        topology.resolve_internal_topics(&config.application_id)?;
        if topology.source_topics().is_empty() {
            return Err(Error::Topology("the topology reads no topic: add a source".into()));
        }
        let process_id = process_id(&config)?;
        let memory = RocksDbMemory::new(config.rocksdb_memory_bytes);
        Ok(Self {
            shared: Arc::new(Shared {
                topology,
                config,
                clients: Arc::new(clients),
                memory,
                shutdown: AtomicBool::new(false),
                stores: Mutex::new(BTreeMap::new()),
                state: Mutex::new(StreamsState::Created),
                listener: Mutex::new(None),
                failure: Mutex::new(None),
                process_id,
                metrics: Metrics::default(),
                globals: std::sync::OnceLock::new(),
            }),
            threads: Vec::new(),
        })
    }

    /// Calls `listener(old, new)` on every state change.
    pub fn set_state_listener(&self, listener: impl Fn(StreamsState, StreamsState) + Send + Sync + 'static) {
        *self.shared.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(listener));
    }

    /// The current state.
    pub fn state(&self) -> StreamsState {
        *self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the internal topics and starts `num.stream.threads` threads.
    pub fn start(&mut self) -> Result<()> {
        if self.state() != StreamsState::Created {
            return Err(Error::Topology("start() was already called".into()));
        }
        // On a thread of its own: start() may be called from async code,
        // where blocking on the clients' futures is not allowed.
        let shared = &self.shared;
        std::thread::scope(|s| s.spawn(|| thread::create_internal_topics(shared)).join())
            .map_err(|_| Error::Topology("creating the internal topics panicked".into()))??;
        self.shared.set_state(StreamsState::Rebalancing);
        if !self.shared.topology.global_stores().is_empty() {
            let stores = global::open(&self.shared)?;
            let _ = self.shared.globals.set(stores.clone());
            let (ready, bootstrapped) = std::sync::mpsc::channel();
            let shared = Arc::clone(&self.shared);
            let name = format!("{}-GlobalStreamThread", shared.config.application_id);
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || global::run(&shared, &stores, ready))
                .map_err(|e| Error::Topology(format!("cannot start {name}: {e}")))?;
            self.threads.push(handle);
            // The tasks start once every global table is complete.
            match bootstrapped.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.shared.shutdown.store(true, Ordering::Release);
                    return Err(e);
                }
                Err(_) => return Err(Error::Topology(format!("{name} stopped before its stores caught up"))),
            }
        }
        if self.shared.config.num_standby_replicas > 0 && self.shared.topology.stores.iter().any(|s| s.logging) {
            let shared = Arc::clone(&self.shared);
            let name = format!("{}-StandbyThread", shared.config.application_id);
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || standby::run(&shared))
                .map_err(|e| Error::Topology(format!("cannot start {name}: {e}")))?;
            self.threads.push(handle);
        }
        for index in 0..self.shared.config.num_stream_threads {
            let shared = Arc::clone(&self.shared);
            let name = format!("{}-StreamThread-{}", shared.config.application_id, index + 1);
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || thread::run(&shared, index))
                .map_err(|e| Error::Topology(format!("cannot start stream thread {name}: {e}")))?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// Stops the threads after a last commit; returns the error a thread
    /// failed with, if one did.
    pub fn close(&mut self) -> Result<()> {
        self.shared.set_state(StreamsState::PendingShutdown);
        self.shared.shutdown.store(true, Ordering::Release);
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                self.shared.fail(Error::Topology("a stream thread panicked outside a task".into()));
            }
        }
        self.shared.stores.lock().unwrap_or_else(PoisonError::into_inner).clear();
        match self.shared.failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(e) => Err(e),
            None => {
                self.shared.set_state(StreamsState::NotRunning);
                Ok(())
            }
        }
    }

    /// The application's counters so far.
    pub fn metrics(&self) -> StreamsMetrics {
        let m = &self.shared.metrics;
        StreamsMetrics {
            records_processed: m.records_processed.load(Ordering::Relaxed),
            records_restored: m.records_restored.load(Ordering::Relaxed),
            records_skipped: m.records_skipped.load(Ordering::Relaxed),
            records_dropped: m.records_dropped.load(Ordering::Relaxed),
            records_standby: m.records_standby.load(Ordering::Relaxed),
            commits: m.commits.load(Ordering::Relaxed),
        }
    }

    /// A read-only view of a key-value store across this instance's tasks:
    /// the committed contents only (in exactly-once mode, nothing a
    /// transaction that may abort wrote).
    pub fn store<K, V>(&self, store: &KeyValueStoreRef<K, V>) -> QueryableKeyValueStore<K, V> {
        QueryableKeyValueStore { shared: Arc::clone(&self.shared), store: store.clone() }
    }

    /// A read-only view of a window store (a windowed aggregation's)
    /// across this instance's tasks, committed contents only.
    pub fn window_store<K, V>(&self, store: &WindowStoreRef<K, V>) -> QueryableWindowStore<K, V> {
        QueryableWindowStore { shared: Arc::clone(&self.shared), store: store.clone() }
    }

    /// A read-only view of a session store across this instance's tasks,
    /// committed contents only.
    pub fn session_store<K, V>(&self, store: &SessionStoreRef<K, V>) -> QueryableSessionStore<K, V> {
        QueryableSessionStore { shared: Arc::clone(&self.shared), store: store.clone() }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.close();
        }
    }
}

/// The instance's process id: read from `<state.dir>/<application.id>/process-id`,
/// created there on first start.
fn process_id(config: &StreamsConfig) -> Result<String> {
    let dir = config.state_dir.join(&config.application_id);
    let io = |e: std::io::Error| Error::Io { store: "process-id".into(), path: dir.clone(), source: e };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let path = dir.join("process-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = format!("{:016x}", rand_id());
            std::fs::write(&path, &id).map_err(io)?;
            Ok(id)
        }
    }
}

/// A random 64-bit id from the standard library's hasher seed (no extra dependency).
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}
