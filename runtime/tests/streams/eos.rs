//! Exactly once under SIGKILL: a child process runs a counting topology
//! with `processing.guarantee=exactly_once_v2` while it produces input, and
//! is killed at random moments, round after round; then the application
//! finishes in this process. Every word's counts in the output must be
//! exactly 1, 2, …, n for the n times it occurs in the input: a duplicate
//! would repeat a count, a loss would skip one.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_core::client::{
    Consumer, ConsumerConfig, EmbeddedClients, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig,
};
use plexus_core::{Log, LogConfig, Record as LogRecord, TopicConfig, TopicPartition};
use plexus_runtime::{Streams, StreamsConfig};
use rand::{Rng, SeedableRng};

use super::counting_topology;

const CHILD_ENV: &str = "PLEXUS_EOS_CHILD";
const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const WORDS: [&str; 7] = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu"];

fn config(dir: &std::path::Path) -> StreamsConfig {
    StreamsConfig::from_pairs([
        ("application.id", "eos-count"),
        ("processing.guarantee", "exactly_once_v2"),
        ("commit.interval.ms", "30"),
        ("state.dir", dir.join("state").to_str().expect("utf8")),
    ])
    .expect("config")
}

/// The child: produces input and counts it until killed.
#[test]
fn eos_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = std::path::PathBuf::from(dir);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let log = Log::open(LogConfig::new(dir.join("log"))).expect("open");
        for topic in [INPUT, OUTPUT] {
            if !log.topic_exists(topic) {
                log.create_topic(topic, 2, TopicConfig::default()).expect("create");
            }
        }
        let mut app = Streams::new(counting_topology(INPUT, OUTPUT), config(&dir), EmbeddedClients::new(log.clone()))
            .expect("streams");
        app.start().expect("start");
        println!("ready");
        let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
        for i in 0u64.. {
            let w = WORDS[(i * 5 % 7) as usize];
            producer.send(INPUT, LogRecord::with_key(w, w)).await.expect("ack");
            if i % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
}

/// Every record of a topic, read_committed, per partition in order: (key, value bytes).
async fn read_all(log: &Log, topic: &str) -> Vec<(String, bytes::Bytes)> {
    let mut config = ConsumerConfig::without_group();
    config.set("auto.offset.reset", "earliest").expect("valid");
    config.set("isolation.level", "read_committed").expect("valid");
    let mut consumer = EmbeddedConsumer::new(log.clone(), config);
    let partitions: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new(topic, p)).collect();
    consumer.assign(&partitions).await.expect("assign");
    let mut by_partition: BTreeMap<i32, Vec<(String, bytes::Bytes)>> = BTreeMap::new();
    loop {
        let records = consumer.poll(Duration::from_millis(200)).await.expect("poll");
        if records.is_empty() {
            break;
        }
        for r in records {
            let k = String::from_utf8(r.key.unwrap_or_default().to_vec()).expect("utf8");
            by_partition.entry(r.partition).or_default().push((k, r.value.unwrap_or_default()));
        }
    }
    by_partition.into_values().flatten().collect()
}

#[test]
fn exactly_once_counts_survive_sigkill() {
    let seed: u64 = std::env::var("PLEXUS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (rerun with PLEXUS_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tmp");
    for round in 0..10 {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "eos::eos_child", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let started = lines.by_ref().map_while(Result::ok).any(|l| l.ends_with("ready"));
        assert!(started, "round {round}: the child started (seed {seed})");
        std::thread::sleep(Duration::from_millis(rng.random_range(100..1200)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("reopen after the last kill");
        let input = read_all(&log, INPUT).await;
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for (k, _) in &input {
            *expected.entry(k.clone()).or_default() += 1;
        }
        assert!(input.len() > 100, "the children produced input: {}", input.len());
        // The application finishes the work in this process (same state
        // directory: same process id, so it fences the killed child).
        let mut app =
            Streams::new(counting_topology(INPUT, OUTPUT), config(dir.path()), EmbeddedClients::new(log.clone()))
                .expect("streams");
        app.start().expect("start");
        let deadline = Instant::now() + Duration::from_secs(60);
        let output = loop {
            let output = read_all(&log, OUTPUT).await;
            if output.len() >= input.len() || Instant::now() > deadline {
                break output;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        app.close().expect("close");
        let mut counts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (k, v) in output {
            counts.entry(k).or_default().push(i64::from_be_bytes(v.as_ref().try_into().expect("8 bytes")));
        }
        for (word, n) in &expected {
            let got = counts.get(word).cloned().unwrap_or_default();
            let want: Vec<i64> = (1..=*n).collect();
            assert_eq!(got, want, "counts of {word:?}: no duplicate, no gap (seed {seed})");
        }
        assert_eq!(counts.len(), expected.len(), "no word that was never input (seed {seed})");
        log.close().expect("close");
    });
}
