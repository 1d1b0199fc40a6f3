//! `plexus consume TOPIC`

use std::time::{Duration, Instant};

use std::io::Write;

use anyhow::Context;
use clap::Args;
use plexus::client::{AutoOffsetReset, Consumer, ConsumerConfig, EmbeddedConsumer, SeekTo};
use plexus::{Log, TopicPartition};
use serde_json::json;

use super::output::text;

/// Read records from a topic.
///
/// Without --group, reads every partition (or --partition P) from the end,
/// or from where --from-beginning, --offset or --from-time say. With
/// --group, joins that consumer group and commits its progress.
///
/// Example: plexus consume orders --from-beginning --max-messages 10 --json
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    topic: String,
    /// Consume as a member of this group (committing offsets as it goes).
    #[arg(long)]
    group: Option<String>,
    /// Start from the earliest offset (in a group: when it has no committed offset).
    #[arg(long)]
    from_beginning: bool,
    /// Read only this partition.
    #[arg(long, conflicts_with = "group")]
    partition: Option<i32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Start at the first record at or after this time: ms since the epoch, or RFC 3339 (2026-11-22T10:00:00Z).
    #[arg(long, value_name = "TIME", conflicts_with = "group")]
    from_time: Option<String>,
    /// Exit after this many records.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Exit when no record arrives for this long (default: wait forever).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Print each record with its key (KEY<TAB>VALUE).
    #[arg(long)]
    print_key: bool,
    /// Print one JSON object per record: topic, partition, offset, timestamp, key, value, headers.
    #[arg(long)]
    json: bool,
}

/// Parses `--from-time`.
pub(crate) fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("{s:?} is not a time: give ms since the epoch or RFC 3339 like 2026-11-22T10:00:00Z")
    })?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

pub(crate) async fn run(log: &Log, args: ConsumeArgs) -> anyhow::Result<()> {
    let count = log.partition_count(&args.topic)?;
    let mut config = match &args.group {
        Some(g) => ConsumerConfig::new(g.clone()),
        None => ConsumerConfig::without_group(),
    };
    config.auto_offset_reset = if args.from_beginning { AutoOffsetReset::Earliest } else { AutoOffsetReset::Latest };
    // Commit exactly what was printed, not what was fetched.
    config.enable_auto_commit = false;
    let mut consumer = EmbeddedConsumer::new(log.clone(), config);
    if args.group.is_some() {
        consumer.subscribe(&[args.topic.as_str()]).await?;
    } else {
        let partitions: Vec<TopicPartition> = match args.partition {
            Some(p) if p < 0 || p >= count => {
                anyhow::bail!("topic {} has partitions 0 to {}; there is no partition {p}", args.topic, count - 1)
            }
            Some(p) => vec![TopicPartition::new(&args.topic, p)],
            None => (0..count).map(|p| TopicPartition::new(&args.topic, p)).collect(),
        };
        consumer.assign(&partitions).await?;
        let start = match (&args.offset, &args.from_time) {
            (Some(o), _) => SeekTo::Offset(*o),
            (None, Some(t)) => SeekTo::Timestamp(parse_time(t)?),
            (None, None) if args.from_beginning => SeekTo::Beginning,
            (None, None) => SeekTo::End,
        };
        for tp in &partitions {
            consumer.seek(tp, start).await?;
        }
    }
    let consumed = consume_loop(&mut consumer, &args).await;
    let closed = consumer.close().await;
    consumed?;
    Ok(closed?)
}

async fn consume_loop(consumer: &mut EmbeddedConsumer, args: &ConsumeArgs) -> anyhow::Result<()> {
    let mut seen = 0u64;
    let mut last_record = Instant::now();
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        if args.max_messages.is_some_and(|max| seen >= max) {
            break;
        }
        let wait = idle.map_or(Duration::from_millis(500), |d| d.saturating_sub(last_record.elapsed()));
        let records = tokio::select! {
            r = consumer.poll(wait) => r?,
            _ = tokio::signal::ctrl_c() => break,
        };
        if records.is_empty() {
            if idle.is_some_and(|d| last_record.elapsed() >= d) {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        let mut unprinted: std::collections::BTreeMap<TopicPartition, i64> = std::collections::BTreeMap::new();
        for r in records {
            if args.max_messages.is_some_and(|max| seen >= max) {
                unprinted.entry(TopicPartition::new(&r.topic, r.partition)).or_insert(r.offset);
                continue;
            }
            seen += 1;
            if args.json {
                let headers: serde_json::Map<String, serde_json::Value> =
                    r.headers.iter().map(|h| (h.key.clone(), json!(text(h.value.as_deref())))).collect();
                let line = json!({
                    "topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
                    "key": text(r.key.as_deref()), "value": text(r.value.as_deref()), "headers": headers,
                });
                writeln!(stdout, "{line}")?;
            } else if args.print_key {
                writeln!(
                    stdout,
                    "{}\t{}",
                    text(r.key.as_deref()).unwrap_or_default(),
                    text(r.value.as_deref()).unwrap_or_default()
                )?;
            } else {
                writeln!(stdout, "{}", text(r.value.as_deref()).unwrap_or_default())?;
            }
        }
        // Records fetched but not printed are left for the next consumer.
        for (tp, offset) in unprinted {
            consumer.seek(&tp, SeekTo::Offset(offset)).await?;
        }
        stdout.flush()?;
        if args.group.is_some() {
            consumer.commit_sync().await?;
        }
    }
    Ok(())
}
