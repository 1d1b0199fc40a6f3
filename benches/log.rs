//! The log benchmark: how fast Plexus appends durably, reads back and
//! reopens, each figure beside what the machine itself does in the same run.
//! The figures and how they were taken are in `docs/benchmarks.md`.
//!
//! Scenarios (run any of them by name; none named runs every `append-*`
//! scenario, then `consume`):
//!
//! - `append-100b-1p`, `append-100b-4p`, `append-1kib-1p`, `append-1kib-4p`:
//!   1 or 4 [`EmbeddedProducer`]s send records of 100 bytes or 1 KiB (a value,
//!   no key) to one topic with the default, durable configuration: a record
//!   is acknowledged once fsynced, and appends that arrive while an fsync
//!   runs share the next one. Each producer keeps a window of sends in
//!   flight and awaits the oldest `Delivery` when it is full, as a Kafka
//!   client is used for throughput. The window is `--window` (64k), but no
//!   more records than fit in 90% of one `max.message.bytes` batch (about
//!   8,600 of 100 bytes, 900 of 1 KiB): today the embedded producer keeps
//!   filling a partition's open batch past `batch.size` until its sender task
//!   runs, so a task that sends a whole 64k window at once builds one batch
//!   of 64k records, which the log rejects (`--no-window-cap` shows it).
//!   Then, in the same run, the bytes the log wrote to disk are written to a
//!   plain file with `write` + `fdatasync`, twice: in chunks of the bytes per
//!   flush round the log achieved (the same number of syncs), and in chunks
//!   of `--chunk-bytes` (1 MiB). The log's throughput over each is printed.
//! - `raw-100b`, `raw-1kib`: only the fixed-chunk `write` + `fdatasync`
//!   baseline, for the bytes `--records` records of that size take in the
//!   log (estimated from one full producer batch), to pair whole-process runs
//!   of an `append-*` scenario (with `--no-baseline`) against.
//! - `consume`: writes `--records` 100-byte records (4 producers, not timed),
//!   closes and reopens the log, and reads everything back from a cold page
//!   cache and then from a warm one, with an [`EmbeddedConsumer`] (`assign`,
//!   `seek(Beginning)`, a `poll` loop, `max.poll.records` = 100,000 so that a
//!   poll takes a whole 1 MiB fetch) and with `Log::fetch` +
//!   `decode_records` (the consumer's own path, without the consumer); then
//!   the first 500,000 records with Kafka's default `max.poll.records`
//!   (500); and, as the machine's limit, the segment files themselves with
//!   plain 1 MiB `read`s, cold and warm.
//!   The cache is dropped with `sync` and `echo 3 > /proc/sys/vm/drop_caches`,
//!   or, where that is not permitted, with `dd iflag=nocache count=0`
//!   (`posix_fadvise(POSIX_FADV_DONTNEED)`) on every file of the log; the
//!   table says which.
//! - `reopen` (not run by default: it writes `--reopen-gb` GB, 5 by
//!   default): a child process (this program, with a hidden option) produces
//!   1 KiB records until the log holds that much, keeps producing and is
//!   killed with SIGKILL; `Log::open` is timed after the kill (warm page
//!   cache, as after a process crash), after a second kill with the cache
//!   dropped (as after a machine crash), and after a clean `Log::close` with
//!   a warm and a dropped cache.
//!
//! Run it from the repository root; the data goes in a fresh directory under
//! `--dir` (default `/var/tmp`; a tmpfs is refused), removed at the end:
//!
//! ```sh
//! cargo bench --bench log                       # appends, then consume: under a minute
//! cargo bench --bench log -- append-100b-4p --records 8000000 --json
//! cargo bench --bench log -- reopen --reopen-gb 5
//! cargo bench --bench log -- --help
//! ```
//!
//! MB are 10^6 bytes. "payload" is the records' values; "disk" is what the
//! segment files grew by (batch headers and record framing included), which
//! is what the baselines write. "flush rounds" are moves of the high
//! watermark, one per fsync of the partition's active segment (a lower
//! bound, counted by a thread watching it).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use plexus::client::{Consumer, ConsumerConfig, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig, SeekTo};
use plexus::core::record::{ProducerStamp, decode_records, encode_batch};
use plexus::{Log, LogConfig, Record, TopicConfig, TopicPartition};

/// The topic every scenario writes to (each in its own data directory).
const TOPIC: &str = "bench";
/// Producers in the `consume` and `reopen` scenarios' data sets.
const LOADER_PRODUCERS: usize = 4;
/// Record size of the `consume` data set.
const CONSUME_RECORD_BYTES: usize = 100;
/// Record size of the `reopen` data set.
const REOPEN_RECORD_BYTES: usize = 1024;
/// Line the child prints once the log holds what was asked.
const CHILD_READY: &str = "ready";

#[derive(Parser, Debug)]
#[command(name = "log", about = "Benchmark of the Plexus log: durable appends, reads, reopen (see docs/benchmarks.md)")]
struct Args {
    /// Scenarios to run, in order (none: every append-* scenario, then consume).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Records per scenario (default: 4,000,000 of 100 bytes, 1,000,000 of 1 KiB).
    #[arg(long)]
    records: Option<u64>,
    /// Size of the log the reopen scenario builds, in GB (10^9 bytes).
    #[arg(long, default_value_t = 5.0)]
    reopen_gb: f64,
    /// Where to put the data (a fresh directory is made inside and removed at the end); not a tmpfs.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Sends each producer keeps in flight.
    #[arg(long, default_value_t = 65_536)]
    window: usize,
    /// Do not cap the window at one max.message.bytes batch per producer (see the top of the file).
    #[arg(long)]
    no_window_cap: bool,
    /// Chunk written before each fdatasync by the fixed-chunk baseline.
    #[arg(long, default_value_t = 1 << 20)]
    chunk_bytes: usize,
    /// Skip the in-run write+fdatasync baselines of the append scenarios.
    #[arg(long)]
    no_baseline: bool,
    /// Also print the rows as JSON, one object per line, after the table.
    #[arg(long)]
    json: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run as the reopen scenario's producing child on this data directory.
    #[arg(long, hide = true)]
    child_produce: Option<PathBuf>,
    /// Internal: the size in bytes the child grows the log to before it reports ready.
    #[arg(long, hide = true, default_value_t = 0)]
    child_bytes: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    #[value(name = "append-100b-1p")]
    Append100b1p,
    #[value(name = "append-100b-4p")]
    Append100b4p,
    #[value(name = "append-1kib-1p")]
    Append1kib1p,
    #[value(name = "append-1kib-4p")]
    Append1kib4p,
    #[value(name = "raw-100b")]
    Raw100b,
    #[value(name = "raw-1kib")]
    Raw1kib,
    Consume,
    Reopen,
}

impl Scenario {
    fn name(self) -> String {
        self.to_possible_value().map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }

    /// `(record bytes, producers)` of an append or raw scenario.
    fn shape(self) -> (usize, usize) {
        match self {
            Scenario::Append100b1p => (100, 1),
            Scenario::Append100b4p => (100, 4),
            Scenario::Append1kib1p => (1024, 1),
            Scenario::Append1kib4p => (1024, 4),
            Scenario::Raw100b => (100, 0),
            Scenario::Raw1kib => (1024, 0),
            Scenario::Consume => (CONSUME_RECORD_BYTES, LOADER_PRODUCERS),
            Scenario::Reopen => (REOPEN_RECORD_BYTES, LOADER_PRODUCERS),
        }
    }
}

/// One line of the result table.
#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    what: String,
    secs: f64,
    records: Option<u64>,
    payload_bytes: Option<u64>,
    disk_bytes: Option<u64>,
    note: String,
}

impl Row {
    fn new(scenario: &str, what: impl Into<String>, elapsed: Duration) -> Self {
        Self {
            scenario: scenario.into(),
            what: what.into(),
            secs: elapsed.as_secs_f64(),
            records: None,
            payload_bytes: None,
            disk_bytes: None,
            note: String::new(),
        }
    }

    fn per_sec(&self, n: Option<u64>) -> Option<f64> {
        n.map(|n| n as f64 / self.secs.max(1e-9))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario,
            "what": self.what,
            "seconds": self.secs,
            "records": self.records,
            "records_per_sec": self.per_sec(self.records),
            "payload_mb_per_sec": self.per_sec(self.payload_bytes).map(|b| b / 1e6),
            "disk_bytes": self.disk_bytes,
            "disk_mb_per_sec": self.per_sec(self.disk_bytes).map(|b| b / 1e6),
            "note": self.note,
        })
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    if let Some(dir) = &args.child_produce {
        return runtime.block_on(child_produce(dir, &args));
    }
    ensure!(args.partitions >= 1, "--partitions must be at least 1");
    ensure!(args.window >= 1, "--window must be at least 1");
    ensure!(args.chunk_bytes >= 1, "--chunk-bytes must be at least 1");
    check_real_disk(&args.dir)?;
    let root = tempfile::Builder::new()
        .prefix("plexus-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a directory in {}", args.dir.display()))?;
    let scenarios = if args.scenarios.is_empty() {
        vec![
            Scenario::Append100b1p,
            Scenario::Append100b4p,
            Scenario::Append1kib1p,
            Scenario::Append1kib4p,
            Scenario::Consume,
        ]
    } else {
        args.scenarios.clone()
    };
    let mut rows = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        let dir = root.path().join(format!("{i}-{}", scenario.name()));
        eprintln!("running {} in {}", scenario.name(), dir.display());
        let result = match scenario {
            Scenario::Append100b1p | Scenario::Append100b4p | Scenario::Append1kib1p | Scenario::Append1kib4p => {
                runtime.block_on(append_scenario(*scenario, &dir, &args))
            }
            Scenario::Raw100b | Scenario::Raw1kib => raw_scenario(*scenario, &dir, &args),
            Scenario::Consume => runtime.block_on(consume_scenario(&dir, &args)),
            Scenario::Reopen => reopen_scenario(&dir, &args),
        };
        let new_rows = result.with_context(|| format!("scenario {}", scenario.name()))?;
        print_table(&new_rows, false);
        rows.extend(new_rows);
        // Free the disk between scenarios.
        std::fs::remove_dir_all(&dir)
            .or_else(ignore_not_found)
            .with_context(|| format!("removing {}", dir.display()))?;
    }
    println!();
    println!("# all scenarios ({})", describe_machine());
    print_table(&rows, true);
    if args.json {
        for row in &rows {
            println!("{}", row.json());
        }
    }
    root.close().context("removing the benchmark directory")?;
    Ok(())
}

fn ignore_not_found(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

fn default_records(record_bytes: usize, args: &Args) -> u64 {
    args.records.unwrap_or(if record_bytes <= 100 { 4_000_000 } else { 1_000_000 })
}

/// Refuses a tmpfs (or ramfs) directory: fsync there measures nothing.
fn check_real_disk(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    // The longest mount point that is a prefix of the directory holds it.
    let fs_type = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            dir.starts_with(mount_point).then(|| (mount_point.len(), fs_type.to_owned()))
        })
        .max()
        .map(|(_, fs_type)| fs_type);
    if let Some(fs_type @ ("tmpfs" | "ramfs")) = fs_type.as_deref() {
        bail!("{} is on a {fs_type}, where fsync costs nothing; pass --dir on a real disk", dir.display());
    }
    Ok(())
}

fn describe_machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or_else(|| "?".into(), |kb| format!("{:.1}", kb / 1e6 * 1.024));
    format!("{cpus} CPUs, {mem_gb} GB memory")
}

// ---------------------------------------------------------------- appends

/// What an append run did.
#[derive(Debug)]
struct AppendRun {
    elapsed: Duration,
    records: u64,
    payload_bytes: u64,
    disk_bytes: u64,
    /// Flush rounds seen (high-watermark moves); a lower bound on fsyncs of
    /// the partitions' active segments.
    flushes: u64,
}

/// Opens a fresh log in `dir` with the benchmark topic.
fn open_log(dir: &Path, partitions: i32) -> Result<Log> {
    let log = Log::open(LogConfig::new(dir)).with_context(|| format!("opening a log in {}", dir.display()))?;
    if !log.topic_exists(TOPIC) {
        log.create_topic(TOPIC, partitions, TopicConfig::default()).context("creating the topic")?;
    }
    Ok(log)
}

fn topic_partitions(log: &Log) -> Result<Vec<TopicPartition>> {
    let count = log.partition_count(TOPIC)?;
    Ok((0..count).map(|p| TopicPartition::new(TOPIC, p)).collect())
}

/// Bytes of the topic's segment files.
fn topic_disk_bytes(log: &Log) -> Result<u64> {
    Ok(log.describe_topic(TOPIC)?.partitions.iter().map(|p| p.size_bytes).sum())
}

/// Sends `records` records of `record_bytes` bytes from `producers`
/// producers, each keeping `window` deliveries in flight, and waits until
/// all are acknowledged.
async fn produce(log: &Log, producers: usize, records: u64, record_bytes: usize, window: usize) -> Result<AppendRun> {
    let disk_before = topic_disk_bytes(log)?;
    let clients = (0..producers)
        .map(|_| EmbeddedProducer::new(log.clone(), ProducerConfig::default()))
        .collect::<plexus::Result<Vec<_>>>()?;
    let counter = FlushCounter::start(log)?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, producer) in clients.iter().enumerate() {
        let share = records / producers as u64 + u64::from((i as u64) < records % producers as u64);
        let producer = producer.clone();
        // Each producer has its own value buffer, so that no reference count
        // is shared between threads; the content does not matter (no compression).
        let value = Bytes::from((0..record_bytes).map(|b| (b % 251) as u8).collect::<Vec<u8>>());
        tasks.spawn(async move {
            let mut in_flight = VecDeque::with_capacity(window.min(1 << 20));
            for _ in 0..share {
                if in_flight.len() >= window
                    && let Some(oldest) = in_flight.pop_front()
                {
                    oldest.await?;
                }
                in_flight.push_back(producer.send(TOPIC, Record::new(value.clone())));
            }
            while let Some(delivery) = in_flight.pop_front() {
                delivery.await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a producer task panicked")??;
    }
    let elapsed = started.elapsed();
    let flushes = counter.stop()?;
    for producer in &clients {
        producer.close().await?;
    }
    Ok(AppendRun {
        elapsed,
        records,
        payload_bytes: records * record_bytes as u64,
        disk_bytes: topic_disk_bytes(log)? - disk_before,
        flushes,
    })
}

/// Counts high-watermark moves of the topic's partitions on a thread of its
/// own, so that it is not starved by the producers. With durable
/// acknowledgement the high watermark moves once per completed flush round.
struct FlushCounter {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl FlushCounter {
    fn start(log: &Log) -> Result<Self> {
        let receivers =
            topic_partitions(log)?.iter().map(|tp| log.watch_high_watermark(tp)).collect::<plexus::Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("flush-counter".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
            runtime.block_on(async move {
                let mut counts = tokio::task::JoinSet::new();
                for mut rx in receivers {
                    let flag = Arc::clone(&flag);
                    counts.spawn(async move {
                        let mut n = 0u64;
                        while !flag.load(Ordering::Acquire) {
                            match tokio::time::timeout(Duration::from_millis(20), rx.changed()).await {
                                Ok(Ok(())) => n += 1,
                                Ok(Err(_)) => break, // the log is gone
                                Err(_) => {}
                            }
                        }
                        n
                    });
                }
                let mut total = 0;
                while let Some(n) = counts.join_next().await {
                    total += n?;
                }
                Ok(total)
            })
        })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| anyhow::anyhow!("the flush counter panicked"))?
    }
}

async fn append_scenario(scenario: Scenario, dir: &Path, args: &Args) -> Result<Vec<Row>> {
    let name = scenario.name();
    let (record_bytes, producers) = scenario.shape();
    let records = default_records(record_bytes, args);
    let log = open_log(&dir.join("log"), args.partitions)?;
    let window = window(args, record_bytes);
    let run = produce(&log, producers, records, record_bytes, window).await?;
    log.close()?;
    drop(log);

    let per_flush = run.disk_bytes / run.flushes.max(1);
    let mut row = Row::new(&name, format!("log append, {producers} producer(s), durable"), run.elapsed);
    row.records = Some(run.records);
    row.payload_bytes = Some(run.payload_bytes);
    row.disk_bytes = Some(run.disk_bytes);
    row.note = format!(
        "window {} per producer; {} flush rounds, {} per round; {} partition(s)",
        group_digits(window as u64),
        group_digits(run.flushes),
        human_bytes(per_flush),
        args.partitions
    );
    let mut rows = vec![row];
    if args.no_baseline {
        return Ok(rows);
    }
    let log_rate = run.disk_bytes as f64 / run.elapsed.as_secs_f64();
    for (label, chunk) in [("bytes per log flush", per_flush as usize), ("fixed", args.chunk_bytes)] {
        let elapsed = raw_write(dir, run.disk_bytes, chunk.max(1))?;
        let mut raw =
            Row::new(&name, format!("write+fdatasync, {} chunks ({label})", human_bytes(chunk as u64)), elapsed);
        raw.disk_bytes = Some(run.disk_bytes);
        let raw_rate = run.disk_bytes as f64 / elapsed.as_secs_f64();
        raw.note = format!("log / this = {:.2}", log_rate / raw_rate);
        rows.push(raw);
    }
    Ok(rows)
}

/// Writes `total` bytes to a new file in `chunk`-byte writes, each followed
/// by `fdatasync`, and returns how long that took.
fn raw_write(dir: &Path, total: u64, chunk: usize) -> Result<Duration> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("raw.dat");
    let buf: Vec<u8> = (0..chunk).map(|b| (b % 251) as u8).collect();
    let mut file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let started = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left).map_or(chunk, |l| l.min(chunk));
        file.write_all(&buf[..n])?;
        file.sync_data()?;
        left -= n as u64;
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(elapsed)
}

/// The window each producer keeps: `--window`, but (unless `--no-window-cap`)
/// no more records than fit in 90% of one `max.message.bytes` batch.
///
/// Today the embedded producer keeps adding records to a partition's open
/// batch until its sender task gets to run, whatever `batch.size` says, so a
/// producer task that sends a whole 64k window in one go builds one batch of
/// the whole window, which the log rejects as larger than
/// `max.message.bytes`. A window that fits in one batch can never do that.
fn window(args: &Args, record_bytes: usize) -> usize {
    if args.no_window_cap {
        return args.window;
    }
    let max = TopicConfig::default().max_message_bytes as f64 * 0.9;
    let cap = (max / disk_bytes_per_record(record_bytes)).floor() as usize;
    args.window.min(cap.max(1))
}

/// Bytes a record of `record_bytes` takes in the log, estimated from one
/// batch as a producer fills it (`batch.size`, 16 KiB by default).
fn disk_bytes_per_record(record_bytes: usize) -> f64 {
    let batch_size = ProducerConfig::default().batch_size;
    let record = Record::new(vec![0u8; record_bytes]);
    let per_batch = batch_size.div_ceil(record.estimated_size()).max(1);
    let batch = encode_batch(&vec![record; per_batch], ProducerStamp::NONE, 0);
    batch.len() as f64 / per_batch as f64
}

fn raw_scenario(scenario: Scenario, dir: &Path, args: &Args) -> Result<Vec<Row>> {
    let (record_bytes, _) = scenario.shape();
    let records = default_records(record_bytes, args);
    let total = (records as f64 * disk_bytes_per_record(record_bytes)).round() as u64;
    let elapsed = raw_write(dir, total, args.chunk_bytes)?;
    let mut row = Row::new(
        &scenario.name(),
        format!("write+fdatasync, {} chunks (fixed)", human_bytes(args.chunk_bytes as u64)),
        elapsed,
    );
    row.disk_bytes = Some(total);
    row.note = format!("the bytes of {} records of {record_bytes} B in the log", group_digits(records));
    Ok(vec![row])
}

// ---------------------------------------------------------------- consume

async fn consume_scenario(dir: &Path, args: &Args) -> Result<Vec<Row>> {
    let name = Scenario::Consume.name();
    let records = default_records(CONSUME_RECORD_BYTES, args);
    let data = dir.join("log");
    let log = open_log(&data, args.partitions)?;
    let loaded =
        produce(&log, LOADER_PRODUCERS, records, CONSUME_RECORD_BYTES, window(args, CONSUME_RECORD_BYTES)).await?;
    log.close()?;
    drop(log);
    eprintln!(
        "  wrote {} records ({}) in {:.1} s",
        group_digits(records),
        human_bytes(loaded.disk_bytes),
        loaded.elapsed.as_secs_f64()
    );

    let log = Log::open(LogConfig::new(&data))?;
    let tps = topic_partitions(&log)?;
    let mut rows = Vec::new();
    let mut add = |what: &str, (elapsed, read): (Duration, u64), note: String| {
        let mut row = Row::new(&name, what, elapsed);
        row.records = Some(read);
        row.payload_bytes = Some(read * CONSUME_RECORD_BYTES as u64);
        row.disk_bytes = Some((loaded.disk_bytes as f64 * read as f64 / records as f64) as u64);
        row.note = note;
        rows.push(row);
    };
    // The whole data set, with polls large enough to take a whole 1 MiB fetch.
    let big_poll = Some(100_000);
    let dropped = drop_page_cache(&data)?;
    let read = consume_with_consumer(&log, &tps, records, big_poll).await?;
    add("consumer, cold cache, max.poll.records=100000", read, format!("cache dropped by {dropped}"));
    let read = consume_with_consumer(&log, &tps, records, big_poll).await?;
    add("consumer, warm cache, max.poll.records=100000", read, String::new());
    let dropped = drop_page_cache(&data)?;
    let read = consume_with_fetch(&log, &tps, records)?;
    add("Log::fetch + decode_records, cold cache", read, format!("1 MiB fetches; cache dropped by {dropped}"));
    let read = consume_with_fetch(&log, &tps, records)?;
    add("Log::fetch + decode_records, warm cache", read, "1 MiB fetches".into());
    // Kafka's default max.poll.records: much slower, so only a part.
    let default_poll = ConsumerConfig::without_group().max_poll_records;
    let part = records.min(500_000);
    let read = consume_with_consumer(&log, &tps, part, None).await?;
    add(
        &format!("consumer, warm cache, max.poll.records={default_poll}"),
        read,
        format!("the first {} records", group_digits(part)),
    );
    // The machine's own speed: plain reads of the same segment files.
    let dropped = drop_page_cache(&data)?;
    for (cache, note) in [("cold", format!("; cache dropped by {dropped}")), ("warm", String::new())] {
        let (elapsed, bytes) = read_segment_files(&data)?;
        let mut row = Row::new(&name, format!("read() of the segment files, {cache} cache"), elapsed);
        row.disk_bytes = Some(bytes);
        row.note = format!("1 MiB reads{note}");
        rows.push(row);
    }
    log.close()?;
    Ok(rows)
}

/// Reads the first `wanted` records (at least) from the start with an
/// `EmbeddedConsumer` outside any group; returns the time from the first
/// poll to the last record, and how many records were read.
async fn consume_with_consumer(
    log: &Log,
    tps: &[TopicPartition],
    wanted: u64,
    max_poll_records: Option<usize>,
) -> Result<(Duration, u64)> {
    let mut config = ConsumerConfig::without_group();
    if let Some(n) = max_poll_records {
        config.set("max.poll.records", &n.to_string())?;
    }
    let mut consumer = EmbeddedConsumer::new(log.clone(), config);
    consumer.assign(tps).await?;
    for tp in tps {
        consumer.seek(tp, SeekTo::Beginning).await?;
    }
    let started = Instant::now();
    let (mut seen, mut value_bytes) = (0u64, 0u64);
    while seen < wanted {
        let records = consumer.poll(Duration::from_secs(5)).await?;
        ensure!(!records.is_empty(), "the consumer found no more records after {seen} of {wanted}");
        seen += records.len() as u64;
        value_bytes += records.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64)).sum::<u64>();
    }
    let elapsed = started.elapsed();
    ensure!(value_bytes == seen * CONSUME_RECORD_BYTES as u64, "read {value_bytes} value bytes in {seen} records");
    consumer.close().await?;
    Ok((elapsed, seen))
}

/// Reads every record through `Log::fetch` and `decode_records`, as the
/// consumer does, without the consumer.
fn consume_with_fetch(log: &Log, tps: &[TopicPartition], expected: u64) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let mut seen = 0u64;
    for tp in tps {
        let (mut offset, end) = {
            let (start, hw, _) = log.offsets(tp)?;
            (start, hw)
        };
        while offset < end {
            let fetched = log.fetch(tp, offset, 1 << 20)?;
            let next = fetched.records.next_offset;
            ensure!(next > offset, "the fetch at offset {offset} of {tp} returned nothing");
            let records = decode_records(&tp.topic, tp.partition, fetched.records.bytes, offset)
                .map_err(|e| anyhow::anyhow!("decoding {tp} at {offset}: {e}"))?;
            seen += records.len() as u64;
            offset = next;
        }
    }
    let elapsed = started.elapsed();
    ensure!(seen == expected, "read {seen} records, expected {expected}");
    Ok((elapsed, seen))
}

/// Reads every segment file under `dir` with plain 1 MiB `read`s; returns
/// the time taken and the bytes read.
fn read_segment_files(dir: &Path) -> Result<(Duration, u64)> {
    let mut files: Vec<PathBuf> =
        files_under(dir)?.into_iter().filter(|f| f.extension().is_some_and(|e| e == "log")).collect();
    files.sort();
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut total = 0u64;
    for path in &files {
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok((started.elapsed(), total))
}

/// Writes dirty pages back and evicts the page cache: system-wide through
/// `/proc/sys/vm/drop_caches` if permitted, otherwise per file under `dir`
/// with `dd iflag=nocache count=0` (`posix_fadvise(POSIX_FADV_DONTNEED)`).
/// Returns which way was used.
fn drop_page_cache(dir: &Path) -> Result<&'static str> {
    let status = Command::new("sync").status().context("running sync")?;
    ensure!(status.success(), "sync failed: {status}");
    if std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok() {
        return Ok("drop_caches");
    }
    for file in files_under(dir)? {
        let status = Command::new("dd")
            .arg(format!("if={}", file.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .context("running dd")?;
        ensure!(status.success(), "dd iflag=nocache failed on {}: {status}", file.display());
    }
    Ok("posix_fadvise(DONTNEED) via dd")
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

// ---------------------------------------------------------------- reopen

fn reopen_scenario(dir: &Path, args: &Args) -> Result<Vec<Row>> {
    let name = Scenario::Reopen.name();
    ensure!(args.reopen_gb > 0.0, "--reopen-gb must be positive");
    let target = (args.reopen_gb * 1e9) as u64;
    let available = available_bytes(&args.dir)?;
    // The log, plus room for the child to keep writing and a margin.
    ensure!(
        available > target + target / 10 + (2 << 30),
        "{} holds {} free; the reopen scenario needs about {} more than --reopen-gb {}",
        args.dir.display(),
        human_bytes(available),
        human_bytes(target / 10 + (2 << 30)),
        args.reopen_gb
    );
    let data = dir.join("log");
    std::fs::create_dir_all(&data)?;
    let mut rows = Vec::new();
    let mut add = |what: &str, elapsed: Duration, log: &Log, note: &str| -> Result<()> {
        let (size, segments) = (topic_disk_bytes(log)?, segment_count(log)?);
        let mut row = Row::new(&name, what, elapsed);
        let plural = if segments == 1 { "" } else { "s" };
        row.note = format!("{:.2} GB in {segments} segment{plural}{note}", size as f64 / 1e9);
        rows.push(row);
        Ok(())
    };

    // 1. Grow the log to the target in a child, kill it mid-write, reopen with the cache warm.
    let started = Instant::now();
    kill_child_while_producing(&data, target, args)?;
    eprintln!("  the child wrote the log in {:.1} s", started.elapsed().as_secs_f64());
    let (log, elapsed) = timed_open(&data)?;
    add("Log::open after SIGKILL, warm cache", elapsed, &log, "")?;
    drop(log); // not closed: the next open recovers again

    // 2. Kill again (the child only tops up), drop the cache, reopen.
    kill_child_while_producing(&data, 0, args)?;
    let dropped = drop_page_cache(&data)?;
    let (log, elapsed) = timed_open(&data)?;
    add("Log::open after SIGKILL, cold cache", elapsed, &log, &format!("; cache dropped by {dropped}"))?;

    // 3. Clean shutdown, reopen warm and cold.
    log.close()?;
    drop(log);
    let (log, elapsed) = timed_open(&data)?;
    add("Log::open after close(), warm cache", elapsed, &log, "")?;
    log.close()?;
    drop(log);
    let dropped = drop_page_cache(&data)?;
    let (log, elapsed) = timed_open(&data)?;
    add("Log::open after close(), cold cache", elapsed, &log, &format!("; cache dropped by {dropped}"))?;
    log.close()?;
    Ok(rows)
}

fn timed_open(data: &Path) -> Result<(Log, Duration)> {
    let started = Instant::now();
    let log = Log::open(LogConfig::new(data)).with_context(|| format!("reopening {}", data.display()))?;
    Ok((log, started.elapsed()))
}

fn segment_count(log: &Log) -> Result<usize> {
    Ok(log.describe_topic(TOPIC)?.partitions.iter().map(|p| p.segments).sum())
}

/// Runs this program as a child that grows the log in `data` to `target`
/// bytes and then keeps producing; kills it with SIGKILL while it does.
fn kill_child_while_producing(data: &Path, target: u64, args: &Args) -> Result<()> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut child = Command::new(exe)
        .arg("--child-produce")
        .arg(data)
        .args(["--child-bytes", &target.to_string()])
        .args(["--partitions", &args.partitions.to_string()])
        .args(["--window", &window(args, REOPEN_RECORD_BYTES).to_string(), "--no-window-cap"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the producing child")?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line == CHILD_READY);
    if !ready {
        // Its output ended: it died, or its stdout broke; make sure it is gone.
        let _ = child.kill();
        let status = child.wait()?;
        bail!("the producing child ended before it was ready: {status}");
    }
    // Let it write a little more, so that the kill lands in the middle of appends.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().context("killing the child")?; // SIGKILL
    let status = child.wait()?;
    ensure!(!status.success(), "the child ended on its own: {status}");
    Ok(())
}

/// The child: grows the log to `--child-bytes`, prints `ready`, and produces
/// until it is killed.
async fn child_produce(data: &Path, args: &Args) -> Result<()> {
    let log = open_log(data, args.partitions)?;
    let window = window(args, REOPEN_RECORD_BYTES);
    let per_record = disk_bytes_per_record(REOPEN_RECORD_BYTES);
    loop {
        let size = topic_disk_bytes(&log)?;
        if size >= args.child_bytes {
            break;
        }
        let records = ((args.child_bytes - size) as f64 / per_record).ceil() as u64;
        produce(&log, LOADER_PRODUCERS, records.max(1), REOPEN_RECORD_BYTES, window).await?;
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{CHILD_READY}")?;
    stdout.flush()?;
    loop {
        produce(&log, LOADER_PRODUCERS, 1_000_000, REOPEN_RECORD_BYTES, window).await?;
    }
}

/// Free bytes for an unprivileged user in the file system holding `dir`, from `df`.
fn available_bytes(dir: &Path) -> Result<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().context("running df")?;
    ensure!(out.status.success(), "df failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let kib = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("reading df's output: {text}"))?;
    Ok(kib * 1024)
}

// ---------------------------------------------------------------- output

fn print_table(rows: &[Row], with_header: bool) {
    let header = ["scenario", "measurement", "seconds", "records/s", "payload MB/s", "disk MB/s", "note"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let rate = |n: Option<u64>, scale: f64| r.per_sec(n).map_or_else(|| "-".into(), |v| group_float(v / scale));
            [
                r.scenario.clone(),
                r.what.clone(),
                format!("{:.3}", r.secs),
                rate(r.records, 1.0),
                rate(r.payload_bytes, 1e6),
                rate(r.disk_bytes, 1e6),
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            // Text left, numbers right.
            if (2..6).contains(&i) {
                out.push_str(&format!("{c:>w$}  "));
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    if with_header {
        println!("{}", line(&header.map(String::from)));
    }
    for row in &cells {
        println!("{}", line(row));
    }
}

/// 1234567 -> "1,234,567".
fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Rates: thousands grouped above 100, one decimal below.
fn group_float(v: f64) -> String {
    if v >= 100.0 { group_digits(v.round() as u64) } else { format!("{v:.1}") }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
