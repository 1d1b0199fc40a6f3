//! Word count, the "hello world" of stream processing: lines in, a running
//! count per word out — a key change (line → word), so the DSL inserts a
//! repartition topic before the count.
//!
//! ```sh
//! cargo run --release --example word_count
//! ```

mod support;

use plexus_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use plexus_runtime::serde::{I64Serde, StringSerde};
use plexus_runtime::state::KeyValueStoreRef;

const LINES: &[&str] =
    &["all streams lead to the log", "the log is the source of truth", "streams and tables are two views of the log"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let example = support::Example::new(&[("text-lines", 2), ("word-counts", 2)])?;
    let lines: Vec<(String, &[u8], i64)> =
        LINES.iter().enumerate().map(|(i, l)| (format!("line-{i}"), l.as_bytes(), i as i64)).collect();
    let lines: Vec<(&str, &[u8], i64)> = lines.iter().map(|(k, v, t)| (k.as_str(), *v, *t)).collect();
    example.produce("text-lines", &lines).await?;

    let builder = StreamsBuilder::new();
    builder
        .stream("text-lines", Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|line| line.to_lowercase().split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .group_by(|_, word| word.clone(), Grouped::with(StringSerde, StringSerde))
        .count(Materialized::named("counts"))
        .to("word-counts", Produced::with(StringSerde, I64Serde));
    let topology = builder.build()?;
    println!("{}", topology.describe());

    let words: usize = LINES.iter().map(|l| l.split_whitespace().count()).sum();
    let mut streams = example.start(topology, "word-count")?;
    let updates = example.read("word-counts", words).await?;
    println!("{} count updates in word-counts; the final counts (an interactive query):", updates.len());
    let counts = streams.store(&KeyValueStoreRef::new("counts", StringSerde, I64Serde));
    let distinct = LINES.iter().flat_map(|l| l.split_whitespace()).collect::<std::collections::BTreeSet<_>>().len();
    let mut all = support::eventually(|| Ok(counts.all().ok().filter(|all| all.len() == distinct))).await?;
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (word, n) in all {
        println!("  {word:<8} {n}");
    }
    streams.close()?;
    Ok(())
}
