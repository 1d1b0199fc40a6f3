//! Grouping and aggregation: count, reduce, aggregate and cogroup, with
//! the repartitioning a key change needs.

use plexus_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use plexus_runtime::TopologyTestDriver;
use plexus_runtime::serde::{I64Serde, StringSerde};
use plexus_runtime::state::KeyValueStoreRef;

use crate::{owned, pipe, read};

fn word_count(builder: &StreamsBuilder, materialized: Materialized<String, i64>) {
    builder
        .stream("lines", Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|l| l.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, w| w.clone(), Grouped::with(StringSerde, StringSerde))
        .count(materialized)
        .to("word-counts", Produced::with(StringSerde, I64Serde));
}

/// Pipes three lines into a word count; its outputs, sorted.
fn count_words(materialized: Materialized<String, i64>) -> Vec<(String, i64)> {
    let builder = StreamsBuilder::new();
    word_count(&builder, materialized);
    let mut driver = TopologyTestDriver::with_partitions(builder.build().expect("topology"), 3).expect("driver");
    for (i, l) in ["a b a", "b c", "A"].iter().enumerate() {
        driver
            .pipe_input("lines", &StringSerde, &StringSerde, &format!("line{i}"), &(*l).to_owned(), i as i64)
            .expect("pipe");
    }
    let mut counts = read(&mut driver, "word-counts", (&StringSerde, &I64Serde));
    counts.sort();
    counts
}

#[test]
fn the_record_cache_coalesces_the_updates_one_input_causes() {
    // "a b a" counts `a` twice before the driver commits: with the cache
    // (the default) one update, `a` = 2, goes downstream; without, both.
    let cached = count_words(Materialized::named("counts"));
    assert_eq!(cached, owned(&[("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 1)]));
    let uncached = count_words(Materialized::named("counts").with_caching_disabled());
    assert_eq!(uncached, owned(&[("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 1)]));
}

#[test]
fn word_count_repartitions_by_word_over_three_partitions() {
    let builder = StreamsBuilder::new();
    word_count(&builder, Materialized::named("counts"));
    let topology = builder.build().expect("topology");
    let text = topology.describe().to_string();
    assert!(text.contains("Sink: KSTREAM-SINK-0000000003 (topic: counts-repartition)"), "{text}");
    assert!(text.contains("Source: KSTREAM-SOURCE-0000000004 (topics: [counts-repartition])"), "{text}");
    assert!(text.contains("Sub-topology: 1"), "the aggregation runs in its own sub-topology: {text}");

    let mut driver = TopologyTestDriver::with_partitions(topology, 3).expect("driver");
    let lines = ["a b a", "b c", "A"];
    for (i, l) in lines.iter().enumerate() {
        driver
            .pipe_input("lines", &StringSerde, &StringSerde, &format!("line{i}"), &(*l).to_owned(), i as i64)
            .expect("pipe");
    }
    let mut counts = read(&mut driver, "word-counts", (&StringSerde, &I64Serde));
    counts.sort();
    assert_eq!(counts, owned(&[("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 1)]));
    // Each word's count lives in the task of the partition its key hashes to.
    let store = KeyValueStoreRef::new("counts", StringSerde, I64Serde);
    assert_eq!(driver.key_value_store_get(&store, &"a".to_owned()).expect("get"), Some(3));
    let repartition = driver.topic_records("test-driver-counts-repartition");
    assert_eq!(repartition.len(), 3, "the repartition topic has as many partitions as the input");
    for (p, records) in repartition.iter().enumerate() {
        for r in records {
            let key = r.key.as_deref().expect("keyed");
            assert_eq!(plexus_core::client::partitioner::partition_for_key(key, 3), p as i32);
        }
    }
}

#[test]
fn reduce_and_aggregate_keep_one_value_per_key() {
    let builder = StreamsBuilder::new();
    let amounts = builder.stream("payments", Consumed::with(StringSerde, I64Serde));
    amounts
        .group_by_key()
        .reduce(|a, b| a.max(b), Materialized::named("max"))
        .to("max", Produced::with(StringSerde, I64Serde));
    amounts
        .group_by_key()
        .aggregate(
            String::new,
            |_, v, agg| format!("{agg}{v};"),
            Materialized::named("log").with_value_serde(StringSerde),
        )
        .to("log", Produced::with(StringSerde, StringSerde));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    let k = |s: &str| s.to_owned();
    pipe(
        &mut driver,
        "payments",
        (&StringSerde, &I64Serde),
        &[(k("alice"), 5, 1), (k("bob"), 7, 2), (k("alice"), 3, 3), (k("alice"), 9, 4)],
    );
    assert_eq!(
        read(&mut driver, "max", (&StringSerde, &I64Serde)),
        owned(&[("alice", 5), ("bob", 7), ("alice", 5), ("alice", 9)])
    );
    let log = read(&mut driver, "log", (&StringSerde, &StringSerde));
    assert_eq!(log.last(), Some(&(k("alice"), k("5;3;9;"))));
}

#[test]
fn an_aggregation_after_a_key_change_needs_a_serde_or_reports_which() {
    let builder = StreamsBuilder::new();
    let _counts = builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .map(|k, v| (v, k))
        .map_values(|v| v.len() as i64)
        .group_by_key()
        .count(Materialized::default());
    let err = builder.build().expect_err("no serde for the repartition topic");
    let msg = err.to_string();
    assert!(msg.contains("count()") && msg.contains("Grouped::with"), "{msg}");
}

#[test]
fn cogroup_folds_several_streams_into_one_table() {
    let builder = StreamsBuilder::new();
    let clicks = builder.stream("clicks", Consumed::with(StringSerde, I64Serde)).group_by_key();
    let views = builder.stream("views", Consumed::with(StringSerde, StringSerde)).group_by_key();
    clicks
        .cogroup(|_, n, agg: i64| agg + n * 100)
        .cogroup(&views, |_, _, agg| agg + 1)
        .aggregate(|| 0, Materialized::with(StringSerde, I64Serde))
        .to("activity", Produced::with(StringSerde, I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    let k = "u1".to_owned();
    driver.pipe_input("views", &StringSerde, &StringSerde, &k, &"home".to_owned(), 1).expect("pipe");
    driver.pipe_input("clicks", &StringSerde, &I64Serde, &k, &2, 2).expect("pipe");
    driver.pipe_input("views", &StringSerde, &StringSerde, &k, &"cart".to_owned(), 3).expect("pipe");
    assert_eq!(read(&mut driver, "activity", (&StringSerde, &I64Serde)), owned(&[("u1", 1), ("u1", 201), ("u1", 202)]));
}

#[test]
fn tables_filter_map_values_and_emit_deletes_as_tombstones() {
    let builder = StreamsBuilder::new();
    let prices = builder.table("prices", Consumed::with(StringSerde, I64Serde), Materialized::named("prices"));
    prices.filter(|_, p| *p >= 10).map_values(|p| p * 2).to("doubled", Produced::with(StringSerde, I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    let k = |s: &str| s.to_owned();
    pipe(&mut driver, "prices", (&StringSerde, &I64Serde), &[(k("x"), 20, 1), (k("y"), 5, 2), (k("x"), 3, 3)]);
    // x:20 passes; y:5 never; x:3 stops passing, so x is deleted downstream.
    let out = driver.read_output("doubled", &StringSerde, &plexus_runtime::serde::OptionSerde(I64Serde)).expect("read");
    let out: Vec<(String, Option<i64>)> = out.into_iter().map(|r| (r.key, r.value)).collect();
    assert_eq!(out, [(k("x"), Some(40)), (k("x"), None)]);
    // A tombstone on the input deletes the row in the table's store.
    driver.pipe_raw("prices", Some(bytes::Bytes::from_static(b"x")), None, 4, Vec::new()).expect("pipe");
    let store = KeyValueStoreRef::new("prices", StringSerde, I64Serde);
    assert_eq!(driver.key_value_store_all(&store).expect("all"), owned(&[("y", 5)]));
}

#[test]
fn a_regrouped_table_subtracts_a_rows_old_value_from_its_old_group() {
    // Users (key) live in cities (value); count users per city.
    let builder = StreamsBuilder::new();
    builder
        .table("users", Consumed::with(StringSerde, StringSerde), Materialized::named("users"))
        .group_by(|user, city| (city.clone(), user.clone()), Grouped::with(StringSerde, StringSerde))
        .count(Materialized::named("per-city"))
        .to("per-city", Produced::with(StringSerde, I64Serde));
    let mut driver = TopologyTestDriver::with_partitions(builder.build().expect("topology"), 2).expect("driver");
    let k = |s: &str| s.to_owned();
    pipe(
        &mut driver,
        "users",
        (&StringSerde, &StringSerde),
        &[
            (k("ada"), k("london"), 1),
            (k("alan"), k("london"), 2),
            (k("ada"), k("paris"), 3),   // ada moves: london loses one, paris gains one
            (k("alan"), k("london"), 4), // no change of group: subtract and add in one
        ],
    );
    let mut latest = std::collections::BTreeMap::new();
    for (city, n) in read(&mut driver, "per-city", (&StringSerde, &I64Serde)) {
        latest.insert(city, n);
    }
    assert_eq!(latest, [(k("london"), 1), (k("paris"), 1)].into_iter().collect());
    driver.pipe_raw("users", Some(bytes::Bytes::from_static(b"alan")), None, 5, Vec::new()).expect("delete");
    assert_eq!(read(&mut driver, "per-city", (&StringSerde, &I64Serde)), owned(&[("london", 0)]));
}
