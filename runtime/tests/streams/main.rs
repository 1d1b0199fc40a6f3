//! The runtime on a real embedded log: a counting topology with a RocksDB
//! store, its outputs, interactive queries, a restart, and the same
//! topology in the test driver giving the same results.

mod driver;
mod eos;
mod standby;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plexus_core::client::{
    Consumer, ConsumerConfig, EmbeddedClients, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig,
};
use plexus_core::{Log, LogConfig, Record as LogRecord, TopicConfig, TopicPartition};
use plexus_runtime::processor::{Processor, ProcessorContext, Record};
use plexus_runtime::serde::{I64Serde, StringSerde};
use plexus_runtime::state::KeyValueStoreRef;
use plexus_runtime::{StoreBuilder, Streams, StreamsConfig, StreamsState, Topology, TopologyTestDriver};

/// Counts words (the record values) in a key-value store and forwards
/// each new count.
pub(crate) struct Count {
    pub(crate) store: KeyValueStoreRef<String, i64>,
}

impl Processor<String, String, String, i64> for Count {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, i64>,
    ) -> plexus_runtime::Result<()> {
        let n = {
            let mut store = ctx.key_value_store(&self.store)?;
            let n = store.get(&r.value)?.unwrap_or(0) + 1;
            store.put(&r.value, &n)?;
            n
        };
        ctx.forward(Record::new(r.value, n, r.timestamp))
    }
}

pub(crate) fn counts_ref() -> KeyValueStoreRef<String, i64> {
    KeyValueStoreRef::new("counts", StringSerde, I64Serde)
}

fn topology() -> Topology {
    counting_topology("words", "word-counts")
}

/// Counts the values read from `input`, writing each new count to `output`.
pub(crate) fn counting_topology(input: &str, output: &str) -> Topology {
    let mut t = Topology::new();
    let src = t.add_source("words-source", &[input], StringSerde, StringSerde).expect("source");
    let count = t.add_processor("count", || Count { store: counts_ref() }, &[src]).expect("processor");
    t.add_state_store(StoreBuilder::key_value("counts"), &["count"]).expect("store");
    t.add_sink("counts-sink", output, StringSerde, I64Serde, &[count]).expect("sink");
    t
}

fn word(i: usize) -> String {
    ["apple", "banana", "cherry", "date", "elder"][i % 5].to_owned()
}

async fn produce(log: &Log, from: usize, n: usize) {
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    for i in from..from + n {
        let w = word(i * 7 % 11);
        producer.send("words", LogRecord::with_key(w.clone(), w).timestamp(1_000 + i as i64)).await.expect("ack");
    }
}

/// The latest count per word in `word-counts`, once `expected` records are there.
async fn read_counts(log: &Log, expected: usize) -> BTreeMap<String, i64> {
    let mut config = ConsumerConfig::without_group();
    config.set("auto.offset.reset", "earliest").expect("valid");
    let mut consumer = EmbeddedConsumer::new(log.clone(), config);
    let partitions: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new("word-counts", p)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !partitions.iter().all(|tp| log.offsets(tp).is_ok()) {
        assert!(Instant::now() < deadline, "the output topic was never created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.assign(&partitions).await.expect("assign");
    let mut latest = BTreeMap::new();
    let mut seen = 0;
    while seen < expected {
        assert!(Instant::now() < deadline, "only {seen} of {expected} outputs arrived");
        for r in consumer.poll(Duration::from_millis(100)).await.expect("poll") {
            let w = String::from_utf8(r.key.unwrap_or_default().to_vec()).expect("utf8");
            let n = i64::from_be_bytes(r.value.unwrap_or_default().as_ref().try_into().expect("8 bytes"));
            latest.insert(w, n);
            seen += 1;
        }
    }
    latest
}

fn expected_counts(n: usize) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        *out.entry(word(i * 7 % 11)).or_default() += 1;
    }
    out
}

fn streams(log: &Log, state_dir: &std::path::Path) -> Streams {
    let config = StreamsConfig::from_pairs([
        ("application.id", "word-count"),
        ("commit.interval.ms", "50"),
        ("state.dir", state_dir.to_str().expect("utf8 path")),
    ])
    .expect("config");
    Streams::new(topology(), config, EmbeddedClients::new(log.clone())).expect("streams")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_restart_and_match_the_test_driver() {
    let data = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("tmp");
    let log = Log::open(LogConfig::new(data.path())).expect("open");
    log.create_topic("words", 2, TopicConfig::default()).expect("create");
    log.create_topic("word-counts", 2, TopicConfig::default()).expect("create");
    produce(&log, 0, 100).await;

    let mut app = streams(&log, state.path());
    app.start().expect("start");
    assert_eq!(read_counts(&log, 100).await, expected_counts(100));
    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = app.store(&counts_ref());
    loop {
        let all: BTreeMap<String, i64> = counts.all().expect("query").into_iter().collect();
        if all == expected_counts(100) {
            break;
        }
        assert!(Instant::now() < deadline, "the store never showed the committed counts: {all:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counts.get(&"apple".to_owned()).expect("get"), expected_counts(100).get("apple").copied());
    assert_eq!(app.state(), StreamsState::Running);
    app.close().expect("close");
    assert_eq!(app.state(), StreamsState::NotRunning);

    // A restart: the RocksDB stores are there (with the changelog offset
    // they reached), so nothing is restored; counting goes on from them.
    produce(&log, 100, 50).await;
    let mut app = streams(&log, state.path());
    app.start().expect("start");
    assert_eq!(read_counts(&log, 150).await, expected_counts(150));
    let metrics = app.metrics();
    assert_eq!(metrics.records_restored, 0, "a clean restart restores nothing: {metrics:?}");
    assert_eq!(metrics.records_processed, 50, "{metrics:?}");
    app.close().expect("close");

    // Without the state directory the stores are rebuilt from the changelog.
    let fresh = tempfile::tempdir().expect("tmp");
    produce(&log, 150, 5).await;
    let mut app = streams(&log, fresh.path());
    app.start().expect("start");
    assert_eq!(read_counts(&log, 155).await, expected_counts(155));
    let metrics = app.metrics();
    assert!(metrics.records_restored >= 5, "one changelog record per word at least: {metrics:?}");
    assert_eq!(metrics.records_processed, 5, "{metrics:?}");
    app.close().expect("close");

    // The same topology, the same input, in the test driver.
    let mut driver = TopologyTestDriver::with_partitions(topology(), 2).expect("driver");
    for i in 0..155 {
        let w = word(i * 7 % 11);
        driver.pipe_input("words", &StringSerde, &StringSerde, &w, &w, 1_000 + i as i64).expect("pipe");
    }
    let outputs = driver.read_output("word-counts", &StringSerde, &I64Serde).expect("read");
    assert_eq!(outputs.len(), 155);
    let latest: BTreeMap<String, i64> = outputs.into_iter().map(|r| (r.key, r.value)).collect();
    assert_eq!(latest, expected_counts(155));
    let stored: BTreeMap<String, i64> = driver.key_value_store_all(&counts_ref()).expect("store").into_iter().collect();
    assert_eq!(stored, expected_counts(155));
    log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_user_code_fails_the_application_naming_the_record() {
    struct Boom;
    impl Processor<String, String> for Boom {
        fn process(
            &mut self,
            r: Record<String, String>,
            _: &mut ProcessorContext<'_, String, String>,
        ) -> plexus_runtime::Result<()> {
            assert!(r.value != "boom", "the value was boom");
            Ok(())
        }
    }
    let data = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("tmp");
    let log = Log::open(LogConfig::new(data.path())).expect("open");
    log.create_topic("words", 1, TopicConfig::default()).expect("create");
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    producer.send("words", LogRecord::with_key("k", "fine")).await.expect("ack");
    producer.send("words", LogRecord::with_key("k", "boom")).await.expect("ack");
    let mut t = Topology::new();
    let src = t.add_source("src", &["words"], StringSerde, StringSerde).expect("source");
    t.add_processor("boom", || Boom, &[src]).expect("processor");
    let config =
        StreamsConfig::from_pairs([("application.id", "boom"), ("state.dir", state.path().to_str().expect("utf8"))])
            .expect("config");
    let mut app = Streams::new(t, config, EmbeddedClients::new(log.clone())).expect("streams");
    app.start().expect("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.state() != StreamsState::Error {
        assert!(Instant::now() < deadline, "the application did not fail");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = app.close().expect_err("the failure is returned");
    let text = err.to_string();
    assert!(text.contains("words-0 offset 1") && text.contains("the value was boom"), "{text}");
    log.close().expect("close");
}
