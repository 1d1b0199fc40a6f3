//! Windowed aggregation: tumbling, hopping, sliding and session windows,
//! grace periods and late records, and suppression of all but final results.

use std::time::Duration;

use plexus_dsl::{
    BufferConfig, Consumed, Materialized, Produced, SessionWindows, SlidingWindows, Suppressed, TimeWindows, Windowed,
    WindowedSerde,
};
use plexus_runtime::TopologyTestDriver;
use plexus_runtime::serde::{I64Serde, OptionSerde, StringSerde};
use plexus_runtime::state::WindowStoreRef;

use crate::pipe;

const MIN: i64 = 60_000;

fn windowed(driver: &mut TopologyTestDriver, topic: &str) -> Vec<(String, i64, i64, Option<i64>)> {
    driver
        .read_output(topic, &WindowedSerde::new(StringSerde), &OptionSerde(I64Serde))
        .expect("read")
        .into_iter()
        .map(|r| (r.key.key, r.key.window.start, r.key.window.end, r.value))
        .collect()
}

fn counts_topology(windows: TimeWindows, suppress: bool) -> plexus_runtime::Topology {
    let builder = plexus_dsl::StreamsBuilder::new();
    let counts = builder
        .stream("views", Consumed::with(StringSerde, StringSerde))
        .group_by_key()
        .windowed_by(windows)
        .count(Materialized::named("views-per-minute"));
    let counts =
        if suppress { counts.suppress(Suppressed::until_window_closes(BufferConfig::unbounded())) } else { counts };
    counts.to_stream().to("counts", Produced::with(WindowedSerde::new(StringSerde), OptionSerde(I64Serde)));
    builder.build().expect("topology")
}

#[test]
fn tumbling_windows_drop_records_after_the_grace_period_and_count_them() {
    let windows = TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10));
    let mut driver = TopologyTestDriver::new(counts_topology(windows, false)).expect("driver");
    let v = |u: &str, ts: i64| (u.to_owned(), "page".to_owned(), ts);
    pipe(
        &mut driver,
        "views",
        (&StringSerde, &StringSerde),
        &[
            v("alice", 1_000),
            v("alice", 59_999),
            v("alice", MIN),          // next window
            v("alice", 65_000),       // stream time 65 s: [0, 60 s) is still open (grace ends at 70 s)
            v("alice", 30_000),       // late but within grace: counted
            v("alice", MIN + 10_000), // stream time 70 s: [0, 60 s) closes
            v("alice", 5_000),        // too late: dropped
        ],
    );
    let out = windowed(&mut driver, "counts");
    assert_eq!(
        out,
        [
            ("alice".to_owned(), 0, MIN, Some(1)),
            ("alice".to_owned(), 0, MIN, Some(2)),
            ("alice".to_owned(), MIN, 2 * MIN, Some(1)),
            ("alice".to_owned(), MIN, 2 * MIN, Some(2)),
            ("alice".to_owned(), 0, MIN, Some(3)),
            ("alice".to_owned(), MIN, 2 * MIN, Some(3)),
        ]
    );
    assert_eq!(driver.dropped_records(), 1, "the late record is counted in the dropped-records metric");
    let store = WindowStoreRef::new("views-per-minute", StringSerde, I64Serde);
    let all = driver.window_store_fetch_all(&store, 0, 10 * MIN).expect("fetch");
    assert_eq!(all, [("alice".to_owned(), 0, 3), ("alice".to_owned(), MIN, 3)]);
}

#[test]
fn hopping_windows_count_a_record_in_every_window_holding_it() {
    let windows = TimeWindows::of_size_with_no_grace(Duration::from_secs(60)).advance_by(Duration::from_secs(30));
    let mut driver = TopologyTestDriver::new(counts_topology(windows, false)).expect("driver");
    pipe(&mut driver, "views", (&StringSerde, &StringSerde), &[("bob".to_owned(), "p".to_owned(), 45_000)]);
    let starts: Vec<i64> = windowed(&mut driver, "counts").into_iter().map(|w| w.1).collect();
    assert_eq!(starts, [0, 30_000]);
}

#[test]
fn suppress_until_window_closes_emits_one_final_count_per_window() {
    let windows = TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(5));
    let mut driver = TopologyTestDriver::with_partitions(counts_topology(windows, true), 1).expect("driver");
    let v = |u: &str, ts: i64| (u.to_owned(), "page".to_owned(), ts);
    pipe(
        &mut driver,
        "views",
        (&StringSerde, &StringSerde),
        &[v("alice", 1_000), v("bob", 2_000), v("alice", 50_000), v("alice", 62_000)],
    );
    assert!(windowed(&mut driver, "counts").is_empty(), "nothing is final before stream time passes 65 s");
    pipe(&mut driver, "views", (&StringSerde, &StringSerde), &[v("carol", 64_999)]);
    assert!(windowed(&mut driver, "counts").is_empty());
    pipe(&mut driver, "views", (&StringSerde, &StringSerde), &[v("carol", 65_000)]);
    assert_eq!(
        windowed(&mut driver, "counts"),
        [("alice".to_owned(), 0, MIN, Some(2)), ("bob".to_owned(), 0, MIN, Some(1))]
    );
}

#[test]
fn suppress_until_time_limit_rate_limits_updates_and_bounds_its_buffer() {
    let builder = plexus_dsl::StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, I64Serde))
        .group_by_key()
        .reduce(|a, b| a + b, Materialized::named("sums"))
        .suppress(Suppressed::until_time_limit(Duration::from_secs(10), BufferConfig::max_records(2)))
        .to("out", Produced::with(StringSerde, I64Serde));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    let r = |k: &str, v: i64, ts: i64| (k.to_owned(), v, ts);
    pipe(&mut driver, "in", (&StringSerde, &I64Serde), &[r("a", 1, 0), r("a", 2, 1_000), r("b", 5, 2_000)]);
    assert!(driver.read_output("out", &StringSerde, &I64Serde).expect("read").is_empty());
    // A third key overflows the two-key buffer: the oldest ("a", due at 11 s) goes early.
    pipe(&mut driver, "in", (&StringSerde, &I64Serde), &[r("c", 7, 3_000)]);
    let out: Vec<(String, i64)> = driver
        .read_output("out", &StringSerde, &I64Serde)
        .expect("read")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(out, [("a".to_owned(), 3)]);
    // Time passes: b (due 12 s) and c (due 13 s) are emitted.
    pipe(&mut driver, "in", (&StringSerde, &I64Serde), &[r("d", 1, 13_000)]);
    let out: Vec<(String, i64)> = driver
        .read_output("out", &StringSerde, &I64Serde)
        .expect("read")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(out, [("b".to_owned(), 5), ("c".to_owned(), 7)]);
}

#[test]
fn session_windows_merge_sessions_a_record_bridges() {
    let builder = plexus_dsl::StreamsBuilder::new();
    builder
        .stream("clicks", Consumed::with(StringSerde, StringSerde))
        .group_by_key()
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(5)))
        .count(Materialized::named("sessions"))
        .to_stream()
        .to("sessions", Produced::with(WindowedSerde::new(StringSerde), OptionSerde(I64Serde)));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    let c = |ts: i64| ("u".to_owned(), "click".to_owned(), ts);
    pipe(&mut driver, "clicks", (&StringSerde, &StringSerde), &[c(0), c(10_000), c(5_000)]);
    let out = windowed(&mut driver, "sessions");
    let u = || "u".to_owned();
    assert_eq!(
        out,
        [
            (u(), 0, 0, Some(1)),
            (u(), 10_000, 10_000, Some(1)),
            // 5 s is within the gap of both: they merge into [0, 10 s] with 3 clicks.
            (u(), 0, 0, None),
            (u(), 10_000, 10_000, None),
            (u(), 0, 10_000, Some(3)),
        ]
    );
    let store = plexus_runtime::state::SessionStoreRef::new("sessions", StringSerde, I64Serde);
    assert_eq!(driver.session_store_fetch(&store, &u()).expect("fetch"), [(0, 10_000, 3)]);
    // A record after the session closed is dropped.
    pipe(&mut driver, "clicks", (&StringSerde, &StringSerde), &[c(30_000), c(1_000)]);
    assert_eq!(driver.dropped_records(), 1);
}

#[test]
fn sliding_windows_hold_the_records_within_the_time_difference() {
    let builder = plexus_dsl::StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key()
        .windowed_by_sliding(SlidingWindows::of_time_difference_with_no_grace(Duration::from_secs(10)))
        .count(Materialized::named("sliding"))
        .to_stream()
        .to("out", Produced::with(WindowedSerde::new(StringSerde), OptionSerde(I64Serde)));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    let r = |ts: i64| ("k".to_owned(), "x".to_owned(), ts);
    pipe(&mut driver, "in", (&StringSerde, &StringSerde), &[r(10_000), r(15_000)]);
    let out: Vec<(i64, i64, Option<i64>)> = windowed(&mut driver, "out").into_iter().map(|w| (w.1, w.2, w.3)).collect();
    assert_eq!(
        out,
        [
            (0, 10_000, Some(1)),      // the first record's window
            (5_000, 15_000, Some(2)),  // the second's: holds both
            (10_001, 20_001, Some(1)), // the first's right window now holds the second
        ]
    );
    let _: Option<Windowed<String>> = None;
}

#[test]
fn a_timestamp_extractor_sets_event_time_and_stream_time() {
    let builder = plexus_dsl::StreamsBuilder::new();
    // The value is the event time in ms; the log timestamp is ignored.
    builder
        .stream("readings", Consumed::with(StringSerde, I64Serde).with_timestamp_extractor(|_, at, _| *at))
        .group_by_key()
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
        .count(Materialized::named("per-minute"))
        .to_stream()
        .to("counts", Produced::with(WindowedSerde::new(StringSerde), OptionSerde(I64Serde)));
    let mut driver = TopologyTestDriver::new(builder.build().expect("topology")).expect("driver");
    let r = |at: i64| ("s1".to_owned(), at, 0);
    pipe(&mut driver, "readings", (&StringSerde, &I64Serde), &[r(61_000), r(130_000), r(5_000), r(-1)]);
    let starts: Vec<i64> = windowed(&mut driver, "counts").into_iter().map(|w| w.1).collect();
    assert_eq!(starts, [MIN, 2 * MIN], "5 s is late once stream time is 130 s; a negative time is skipped");
    assert_eq!(driver.dropped_records(), 2);
}
