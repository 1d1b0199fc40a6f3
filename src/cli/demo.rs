//! `plexus demo`: the main job in one command, on the embedded default.
//!
//! A payments file (generated, or `--input`) goes through a `FileSource`
//! (`examples/demo/payments-source.json`) into the topic `payments`; the
//! DSL topology of `examples/demo/topology.rs` keeps the total paid per
//! payer and the count and sum per payer per minute; a `FileSink`
//! (`examples/demo/totals-sink.json`) writes the totals topic as JSON
//! lines, and with `--postgres URL` a `PostgresSink`
//! (`examples/demo/totals-postgres.json`) upserts them into the table
//! `payment_totals`. At the end the top payers are read back through an
//! interactive query.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plexus::client::EmbeddedClients;
use plexus::{Log, LogConfig};
use plexus_connectors::{ConnectorConfig, Worker};
use plexus_runtime::serde::{Json, StringSerde};
use plexus_runtime::state::KeyValueStoreRef;
use plexus_runtime::{Streams, StreamsConfig};

// The example file a user copies: its items are `pub` for them.
#[allow(unreachable_pub)]
#[path = "../../examples/demo/topology.rs"]
mod topology;

use topology::{Totals, cents};

/// Run the demo pipeline: file → topic → streams → file.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many payments to generate.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Read this payments CSV (header payer,payee,amount,ts) instead of
    /// generating one.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Also upsert the totals into the table payment_totals of this
    /// PostgreSQL database (created if missing), e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

const SOURCE: &str = include_str!("../../examples/demo/payments-source.json");
const SINK: &str = include_str!("../../examples/demo/totals-sink.json");
const POSTGRES_SINK: &str = include_str!("../../examples/demo/totals-postgres.json");

/// Runs the demo in `data_dir`, or in a temporary directory.
pub(crate) async fn run(args: DemoArgs, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = data_dir.map_or_else(|| tmp.path().to_path_buf(), Path::to_path_buf);
    std::fs::create_dir_all(&dir)?;
    println!("Plexus demo — data directory {}", dir.display());
    let input = match &args.input {
        Some(path) => path.clone(),
        None => {
            let path = dir.join("payments.csv");
            generate(&path, args.events)?;
            println!("1. Generated {} payments into {}", args.events, path.display());
            path
        }
    };
    let expected = read_expected(&input)?;
    let events: u64 = expected.values().map(|t| t.count).sum();
    let log = Log::open(LogConfig::new(dir.join("log")))?;
    let result = demo(&log, &dir, &input, events, &expected, args.postgres.as_deref()).await;
    log.close()?;
    result
}

/// Writes `n` payments: 1,000 payers, one payment every 60 ms of event time.
fn generate(path: &Path, n: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "payer,payee,amount,ts")?;
    for i in 0..n {
        let amount = (i * 7_919 % 100_000 + 1) as f64 / 100.0;
        writeln!(f, "payer-{:04},payee-{:04},{amount},{}", i * 31 % 1_000, i % 997, 1_700_000_000_000 + i * 60)?;
    }
    f.flush()?;
    Ok(())
}

/// The totals per payer, computed straight from the file (the check).
fn read_expected(path: &Path) -> anyhow::Result<std::collections::BTreeMap<String, Totals>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut totals: std::collections::BTreeMap<String, Totals> = std::collections::BTreeMap::new();
    for (i, row) in reader.deserialize::<topology::Payment>().enumerate() {
        let p = row.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        let t = totals.entry(p.payer.clone()).or_default();
        t.count += 1;
        t.total_cents += cents(p.amount);
    }
    Ok(totals)
}

fn connector_config(text: &str, file: &Path) -> anyhow::Result<ConnectorConfig> {
    let mut config = ConnectorConfig::from_json(text).map_err(anyhow::Error::msg)?;
    config.config.insert("file".into(), file.to_string_lossy().into_owned());
    Ok(config)
}

async fn demo(
    log: &Log,
    dir: &Path,
    input: &Path,
    events: u64,
    expected: &std::collections::BTreeMap<String, Totals>,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    for (topic, partitions) in [("payments", 2), ("payment-totals", 2), ("payment-windows", 2)] {
        log.create_topic(topic, partitions, plexus::TopicConfig::default())?;
    }
    let worker = Worker::new(Arc::new(EmbeddedClients::new(log.clone())));
    let output = dir.join("payment-totals.jsonl");
    let started = Instant::now();
    worker.start(connector_config(SOURCE, input)?).await?;
    println!("2. FileSource reads {} into the topic payments", input.display());

    let state = dir.join("state");
    let config = StreamsConfig::from_pairs([
        ("application.id", "payments-demo"),
        ("num.stream.threads", "2"),
        ("commit.interval.ms", "1000"),
        ("state.dir", state.to_str().context("a UTF-8 data directory")?),
    ])?;
    let mut streams = Streams::new(topology::build()?, config, EmbeddedClients::new(log.clone()))?;
    streams.start()?;
    println!("3. The topology keeps the total per payer and per payer and minute (RocksDB in {})", state.display());
    worker.start(connector_config(SINK, &output)?).await?;
    println!("4. FileSink writes the totals topic to {}", output.display());
    let mut sinks = vec!["payment-totals-file"];
    if let Some(url) = postgres {
        let mut config = ConnectorConfig::from_json(POSTGRES_SINK).map_err(anyhow::Error::msg)?;
        config.config.insert("connection.url".into(), url.to_owned());
        worker.start(config).await?;
        sinks.push("payment-totals-postgres");
        println!("   PostgresSink upserts them into the table payment_totals");
    }

    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(events);
        bar.set_style(
            ProgressStyle::with_template("   {bar:30} {pos}/{len} processed ({per_sec}) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let store = streams.store(&KeyValueStoreRef::new(topology::TOTALS_STORE, StringSerde, Json::<Totals>::new()));
    // Done when the queryable (committed) totals count every payment.
    loop {
        if streams.state() == plexus_runtime::StreamsState::Error {
            let e = streams.close().err().map_or_else(|| "no reason given".to_owned(), |e| e.to_string());
            anyhow::bail!("the topology failed: {e}");
        }
        let read = worker.records("payments-file");
        let processed = streams.metrics().records_processed;
        if let Some(bar) = &bar {
            bar.set_position(processed.min(events));
            bar.set_message(format!("{read} read"));
        }
        if processed >= events {
            let counted: u64 = store.all()?.iter().map(|(_, t)| t.count).sum();
            if counted == events {
                break;
            }
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "the demo did not finish in an hour");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut top = store.all()?;
    streams.close()?;
    // The sink has written every update of the totals once it reaches the topic's end.
    let totals_end: i64 = (0..log.partition_count("payment-totals")?)
        .map(|p| log.offsets(&plexus::TopicPartition::new("payment-totals", p)).map_or(0, |o| o.2))
        .sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    for sink in sinks {
        while worker.records(sink) < u64::try_from(totals_end).unwrap_or(0) {
            let status = worker.status(sink)?;
            if status.state == plexus_connectors::State::Failed {
                let trace = status.tasks.iter().find_map(|t| t.trace.clone()).unwrap_or_default();
                worker.stop_all().await;
                anyhow::bail!("the sink {sink} failed: {trace}");
            }
            anyhow::ensure!(Instant::now() < deadline, "the sink {sink} did not write the totals in two minutes");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Stopping flushes: the last totals are written, and their offsets with them.
    worker.stop_all().await;

    let rate = events as f64 / elapsed.as_secs_f64();
    println!("5. {events} payments in {elapsed:.2?}: {rate:.0} payments/s, read, aggregated and committed.");
    top.sort_by_key(|(payer, t)| (std::cmp::Reverse(t.total_cents), payer.clone()));
    println!("   Top payers (interactive query on the store {}):", topology::TOTALS_STORE);
    for (payer, t) in top.iter().take(5) {
        println!("   {payer:<12} {:>12.2} in {} payments", t.total_cents as f64 / 100.0, t.count);
    }
    let wrong = top.iter().filter(|(payer, t)| expected.get(payer) != Some(t)).count();
    anyhow::ensure!(
        wrong == 0 && top.len() == expected.len(),
        "{wrong} of {} payers' totals differ from the sums computed from the file",
        expected.len()
    );
    println!("   Every payer's total equals the sum computed straight from the file.");
    println!(
        "Outputs: {} (totals as JSON lines), topics payment-totals and payment-windows in {}",
        output.display(),
        dir.join("log").display()
    );
    if postgres.is_some() {
        println!("         and the table payment_totals (payer, count, total_cents) in PostgreSQL");
    }
    Ok(())
}
