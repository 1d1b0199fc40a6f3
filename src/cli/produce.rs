//! `plexus produce TOPIC`

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plexus::client::{Delivery, EmbeddedProducer, Producer, ProducerConfig};
use plexus::{Log, Record};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::output;

/// Sends at most this many records ahead of their acknowledgements.
const WINDOW: usize = 16 * 1024;

/// Write records to a topic, one per input line (stdin unless --file).
///
/// Example: printf 'alice:book\nbob:pen\n' | plexus produce orders --key-separator :
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic (created with default settings if it does not exist).
    topic: String,
    /// Split each line at the first SEP: the text before it is the record's key.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Read lines from this file instead of stdin (with a progress bar on a terminal).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Send every record to this partition instead of choosing by key.
    #[arg(long)]
    partition: Option<i32>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(log: &Log, args: ProduceArgs) -> anyhow::Result<()> {
    let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default())?;
    let (reader, progress): (Box<dyn AsyncRead + Unpin + Send>, Option<ProgressBar>) = match &args.file {
        Some(path) => {
            let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
            let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::new(len);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} [{bar:30}] {per_sec} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar
            });
            (Box::new(file), bar)
        }
        None => (Box::new(tokio::io::stdin()), None),
    };
    let mut lines = BufReader::new(reader).lines();
    let mut in_flight: VecDeque<Delivery> = VecDeque::new();
    let mut written = 0u64;
    let mut line_no = 0u64;
    while let Some(line) = lines.next_line().await.with_context(|| format!("reading line {}", line_no + 1))? {
        line_no += 1;
        if let Some(bar) = &progress {
            bar.inc(line.len() as u64 + 1);
        }
        let record = match args.key_separator.as_deref().and_then(|sep| line.split_once(sep)) {
            Some((key, value)) => Record::with_key(key.to_owned(), value.to_owned()),
            None => Record::new(line),
        };
        in_flight.push_back(match args.partition {
            Some(p) => producer.send_to(&args.topic, p, record),
            None => producer.send(&args.topic, record),
        });
        if in_flight.len() >= WINDOW
            && let Some(delivery) = in_flight.pop_front()
        {
            delivery.await.with_context(|| format!("writing line {}", written + 1))?;
            written += 1;
        }
    }
    while let Some(delivery) = in_flight.pop_front() {
        delivery.await?;
        written += 1;
    }
    producer.close().await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if args.json {
        output::json(&json!({"topic": args.topic, "records": written}))?;
    } else {
        println!("Wrote {written} record(s) to {}.", args.topic);
    }
    Ok(())
}
