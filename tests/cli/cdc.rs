//! PostgreSQL change data capture as a real process, killed with SIGKILL
//! at random moments while the source table changes: the copy ends equal
//! to the source, and an insert-only sink never sees an event twice; a
//! snapshot of a million rows cut by kills continues without repeating a
//! row; a transaction of a million rows streams in bounded memory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::connect::{run_connectors, until_done_or_stalled, until_done_or_stalled_for};
use super::pg::Postgres;

fn seeded(name: &str) -> (u64, rand::rngs::StdRng) {
    let seed: u64 = std::env::var("PLEXUS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("{name}: seed {seed} (PLEXUS_TEST_SEED={seed} replays it)");
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
}

fn config(dir: &Path, name: &str, json: String) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, json).expect("config");
    path
}

fn cdc_config(dir: &Path, url: &str, tables: &str, extra: &str) -> PathBuf {
    config(
        dir,
        "cdc",
        format!(
            r#"{{"name": "cdc", "config": {{"connector.class": "PostgresCdcSource", "connection.url": "{url}",
                "topic.prefix": "kill", "table.include.list": "{tables}", "poll.interval.ms": "50",
                "heartbeat.interval.ms": "500"{extra}}}}}"#
        ),
    )
}

/// A sink of one table's change events (each event's `after`).
fn sink_config(dir: &Path, url: &str, table: &str, target: &str, mode: &str) -> PathBuf {
    let keys = if mode == "upsert" { r#""pk.mode": "record_key", "delete.enabled": "true","# } else { "" };
    config(
        dir,
        target,
        format!(
            r#"{{"name": "{target}", "config": {{"connector.class": "PostgresSink", "connection.url": "{url}",
                "topics": "kill.public.{table}", "table.name.format": "{target}", "insert.mode": "{mode}", {keys}
                "offset.flush.interval.ms": "50", "batch.max.rows": "300",
                "transforms": "after", "transforms.after.type": "ExtractField$Value", "transforms.after.field": "after"}}}}"#
        ),
    )
}

fn stop(mut child: Child) {
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    assert!(child.wait().expect("wait").success(), "a clean stop on SIGTERM");
}

fn kill(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// Rows of `a` not in `b` (as text), one per line.
fn except(pg: &Postgres, a: &str, b: &str) -> String {
    pg.psql(&format!(
        "SELECT coalesce(string_agg(x, E'\\n'), '') FROM \
         (SELECT t::text AS x FROM {a} t EXCEPT ALL SELECT t::text FROM {b} t) d"
    ))
}

/// Random transactions on `acct` (inserts, updates, key changes, deletes)
/// and inserts into `ins_src`, until `stop`.
fn workload(url: String, seed: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut live: BTreeSet<i64> = (1..=2_000).collect();
        let (mut next_id, mut next_ins, mut transactions) = (10_000_i64, 1_000_i64, 0_u64);
        while !stop.load(Ordering::Acquire) {
            let mut sql = String::from("BEGIN;");
            for _ in 0..rng.random_range(1..8) {
                let pick = |rng: &mut rand::rngs::StdRng, live: &BTreeSet<i64>| {
                    live.iter().nth(rng.random_range(0..live.len().max(1))).copied()
                };
                match rng.random_range(0..10) {
                    0..=2 => {
                        sql.push_str(&format!(
                            "INSERT INTO acct VALUES ({next_id}, 'owner {next_id}', {}.25, 'new');",
                            rng.random_range(0..1000)
                        ));
                        live.insert(next_id);
                        next_id += 1;
                    }
                    3..=5 => {
                        if let Some(id) = pick(&mut rng, &live) {
                            sql.push_str(&format!(
                                "UPDATE acct SET balance = balance + {}, note = 'n{}' WHERE id = {id};",
                                rng.random_range(1..50),
                                rng.random_range(0..9)
                            ));
                        }
                    }
                    6 => {
                        if let Some(id) = pick(&mut rng, &live) {
                            sql.push_str(&format!("UPDATE acct SET id = {next_id} WHERE id = {id};"));
                            live.remove(&id);
                            live.insert(next_id);
                            next_id += 1;
                        }
                    }
                    7 => {
                        if let Some(id) = pick(&mut rng, &live) {
                            sql.push_str(&format!("DELETE FROM acct WHERE id = {id};"));
                            live.remove(&id);
                        }
                    }
                    _ => {
                        sql.push_str(&format!("INSERT INTO ins_src VALUES ({next_ins}, 'event {next_ins}');"));
                        next_ins += 1;
                    }
                }
            }
            sql.push_str("COMMIT;");
            let out = Command::new("psql").args([&url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &sql]).output();
            assert!(out.is_ok_and(|o| o.status.success()), "the workload's transaction failed: {sql}");
            transactions += 1;
        }
        transactions
    })
}

#[test]
fn cdc_killed_at_random_keeps_its_copy_equal_and_never_repeats_an_event() {
    let (seed, mut rng) = seeded("cdc kills");
    let pg = Postgres::start();
    pg.psql(
        "CREATE TABLE acct (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(12,2), note text); \
         CREATE TABLE acct_copy (LIKE acct INCLUDING ALL); \
         CREATE TABLE ins_src (id bigint PRIMARY KEY, what text); CREATE TABLE ins_copy (id bigint, what text)",
    );
    pg.psql("INSERT INTO acct SELECT i, 'owner ' || i, i * 1.5, NULL FROM generate_series(1, 2000) i");
    pg.psql("INSERT INTO ins_src SELECT i, 'event ' || i FROM generate_series(1, 999) i");
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let configs = [
        cdc_config(dir.path(), &pg.url, "public\\\\.(acct|ins_src)", r#", "max.batch.size": "150""#),
        sink_config(dir.path(), &pg.url, "acct", "acct_copy", "upsert"),
        sink_config(dir.path(), &pg.url, "ins_src", "ins_copy", "insert"),
    ];
    let configs: Vec<&Path> = configs.iter().map(PathBuf::as_path).collect();
    let stop_workload = Arc::new(AtomicBool::new(false));
    let load = workload(pg.url.clone(), seed, Arc::clone(&stop_workload));
    for round in 0..12 {
        let child = run_connectors(&data, &configs);
        let after = Duration::from_millis(rng.random_range(200..1500));
        std::thread::sleep(after);
        kill(child);
        println!("round {round}: killed after {after:?}; {} rows copied", pg.psql("SELECT count(*) FROM acct_copy"));
    }
    stop_workload.store(true, Ordering::Release);
    let transactions = load.join().expect("workload");
    println!("{transactions} transactions ran during the kills");
    let child = run_connectors(&data, &configs);
    let differences = || {
        let n = except(&pg, "acct", "acct_copy").lines().count() + except(&pg, "acct_copy", "acct").lines().count();
        let missing: u64 =
            pg.psql("SELECT (SELECT count(*) FROM ins_src) - (SELECT count(*) FROM ins_copy)").parse().unwrap_or(0);
        n as u64 + missing
    };
    until_done_or_stalled(u64::MAX, || u64::MAX - differences());
    stop(child);
    assert_eq!(except(&pg, "acct", "acct_copy"), "", "seed {seed}: rows of the source missing from the copy");
    assert_eq!(except(&pg, "acct_copy", "acct"), "", "seed {seed}: rows in the copy that the source has not");
    let ins = pg.psql("SELECT (SELECT count(*) FROM ins_src), count(*), count(DISTINCT id) FROM ins_copy");
    let n = pg.psql("SELECT count(*) FROM ins_src");
    assert_eq!(ins, format!("{n}|{n}|{n}"), "seed {seed}: every insert once in the insert-only copy");
}

/// The `plexus` process's peak resident memory, in MiB.
fn peak_rss_mib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

const MILLION: u64 = 1_000_000;

#[test]
fn a_snapshot_of_a_million_rows_cut_by_kills_continues_without_a_duplicate() {
    let (_, mut rng) = seeded("snapshot kills");
    let pg = Postgres::start();
    pg.psql("CREATE TABLE big (id bigint PRIMARY KEY, payload text); CREATE TABLE big_copy (id bigint, payload text)");
    pg.psql(&format!("INSERT INTO big SELECT i, md5(i::text) FROM generate_series(1, {MILLION}) i"));
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let configs = [
        cdc_config(dir.path(), &pg.url, "public\\\\.big", r#", "max.batch.size": "5000""#),
        sink_config(dir.path(), &pg.url, "big", "big_copy", "insert"),
    ];
    let configs: Vec<&Path> = configs.iter().map(PathBuf::as_path).collect();
    let copied = || pg.psql("SELECT count(*) FROM big_copy").parse::<u64>().unwrap_or(0);
    let mut kills = 0;
    while kills < 3 {
        let child = run_connectors(&data, &configs);
        let after = Duration::from_millis(rng.random_range(1_500..4_000));
        std::thread::sleep(after);
        kill(child);
        let n = copied();
        println!("killed after {after:?}: {n} rows copied");
        assert!(n < MILLION, "the kills are meant to cut the snapshot; the machine read it faster than expected");
        kills += 1;
    }
    let child = run_connectors(&data, &configs);
    until_done_or_stalled_for(MILLION, Duration::from_secs(120), copied);
    stop(child);
    let summary =
        pg.psql("SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE payload <> md5(id::text)) FROM big_copy");
    assert_eq!(summary, format!("{MILLION}|{MILLION}|0"), "every row once, as it was");
}

#[test]
fn a_transaction_of_a_million_rows_streams_in_bounded_memory() {
    let pg = Postgres::start();
    pg.psql(
        "CREATE TABLE wide (id bigint PRIMARY KEY, payload text); CREATE TABLE wide_copy (id bigint, payload text)",
    );
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let configs = [
        cdc_config(dir.path(), &pg.url, "public\\\\.wide", r#", "max.batch.size": "5000""#),
        sink_config(dir.path(), &pg.url, "wide", "wide_copy", "insert"),
    ];
    let configs: Vec<&Path> = configs.iter().map(PathBuf::as_path).collect();
    let child = run_connectors(&data, &configs);
    // 1,000,000 rows of 200 bytes: about 1 GB as events if held whole.
    pg.psql(&format!(
        "INSERT INTO wide SELECT i, repeat('x', 190) || lpad(i::text, 10, '0') FROM generate_series(1, {MILLION}) i"
    ));
    let copied = || pg.psql("SELECT count(*) FROM wide_copy").parse::<u64>().unwrap_or(0);
    until_done_or_stalled_for(MILLION, Duration::from_secs(120), copied);
    let peak = peak_rss_mib(&child);
    stop(child);
    println!("peak RSS of plexus connect run: {peak} MiB");
    assert_eq!(
        pg.psql("SELECT count(*), count(DISTINCT id) FROM wide_copy"),
        format!("{MILLION}|{MILLION}"),
        "{}",
        std::fs::read_to_string(data.with_extension("stderr")).unwrap_or_default()
    );
    assert!(peak < 400, "a million-row transaction is written in batches, not held whole: peak RSS {peak} MiB");
}
