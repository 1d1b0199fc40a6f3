//! The connectors benchmark. Scenarios:
//!
//! - `file-source`: a file of `--lines` lines (default 2,000,000, 60 bytes
//!   each) read by a `FileSource` into a topic on the embedded log
//!   (lines format, string converter, batches of 10,000 lines, each batch
//!   and its offsets in one transaction), timed from `start` until every
//!   line is committed; beside it, in the same run, `wc -l` of the same
//!   file (the machine's limit for reading lines).
//!
//! - `pg-sink`: `--rows` rows (default 1,000,000; id, payer, payee, a
//!   numeric amount, a timestamptz) in a topic, written by a
//!   `PostgresSink` (insert mode, `batch.max.rows` 10,000, exactly once)
//!   into a table, timed from `start` until its offsets table says every
//!   row is committed; beside it `psql -c "COPY … FROM STDIN"` of the same
//!   rows into a twin table (the server's limit for loading rows).
//! - `pg-source`: the same rows in a table, read by a `PostgresSource`
//!   (incrementing mode, batches of 10,000 rows) into a topic, timed until
//!   every row is in the log; beside it `psql -c "COPY … TO STDOUT"`.
//! - `pg-cdc`: a `PostgresCdcSource` on the table, then one `UPDATE` of
//!   every row; timed from the update until every change event is in the
//!   log; beside it the server decoding the same changes for a second slot
//!   (`pg_logical_slot_peek_binary_changes`, counted in SQL: the limit of
//!   logical decoding through SQL).
//! - `postgres`: the three PostgreSQL scenarios in one run.
//!
//! The PostgreSQL scenarios start their own server as the tests do (the
//! machine's `initdb`/`pg_ctl`, `wal_level=logical`), or use
//! `PLEXUS_TEST_PG_URL`; `psql` must be on the path.
//!
//! ```sh
//! cargo bench --bench connect -- file-source --lines 2000000
//! cargo bench --bench connect -- postgres --rows 1000000
//! ```
//!
//! Prints one JSON line per scenario.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use plexus::client::{EmbeddedClients, EmbeddedProducer, Producer, ProducerConfig};
use plexus::{Log, LogConfig, Record};
use plexus_connectors::{ConnectorConfig, Worker};

#[path = "../connectors/tests/connect/pg.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg;

fn main() -> anyhow::Result<()> {
    let mut lines: u64 = 2_000_000;
    let mut rows: u64 = 1_000_000;
    let mut scenario = "file-source".to_owned();
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        match a.as_str() {
            "--lines" => lines = it.next().context("--lines needs a value")?.replace('_', "").parse()?,
            "--rows" => rows = it.next().context("--rows needs a value")?.replace('_', "").parse()?,
            s if !s.starts_with('-') => s.clone_into(&mut scenario),
            other => anyhow::bail!("unknown option {other}; see the comment at the top of benches/connect.rs"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match scenario.as_str() {
        "file-source" => runtime.block_on(file_source(lines)),
        "pg-sink" | "pg-source" | "pg-cdc" | "postgres" => runtime.block_on(postgres(&scenario, rows)),
        other => anyhow::bail!("no scenario {other:?}: file-source, pg-sink, pg-source, pg-cdc or postgres"),
    }
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

/// Runs `psql` with `sql`, stdin from `input` if given; the time it took.
fn psql_timed(pg: &pg::Postgres, sql: &str, input: Option<&std::path::Path>) -> anyhow::Result<Duration> {
    let mut cmd = std::process::Command::new("psql");
    cmd.args([pg.url.as_str(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    cmd.stdout(std::process::Stdio::null());
    if let Some(path) = input {
        cmd.stdin(std::fs::File::open(path)?);
    }
    let started = Instant::now();
    let status = cmd.status()?;
    let took = started.elapsed();
    anyhow::ensure!(status.success(), "psql {sql:?} failed");
    Ok(took)
}

/// Waits until `done` gives true, at most 20 minutes.
async fn wait(what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done()? {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1200), "{what} did not finish in 20 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

const TABLE: &str = "(id bigint PRIMARY KEY, payer text NOT NULL, payee text NOT NULL, amount numeric(12,2) NOT NULL, \
                     ts timestamptz NOT NULL)";

async fn postgres(scenario: &str, rows: u64) -> anyhow::Result<()> {
    let pg = pg::Postgres::start();
    let dir = tempfile::tempdir()?;
    let log = Log::open(LogConfig::new(dir.path().join("data")))?;
    let worker = Worker::new(Arc::new(EmbeddedClients::new(log.clone())));
    let all = scenario == "postgres";
    if all || scenario == "pg-sink" {
        pg_sink(&pg, &log, &worker, dir.path(), rows).await?;
    }
    if all || scenario == "pg-source" {
        pg_source(&pg, &worker, dir.path(), rows).await?;
    }
    if all || scenario == "pg-cdc" {
        pg_cdc(&pg, &worker, rows).await?;
    }
    worker.stop_all().await;
    log.close()?;
    Ok(())
}

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

async fn pg_sink(
    pg: &pg::Postgres,
    log: &Log,
    worker: &Worker,
    dir: &std::path::Path,
    rows: u64,
) -> anyhow::Result<()> {
    pg.psql(&format!("CREATE TABLE sink_rows {TABLE}; CREATE TABLE copy_rows {TABLE}"));
    // The rows, as records in a topic and as COPY text in a file.
    let copy_file = dir.join("rows.copy");
    {
        let mut copy = std::io::BufWriter::new(std::fs::File::create(&copy_file)?);
        let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default())?;
        let mut deliveries = Vec::new();
        for i in 0..rows {
            let (payer, payee, cents, ts) = (i % 10_007, i % 997, i % 1_000_000, 1_700_000_000_000 + i as i64);
            let value = format!(
                r#"{{"id":{i},"payer":"payer-{payer:05}","payee":"payee-{payee:05}","amount":"{}.{:02}","ts":{ts}}}"#,
                cents / 100,
                cents % 100
            );
            writeln!(
                copy,
                "{i}\tpayer-{payer:05}\tpayee-{payee:05}\t{}.{:02}\t{}",
                cents / 100,
                cents % 100,
                plexus_connectors::data::timestamp_text(ts * 1000)
            )?;
            deliveries.push(producer.send("rows", Record::new(value)));
            if deliveries.len() == 100_000 {
                producer.flush().await?;
                for d in deliveries.drain(..) {
                    d.await?;
                }
            }
        }
        producer.flush().await?;
        for d in deliveries {
            d.await?;
        }
        copy.flush()?;
    }
    let config = ConnectorConfig::from_json(&format!(
        r#"{{"name": "bench-sink", "config": {{"connector.class": "PostgresSink", "connection.url": "{}",
             "topics": "rows", "table.name.format": "sink_rows", "batch.max.rows": "10000"}}}}"#,
        pg.url
    ))
    .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    worker.start(config).await?;
    let done = "SELECT coalesce(sum(next_offset), 0) FROM plexus_connect_offsets WHERE connector = 'bench-sink'";
    let mut last_check = Instant::now();
    wait("the sink", || {
        if worker.records("bench-sink") < rows || last_check.elapsed() < Duration::from_millis(50) {
            return Ok(false);
        }
        last_check = Instant::now();
        Ok(pg.psql(done).parse::<u64>().unwrap_or(0) >= rows)
    })
    .await?;
    let sink = started.elapsed();
    worker.stop("bench-sink").await?;
    anyhow::ensure!(pg.psql("SELECT count(*) FROM sink_rows") == rows.to_string(), "the sink wrote every row");
    let copy = psql_timed(pg, "COPY copy_rows FROM STDIN", Some(&copy_file))?;
    anyhow::ensure!(pg.psql("SELECT count(*) FROM copy_rows") == rows.to_string(), "COPY loaded every row");
    println!(
        "{{\"scenario\":\"pg-sink\",\"rows\":{rows},\"seconds\":{:.3},\"rows_per_sec\":{:.0},\
         \"copy_seconds\":{:.3},\"copy_rows_per_sec\":{:.0},\"ratio\":{:.2}}}",
        sink.as_secs_f64(),
        rate(rows, sink),
        copy.as_secs_f64(),
        rate(rows, copy),
        copy.as_secs_f64() / sink.as_secs_f64()
    );
    Ok(())
}

async fn pg_source(pg: &pg::Postgres, worker: &Worker, dir: &std::path::Path, rows: u64) -> anyhow::Result<()> {
    pg.psql(&format!(
        "CREATE TABLE source_rows {TABLE}; INSERT INTO source_rows SELECT i, 'payer-' || lpad((i % 10007)::text, 5, '0'), \
         'payee-' || lpad((i % 997)::text, 5, '0'), (i % 1000000) / 100.0, \
         timestamptz '2024-01-01 00:00:00+00' + i * interval '1 millisecond' FROM generate_series(0, {}) i",
        rows - 1
    ));
    pg.psql("VACUUM ANALYZE source_rows");
    let _ = dir;
    let copy = psql_timed(pg, "COPY source_rows TO STDOUT", None)?;
    let config = ConnectorConfig::from_json(&format!(
        r#"{{"name": "bench-source", "config": {{"connector.class": "PostgresSource", "connection.url": "{}",
             "mode": "incrementing", "incrementing.column.name": "id", "table.whitelist": "source_rows",
             "topic.prefix": "pg-", "batch.max.rows": "10000", "poll.interval.ms": "10"}}}}"#,
        pg.url
    ))
    .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    worker.start(config).await?;
    wait("the source", || Ok(worker.records("bench-source") >= rows)).await?;
    let source = started.elapsed();
    worker.stop("bench-source").await?;
    println!(
        "{{\"scenario\":\"pg-source\",\"rows\":{rows},\"seconds\":{:.3},\"rows_per_sec\":{:.0},\
         \"copy_seconds\":{:.3},\"copy_rows_per_sec\":{:.0},\"ratio\":{:.2}}}",
        source.as_secs_f64(),
        rate(rows, source),
        copy.as_secs_f64(),
        rate(rows, copy),
        copy.as_secs_f64() / source.as_secs_f64()
    );
    Ok(())
}

async fn pg_cdc(pg: &pg::Postgres, worker: &Worker, rows: u64) -> anyhow::Result<()> {
    pg.psql(&format!(
        "CREATE TABLE cdc_rows {TABLE}; INSERT INTO cdc_rows SELECT i, 'payer-' || i, 'payee-' || i, i / 100.0, now() \
         FROM generate_series(0, {}) i",
        rows - 1
    ));
    let config = ConnectorConfig::from_json(&format!(
        r#"{{"name": "bench-cdc", "config": {{"connector.class": "PostgresCdcSource", "connection.url": "{}",
             "topic.prefix": "cdc", "table.include.list": "public\\.cdc_rows", "snapshot.mode": "no_data",
             "slot.name": "bench", "poll.interval.ms": "10"}}}}"#,
        pg.url
    ))
    .map_err(anyhow::Error::msg)?;
    worker.start(config).await?;
    wait("the slot", || Ok(pg.psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bench'") == "1"))
        .await?;
    pg.psql("SELECT pg_create_logical_replication_slot('bench_limit', 'pgoutput')");
    let started = Instant::now();
    let update = psql_timed(pg, "UPDATE cdc_rows SET amount = amount + 1", None)?;
    wait("the change events", || Ok(worker.records("bench-cdc") >= rows)).await?;
    let cdc = started.elapsed();
    worker.stop("bench-cdc").await?;
    let decode = psql_timed(
        pg,
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('bench_limit', NULL, NULL, 'proto_version', '1', \
         'publication_names', 'plexus_publication')",
        None,
    )?;
    println!(
        "{{\"scenario\":\"pg-cdc\",\"events\":{rows},\"seconds\":{:.3},\"events_per_sec\":{:.0},\
         \"update_seconds\":{:.3},\"decode_seconds\":{:.3},\"decode_events_per_sec\":{:.0},\"ratio\":{:.2}}}",
        cdc.as_secs_f64(),
        rate(rows, cdc),
        update.as_secs_f64(),
        decode.as_secs_f64(),
        rate(rows, decode),
        decode.as_secs_f64() / cdc.as_secs_f64()
    );
    Ok(())
}
