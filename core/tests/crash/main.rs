//! Crash safety with real processes and real files.
//!
//! A child process (this test binary, re-run with `PLEXUS_CRASH_CHILD` set)
//! produces keyed records and prints each acknowledgement; the parent kills
//! it with SIGKILL after a random number of acknowledgements, reopens the
//! data directory and checks that every acknowledged record is there, in
//! order, exactly once. Then damaged files: a truncated tail and a flipped
//! byte in the middle of a segment. Then transactions: a child committing
//! and aborting transactions is killed again and again; every committed
//! transaction must be whole and no aborted one visible to `read_committed`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use plexus_core::client::{Consumer, ConsumerConfig, EmbeddedConsumer, EmbeddedProducer, Producer, ProducerConfig};
use plexus_core::record::decode_records;
use plexus_core::{Log, LogConfig, Record, TopicConfig, TopicPartition};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "PLEXUS_CRASH_CHILD";
const TOPIC: &str = "crash";
const PARTITIONS: i32 = 3;

/// Every record of a partition: (offset, value).
fn read_partition(log: &Log, p: i32) -> Vec<(i64, String)> {
    let tp = TopicPartition::new(TOPIC, p);
    let (mut offset, hw, _) = log.offsets(&tp).expect("offsets");
    let mut out = Vec::new();
    while offset < hw {
        let fetched = log.fetch(&tp, offset, 1 << 20).expect("fetch");
        for r in decode_records(TOPIC, p, fetched.records.bytes, offset).expect("decode") {
            out.push((r.offset, String::from_utf8(r.value.unwrap_or_default().to_vec()).expect("utf8")));
        }
        assert!(fetched.records.next_offset > offset, "progress at {offset}");
        offset = fetched.records.next_offset;
    }
    out
}

/// The child: produce until killed, printing `ack <partition> <offset> <value>`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let round: u64 = std::env::var("PLEXUS_CRASH_ROUND").ok().and_then(|r| r.parse().ok()).unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let log = Log::open(LogConfig::new(&dir)).expect("open");
        if !log.topic_exists(TOPIC) {
            let mut config = TopicConfig::default();
            config.set("segment.bytes", "65536").expect("valid");
            log.create_topic(TOPIC, PARTITIONS, config).expect("create");
        }
        let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").expect("stdout");
        out.flush().expect("stdout");
        let mut in_flight = std::collections::VecDeque::new();
        for i in 0u64.. {
            let value = format!("r{round}-{i}");
            let record = Record::with_key(format!("k{}", i % 17), value.clone());
            in_flight.push_back((value, producer.send(TOPIC, record)));
            if in_flight.len() >= 64
                && let Some((value, delivery)) = in_flight.pop_front()
            {
                let meta = delivery.await.expect("acknowledged");
                writeln!(out, "ack {} {} {value}", meta.partition, meta.offset).expect("stdout");
                out.flush().expect("stdout");
            }
        }
    });
}

fn spawn_child(dir: &Path, round: u64) -> std::process::Child {
    Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir)
        .env("PLEXUS_CRASH_ROUND", round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let seed: u64 = std::env::var("PLEXUS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (rerun with PLEXUS_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tmp");
    let mut acked: BTreeMap<i32, BTreeMap<i64, String>> = BTreeMap::new();
    for round in 0..20 {
        let kill_after = rng.random_range(1..3000);
        let mut child = spawn_child(dir.path(), round);
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // The test harness prints its own lines first.
        let started = lines.by_ref().map_while(Result::ok).any(|l| l.ends_with("ready"));
        assert!(started, "round {round}: the child started");
        for _ in 0..kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            if !line.starts_with("ack ") {
                continue;
            }
            let mut parts = line.splitn(4, ' ');
            let (_, p, o, v) = (parts.next(), parts.next(), parts.next(), parts.next());
            let (Some(p), Some(o), Some(v)) = (p, o, v) else { panic!("bad line {line:?}") };
            acked.entry(p.parse().expect("p")).or_default().insert(o.parse().expect("o"), v.to_owned());
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // Acknowledgements printed before the kill but not read yet count too.
        for line in lines.map_while(Result::ok) {
            let parts: Vec<&str> = line.splitn(4, ' ').collect();
            if let ["ack", p, o, v] = parts[..] {
                acked.entry(p.parse().expect("p")).or_default().insert(o.parse().expect("o"), v.to_owned());
            }
        }
    }
    let log = Log::open(LogConfig::new(dir.path())).expect("reopen after the last kill");
    let mut total = 0;
    for p in 0..PARTITIONS {
        let records = read_partition(&log, p);
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "partition {p}: dense, increasing offsets");
        let by_offset: BTreeMap<i64, &String> = records.iter().map(|(o, v)| (*o, v)).collect();
        for (offset, value) in acked.get(&p).into_iter().flatten() {
            assert_eq!(
                by_offset.get(offset),
                Some(&value),
                "partition {p}: acknowledged offset {offset} (seed {seed})"
            );
        }
        let values: BTreeSet<&String> = records.iter().map(|r| &r.1).collect();
        assert_eq!(values.len(), records.len(), "partition {p}: no record twice");
        total += acked.get(&p).map_or(0, BTreeMap::len);
    }
    assert!(total > 20, "the children acknowledged records: {total}");
    log.close().expect("close");
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(format!("{TOPIC}-0")))
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Writes `n` records in batches of 10 to partition 0 and crashes (drops
/// the log without closing it, as a killed process would).
fn write_and_crash(dir: &Path, n: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let log = Log::open(LogConfig::new(dir)).expect("open");
        let mut config = TopicConfig::default();
        config.set("segment.bytes", "4096").expect("valid");
        log.create_topic(TOPIC, 1, config).expect("create");
        let producer = EmbeddedProducer::new(log.clone(), ProducerConfig::default()).expect("producer");
        for chunk in 0..n / 10 {
            let sends: Vec<_> =
                (0..10).map(|i| producer.send_to(TOPIC, 0, Record::new(format!("v{}", chunk * 10 + i)))).collect();
            for s in sends {
                s.await.expect("ack");
            }
        }
        log.write_recovery_checkpoint().expect("checkpoint");
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}

#[test]
fn a_torn_tail_is_cut_off_and_the_rest_served() {
    let dir = tempfile::tempdir().expect("tmp");
    write_and_crash(dir.path(), 200);
    let last = segment_files(dir.path()).pop().expect("segments");
    // A write torn by the crash: the tail of the last segment is half a batch.
    let len = std::fs::metadata(&last).expect("meta").len();
    let file = std::fs::OpenOptions::new().append(true).open(&last).expect("open");
    file.set_len(len + 37).expect("extend with zeros");
    drop(file);
    let log = Log::open(LogConfig::new(dir.path())).expect("recovers");
    let records = read_partition(&log, 0);
    assert_eq!(records.len(), 200);
    assert_eq!(std::fs::metadata(&last).expect("meta").len(), len, "the torn bytes are gone");
    assert!(log.describe_topic(TOPIC).expect("describe").partitions[0].corruption.is_none());
    log.close().expect("close");
}

#[test]
fn a_flipped_byte_mid_segment_is_reported_and_nothing_past_it_served() {
    let dir = tempfile::tempdir().expect("tmp");
    write_and_crash(dir.path(), 200);
    let first = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&first, &bytes).expect("write");
    // Every segment is below the checkpointed recovery point. The first is
    // trusted on open (not rescanned), so the damage shows when it is read.
    let log = Log::open(LogConfig::new(dir.path())).expect("open");
    let tp = TopicPartition::new(TOPIC, 0);
    let mut offset = 0;
    let err = loop {
        match log.fetch(&tp, offset, 1 << 20) {
            Ok(f) if f.records.next_offset > offset => offset = f.records.next_offset,
            Ok(_) => panic!("read past the damage without an error"),
            Err(e) => break e,
        }
    };
    let text = err.to_string();
    assert!(text.contains(&first.display().to_string()) && text.contains("at byte"), "names file and position: {text}");
    assert!(offset > 0 && offset < 200, "serves what comes before the damage: {offset}");
    log.close().expect("close");
    assert_eq!(std::fs::read(&first).expect("read"), bytes, "nothing was truncated");
}

const TXN_CHILD_ENV: &str = "PLEXUS_TXN_CRASH_CHILD";
const TXN_TOPIC: &str = "txns";
const TXN_ID: &str = "crasher";

fn transactional(id: &str) -> ProducerConfig {
    let mut c = ProducerConfig::default();
    c.set("transactional.id", id).expect("valid");
    c
}

/// The transactional child: runs transactions of 1–12 records over two
/// partitions until killed, committing two in three and aborting the rest,
/// printing `commit <txn>` or `abort <txn>` once each call returned.
#[test]
fn txn_crash_child() {
    let Ok(dir) = std::env::var(TXN_CHILD_ENV) else { return };
    let round: u64 = std::env::var("PLEXUS_CRASH_ROUND").ok().and_then(|r| r.parse().ok()).unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let log = Log::open(LogConfig::new(&dir)).expect("open");
        if !log.topic_exists(TXN_TOPIC) {
            let mut config = TopicConfig::default();
            config.set("segment.bytes", "16384").expect("valid");
            log.create_topic(TXN_TOPIC, 2, config).expect("create");
        }
        let producer = EmbeddedProducer::new(log.clone(), transactional(TXN_ID)).expect("producer");
        producer.init_transactions().await.expect("init");
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").expect("stdout");
        out.flush().expect("stdout");
        for t in 0u64.. {
            let name = format!("r{round}t{t}");
            let n = 1 + (t * 7 + round) % 12;
            producer.begin_transaction().expect("begin");
            for i in 0..n {
                drop(producer.send(TXN_TOPIC, Record::with_key(format!("{name}-{i}"), format!("{name} {i} {n}"))));
            }
            if t % 3 == 2 {
                producer.abort_transaction().await.expect("abort");
                writeln!(out, "abort {name}").expect("stdout");
            } else {
                producer.commit_transaction().await.expect("commit");
                writeln!(out, "commit {name}").expect("stdout");
            }
            out.flush().expect("stdout");
        }
    });
}

#[test]
fn committed_transactions_survive_sigkill_whole_and_aborted_ones_never_appear() {
    let seed: u64 = std::env::var("PLEXUS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (rerun with PLEXUS_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tmp");
    let mut outcome: BTreeMap<String, bool> = BTreeMap::new();
    for round in 0..12u64 {
        let kill_after = rng.random_range(1..120);
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "txn_crash_child", "--nocapture", "--test-threads", "1"])
            .env(TXN_CHILD_ENV, dir.path())
            .env("PLEXUS_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let started = lines.by_ref().map_while(Result::ok).any(|l| l.ends_with("ready"));
        assert!(started, "round {round}: the child started (seed {seed})");
        let mut record = |line: &str| match line.split_once(' ') {
            Some(("commit", name)) => outcome.insert(name.to_owned(), true),
            Some(("abort", name)) => outcome.insert(name.to_owned(), false),
            _ => None,
        };
        for _ in 0..kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            record(&line);
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        for line in lines.map_while(Result::ok) {
            record(&line);
        }
    }

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let log = Log::open(LogConfig::new(dir.path())).expect("reopen after the last kill");
        // The successor fences the killed child and aborts what it left open.
        let successor = EmbeddedProducer::new(log.clone(), transactional(TXN_ID)).expect("producer");
        successor.init_transactions().await.expect("init");
        let mut seen: BTreeMap<String, (u64, BTreeSet<u64>)> = BTreeMap::new();
        let mut config = ConsumerConfig::without_group();
        config.set("isolation.level", "read_committed").expect("valid");
        config.set("auto.offset.reset", "earliest").expect("valid");
        let mut consumer = EmbeddedConsumer::new(log.clone(), config);
        consumer.assign(&[TopicPartition::new(TXN_TOPIC, 0), TopicPartition::new(TXN_TOPIC, 1)]).await.expect("assign");
        for p in 0..2 {
            let tp = TopicPartition::new(TXN_TOPIC, p);
            assert_eq!(
                log.last_stable_offset(&tp).expect("lso"),
                log.offsets(&tp).expect("offsets").1,
                "no transaction left open"
            );
        }
        loop {
            let records = consumer.poll(Duration::from_millis(200)).await.expect("poll");
            if records.is_empty() {
                break;
            }
            for r in records {
                let value = String::from_utf8(r.value.unwrap_or_default().to_vec()).expect("utf8");
                let parts: Vec<&str> = value.split(' ').collect();
                let [name, i, n] = parts[..] else { panic!("bad value {value:?}") };
                let entry = seen.entry(name.to_owned()).or_insert((n.parse().expect("n"), BTreeSet::new()));
                assert!(entry.1.insert(i.parse().expect("i")), "{value} read twice (seed {seed})");
            }
        }
        for (name, (n, got)) in &seen {
            assert_eq!(got.len() as u64, *n, "transaction {name} is whole (seed {seed})");
            assert_ne!(outcome.get(name), Some(&false), "aborted transaction {name} is invisible (seed {seed})");
        }
        let committed: Vec<&String> = outcome.iter().filter(|(_, c)| **c).map(|(n, _)| n).collect();
        for name in &committed {
            assert!(seen.contains_key(*name), "committed transaction {name} survived (seed {seed})");
        }
        assert!(committed.len() >= 12, "the children committed transactions: {}", committed.len());
        log.close().expect("close");
    });
}
