//! Stateless operators: filter, filter_not, map, map_values, to.

use plexus_dsl::{Consumed, Produced, StreamsBuilder};
use plexus_runtime::TopologyTestDriver;
use plexus_runtime::serde::{I64Serde, StringSerde};

#[test]
fn filter_map_and_map_values_transform_each_record() {
    let builder = StreamsBuilder::new();
    let amounts = builder.stream("amounts", Consumed::with(StringSerde, I64Serde));
    amounts.filter(|_, a| *a > 100).map_values(|a| a * 2).to("doubled", Produced::with(StringSerde, I64Serde));
    amounts
        .filter_not(|_, a| *a > 100)
        .map(|k, a| (format!("{k}!"), a.to_string()))
        .to("small", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().expect("topology");
    let text = topology.describe().to_string();
    assert!(text.contains("KSTREAM-FILTER-0000000001") && text.contains("KSTREAM-MAPVALUES-0000000002"), "{text}");

    let mut driver = TopologyTestDriver::new(topology).expect("driver");
    for (k, a) in [("alice", 50i64), ("bob", 150), ("carol", 101)] {
        driver.pipe_input("amounts", &StringSerde, &I64Serde, &k.to_owned(), &a, 1).expect("pipe");
    }
    let doubled: Vec<(String, i64)> = driver
        .read_output("doubled", &StringSerde, &I64Serde)
        .expect("read")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(doubled, [("bob".to_owned(), 300), ("carol".to_owned(), 202)]);
    let small: Vec<(String, String)> = driver
        .read_output("small", &StringSerde, &StringSerde)
        .expect("read")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(small, [("alice!".to_owned(), "50".to_owned())]);
}

#[test]
fn a_bad_sink_topic_is_reported_at_build() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .to("bad topic!", Produced::with(StringSerde, StringSerde));
    let err = builder.build().expect_err("invalid topic name");
    assert!(err.to_string().contains("bad topic!"), "{err}");
}
