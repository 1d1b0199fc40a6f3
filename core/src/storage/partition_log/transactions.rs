//! The transactional side of a partition: the producer table's snapshots
//! and their replay on open, transaction markers, the last stable offset
//! and the aborted transactions (see the parent module's docs).

use std::sync::Arc;

use super::{AppendInfo, PartitionLog};
use crate::error::{Error, IoContext, Result};
use crate::record::batch::{self, BatchView};
use crate::record::{AbortedTransaction, ControlType, control_type, encode_control_batch};
use crate::storage::producer_state::{ProducerTable, SNAPSHOT_SUFFIX, snapshot_name};
use crate::storage::segment::{BatchMeta, Segment};
use crate::storage::txn_index::TxnIndex;
use crate::types::{Offset, Timestamp};

impl PartitionLog {
    /// Rebuilds the producer table and the transaction index: loads the
    /// newest snapshot at or below the log end (removing newer ones, whose
    /// data a crash took) and replays the batches after it.
    pub(super) fn load_producer_state(&mut self) -> Result<()> {
        let mut snapshots: Vec<Offset> = self
            .storage
            .list_dir(&self.dir)
            .at(&self.dir)?
            .iter()
            .filter_map(|n| n.strip_suffix(SNAPSHOT_SUFFIX)?.parse().ok())
            .collect();
        snapshots.sort_unstable();
        let mut start = (self.log_start_offset(), ProducerTable::default());
        while let Some(offset) = snapshots.pop() {
            let path = self.dir.join(snapshot_name(offset));
            if offset <= self.log_end {
                let bytes = self.storage.read_all(&path).at(&path)?;
                match ProducerTable::decode(&bytes) {
                    Ok(table) => {
                        start = (offset, table);
                        break;
                    }
                    Err(reason) => {
                        tracing::warn!(path = %path.display(), %reason, "ignoring a damaged producer snapshot")
                    }
                }
            }
            self.storage.remove_file(&path).at(&path)?;
            self.dir_dirty = true;
        }
        let (start, mut table) = start;
        let mut index = TxnIndex::load(&*self.storage, &self.dir, self.segments.keys().copied())?;
        index.truncate_from(start);
        let first = self.segments.range(..=start).next_back().map_or(start, |(b, _)| *b);
        let replay: Vec<Arc<Segment>> = self.segments.range(first..).map(|(_, s)| Arc::clone(s)).collect();
        let mut rebuilt = Vec::new();
        let limit = self.corrupt.as_ref().map_or(self.log_end, |c| c.offset);
        for segment in &replay {
            // Past damage nothing is served, replayed or rewritten.
            if segment.base_offset() >= limit && segment.base_offset() > start {
                break;
            }
            let next_base = self.segment_after(segment.base_offset()).unwrap_or(Offset::MAX);
            rebuilt.push((segment.base_offset(), next_base));
            if start >= limit {
                continue;
            }
            let from = match segment.find_position(start.max(segment.base_offset()), segment.size())? {
                Some(at) => (at.position, at.min_base),
                None => continue,
            };
            segment.scan(from.0, from.1, u64::MAX, false, |_, view| {
                if view.base_offset() < start || view.last_offset() >= limit {
                    return Ok(());
                }
                let lso = table.first_unstable_offset().unwrap_or(view.base_offset());
                if let Some(aborted) = table.record(view, control_type(view)) {
                    index.insert(aborted, lso);
                }
                Ok(())
            })?;
        }
        index.rewrite(&*self.storage, &self.dir, &rebuilt)?;
        self.producers = table;
        self.txn_index = index;
        self.producers_loaded = true;
        self.sync_dir_if_dirty()
    }

    /// Saves the producer table as `<log end>.snapshot`, durably.
    pub(super) fn write_snapshot(&mut self) -> Result<()> {
        if !self.producers_loaded {
            return Ok(());
        }
        let path = self.dir.join(snapshot_name(self.log_end));
        self.storage.write_atomic(&path, &self.producers.encode()).at(&path)
    }

    /// Appends a transaction marker for a producer: closes its open
    /// transaction here (committing or aborting it) and, for an abort,
    /// records it in the transaction index. A marker with an epoch older
    /// than the producer's is fenced.
    pub fn append_marker(
        &mut self,
        kind: ControlType,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        now: Timestamp,
    ) -> Result<AppendInfo> {
        if let Some(e) = self.corrupt_error() {
            return Err(e);
        }
        self.producers.check_marker(&self.tp, producer_id, producer_epoch)?;
        let mut buf = encode_control_batch(kind, producer_id, producer_epoch, coordinator_epoch, now);
        let base = self.log_end;
        batch::assign_offsets(&mut buf, base, self.leader_epoch);
        let size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        self.maybe_roll(u64::from(size), now, base)?;
        let Some(active) = self.segments.values().next_back().cloned() else {
            unreachable!("a partition always has an active segment")
        };
        active.append(&buf, &[BatchMeta { last_offset: base, max_timestamp: now, size }], self.index_interval())?;
        let lso = self.producers.first_unstable_offset().unwrap_or(base);
        let view =
            BatchView::parse(&buf).map_err(|e| Error::InvalidRecord { tp: self.tp.clone(), reason: e.to_string() })?;
        if let Some(aborted) = self.producers.record(&view, Some(kind)) {
            self.txn_index.append(&*self.storage, &self.dir, active.base_offset(), aborted, lso)?;
        }
        self.log_end = base + 1;
        self.unflushed_records += 1;
        if !self.config.durable_ack() {
            self.high_watermark = self.log_end;
        }
        Ok(AppendInfo { base_offset: base, last_offset: base, log_append_time: None, records: 1, duplicate: false })
    }

    /// The last stable offset: the first offset of the oldest open
    /// transaction, or the high watermark. `read_committed` reads stop here.
    pub fn last_stable_offset(&self) -> Offset {
        self.producers.first_unstable_offset().map_or(self.high_watermark, |f| f.min(self.high_watermark))
    }

    /// The aborted transactions a `read_committed` fetch from `from` up to
    /// `upto` must be told of, ordered by first offset.
    pub fn aborted_transactions(&self, from: Offset, upto: Offset) -> Vec<AbortedTransaction> {
        self.txn_index.overlapping(from, upto)
    }

    /// The aborted transactions whose markers lie in `[from, upto)` (the cleaner).
    pub(crate) fn aborted_in(&self, from: Offset, upto: Offset) -> Vec<AbortedTransaction> {
        self.txn_index.in_range(from, upto)
    }

    /// Whether a producer has a transaction open in this partition.
    pub fn has_open_transaction(&self, producer_id: i64) -> bool {
        self.producers.has_open_transaction(producer_id)
    }

    /// Removes the snapshots of offsets below `offset` (all but the newest).
    pub(super) fn remove_snapshots_below(&mut self, offset: Offset) -> Result<()> {
        let mut old: Vec<Offset> = self
            .storage
            .list_dir(&self.dir)
            .at(&self.dir)?
            .iter()
            .filter_map(|n| n.strip_suffix(SNAPSHOT_SUFFIX)?.parse().ok())
            .filter(|o| *o < offset)
            .collect();
        old.sort_unstable();
        old.pop();
        for o in old {
            let path = self.dir.join(snapshot_name(o));
            self.storage.remove_file(&path).at(&path)?;
        }
        Ok(())
    }
}
