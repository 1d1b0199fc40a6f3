//! Page views per user in one-minute windows, final results only: each
//! window's count is emitted once, when stream time passes its end plus
//! the grace period (`suppress(until_window_closes)`), not on every view.
//!
//! ```sh
//! cargo run --release --example page_views
//! ```

mod support;

use std::time::Duration;

use plexus_dsl::{
    BufferConfig, Consumed, Materialized, Produced, StreamsBuilder, Suppressed, TimeWindows, WindowedSerde,
};
use plexus_runtime::serde::{I64Serde, OptionSerde, StringSerde};

const MINUTE: i64 = 60_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let example = support::Example::new(&[("page-views", 1), ("views-per-minute", 1)])?;
    // (user, page, seconds since the start)
    let views: &[(&str, &str, i64)] = &[
        ("alice", "/home", 1),
        ("bob", "/home", 5),
        ("alice", "/cart", 20),
        ("alice", "/pay", 59),
        ("bob", "/faq", 61),
        ("alice", "/home", 75),
        ("carol", "/home", 65), // out of order, within the window
        ("bob", "/home", 135),  // moves stream time past the first two windows
    ];
    let records: Vec<(&str, &[u8], i64)> = views.iter().map(|(u, p, s)| (*u, p.as_bytes(), s * 1000)).collect();
    example.produce("page-views", &records).await?;

    let builder = StreamsBuilder::new();
    builder
        .stream("page-views", Consumed::with(StringSerde, StringSerde))
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10)))
        .count(Materialized::named("views"))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .to("views-per-minute", Produced::with(WindowedSerde::new(StringSerde), OptionSerde(I64Serde)));
    let topology = builder.build()?;
    println!("{}", topology.describe());
    let mut streams = example.start(topology, "page-views")?;

    // Windows [0, 1 min) and [1 min, 2 min) closed; [2 min, 3 min) is still open.
    let finals = example.read("views-per-minute", 5).await?;
    println!("final counts ({} records, one per user and closed window):", finals.len());
    let serde = WindowedSerde::new(StringSerde);
    for r in finals {
        use plexus_runtime::serde::Serde;
        let w = serde.deserialize(r.key.as_deref())?;
        let n = I64Serde.deserialize(r.value.as_deref())?;
        println!("  {:<6} minute {}: {n} views", w.key, w.window.start / MINUTE);
    }
    streams.close()?;
    Ok(())
}
