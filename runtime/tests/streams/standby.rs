//! Standby replicas: with `num.standby.replicas = 1` each of two instances
//! keeps a copy of the other's task from its changelog, so that when one
//! instance leaves, the other takes its task over without restoring what
//! the standby had already read.

use std::time::{Duration, Instant};

use plexus_core::client::{Admin, EmbeddedAdmin, EmbeddedClients, EmbeddedProducer, Producer, ProducerConfig};
use plexus_core::{Log, LogConfig, Record as LogRecord, TopicConfig, TopicPartition};
use plexus_runtime::{Streams, StreamsConfig};

use crate::counting_topology;

fn instance(log: &Log, state: &std::path::Path) -> Streams {
    let config = StreamsConfig::from_pairs([
        ("application.id", "standby-app"),
        ("commit.interval.ms", "50"),
        ("num.standby.replicas", "1"),
        ("state.dir", state.to_str().expect("utf8 path")),
    ])
    .expect("config");
    let mut streams =
        Streams::new(counting_topology("words", "word-counts"), config, EmbeddedClients::new(log.clone()))
            .expect("streams");
    streams.start().expect("start");
    streams
}

async fn produce(log: &Log, from: usize, n: usize) {
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    for i in from..from + n {
        let w = format!("word-{}", i % 40);
        producer.send("words", LogRecord::with_key(w.clone(), w).timestamp(i as i64)).await.expect("ack");
    }
}

fn end(log: &Log, topic: &str, partition: i32) -> i64 {
    log.offsets(&TopicPartition::new(topic, partition)).map_or(0, |o| o.2)
}

async fn until(what: &str, mut done: impl FnMut() -> bool, state: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}: {}", state());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_moves_to_its_standby_without_restoring_what_it_had_read() {
    let data = tempfile::tempdir().expect("tmp");
    let (state_a, state_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let log = Log::open(LogConfig::new(data.path())).expect("open");
    log.create_topic("words", 2, TopicConfig::default()).expect("create");
    log.create_topic("word-counts", 2, TopicConfig::default()).expect("create");
    let mut a = instance(&log, state_a.path());
    let mut b = instance(&log, state_b.path());
    // Wait until the group gives each instance one partition.
    let admin = EmbeddedAdmin::new(log.clone());
    let pid_a = std::fs::read_to_string(state_a.path().join("standby-app").join("process-id")).expect("process id");
    let deadline = Instant::now() + Duration::from_secs(30);
    let p_a = loop {
        assert!(Instant::now() < deadline, "the group never gave each instance a partition");
        // The group exists once the first thread has joined it.
        let Ok(group) = admin.describe_group("standby-app").await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let owned: Vec<(bool, Vec<i32>)> = group
            .members
            .iter()
            .map(|m| (m.client_id.contains(pid_a.trim()), m.assignment.iter().map(|tp| tp.partition).collect()))
            .collect();
        if owned.len() == 2 && owned.iter().all(|(_, ps)| ps.len() == 1) {
            break owned.iter().find(|(is_a, _)| *is_a).map(|(_, ps)| ps[0]).expect("a's partition");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let p_b = 1 - p_a;
    produce(&log, 0, 400).await;
    let changelog = "standby-app-counts-changelog";
    // Each instance's standby reads the other's changelog partition to its end.
    let caught_up = || {
        a.metrics().records_processed + b.metrics().records_processed >= 400
            && b.metrics().records_standby >= end(&log, changelog, p_a) as u64
            && a.metrics().records_standby >= end(&log, changelog, p_b) as u64
            && end(&log, changelog, p_a) > 0
    };
    let state = || {
        let ends = (end(&log, changelog, 0), end(&log, changelog, 1));
        format!("a (partition {p_a}) {:?}, b {:?}, changelog ends {ends:?}", a.metrics(), b.metrics())
    };
    until("the input is processed and both standbys caught up", caught_up, state).await;
    let restored_before = b.metrics().records_restored;
    a.close().expect("close a");
    // b now runs both tasks; more input reaches the moved one.
    produce(&log, 400, 40).await;
    let processed = || b.metrics().records_processed + a.metrics().records_processed >= 440;
    until("b processed the new input", processed, || format!("b {:?}", b.metrics())).await;
    let moved_restore = b.metrics().records_restored - restored_before;
    let full = end(&log, changelog, p_a) as u64;
    assert!(
        moved_restore < full / 2,
        "the standby had the state: {moved_restore} records restored, of a changelog partition of {full}"
    );
    b.close().expect("close b");
    log.close().expect("close");
}
