//! DSL topologies on the real runtime (embedded log, RocksDB, threads):
//! a word count whose key change goes through a repartition topic the
//! application creates, joined with a table, giving what the test driver
//! gives; a global table; interactive queries on window and session
//! stores; a foreign-key join across differently partitioned topics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plexus_core::client::{
    Consumer, ConsumerConfig, EmbeddedClients, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig, SeekTo,
};
use plexus_core::{Log, LogConfig, Record, TopicConfig, TopicPartition};
use plexus_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use plexus_runtime::serde::{Serde, StringSerde};
use plexus_runtime::state::KeyValueStoreRef;
use plexus_runtime::{Streams, StreamsConfig, Topology, TopologyTestDriver};

/// An embedded log with topics, and the state directory of the application run on it.
struct Embedded {
    log: Log,
    _data: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Embedded {
    /// A fresh log with `topics` (name, partitions).
    fn new(topics: &[(&str, i32)]) -> Self {
        let data = tempfile::tempdir().expect("tmp");
        let log = Log::open(LogConfig::new(data.path())).expect("open");
        for (t, p) in topics {
            log.create_topic(t, *p, TopicConfig::default()).expect("create");
        }
        Self { log, _data: data, state: tempfile::tempdir().expect("tmp") }
    }

    /// Produces `(key, value, timestamp)` string records to `topic`.
    async fn produce(&self, topic: &str, records: impl IntoIterator<Item = (String, String, i64)>) {
        let producer = EmbeddedProducer::new(self.log.clone(), ProducerConfig::default()).expect("producer");
        for (k, v, ts) in records {
            producer.send(topic, Record::with_key(k, v).timestamp(ts)).await.expect("ack");
        }
    }

    /// Starts `topology` as `application_id` with `threads` stream threads.
    fn start(&self, topology: Topology, application_id: &str, threads: usize) -> Streams {
        self.start_with(topology, application_id, threads, &[])
    }

    /// Starts `topology` with `more` config overriding the defaults.
    fn start_with(&self, topology: Topology, application_id: &str, threads: usize, more: &[(&str, &str)]) -> Streams {
        let threads = threads.to_string();
        let mut pairs = vec![
            ("application.id", application_id),
            ("commit.interval.ms", "50"),
            ("num.stream.threads", threads.as_str()),
            ("state.dir", self.state.path().to_str().expect("utf8")),
        ];
        pairs.extend_from_slice(more);
        let config = StreamsConfig::from_pairs(pairs).expect("config");
        let mut streams = Streams::new(topology, config, EmbeddedClients::new(self.log.clone())).expect("streams");
        streams.start().expect("start");
        streams
    }

    /// The latest string value per key of `topic`, once `done` holds for
    /// them (failing with the application's error if it failed).
    async fn read_latest(
        &self,
        streams: &mut Streams,
        topic: &str,
        done: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> BTreeMap<String, String> {
        let partitions = self.log.partition_count(topic).expect("topic");
        let mut consumer = EmbeddedConsumer::new(self.log.clone(), {
            let mut c = ConsumerConfig::without_group();
            c.set("auto.offset.reset", "earliest").expect("valid");
            c
        });
        consumer
            .assign(&(0..partitions).map(|p| TopicPartition::new(topic, p)).collect::<Vec<_>>())
            .await
            .expect("assign");
        let (mut latest, mut seen) = (BTreeMap::new(), 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&latest) {
            if Instant::now() > deadline || streams.state() == plexus_runtime::StreamsState::Error {
                panic!("after {seen} records in {topic}, still {latest:?}; the application: {:?}", streams.close());
            }
            for r in consumer.poll(Duration::from_millis(100)).await.expect("poll") {
                let k = StringSerde.deserialize(r.key.as_deref()).expect("key");
                latest.insert(k, StringSerde.deserialize(r.value.as_deref()).expect("value"));
                seen += 1;
            }
        }
        latest
    }

    /// Every record of a topic's partition 0, as strings (the application
    /// is closed: everything it wrote is there).
    async fn read_all(&self, topic: &str) -> Vec<(String, String)> {
        let end = self.log.offsets(&TopicPartition::new(topic, 0)).expect("offsets").2;
        let mut consumer = EmbeddedConsumer::new(self.log.clone(), ConsumerConfig::without_group());
        consumer.assign(&[TopicPartition::new(topic, 0)]).await.expect("assign");
        consumer.seek(&TopicPartition::new(topic, 0), SeekTo::Beginning).await.expect("seek");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while (out.len() as i64) < end {
            assert!(Instant::now() < deadline, "read only {} of the {end} records of {topic}", out.len());
            for r in consumer.poll(Duration::from_millis(100)).await.expect("poll") {
                let k = StringSerde.deserialize(r.key.as_deref()).expect("key");
                out.push((k, StringSerde.deserialize(r.value.as_deref()).expect("value")));
            }
        }
        out
    }
}

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
    let embedded = Embedded::new(&[("lines", 3), ("categories", 3), ("labelled", 3)]);
    let categories = [("a", "vowel"), ("e", "vowel")];
    embedded.produce("categories", categories.iter().map(|(w, c)| ((*w).to_owned(), (*c).to_owned(), 0))).await;
    let lines = LINES.iter().enumerate().map(|(i, l)| (format!("l{i}"), (*l).to_owned(), 10 + i as i64));
    embedded.produce("lines", lines).await;
    let mut streams = embedded.start(topology(), "labelled-counts", 2);
    let latest = embedded.read_latest(&mut streams, "labelled", |m| *m == expected()).await;
    streams.close().expect("close");
    assert_eq!(latest, expected());
    let repartition = TopicPartition::new("labelled-counts-counts-repartition", 2);
    assert!(
        embedded.log.offsets(&repartition).is_ok(),
        "the application created its repartition topic with 3 partitions"
    );

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
    embedded.log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_is_complete_before_the_first_record_is_joined() {
    let embedded = Embedded::new(&[("products", 3), ("orders", 2), ("named", 2)]);
    // The orders come first in time: only a complete global table joins them all.
    embedded.produce("orders", (0..50).map(|i| (format!("o{i}"), format!("p{}", i % 10), 0))).await;
    embedded.produce("products", (0..10).map(|p| (format!("p{p}"), format!("product {p}"), 100))).await;
    let builder = StreamsBuilder::new();
    let products =
        builder.global_table("products", Consumed::with(StringSerde, StringSerde), Materialized::named("products"));
    builder
        .stream("orders", Consumed::with(StringSerde, StringSerde))
        .join_global(&products, |_, p| p.clone(), |_, name| name.clone())
        .to("named", Produced::with(StringSerde, StringSerde));
    let mut streams = embedded.start(builder.build().expect("topology"), "named-orders", 1);
    let out = embedded.read_latest(&mut streams, "named", |m| m.len() == 50).await;
    assert_eq!(out.len(), 50);
    assert_eq!(out["o13"], "product 3");
    let products = streams.store(&KeyValueStoreRef::new("products", StringSerde, StringSerde));
    assert_eq!(
        products.get(&"p4".to_owned()).expect("query"),
        Some("product 4".to_owned()),
        "a global store answers queries"
    );
    assert_eq!(products.all().expect("query").len(), 10);
    streams.close().expect("close");
    embedded.log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_and_session_stores_answer_interactive_queries() {
    use plexus_dsl::{SessionWindows, TimeWindows};
    use plexus_runtime::serde::I64Serde;
    use plexus_runtime::state::{SessionStoreRef, WindowStoreRef};

    let embedded = Embedded::new(&[("clicks", 2)]);
    let now = plexus_core::types::now_ms() / 60_000 * 60_000;
    let clicks = [("ada", 0), ("ada", 1_000), ("bob", 2_000), ("ada", 61_000)];
    embedded.produce("clicks", clicks.iter().map(|(u, at)| ((*u).to_owned(), "x".to_owned(), now + at))).await;
    let builder = StreamsBuilder::new();
    let clicks = builder.stream("clicks", Consumed::with(StringSerde, StringSerde)).group_by_key();
    let _per_minute = clicks
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
        .count(Materialized::named("per-minute"));
    let _sessions = clicks
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(5)))
        .count(Materialized::named("sessions"));
    let mut streams = embedded.start(builder.build().expect("topology"), "clicks", 1);
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
    let ada_sessions = sessions.fetch(&"ada".to_owned()).expect("fetch");
    assert_eq!(ada_sessions, [(now, now + 1_000, 2), (now + 61_000, now + 61_000, 1)]);
    streams.close().expect("close");
    embedded.log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_join_runs_across_differently_partitioned_topics() {
    let embedded = Embedded::new(&[("orders", 3), ("customers", 2), ("named", 3)]);
    embedded.produce("customers", (0..5).map(|c| (format!("c{c}"), format!("customer {c}"), 0))).await;
    embedded.produce("orders", (0..30).map(|o| (format!("o{o}"), format!("c{}", o % 5), 1))).await;
    let builder = StreamsBuilder::new();
    let orders = builder.table("orders", Consumed::with(StringSerde, StringSerde), Materialized::named("orders"));
    let customers =
        builder.table("customers", Consumed::with(StringSerde, StringSerde), Materialized::named("customers"));
    let named = Materialized::named("named").with_value_serde(StringSerde);
    orders
        .join_foreign_key(&customers, |c| c.clone(), |_, name| name.clone(), named)
        .to("named", Produced::with(StringSerde, StringSerde));
    let mut streams = embedded.start(builder.build().expect("topology"), "fk", 2);
    let out = embedded.read_latest(&mut streams, "named", |m| m.len() == 30).await;
    streams.close().expect("close");
    assert_eq!(out["o7"], "customer 2");
    let registration = |p| TopicPartition::new("fk-named-subscription-registration", p);
    assert!(embedded.log.offsets(&registration(1)).is_ok(), "registration follows the customers' 2 partitions");
    assert!(embedded.log.offsets(&registration(2)).is_err());
    embedded.log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_the_latest_reset_policy_skips_what_was_there_before() {
    use plexus_dsl::AutoOffsetReset;
    let embedded = Embedded::new(&[("events", 1), ("seen", 1)]);
    embedded.produce("events", (0..10).map(|i| (format!("k{i}"), "old".to_owned(), 0))).await;
    let builder = StreamsBuilder::new();
    builder
        .stream("events", Consumed::with(StringSerde, StringSerde).with_offset_reset_policy(AutoOffsetReset::Latest))
        .to("seen", Produced::with(StringSerde, StringSerde));
    let mut streams = embedded.start(builder.build().expect("topology"), "latest", 1);
    // New records until one comes through (the application positions
    // itself at the end when it gets the partition).
    let mut n = 0;
    while embedded.log.offsets(&TopicPartition::new("seen", 0)).expect("offsets").2 == 0 {
        assert!(n < 600, "no new record came through");
        embedded.produce("events", [(format!("new{n}"), "new".to_owned(), 1)]).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = embedded.read_latest(&mut streams, "seen", |m| !m.is_empty()).await;
    streams.close().expect("close");
    assert!(seen.values().all(|v| v == "new"), "no record from before the start: {seen:?}");
    embedded.log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_cache_forwards_one_update_per_key_per_commit() {
    let embedded = Embedded::new(&[("clicks", 1), ("cached", 1), ("uncached", 1)]);
    let keys = ["ada", "bob", "cy", "dee"];
    embedded.produce("clicks", (0..2000).map(|i| (keys[i % 4].to_owned(), "click".to_owned(), i as i64))).await;
    let builder = StreamsBuilder::new();
    let clicks = builder.stream("clicks", Consumed::with(StringSerde, StringSerde));
    let count = |m: Materialized<String, i64>, to: &str| {
        clicks
            .group_by_key()
            .count(m)
            .to_stream()
            .map_values(|n| n.unwrap_or_default().to_string())
            .to(to, Produced::with(StringSerde, StringSerde));
    };
    count(Materialized::named("cached-counts"), "cached");
    count(Materialized::named("uncached-counts").with_caching_disabled(), "uncached");
    // Commits only at the end: everything between is the cache's to coalesce.
    let mut streams =
        embedded.start_with(builder.build().expect("topology"), "cache", 1, &[("commit.interval.ms", "600000")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while streams.metrics().records_processed < 2000 {
        assert!(
            Instant::now() < deadline,
            "only {} records processed: {:?}",
            streams.metrics().records_processed,
            streams.close()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    streams.close().expect("close");
    let commits = streams.metrics().commits;
    let cached = embedded.read_all("cached").await;
    let uncached = embedded.read_all("uncached").await;
    assert_eq!(uncached.len(), 2000, "without the cache every update is forwarded");
    let latest: BTreeMap<String, String> = cached.iter().cloned().collect();
    assert!(latest.values().all(|n| n == "500"), "the final counts: {latest:?}");
    assert_eq!(latest.len(), 4);
    assert!(
        cached.len() as u64 <= 4 * commits,
        "{} updates for 4 keys in {commits} commits: at most one per key per commit",
        cached.len()
    );
    embedded.log.close().expect("close");
}
