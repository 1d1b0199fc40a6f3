//! The log of one partition: its segments, offsets, recovery, retention.
//!
//! # On disk
//!
//! A directory `<topic>-<partition>/` holding segments, each three files
//! named by the segment's base offset in 20 digits: `.log` (batches),
//! `.index` and `.timeindex` (see [`super::index`]). Leftovers of an
//! interrupted operation (`.cleaned`, `.swap`, `.tmp`) are resolved on open.
//!
//! # Offsets
//!
//! `log_start_offset ≤ high_watermark ≤ log_end_offset`. The log end offset
//! (LEO) is where the next append goes; the high watermark (HW) is what
//! readers may see: with durable acknowledgement (`flush.messages=1`, the
//! default) it moves when an fsync covers the data, otherwise at append. A
//! replicated log will move it when the in-sync replicas have the data;
//! every batch already carries the leader epoch it was written in.
//!
//! # Recovery
//!
//! As Kafka's log loader: after a clean shutdown nothing is scanned but the
//! tail of the last segment after its last index entry. After a crash, the
//! segments from the one holding the recovery point (the checkpointed
//! offset below which everything was fsynced) are scanned batch by batch —
//! length bounds, CRC, increasing offsets — and their indexes rebuilt. An
//! invalid batch at or past the recovery point is a torn write and is cut
//! off with everything after it; one below the recovery point is damage to
//! acknowledged data: the partition keeps every byte, reports the file and
//! position, and refuses to serve or append past it.
//!
//! The cleaner never rewrites the active segment, so recovery requires its
//! offsets to be contiguous, and no batch to reach into the next segment:
//! anything else means a damaged base offset. When a torn tail is cut out
//! of an earlier segment (one the cleaner may have left with gaps), a new
//! active segment is rolled at the cut.
//!
//! # Transactions
//!
//! Batches carry their producer's id, epoch and sequence; the producer
//! table (`producer_state`) de-duplicates retries, fences older epochs and
//! tracks open transactions. [`PartitionLog::append_marker`] writes a
//! commit or abort marker (a control batch); aborts are recorded in the
//! transaction index (`txn_index`). The last stable offset (LSO) is the
//! first offset of the oldest open transaction, or the high watermark:
//! `read_committed` readers read up to it and skip the aborted ranges.
//! The producer table is snapshotted when a segment rolls and on close, and
//! rebuilt on open from the newest snapshot plus the batches after it.
//!
//! # Reads
//!
//! A read finds its batch by walking the batch headers from an offset-index
//! entry, checking each one against the one before (magic byte, offsets
//! that increase, a batch that ends in the file). It verifies the CRC of
//! every batch it returns, and of the batch before a gap it skips (a damaged
//! last offset delta would make a batch seem to end early); it checks that
//! offsets increase, stay below the next segment's base and end before the
//! base offset of the batch after the last one returned.
//!
//! One damage goes unseen, a limitation of Kafka's format, which leaves the
//! base offset outside the CRC: a base offset changed so that its batch's
//! offsets still lie between its neighbours' (only a gap that compaction
//! left makes room for that) looks like a compacted batch, and the batch is
//! served at the wrong offsets. Offset-index entries cannot catch it: they
//! are rebuilt from the log on recovery and after compaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::io::{FileRef, Storage};
use super::producer_state::{ProducerTable, SequenceCheck};
use super::segment::{BatchMeta, INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX};
use super::txn_index::{TXN_INDEX_SUFFIX, TxnIndex};
use crate::config::TopicConfig;
use crate::error::{Error, IoContext, Result};
use crate::record::batch::{self, BatchView, iter_batches};
use crate::types::{LeaderEpoch, Offset, Timestamp, TopicPartition};

mod transactions;

/// Where a partition's damage was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position of the bad batch.
    pub position: u64,
    /// The first offset not served.
    pub offset: Offset,
    /// What check failed.
    pub reason: String,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: Offset,
    /// Offset of the last record appended.
    pub last_offset: Offset,
    /// The time the log stamped, for topics with `LogAppendTime`.
    pub log_append_time: Option<Timestamp>,
    /// Records in the append.
    pub records: i64,
    /// Whether the batch was a retried duplicate (nothing was written).
    pub duplicate: bool,
}

/// The files an fsync must cover to make the log durable up to `upto`.
/// Taken under the partition lock, run outside it, then completed under it,
/// so appends go on while the disk syncs.
#[derive(Debug)]
pub struct FlushJob {
    upto: Offset,
    active: (PathBuf, FileRef),
    dir: Option<PathBuf>,
}

impl FlushJob {
    /// The offset the log is durable up to once the job ran.
    pub fn upto(&self) -> Offset {
        self.upto
    }

    /// Syncs the files. An error is fatal for the data directory.
    pub fn run(&self, storage: &dyn Storage) -> Result<()> {
        let (path, file) = &self.active;
        file.sync().map_err(|source| Error::FsyncFailed { path: path.clone(), source })?;
        if let Some(dir) = &self.dir {
            storage.sync_dir(dir).map_err(|source| Error::FsyncFailed { path: dir.clone(), source })?;
        }
        Ok(())
    }
}

/// The segments and limits a read needs, taken under the partition lock
/// and read outside it.
#[derive(Debug)]
pub struct ReadPlan {
    tp: TopicPartition,
    segments: Vec<Arc<Segment>>,
    offset: Offset,
    limit: Offset,
    log_end: Offset,
}

/// What a read returns.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, the first holding (or following) the offset asked for.
    pub bytes: Bytes,
    /// The offset after the last returned batch, or the offset asked for.
    pub next_offset: Offset,
}

impl ReadPlan {
    /// Reads batches until `max_bytes` (at least one whole batch when any is
    /// there), verifying each batch read: its CRC, and offsets that increase,
    /// stay below the next segment's base offset and end before the base
    /// offset of the batch after the last one returned.
    pub fn read(&self, max_bytes: usize) -> Result<ReadResult> {
        for (k, segment) in self.segments.iter().enumerate() {
            // Past the first segment, the offsets asked for were compacted
            // away: the read goes on at this segment's base, if that is below
            // the limit (which may be a corruption found at that base).
            let from = self.offset.max(segment.base_offset());
            if from >= self.limit {
                break;
            }
            let bound = self.segments.get(k + 1).map_or(self.log_end, |s| s.base_offset());
            if let Some(result) = self.read_segment(segment, from, bound, max_bytes)? {
                return Ok(result);
            }
        }
        Ok(ReadResult { bytes: Bytes::new(), next_offset: self.offset })
    }

    /// Reads `segment` from the batch holding `from` or the first after it;
    /// `None` if no batch there reaches `from`. `bound` is the next
    /// segment's base offset (or the log end).
    fn read_segment(
        &self,
        segment: &Segment,
        from: Offset,
        bound: Offset,
        max_bytes: usize,
    ) -> Result<Option<ReadResult>> {
        let end = segment.size();
        let Some(start) = segment.find_position(from, end)? else { return Ok(None) };
        let want = (max_bytes as u64).max(batch::HEADER_LEN as u64);
        let to = end.min(start.position + start.skip + start.size.max(want));
        let bytes = segment.read(start.position, to)?;
        let corrupt = |at: usize, offset: Offset, reason: String| Error::Corrupt {
            tp: self.tp.clone(),
            path: segment.path(LOG_SUFFIX),
            position: start.position + at as u64,
            offset,
            reason,
        };
        // The batches read end at `at`; those returned start at `first`.
        let (mut first, mut at) = (0, 0);
        let (mut expected, mut next) = (start.min_base, self.offset);
        for view in iter_batches(&bytes) {
            if next >= self.limit {
                break; // what lies beyond the limit is not this read's business
            }
            let view = match view {
                Ok(view) => view,
                // The read stopped inside a batch that goes on in the file.
                Err(batch::BatchError::Truncated { .. }) if to < end => break,
                Err(e) => return Err(corrupt(at, expected, e.to_string())),
            };
            view.verify().map_err(|e| corrupt(at, expected, e.to_string()))?;
            let base = view.base_offset();
            if base < expected || view.last_offset() >= bound {
                return Err(corrupt(
                    at,
                    expected,
                    format!("batch base offset {base} does not fit between its neighbours"),
                ));
            }
            if view.last_offset() >= self.limit {
                break;
            }
            at += view.size();
            expected = view.next_offset();
            if view.last_offset() < from {
                first = at; // the batch before a gap: verified, not returned
            } else {
                next = expected;
            }
        }
        let after = start.position + at as u64;
        if first == at {
            // Nothing to return: the limit is reached, or the segment's end.
            return Ok((after < end).then(|| ReadResult { bytes: Bytes::new(), next_offset: self.offset }));
        }
        if after < end {
            // A raised base offset keeps the CRC valid: what follows the last
            // batch returned must start after it.
            let successor = match bytes.get(at..).and_then(|b| b.first_chunk::<8>()) {
                Some(b) => Some(Offset::from_be_bytes(*b)),
                None => segment.base_offset_at(after, end)?,
            };
            if successor.is_none_or(|base| base < next) {
                let reason = format!("the batch here starts at offset {successor:?}, inside the one before it");
                return Err(corrupt(at, next, reason));
            }
        }
        Ok(Some(ReadResult { bytes: bytes.slice(first..at), next_offset: next }))
    }
}

/// How a partition is opened.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Offset below which everything was fsynced, from the checkpoint.
    pub recovery_point: Option<Offset>,
    /// Whether the data directory was shut down cleanly.
    pub clean_shutdown: bool,
    /// Epoch stamped into appended batches.
    pub leader_epoch: LeaderEpoch,
}

/// One partition's log. Not thread-safe by itself: the owner wraps it in a
/// lock and uses [`FlushJob`] and [`ReadPlan`] to keep I/O outside it.
#[derive(Debug)]
pub struct PartitionLog {
    tp: TopicPartition,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    config: Arc<TopicConfig>,
    segments: BTreeMap<Offset, Arc<Segment>>,
    log_end: Offset,
    recovery_point: Offset,
    high_watermark: Offset,
    corrupt: Option<Corruption>,
    dir_dirty: bool,
    unflushed_records: i64,
    last_flush: Timestamp,
    producers: ProducerTable,
    /// Aborted transactions, for `read_committed` fetches and the cleaner.
    txn_index: TxnIndex,
    /// Whether `producers` holds the recovered state (snapshots are written
    /// only then).
    producers_loaded: bool,
    leader_epoch: LeaderEpoch,
    first_dirty: Offset,
}

impl PartitionLog {
    /// Opens (creating if needed) a partition's directory and recovers it.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        tp: TopicPartition,
        config: Arc<TopicConfig>,
        options: OpenOptions,
        now: Timestamp,
    ) -> Result<Self> {
        let created = !storage.exists(dir);
        storage.create_dir_all(dir).at(dir)?;
        if created {
            storage
                .sync_dir(super::io::parent(dir))
                .map_err(|source| Error::FsyncFailed { path: dir.into(), source })?;
        }
        let bases = tidy_directory(&*storage, dir)?;
        let mut log = Self {
            tp,
            dir: dir.to_path_buf(),
            storage,
            config,
            segments: BTreeMap::new(),
            log_end: 0,
            recovery_point: 0,
            high_watermark: 0,
            corrupt: None,
            dir_dirty: false,
            unflushed_records: 0,
            last_flush: now,
            producers: ProducerTable::default(),
            txn_index: TxnIndex::default(),
            producers_loaded: false,
            leader_epoch: options.leader_epoch,
            first_dirty: 0,
        };
        for base in bases {
            let segment = Segment::open(&log.storage, dir, base, log.index_interval())?;
            log.segments.insert(base, Arc::new(segment));
        }
        if log.segments.is_empty() {
            let segment = Segment::create(&log.storage, dir, 0, log.index_interval())?;
            log.segments.insert(0, Arc::new(segment));
            log.dir_dirty = true;
            log.sync_everything()?;
            log.producers_loaded = true;
            return Ok(log);
        }
        let trusted = match (options.clean_shutdown, options.recovery_point) {
            (true, Some(rp)) => log.load_clean(rp)?,
            _ => false,
        };
        if !trusted {
            log.recover(options.recovery_point.unwrap_or(0))?;
        }
        log.load_producer_state()?;
        Ok(log)
    }

    /// After a clean shutdown: finds the log end from the last index entry
    /// of the last segment. Returns false if the tail does not look clean.
    fn load_clean(&mut self, recovery_point: Offset) -> Result<bool> {
        let Some(last) = self.segments.values().next_back().cloned() else { return Ok(false) };
        let hint = last.find_position(recovery_point.saturating_sub(1).max(last.base_offset()), last.size());
        let from = match hint {
            Ok(Some(start)) => start.position,
            Ok(None) if last.size() == 0 => 0,
            _ => return Ok(false),
        };
        let scan = last.scan(from, last.base_offset(), u64::MAX, false, |_, _| Ok(()))?;
        if scan.invalid.is_some() || scan.valid_end != last.size() {
            tracing::warn!(partition = %self.tp, "the tail of the last segment is not clean, recovering");
            return Ok(false);
        }
        self.log_end = if last.size() == 0 { last.base_offset() } else { scan.next_offset };
        if self.log_end != recovery_point {
            tracing::warn!(partition = %self.tp, log_end = self.log_end, recovery_point, "checkpoint disagrees with the log, recovering");
            return Ok(false);
        }
        self.recovery_point = self.log_end;
        self.high_watermark = self.log_end;
        Ok(true)
    }

    /// After a crash: scans the segments from the recovery point's on.
    fn recover(&mut self, recovery_point: Offset) -> Result<()> {
        let start = self.segments.range(..=recovery_point).next_back().map_or(0, |(b, _)| *b);
        let to_scan: Vec<Arc<Segment>> = self.segments.range(start..).map(|(_, s)| Arc::clone(s)).collect();
        tracing::info!(partition = %self.tp, recovery_point, segments = to_scan.len(), "recovering after an unclean shutdown");
        let interval = self.index_interval();
        let mut log_end = start;
        let mut roll = false;
        for (i, segment) in to_scan.iter().enumerate() {
            let mut scan = segment.recover(interval, i + 1 == to_scan.len())?;
            // A batch may not reach into the next segment: if it does, its
            // base offset (outside the CRC) was damaged.
            let next_base = to_scan.get(i + 1).map(|s| s.base_offset());
            if let (Some(next_base), Some((position, expected))) = (next_base, scan.last)
                && scan.invalid.is_none()
                && scan.next_offset > next_base
            {
                let reason = format!(
                    "the batch at byte {position} ends at offset {}, past the next segment's base offset {next_base}",
                    scan.next_offset - 1
                );
                scan.invalid = Some((position, reason));
                scan.next_offset = expected;
                if expected < recovery_point {
                    scan.damaged = Some((position, expected));
                }
            }
            log_end = if scan.valid_end == 0 { log_end.max(segment.base_offset()) } else { scan.next_offset };
            let Some((position, reason)) = scan.invalid else { continue };
            if let Some((_, offset)) = scan.damaged {
                log_end = offset;
            }
            if log_end < recovery_point || scan.damaged.is_some() {
                let path = segment.path(LOG_SUFFIX);
                tracing::error!(partition = %self.tp, path = %path.display(), position, %reason, "corrupt batch below the recovery point");
                self.corrupt = Some(Corruption { path, position, offset: log_end, reason });
                break;
            }
            tracing::warn!(partition = %self.tp, position, %reason, "truncating a torn tail");
            segment.truncate(position)?;
            for later in &to_scan[i + 1..] {
                self.segments.remove(&later.base_offset());
                later.delete_files()?;
                self.dir_dirty = true;
            }
            // A segment with successors may have been compacted: it must not
            // become the active one, whose offsets recovery requires contiguous.
            roll = i + 1 < to_scan.len();
            break;
        }
        if self.corrupt.is_none() && log_end < recovery_point {
            let last = to_scan.last().or_else(|| self.segments.values().next_back());
            let (path, position) = last.map_or((self.dir.clone(), 0), |s| (s.path(LOG_SUFFIX), s.size()));
            let reason = format!("the log ends at offset {log_end} but offsets below {recovery_point} were fsynced");
            self.corrupt = Some(Corruption { path, position, offset: log_end, reason });
        }
        self.log_end = log_end;
        self.high_watermark = log_end;
        if roll {
            self.roll_segment()?;
        }
        // What survived a process crash may still be only in the page cache:
        // make it durable before anyone reads it.
        for segment in &to_scan {
            if self.segments.contains_key(&segment.base_offset()) {
                segment.sync_all()?;
            }
        }
        self.sync_dir_if_dirty()?;
        self.recovery_point = log_end;
        Ok(())
    }

    fn sync_everything(&mut self) -> Result<()> {
        for segment in self.segments.values() {
            segment.sync_all()?;
            TxnIndex::sync(&*self.storage, &self.dir, segment.base_offset())?;
        }
        self.sync_dir_if_dirty()
    }

    fn sync_dir_if_dirty(&mut self) -> Result<()> {
        if self.dir_dirty {
            self.storage.sync_dir(&self.dir).map_err(|source| Error::FsyncFailed { path: self.dir.clone(), source })?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn index_interval(&self) -> u64 {
        u64::try_from(self.config.index_interval_bytes).unwrap_or(4096)
    }

    /// The partition.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }
    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The first offset held.
    pub fn log_start_offset(&self) -> Offset {
        self.segments.keys().next().copied().unwrap_or(0).min(self.log_end)
    }
    /// The offset the next append gets.
    pub fn log_end_offset(&self) -> Offset {
        self.log_end
    }
    /// The offset up to which readers may read.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }
    /// Offset below which everything is fsynced.
    pub fn recovery_point(&self) -> Offset {
        self.recovery_point
    }
    /// Damage found on open or read, if any.
    pub fn corruption(&self) -> Option<&Corruption> {
        self.corrupt.as_ref()
    }
    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }
    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    /// The topic's configuration in force.
    pub fn config(&self) -> &Arc<TopicConfig> {
        &self.config
    }
    /// Replaces the topic configuration (an `alter`).
    pub fn set_config(&mut self, config: Arc<TopicConfig>) {
        self.config = config;
    }
    /// Records appended since the last flush.
    pub fn unflushed_records(&self) -> i64 {
        self.unflushed_records
    }
    /// When the last flush completed.
    pub fn last_flush(&self) -> Timestamp {
        self.last_flush
    }

    fn corrupt_error(&self) -> Option<Error> {
        self.corrupt.as_ref().map(|c| Error::Corrupt {
            tp: self.tp.clone(),
            path: c.path.clone(),
            position: c.position,
            offset: c.offset,
            reason: c.reason.clone(),
        })
    }

    /// Appends whole batches as the producer built them, assigning offsets
    /// in place. The data is written but not synced; see [`Self::begin_flush`].
    pub fn append(&mut self, buf: &mut BytesMut, now: Timestamp) -> Result<AppendInfo> {
        if let Some(e) = self.corrupt_error() {
            return Err(e);
        }
        let (metas, records, max_ts, duplicate) = self.validate(buf)?;
        if let Some(dup) = duplicate {
            return Ok(dup);
        }
        let log_append = self.config.log_append_time();
        let base = self.log_end;
        let mut next = base;
        let mut metas = metas;
        let mut at = 0;
        for meta in &mut metas {
            let size = meta.size as usize;
            let part = &mut buf[at..at + size];
            batch::assign_offsets(part, next, self.leader_epoch);
            if log_append {
                batch::set_log_append_time(part, now);
                meta.max_timestamp = now;
            }
            next += meta.last_offset + 1; // meta.last_offset holds the delta until here
            meta.last_offset = next - 1;
            at += size;
        }
        let incoming_ts = if log_append { now } else { max_ts };
        self.maybe_roll(buf.len() as u64, incoming_ts, next - 1)?;
        let Some(active) = self.segments.values().next_back() else {
            unreachable!("a partition always has an active segment")
        };
        active.append(buf, &metas, self.index_interval())?;
        for view in iter_batches(buf).flatten() {
            self.producers.record(&view, None);
        }
        self.log_end = next;
        self.unflushed_records += records;
        if !self.config.durable_ack() {
            self.high_watermark = self.log_end;
        }
        Ok(AppendInfo {
            base_offset: base,
            last_offset: next - 1,
            log_append_time: log_append.then_some(now),
            records,
            duplicate: false,
        })
    }

    /// Checks every batch of an append. Returns per-batch metadata (with the
    /// offset *delta* in `last_offset`), the record count, the largest
    /// timestamp, and the earlier result if the append is a retried duplicate.
    #[allow(clippy::type_complexity)]
    fn validate(&self, buf: &[u8]) -> Result<(Vec<BatchMeta>, i64, Timestamp, Option<AppendInfo>)> {
        let invalid = |reason: String| Error::InvalidRecord { tp: self.tp.clone(), reason };
        let max = usize::try_from(self.config.max_message_bytes).unwrap_or(usize::MAX);
        let mut metas = Vec::with_capacity(1);
        let mut records = 0i64;
        let mut max_ts = i64::MIN;
        for view in iter_batches(buf) {
            let view = view.map_err(|e| invalid(e.to_string()))?;
            view.verify().map_err(|e| invalid(e.to_string()))?;
            if view.size() > max {
                return Err(Error::RecordTooLarge { tp: self.tp.clone(), size: view.size(), max });
            }
            if view.is_control() {
                return Err(invalid("producers may not append control batches".into()));
            }
            if view.compression() != 0 {
                return Err(invalid(format!(
                    "compression codec {} is not supported by this log yet; produce uncompressed batches",
                    view.compression()
                )));
            }
            let count = view.records_count();
            if count <= 0 || view.last_offset_delta() != count - 1 {
                return Err(invalid(format!(
                    "batch declares {count} records but a last offset delta of {}",
                    view.last_offset_delta()
                )));
            }
            if self.config.cleanup_policy.compact {
                self.check_keys(&view)?;
            }
            if let SequenceCheck::Duplicate { base_offset, last_offset } = self.producers.check(&self.tp, &view)?
                && metas.is_empty()
            {
                let info = AppendInfo {
                    base_offset,
                    last_offset,
                    log_append_time: None,
                    records: i64::from(count),
                    duplicate: true,
                };
                return Ok((metas, 0, max_ts, Some(info)));
            }
            records += i64::from(count);
            max_ts = max_ts.max(view.max_timestamp());
            let size = u32::try_from(view.size()).map_err(|_| invalid("batch larger than 4 GiB".into()))?;
            metas.push(BatchMeta {
                last_offset: i64::from(view.last_offset_delta()),
                max_timestamp: view.max_timestamp(),
                size,
            });
        }
        if metas.is_empty() {
            return Err(invalid("no record batch in the append".into()));
        }
        Ok((metas, records, max_ts, None))
    }

    /// Compacted topics need a key on every record (Kafka's rule).
    fn check_keys(&self, view: &BatchView<'_>) -> Result<()> {
        let sets = batch::decode_batches(Bytes::copy_from_slice(view.bytes()))
            .map_err(|reason| Error::InvalidRecord { tp: self.tp.clone(), reason })?;
        if sets.iter().flat_map(|s| &s.records).any(|r| r.key.is_none()) {
            return Err(Error::InvalidRecord {
                tp: self.tp.clone(),
                reason: "a compacted topic (cleanup.policy=compact) needs a key on every record".into(),
            });
        }
        Ok(())
    }

    fn maybe_roll(&mut self, incoming: u64, incoming_ts: Timestamp, last_offset: Offset) -> Result<()> {
        let Some(active) = self.segments.values().next_back() else { return Ok(()) };
        if active.size() == 0 {
            return Ok(());
        }
        let segment_bytes = u64::try_from(self.config.segment_bytes).unwrap_or(u64::MAX);
        let too_big = active.size() + incoming > segment_bytes;
        let too_old =
            active.rolling_timestamp().is_some_and(|first| incoming_ts.saturating_sub(first) > self.config.segment_ms);
        let offset_overflow = last_offset - active.base_offset() > i64::from(i32::MAX);
        if too_big || too_old || offset_overflow {
            self.roll()?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end. The old one is synced
    /// first (one fsync per segment), so that a new segment can never
    /// outlive, after a crash, unsynced data of the one before it; then the
    /// producer table is snapshotted at the new segment's base.
    pub fn roll(&mut self) -> Result<()> {
        if let Some(active) = self.segments.values().next_back() {
            if active.size() == 0 {
                return Ok(());
            }
            active.sync_all()?;
            TxnIndex::sync(&*self.storage, &self.dir, active.base_offset())?;
        }
        self.write_snapshot()?;
        self.roll_segment()
    }

    /// Creates the new active segment (the old one is synced or empty).
    fn roll_segment(&mut self) -> Result<()> {
        if self.segments.values().next_back().is_some_and(|s| s.size() == 0) {
            return Ok(());
        }
        let segment = Segment::create(&self.storage, &self.dir, self.log_end, self.index_interval())?;
        tracing::debug!(partition = %self.tp, base_offset = self.log_end, "rolled a new segment");
        self.segments.insert(self.log_end, Arc::new(segment));
        self.dir_dirty = true;
        Ok(())
    }

    /// What must be synced to make everything appended so far durable, or
    /// `None` if it already is.
    pub fn begin_flush(&mut self) -> Option<FlushJob> {
        if self.log_end == self.recovery_point && !self.dir_dirty {
            return None;
        }
        let active = self.segments.values().next_back()?;
        let job = FlushJob {
            upto: self.log_end,
            active: (active.path(LOG_SUFFIX), active.log_file()),
            dir: self.dir_dirty.then(|| self.dir.clone()),
        };
        self.dir_dirty = false;
        Some(job)
    }

    /// Records that a [`FlushJob`] ran; returns the new high watermark.
    pub fn complete_flush(&mut self, upto: Offset, now: Timestamp) -> Offset {
        self.recovery_point = self.recovery_point.max(upto);
        self.high_watermark = self.high_watermark.max(upto.min(self.log_end));
        if upto >= self.log_end {
            self.unflushed_records = 0;
        }
        self.last_flush = now;
        self.high_watermark
    }

    /// Flushes synchronously (tests, shutdown).
    pub fn flush(&mut self, now: Timestamp) -> Result<Offset> {
        if let Some(job) = self.begin_flush() {
            job.run(&*self.storage)?;
            self.complete_flush(job.upto, now);
        }
        Ok(self.high_watermark)
    }

    /// Plans a read from `offset` of what readers may see (up to the high
    /// watermark).
    pub fn plan_read(&self, offset: Offset) -> Result<ReadPlan> {
        self.plan_read_upto(offset, self.high_watermark)
    }

    /// Plans a read from `offset` up to `limit` (exclusive).
    pub fn plan_read_upto(&self, offset: Offset, limit: Offset) -> Result<ReadPlan> {
        if let Some(c) = &self.corrupt
            && offset >= c.offset
        {
            return Err(self.corrupt_error().unwrap_or(Error::Closed));
        }
        let start = self.log_start_offset();
        if offset < start || offset > self.log_end {
            return Err(Error::OffsetOutOfRange { tp: self.tp.clone(), offset, start, end: self.log_end });
        }
        let from = self.segments.range(..=offset).next_back().map_or(start, |(b, _)| *b);
        let segments = self.segments.range(from..).take(4).map(|(_, s)| Arc::clone(s)).collect();
        let limit = limit.min(self.log_end).min(self.corrupt.as_ref().map_or(Offset::MAX, |c| c.offset));
        Ok(ReadPlan { tp: self.tp.clone(), segments, offset, limit, log_end: self.log_end })
    }

    /// The first offset whose record timestamp is at or after `ts` (among
    /// offsets below the high watermark), or `None` if there is none.
    pub fn offset_for_timestamp(&self, ts: Timestamp) -> Result<Option<Offset>> {
        for segment in self.segments.values() {
            if segment.max_timestamp() < ts && segment.max_timestamp() >= 0 {
                continue;
            }
            let end = segment.size();
            let Some(pos) = segment.find_timestamp(ts, end)? else { continue };
            let Some(header) = segment.read_header(pos, end)? else { continue };
            let size = batch::batch_size(&header).map_or(0, |s| s as u64);
            let bytes = segment.read(pos, (pos + size).min(end))?;
            let records =
                crate::record::decode_records(&self.tp.topic, self.tp.partition, bytes, 0).map_err(|reason| {
                    Error::Corrupt {
                        tp: self.tp.clone(),
                        path: segment.path(LOG_SUFFIX),
                        position: pos,
                        offset: segment.base_offset(),
                        reason,
                    }
                })?;
            if let Some(r) = records.iter().find(|r| r.timestamp >= ts) {
                return Ok((r.offset < self.high_watermark).then_some(r.offset));
            }
        }
        Ok(None)
    }

    /// Deletes whole segments past `retention.ms` or beyond `retention.bytes`
    /// (only below the high watermark, never the only segment). Returns how
    /// many were deleted.
    pub fn apply_retention(&mut self, now: Timestamp) -> Result<usize> {
        if !self.config.cleanup_policy.delete {
            return Ok(0);
        }
        let retention_ms = self.config.retention_ms;
        let retention_bytes = self.config.retention_bytes;
        let expired =
            |s: &Segment| retention_ms >= 0 && s.max_timestamp() >= 0 && s.max_timestamp() < now - retention_ms;
        // Kafka rolls an expired active segment so that it can go too.
        if let Some(active) = self.segments.values().next_back()
            && active.size() > 0
            && expired(active)
            && self.high_watermark == self.log_end
        {
            self.roll()?;
        }
        let mut total = self.size_bytes();
        let mut doomed = Vec::new();
        let bases: Vec<Offset> = self.segments.keys().copied().collect();
        for (i, base) in bases.iter().enumerate() {
            let Some(next_base) = bases.get(i + 1) else { break }; // never the active segment
            let segment = &self.segments[base];
            if *next_base > self.high_watermark {
                break;
            }
            let over_size = retention_bytes >= 0 && total.saturating_sub(segment.size()) >= retention_bytes as u64;
            if !(expired(segment) || over_size) {
                break;
            }
            total -= segment.size();
            doomed.push(*base);
        }
        for base in &doomed {
            if let Some(segment) = self.segments.remove(base) {
                tracing::info!(partition = %self.tp, base_offset = base, "deleting segment by retention");
                segment.delete_files()?;
            }
        }
        if !doomed.is_empty() {
            let start = self.log_start_offset();
            self.txn_index.remove_below(start);
            self.remove_snapshots_below(start)?;
            self.dir_dirty = true;
            self.sync_dir_if_dirty()?;
        }
        Ok(doomed.len())
    }

    /// Base offset of the active segment.
    pub(crate) fn active_base_offset(&self) -> Offset {
        self.segments.keys().next_back().copied().unwrap_or(self.log_end)
    }

    /// Base offset of the segment after `base`.
    pub(crate) fn segment_after(&self, base: Offset) -> Option<Offset> {
        self.segments.range(base + 1..).next().map(|(b, _)| *b)
    }

    /// Where the part of the log not yet compacted starts.
    pub(crate) fn first_dirty_offset(&self) -> Offset {
        self.first_dirty
    }

    /// Records how far compaction got.
    pub(crate) fn set_first_dirty_offset(&mut self, offset: Offset) {
        self.first_dirty = offset;
    }

    /// The immutable segments (all but the active one), oldest first.
    pub(crate) fn inactive_segments(&self) -> Vec<Arc<Segment>> {
        let n = self.segments.len().saturating_sub(1);
        self.segments.values().take(n).cloned().collect()
    }

    /// Replaces an immutable segment with its compacted copy, already
    /// written and synced as `<base>.log.cleaned` by the cleaner; with
    /// `cleaned == false` nothing in it survived and the segment goes.
    /// The new segment's indexes are rebuilt on first use.
    pub(crate) fn replace_segment(&mut self, base: Offset, cleaned: bool) -> Result<()> {
        let Some(old) = self.segments.get(&base).cloned() else {
            let leftover = cleaned_path(&self.dir.join(super::segment::file_name(base, LOG_SUFFIX)));
            let _ = self.storage.remove_file(&leftover); // retention took the segment meanwhile
            return Ok(());
        };
        let sync_dir = |log: &Self| {
            log.storage.sync_dir(&log.dir).map_err(|source| Error::FsyncFailed { path: log.dir.clone(), source })
        };
        // Drop the old indexes first, durably, so a crash never pairs the new
        // log with the old indexes (missing indexes are rebuilt on open).
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = old.path(suffix);
            match self.storage.remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(path, e)),
                _ => {}
            }
        }
        sync_dir(self)?;
        if cleaned {
            let (from, to) = (cleaned_path(&old.path(LOG_SUFFIX)), old.path(LOG_SUFFIX));
            self.storage.rename(&from, &to).at(&from)?;
            let reopened = Segment::open(&self.storage, &self.dir, base, self.index_interval())?;
            self.segments.insert(base, Arc::new(reopened));
        } else {
            old.delete_files()?;
            self.segments.remove(&base);
        }
        sync_dir(self)
    }

    /// Syncs everything and snapshots the producer table (clean shutdown).
    pub fn close(&mut self, now: Timestamp) -> Result<()> {
        self.flush(now)?;
        self.sync_everything()?;
        self.write_snapshot()
    }
}

/// The name a cleaner writes a compacted file under before swapping it in.
pub(crate) fn cleaned_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".cleaned");
    path.with_file_name(name)
}

/// Lists a partition directory's segments, removing leftovers of
/// interrupted operations: `.cleaned` and `.tmp` files, and index files
/// whose log is gone. Returns the base offsets of the segments, ascending.
fn tidy_directory(storage: &dyn Storage, dir: &Path) -> Result<Vec<Offset>> {
    let names = storage.list_dir(dir).at(dir)?;
    let mut bases = Vec::new();
    let mut removed = false;
    for name in &names {
        if let Some(base) = name.strip_suffix(LOG_SUFFIX).and_then(|b| b.parse::<Offset>().ok()) {
            bases.push(base);
        }
    }
    for name in &names {
        let orphan_index = [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX].iter().any(|suffix| {
            name.strip_suffix(suffix).and_then(|b| b.parse::<Offset>().ok()).is_some_and(|b| !bases.contains(&b))
        });
        if name.ends_with(".cleaned") || name.ends_with(".tmp") || orphan_index {
            let path = dir.join(name);
            storage.remove_file(&path).at(&path)?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(dir).map_err(|source| Error::FsyncFailed { path: dir.into(), source })?;
    }
    bases.sort_unstable();
    Ok(bases)
}
