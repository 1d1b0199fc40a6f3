//! A view of one Kafka RecordBatch (magic 2) in its wire and on-disk form.
//!
//! Layout (big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//!  0  baseOffset            i64   ┐ log overhead: assigned by the log,
//!  8  batchLength           i32   ┘ length of everything after this field
//! 12  partitionLeaderEpoch  i32     not covered by the CRC
//! 16  magic                 i8      = 2
//! 17  crc                   u32     CRC32C of everything from attributes on
//! 21  attributes            i16     compression (bits 0-2), timestampType (3),
//!                                   transactional (4), control (5)
//! 23  lastOffsetDelta       i32
//! 27  baseTimestamp         i64
//! 35  maxTimestamp          i64
//! 43  producerId            i64
//! 51  producerEpoch         i16
//! 53  baseSequence          i32
//! 57  recordsCount          i32
//! 61  records...
//! ```
//!
//! The log reads and patches the header fields in place (the base offset and
//! leader epoch lie outside the CRC, so assigning offsets keeps the producer's
//! checksum valid); the records themselves are encoded and decoded with the
//! `kafka-protocol` crate's codec.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;

use crate::types::{LeaderEpoch, Offset, Timestamp};

/// Bytes before `batchLength`'s end: base offset and length.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the batch header, records excluded.
pub const HEADER_LEN: usize = 61;
/// The only record format this log stores.
pub const MAGIC: i8 = 2;

const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Why a sequence of bytes is not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        available: usize,
    },
    /// A header field has an impossible value.
    BadHeader(String),
    /// The checksum does not match.
    BadCrc {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the content.
        computed: u32,
    },
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Truncated { needed, available } => {
                write!(f, "batch truncated: {needed} bytes needed, {available} present")
            }
            BatchError::BadHeader(why) => write!(f, "bad batch header: {why}"),
            BatchError::BadCrc { stored, computed } => {
                write!(f, "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
        }
    }
}

fn get_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn get_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn get_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Reads the total size (log overhead included) of the batch that starts
/// `bytes`, from its first 12 bytes, and checks it is plausible.
pub fn batch_size(bytes: &[u8]) -> Result<usize, BatchError> {
    if bytes.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated { needed: LOG_OVERHEAD, available: bytes.len() });
    }
    let length = get_i32(bytes, 8);
    let min = HEADER_LEN - LOG_OVERHEAD;
    match usize::try_from(length) {
        Ok(len) if len >= min => Ok(LOG_OVERHEAD + len),
        _ => Err(BatchError::BadHeader(format!("batch length {length} is below the minimum {min}"))),
    }
}

/// A read-only view of one whole batch (log overhead included).
#[derive(Clone, PartialEq, Eq)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl std::fmt::Debug for BatchView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("base_offset", &self.base_offset())
            .field("last_offset", &self.last_offset())
            .field("records", &self.records_count())
            .field("size", &self.size())
            .finish()
    }
}

impl<'a> BatchView<'a> {
    /// Views the batch at the start of `bytes`, checking its length and
    /// magic byte but not its CRC (see [`BatchView::verify`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let size = batch_size(bytes)?;
        if bytes.len() < size {
            return Err(BatchError::Truncated { needed: size, available: bytes.len() });
        }
        let view = BatchView { bytes: &bytes[..size] };
        let magic = bytes[MAGIC_AT] as i8;
        if magic != MAGIC {
            return Err(BatchError::BadHeader(format!("magic byte {magic}, only record format v2 is supported")));
        }
        Ok(view)
    }

    /// The batch's bytes, log overhead included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Total size in bytes, log overhead included.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    /// Offset of the first record.
    pub fn base_offset(&self) -> Offset {
        get_i64(self.bytes, 0)
    }
    /// Offset delta of the last record.
    pub fn last_offset_delta(&self) -> i32 {
        get_i32(self.bytes, LAST_OFFSET_DELTA_AT)
    }
    /// Offset of the last record.
    pub fn last_offset(&self) -> Offset {
        self.base_offset() + i64::from(self.last_offset_delta())
    }
    /// The offset after this batch.
    pub fn next_offset(&self) -> Offset {
        self.last_offset() + 1
    }
    /// Epoch of the leader that appended the batch.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        get_i32(self.bytes, LEADER_EPOCH_AT)
    }
    /// The attribute bits.
    pub fn attributes(&self) -> i16 {
        get_i16(self.bytes, ATTRIBUTES_AT)
    }
    /// The compression codec id (0 = none).
    pub fn compression(&self) -> i16 {
        self.attributes() & COMPRESSION_MASK
    }
    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }
    /// Whether timestamps were set by the log at append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & TIMESTAMP_TYPE_BIT != 0
    }
    /// Timestamp of the first record.
    pub fn base_timestamp(&self) -> Timestamp {
        get_i64(self.bytes, BASE_TIMESTAMP_AT)
    }
    /// Largest timestamp in the batch.
    pub fn max_timestamp(&self) -> Timestamp {
        get_i64(self.bytes, MAX_TIMESTAMP_AT)
    }
    /// Producer id, or -1.
    pub fn producer_id(&self) -> i64 {
        get_i64(self.bytes, PRODUCER_ID_AT)
    }
    /// Producer epoch, or -1.
    pub fn producer_epoch(&self) -> i16 {
        get_i16(self.bytes, PRODUCER_EPOCH_AT)
    }
    /// Sequence number of the first record, or -1.
    pub fn base_sequence(&self) -> i32 {
        get_i32(self.bytes, BASE_SEQUENCE_AT)
    }
    /// Sequence number of the last record.
    pub fn last_sequence(&self) -> i32 {
        self.base_sequence().wrapping_add(self.last_offset_delta())
    }
    /// Number of records.
    pub fn records_count(&self) -> i32 {
        get_i32(self.bytes, RECORDS_COUNT_AT)
    }
    /// The checksum stored in the header.
    pub fn stored_crc(&self) -> u32 {
        u32::from_be_bytes([self.bytes[CRC_AT], self.bytes[CRC_AT + 1], self.bytes[CRC_AT + 2], self.bytes[CRC_AT + 3]])
    }
    /// The checksum of the content.
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..])
    }

    /// Checks the CRC and the header fields' consistency.
    pub fn verify(&self) -> Result<(), BatchError> {
        let (stored, computed) = (self.stored_crc(), self.computed_crc());
        if stored != computed {
            return Err(BatchError::BadCrc { stored, computed });
        }
        let count = self.records_count();
        let delta = self.last_offset_delta();
        if count < 0 || delta < 0 {
            return Err(BatchError::BadHeader(format!("records count {count}, last offset delta {delta}")));
        }
        Ok(())
    }
}

/// Splits a buffer of consecutive whole batches.
pub fn iter_batches(bytes: &[u8]) -> impl Iterator<Item = Result<BatchView<'_>, BatchError>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match BatchView::parse(rest) {
            Ok(view) => {
                rest = &rest[view.size()..];
                Some(Ok(view))
            }
            Err(e) => {
                rest = &[];
                Some(Err(e))
            }
        }
    })
}

/// Header fields the log rewrites when it appends a batch.
pub(crate) fn assign_offsets(batch: &mut [u8], base_offset: Offset, leader_epoch: LeaderEpoch) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Sets `LogAppendTime` on a batch: the timestamp type bit and the max
/// timestamp, then recomputes the CRC these fields are covered by.
pub(crate) fn set_log_append_time(batch: &mut [u8], now: Timestamp) {
    let attributes = get_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes the records of every batch in `bytes` with the `kafka-protocol`
/// codec (which also checks each CRC).
pub fn decode_batches(bytes: Bytes) -> Result<Vec<kafka_protocol::records::RecordSet>, String> {
    let mut buf = bytes;
    let mut sets = Vec::new();
    while buf.has_remaining() {
        sets.push(RecordBatchDecoder::decode(&mut buf).map_err(|e| e.to_string())?);
    }
    Ok(sets)
}

/// A buffer holding whole batches, owned so the log can patch them in place.
pub type BatchBuf = BytesMut;
