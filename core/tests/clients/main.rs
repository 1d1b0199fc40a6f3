//! The embedded clients and consumer groups on a real data directory.

mod groups;
mod transactions;

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_core::client::partitioner::partition_for_key;
use plexus_core::client::{
    Admin, Consumer, ConsumerConfig, EmbeddedAdmin, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig,
    SeekTo,
};
use plexus_core::{Error, Log, LogConfig, Record, TopicConfig, TopicPartition};

pub(crate) fn open(dir: &std::path::Path) -> Log {
    Log::open(LogConfig::new(dir)).expect("open log")
}

pub(crate) async fn produce(
    log: &Log,
    topic: &str,
    n: usize,
    key_of: impl Fn(usize) -> String,
) -> Vec<(String, String)> {
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    let mut deliveries = Vec::new();
    let mut sent = Vec::new();
    for i in 0..n {
        let key = key_of(i);
        let value = format!("{key}/{i}");
        deliveries.push(producer.send(topic, Record::with_key(key.clone(), value.clone())));
        sent.push((key, value));
    }
    for d in deliveries {
        d.await.expect("acknowledged");
    }
    producer.close().await.expect("close");
    sent
}

pub(crate) fn earliest(group: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(group);
    c.set("auto.offset.reset", "earliest").expect("valid");
    c.set("heartbeat.interval.ms", "50").expect("valid");
    c.set("session.timeout.ms", "2000").expect("valid");
    c.set("enable.auto.commit", "false").expect("valid");
    c
}

async fn read_partition(log: &Log, tp: &TopicPartition, from: SeekTo) -> Vec<(i64, String, String)> {
    let mut consumer = EmbeddedConsumer::new(log.clone(), ConsumerConfig::without_group());
    consumer.assign(std::slice::from_ref(tp)).await.expect("assign");
    consumer.seek(tp, from).await.expect("seek");
    let mut out = Vec::new();
    loop {
        let records = consumer.poll(Duration::from_millis(200)).await.expect("poll");
        if records.is_empty() {
            return out;
        }
        for r in records {
            let text = |b: Option<bytes::Bytes>| String::from_utf8(b.unwrap_or_default().to_vec()).expect("utf8");
            out.push((r.offset, text(r.key), text(r.value)));
        }
    }
}

#[tokio::test]
async fn keys_land_where_kafka_puts_them_and_keep_their_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("orders", 4, TopicConfig::default()).expect("create");
    let sent = produce(&log, "orders", 400, |i| format!("customer-{}", i % 13)).await;
    for p in 0..4 {
        let tp = TopicPartition::new("orders", p);
        let got = read_partition(&log, &tp, SeekTo::Beginning).await;
        let expected: Vec<(String, String)> =
            sent.iter().filter(|(k, _)| partition_for_key(k.as_bytes(), 4) == p).cloned().collect();
        let got_kv: Vec<(String, String)> = got.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(got_kv, expected, "partition {p} holds its keys in send order");
        assert!(got.iter().enumerate().all(|(i, (o, _, _))| *o == i as i64), "offsets are dense from 0");
    }
    log.close().expect("close");
}

#[tokio::test]
async fn replays_from_an_offset_and_from_a_timestamp() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("events", 1, TopicConfig::default()).expect("create");
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    for i in 0..100i64 {
        producer.send("events", Record::new(format!("e{i}")).timestamp(1_000_000 + i * 10)).await.expect("sent");
    }
    let tp = TopicPartition::new("events", 0);
    let from_offset = read_partition(&log, &tp, SeekTo::Offset(42)).await;
    assert_eq!(from_offset.len(), 58);
    assert_eq!(from_offset[0], (42, String::new(), "e42".into()));
    let from_time = read_partition(&log, &tp, SeekTo::Timestamp(1_000_000 + 705)).await;
    assert_eq!(from_time[0].0, 71, "the first record at or after the time");
    assert!(read_partition(&log, &tp, SeekTo::Timestamp(9_999_999)).await.is_empty());
    assert!(read_partition(&log, &tp, SeekTo::End).await.is_empty());
    log.close().expect("close");
}

#[tokio::test]
async fn retried_batches_are_not_written_twice() {
    use plexus_core::record::{ProducerStamp, encode_batch};
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("t", 1, TopicConfig::default()).expect("create");
    let tp = TopicPartition::new("t", 0);
    let pid = log.allocate_producer_id().expect("pid");
    let batch = |seq| encode_batch(&[Record::new("a"), Record::new("b")], ProducerStamp::idempotent(pid, 0, seq), 1);
    let first = log.append(&tp, batch(0)).await.expect("append");
    let retry = log.append(&tp, batch(0)).await.expect("a retry is acknowledged");
    assert_eq!((retry.base_offset, retry.last_offset), (first.base_offset, first.last_offset));
    assert!(retry.duplicate);
    let gap = log.append(&tp, batch(5)).await.expect_err("a sequence gap is refused");
    assert!(matches!(gap, Error::OutOfOrderSequence { expected: 2, got: 5, .. }), "{gap}");
    log.append(&tp, batch(2)).await.expect("the next sequence");
    assert_eq!(log.offsets(&tp).expect("offsets").2, 4, "four records, not six");
    log.close().expect("close");
}

#[tokio::test]
async fn admin_checks_names_sizes_and_partition_counts() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    let admin = EmbeddedAdmin::new(log.clone());
    let err = admin.create_topic("bad name", 1, TopicConfig::default()).await.expect_err("invalid");
    assert!(err.to_string().contains("bad name"), "{err}");
    admin
        .create_topic("small", 2, TopicConfig::from_pairs([("max.message.bytes", "200")]).expect("cfg"))
        .await
        .expect("create");
    assert!(matches!(admin.create_topic("small", 1, TopicConfig::default()).await, Err(Error::TopicExists(_))));
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    let err = producer.send("small", Record::new(vec![b'x'; 500])).await.expect_err("too large");
    assert!(err.to_string().contains("max.message.bytes of 200"), "{err}");
    let err = admin.create_partitions("small", 1).await.expect_err("never shrinks");
    assert!(err.to_string().contains("can only grow"), "{err}");
    admin.create_partitions("small", 5).await.expect("grows");
    assert_eq!(log.partition_count("small").expect("count"), 5);
    let cfg = admin
        .alter_topic_config("small", &[("retention.ms".into(), "1000".into())], &["max.message.bytes".into()])
        .await
        .expect("alter");
    assert_eq!((cfg.retention_ms, cfg.max_message_bytes), (1000, TopicConfig::default().max_message_bytes));
    let err = admin
        .alter_topic_config("small", &[("retention.msec".into(), "1".into())], &[])
        .await
        .expect_err("unknown key");
    assert!(err.to_string().contains("retention.ms"), "suggests the right key: {err}");
    admin.delete_topic("small").await.expect("delete");
    assert!(!admin.list_topics().await.expect("list").contains(&"small".to_owned()));
    log.close().expect("close");
    // Topics, partition counts and configs survive a restart.
    let log = open(dir.path());
    assert!(!log.topic_exists("small"));
    log.close().expect("close");
}

#[tokio::test]
async fn a_second_open_of_the_data_directory_is_refused_with_the_owner() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    let err = Log::open(LogConfig::new(dir.path())).expect_err("locked");
    let text = err.to_string();
    assert!(text.contains("is in use by process") && text.contains(&std::process::id().to_string()), "{text}");
    log.close().expect("close");
}

#[tokio::test]
async fn offsets_committed_synchronously_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("jobs", 3, TopicConfig::default()).expect("create");
    produce(&log, "jobs", 90, |i| format!("k{i}")).await;
    let mut config = earliest("workers");
    config.set("max.poll.records", "10").expect("valid");
    let mut consumer = EmbeddedConsumer::new(log.clone(), config);
    consumer.subscribe(&["jobs"]).await.expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < 40 {
        for r in consumer.poll(Duration::from_secs(5)).await.expect("poll") {
            seen.push(r.value);
        }
    }
    consumer.commit_sync().await.expect("commit");
    let committed: BTreeMap<_, _> = consumer.committed(&consumer.assignment()).await.expect("committed");
    assert_eq!(committed.values().sum::<i64>() as usize, seen.len());
    consumer.close().await.expect("close");
    log.close().expect("close");

    let log = open(dir.path());
    let mut consumer = EmbeddedConsumer::new(log.clone(), earliest("workers"));
    consumer.subscribe(&["jobs"]).await.expect("subscribe");
    while seen.len() < 90 {
        let records = consumer.poll(Duration::from_secs(5)).await.expect("poll");
        assert!(!records.is_empty(), "the rest arrives");
        seen.extend(records.into_iter().map(|r| r.value));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 90, "every record exactly once across the restart");
    consumer.close().await.expect("close");
    log.close().expect("close");
}

#[tokio::test]
async fn a_burst_of_sends_is_split_into_batches_of_batch_size() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("burst", 1, TopicConfig::default()).expect("create");
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    // 64k records of 100 bytes sent at once: 6.5 MB, far past max.message.bytes
    // if it went as one batch.
    let deliveries: Vec<_> = (0..65_536).map(|i| producer.send("burst", Record::new(format!("{i:0>100}")))).collect();
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(d.await.expect("acknowledged").offset, i as i64, "in order");
    }
    producer.close().await.expect("close");
    log.close().expect("close");
}
