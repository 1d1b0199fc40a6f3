//! The sparse indexes of a segment, in Kafka's on-disk layout.
//!
//! - `<base>.index`: 8-byte entries `(relativeOffset: i32, position: i32)`,
//!   big-endian, mapping the last offset of a batch to the byte position where
//!   that batch starts in `<base>.log`. One entry every `index.interval.bytes`
//!   of log.
//! - `<base>.timeindex`: 12-byte entries `(timestamp: i64, relativeOffset: i32)`:
//!   the largest timestamp seen so far and the offset where it was seen,
//!   appended with an offset-index entry when the timestamp grew.
//!
//! Both are append-only and strictly increasing. They are only hints: a
//! lookup returns an entry at or before the wanted batch, and readers check
//! that the batch at its position is the one it names (the same last
//! offset), else scan the segment from its start, so a damaged index costs a
//! scan, never a wrong answer. Indexes are rebuilt from the log when missing or when they
//! fail [`OffsetIndex::sanity_check`].

use crate::types::{Offset, Timestamp};

/// Size of an offset-index entry.
pub(crate) const OFFSET_ENTRY: usize = 8;
/// Size of a time-index entry.
pub(crate) const TIME_ENTRY: usize = 12;

/// The offset index of one segment, in memory.
#[derive(Debug, Default, Clone)]
pub(crate) struct OffsetIndex {
    /// `(relative offset, position)`, both increasing.
    pub(crate) entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Parses an index file; `None` if its size is not a whole number of entries.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY) {
            return None;
        }
        let entries = bytes
            .chunks_exact(OFFSET_ENTRY)
            .map(|c| (u32::from_be_bytes([c[0], c[1], c[2], c[3]]), u32::from_be_bytes([c[4], c[5], c[6], c[7]])))
            .collect();
        Some(Self { entries })
    }

    /// Encodes one entry.
    pub(crate) fn encode_entry(relative_offset: u32, position: u32) -> [u8; OFFSET_ENTRY] {
        let mut e = [0; OFFSET_ENTRY];
        e[..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        e
    }

    /// Checks that entries increase and point inside a log of `log_size` bytes.
    pub(crate) fn sanity_check(&self, log_size: u64) -> bool {
        self.entries.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && self.entries.last().is_none_or(|&(_, pos)| u64::from(pos) < log_size)
    }

    /// The last entry at or below `target` (relative): the batch holding
    /// `target` starts at or after that entry's position.
    pub(crate) fn entry_at_or_below(&self, target: u32) -> Option<(u32, u32)> {
        // An entry maps a batch's last offset to the batch's start.
        match self.entries.partition_point(|&(off, _)| off <= target) {
            0 => None,
            i => Some(self.entries[i - 1]),
        }
    }

    /// The last entry's relative offset.
    pub(crate) fn last_offset(&self) -> Option<u32> {
        self.entries.last().map(|e| e.0)
    }
}

/// The time index of one segment, in memory.
#[derive(Debug, Default, Clone)]
pub(crate) struct TimeIndex {
    /// `(max timestamp so far, relative offset)`, timestamps increasing.
    pub(crate) entries: Vec<(Timestamp, u32)>,
}

impl TimeIndex {
    /// Parses a time-index file; `None` if its size is not a whole number of entries.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(TIME_ENTRY) {
            return None;
        }
        let entries = bytes
            .chunks_exact(TIME_ENTRY)
            .map(|c| {
                let mut ts = [0; 8];
                ts.copy_from_slice(&c[..8]);
                (i64::from_be_bytes(ts), u32::from_be_bytes([c[8], c[9], c[10], c[11]]))
            })
            .collect();
        Some(Self { entries })
    }

    /// Encodes one entry.
    pub(crate) fn encode_entry(timestamp: Timestamp, relative_offset: u32) -> [u8; TIME_ENTRY] {
        let mut e = [0; TIME_ENTRY];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&relative_offset.to_be_bytes());
        e
    }

    /// Checks that timestamps and offsets do not decrease.
    pub(crate) fn sanity_check(&self) -> bool {
        self.entries.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
    }

    /// The relative offset to start searching from for the first record with
    /// a timestamp at or after `ts`: the offset of the last entry whose
    /// timestamp is below `ts` (records before it are all older), or 0.
    pub(crate) fn lookup(&self, ts: Timestamp) -> u32 {
        match self.entries.partition_point(|&(t, _)| t < ts) {
            0 => 0,
            i => self.entries[i - 1].1,
        }
    }

    /// The largest timestamp recorded.
    pub(crate) fn max_timestamp(&self) -> Option<Timestamp> {
        self.entries.last().map(|e| e.0)
    }
}

/// A relative offset, checked to fit the index's 32 bits.
pub(crate) fn relative(offset: Offset, base: Offset) -> Option<u32> {
    u32::try_from(offset.checked_sub(base)?).ok()
}
