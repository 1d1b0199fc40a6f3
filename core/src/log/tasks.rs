//! The log's background threads: the flusher (group commit) and the
//! maintenance thread (checkpoints, relaxed flushes, retention, compaction).
//!
//! Both hold only a weak reference to the log, so dropping the last [`Log`]
//! handle ends them; [`stop`] ends and joins them for a clean shutdown.
//!
//! [`Log`]: super::Log

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Inner, Partition};
use crate::error::Result;
use crate::storage::checkpoint;
use crate::storage::cleaner::{self, CleanStats};
use crate::types::now_ms;

#[derive(Debug, Default)]
struct State {
    queue: Vec<Arc<Partition>>,
    stop: bool,
}

/// The flush queue and the threads' handles.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    state: Mutex<State>,
    wake_flusher: Condvar,
    wake_maintenance: Condvar,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Tasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a partition for the next flush round (once, however many
    /// appends ask before the round starts).
    pub(super) fn request_flush(&self, partition: &Arc<Partition>) {
        if !partition.flush_queued.swap(true, Ordering::AcqRel) {
            self.lock().queue.push(Arc::clone(partition));
            self.wake_flusher.notify_one();
        }
    }
}

/// Starts the flusher and, if configured, the maintenance thread. They
/// hold the log weakly and wait on [`Tasks`] alone, so that dropping the
/// last handle drops the log (and releases the directory lock) at once.
pub(super) fn start(inner: &Arc<Inner>) {
    let mut handles = inner.tasks.handles.lock().unwrap_or_else(PoisonError::into_inner);
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| std::thread::Builder::new().name(name.into()).spawn(f);
    let (weak, tasks) = (Arc::downgrade(inner), Arc::clone(&inner.tasks));
    match spawn("plexus-flusher", Box::new(move || flusher(&weak, &tasks))) {
        Ok(h) => handles.push(h),
        Err(e) => tracing::error!(%e, "cannot start the flusher thread"),
    }
    if inner.config.background_maintenance {
        let (weak, tasks) = (Arc::downgrade(inner), Arc::clone(&inner.tasks));
        match spawn("plexus-maintenance", Box::new(move || maintenance(&weak, &tasks))) {
            Ok(h) => handles.push(h),
            Err(e) => tracing::error!(%e, "cannot start the maintenance thread"),
        }
    }
}

/// Stops the threads; joins them unless called from one of them.
pub(super) fn stop(inner: &Inner) {
    inner.tasks.lock().stop = true;
    inner.tasks.wake_flusher.notify_all();
    inner.tasks.wake_maintenance.notify_all();
    let handles = std::mem::take(&mut *inner.tasks.handles.lock().unwrap_or_else(PoisonError::into_inner));
    let me = std::thread::current().id();
    for h in handles {
        if h.thread().id() != me {
            let _ = h.join();
        }
    }
}

fn flusher(weak: &Weak<Inner>, tasks: &Tasks) {
    loop {
        let round = {
            let mut state = tasks.lock();
            while state.queue.is_empty() && !state.stop {
                state = tasks.wake_flusher.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.queue.is_empty() && state.stop {
                return;
            }
            std::mem::take(&mut state.queue)
        };
        let Some(inner) = weak.upgrade() else { return };
        for partition in round {
            partition.flush_queued.store(false, Ordering::Release);
            if inner.offline.load(Ordering::Acquire) {
                break;
            }
            flush_partition(&inner, &partition);
        }
    }
}

/// Runs one partition's flush job outside its lock, then publishes the new
/// high watermark. An error takes the data directory offline.
pub(super) fn flush_partition(inner: &Inner, partition: &Partition) {
    let Some(job) = partition.lock().begin_flush() else { return };
    match job.run(&*inner.storage) {
        Ok(()) => {
            let hw = partition.lock().complete_flush(job.upto(), now_ms());
            partition.hw.send_replace(hw);
            inner.data.notify_waiters();
        }
        Err(e) => go_offline(inner, &e),
    }
}

pub(super) fn go_offline(inner: &Inner, error: &crate::Error) {
    tracing::error!(%error, dir = %inner.dir.display(), "fatal I/O error, taking the data directory offline");
    inner.offline.store(true, Ordering::Release);
    for p in inner.all_partitions() {
        p.hw.send_modify(|_| {}); // wake every waiter so it sees the error
    }
}

fn maintenance(weak: &Weak<Inner>, tasks: &Tasks) {
    let Some(config) = weak.upgrade().map(|i| i.config.clone()) else { return };
    let tick = Duration::from_millis(100);
    let mut last_checkpoint = Instant::now();
    let mut last_retention = Instant::now();
    let mut last_clean = Instant::now();
    let mut last_txn_check = Instant::now();
    loop {
        {
            let state = tasks.lock();
            if state.stop {
                return;
            }
            let (state, _) = tasks.wake_maintenance.wait_timeout(state, tick).unwrap_or_else(PoisonError::into_inner);
            if state.stop {
                return;
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.offline.load(Ordering::Acquire) {
            continue;
        }
        let result = (|| -> Result<()> {
            flush_relaxed(&inner);
            if last_checkpoint.elapsed() >= config.checkpoint_interval {
                last_checkpoint = Instant::now();
                write_checkpoint(&inner)?;
            }
            if last_retention.elapsed() >= config.retention_check_interval {
                last_retention = Instant::now();
                run_retention(&inner)?;
            }
            if last_clean.elapsed() >= config.cleaner_backoff {
                last_clean = Instant::now();
                run_cleaner(&inner)?;
            }
            if last_txn_check.elapsed() >= config.transaction_abort_interval {
                last_txn_check = Instant::now();
                super::Log { inner: Arc::clone(&inner) }.transaction_coordinator().abort_expired()?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            match e {
                crate::Error::FsyncFailed { .. } => go_offline(&inner, &e),
                e => tracing::error!(error = %e, "background maintenance failed"),
            }
        }
    }
}

/// Flushes partitions of topics with relaxed durability whose `flush.ms` passed.
fn flush_relaxed(inner: &Arc<Inner>) {
    let now = now_ms();
    for p in inner.all_partitions() {
        let due = {
            let log = p.lock();
            let config = log.config();
            !config.durable_ack()
                && log.unflushed_records() > 0
                && config.flush_ms < i64::MAX
                && now - log.last_flush() >= config.flush_ms
        };
        if due {
            inner.tasks.request_flush(&p);
        }
    }
}

/// Writes every partition's recovery point.
pub(super) fn write_checkpoint(inner: &Inner) -> Result<()> {
    let points: BTreeMap<_, _> =
        inner.all_partitions().iter().map(|p| (p.tp.clone(), p.lock().recovery_point())).collect();
    checkpoint::write(&*inner.storage, &inner.dir.join(checkpoint::RECOVERY_POINT_FILE), &points)
}

/// Applies retention to every partition.
pub(super) fn run_retention(inner: &Inner) -> Result<usize> {
    let now = now_ms();
    let mut deleted = 0;
    for p in inner.all_partitions() {
        deleted += p.lock().apply_retention(now)?;
    }
    Ok(deleted)
}

/// Compacts every compacted partition that is dirty enough.
pub(super) fn run_cleaner(inner: &Inner) -> Result<CleanStats> {
    let now = now_ms();
    let mut total = CleanStats::default();
    for p in inner.all_partitions() {
        let stats = cleaner::clean_partition(&p.log, now)?;
        total.segments_cleaned += stats.segments_cleaned;
        total.records_read += stats.records_read;
        total.records_removed += stats.records_removed;
    }
    Ok(total)
}
