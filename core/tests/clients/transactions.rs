//! Transactions: atomic writes across partitions, `read_committed`, fencing,
//! offsets committed with the outputs, timeouts, restarts and compaction.

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_core::client::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig,
};
use plexus_core::record::{ProducerStamp, encode_batch};
use plexus_core::txn::TxnStatus;
use plexus_core::{Log, LogConfig, Record, TopicConfig, TopicPartition};

use super::{earliest, open, produce};

fn transactional(id: &str) -> ProducerConfig {
    let mut c = ProducerConfig::default();
    c.set("transactional.id", id).expect("valid");
    c
}

/// Every value in a topic's partitions, as a consumer with this isolation
/// level reads them from the start.
async fn read_all(log: &Log, topic: &str, isolation: &str) -> Vec<String> {
    let mut config = ConsumerConfig::without_group();
    config.set("isolation.level", isolation).expect("valid");
    config.set("auto.offset.reset", "earliest").expect("valid");
    let mut consumer = EmbeddedConsumer::new(log.clone(), config);
    let partitions: Vec<TopicPartition> =
        (0..log.partition_count(topic).expect("topic")).map(|p| TopicPartition::new(topic, p)).collect();
    consumer.assign(&partitions).await.expect("assign");
    let mut out = Vec::new();
    loop {
        let records = consumer.poll(Duration::from_millis(150)).await.expect("poll");
        if records.is_empty() {
            break;
        }
        out.extend(records.into_iter().map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned()));
    }
    out.sort();
    out
}

#[tokio::test]
async fn aborted_records_are_never_visible_to_read_committed_readers() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("out", 2, TopicConfig::default()).expect("create");
    let producer = EmbeddedProducer::new(log.clone(), transactional("writer")).expect("producer");
    producer.init_transactions().await.expect("init");

    producer.begin_transaction().expect("begin");
    for v in ["a1", "a2", "a3"] {
        drop(producer.send("out", Record::with_key(v, v)));
    }
    producer.abort_transaction().await.expect("abort");

    producer.begin_transaction().expect("begin");
    for v in ["c1", "c2"] {
        drop(producer.send("out", Record::with_key(v, v)));
    }
    producer.commit_transaction().await.expect("commit");

    // A third transaction stays open: read_committed stops before it.
    producer.begin_transaction().expect("begin");
    producer.send_to("out", 0, Record::with_key("o1", "o1")).await.expect("acknowledged");
    let tp0 = TopicPartition::new("out", 0);
    let (_, hw, _) = log.offsets(&tp0).expect("offsets");
    assert!(log.last_stable_offset(&tp0).expect("lso") < hw, "the open transaction holds the LSO back");

    assert_eq!(read_all(&log, "out", "read_committed").await, ["c1", "c2"]);
    assert_eq!(read_all(&log, "out", "read_uncommitted").await, ["a1", "a2", "a3", "c1", "c2", "o1"]);

    producer.commit_transaction().await.expect("commit");
    assert_eq!(read_all(&log, "out", "read_committed").await, ["c1", "c2", "o1"]);
    assert_eq!(log.last_stable_offset(&tp0).expect("lso"), log.offsets(&tp0).expect("offsets").1);
    log.close().expect("close");
}

#[tokio::test]
async fn a_new_instance_fences_the_old_one_and_aborts_its_transaction() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("out", 1, TopicConfig::default()).expect("create");
    let zombie = EmbeddedProducer::new(log.clone(), transactional("app-task-0")).expect("producer");
    zombie.init_transactions().await.expect("init");
    zombie.begin_transaction().expect("begin");
    zombie.send("out", Record::new("from-zombie")).await.expect("acknowledged");

    let successor = EmbeddedProducer::new(log.clone(), transactional("app-task-0")).expect("producer");
    successor.init_transactions().await.expect("init fences the zombie");
    let state = log.transaction_coordinator().describe("app-task-0").expect("known id");
    assert_eq!(state.status, TxnStatus::Empty);
    assert_eq!(state.producer_epoch, 2, "one bump to fence and abort, one for the successor");

    let err = zombie.commit_transaction().await.expect_err("the zombie cannot commit");
    assert!(err.to_string().contains("fenced"), "{err}");
    let err = zombie.send("out", Record::new("late")).await.expect_err("nor write");
    assert!(err.to_string().contains("fenced"), "{err}");

    successor.begin_transaction().expect("begin");
    successor.send("out", Record::new("from-successor")).await.expect("acknowledged");
    successor.commit_transaction().await.expect("commit");
    assert_eq!(read_all(&log, "out", "read_committed").await, ["from-successor"]);
    log.close().expect("close");
}

#[tokio::test]
async fn consumed_offsets_commit_atomically_with_the_outputs() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("in", 1, TopicConfig::default()).expect("create");
    log.create_topic("out", 1, TopicConfig::default()).expect("create");
    produce(&log, "in", 10, |i| format!("k{i}")).await;
    let tp = TopicPartition::new("in", 0);

    let mut consumer = EmbeddedConsumer::new(log.clone(), earliest("copier"));
    consumer.subscribe(&["in"]).await.expect("subscribe");
    let mut records = Vec::new();
    while records.len() < 10 {
        records.extend(consumer.poll(Duration::from_secs(5)).await.expect("poll"));
    }
    let group = consumer.group_metadata().expect("a member");
    assert!(group.generation_id > 0);
    let producer = EmbeddedProducer::new(log.clone(), transactional("copier-0")).expect("producer");
    producer.init_transactions().await.expect("init");

    // First attempt aborts: neither outputs nor offsets take effect.
    producer.begin_transaction().expect("begin");
    for r in &records[..5] {
        drop(producer.send("out", Record { key: r.key.clone(), value: r.value.clone(), ..Record::default() }));
    }
    producer.send_offsets_to_transaction(&BTreeMap::from([(tp.clone(), 5)]), &group).await.expect("offsets");
    assert!(consumer.committed(std::slice::from_ref(&tp)).await.expect("committed").is_empty(), "pending only");
    producer.abort_transaction().await.expect("abort");
    assert!(consumer.committed(std::slice::from_ref(&tp)).await.expect("committed").is_empty());

    producer.begin_transaction().expect("begin");
    for r in &records {
        drop(producer.send("out", Record { key: r.key.clone(), value: r.value.clone(), ..Record::default() }));
    }
    producer.send_offsets_to_transaction(&BTreeMap::from([(tp.clone(), 10)]), &group).await.expect("offsets");
    producer.commit_transaction().await.expect("commit");
    assert_eq!(consumer.committed(std::slice::from_ref(&tp)).await.expect("committed").get(&tp), Some(&10));
    assert_eq!(read_all(&log, "out", "read_committed").await.len(), 10);

    // A stale generation is refused: the member that lost its partitions
    // cannot commit for them.
    let stale = ConsumerGroupMetadata { generation_id: group.generation_id - 1, ..group.clone() };
    producer.begin_transaction().expect("begin");
    let err = producer.send_offsets_to_transaction(&BTreeMap::from([(tp.clone(), 11)]), &stale).await;
    assert!(err.is_err(), "a stale generation must be fenced");
    producer.abort_transaction().await.expect("abort");
    consumer.close().await.expect("close");

    // The committed offsets survive a restart; the aborted ones stay gone.
    log.close().expect("close");
    let log = open(dir.path());
    let committed = log.group_coordinator().committed("copier", None);
    assert_eq!(committed.get(&tp).map(|o| o.offset), Some(10));
    log.close().expect("close");
}

#[tokio::test]
async fn a_transaction_open_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = LogConfig::new(dir.path());
    config.background_maintenance = false;
    let log = Log::open(config).expect("open");
    log.create_topic("out", 1, TopicConfig::default()).expect("create");
    let mut pc = transactional("slow");
    pc.set("transaction.timeout.ms", "100").expect("valid");
    let producer = EmbeddedProducer::new(log.clone(), pc).expect("producer");
    producer.init_transactions().await.expect("init");
    producer.begin_transaction().expect("begin");
    producer.send("out", Record::new("too-late")).await.expect("acknowledged");

    let coordinator = log.transaction_coordinator();
    assert_eq!(coordinator.abort_expired().expect("check"), 0, "not expired yet");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(coordinator.abort_expired().expect("check"), 1);
    assert_eq!(coordinator.describe("slow").expect("known").status, TxnStatus::CompleteAbort);

    let err = producer.commit_transaction().await.expect_err("fenced by the timeout");
    assert!(err.to_string().contains("fenced"), "{err}");
    assert!(read_all(&log, "out", "read_committed").await.is_empty());
    let tp = TopicPartition::new("out", 0);
    assert_eq!(log.last_stable_offset(&tp).expect("lso"), log.offsets(&tp).expect("offsets").1);
    log.close().expect("close");
}

#[tokio::test]
async fn open_transactions_and_producer_sequences_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("out", 1, TopicConfig::default()).expect("create");
    let tp = TopicPartition::new("out", 0);
    let producer = EmbeddedProducer::new(log.clone(), transactional("restarts")).expect("producer");
    producer.init_transactions().await.expect("init");
    producer.begin_transaction().expect("begin");
    producer.send("out", Record::new("committed")).await.expect("acknowledged");
    producer.commit_transaction().await.expect("commit");
    producer.begin_transaction().expect("begin");
    producer.send("out", Record::new("left-open")).await.expect("acknowledged");

    // An idempotent batch to retry after the restart.
    let pid = log.allocate_producer_id().expect("pid");
    let batch = || encode_batch(&[Record::new("once")], ProducerStamp::idempotent(pid, 0, 0), 0);
    let first = log.append(&tp, batch()).await.expect("append");
    let lso = log.last_stable_offset(&tp).expect("lso");
    drop(producer);
    log.close().expect("close");

    let log = open(dir.path());
    assert_eq!(log.last_stable_offset(&tp).expect("lso"), lso, "the open transaction is still open");
    let retried = log.append(&tp, batch()).await.expect("append");
    assert!(retried.duplicate, "the sequence survived the restart");
    assert_eq!(retried.base_offset, first.base_offset);

    let successor = EmbeddedProducer::new(log.clone(), transactional("restarts")).expect("producer");
    successor.init_transactions().await.expect("init aborts the open transaction");
    assert_eq!(read_all(&log, "out", "read_committed").await, ["committed", "once"]);
    log.close().expect("close");
}

#[tokio::test]
async fn compaction_keeps_the_committed_value_over_an_aborted_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = LogConfig::new(dir.path());
    config.background_maintenance = false;
    let log = Log::open(config).expect("open");
    let mut tc = TopicConfig::default();
    for (k, v) in [("cleanup.policy", "compact"), ("segment.bytes", "1024"), ("min.cleanable.dirty.ratio", "0.01")] {
        tc.set(k, v).expect("valid");
    }
    log.create_topic("table", 1, tc).expect("create");
    let producer = EmbeddedProducer::new(log.clone(), transactional("table-writer")).expect("producer");
    producer.init_transactions().await.expect("init");
    let filler = "x".repeat(200);
    for (value, commit) in [("v1", true), ("v2-aborted", false)] {
        producer.begin_transaction().expect("begin");
        producer.send("table", Record::with_key("k", value)).await.expect("acknowledged");
        for i in 0..6 {
            producer.send("table", Record::with_key(format!("f{i}"), filler.clone())).await.expect("acknowledged");
        }
        if commit {
            producer.commit_transaction().await.expect("commit");
        } else {
            producer.abort_transaction().await.expect("abort");
        }
    }
    // Close the last segment so both transactions are cleanable.
    producer.begin_transaction().expect("begin");
    for i in 0..6 {
        producer.send("table", Record::with_key(format!("g{i}"), filler.clone())).await.expect("acknowledged");
    }
    producer.commit_transaction().await.expect("commit");
    let stats = log.run_cleaner().expect("clean");
    assert!(stats.records_removed > 0, "{stats:?}");

    let values = read_all(&log, "table", "read_committed").await;
    assert!(values.contains(&"v1".to_owned()), "{values:?}");
    assert!(!values.contains(&"v2-aborted".to_owned()));
    let everything = read_all(&log, "table", "read_uncommitted").await;
    assert!(!everything.contains(&"v2-aborted".to_owned()), "the aborted record was cleaned away");
    log.close().expect("close");
}
