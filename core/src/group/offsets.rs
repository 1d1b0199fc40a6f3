//! Committed offsets as records of the compacted topic `__consumer_offsets`,
//! in Kafka's layout, so they survive restarts and compaction keeps only the
//! latest commit per (group, topic, partition).
//!
//! Key (`OffsetCommitKey` v1): `version: i16 = 1, group: string, topic:
//! string, partition: i32`. Value (`OffsetCommitValue` v1): `version: i16 =
//! 1, offset: i64, metadata: string, commit_timestamp: i64,
//! expire_timestamp: i64 = -1`. Strings are an `i16` length and UTF-8 bytes;
//! all big-endian. Kafka's group coordinator keeps these schemas outside
//! its client library, so they are written here by hand.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::types::{Offset, Timestamp, TopicPartition};

/// A committed offset with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The next offset to consume.
    pub offset: Offset,
    /// Free-form text the committer attached.
    pub metadata: String,
    /// When it was committed.
    pub commit_timestamp: Timestamp,
}

pub(crate) fn put_str(buf: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    buf.put_i16(len);
    buf.put_slice(&s.as_bytes()[..len.unsigned_abs() as usize]);
}

pub(crate) fn get_str(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

/// Encodes the record key of a commit.
pub fn encode_key(group: &str, tp: &TopicPartition) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    put_str(&mut buf, group);
    put_str(&mut buf, &tp.topic);
    buf.put_i32(tp.partition);
    buf.freeze()
}

/// Decodes a commit key; `None` for keys of other kinds (group metadata).
pub fn decode_key(bytes: &Bytes) -> Option<(String, TopicPartition)> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 || buf.get_i16() > 1 {
        return None;
    }
    let group = get_str(&mut buf)?;
    let topic = get_str(&mut buf)?;
    if buf.remaining() < 4 {
        return None;
    }
    Some((group, TopicPartition::new(topic, buf.get_i32())))
}

/// Encodes the record value of a commit.
pub fn encode_value(v: &OffsetAndMetadata) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    buf.put_i64(v.offset);
    put_str(&mut buf, &v.metadata);
    buf.put_i64(v.commit_timestamp);
    buf.put_i64(-1);
    buf.freeze()
}

/// Decodes a commit value.
pub fn decode_value(bytes: &Bytes) -> Option<OffsetAndMetadata> {
    let mut buf = bytes.clone();
    if buf.remaining() < 10 {
        return None;
    }
    let _version = buf.get_i16();
    let offset = buf.get_i64();
    let metadata = get_str(&mut buf)?;
    if buf.remaining() < 8 {
        return None;
    }
    Some(OffsetAndMetadata { offset, metadata, commit_timestamp: buf.get_i64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let tp = TopicPartition::new("orders", 4);
        assert_eq!(decode_key(&encode_key("billing", &tp)), Some(("billing".into(), tp)));
        let v = OffsetAndMetadata { offset: 42, metadata: "m".into(), commit_timestamp: 9 };
        assert_eq!(decode_value(&encode_value(&v)), Some(v));
    }
}
