//! The test driver across partitions: a key change routes records through
//! a topic between two sub-topologies, and each key's state ends up in the
//! task of the partition its key hashes to, as on a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_core::client::partitioner::partition_for_key;
use plexus_runtime::processor::{Processor, ProcessorContext, PunctuationType, Punctuator, Record};
use plexus_runtime::serde::{I64Serde, StringSerde};
use plexus_runtime::{Topology, TopologyTestDriver};

use super::{Count, counts_ref};

/// Makes the value (a page) the key.
struct ByPage;

impl Processor<String, String> for ByPage {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> plexus_runtime::Result<()> {
        let page = r.value.clone();
        ctx.forward(r.with_key(page))
    }
}

#[test]
fn a_key_change_routes_records_to_the_partition_of_their_new_key() {
    let mut t = Topology::new();
    let clicks = t.add_source("clicks", &["clicks"], StringSerde, StringSerde).expect("source");
    let by_page = t.add_processor("by-page", || ByPage, &[clicks]).expect("processor");
    t.add_sink("to-pages", "clicks-by-page", StringSerde, StringSerde, &[by_page]).expect("sink");
    let pages = t.add_source("pages", &["clicks-by-page"], StringSerde, StringSerde).expect("source");
    let count = t.add_processor("count", || Count { store: counts_ref() }, &[pages]).expect("processor");
    t.add_state_store(plexus_runtime::StoreBuilder::key_value("counts"), &["count"]).expect("store");
    t.add_sink("page-counts", "page-counts", StringSerde, I64Serde, &[count]).expect("sink");
    let text = t.describe().to_string();
    assert!(text.contains("Sub-topology: 1") && text.contains("Processor: count (stores: [counts])"), "{text}");

    let mut driver = TopologyTestDriver::with_partitions(t, 3).expect("driver");
    let pages = ["home", "cart", "checkout", "search"];
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..60usize {
        let (user, page) = (format!("user-{}", i % 7), pages[i * 3 % 4].to_owned());
        *expected.entry(page.clone()).or_default() += 1;
        driver.pipe_input("clicks", &StringSerde, &StringSerde, &user, &page, i as i64).expect("pipe");
    }
    let stored: BTreeMap<String, i64> = driver.key_value_store_all(&counts_ref()).expect("store").into_iter().collect();
    assert_eq!(stored, expected);
    // Every page's counts are in the partition its key hashes to.
    for (p, records) in driver.topic_records("page-counts").iter().enumerate() {
        for r in records {
            let key = r.key.clone().expect("keyed");
            assert_eq!(partition_for_key(&key, 3), p as i32, "{key:?}");
        }
    }
    let outputs = driver.read_output("page-counts", &StringSerde, &I64Serde).expect("read");
    assert_eq!(outputs.len(), 60);
    driver.close().expect("close");
}

/// Emits a heartbeat on each wall-clock punctuation.
struct Heartbeat;

impl Processor<String, String> for Heartbeat {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> plexus_runtime::Result<()> {
        ctx.schedule(Duration::from_secs(10), PunctuationType::WallClockTime);
        Ok(())
    }
    fn process(
        &mut self,
        _: Record<String, String>,
        _: &mut ProcessorContext<'_, String, String>,
    ) -> plexus_runtime::Result<()> {
        Ok(())
    }
    fn punctuate(
        &mut self,
        _: Punctuator,
        ts: i64,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> plexus_runtime::Result<()> {
        ctx.forward(Record::new("beat".to_owned(), ts.to_string(), ts))
    }
}

#[test]
fn wall_clock_punctuators_fire_when_the_driver_advances_time() {
    let mut t = Topology::new();
    let src = t.add_source("in", &["in"], StringSerde, StringSerde).expect("source");
    let beat = t.add_processor("beat", || Heartbeat, &[src]).expect("processor");
    t.add_sink("out", "beats", StringSerde, StringSerde, &[beat]).expect("sink");
    let mut driver = TopologyTestDriver::new(t).expect("driver");
    driver.pipe_input("in", &StringSerde, &StringSerde, &"k".to_owned(), &"v".to_owned(), 0).expect("pipe");
    assert!(driver.read_output("beats", &StringSerde, &StringSerde).expect("read").is_empty(), "not before 10 s");
    driver.advance_wall_clock_time(Duration::from_secs(5)).expect("advance");
    assert!(driver.read_output("beats", &StringSerde, &StringSerde).expect("read").is_empty());
    driver.advance_wall_clock_time(Duration::from_secs(6)).expect("advance");
    let beats = driver.read_output("beats", &StringSerde, &StringSerde).expect("read");
    assert_eq!(beats.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(), ["11000"]);
}
