//! DSL topologies on the real runtime (embedded log, RocksDB, threads)
//! give what the test driver gives: here a word count whose key change
//! goes through a repartition topic the application creates, joined with
//! a table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plexus_core::client::{
    Consumer, ConsumerConfig, EmbeddedClients, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig,
};
use plexus_core::{Log, LogConfig, Record, TopicConfig, TopicPartition};
use plexus_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use plexus_runtime::serde::{Serde, StringSerde};
use plexus_runtime::{Streams, StreamsConfig, Topology, TopologyTestDriver};

const LINES: &[&str] = &["a b c a", "b c d", "a a e", "f b a", "c c c"];

/// Word counts, each update labelled with the word's category from a table.
fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    let categories =
        builder.table("categories", Consumed::with(StringSerde, StringSerde), Materialized::named("categories"));
    builder
        .stream("lines", Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .group_by(|_, w| w.clone(), Grouped::with(StringSerde, StringSerde))
        .count(Materialized::named("counts"))
        .to_stream()
        .flat_map_values(|n| n)
        .left_join(&categories, |n, c| format!("{}:{n}", c.map_or("other", String::as_str)))
        .to("labelled", Produced::with(StringSerde, StringSerde));
    builder.build().expect("topology")
}

fn expected() -> BTreeMap<String, String> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for w in LINES.iter().flat_map(|l| l.split_whitespace()) {
        *counts.entry(w.to_owned()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(w, n)| {
            let c = if w == "a" || w == "e" { "vowel" } else { "other" };
            (w, format!("{c}:{n}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_with_a_repartition_and_a_join_matches_the_test_driver() {
    let data = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("tmp");
    let log = Log::open(LogConfig::new(data.path())).expect("open");
    for t in ["lines", "categories", "labelled"] {
        log.create_topic(t, 3, TopicConfig::default()).expect("create");
    }
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    for (w, c) in [("a", "vowel"), ("e", "vowel")] {
        producer.send("categories", Record::with_key(w, c).timestamp(0)).await.expect("ack");
    }
    for (i, l) in LINES.iter().enumerate() {
        producer.send("lines", Record::with_key(format!("l{i}"), *l).timestamp(10 + i as i64)).await.expect("ack");
    }
    let config = StreamsConfig::from_pairs([
        ("application.id", "labelled-counts"),
        ("commit.interval.ms", "50"),
        ("num.stream.threads", "2"),
        ("state.dir", state.path().to_str().expect("utf8")),
    ])
    .expect("config");
    let mut streams = Streams::new(topology(), config, EmbeddedClients::new(log.clone())).expect("streams");
    streams.start().expect("start");

    let words: usize = LINES.iter().map(|l| l.split_whitespace().count()).sum();
    let mut consumer = EmbeddedConsumer::new(log.clone(), {
        let mut c = ConsumerConfig::without_group();
        c.set("auto.offset.reset", "earliest").expect("valid");
        c
    });
    consumer.assign(&(0..3).map(|p| TopicPartition::new("labelled", p)).collect::<Vec<_>>()).await.expect("assign");
    let mut latest = BTreeMap::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen < words {
        if Instant::now() > deadline || streams.state() == plexus_runtime::StreamsState::Error {
            panic!("only {seen} of {words} updates arrived; the application: {:?}", streams.close());
        }
        for r in consumer.poll(Duration::from_millis(100)).await.expect("poll") {
            let k = StringSerde.deserialize(r.key.as_deref()).expect("key");
            let v = StringSerde.deserialize(r.value.as_deref()).expect("value");
            latest.insert(k, v);
            seen += 1;
        }
    }
    streams.close().expect("close");
    assert_eq!(latest, expected());
    let repartition = TopicPartition::new("labelled-counts-counts-repartition", 2);
    assert!(log.offsets(&repartition).is_ok(), "the application created its repartition topic with 3 partitions");

    let mut driver = TopologyTestDriver::with_partitions(topology(), 3).expect("driver");
    for (w, c) in [("a", "vowel"), ("e", "vowel")] {
        driver.pipe_input("categories", &StringSerde, &StringSerde, &w.to_owned(), &c.to_owned(), 0).expect("pipe");
    }
    for (i, l) in LINES.iter().enumerate() {
        driver
            .pipe_input("lines", &StringSerde, &StringSerde, &format!("l{i}"), &(*l).to_owned(), 10 + i as i64)
            .expect("pipe");
    }
    let from_driver: BTreeMap<String, String> = driver
        .read_output("labelled", &StringSerde, &StringSerde)
        .expect("read")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(from_driver, latest, "the driver and the runtime agree");
    log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_is_complete_before_the_first_record_is_joined() {
    let data = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("tmp");
    let log = Log::open(LogConfig::new(data.path())).expect("open");
    log.create_topic("products", 3, TopicConfig::default()).expect("create");
    log.create_topic("orders", 2, TopicConfig::default()).expect("create");
    log.create_topic("named", 2, TopicConfig::default()).expect("create");
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    // The orders come first in time: only a complete global table joins them all.
    for i in 0..50 {
        producer
            .send("orders", Record::with_key(format!("o{i}"), format!("p{}", i % 10)).timestamp(0))
            .await
            .expect("ack");
    }
    for p in 0..10 {
        producer
            .send("products", Record::with_key(format!("p{p}"), format!("product {p}")).timestamp(100))
            .await
            .expect("ack");
    }
    let builder = StreamsBuilder::new();
    let products =
        builder.global_table("products", Consumed::with(StringSerde, StringSerde), Materialized::named("products"));
    builder
        .stream("orders", Consumed::with(StringSerde, StringSerde))
        .join_global(&products, |_, p| p.clone(), |_, name| name.clone())
        .to("named", Produced::with(StringSerde, StringSerde));
    let config = StreamsConfig::from_pairs([
        ("application.id", "named-orders"),
        ("commit.interval.ms", "50"),
        ("state.dir", state.path().to_str().expect("utf8")),
    ])
    .expect("config");
    let mut streams =
        Streams::new(builder.build().expect("topology"), config, EmbeddedClients::new(log.clone())).expect("streams");
    streams.start().expect("start");
    let mut consumer = EmbeddedConsumer::new(log.clone(), {
        let mut c = ConsumerConfig::without_group();
        c.set("auto.offset.reset", "earliest").expect("valid");
        c
    });
    consumer.assign(&(0..2).map(|p| TopicPartition::new("named", p)).collect::<Vec<_>>()).await.expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < 50 {
        if Instant::now() > deadline || streams.state() == plexus_runtime::StreamsState::Error {
            panic!("only {} of 50 orders joined; the application: {:?}", out.len(), streams.close());
        }
        for r in consumer.poll(Duration::from_millis(100)).await.expect("poll") {
            out.insert(
                StringSerde.deserialize(r.key.as_deref()).expect("key"),
                StringSerde.deserialize(r.value.as_deref()).expect("value"),
            );
        }
    }
    streams.close().expect("close");
    assert_eq!(out["o13"], "product 3");
    log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_and_session_stores_answer_interactive_queries() {
    use plexus_dsl::{SessionWindows, TimeWindows};
    use plexus_runtime::serde::I64Serde;
    use plexus_runtime::state::{SessionStoreRef, WindowStoreRef};

    let data = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("tmp");
    let log = Log::open(LogConfig::new(data.path())).expect("open");
    log.create_topic("clicks", 2, TopicConfig::default()).expect("create");
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    let now = plexus_core::types::now_ms() / 60_000 * 60_000;
    for (user, offset) in [("ada", 0), ("ada", 1_000), ("bob", 2_000), ("ada", 61_000)] {
        producer.send("clicks", Record::with_key(user, "x").timestamp(now + offset)).await.expect("ack");
    }
    let builder = StreamsBuilder::new();
    let clicks = builder.stream("clicks", Consumed::with(StringSerde, StringSerde)).group_by_key();
    let _per_minute = clicks
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
        .count(Materialized::named("per-minute"));
    let _sessions = clicks
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(5)))
        .count(Materialized::named("sessions"));
    let config = StreamsConfig::from_pairs([
        ("application.id", "clicks"),
        ("commit.interval.ms", "50"),
        ("state.dir", state.path().to_str().expect("utf8")),
    ])
    .expect("config");
    let mut streams =
        Streams::new(builder.build().expect("topology"), config, EmbeddedClients::new(log.clone())).expect("streams");
    streams.start().expect("start");
    let windows = streams.window_store(&WindowStoreRef::new("per-minute", StringSerde, I64Serde));
    let sessions = streams.session_store(&SessionStoreRef::new("sessions", StringSerde, I64Serde));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ada = windows.fetch(&"ada".to_owned(), now, now + 120_000).expect("fetch");
        if ada == [(now, 2), (now + 60_000, 1)] {
            break;
        }
        assert!(
            Instant::now() < deadline && streams.state() != plexus_runtime::StreamsState::Error,
            "ada's windows: {ada:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut all = windows.fetch_all(now, now + 120_000).expect("fetch_all");
    all.sort();
    assert_eq!(all, [("ada".to_owned(), now, 2), ("ada".to_owned(), now + 60_000, 1), ("bob".to_owned(), now, 1)]);
    assert_eq!(
        sessions.fetch(&"ada".to_owned()).expect("fetch"),
        [(now, now + 1_000, 2), (now + 61_000, now + 61_000, 1)]
    );
    streams.close().expect("close");
    log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_join_runs_across_differently_partitioned_topics() {
    let data = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("tmp");
    let log = Log::open(LogConfig::new(data.path())).expect("open");
    log.create_topic("orders", 3, TopicConfig::default()).expect("create");
    log.create_topic("customers", 2, TopicConfig::default()).expect("create");
    log.create_topic("named", 3, TopicConfig::default()).expect("create");
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
    for c in 0..5 {
        producer
            .send("customers", Record::with_key(format!("c{c}"), format!("customer {c}")).timestamp(0))
            .await
            .expect("ack");
    }
    for o in 0..30 {
        producer
            .send("orders", Record::with_key(format!("o{o}"), format!("c{}", o % 5)).timestamp(1))
            .await
            .expect("ack");
    }
    let builder = StreamsBuilder::new();
    let orders = builder.table("orders", Consumed::with(StringSerde, StringSerde), Materialized::named("orders"));
    let customers =
        builder.table("customers", Consumed::with(StringSerde, StringSerde), Materialized::named("customers"));
    orders
        .join_foreign_key(
            &customers,
            |c| c.clone(),
            |_, name| name.clone(),
            Materialized::named("named").with_value_serde(StringSerde),
        )
        .to("named", Produced::with(StringSerde, StringSerde));
    let config = StreamsConfig::from_pairs([
        ("application.id", "fk"),
        ("commit.interval.ms", "50"),
        ("num.stream.threads", "2"),
        ("state.dir", state.path().to_str().expect("utf8")),
    ])
    .expect("config");
    let mut streams =
        Streams::new(builder.build().expect("topology"), config, EmbeddedClients::new(log.clone())).expect("streams");
    streams.start().expect("start");
    let mut consumer = EmbeddedConsumer::new(log.clone(), {
        let mut c = ConsumerConfig::without_group();
        c.set("auto.offset.reset", "earliest").expect("valid");
        c
    });
    consumer.assign(&(0..3).map(|p| TopicPartition::new("named", p)).collect::<Vec<_>>()).await.expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < 30 {
        if Instant::now() > deadline || streams.state() == plexus_runtime::StreamsState::Error {
            panic!("only {} of 30 orders joined; the application: {:?}", out.len(), streams.close());
        }
        for r in consumer.poll(Duration::from_millis(100)).await.expect("poll") {
            out.insert(
                StringSerde.deserialize(r.key.as_deref()).expect("key"),
                StringSerde.deserialize(r.value.as_deref()).expect("value"),
            );
        }
    }
    streams.close().expect("close");
    assert_eq!(out["o7"], "customer 2");
    assert!(
        log.offsets(&TopicPartition::new("fk-named-subscription-registration", 1)).is_ok(),
        "registration follows the customers' 2 partitions"
    );
    assert!(log.offsets(&TopicPartition::new("fk-named-subscription-registration", 2)).is_err());
    log.close().expect("close");
}
