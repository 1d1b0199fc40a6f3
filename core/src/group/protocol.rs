//! The consumer protocol's metadata: what a member tells the group about
//! its subscription, and what the leader hands back as its assignment.
//!
//! Encoded exactly as Kafka's Java consumer does (a version prefix, then
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` from the
//! `kafka-protocol` crate), so the same bytes work over the Kafka protocol.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedPartitions,
};
use kafka_protocol::messages::consumer_protocol_subscription::{
    ConsumerProtocolSubscription, TopicPartition as OwnedPartitions,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::types::TopicPartition;

/// The version of the consumer protocol metadata written.
const VERSION: i16 = 3;

/// A member's subscription metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Topics subscribed to.
    pub topics: Vec<String>,
    /// Partitions the member owns now (cooperative rebalancing).
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation in which it got them.
    pub generation: i32,
}

fn grouped(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
}

fn with_version(version: i16, encode: impl FnOnce(&mut BytesMut) -> Result<(), String>) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding into memory fails only for fields longer than the format
    // allows (topic names are validated to 249 characters).
    if let Err(e) = encode(&mut buf) {
        tracing::error!(%e, "encoding consumer protocol metadata failed");
    }
    buf.freeze()
}

/// Encodes a subscription.
pub fn encode_subscription(s: &Subscription) -> Bytes {
    let msg = ConsumerProtocolSubscription::default()
        .with_topics(s.topics.iter().map(|t| StrBytes::from_string(t.clone())).collect())
        .with_owned_partitions(
            grouped(&s.owned_partitions)
                .into_iter()
                .map(|(t, ps)| {
                    OwnedPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_owned())))
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_generation_id(s.generation);
    with_version(VERSION, |buf| msg.encode(buf, VERSION).map_err(|e| e.to_string()))
}

/// Decodes a subscription.
pub fn decode_subscription(bytes: &Bytes) -> Result<Subscription, String> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Err("subscription metadata too short".into());
    }
    let version = buf.get_i16().clamp(0, VERSION);
    let msg = ConsumerProtocolSubscription::decode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(Subscription {
        topics: msg.topics.iter().map(|t| t.as_str().to_owned()).collect(),
        owned_partitions: msg
            .owned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| TopicPartition::new(tp.topic.0.as_str(), *p)))
            .collect(),
        generation: msg.generation_id,
    })
}

/// Encodes an assignment.
pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let msg = ConsumerProtocolAssignment::default().with_assigned_partitions(
        grouped(partitions)
            .into_iter()
            .map(|(t, ps)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_owned())))
                    .with_partitions(ps)
            })
            .collect(),
    );
    with_version(VERSION, |buf| msg.encode(buf, VERSION).map_err(|e| e.to_string()))
}

/// Decodes an assignment; empty bytes are an empty assignment.
pub fn decode_assignment(bytes: &Bytes) -> Result<Vec<TopicPartition>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Err("assignment metadata too short".into());
    }
    let version = buf.get_i16().clamp(0, VERSION);
    let msg = ConsumerProtocolAssignment::decode(&mut buf, version).map_err(|e| e.to_string())?;
    let mut out: Vec<TopicPartition> = msg
        .assigned_partitions
        .iter()
        .flat_map(|tp| tp.partitions.iter().map(|p| TopicPartition::new(tp.topic.0.as_str(), *p)))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = Subscription {
            topics: vec!["a".into(), "b".into()],
            owned_partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("a", 3)],
            generation: 7,
        };
        assert_eq!(decode_subscription(&encode_subscription(&s)), Ok(s));
        let a = vec![TopicPartition::new("a", 0), TopicPartition::new("b", 2)];
        assert_eq!(decode_assignment(&encode_assignment(&a)), Ok(a));
    }
}
