//! `plexus connect`: connectors run as a real process, killed with SIGKILL
//! mid-run and restarted, neither lose nor repeat a line; a bad config is
//! one clear error.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::fails;

/// Starts `plexus connect run` and waits until it says each connector started.
pub(super) fn run_connectors(data: &Path, configs: &[&Path]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .arg("--data-dir")
        .arg(data)
        .args(["connect", "run"])
        .args(configs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plexus connect");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut started = 0;
    while started < configs.len() {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("stderr") == 0 {
            panic!("plexus connect run exited before starting its connectors");
        }
        started += usize::from(line.starts_with("started connector"));
    }
    // Keep draining stderr so the child never blocks on a full pipe; into
    // `<data>.stderr`, for a failing test to show.
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("stderr"))
        .expect("a stderr file");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut log));
    child
}

/// Waits until `progress` reaches `target`, or has not moved for 30 s (a
/// slow machine only takes longer; a stuck pipeline fails the assertion
/// that follows).
pub(super) fn until_done_or_stalled(target: u64, progress: impl FnMut() -> u64) {
    until_done_or_stalled_for(target, Duration::from_secs(30), progress);
}

/// As [`until_done_or_stalled`], for work with long pauses by design (a
/// server decoding a million-row transaction before it sends any of it).
pub(super) fn until_done_or_stalled_for(target: u64, stall: Duration, mut progress: impl FnMut() -> u64) {
    let (mut last, mut moved) = (progress(), Instant::now());
    while last < target && moved.elapsed() < stall {
        std::thread::sleep(Duration::from_millis(100));
        let now = progress();
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

#[test]
fn connectors_killed_with_sigkill_resume_without_losing_or_repeating_a_line() {
    let seed: u64 = std::env::var("PLEXUS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (PLEXUS_TEST_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tmp");
    let (data, input, output) = (dir.path().join("data"), dir.path().join("in.txt"), dir.path().join("out.txt"));
    let expected: Vec<String> = (0..400_000).map(|i| format!("record {i:06} of the kill test")).collect();
    let mut f = std::fs::File::create(&input).expect("input");
    for l in &expected {
        writeln!(f, "{l}").expect("write");
    }
    f.sync_data().expect("sync");
    let source = dir.path().join("source.json");
    let sink = dir.path().join("sink.toml");
    std::fs::write(
        &source,
        format!(
            r#"{{"name": "in", "config": {{"connector.class": "FileSource", "file": "{}", "topic": "lines", "batch.size": "500"}}}}"#,
            input.display()
        ),
    )
    .expect("source config");
    std::fs::write(
        &sink,
        format!(
            "name = \"out\"\n[config]\n\"connector.class\" = \"FileSink\"\nfile = \"{}\"\ntopics = \"lines\"\n\"offset.flush.interval.ms\" = 20\n",
            output.display()
        ),
    )
    .expect("sink config");

    for round in 0..6 {
        let mut child = run_connectors(&data, &[&source, &sink]);
        let after = Duration::from_millis(rng.random_range(20..400));
        std::thread::sleep(after);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        println!("round {round}: killed after {after:?}; {} lines out", lines_of(&output).len());
    }
    let mut child = run_connectors(&data, &[&source, &sink]);
    until_done_or_stalled(expected.len() as u64, || lines_of(&output).len() as u64);
    // SIGTERM: a clean stop.
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "a clean stop on SIGTERM: {status}");
    let got = lines_of(&output);
    assert_eq!(got.len(), expected.len(), "seed {seed}: every line exactly once");
    assert_eq!(got, expected, "seed {seed}: in order");
}

#[test]
fn a_bad_connector_config_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("bad.json");
    std::fs::write(&config, r#"{"name": "bad", "config": {"connector.class": "FileSource", "file": "x.txt", "topic": "t", "batch.size": "-3"}}"#)
        .expect("write");
    let path = config.to_str().expect("utf8");
    let err = fails(&dir.path().join("data"), &["connect", "run", path]);
    assert!(err.starts_with("error: connector \"bad\": batch.size: \"-3\": invalid digit found in string"), "{err}");
    std::fs::write(&config, "{not json").expect("write");
    let err = fails(&dir.path().join("data"), &["connect", "validate", path]);
    assert!(err.contains("bad.json: not a connector config"), "{err}");
}

#[test]
fn the_demo_reads_money_written_with_two_decimals() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("money.csv");
    let mut csv = String::from("payer,payee,amount,ts\n");
    for i in 0..300_u64 {
        // 284.20, 3.00 and 7: one column of numbers, however written.
        let amount = match i % 3 {
            0 => format!("{}.{:02}", i, i % 100 / 10 * 10),
            1 => format!("{}.00", i % 7),
            _ => format!("{}", i % 11),
        };
        csv.push_str(&format!("payer-{},payee-{},{amount},{}\n", i % 13, i % 5, 1_700_000_000_000 + i * 60));
    }
    std::fs::write(&input, csv).expect("input");
    let out = super::ok(&dir.path().join("data"), &["demo", "--input", input.to_str().expect("utf8")], None);
    assert!(out.contains("300 payments in"), "{out}");
}

#[test]
fn a_failing_connector_prints_its_error_once_without_colour_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("bad.csv");
    // The types come from the first 1,000 rows; the bad cell is past them.
    let mut csv = String::from("payer,amount\n");
    for i in 0..1_000 {
        csv.push_str(&format!("p{i},{i}.50\n"));
    }
    csv.push_str("bob,twelve\n");
    std::fs::write(&input, csv).expect("input");
    let config = dir.path().join("in.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"name": "in", "config": {{"connector.class": "FileSource", "file": "{}", "format": "csv", "topic": "in"}}}}"#,
            input.display()
        ),
    )
    .expect("config");
    let out = super::plexus(&dir.path().join("data"), &["connect", "run", config.to_str().expect("utf8")], None);
    assert!(!out.status.success(), "a connector that failed fails the command");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains('\u{1b}'), "no colour codes when stderr is not a terminal: {err:?}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("twelve")).collect();
    assert_eq!(lines.len(), 1, "the error once: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].contains("bad.csv: line 1002: column \"amount\": \"twelve\" is not a number"),
        "the file, line and column: {err}"
    );
}

#[test]
fn the_demo_totals_equal_sums_computed_from_its_input_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("demo");
    let pg = super::pg::Postgres::start();
    let out = super::ok(&data, &["demo", "--events", "5000", "--postgres", &pg.url], None);
    assert!(out.contains("5000 payments in"), "{out}");
    assert!(out.contains("Top payers"), "{out}");
    // An independent sum of the generated file, in cents.
    let mut expected: std::collections::BTreeMap<String, (u64, i64)> = std::collections::BTreeMap::new();
    let csv = std::fs::read_to_string(data.join("payments.csv")).expect("the generated input");
    for line in csv.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let (dollars, cents) = cells[2].split_once('.').unwrap_or((cells[2], "0"));
        let cents =
            dollars.parse::<i64>().expect("dollars") * 100 + format!("{cents:0<2}").parse::<i64>().expect("cents");
        let e = expected.entry(cells[0].to_owned()).or_default();
        e.0 += 1;
        e.1 += cents;
    }
    assert_eq!(expected.values().map(|e| e.0).sum::<u64>(), 5000);
    // The FileSink's output: the latest line per payer is its total.
    let mut latest: std::collections::BTreeMap<String, (u64, i64)> = std::collections::BTreeMap::new();
    for line in lines_of(&data.join("payment-totals.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let payer = v["payer"].as_str().expect("payer").to_owned();
        latest.insert(payer, (v["count"].as_u64().expect("count"), v["total_cents"].as_i64().expect("total")));
    }
    assert_eq!(latest, expected);
    // The PostgresSink's table: one row per payer, upserted to its total.
    let mut table: std::collections::BTreeMap<String, (u64, i64)> = std::collections::BTreeMap::new();
    for row in pg.psql("SELECT payer, count, total_cents FROM payment_totals").lines() {
        let cells: Vec<&str> = row.split('|').collect();
        table.insert(cells[0].to_owned(), (cells[1].parse().expect("count"), cells[2].parse().expect("total")));
    }
    assert_eq!(table, expected);
}

#[test]
fn a_postgres_sink_killed_with_sigkill_writes_every_row_exactly_once() {
    let seed: u64 = std::env::var("PLEXUS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (PLEXUS_TEST_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pg = super::pg::Postgres::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (data, input) = (dir.path().join("data"), dir.path().join("rows.csv"));
    let n = 60_000;
    let mut f = std::fs::File::create(&input).expect("input");
    writeln!(f, "id,name").expect("write");
    for i in 0..n {
        writeln!(f, "{i},row {i}").expect("write");
    }
    f.sync_data().expect("sync");
    let source = dir.path().join("source.json");
    let sink = dir.path().join("sink.json");
    std::fs::write(
        &source,
        format!(
            r#"{{"name": "csv", "config": {{"connector.class": "FileSource", "file": "{}", "topic": "rows", "format": "csv", "batch.size": "500"}}}}"#,
            input.display()
        ),
    )
    .expect("source config");
    // Plain inserts with no key: a row written twice would be there twice.
    std::fs::write(
        &sink,
        format!(
            r#"{{"name": "table", "config": {{"connector.class": "PostgresSink", "connection.url": "{}", "topics": "rows",
                "table.name.format": "kill_rows", "batch.max.rows": "700",
                "offset.flush.interval.ms": "30"}}}}"#,
            pg.url
        ),
    )
    .expect("sink config");
    pg.psql("CREATE TABLE kill_rows (id bigint, name text)");
    let count = || pg.psql("SELECT count(*) FROM kill_rows").parse::<u64>().expect("a count");
    for round in 0..6 {
        let mut child = run_connectors(&data, &[&source, &sink]);
        let after = Duration::from_millis(rng.random_range(50..600));
        std::thread::sleep(after);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        println!("round {round}: killed after {after:?}; {} rows in the table", count());
    }
    let mut child = run_connectors(&data, &[&source, &sink]);
    until_done_or_stalled(n, count);
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    assert!(child.wait().expect("wait").success(), "a clean stop on SIGTERM");
    let summary = pg.psql(
        "SELECT count(*), count(DISTINCT id), sum(id), count(*) FILTER (WHERE name <> 'row ' || id) FROM kill_rows",
    );
    assert_eq!(summary, format!("{n}|{n}|{}|0", n * (n - 1) / 2), "seed {seed}: every row once, as it was");
}
