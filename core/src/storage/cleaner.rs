//! Log compaction for topics with `cleanup.policy=compact`.
//!
//! As Kafka's log cleaner: only immutable segments below the high watermark
//! whose records are older than `min.compaction.lag.ms` are cleaned. A map
//! from each key to its latest offset is built over them, then every segment
//! is rewritten keeping only records that are the latest for their key.
//! Tombstones (records with a null value) stay until they are older than
//! `delete.retention.ms`, so that consumers that read the topic from the
//! start see the delete, then they go too. (Kafka counts that time from the
//! first compaction that saw the tombstone; Plexus counts it from the
//! tombstone's timestamp, which a user can see and reason about.)
//!
//! With transactions, as Kafka: only segments below the last stable offset
//! are cleaned; records of aborted transactions never count as a key's
//! latest value and are removed; transaction markers are kept, so that
//! `read_committed` readers always find the end of an aborted range.
//!
//! The cleaner reads and writes without holding the partition's lock: it
//! writes `<base>.log.cleaned`, syncs it, and only the swap
//! ([`PartitionLog::replace_segment`]) takes the lock. Appends and reads go
//! on meanwhile; a reader in the middle of an old segment keeps reading it.
//! A crash leaves at most a `.cleaned` file, removed on open, or a segment
//! without indexes, rebuilt on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record as WireRecord, RecordBatchEncoder, RecordEncodeOptions};

use super::io::OpenMode;
use super::partition_log::{PartitionLog, cleaned_path};
use super::segment::{LOG_SUFFIX, Segment};
use crate::error::{Error, IoContext, Result};
use crate::record::batch::decode_batches;
use crate::types::{Offset, Timestamp};

/// What one cleaning pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten or removed.
    pub segments_cleaned: usize,
    /// Records read.
    pub records_read: u64,
    /// Records dropped (superseded values and expired tombstones).
    pub records_removed: u64,
}

/// Compacts one partition if it is compacted and dirty enough.
pub fn clean_partition(log: &Mutex<PartitionLog>, now: Timestamp) -> Result<CleanStats> {
    let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
    let (segments, config, first_dirty, aborted) = {
        let log = lock();
        let config = Arc::clone(log.config());
        if !config.cleanup_policy.compact {
            return Ok(CleanStats::default());
        }
        let hw = log.last_stable_offset();
        let inactive = log.inactive_segments();
        let mut cleanable = Vec::new();
        for (i, segment) in inactive.iter().enumerate() {
            let next_base = inactive.get(i + 1).map_or(log.active_base_offset(), |s| s.base_offset());
            let lag_ok = segment.max_timestamp() <= now.saturating_sub(config.min_compaction_lag_ms);
            if next_base > hw || !lag_ok {
                break;
            }
            cleanable.push(Arc::clone(segment));
        }
        let mut aborted: HashMap<i64, Vec<(Offset, Offset)>> = HashMap::new();
        for a in log.aborted_in(0, Offset::MAX) {
            aborted.entry(a.producer_id).or_default().push((a.first_offset, a.last_offset));
        }
        (cleanable, config, log.first_dirty_offset(), aborted)
    };
    let is_aborted = |r: &WireRecord| {
        r.transactional
            && !r.control
            && aborted
                .get(&r.producer_id)
                .is_some_and(|ranges| ranges.iter().any(|(f, l)| (*f..=*l).contains(&r.offset)))
    };
    if segments.is_empty() {
        return Ok(CleanStats::default());
    }
    let total: u64 = segments.iter().map(|s| s.size()).sum();
    let dirty: u64 = segments.iter().filter(|s| s.base_offset() >= first_dirty).map(|s| s.size()).sum();
    if total == 0 || (dirty as f64) / (total as f64) < config.min_cleanable_dirty_ratio {
        return Ok(CleanStats::default());
    }

    let mut latest: HashMap<Bytes, Offset> = HashMap::new();
    for segment in &segments {
        for_each_record(segment, |r| {
            if let Some(key) = &r.key
                && !r.control
                && !is_aborted(&r)
            {
                latest.insert(key.clone(), r.offset);
            }
        })?;
    }

    let mut stats = CleanStats::default();
    let tombstone_horizon = now.saturating_sub(config.delete_retention_ms);
    let mut cleaned_upto = first_dirty;
    for segment in &segments {
        let mut kept: Vec<WireRecord> = Vec::new();
        let mut read = 0u64;
        for_each_record(segment, |r| {
            read += 1;
            let is_latest = r.key.as_ref().is_some_and(|k| latest.get(k) == Some(&r.offset));
            let expired_tombstone = r.value.is_none() && r.timestamp < tombstone_horizon;
            if r.control || (is_latest && !expired_tombstone && !is_aborted(&r)) {
                kept.push(r);
            }
        })?;
        stats.records_read += read;
        cleaned_upto = cleaned_upto.max(segment.base_offset() + 1);
        if kept.len() as u64 == read {
            continue;
        }
        stats.records_removed += read - kept.len() as u64;
        stats.segments_cleaned += 1;
        let survivors = !kept.is_empty();
        if survivors {
            write_cleaned(segment, &kept)?;
        }
        lock().replace_segment(segment.base_offset(), survivors)?;
    }
    if let Some(last) = segments.last() {
        let mut log = lock();
        let next = log.segment_after(last.base_offset()).unwrap_or(cleaned_upto);
        log.set_first_dirty_offset(next);
    }
    if stats.segments_cleaned > 0 {
        tracing::info!(
            segments = stats.segments_cleaned,
            removed = stats.records_removed,
            read = stats.records_read,
            "compacted"
        );
    }
    Ok(stats)
}

/// Decodes every record of a segment, control records included, in offset order.
fn for_each_record(segment: &Segment, mut f: impl FnMut(WireRecord)) -> Result<()> {
    let path = segment.path(LOG_SUFFIX);
    let scan = segment.scan(0, segment.base_offset(), segment.size(), false, |pos, view| {
        let sets = decode_batches(Bytes::copy_from_slice(view.bytes()))
            .map_err(|reason| Error::BadMetadata { path: path.clone(), reason: format!("at byte {pos}: {reason}") })?;
        sets.into_iter().flat_map(|s| s.records).for_each(&mut f);
        Ok(())
    })?;
    match scan.invalid {
        Some((pos, reason)) => Err(Error::BadMetadata { path, reason: format!("at byte {pos}: {reason}") }),
        None => Ok(()),
    }
}

/// Writes surviving records as `<base>.log.cleaned` and syncs it. Records
/// of one original batch stay together, with their offsets, producer fields
/// and sequence numbers.
fn write_cleaned(segment: &Segment, kept: &[WireRecord]) -> Result<()> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, kept.iter(), &options).map_err(|e| Error::BadMetadata {
        path: segment.path(LOG_SUFFIX),
        reason: format!("re-encoding compacted records failed: {e}"),
    })?;
    let path = cleaned_path(&segment.path(LOG_SUFFIX));
    let storage = segment.storage();
    let file = storage.open(&path, OpenMode::Truncate).at(&path)?;
    file.write_at(&buf, 0).at(&path)?;
    file.sync().map_err(|source| Error::FsyncFailed { path, source })
}
