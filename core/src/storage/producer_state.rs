//! Idempotent and transactional producers as one partition sees them:
//! sequence tracking that turns a retried batch into a no-op instead of a
//! duplicate, epoch fencing, and the transactions still open.
//!
//! As in Kafka's `ProducerStateManager`, each producer id has an epoch and
//! the sequence numbers of its last five batches. A batch whose sequences
//! match one of them is a duplicate and is answered with the offsets it got
//! the first time; a batch that does not continue the last sequence is out
//! of order; a batch or marker with an older epoch is fenced. A
//! transactional batch opens the producer's transaction at its first offset
//! unless one is open; the commit or abort marker closes it. The first
//! offset of the oldest open transaction bounds the last stable offset.
//!
//! # Snapshots
//!
//! The table is saved as `<offset>.snapshot` in the partition directory
//! (the state of every batch below `offset`) when a segment rolls and on a
//! clean shutdown. On open the newest snapshot at or below the log end is
//! loaded and the batches after it are replayed, so sequences, epochs and
//! open transactions survive a restart. Layout (big-endian):
//!
//! ```text
//! version i16 = 1 | crc32c u32 of the rest | count i32 | count × producer:
//!   producer_id i64 | epoch i16 | coordinator_epoch i32 | txn_first_offset i64 (-1: none)
//!   | recent u8 | recent × (first_seq i32, last_seq i32, base_offset i64, last_offset i64)
//! ```

use std::collections::{BTreeMap, VecDeque};

use crate::error::{Error, Result};
use crate::record::batch::BatchView;
use crate::record::{AbortedTransaction, ControlType};
use crate::types::{Offset, ProducerId, TopicPartition};

/// How many recent batches per producer are remembered for de-duplication
/// (Kafka's `max.in.flight.requests.per.connection` limit for idempotence).
const RECENT_BATCHES: usize = 5;

/// File suffix of producer-state snapshots.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";

const SNAPSHOT_VERSION: i16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchRecord {
    first_seq: i32,
    last_seq: i32,
    base_offset: Offset,
    last_offset: Offset,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    coordinator_epoch: i32,
    recent: VecDeque<BatchRecord>,
    /// First offset of the producer's open transaction in this partition.
    txn_first_offset: Option<Offset>,
}

impl ProducerEntry {
    fn bump_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.recent.clear();
        }
    }
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerTable {
    producers: BTreeMap<ProducerId, ProducerEntry>,
}

impl ProducerTable {
    /// Checks a data batch's producer id, epoch and sequence.
    pub(crate) fn check(&self, tp: &TopicPartition, batch: &BatchView<'_>) -> Result<SequenceCheck> {
        let pid = batch.producer_id();
        if pid < 0 {
            if batch.is_transactional() {
                return Err(Error::InvalidRecord {
                    tp: tp.clone(),
                    reason: "a transactional batch needs a producer id".into(),
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&pid) else { return Ok(SequenceCheck::Append) };
        let epoch = batch.producer_epoch();
        if epoch < entry.epoch {
            return Err(Error::ProducerFenced { tp: tp.clone(), producer_id: pid, epoch, current: entry.epoch });
        }
        if epoch > entry.epoch || batch.base_sequence() < 0 {
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

    /// Checks that a marker's epoch is not older than the producer's.
    pub(crate) fn check_marker(&self, tp: &TopicPartition, producer_id: ProducerId, epoch: i16) -> Result<()> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => {
                Err(Error::ProducerFenced { tp: tp.clone(), producer_id, epoch, current: entry.epoch })
            }
            _ => Ok(()),
        }
    }

    /// Records an appended batch (data or control, with its offsets
    /// assigned). Returns the transaction it aborted, if it is an abort
    /// marker that closes an open transaction.
    pub(crate) fn record(&mut self, batch: &BatchView<'_>, control: Option<ControlType>) -> Option<AbortedTransaction> {
        let pid = batch.producer_id();
        if pid < 0 {
            return None;
        }
        let entry = self.producers.entry(pid).or_default();
        entry.bump_epoch(batch.producer_epoch());
        if batch.is_control() {
            let first_offset = entry.txn_first_offset.take()?;
            return (control == Some(ControlType::Abort)).then_some(AbortedTransaction {
                producer_id: pid,
                first_offset,
                last_offset: batch.base_offset(),
            });
        }
        if batch.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(batch.base_offset());
        }
        if batch.base_sequence() >= 0 {
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
        None
    }

    /// The first offset of the oldest open transaction, if any.
    pub(crate) fn first_unstable_offset(&self) -> Option<Offset> {
        self.producers.values().filter_map(|e| e.txn_first_offset).min()
    }

    /// Whether a producer has a transaction open here.
    pub(crate) fn has_open_transaction(&self, producer_id: ProducerId) -> bool {
        self.producers.get(&producer_id).is_some_and(|e| e.txn_first_offset.is_some())
    }

    /// Encodes the table (see the module docs for the layout).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.producers.len() * 64);
        body.extend_from_slice(&i32::try_from(self.producers.len()).unwrap_or(i32::MAX).to_be_bytes());
        for (pid, e) in &self.producers {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.push(u8::try_from(e.recent.len()).unwrap_or(u8::MAX));
            for b in &e.recent {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.base_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a snapshot; the error says what is wrong with it.
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut r = Reader(bytes);
        let version = i16::from_be_bytes(r.take()?);
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {version}"));
        }
        let crc = u32::from_be_bytes(r.take()?);
        if crc32c::crc32c(r.0) != crc {
            return Err("snapshot checksum mismatch".into());
        }
        let count = i32::from_be_bytes(r.take()?);
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let pid = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
            let coordinator_epoch = i32::from_be_bytes(r.take()?);
            let first = i64::from_be_bytes(r.take()?);
            let [n] = r.take::<1>()?;
            let mut recent = VecDeque::with_capacity(usize::from(n));
            for _ in 0..n {
                recent.push_back(BatchRecord {
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    base_offset: i64::from_be_bytes(r.take()?),
                    last_offset: i64::from_be_bytes(r.take()?),
                });
            }
            let txn_first_offset = (first >= 0).then_some(first);
            producers.insert(pid, ProducerEntry { epoch, coordinator_epoch, recent, txn_first_offset });
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the last producer", r.0.len()));
        }
        Ok(Self { producers })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let (head, rest) = self.0.split_at_checked(N).ok_or("snapshot truncated")?;
        self.0 = rest;
        let mut out = [0; N];
        out.copy_from_slice(head);
        Ok(out)
    }
}

/// `<dir>/<offset in 20 digits>.snapshot`.
pub(crate) fn snapshot_name(offset: Offset) -> String {
    super::segment::file_name(offset, SNAPSHOT_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::assign_offsets;
    use crate::record::{ProducerStamp, Record, encode_batch, encode_control_batch};

    fn txn(pid: i64, seq: i32) -> ProducerStamp {
        ProducerStamp { producer_id: pid, producer_epoch: 0, base_sequence: seq, transactional: true }
    }

    fn appended(mut b: bytes::BytesMut, offset: Offset) -> bytes::BytesMut {
        assign_offsets(&mut b, offset, 0);
        b
    }

    #[test]
    fn transactions_open_and_close_and_snapshots_round_trip() {
        let mut table = ProducerTable::default();
        let b = appended(encode_batch(&[Record::new("a"), Record::new("b")], txn(4, 0), 0), 10);
        assert_eq!(table.record(&BatchView::parse(&b).expect("valid"), None), None);
        let b = appended(encode_batch(&[Record::new("c")], txn(4, 2), 0), 12);
        table.record(&BatchView::parse(&b).expect("valid"), None);
        assert_eq!(table.first_unstable_offset(), Some(10));

        let decoded = ProducerTable::decode(&table.encode()).expect("round trip");
        assert_eq!(decoded, table);

        let m = appended(encode_control_batch(ControlType::Abort, 4, 0, 0, 0), 13);
        let view = BatchView::parse(&m).expect("valid");
        let aborted = table.record(&view, Some(ControlType::Abort));
        assert_eq!(aborted, Some(AbortedTransaction { producer_id: 4, first_offset: 10, last_offset: 13 }));
        assert_eq!(table.first_unstable_offset(), None);

        let mut damaged = table.encode();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(ProducerTable::decode(&damaged).is_err());
    }
}
