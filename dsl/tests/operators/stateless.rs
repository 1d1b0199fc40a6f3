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

#[test]
fn flat_map_values_select_key_split_and_merge() {
    use crate::{owned, pipe, read};
    let builder = StreamsBuilder::new();
    let lines = builder.stream("lines", Consumed::with(StringSerde, StringSerde));
    let words = lines.flat_map_values(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
    let by_word = words.select_key(|_, w| w.clone());
    let branches =
        by_word.split().branch("short", |_, w| w.len() <= 3).branch("long", |_, w| w.len() > 6).default_branch("rest");
    branches["short"].to("short", Produced::with(StringSerde, StringSerde));
    branches["long"]
        .merge(&branches["rest"])
        .map_values(|w| w.len() as i64)
        .to("lengths", Produced::with(StringSerde, I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    pipe(
        &mut driver,
        "lines",
        (&StringSerde, &StringSerde),
        &[("l1".to_owned(), "the quick brownish fox".to_owned(), 5)],
    );
    assert_eq!(
        read(&mut driver, "short", (&StringSerde, &StringSerde)),
        owned(&[("the", "the".to_owned()), ("fox", "fox".to_owned())])
    );
    assert_eq!(read(&mut driver, "lengths", (&StringSerde, &I64Serde)), owned(&[("quick", 5), ("brownish", 8)]));
}

#[test]
fn flat_map_foreach_and_a_topic_chosen_per_record() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let s = builder.stream("in", Consumed::with(StringSerde, I64Serde));
    let pairs = s.flat_map(|k, n| (0..n).map(move |i| (format!("{k}{i}"), i)));
    let seen2 = Arc::clone(&seen);
    pairs.foreach(move |k, _| seen2.lock().expect("lock").push(k.clone()));
    pairs.to_dynamic(
        |_, i| if i % 2 == 0 { "even".into() } else { "odd".into() },
        Produced::with(StringSerde, I64Serde),
    );
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    driver.pipe_input("in", &StringSerde, &I64Serde, &"a".to_owned(), &3, 1).expect("pipe");
    assert_eq!(*seen.lock().expect("lock"), ["a0", "a1", "a2"]);
    let even = driver.read_output("even", &StringSerde, &I64Serde).expect("read");
    let odd = driver.read_output("odd", &StringSerde, &I64Serde).expect("read");
    assert_eq!((even.len(), odd.len()), (2, 1));
}

#[test]
fn a_custom_processor_with_a_store_and_a_stream_time_punctuator() {
    use plexus_runtime::processor::{Processor, ProcessorContext, PunctuationType, Punctuator, Record};
    use plexus_runtime::state::KeyValueStoreRef;
    use plexus_runtime::topology::StoreBuilder;
    use std::time::Duration;

    /// Sums values per key; every 10 ms of stream time emits all sums.
    struct Sums(KeyValueStoreRef<String, i64>);
    impl Processor<String, i64, String, i64> for Sums {
        fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> plexus_runtime::Result<()> {
            ctx.schedule(Duration::from_millis(10), PunctuationType::StreamTime);
            Ok(())
        }
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<'_, String, i64>,
        ) -> plexus_runtime::Result<()> {
            let mut s = ctx.key_value_store(&self.0)?;
            let sum = s.get(&r.key)?.unwrap_or(0) + r.value;
            s.put(&r.key, &sum)
        }
        fn punctuate(
            &mut self,
            _: Punctuator,
            ts: i64,
            ctx: &mut ProcessorContext<'_, String, i64>,
        ) -> plexus_runtime::Result<()> {
            let all = ctx.key_value_store(&self.0)?.all()?;
            for (k, v) in all {
                ctx.forward(Record::new(k, v, ts))?;
            }
            Ok(())
        }
    }
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("sums"));
    builder
        .stream("in", Consumed::with(StringSerde, I64Serde))
        .process(|| Sums(KeyValueStoreRef::new("sums", StringSerde, I64Serde)), &["sums"])
        .to("out", Produced::with(StringSerde, I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    // Stream-time punctuation fires after the first record, then every 10 ms.
    for (v, ts) in [(1, 0), (2, 5), (4, 12)] {
        driver.pipe_input("in", &StringSerde, &I64Serde, &"k".to_owned(), &v, ts).expect("pipe");
    }
    let out: Vec<i64> =
        driver.read_output("out", &StringSerde, &I64Serde).expect("read").into_iter().map(|r| r.value).collect();
    assert_eq!(out, [1, 7], "fired after the records at 0 and 12");
}
