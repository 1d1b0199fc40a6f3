//! The connectors benchmark. Scenarios (more come with the PostgreSQL
//! connectors):
//!
//! - `file-source`: a file of `--lines` lines (default 2,000,000, 60 bytes
//!   each) read by a `FileSource` into a topic on the embedded log
//!   (lines format, string converter, batches of 10,000 lines, each batch
//!   and its offsets in one transaction), timed from `start` until every
//!   line is committed; beside it, in the same run, `wc -l` of the same
//!   file (the machine's limit for reading lines).
//!
//! ```sh
//! cargo bench --bench connect -- file-source --lines 2000000
//! ```
//!
//! Prints one JSON line per scenario.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use plexus::client::EmbeddedClients;
use plexus::{Log, LogConfig};
use plexus_connectors::{ConnectorConfig, Worker};

fn main() -> anyhow::Result<()> {
    let mut lines: u64 = 2_000_000;
    let mut scenario = "file-source".to_owned();
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        match a.as_str() {
            "--lines" => lines = it.next().context("--lines needs a value")?.replace('_', "").parse()?,
            s if !s.starts_with('-') => s.clone_into(&mut scenario),
            other => anyhow::bail!("unknown option {other}; see the comment at the top of benches/connect.rs"),
        }
    }
    anyhow::ensure!(scenario == "file-source", "no scenario {scenario:?}: file-source");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(file_source(lines))
}

async fn file_source(lines: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input)?);
        for i in 0..lines {
            writeln!(f, "{i:012},payer-{:05},payee-{:05},{:>8}.{:02}", i % 10_007, i % 997, i % 100_000, i % 100)?;
        }
        f.flush()?;
    }
    let bytes = std::fs::metadata(&input)?.len();

    // The limit: counting the lines with wc -l (page cache warm, as for the source).
    let started = Instant::now();
    let out = std::process::Command::new("wc").arg("-l").arg(&input).output()?;
    let wc = started.elapsed();
    let counted: u64 = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("0").parse()?;
    anyhow::ensure!(counted == lines, "wc -l counted {counted}, not {lines}");

    let log = Log::open(LogConfig::new(dir.path().join("data")))?;
    let worker = Worker::new(Arc::new(EmbeddedClients::new(log.clone())));
    let config = ConnectorConfig::from_json(&format!(
        r#"{{"name": "bench", "config": {{"connector.class": "FileSource", "file": "{}", "topic": "lines",
             "value.converter": "string", "batch.size": "10000"}}}}"#,
        input.display()
    ))
    .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    worker.start(config).await?;
    while worker.records("bench") < lines {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} lines in 10 minutes",
            worker.records("bench")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    worker.stop_all().await;
    log.close()?;
    let rate = |d: Duration| lines as f64 / d.as_secs_f64();
    println!(
        "{{\"scenario\":\"file-source\",\"lines\":{lines},\"bytes\":{bytes},\"seconds\":{:.3},\"lines_per_sec\":{:.0},\
         \"wc_seconds\":{:.3},\"wc_lines_per_sec\":{:.0}}}",
        elapsed.as_secs_f64(),
        rate(elapsed),
        wc.as_secs_f64(),
        rate(wc)
    );
    Ok(())
}
