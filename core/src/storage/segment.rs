//! One segment of a partition: `<base>.log` with its two sparse indexes.
//!
//! A segment holds the batches with offsets from its base offset up to the
//! next segment's base. Only the last (active) segment of a partition is
//! appended to; the others are immutable until retention deletes them or the
//! cleaner replaces them with a compacted copy.
//!
//! The indexes of an immutable segment are loaded on first use, so opening a
//! log reads no more than a few bytes per segment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};

use super::index::{OffsetIndex, TIME_ENTRY, TimeIndex, relative};
use super::io::{FileRef, OpenMode, Storage};
use crate::error::{Error, IoContext, Result};
use crate::record::batch::{BatchError, BatchView, HEADER_LEN, LOG_OVERHEAD, MAGIC, batch_size};
use crate::types::{Offset, Timestamp};

/// Suffix of segment data files.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Suffix of offset-index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of time-index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// How much the recovery scan reads at a time.
const SCAN_CHUNK: usize = 1 << 20;

/// The file name of a segment file: the base offset in 20 digits, as Kafka names them.
pub(crate) fn file_name(base: Offset, suffix: &str) -> String {
    format!("{base:020}{suffix}")
}

/// What an append tells the segment about each batch, for its indexes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchMeta {
    /// Last offset of the batch.
    pub(crate) last_offset: Offset,
    /// Largest timestamp in the batch.
    pub(crate) max_timestamp: Timestamp,
    /// Size in bytes.
    pub(crate) size: u32,
}

/// The outcome of reading a segment's batches one after another.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Bytes from the start position to the end of the last valid batch.
    pub(crate) valid_end: u64,
    /// Offset after the last valid batch (or the expected offset if none).
    pub(crate) next_offset: Offset,
    /// Largest timestamp among valid batches.
    pub(crate) max_timestamp: Option<Timestamp>,
    /// The first invalid batch: its position and what is wrong.
    pub(crate) invalid: Option<(u64, String)>,
    /// Set when the invalid data cannot be a torn write: a batch with a good
    /// CRC whose offsets go backwards means an earlier batch's base offset
    /// (outside the CRC) was damaged. Holds that earlier batch's position
    /// and the offset it should have had.
    pub(crate) damaged: Option<(u64, Offset)>,
    /// The last valid batch: its position and the offset it was expected at.
    pub(crate) last: Option<(u64, Offset)>,
}

/// Where a read starts in a segment (see [`Segment::find_position`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadStart {
    /// Position of the first batch to read.
    pub(crate) position: u64,
    /// The least base offset that batch may have: one past the last offset
    /// of the batch before it, or the segment's base offset.
    pub(crate) min_base: Offset,
    /// Bytes of a batch to verify but not return (the one before a gap), or 0.
    pub(crate) skip: u64,
    /// Size of the first batch to return, 0 if no batch reaches the offset.
    pub(crate) size: u64,
}

/// A batch met by [`Segment::walk`].
#[derive(Debug, Clone, Copy)]
struct Step {
    position: u64,
    min_base: Offset,
    base: Offset,
    size: u64,
}

#[derive(Debug)]
struct Indexes {
    offsets: OffsetIndex,
    times: TimeIndex,
    offset_file: FileRef,
    time_file: FileRef,
    bytes_since_entry: u64,
}

#[derive(Debug, Default)]
struct SegmentState {
    /// Loaded on first use.
    indexes: Option<Indexes>,
    /// Max timestamp of the first batch, for `segment.ms`.
    rolling_timestamp: Option<Timestamp>,
}

/// One segment. Shared by the partition and by readers that are in the
/// middle of reading it (a reader keeps a deleted segment's files readable).
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: Offset,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    log: FileRef,
    size: AtomicU64,
    max_timestamp: AtomicI64,
    state: Mutex<SegmentState>,
    /// `index.interval.bytes` when the segment was opened, for rebuilding its indexes.
    index_interval: u64,
}

impl Segment {
    /// Creates an empty segment (files created, not yet synced).
    pub(crate) fn create(storage: &Arc<dyn Storage>, dir: &Path, base: Offset, index_interval: u64) -> Result<Self> {
        let path = dir.join(file_name(base, LOG_SUFFIX));
        let log = storage.open(&path, OpenMode::Truncate).at(&path)?;
        let segment = Self::new(storage, dir, base, log, 0, index_interval);
        let (offset_file, time_file) = segment.open_index_files(OpenMode::Truncate)?;
        segment.lock().indexes = Some(Indexes {
            offsets: OffsetIndex::default(),
            times: TimeIndex::default(),
            offset_file,
            time_file,
            bytes_since_entry: 0,
        });
        Ok(segment)
    }

    /// Opens an existing segment without reading its log or indexes, but the
    /// last time-index entry (for retention by time).
    pub(crate) fn open(storage: &Arc<dyn Storage>, dir: &Path, base: Offset, index_interval: u64) -> Result<Self> {
        let path = dir.join(file_name(base, LOG_SUFFIX));
        let log = storage.open(&path, OpenMode::Existing).at(&path)?;
        let size = log.len().at(&path)?;
        let segment = Self::new(storage, dir, base, log, size, index_interval);
        let time_path = segment.path(TIME_INDEX_SUFFIX);
        if let Ok(file) = storage.open(&time_path, OpenMode::Existing) {
            let len = file.len().at(&time_path)?;
            if len >= TIME_ENTRY as u64 && len % TIME_ENTRY as u64 == 0 {
                let mut last = [0; TIME_ENTRY];
                file.read_exact_at(&mut last, len - TIME_ENTRY as u64).at(&time_path)?;
                if let Some(ts) = TimeIndex::parse(&last).and_then(|t| t.max_timestamp()) {
                    segment.max_timestamp.store(ts, Ordering::Relaxed);
                }
            }
        }
        Ok(segment)
    }

    fn new(storage: &Arc<dyn Storage>, dir: &Path, base: Offset, log: FileRef, size: u64, index_interval: u64) -> Self {
        Self {
            index_interval,
            base_offset: base,
            dir: dir.to_path_buf(),
            storage: Arc::clone(storage),
            log,
            size: AtomicU64::new(size),
            max_timestamp: AtomicI64::new(-1),
            state: Mutex::new(SegmentState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SegmentState> {
        // A poisoned lock means a panic while updating in-memory index
        // vectors; they are rebuilt from the log on the next open.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_index_files(&self, mode: OpenMode) -> Result<(FileRef, FileRef)> {
        let (op, tp) = (self.path(INDEX_SUFFIX), self.path(TIME_INDEX_SUFFIX));
        Ok((self.storage.open(&op, mode).at(&op)?, self.storage.open(&tp, mode).at(&tp)?))
    }

    /// The storage the segment's files are in.
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The segment's base offset.
    pub(crate) fn base_offset(&self) -> Offset {
        self.base_offset
    }

    /// Path of one of the segment's files.
    pub(crate) fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(file_name(self.base_offset, suffix))
    }

    /// Bytes in the log file.
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Largest timestamp in the segment, -1 if unknown or empty.
    pub(crate) fn max_timestamp(&self) -> Timestamp {
        self.max_timestamp.load(Ordering::Relaxed)
    }

    /// Max timestamp of the first batch, used to roll by `segment.ms`.
    pub(crate) fn rolling_timestamp(&self) -> Option<Timestamp> {
        self.lock().rolling_timestamp
    }

    /// Appends whole batches at the end, updating the indexes every
    /// `index_interval` bytes. Not synced.
    pub(crate) fn append(&self, bytes: &[u8], metas: &[BatchMeta], index_interval: u64) -> Result<()> {
        let start = self.size();
        let path = self.path(LOG_SUFFIX);
        self.log.write_at(bytes, start).at(&path)?;
        let mut state = self.lock();
        if state.rolling_timestamp.is_none() {
            state.rolling_timestamp = metas.first().map(|m| m.max_timestamp);
        }
        let mut position = start;
        let mut max_ts = self.max_timestamp();
        let indexes = self.indexes(&mut state)?;
        for meta in metas {
            if indexes.bytes_since_entry >= index_interval || position == 0 {
                let rel = relative(meta.last_offset, self.base_offset);
                if let (Some(rel), Ok(pos)) = (rel, u32::try_from(position)) {
                    append_offset_entry(indexes, &self.dir, self.base_offset, rel, pos)?;
                    if meta.max_timestamp.max(max_ts) > indexes.times.max_timestamp().unwrap_or(i64::MIN) {
                        append_time_entry(indexes, &self.dir, self.base_offset, meta.max_timestamp.max(max_ts), rel)?;
                    }
                }
                indexes.bytes_since_entry = 0;
            }
            indexes.bytes_since_entry += u64::from(meta.size);
            position += u64::from(meta.size);
            max_ts = max_ts.max(meta.max_timestamp);
        }
        drop(state);
        self.max_timestamp.store(max_ts, Ordering::Relaxed);
        self.size.store(start + bytes.len() as u64, Ordering::Release);
        Ok(())
    }

    /// The loaded indexes, loading (or rebuilding) them on first use.
    fn indexes<'a>(&self, state: &'a mut SegmentState) -> Result<&'a mut Indexes> {
        if state.indexes.is_none() {
            let (indexes, rolling) = self.load_indexes()?;
            state.indexes = Some(indexes);
            if rolling.is_some() {
                state.rolling_timestamp = rolling;
            }
        }
        match state.indexes.as_mut() {
            Some(indexes) => Ok(indexes),
            None => unreachable!("set just above"),
        }
    }

    /// Loads the index files, or rebuilds them (then also returning the
    /// rolling timestamp found on the way).
    fn load_indexes(&self) -> Result<(Indexes, Option<Timestamp>)> {
        let (op, tp) = (self.path(INDEX_SUFFIX), self.path(TIME_INDEX_SUFFIX));
        let loaded = match (self.storage.read_all(&op), self.storage.read_all(&tp)) {
            (Ok(o), Ok(t)) => OffsetIndex::parse(&o).zip(TimeIndex::parse(&t)),
            _ => None,
        };
        match loaded {
            Some((offsets, times)) if offsets.sanity_check(self.size()) && times.sanity_check() => {
                let (offset_file, time_file) = self.open_index_files(OpenMode::CreateOrOpen)?;
                let last_pos = offsets.entries.last().map_or(0, |e| u64::from(e.1));
                let indexes =
                    Indexes { offsets, times, offset_file, time_file, bytes_since_entry: self.size() - last_pos };
                Ok((indexes, None))
            }
            _ => {
                tracing::info!(segment = %self.path(LOG_SUFFIX).display(), "rebuilding missing or damaged index");
                let (indexes, _, rolling) = self.build_indexes(u64::MAX, self.index_interval, false)?;
                // The segment is immutable: make its new indexes durable once.
                for (file, suffix) in [(&indexes.offset_file, INDEX_SUFFIX), (&indexes.time_file, TIME_INDEX_SUFFIX)] {
                    file.sync().map_err(|source| Error::FsyncFailed { path: self.path(suffix), source })?;
                }
                Ok((indexes, rolling))
            }
        }
    }

    /// Scans the whole log from the start, rebuilding both indexes and
    /// writing them anew (not synced). Returns the scan, which stops at the
    /// first invalid batch or at `limit` bytes.
    fn build_indexes(
        &self,
        limit: u64,
        index_interval: u64,
        contiguous: bool,
    ) -> Result<(Indexes, Scan, Option<Timestamp>)> {
        let (offset_file, time_file) = self.open_index_files(OpenMode::Truncate)?;
        let mut indexes = Indexes {
            offsets: OffsetIndex::default(),
            times: TimeIndex::default(),
            offset_file,
            time_file,
            bytes_since_entry: 0,
        };
        let mut max_ts = i64::MIN;
        let mut first = None;
        let scan = self.scan(0, self.base_offset, limit, contiguous, |pos, view| {
            if first.is_none() {
                first = Some(view.max_timestamp());
            }
            if indexes.bytes_since_entry >= index_interval || pos == 0 {
                if let (Some(rel), Ok(p)) = (relative(view.last_offset(), self.base_offset), u32::try_from(pos)) {
                    append_offset_entry(&mut indexes, &self.dir, self.base_offset, rel, p)?;
                    let ts = view.max_timestamp().max(max_ts);
                    if ts > indexes.times.max_timestamp().unwrap_or(i64::MIN) {
                        append_time_entry(&mut indexes, &self.dir, self.base_offset, ts, rel)?;
                    }
                }
                indexes.bytes_since_entry = 0;
            }
            indexes.bytes_since_entry += view.size() as u64;
            max_ts = max_ts.max(view.max_timestamp());
            Ok(())
        })?;
        self.max_timestamp.store(scan.max_timestamp.unwrap_or(-1), Ordering::Relaxed);
        Ok((indexes, scan, first))
    }

    /// Recovers the segment after an unclean shutdown: scans every batch,
    /// rebuilds the indexes, and reports where valid data ends. Does not
    /// truncate: the caller decides whether the invalid rest is a torn tail.
    ///
    /// `contiguous` requires every batch to start where the previous ended,
    /// as in a segment never compacted (the active one): a batch with a good
    /// CRC that starts later has a damaged base offset.
    pub(crate) fn recover(&self, index_interval: u64, contiguous: bool) -> Result<Scan> {
        let (indexes, scan, rolling) = self.build_indexes(u64::MAX, index_interval, contiguous)?;
        let mut state = self.lock();
        state.indexes = Some(indexes);
        state.rolling_timestamp = rolling;
        Ok(scan)
    }

    /// Reads batch after batch from `from`, verifying each (length, magic,
    /// CRC, offsets increasing from `expected`), calling `visit` with each
    /// valid batch's position, until the end, `limit` bytes, or the first
    /// invalid batch.
    pub(crate) fn scan(
        &self,
        from: u64,
        expected: Offset,
        limit: u64,
        contiguous: bool,
        mut visit: impl FnMut(u64, &BatchView<'_>) -> Result<()>,
    ) -> Result<Scan> {
        let path = self.path(LOG_SUFFIX);
        let end = self.log.len().at(&path)?.min(limit);
        let mut out = Scan {
            valid_end: from,
            next_offset: expected,
            max_timestamp: None,
            invalid: None,
            damaged: None,
            last: None,
        };
        let mut previous = (from, expected);
        let mut buf = Vec::new();
        let mut pos = from;
        while pos < end {
            let want = usize::try_from(end - pos).unwrap_or(usize::MAX).min(SCAN_CHUNK);
            buf.resize(want, 0);
            self.log.read_exact_at(&mut buf, pos).at(&path)?;
            let mut at = 0;
            let mut progressed = false;
            while at < buf.len() {
                let size = match batch_size(&buf[at..]) {
                    Ok(size) => size,
                    Err(BatchError::Truncated { .. }) if pos + (at as u64) + (LOG_OVERHEAD as u64) <= end => break,
                    Err(e) => {
                        out.invalid = Some((pos + at as u64, e.to_string()));
                        return Ok(out);
                    }
                };
                if at + size > buf.len() {
                    if pos + (at + size) as u64 > end {
                        let reason = format!("batch of {size} bytes runs past the end of the file");
                        out.invalid = Some((pos + at as u64, reason));
                        return Ok(out);
                    }
                    if at == 0 {
                        // A batch larger than a chunk: read it whole.
                        buf.resize(size, 0);
                        self.log.read_exact_at(&mut buf, pos).at(&path)?;
                    } else {
                        break;
                    }
                }
                let checked = BatchView::parse(&buf[at..at + size]).and_then(|v| v.verify().map(|()| v));
                let view = match checked {
                    Ok(view) if contiguous && view.base_offset() > out.next_offset => {
                        let reason = format!(
                            "batch base offset {} skips ahead of the expected {} in a segment never compacted",
                            view.base_offset(),
                            out.next_offset
                        );
                        out.invalid = Some((pos + at as u64, reason));
                        return Ok(out);
                    }
                    Ok(view) if view.base_offset() >= out.next_offset => view,
                    Ok(view) => {
                        let reason = format!(
                            "the batch at byte {} has a damaged base offset: the next batch, at byte {}, starts at offset {}, below the {} it implies",
                            previous.0,
                            pos + at as u64,
                            view.base_offset(),
                            out.next_offset
                        );
                        out.invalid = Some((previous.0, reason));
                        out.damaged = Some(previous);
                        return Ok(out);
                    }
                    Err(e) => {
                        out.invalid = Some((pos + at as u64, e.to_string()));
                        return Ok(out);
                    }
                };
                visit(pos + at as u64, &view)?;
                previous = (pos + at as u64, out.next_offset);
                out.last = Some(previous);
                out.next_offset = view.next_offset();
                out.max_timestamp =
                    Some(out.max_timestamp.map_or(view.max_timestamp(), |t| t.max(view.max_timestamp())));
                at += size;
                progressed = true;
                out.valid_end = pos + at as u64;
            }
            if !progressed && at == 0 {
                // Not even a batch header fits before the end: a torn tail.
                out.invalid = Some((pos, "an incomplete batch header at the end of the file".into()));
                return Ok(out);
            }
            pos += at as u64;
        }
        Ok(out)
    }

    /// Cuts the log at `position` (a batch boundary) and drops the index
    /// entries past it. Not synced.
    pub(crate) fn truncate(&self, position: u64) -> Result<()> {
        let path = self.path(LOG_SUFFIX);
        self.log.truncate(position).at(&path)?;
        self.size.store(position, Ordering::Release);
        let mut state = self.lock();
        let indexes = self.indexes(&mut state)?;
        let keep = indexes.offsets.entries.iter().take_while(|e| u64::from(e.1) < position).count();
        indexes.offsets.entries.truncate(keep);
        let last_rel = indexes.offsets.last_offset();
        let keep_t = indexes.times.entries.iter().take_while(|e| last_rel.is_some_and(|l| e.1 <= l)).count();
        indexes.times.entries.truncate(keep_t);
        let (op, tp) = (self.path(INDEX_SUFFIX), self.path(TIME_INDEX_SUFFIX));
        indexes.offset_file.truncate((keep * super::index::OFFSET_ENTRY) as u64).at(&op)?;
        indexes.time_file.truncate((keep_t * TIME_ENTRY) as u64).at(&tp)?;
        indexes.bytes_since_entry = position - indexes.offsets.entries.last().map_or(0, |e| u64::from(e.1));
        Ok(())
    }

    /// Reads whole bytes `[from, to)` of the log.
    pub(crate) fn read(&self, from: u64, to: u64) -> Result<Bytes> {
        let path = self.path(LOG_SUFFIX);
        let len = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        let mut buf = BytesMut::zeroed(len);
        self.log.read_exact_at(&mut buf, from).at(&path)?;
        Ok(buf.freeze())
    }

    /// Reads the header of the batch at `position`, if one fits before `end`.
    pub(crate) fn read_header(&self, position: u64, end: u64) -> Result<Option<[u8; HEADER_LEN]>> {
        if position + HEADER_LEN as u64 > end {
            return Ok(None);
        }
        let mut header = [0; HEADER_LEN];
        self.log.read_exact_at(&mut header, position).at(&self.path(LOG_SUFFIX))?;
        Ok(Some(header))
    }

    /// The base offset of the batch at `position`, if its first bytes lie
    /// before `end`.
    pub(crate) fn base_offset_at(&self, position: u64, end: u64) -> Result<Option<Offset>> {
        if position + 8 > end {
            return Ok(None);
        }
        let mut base = [0; 8];
        self.log.read_exact_at(&mut base, position).at(&self.path(LOG_SUFFIX))?;
        Ok(Some(Offset::from_be_bytes(base)))
    }

    /// Where a read of `offset` starts: the batch holding it or the first
    /// after it; `None` if the segment is empty. The batch headers on the
    /// way are checked ([`Self::walk`]), starting from the index entry at or
    /// below `offset` if the batch at its position is the one it names (a
    /// damaged or stale entry makes the walk start from the beginning).
    ///
    /// When `offset` falls in a gap (compaction removed it), the read also
    /// verifies the batch before the gap, whose last offset placed the gap
    /// there: with a damaged last offset delta, a batch may claim to end
    /// before offsets it holds.
    pub(crate) fn find_position(&self, offset: Offset, end: u64) -> Result<Option<ReadStart>> {
        let entry = {
            let mut state = self.lock();
            let indexes = self.indexes(&mut state)?;
            relative(offset, self.base_offset).and_then(|rel| indexes.offsets.entry_at_or_below(rel))
        };
        let mut from = (0, self.base_offset);
        if let Some((rel, pos)) = entry {
            match self.read_header(u64::from(pos), end)?.map(HeaderView) {
                Some(h) if h.last_offset() == self.base_offset + i64::from(rel) => {
                    from = (u64::from(pos), h.base_offset())
                }
                _ => {
                    tracing::warn!(segment = %self.path(LOG_SUFFIX).display(), offset, "index entry does not fit the log")
                }
            }
        }
        let (previous, found) = self.walk(from.0, from.1, end, |h| h.last_offset() >= offset)?;
        Ok(match (previous, found) {
            (Some(p), Some(f)) if f.base > offset => {
                Some(ReadStart { position: p.position, min_base: p.min_base, skip: p.size, size: f.size })
            }
            (_, Some(f)) => Some(ReadStart { position: f.position, min_base: f.min_base, skip: 0, size: f.size }),
            (Some(p), None) => Some(ReadStart { position: p.position, min_base: p.min_base, skip: p.size, size: 0 }),
            (None, None) => None,
        })
    }

    /// Walks the batch headers from `pos`, a batch start where offsets are
    /// at least `min_base`, until `stop` holds for one or the walk reaches
    /// `end`. Returns the batch before that one (the last batch, at the end)
    /// and that one. Checks every header on the way against the ones before:
    /// the magic byte, offsets that increase, a batch that ends by `end`.
    fn walk(
        &self,
        mut pos: u64,
        mut min_base: Offset,
        end: u64,
        stop: impl Fn(&HeaderView) -> bool,
    ) -> Result<(Option<Step>, Option<Step>)> {
        let mut previous = None;
        while pos < end {
            let damaged = |reason: String| Error::BadMetadata {
                path: self.path(LOG_SUFFIX),
                reason: format!("at byte {pos}: {reason}"),
            };
            let Some(bytes) = self.read_header(pos, end)? else {
                return Err(damaged(format!("a partial batch header before the end at byte {end}")));
            };
            let h = HeaderView(bytes);
            let size = batch_size(&bytes).map_err(|e| damaged(e.to_string()))? as u64;
            if h.magic() != MAGIC {
                return Err(damaged(format!("magic byte {}", h.magic())));
            }
            if h.base_offset() < min_base || h.last_offset() < h.base_offset() || pos + size > end {
                let reason = format!(
                    "a batch of offsets {} to {} and {size} bytes does not fit after offset {} and before byte {end}",
                    h.base_offset(),
                    h.last_offset(),
                    min_base.saturating_sub(1)
                );
                return Err(damaged(reason));
            }
            let step = Step { position: pos, min_base, base: h.base_offset(), size };
            if stop(&h) {
                return Ok((previous, Some(step)));
            }
            previous = Some(step);
            min_base = h.last_offset().saturating_add(1);
            pos += size;
        }
        Ok((previous, None))
    }

    /// The first batch (position) whose max timestamp is at or after `ts`,
    /// searching from the time index's hint.
    pub(crate) fn find_timestamp(&self, ts: Timestamp, end: u64) -> Result<Option<u64>> {
        let start_offset = {
            let mut state = self.lock();
            let indexes = self.indexes(&mut state)?;
            self.base_offset + i64::from(indexes.times.lookup(ts))
        };
        let Some(from) = self.find_position(start_offset, end)? else { return Ok(None) };
        let (_, found) = self.walk(from.position, from.min_base, end, |h| h.max_timestamp() >= ts)?;
        Ok(found.map(|f| f.position))
    }

    /// Makes the log and both indexes durable.
    pub(crate) fn sync_all(&self) -> Result<()> {
        let path = self.path(LOG_SUFFIX);
        self.log.sync().map_err(|source| Error::FsyncFailed { path, source })?;
        let state = self.lock();
        if let Some(ix) = &state.indexes {
            for (file, suffix) in [(&ix.offset_file, INDEX_SUFFIX), (&ix.time_file, TIME_INDEX_SUFFIX)] {
                file.sync().map_err(|source| Error::FsyncFailed { path: self.path(suffix), source })?;
            }
        }
        Ok(())
    }

    /// A handle on the log file, for syncing it outside the partition lock.
    pub(crate) fn log_file(&self) -> FileRef {
        Arc::clone(&self.log)
    }

    /// Removes the segment's files (not the directory entry's durability:
    /// the caller syncs the directory).
    pub(crate) fn delete_files(&self) -> Result<()> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, super::txn_index::TXN_INDEX_SUFFIX] {
            let path = self.path(suffix);
            match self.storage.remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(path, e)),
                _ => {}
            }
        }
        Ok(())
    }
}

fn append_offset_entry(ix: &mut Indexes, dir: &Path, base: Offset, rel: u32, pos: u32) -> Result<()> {
    if ix.offsets.last_offset().is_some_and(|last| last >= rel) {
        return Ok(());
    }
    let at = (ix.offsets.entries.len() * super::index::OFFSET_ENTRY) as u64;
    let path = dir.join(file_name(base, INDEX_SUFFIX));
    ix.offset_file.write_at(&OffsetIndex::encode_entry(rel, pos), at).at(&path)?;
    ix.offsets.entries.push((rel, pos));
    Ok(())
}

fn append_time_entry(ix: &mut Indexes, dir: &Path, base: Offset, ts: Timestamp, rel: u32) -> Result<()> {
    let at = (ix.times.entries.len() * TIME_ENTRY) as u64;
    let path = dir.join(file_name(base, TIME_INDEX_SUFFIX));
    ix.time_file.write_at(&TimeIndex::encode_entry(ts, rel), at).at(&path)?;
    ix.times.entries.push((ts, rel));
    Ok(())
}

/// A batch header read on its own.
struct HeaderView([u8; HEADER_LEN]);

impl HeaderView {
    fn field_i64(&self, at: usize) -> i64 {
        let mut a = [0; 8];
        a.copy_from_slice(&self.0[at..at + 8]);
        i64::from_be_bytes(a)
    }
    fn base_offset(&self) -> Offset {
        self.field_i64(0)
    }
    fn last_offset(&self) -> Offset {
        // Saturating: the walk checks headers that may be garbage.
        self.base_offset()
            .saturating_add(i64::from(i32::from_be_bytes([self.0[23], self.0[24], self.0[25], self.0[26]])))
    }
    fn magic(&self) -> i8 {
        self.0[16] as i8
    }
    fn max_timestamp(&self) -> Timestamp {
        self.field_i64(35)
    }
}
