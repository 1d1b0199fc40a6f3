//! `plexus demo`: the whole path on a throwaway data directory.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plexus::client::{
    Admin, Consumer, ConsumerConfig, EmbeddedAdmin, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig,
};
use plexus::{Log, LogConfig, Record, TopicConfig};

/// Produce keyed orders, consume them with a group of three, show the results.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many orders to produce.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Keep the data directory here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    keep: Option<std::path::PathBuf>,
}

const CUSTOMERS: u64 = 50;
const TOPIC: &str = "orders";
const MEMBERS: usize = 3;

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = args.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    println!("Plexus demo — data directory {}", dir.display());
    let log = Log::open(LogConfig::new(&dir))?;
    let result = demo(&log, &args).await;
    log.close()?;
    result
}

async fn demo(log: &Log, args: &DemoArgs) -> anyhow::Result<()> {
    let admin = EmbeddedAdmin::new(log.clone());
    admin.create_topic(TOPIC, 6, TopicConfig::default()).await?;
    println!("1. Created topic {TOPIC} with 6 partitions (acknowledged = fsynced).");

    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default())?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(args.records);
        bar.set_style(
            ProgressStyle::with_template("   producing {bar:30} {pos}/{len} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let mut expected_total = 0u64;
    let mut pending = std::collections::VecDeque::new();
    for i in 0..args.records {
        let customer = i % CUSTOMERS;
        let amount = i % 100 + 1;
        expected_total += amount;
        let record = Record::with_key(format!("customer-{customer:02}"), amount.to_string());
        pending.push_back(producer.send(TOPIC, record));
        if pending.len() >= 8192
            && let Some(delivery) = pending.pop_front()
        {
            delivery.await?;
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
    }
    while let Some(delivery) = pending.pop_front() {
        delivery.await?;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    producer.close().await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed();
    println!(
        "2. Produced {} orders for {CUSTOMERS} customers in {:.2?} ({:.0} records/s, each acknowledged after fsync).",
        args.records,
        elapsed,
        args.records as f64 / elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for member in 0..MEMBERS {
        let log = log.clone();
        let target = args.records;
        tasks.push(tokio::spawn(async move {
            let mut config = ConsumerConfig::new("order-totals");
            config.client_id = format!("member-{member}");
            config.auto_offset_reset = plexus::client::AutoOffsetReset::Earliest;
            let mut consumer = EmbeddedConsumer::new(log.clone(), config);
            consumer.subscribe(&[TOPIC]).await?;
            let (mut count, mut total) = (0u64, 0u64);
            let mut idle_since = Instant::now();
            // Stop once the whole group has consumed everything.
            while idle_since.elapsed() < Duration::from_secs(2) {
                let records = consumer.poll(Duration::from_millis(200)).await?;
                if records.is_empty() {
                    let lag = EmbeddedAdmin::new(log.clone()).group_lag("order-totals").await?;
                    let committed: i64 = lag.partitions.iter().filter_map(|p| p.committed).sum();
                    if committed >= i64::try_from(target).unwrap_or(i64::MAX) {
                        break;
                    }
                    continue;
                }
                idle_since = Instant::now();
                for r in &records {
                    count += 1;
                    total += std::str::from_utf8(r.value.as_deref().unwrap_or(b"0"))?.parse::<u64>()?;
                }
                consumer.commit_sync().await?;
            }
            let assignment = consumer.assignment();
            consumer.close().await?;
            anyhow::Ok((member, count, total, assignment))
        }));
    }
    let mut consumed = 0;
    let mut total = 0;
    println!("3. Consumed with group order-totals ({MEMBERS} members, range assignor):");
    for task in tasks {
        let (member, count, sum, assignment) = task.await??;
        consumed += count;
        total += sum;
        let partitions: Vec<String> = assignment.iter().map(|tp| tp.partition.to_string()).collect();
        println!("   member-{member}: {count} orders (its partitions at the end: [{}])", partitions.join(", "));
    }
    let elapsed = started.elapsed();
    println!("   {consumed} orders in {elapsed:.2?}; total amount {total} (expected {expected_total}).");
    anyhow::ensure!(
        consumed == args.records && total == expected_total,
        "the group did not see every order exactly once"
    );
    let lag = admin.group_lag("order-totals").await?;
    let remaining: i64 = lag.partitions.iter().map(|p| p.lag).sum();
    println!("4. Group order-totals has lag {remaining}: every order was consumed exactly once.");
    Ok(())
}
