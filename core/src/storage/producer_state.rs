//! Idempotent producers: per-partition sequence tracking that turns a
//! retried batch into a no-op instead of a duplicate.
//!
//! As in Kafka's `ProducerStateManager`, each producer id has an epoch and
//! the sequence numbers of its last five batches. A batch whose sequences
//! match one of them is a duplicate and is answered with the offsets it got
//! the first time; a batch that does not continue the last sequence is out
//! of order; a batch with an older epoch is fenced.
//!
//! The table lives in memory and is rebuilt empty on open: embedded
//! producers do not outlive the log that assigned their ids. Snapshots with
//! the segments come with transactions.

use std::collections::{BTreeMap, VecDeque};

use crate::error::{Error, Result};
use crate::record::batch::BatchView;
use crate::types::{Offset, ProducerId, TopicPartition};

/// How many recent batches per producer are remembered for de-duplication
/// (Kafka's `max.in.flight.requests.per.connection` limit for idempotence).
const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchRecord {
    first_seq: i32,
    last_seq: i32,
    base_offset: Offset,
    last_offset: Offset,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<BatchRecord>,
}

/// What the producer table says about a batch about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Append,
    /// Already appended at these offsets: answer with them, append nothing.
    Duplicate {
        /// Offset of the batch's first record.
        base_offset: Offset,
        /// Offset of its last record.
        last_offset: Offset,
    },
}

/// The producers seen by one partition.
#[derive(Debug, Default)]
pub(crate) struct ProducerTable {
    producers: BTreeMap<ProducerId, ProducerEntry>,
}

impl ProducerTable {
    /// Checks a batch's producer id, epoch and sequence.
    pub(crate) fn check(&self, tp: &TopicPartition, batch: &BatchView<'_>) -> Result<SequenceCheck> {
        let pid = batch.producer_id();
        if pid < 0 || batch.base_sequence() < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&pid) else { return Ok(SequenceCheck::Append) };
        let epoch = batch.producer_epoch();
        if epoch < entry.epoch {
            return Err(Error::ProducerFenced { tp: tp.clone(), producer_id: pid, epoch, current: entry.epoch });
        }
        if epoch > entry.epoch {
            return Ok(SequenceCheck::Append);
        }
        let (first, last) = (batch.base_sequence(), batch.last_sequence());
        if let Some(b) = entry.recent.iter().find(|b| b.first_seq == first && b.last_seq == last) {
            return Ok(SequenceCheck::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset });
        }
        let expected = entry.recent.back().map_or(0, |b| b.last_seq.wrapping_add(1));
        if first != expected {
            return Err(Error::OutOfOrderSequence { tp: tp.clone(), producer_id: pid, expected, got: first });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records an appended batch.
    pub(crate) fn record(&mut self, batch: &BatchView<'_>) {
        let pid = batch.producer_id();
        if pid < 0 || batch.base_sequence() < 0 {
            return;
        }
        let entry = self.producers.entry(pid).or_default();
        if batch.producer_epoch() != entry.epoch {
            entry.epoch = batch.producer_epoch();
            entry.recent.clear();
        }
        if entry.recent.len() == RECENT_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(BatchRecord {
            first_seq: batch.base_sequence(),
            last_seq: batch.last_sequence(),
            base_offset: batch.base_offset(),
            last_offset: batch.last_offset(),
        });
    }
}
