//! Joins: stream–table, stream–stream within windows (inner, left, outer),
//! table–table, and the co-partitioning they need.

use std::time::Duration;

use plexus_dsl::{Consumed, JoinWindows, Materialized, Produced, Repartitioned, StreamJoined, StreamsBuilder};
use plexus_runtime::TopologyTestDriver;
use plexus_runtime::serde::{I64Serde, OptionSerde, StringSerde};

use crate::{owned, pipe, read};

fn s(x: &str) -> String {
    x.to_owned()
}

#[test]
fn stream_table_inner_and_left_joins_see_the_table_as_of_each_record() {
    let builder = StreamsBuilder::new();
    let customers =
        builder.table("customers", Consumed::with(StringSerde, StringSerde), Materialized::named("customers"));
    let orders = builder.stream("orders", Consumed::with(StringSerde, I64Serde));
    orders
        .join(&customers, |amount, name| format!("{name}:{amount}"))
        .to("enriched", Produced::with(StringSerde, StringSerde));
    orders
        .left_join(&customers, |amount, name| format!("{}:{amount}", name.map_or("?", String::as_str)))
        .to("all", Produced::with(StringSerde, StringSerde));
    let mut driver = TopologyTestDriver::with_partitions(builder.build().expect("topology"), 2).expect("driver");
    pipe(&mut driver, "orders", (&StringSerde, &I64Serde), &[(s("c1"), 10, 1)]);
    pipe(&mut driver, "customers", (&StringSerde, &StringSerde), &[(s("c1"), s("Ada"), 2)]);
    pipe(&mut driver, "orders", (&StringSerde, &I64Serde), &[(s("c1"), 20, 3)]);
    pipe(&mut driver, "customers", (&StringSerde, &StringSerde), &[(s("c1"), s("Ada L."), 4)]);
    pipe(&mut driver, "orders", (&StringSerde, &I64Serde), &[(s("c1"), 30, 5)]);
    assert_eq!(
        read(&mut driver, "enriched", (&StringSerde, &StringSerde)),
        owned(&[("c1", s("Ada:20")), ("c1", s("Ada L.:30"))])
    );
    assert_eq!(
        read(&mut driver, "all", (&StringSerde, &StringSerde)),
        owned(&[("c1", s("?:10")), ("c1", s("Ada:20")), ("c1", s("Ada L.:30"))])
    );
}

#[test]
fn a_stream_with_a_changed_key_is_repartitioned_before_a_table_join() {
    let builder = StreamsBuilder::new();
    let names = builder.table("names", Consumed::with(StringSerde, StringSerde), Materialized::named("names"));
    builder
        .stream("events", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, user| user.clone())
        .repartition(Repartitioned::with(StringSerde, StringSerde).with_name("by-user"))
        .join(&names, |event, name| format!("{name} {event}"))
        .to("out", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().expect("topology");
    assert!(topology.describe().to_string().contains("by-user-repartition"));
    let mut driver = TopologyTestDriver::with_partitions(topology, 4).expect("driver");
    for (id, name) in [("u1", "Ada"), ("u2", "Grace"), ("u3", "Edsger")] {
        driver.pipe_input("names", &StringSerde, &StringSerde, &s(id), &s(name), 1).expect("pipe");
    }
    for (i, user) in ["u1", "u2", "u3", "u1"].iter().enumerate() {
        driver.pipe_input("events", &StringSerde, &StringSerde, &format!("event{i}"), &s(user), 2).expect("pipe");
    }
    let mut out = read(&mut driver, "out", (&StringSerde, &StringSerde));
    out.sort();
    assert_eq!(out, owned(&[("u1", s("Ada u1")), ("u1", s("Ada u1")), ("u2", s("Grace u2")), ("u3", s("Edsger u3"))]));
}

fn stream_join_topology(kind: &str) -> plexus_runtime::Topology {
    let builder = StreamsBuilder::new();
    let views = builder.stream("views", Consumed::with(StringSerde, StringSerde));
    let clicks = builder.stream("clicks", Consumed::with(StringSerde, StringSerde));
    let windows = JoinWindows::of_time_difference_and_grace(Duration::from_secs(10), Duration::from_secs(2));
    let joined = StreamJoined::with(StringSerde, StringSerde, StringSerde);
    let out = match kind {
        "inner" => views.join_stream(&clicks, |v, c| format!("{v}+{c}"), windows, joined),
        "left" => {
            views.left_join_stream(&clicks, |v, c| format!("{v}+{}", c.map_or("-", String::as_str)), windows, joined)
        }
        _ => views.outer_join_stream(
            &clicks,
            |v, c| format!("{}+{}", v.map_or("-", String::as_str), c.map_or("-", String::as_str)),
            windows,
            joined,
        ),
    };
    out.to("joined", Produced::with(StringSerde, StringSerde));
    builder.build().expect("topology")
}

fn run_stream_join(kind: &str) -> Vec<(String, String)> {
    let mut driver = TopologyTestDriver::new(stream_join_topology(kind)).expect("driver");
    let mut out = Vec::new();
    let mut step = |topic: &str, key: &str, value: &str, ts: i64| {
        driver.pipe_input(topic, &StringSerde, &StringSerde, &s(key), &s(value), ts).expect("pipe");
        out.extend(read(&mut driver, "joined", (&StringSerde, &StringSerde)));
    };
    step("views", "a", "v1", 0);
    step("clicks", "a", "c1", 5_000); // within 10 s of v1
    step("views", "b", "v2", 6_000); // b never gets a click
    step("clicks", "c", "c2", 7_000); // c never gets a view
    step("clicks", "a", "c3", 30_000); // too far from v1; closes every window above
    step("views", "z", "v3", 60_000); // closes c3's window
    out
}

#[test]
fn stream_stream_inner_join_pairs_records_within_the_window() {
    assert_eq!(run_stream_join("inner"), owned(&[("a", s("v1+c1"))]));
}

#[test]
fn stream_stream_left_join_emits_the_unmatched_only_once_the_window_closes() {
    assert_eq!(run_stream_join("left"), owned(&[("a", s("v1+c1")), ("b", s("v2+-"))]));
}

#[test]
fn stream_stream_outer_join_emits_both_sides_unmatched_records_once() {
    let out = run_stream_join("outer");
    assert_eq!(out, owned(&[("a", s("v1+c1")), ("b", s("v2+-")), ("c", s("-+c2")), ("a", s("-+c3"))]));
}

#[test]
fn table_table_joins_update_as_either_side_changes() {
    let builder = StreamsBuilder::new();
    let left = builder.table("left", Consumed::with(StringSerde, I64Serde), Materialized::named("l"));
    let right = builder.table("right", Consumed::with(StringSerde, I64Serde), Materialized::named("r"));
    left.join(&right, |a, b| a + b).to("inner", Produced::with(StringSerde, I64Serde));
    left.left_join(&right, |a, b| a * 100 + b.copied().unwrap_or(0))
        .to("left-out", Produced::with(StringSerde, I64Serde));
    left.outer_join(&right, |a, b| a.copied().unwrap_or(-1) * 1000 + b.copied().unwrap_or(-1))
        .to("outer", Produced::with(StringSerde, I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    pipe(&mut driver, "left", (&StringSerde, &I64Serde), &[(s("k"), 1, 1)]);
    pipe(&mut driver, "right", (&StringSerde, &I64Serde), &[(s("k"), 2, 2)]);
    pipe(&mut driver, "left", (&StringSerde, &I64Serde), &[(s("k"), 3, 3)]);
    driver.pipe_raw("right", Some(bytes::Bytes::from_static(b"k")), None, 4, Vec::new()).expect("delete");
    let read_opt = |driver: &mut TopologyTestDriver, topic: &str| -> Vec<Option<i64>> {
        driver
            .read_output(topic, &StringSerde, &OptionSerde(I64Serde))
            .expect("read")
            .into_iter()
            .map(|r| r.value)
            .collect()
    };
    assert_eq!(read_opt(&mut driver, "inner"), [Some(3), Some(5), None]);
    assert_eq!(read_opt(&mut driver, "left-out"), [Some(100), Some(102), Some(302), Some(300)]);
    assert_eq!(read_opt(&mut driver, "outer"), [Some(999), Some(1002), Some(3002), Some(2999)]);
}

#[test]
fn joined_topics_with_different_partition_counts_fail_with_a_clear_error() {
    let builder = StreamsBuilder::new();
    let table = builder.table("customers", Consumed::with(StringSerde, StringSerde), Materialized::named("c"));
    builder
        .stream("orders", Consumed::with(StringSerde, I64Serde))
        .join(&table, |a, n| format!("{n}{a}"))
        .to("out", Produced::with(StringSerde, StringSerde));
    let mut driver = TopologyTestDriver::with_partitions(builder.build().expect("topology"), 2).expect("driver");
    driver.create_topic("customers", 3).expect("topic");
    let err = driver.pipe_input("orders", &StringSerde, &I64Serde, &s("c1"), &1, 1).expect_err("not co-partitioned");
    let msg = err.to_string();
    assert!(msg.contains("co-partitioned") && msg.contains("customers") && msg.contains("orders"), "{msg}");
}

#[test]
fn a_stream_joins_a_global_table_on_a_key_it_computes_without_repartitioning() {
    let builder = StreamsBuilder::new();
    let products =
        builder.global_table("products", Consumed::with(StringSerde, StringSerde), Materialized::named("products"));
    let orders = builder.stream("orders", Consumed::with(StringSerde, StringSerde));
    // Orders are keyed by order id; the value names the product.
    orders
        .join_global(&products, |_, product| product.clone(), |product, name| format!("{product}={name}"))
        .to("named", Produced::with(StringSerde, StringSerde));
    orders
        .left_join_global(
            &products,
            |_, product| product.clone(),
            |p, name| format!("{p}={}", name.map_or("?", String::as_str)),
        )
        .to("all", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().expect("topology");
    let text = topology.describe().to_string();
    assert!(text.contains("Global store: products (topic: products)") && !text.contains("repartition"), "{text}");
    // Different partition counts do not matter: every task sees the whole table.
    let mut driver = TopologyTestDriver::with_partitions(topology, 3).expect("driver");
    driver.create_topic("products", 2).expect("topic");
    for (id, name) in [("p1", "pen"), ("p2", "ink")] {
        driver.pipe_input("products", &StringSerde, &StringSerde, &s(id), &s(name), 0).expect("pipe");
    }
    for (order, product) in [("o1", "p1"), ("o2", "p2"), ("o3", "p3")] {
        driver.pipe_input("orders", &StringSerde, &StringSerde, &s(order), &s(product), 1).expect("pipe");
    }
    let mut named = read(&mut driver, "named", (&StringSerde, &StringSerde));
    named.sort();
    assert_eq!(named, owned(&[("o1", s("p1=pen")), ("o2", s("p2=ink"))]));
    let mut all = read(&mut driver, "all", (&StringSerde, &StringSerde));
    all.sort();
    assert_eq!(all, owned(&[("o1", s("p1=pen")), ("o2", s("p2=ink")), ("o3", s("p3=?"))]));
}

#[test]
fn a_foreign_key_join_follows_changes_on_both_sides() {
    let builder = StreamsBuilder::new();
    // Orders (order id → customer id) and customers (customer id → name).
    let orders = builder.table("orders", Consumed::with(StringSerde, StringSerde), Materialized::named("orders"));
    let customers =
        builder.table("customers", Consumed::with(StringSerde, StringSerde), Materialized::named("customers"));
    orders
        .join_foreign_key(
            &customers,
            |customer| customer.clone(),
            |c, name| format!("{c}:{name}"),
            Materialized::named("named-orders").with_value_serde(StringSerde),
        )
        .to("named-orders", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().expect("topology");
    let text = topology.describe().to_string();
    assert!(
        text.contains("named-orders-subscription-registration") && text.contains("named-orders-subscription-response"),
        "{text}"
    );
    // Different partition counts: a foreign-key join needs no co-partitioning.
    let mut driver = TopologyTestDriver::with_partitions(topology, 3).expect("driver");
    driver.create_topic("customers", 2).expect("topic");
    let read_opt = |driver: &mut TopologyTestDriver| -> Vec<(String, Option<String>)> {
        driver
            .read_output("named-orders", &StringSerde, &OptionSerde(StringSerde))
            .expect("read")
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect()
    };
    pipe(&mut driver, "customers", (&StringSerde, &StringSerde), &[(s("c1"), s("Ada"), 1), (s("c2"), s("Grace"), 1)]);
    pipe(
        &mut driver,
        "orders",
        (&StringSerde, &StringSerde),
        &[(s("o1"), s("c1"), 2), (s("o2"), s("c2"), 2), (s("o3"), s("c9"), 2)],
    );
    let mut first = read_opt(&mut driver);
    first.sort();
    assert_eq!(first, [(s("o1"), Some(s("c1:Ada"))), (s("o2"), Some(s("c2:Grace")))], "o3's customer is unknown");
    // The right side changes: every order of c1 follows.
    pipe(&mut driver, "customers", (&StringSerde, &StringSerde), &[(s("c1"), s("Ada L."), 3)]);
    assert_eq!(read_opt(&mut driver), [(s("o1"), Some(s("c1:Ada L.")))]);
    // An order moves to another customer; a customer that appears completes o3.
    pipe(&mut driver, "orders", (&StringSerde, &StringSerde), &[(s("o1"), s("c2"), 4)]);
    pipe(&mut driver, "customers", (&StringSerde, &StringSerde), &[(s("c9"), s("Edsger"), 5)]);
    assert_eq!(read_opt(&mut driver), [(s("o1"), Some(s("c2:Grace"))), (s("o3"), Some(s("c9:Edsger")))]);
    // c1 changes again: o1 no longer follows it.
    pipe(&mut driver, "customers", (&StringSerde, &StringSerde), &[(s("c1"), s("Lovelace"), 6)]);
    assert!(read_opt(&mut driver).is_empty());
    // Deleting an order deletes its result; deleting a customer, its orders'.
    driver.pipe_raw("orders", Some(bytes::Bytes::from_static(b"o2")), None, 7, Vec::new()).expect("delete");
    driver.pipe_raw("customers", Some(bytes::Bytes::from_static(b"c9")), None, 8, Vec::new()).expect("delete");
    assert_eq!(read_opt(&mut driver), [(s("o2"), None), (s("o3"), None)]);
}
