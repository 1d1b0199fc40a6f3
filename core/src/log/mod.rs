//! [`Log`]: a data directory of topics and partitions, open in one process.
//!
//! # Layout of a data directory
//!
//! ```text
//! <data-dir>/
//!   .lock                              flock'ed by the owning process; holds its pid
//!   meta.json                          topics, partition counts, config overrides
//!   recovery-point-offset-checkpoint   per partition: offset below which all is fsynced
//!   .plexus_cleanshutdown              present only while the log is closed cleanly
//!   <topic>-<partition>/               one directory per partition (see storage::partition_log)
//! ```
//!
//! # Durability and group commit
//!
//! [`Log::append`] writes the batch under the partition's lock, then — for
//! topics with durable acknowledgement, the default — hands the partition to
//! the flusher thread and waits until the high watermark passes the batch.
//! The flusher syncs each dirty partition once per round, so every append
//! that arrived while the previous fsync ran shares the next one. An fsync
//! error takes the whole data directory offline: every waiting and later
//! append fails, and nothing is retried.
//!
//! # Background work
//!
//! A maintenance thread writes the recovery-point checkpoint every
//! `log.flush.offset.checkpoint.interval.ms`, flushes topics with relaxed
//! `flush.ms`, applies retention every `log.retention.check.interval.ms` and
//! compacts `cleanup.policy=compact` topics every `log.cleaner.backoff.ms`.

mod lock;
mod metadata;
mod tasks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::watch;

use crate::config::{self, TopicConfig};
use crate::error::{Error, IoContext, Result};
use crate::record::{AbortedTransaction, ControlType};
use crate::storage::{AppendInfo, FileStorage, OpenOptions, PartitionLog, ReadResult, Storage, checkpoint};
use crate::types::{IsolationLevel, Offset, PartitionId, Timestamp, TopicPartition, now_ms};
use lock::DirLock;
use metadata::{Metadata, TopicMeta};

/// Name of the clean-shutdown marker file.
pub const CLEAN_SHUTDOWN_FILE: &str = ".plexus_cleanshutdown";

/// Settings of a [`Log`] (Kafka's broker-level keys where Kafka has one).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The file layer; `None` is the real file system (and the directory is
    /// locked against other processes).
    pub storage: Option<Arc<dyn Storage>>,
    /// `num.partitions`: partitions of automatically created topics.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`: create a topic on first produce or subscribe.
    pub auto_create_topics: bool,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`.
    pub offsets_topic_partitions: i32,
    /// `log.flush.offset.checkpoint.interval.ms`.
    pub checkpoint_interval: Duration,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval: Duration,
    /// `log.cleaner.backoff.ms`: pause between compaction passes.
    pub cleaner_backoff: Duration,
    /// Whether the background maintenance thread runs (tests drive it by hand).
    pub background_maintenance: bool,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how
    /// often transactions open past their timeout are looked for and aborted.
    pub transaction_abort_interval: Duration,
}

impl LogConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            storage: None,
            num_partitions: 1,
            auto_create_topics: true,
            offsets_topic_partitions: 1,
            checkpoint_interval: Duration::from_secs(1),
            retention_check_interval: Duration::from_secs(30),
            cleaner_backoff: Duration::from_secs(15),
            background_maintenance: true,
            transaction_abort_interval: Duration::from_secs(10),
        }
    }
}

/// A partition open in the log.
#[derive(Debug)]
pub(crate) struct Partition {
    tp: TopicPartition,
    log: Mutex<PartitionLog>,
    /// The high watermark, for waiting producers and long-polling consumers.
    hw: watch::Sender<Offset>,
    /// Set while the partition waits in the flusher's queue.
    flush_queued: AtomicBool,
}

impl Partition {
    pub(crate) fn lock(&self) -> MutexGuard<'_, PartitionLog> {
        // Poisoned only if a panic interrupted an update; the partition's
        // files are then recovered on the next open, as after a crash.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Topic {
    config: Arc<TopicConfig>,
    partitions: Vec<Arc<Partition>>,
}

/// What [`Log::describe_topic`] says of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDescription {
    /// The topic.
    pub name: String,
    /// Whether it is internal (`__consumer_offsets`).
    pub internal: bool,
    /// Its configuration.
    pub config: TopicConfig,
    /// Its partitions.
    pub partitions: Vec<PartitionDescription>,
}

/// Offsets and size of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition number.
    pub partition: PartitionId,
    /// First offset held.
    pub log_start_offset: Offset,
    /// What readers may read up to.
    pub high_watermark: Offset,
    /// Where the next append goes.
    pub log_end_offset: Offset,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Number of segments.
    pub segments: usize,
    /// Damage found, if any, as a sentence.
    pub corruption: Option<String>,
}

/// A fetch's answer.
#[derive(Debug, Clone)]
pub struct FetchResult {
    /// Whole batches from the offset asked for.
    pub records: ReadResult,
    /// The partition's high watermark.
    pub high_watermark: Offset,
    /// The partition's last stable offset.
    pub last_stable_offset: Offset,
    /// The partition's log start offset.
    pub log_start_offset: Offset,
    /// For a `read_committed` fetch, the aborted transactions overlapping
    /// the records returned, which the reader must skip
    /// ([`crate::record::decode_committed`]); `None` for `read_uncommitted`.
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    config: LogConfig,
    topics: RwLock<BTreeMap<String, Topic>>,
    /// Serialises changes to the topic set and `meta.json`.
    meta: Mutex<Metadata>,
    offline: AtomicBool,
    next_producer_id: AtomicI64,
    tasks: Arc<tasks::Tasks>,
    closed: AtomicBool,
    groups: crate::group::coordinator::GroupsState,
    txns: crate::txn::coordinator::TxnsState,
    /// Woken whenever a high watermark moves, for long-polling consumers.
    data: tokio::sync::Notify,
    /// Released by `close`, so the directory can be opened again at once.
    lock: Mutex<Option<DirLock>>,
}

impl Inner {
    /// Every open partition, internal topics included.
    pub(crate) fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics.values().flat_map(|t| t.partitions.iter().cloned()).collect()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// A data directory of topics, open in this process: the embedded log.
///
/// Cheap to clone; all clones share the same log. Call [`Log::close`] for a
/// clean shutdown (the next open then scans nothing); dropping the last
/// clone without it is handled like a crash.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use plexus_core::{Log, LogConfig, TopicPartition};
/// use plexus_core::record::{encode_batch, ProducerStamp, Record};
///
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(LogConfig::new(dir.path())).unwrap();
/// log.create_topic("greetings", 1, Default::default()).unwrap();
/// let batch = encode_batch(&[Record::new("hello")], ProducerStamp::NONE, 0);
/// let info = log.append(&TopicPartition::new("greetings", 0), batch).await.unwrap();
/// assert_eq!(info.base_offset, 0);
/// log.close().unwrap();
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

impl Log {
    /// Opens (creating if needed) a data directory: takes its lock, reads
    /// the metadata, recovers every partition and starts the background
    /// threads.
    pub fn open(config: LogConfig) -> Result<Self> {
        let dir = config.data_dir.clone();
        let (storage, lock) = match &config.storage {
            Some(storage) => {
                storage.create_dir_all(&dir).at(&dir)?;
                (Arc::clone(storage), None)
            }
            None => {
                let created = !dir.exists();
                std::fs::create_dir_all(&dir).at(&dir)?;
                if created {
                    // The new directory's own entry must be durable too.
                    let parent = crate::storage::io::parent(&dir);
                    FileStorage
                        .sync_dir(parent)
                        .map_err(|source| Error::FsyncFailed { path: parent.into(), source })?;
                }
                let lock = DirLock::acquire(&dir)?;
                (Arc::new(FileStorage) as Arc<dyn Storage>, Some(lock))
            }
        };
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = storage.exists(&marker);
        let recovery_points = checkpoint::read(&*storage, &dir.join(checkpoint::RECOVERY_POINT_FILE))?;
        let mut meta = Metadata::load(&*storage, &dir)?;
        remove_orphan_partitions(&*storage, &dir, &meta)?;

        let now = now_ms();
        let mut topics = BTreeMap::new();
        for (name, topic_meta) in &meta.topics {
            let config = Arc::new(TopicConfig::from_overrides(&topic_meta.config)?);
            let mut partitions = Vec::new();
            for p in 0..topic_meta.partitions {
                let tp = TopicPartition::new(name.clone(), p);
                let options =
                    OpenOptions { recovery_point: recovery_points.get(&tp).copied(), clean_shutdown, leader_epoch: 0 };
                let log = PartitionLog::open(
                    Arc::clone(&storage),
                    &partition_dir(&dir, &tp),
                    tp.clone(),
                    Arc::clone(&config),
                    options,
                    now,
                )?;
                partitions.push(new_partition(tp, log));
            }
            topics.insert(name.clone(), Topic { config, partitions });
        }
        if clean_shutdown {
            // From here on a crash must be recovered from.
            storage.remove_file(&marker).at(&marker)?;
            storage.sync_dir(&dir).map_err(|source| Error::FsyncFailed { path: dir.clone(), source })?;
        }
        // Reserve a block of producer ids, durably, before handing any out.
        let first_producer_id = meta.producer_id_block_end;
        meta.producer_id_block_end = first_producer_id + PRODUCER_ID_BLOCK;
        meta.store(&*storage, &dir)?;

        let inner = Arc::new(Inner {
            dir,
            storage,
            config: config.clone(),
            topics: RwLock::new(topics),
            meta: Mutex::new(meta),
            offline: AtomicBool::new(false),
            next_producer_id: AtomicI64::new(first_producer_id),
            tasks: Arc::default(),
            closed: AtomicBool::new(false),
            groups: crate::group::coordinator::GroupsState::default(),
            txns: crate::txn::coordinator::TxnsState::default(),
            data: tokio::sync::Notify::new(),
            lock: Mutex::new(lock),
        });
        let log = Self { inner };
        log.write_recovery_checkpoint()?;
        tasks::start(&log.inner);
        if !log.topic_exists(config::CONSUMER_OFFSETS_TOPIC) {
            let offsets_config = TopicConfig {
                cleanup_policy: config::CleanupPolicy { delete: false, compact: true },
                ..TopicConfig::default()
            };
            log.create_topic_inner(config::CONSUMER_OFFSETS_TOPIC, config.offsets_topic_partitions, offsets_config)?;
        }
        log.inner.groups.load(&log)?;
        log.inner.txns.load(&log)?;
        Ok(log)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub(crate) fn groups_state(&self) -> &crate::group::coordinator::GroupsState {
        &self.inner.groups
    }

    pub(crate) fn txns_state(&self) -> &crate::txn::coordinator::TxnsState {
        &self.inner.txns
    }

    /// The transaction coordinator.
    pub fn transaction_coordinator(&self) -> crate::txn::TransactionCoordinator {
        crate::txn::TransactionCoordinator::new(self.clone())
    }

    /// Creates an internal topic (compacted, `offsets.topic.num.partitions`
    /// partitions) unless it exists.
    pub(crate) fn ensure_internal_topic(&self, name: &str) -> Result<()> {
        if self.topic_exists(name) {
            return Ok(());
        }
        let config = TopicConfig {
            cleanup_policy: config::CleanupPolicy { delete: false, compact: true },
            ..TopicConfig::default()
        };
        match self.create_topic_inner(name, self.inner.config.offsets_topic_partitions, config) {
            Err(Error::TopicExists(_)) => Ok(()),
            other => other,
        }
    }

    /// The group coordinator: consumer groups and committed offsets.
    pub fn group_coordinator(&self) -> crate::group::GroupCoordinator {
        crate::group::GroupCoordinator::new(self.clone())
    }

    fn topics(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Topic>> {
        self.inner.topics.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_online(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.inner.offline.load(Ordering::Acquire) {
            return Err(Error::Offline { dir: self.inner.dir.clone() });
        }
        Ok(())
    }

    /// Whether a topic exists.
    pub fn topic_exists(&self, name: &str) -> bool {
        self.topics().contains_key(name)
    }

    /// Creates a topic. The name is validated as Kafka does; names starting
    /// with `__` are reserved for internal topics.
    pub fn create_topic(&self, name: &str, partitions: i32, config: TopicConfig) -> Result<()> {
        config::validate_topic_name(name)?;
        if config::is_internal_topic(name) {
            return Err(Error::InvalidState(format!("topic {name:?} is internal and created by the log itself")));
        }
        self.create_topic_inner(name, partitions, config)
    }

    fn create_topic_inner(&self, name: &str, partitions: i32, config: TopicConfig) -> Result<()> {
        self.check_online()?;
        if partitions < 1 {
            return Err(Error::InvalidPartitions {
                topic: name.into(),
                reason: format!("{partitions} partitions; a topic needs at least 1"),
            });
        }
        config.validate()?;
        let mut meta = self.inner.meta.lock().unwrap_or_else(PoisonError::into_inner);
        if meta.topics.contains_key(name) {
            return Err(Error::TopicExists(name.into()));
        }
        if let Some(other) = meta.topics.keys().find(|t| config::collides_with(t, name)) {
            return Err(Error::InvalidState(format!(
                "topic {name:?} collides with existing topic {other:?}: '.' and '_' are the same in metric names; choose another name"
            )));
        }
        let config = Arc::new(config);
        let mut new_meta = meta.clone();
        new_meta.topics.insert(name.into(), TopicMeta { partitions, config: config.overrides() });
        new_meta.store(&*self.inner.storage, &self.inner.dir)?;
        *meta = new_meta;
        let parts = (0..partitions).map(|p| self.open_new_partition(name, p, &config)).collect::<Result<Vec<_>>>()?;
        self.inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.into(), Topic { config, partitions: parts });
        tracing::info!(topic = name, partitions, "created topic");
        Ok(())
    }

    fn open_new_partition(&self, topic: &str, p: PartitionId, config: &Arc<TopicConfig>) -> Result<Arc<Partition>> {
        let tp = TopicPartition::new(topic, p);
        let options = OpenOptions { recovery_point: Some(0), clean_shutdown: false, leader_epoch: 0 };
        let dir = partition_dir(&self.inner.dir, &tp);
        let log = PartitionLog::open(
            Arc::clone(&self.inner.storage),
            &dir,
            tp.clone(),
            Arc::clone(config),
            options,
            now_ms(),
        )?;
        Ok(new_partition(tp, log))
    }

    /// Creates the topic with the default partition count if it is missing
    /// and `auto.create.topics.enable` is on.
    pub fn ensure_topic(&self, name: &str) -> Result<()> {
        if self.topic_exists(name) {
            return Ok(());
        }
        if !self.inner.config.auto_create_topics {
            return Err(Error::UnknownTopic(name.into()));
        }
        match self.create_topic(name, self.inner.config.num_partitions, TopicConfig::default()) {
            Err(Error::TopicExists(_)) => Ok(()),
            other => other,
        }
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_online()?;
        if config::is_internal_topic(name) {
            return Err(Error::InvalidState(format!("topic {name:?} is internal and cannot be deleted")));
        }
        let mut meta = self.inner.meta.lock().unwrap_or_else(PoisonError::into_inner);
        if !meta.topics.contains_key(name) {
            return Err(Error::UnknownTopic(name.into()));
        }
        let mut new_meta = meta.clone();
        new_meta.topics.remove(name);
        new_meta.store(&*self.inner.storage, &self.inner.dir)?;
        *meta = new_meta;
        let topic = self.inner.topics.write().unwrap_or_else(PoisonError::into_inner).remove(name);
        if let Some(topic) = topic {
            for partition in &topic.partitions {
                let dir = partition.lock().dir().to_path_buf();
                self.inner.storage.remove_dir_all(&dir).at(&dir)?;
            }
        }
        self.inner
            .storage
            .sync_dir(&self.inner.dir)
            .map_err(|source| Error::FsyncFailed { path: self.inner.dir.clone(), source })?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `total` partitions. Partitions never shrink: that
    /// would lose data and move keys.
    pub fn create_partitions(&self, name: &str, total: i32) -> Result<()> {
        self.check_online()?;
        let mut meta = self.inner.meta.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(current) = meta.topics.get(name).map(|t| t.partitions) else {
            return Err(Error::UnknownTopic(name.into()));
        };
        if total <= current {
            return Err(Error::InvalidPartitions {
                topic: name.into(),
                reason: format!("it has {current} partitions and can only grow; asked for {total}"),
            });
        }
        let mut new_meta = meta.clone();
        if let Some(t) = new_meta.topics.get_mut(name) {
            t.partitions = total;
        }
        new_meta.store(&*self.inner.storage, &self.inner.dir)?;
        *meta = new_meta;
        let mut topics = self.inner.topics.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(topic) = topics.get_mut(name) {
            for p in current..total {
                let partition = self.open_new_partition(name, p, &topic.config)?;
                topic.partitions.push(partition);
            }
        }
        tracing::info!(topic = name, from = current, to = total, "added partitions");
        Ok(())
    }

    /// Changes topic configuration keys (`set`: key → value; `delete`: keys
    /// back to their defaults). Validated whole before anything changes.
    pub fn alter_topic_config(&self, name: &str, set: &[(String, String)], delete: &[String]) -> Result<TopicConfig> {
        self.check_online()?;
        let mut meta = self.inner.meta.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(topic_meta) = meta.topics.get(name) else { return Err(Error::UnknownTopic(name.into())) };
        let mut overrides = topic_meta.config.clone();
        let defaults = TopicConfig::default();
        for key in delete {
            if defaults.get(key).is_none() {
                // `set` produces the error that names the key and suggests one.
                TopicConfig::default().set(key, "")?;
            }
            overrides.remove(key);
        }
        for (k, v) in set {
            overrides.insert(k.clone(), v.clone());
        }
        let config = TopicConfig::from_overrides(&overrides)?;
        if config::is_internal_topic(name) && !config.cleanup_policy.compact {
            return Err(Error::InvalidState(format!("internal topic {name:?} must stay compacted")));
        }
        let mut new_meta = meta.clone();
        if let Some(t) = new_meta.topics.get_mut(name) {
            t.config = config.overrides();
        }
        new_meta.store(&*self.inner.storage, &self.inner.dir)?;
        *meta = new_meta;
        let shared = Arc::new(config.clone());
        let mut topics = self.inner.topics.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(topic) = topics.get_mut(name) {
            topic.config = Arc::clone(&shared);
            for p in &topic.partitions {
                p.lock().set_config(Arc::clone(&shared));
            }
        }
        Ok(config)
    }

    /// Names of all topics, internal ones included.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics().keys().cloned().collect()
    }

    /// Partition count of a topic.
    pub fn partition_count(&self, name: &str) -> Result<i32> {
        let topics = self.topics();
        let topic = topics.get(name).ok_or_else(|| Error::UnknownTopic(name.into()))?;
        Ok(i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX))
    }

    /// A topic's configuration.
    pub fn topic_config(&self, name: &str) -> Result<Arc<TopicConfig>> {
        let topics = self.topics();
        Ok(Arc::clone(&topics.get(name).ok_or_else(|| Error::UnknownTopic(name.into()))?.config))
    }

    /// Describes a topic: configuration and per-partition offsets.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let (config, partitions) = {
            let topics = self.topics();
            let topic = topics.get(name).ok_or_else(|| Error::UnknownTopic(name.into()))?;
            (TopicConfig::clone(&topic.config), topic.partitions.clone())
        };
        let partitions = partitions
            .iter()
            .map(|p| {
                let log = p.lock();
                PartitionDescription {
                    partition: p.tp.partition,
                    log_start_offset: log.log_start_offset(),
                    high_watermark: log.high_watermark(),
                    log_end_offset: log.log_end_offset(),
                    size_bytes: log.size_bytes(),
                    segments: log.segment_count(),
                    corruption: log.corruption().map(|c| {
                        format!(
                            "{} at byte {}: {} (offsets from {} not served)",
                            c.path.display(),
                            c.position,
                            c.reason,
                            c.offset
                        )
                    }),
                }
            })
            .collect();
        Ok(TopicDescription { name: name.into(), internal: config::is_internal_topic(name), config, partitions })
    }

    pub(crate) fn partition(&self, tp: &TopicPartition) -> Result<Arc<Partition>> {
        let topics = self.topics();
        let topic = topics.get(&tp.topic).ok_or_else(|| Error::UnknownTopic(tp.topic.clone()))?;
        usize::try_from(tp.partition).ok().and_then(|p| topic.partitions.get(p)).cloned().ok_or_else(|| {
            Error::UnknownPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                count: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
            }
        })
    }

    pub(crate) fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.inner.all_partitions()
    }

    /// Appends whole batches to a partition and returns once they are
    /// acknowledged: fsynced for topics with durable acknowledgement (the
    /// default), written otherwise.
    pub async fn append(&self, tp: &TopicPartition, batch: BytesMut) -> Result<AppendInfo> {
        let (info, acknowledged) = self.append_pipelined(tp, batch)?;
        acknowledged.await?;
        Ok(info)
    }

    /// Appends now (so appends keep the order of the calls) and returns a
    /// future that resolves once the append is acknowledged, so a producer
    /// can have several appends in flight.
    pub(crate) fn append_pipelined(
        &self,
        tp: &TopicPartition,
        batch: BytesMut,
    ) -> Result<(AppendInfo, impl std::future::Future<Output = Result<()>> + Send + 'static)> {
        let (info, partition) = self.append_nowait(tp, batch)?;
        let log = self.clone();
        let upto = info.last_offset + 1;
        Ok((info, async move {
            if upto > *partition.hw.borrow() {
                log.wait_durable(&partition, upto).await?;
            }
            Ok(())
        }))
    }

    /// Woken whenever any partition's high watermark moves.
    pub(crate) fn data_notify(&self) -> &tokio::sync::Notify {
        &self.inner.data
    }

    /// Appends without waiting for the fsync; [`Log::append`] waits.
    fn append_nowait(&self, tp: &TopicPartition, mut batch: BytesMut) -> Result<(AppendInfo, Arc<Partition>)> {
        self.check_online()?;
        let partition = self.partition(tp)?;
        let (info, flush_now, hw) = {
            let mut log = partition.lock();
            let info = self.offline_on_fsync_failure(log.append(&mut batch, now_ms()))?;
            let config = log.config();
            let flush_now = config.durable_ack() || log.unflushed_records() >= config.flush_messages;
            (info, flush_now, log.high_watermark())
        };
        if partition.hw.send_if_modified(|old| std::mem::replace(old, hw) != hw) {
            self.inner.data.notify_waiters();
        }
        if flush_now || info.last_offset >= hw {
            self.inner.tasks.request_flush(&partition);
        }
        Ok((info, partition))
    }

    /// A failed fsync takes the whole data directory offline (it only wakes
    /// waiters, so it may run under a partition's lock).
    fn offline_on_fsync_failure<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e @ Error::FsyncFailed { .. }) = &result {
            tasks::go_offline(&self.inner, e);
        }
        result
    }

    async fn wait_durable(&self, partition: &Partition, upto: Offset) -> Result<()> {
        let mut rx = partition.hw.subscribe();
        loop {
            if *rx.borrow_and_update() >= upto {
                return Ok(());
            }
            self.check_online()?;
            if rx.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    /// Reads whole batches from `offset`, up to the high watermark
    /// (`read_uncommitted`).
    pub fn fetch(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<FetchResult> {
        self.fetch_with(tp, offset, max_bytes, IsolationLevel::ReadUncommitted)
    }

    /// Reads whole batches from `offset`: up to the high watermark, or for
    /// `read_committed` up to the last stable offset, with the aborted
    /// transactions the reader must skip.
    pub fn fetch_with(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<FetchResult> {
        self.check_online()?;
        let partition = self.partition(tp)?;
        let (plan, high_watermark, last_stable_offset, log_start_offset, aborted_transactions) = {
            let log = partition.lock();
            let lso = log.last_stable_offset();
            let (limit, aborted) = match isolation {
                IsolationLevel::ReadUncommitted => (log.high_watermark(), None),
                IsolationLevel::ReadCommitted => (lso, Some(log.aborted_transactions(offset, lso))),
            };
            (log.plan_read_upto(offset, limit)?, log.high_watermark(), lso, log.log_start_offset(), aborted)
        };
        let records = plan.read(max_bytes)?;
        Ok(FetchResult { records, high_watermark, last_stable_offset, log_start_offset, aborted_transactions })
    }

    /// Appends and returns once the append is durable, syncing on the
    /// calling thread: for the coordinators' writes to internal topics,
    /// which run outside any async runtime.
    pub(crate) fn append_blocking(&self, tp: &TopicPartition, batch: BytesMut) -> Result<AppendInfo> {
        let (info, partition) = self.append_nowait(tp, batch)?;
        self.flush_blocking(&partition, info.last_offset + 1)?;
        Ok(info)
    }

    /// Writes a transaction marker into a partition and returns once it is
    /// durable (see [`PartitionLog::append_marker`]).
    pub(crate) fn append_marker_blocking(
        &self,
        tp: &TopicPartition,
        kind: ControlType,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<AppendInfo> {
        self.check_online()?;
        let partition = self.partition(tp)?;
        let (info, hw) = {
            let mut log = partition.lock();
            let info =
                self.offline_on_fsync_failure(log.append_marker(kind, producer_id, producer_epoch, 0, now_ms()))?;
            (info, log.high_watermark())
        };
        if partition.hw.send_if_modified(|old| std::mem::replace(old, hw) != hw) {
            self.inner.data.notify_waiters();
        }
        self.flush_blocking(&partition, info.last_offset + 1)?;
        Ok(info)
    }

    fn flush_blocking(&self, partition: &Arc<Partition>, upto: Offset) -> Result<()> {
        if *partition.hw.borrow() < upto {
            tasks::flush_partition(&self.inner, partition);
        }
        self.check_online()
    }

    /// Whether a producer has a transaction open in a partition.
    pub fn has_open_transaction(&self, tp: &TopicPartition, producer_id: i64) -> Result<bool> {
        Ok(self.partition(tp)?.lock().has_open_transaction(producer_id))
    }

    /// Waits until the high watermark passes `offset`, or `timeout` passes.
    /// Returns whether there is data.
    pub async fn wait_for_data(&self, tp: &TopicPartition, offset: Offset, timeout: Duration) -> Result<bool> {
        let partition = self.partition(tp)?;
        let mut rx = partition.hw.subscribe();
        let wait = rx.wait_for(|hw| *hw > offset);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Ok(false),
        }
    }

    /// A watch on a partition's high watermark.
    pub fn watch_high_watermark(&self, tp: &TopicPartition) -> Result<watch::Receiver<Offset>> {
        Ok(self.partition(tp)?.hw.subscribe())
    }

    /// The last stable offset of a partition: where `read_committed` reads stop.
    pub fn last_stable_offset(&self, tp: &TopicPartition) -> Result<Offset> {
        Ok(self.partition(tp)?.lock().last_stable_offset())
    }

    /// `(log start offset, high watermark, log end offset)` of a partition.
    pub fn offsets(&self, tp: &TopicPartition) -> Result<(Offset, Offset, Offset)> {
        let partition = self.partition(tp)?;
        let log = partition.lock();
        Ok((log.log_start_offset(), log.high_watermark(), log.log_end_offset()))
    }

    /// The first offset with a timestamp at or after `ts`, or `None` if all
    /// records are older.
    pub fn offset_for_timestamp(&self, tp: &TopicPartition, ts: Timestamp) -> Result<Option<Offset>> {
        let partition = self.partition(tp)?;
        let log = partition.lock();
        log.offset_for_timestamp(ts)
    }

    /// Hands out a new producer id.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        let id = self.inner.next_producer_id.fetch_add(1, Ordering::AcqRel);
        let mut meta = self.inner.meta.lock().unwrap_or_else(PoisonError::into_inner);
        if id >= meta.producer_id_block_end {
            let mut new_meta = meta.clone();
            new_meta.producer_id_block_end = id + PRODUCER_ID_BLOCK;
            new_meta.store(&*self.inner.storage, &self.inner.dir)?;
            *meta = new_meta;
        }
        Ok(id)
    }

    /// Runs retention on every partition now. Returns segments deleted.
    pub fn run_retention(&self) -> Result<usize> {
        tasks::run_retention(&self.inner)
    }

    /// Runs one compaction pass on every compacted partition now.
    pub fn run_cleaner(&self) -> Result<crate::storage::cleaner::CleanStats> {
        tasks::run_cleaner(&self.inner)
    }

    /// Writes the recovery-point checkpoint now.
    pub fn write_recovery_checkpoint(&self) -> Result<()> {
        tasks::write_checkpoint(&self.inner)
    }

    /// Shuts down cleanly: stops the background threads, syncs every
    /// partition, writes the checkpoint and the clean-shutdown marker. The
    /// next open then scans nothing.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        tasks::stop(&self.inner);
        if self.inner.offline.load(Ordering::Acquire) {
            return Err(Error::Offline { dir: self.inner.dir.clone() });
        }
        let now = now_ms();
        for p in self.all_partitions() {
            let mut log = p.lock();
            log.close(now)?;
            let hw = log.high_watermark();
            p.hw.send_replace(hw);
        }
        tasks::write_checkpoint(&self.inner)?;
        let marker = self.inner.dir.join(CLEAN_SHUTDOWN_FILE);
        self.inner.storage.write_atomic(&marker, b"").at(&marker)?;
        self.inner.lock.lock().unwrap_or_else(PoisonError::into_inner).take();
        tracing::info!(dir = %self.inner.dir.display(), "log closed cleanly");
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        tasks::stop(self);
    }
}

/// Producer ids are reserved in blocks, so `meta.json` is written once per block.
const PRODUCER_ID_BLOCK: i64 = 1000;

fn new_partition(tp: TopicPartition, log: PartitionLog) -> Arc<Partition> {
    let hw = log.high_watermark();
    Arc::new(Partition { tp, log: Mutex::new(log), hw: watch::Sender::new(hw), flush_queued: AtomicBool::new(false) })
}

/// `<data-dir>/<topic>-<partition>`.
pub(crate) fn partition_dir(dir: &Path, tp: &TopicPartition) -> PathBuf {
    dir.join(format!("{}-{}", tp.topic, tp.partition))
}

/// Removes partition directories that the metadata does not name: left by a
/// crash in the middle of deleting a topic.
fn remove_orphan_partitions(storage: &dyn Storage, dir: &Path, meta: &Metadata) -> Result<()> {
    let mut removed = false;
    for name in storage.list_dir(dir).at(dir)? {
        let Some((topic, partition)) = name.rsplit_once('-') else { continue };
        let Ok(partition) = partition.parse::<i32>() else { continue };
        if config::validate_topic_name(topic).is_err() {
            continue;
        }
        let known = meta.topics.get(topic).is_some_and(|t| partition < t.partitions);
        if !known {
            let path = dir.join(&name);
            tracing::warn!(path = %path.display(), "removing a partition directory of a deleted topic");
            storage.remove_dir_all(&path).at(&path)?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(dir).map_err(|source| Error::FsyncFailed { path: dir.into(), source })?;
    }
    Ok(())
}
