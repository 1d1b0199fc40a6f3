//! Transaction coordinator state as records of the compacted topic
//! `__transaction_state`, in Kafka's layout, so it survives restarts and
//! compaction keeps only each transactional id's latest state.
//!
//! Key (`TransactionLogKey` v0): `version: i16 = 0, transactional_id:
//! string`. Value (`TransactionLogValue` v0): `version: i16 = 0,
//! producer_id: i64, producer_epoch: i16, transaction_timeout_ms: i32,
//! transaction_status: i8, transaction_partitions: [topic: string,
//! partition_ids: [i32]], transaction_last_update_timestamp_ms: i64,
//! transaction_start_timestamp_ms: i64`. Arrays are an `i32` count (-1 for
//! null); strings an `i16` length and UTF-8 bytes; all big-endian. Kafka
//! keeps these schemas outside its client library, so they are written
//! here by hand, as the offsets' are ([`crate::group::offsets`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnStatus};
use crate::group::offsets::{get_str, put_str};
use crate::types::TopicPartition;

/// Encodes the record key of a transactional id.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    put_str(&mut buf, transactional_id);
    buf.freeze()
}

/// Decodes a key.
pub fn decode_key(bytes: &Bytes) -> Option<String> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 || buf.get_i16() != 0 {
        return None;
    }
    get_str(&mut buf)
}

/// Encodes the record value of a transactional id's state.
pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i64(m.producer_id);
    buf.put_i16(m.producer_epoch);
    buf.put_i32(m.timeout_ms);
    buf.put_i8(m.status.id());
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in &m.partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    buf.put_i32(i32::try_from(by_topic.len()).unwrap_or(i32::MAX));
    for (topic, partitions) in by_topic {
        put_str(&mut buf, topic);
        buf.put_i32(i32::try_from(partitions.len()).unwrap_or(i32::MAX));
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(m.last_update_ms);
    buf.put_i64(m.start_ms);
    buf.freeze()
}

/// Decodes a state value for a transactional id; `None` if malformed.
pub fn decode_value(transactional_id: &str, bytes: &Bytes) -> Option<TxnMetadata> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 + 8 + 2 + 4 + 1 + 4 || buf.get_i16() != 0 {
        return None;
    }
    let producer_id = buf.get_i64();
    let producer_epoch = buf.get_i16();
    let timeout_ms = buf.get_i32();
    let status = TxnStatus::from_id(buf.get_i8())?;
    let topics = buf.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_str(&mut buf)?;
        if buf.remaining() < 4 {
            return None;
        }
        let n = buf.get_i32();
        if buf.remaining() < usize::try_from(n.max(0)).ok()? * 4 {
            return None;
        }
        for _ in 0..n.max(0) {
            partitions.insert(TopicPartition::new(topic.clone(), buf.get_i32()));
        }
    }
    if buf.remaining() < 16 {
        return None;
    }
    let last_update_ms = buf.get_i64();
    let start_ms = buf.get_i64();
    Some(TxnMetadata {
        transactional_id: transactional_id.to_owned(),
        producer_id,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let m = TxnMetadata {
            transactional_id: "app-0_1".into(),
            producer_id: 12,
            producer_epoch: 3,
            timeout_ms: 60_000,
            status: TxnStatus::Ongoing,
            partitions: [TopicPartition::new("a", 0), TopicPartition::new("a", 2), TopicPartition::new("b", 1)].into(),
            start_ms: 100,
            last_update_ms: 200,
        };
        assert_eq!(decode_key(&encode_key("app-0_1")).as_deref(), Some("app-0_1"));
        assert_eq!(decode_value("app-0_1", &encode_value(&m)), Some(m));
        assert_eq!(decode_value("x", &Bytes::from_static(&[0, 0, 1])), None);
    }
}
