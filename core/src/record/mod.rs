//! Records: what producers send and consumers receive, and the Kafka
//! RecordBatch v2 format they travel and rest in.
//!
//! Producers encode records into batches with [`encode_batch`] (the
//! `kafka-protocol` crate's encoder); the log stores batches as they came,
//! patching only the base offset and leader epoch ([`batch`]); consumers
//! decode them with [`decode_records`].

pub mod batch;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, Record as WireRecord, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};

use crate::types::{Offset, PartitionId, Timestamp};

/// A record header: a string key and an optional binary value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The header's value; `None` is Kafka's null.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self { key: key.into(), value: Some(value.into()) }
    }
}

/// A record to produce. A `None` value on a compacted topic is a tombstone:
/// it deletes its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The key; records with equal keys go to the same partition.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Creation time in ms since the epoch; `None` means "now".
    pub timestamp: Option<Timestamp>,
}

impl Record {
    /// A record with a value and no key.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self { value: Some(value.into()), ..Self::default() }
    }

    /// A record with a key and a value.
    pub fn with_key(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self { key: Some(key.into()), value: Some(value.into()), ..Self::default() }
    }

    /// A tombstone for a key.
    pub fn tombstone(key: impl Into<Bytes>) -> Self {
        Self { key: Some(key.into()), ..Self::default() }
    }

    /// Sets the timestamp.
    #[must_use]
    pub fn timestamp(mut self, ts: Timestamp) -> Self {
        self.timestamp = Some(ts);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Approximate encoded size, used for batching decisions.
    pub fn estimated_size(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        let headers: usize = self.headers.iter().map(|h| h.key.len() + len(&h.value) + 4).sum();
        len(&self.key) + len(&self.value) + headers + 16
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: PartitionId,
    /// The record's offset.
    pub offset: Offset,
    /// Its timestamp (creation time, or append time if the topic says so).
    pub timestamp: Timestamp,
    /// The key.
    pub key: Option<Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}

/// Identity of an idempotent producer, stamped into its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record.
    pub base_sequence: i32,
    /// Whether the batch belongs to a transaction.
    pub transactional: bool,
}

impl ProducerStamp {
    /// The stamp of a producer without idempotence.
    pub const NONE: ProducerStamp =
        ProducerStamp { producer_id: -1, producer_epoch: -1, base_sequence: -1, transactional: false };

    /// The stamp of an idempotent producer's batch, outside transactions.
    pub fn idempotent(producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        Self { producer_id, producer_epoch, base_sequence, transactional: false }
    }
}

/// The kind of a transaction marker (a control record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// The transaction's records are aborted: `read_committed` readers skip them.
    Abort,
    /// The transaction's records are committed.
    Commit,
}

impl ControlType {
    /// Kafka's control record key: version 0, then the type (0 abort, 1 commit).
    fn key(self) -> [u8; 4] {
        [0, 0, 0, u8::from(self == ControlType::Commit)]
    }

    /// Reads a control record's key.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        match key {
            [0, 0, 0, 0] => Some(ControlType::Abort),
            [0, 0, 0, 1] => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// Encodes a transaction marker: a control batch of one control record,
/// as Kafka's `EndTransactionMarker` (key: version and type; value: version
/// 0 and the coordinator epoch).
pub fn encode_control_batch(
    kind: ControlType,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    now: Timestamp,
) -> BytesMut {
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = WireRecord {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now,
        key: Some(Bytes::copy_from_slice(&kind.key())),
        value: Some(Bytes::from(value)),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::with_capacity(80);
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    if let Err(e) = RecordBatchEncoder::encode(&mut buf, std::iter::once(&record), &options) {
        unreachable!("encoding one uncompressed record into memory cannot fail: {e}");
    }
    buf
}

/// The type of the marker in a control batch, or `None` for a data batch
/// or an unknown control record.
pub fn control_type(batch: &batch::BatchView<'_>) -> Option<ControlType> {
    if !batch.is_control() {
        return None;
    }
    let sets = batch::decode_batches(Bytes::copy_from_slice(batch.bytes())).ok()?;
    let record = sets.into_iter().flat_map(|s| s.records).next()?;
    ControlType::from_key(record.key.as_deref()?)
}

/// A transaction aborted in a partition: its producer and offset range, as
/// in Kafka's transaction index and fetch responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer that aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record in the partition.
    pub first_offset: Offset,
    /// Offset of its abort marker.
    pub last_offset: Offset,
}

/// Encodes records into one RecordBatch v2 with base offset 0 (the log
/// assigns the real one), using the `kafka-protocol` encoder.
///
/// Records without a timestamp get `now`.
pub fn encode_batch(records: &[Record], stamp: ProducerStamp, now: Timestamp) -> BytesMut {
    let wire: Vec<WireRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            WireRecord {
                transactional: stamp.transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: stamp.producer_id,
                producer_epoch: stamp.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                // The encoder keeps records in one batch while offset - sequence
                // stays constant; -1 + i keeps a non-idempotent batch's base at -1.
                sequence: stamp.base_sequence.wrapping_add(i),
                timestamp: r.timestamp.unwrap_or(now),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|h| (StrBytes::from_string(h.key.clone()), h.value.clone()))
                    .collect::<IndexMap<_, _>>(),
            }
        })
        .collect();
    let mut buf = BytesMut::with_capacity(records.iter().map(Record::estimated_size).sum::<usize>() + 64);
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    // Encoding into memory with no compression only fails for more than
    // i32::MAX records in a batch, which the producer never builds.
    if let Err(e) = RecordBatchEncoder::encode(&mut buf, wire.iter(), &options) {
        unreachable!("encoding an uncompressed batch into memory cannot fail: {e}");
    }
    buf
}

/// Decodes the records of whole batches, keeping those at or after `from`
/// and skipping control batches.
pub fn decode_records(
    topic: &str,
    partition: PartitionId,
    bytes: Bytes,
    from: Offset,
) -> Result<Vec<ConsumerRecord>, String> {
    decode_committed(topic, partition, bytes, from, None)
}

/// Decodes the records of whole batches at or after `from`, skipping
/// control batches and, when `aborted` is given (a `read_committed` fetch),
/// the records of aborted transactions.
///
/// This is Kafka's consumer-side filter: `aborted` lists the transactions
/// aborted in the fetched range, by producer and first offset. A producer
/// becomes "aborted" once the read reaches its transaction's first offset,
/// and stops being so at its abort marker; meanwhile its transactional
/// records are skipped.
pub fn decode_committed(
    topic: &str,
    partition: PartitionId,
    bytes: Bytes,
    from: Offset,
    aborted: Option<&[AbortedTransaction]>,
) -> Result<Vec<ConsumerRecord>, String> {
    let mut pending: Vec<AbortedTransaction> = aborted.map(<[_]>::to_vec).unwrap_or_default();
    pending.sort_by_key(|a| std::cmp::Reverse(a.first_offset));
    let mut aborting: Vec<i64> = Vec::new();
    let mut out = Vec::new();
    for set in batch::decode_batches(bytes)? {
        for r in set.records {
            while pending.last().is_some_and(|a| a.first_offset <= r.offset) {
                if let Some(a) = pending.pop() {
                    aborting.push(a.producer_id);
                }
            }
            if r.control {
                if r.key.as_deref().and_then(ControlType::from_key) == Some(ControlType::Abort) {
                    aborting.retain(|p| *p != r.producer_id);
                }
                continue;
            }
            if r.offset < from || (r.transactional && aborting.contains(&r.producer_id)) {
                continue;
            }
            out.push(ConsumerRecord {
                topic: topic.to_owned(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|(k, v)| Header { key: k.as_str().to_owned(), value: v }).collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::batch::BatchView;
    use super::*;

    #[test]
    fn encodes_one_batch_that_round_trips() {
        let records = vec![
            Record::with_key("k1", "v1").timestamp(10).header("h", "x"),
            Record::new("v2").timestamp(12),
            Record::tombstone("k3").timestamp(11),
        ];
        let stamp = ProducerStamp::idempotent(7, 1, 40);
        let buf = encode_batch(&records, stamp, 0);
        let view = BatchView::parse(&buf).expect("valid batch");
        assert_eq!(view.size(), buf.len(), "one batch");
        view.verify().expect("crc");
        assert_eq!(view.records_count(), 3);
        assert_eq!(view.last_offset_delta(), 2);
        assert_eq!(view.max_timestamp(), 12);
        assert_eq!(view.producer_id(), 7);
        assert_eq!(view.base_sequence(), 40);

        let mut patched = buf.clone();
        batch::assign_offsets(&mut patched, 100, 3);
        let view = BatchView::parse(&patched).expect("valid batch");
        view.verify().expect("offsets lie outside the crc");
        assert_eq!((view.base_offset(), view.last_offset(), view.leader_epoch()), (100, 102, 3));

        let decoded = decode_records("t", 0, patched.freeze(), 101).expect("decodes");
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].offset, 101);
        assert_eq!(decoded[0].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(decoded[1].key.as_deref(), Some(&b"k3"[..]));
        assert_eq!(decoded[1].value, None);
    }

    #[test]
    fn non_idempotent_records_stay_in_one_batch() {
        let records: Vec<_> = (0..10).map(|i| Record::new(format!("v{i}"))).collect();
        let buf = encode_batch(&records, ProducerStamp::NONE, 5);
        let view = BatchView::parse(&buf).expect("valid");
        assert_eq!(view.size(), buf.len());
        assert_eq!(view.base_sequence(), -1);
        assert_eq!(view.records_count(), 10);
    }

    #[test]
    fn control_batches_carry_their_marker() {
        let buf = encode_control_batch(ControlType::Commit, 9, 2, 0, 100);
        let view = BatchView::parse(&buf).expect("valid batch");
        view.verify().expect("crc");
        assert!(view.is_control() && view.is_transactional());
        assert_eq!((view.producer_id(), view.producer_epoch(), view.records_count()), (9, 2, 1));
        assert_eq!(control_type(&view), Some(ControlType::Commit));
        let data = encode_batch(&[Record::new("v")], ProducerStamp::NONE, 0);
        assert_eq!(control_type(&BatchView::parse(&data).expect("valid")), None);
    }

    #[test]
    fn read_committed_skips_aborted_transactions_only() {
        // Offsets: 0 pid 1 (aborted), 1 pid 2 (committed), 2 abort marker of
        // pid 1, 3 commit marker of pid 2, 4 pid 1 again (a later, committed
        // transaction), 5 its commit marker.
        let txn =
            |pid, seq| ProducerStamp { producer_id: pid, producer_epoch: 0, base_sequence: seq, transactional: true };
        let mut bytes = BytesMut::new();
        let mut push = |mut b: BytesMut, offset| {
            batch::assign_offsets(&mut b, offset, 0);
            bytes.extend_from_slice(&b);
        };
        push(encode_batch(&[Record::new("aborted")], txn(1, 0), 0), 0);
        push(encode_batch(&[Record::new("kept-1")], txn(2, 0), 0), 1);
        push(encode_control_batch(ControlType::Abort, 1, 0, 0, 0), 2);
        push(encode_control_batch(ControlType::Commit, 2, 0, 0, 0), 3);
        push(encode_batch(&[Record::new("kept-4")], txn(1, 1), 0), 4);
        push(encode_control_batch(ControlType::Commit, 1, 0, 0, 0), 5);
        let bytes = bytes.freeze();
        let aborted = [AbortedTransaction { producer_id: 1, first_offset: 0, last_offset: 2 }];
        let committed = decode_committed("t", 0, bytes.clone(), 0, Some(&aborted)).expect("decodes");
        let offsets: Vec<_> = committed.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [1, 4]);
        let everything = decode_records("t", 0, bytes, 0).expect("decodes");
        assert_eq!(everything.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 4]);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut buf = encode_batch(&[Record::new("value")], ProducerStamp::NONE, 5);
        let last = buf.len() - 2;
        buf[last] ^= 0x10;
        let err = BatchView::parse(&buf).expect("header intact").verify().expect_err("crc must fail");
        assert!(matches!(err, batch::BatchError::BadCrc { .. }), "{err}");
    }
}
