//! The `plexus` binary end to end: every command a user types, its output,
//! and its errors.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn plexus(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plexus");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("plexus output")
}

fn ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = plexus(dir, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plexus {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = plexus(dir, args, None);
    assert!(!out.status.success(), "plexus {args:?} should fail");
    let stderr = String::from_utf8(out.stderr).expect("utf8 stderr");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "no panic for a user mistake: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "one clear error line: {stderr}");
    stderr
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn topics_produce_consume_and_groups() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    assert!(
        ok(d, &["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=86400000"], None)
            .contains("Created topic orders with 3 partition(s)")
    );
    let listed = json_lines(&ok(d, &["topic", "list", "--json"], None));
    assert_eq!(listed, vec![serde_json::json!({"topic": "orders", "partitions": 3})]);

    let out =
        ok(d, &["produce", "orders", "--key-separator", ":"], Some("alice:book\nbob:pen\ncarol:ink\nalice:lamp\n"));
    assert!(out.contains("Wrote 4 record(s) to orders"), "{out}");
    let file = d.join("lines.txt");
    std::fs::write(&file, (0..100).map(|i| format!("line {i}\n")).collect::<String>()).expect("write");
    let out = ok(d, &["produce", "orders", "--file", file.to_str().expect("path"), "--json"], None);
    assert_eq!(json_lines(&out), vec![serde_json::json!({"topic": "orders", "records": 100})]);

    let records =
        json_lines(&ok(d, &["consume", "orders", "--from-beginning", "--max-messages", "104", "--json"], None));
    assert_eq!(records.len(), 104);
    let alice: Vec<&str> =
        records.iter().filter(|r| r["key"] == "alice").map(|r| r["value"].as_str().expect("value")).collect();
    assert_eq!(alice, ["book", "lamp"], "one key, one partition, in order");
    for field in ["topic", "partition", "offset", "timestamp", "key", "value", "headers"] {
        assert!(records[0].get(field).is_some(), "{field} in {}", records[0]);
    }
    let p0 = json_lines(&ok(
        d,
        &["consume", "orders", "--partition", "0", "--offset", "1", "--timeout-ms", "300", "--json"],
        None,
    ));
    assert!(p0.iter().all(|r| r["partition"] == 0 && r["offset"].as_i64() >= Some(1)));
    let later = ok(d, &["consume", "orders", "--from-time", "2999-01-01T00:00:00Z", "--timeout-ms", "200"], None);
    assert!(later.is_empty(), "nothing after a future time: {later}");

    let first = ok(d, &["consume", "orders", "--group", "billing", "--from-beginning", "--max-messages", "10"], None);
    assert_eq!(first.lines().count(), 10);
    let rest = ok(d, &["consume", "orders", "--group", "billing", "--timeout-ms", "500"], None);
    assert_eq!(rest.lines().count(), 94, "the group resumes after its committed offsets");
    let groups = json_lines(&ok(d, &["group", "list", "--json"], None));
    assert_eq!(groups, vec![serde_json::json!({"group": "billing", "state": "Empty"})]);
    let described = json_lines(&ok(d, &["group", "describe", "billing", "--json"], None));
    let partitions = described[0]["partitions"].as_array().expect("partitions");
    assert!(partitions.iter().all(|p| p["lag"] == 0), "{partitions:?}");
    let reset =
        json_lines(&ok(d, &["group", "reset", "billing", "--topic", "orders", "--to-earliest", "--json"], None));
    assert_eq!(reset.len(), 3);
    assert!(reset.iter().all(|r| r["offset"] == 0));
    let human = ok(d, &["group", "describe", "billing"], None);
    assert!(human.contains("LAG") && human.contains("orders"), "{human}");
    let again = ok(d, &["consume", "orders", "--group", "billing", "--timeout-ms", "500"], None);
    assert_eq!(again.lines().count(), 104, "after a reset to earliest, everything again");

    ok(d, &["topic", "alter", "orders", "--partitions", "5", "--config", "retention.bytes=1000000"], None);
    let described = json_lines(&ok(d, &["topic", "describe", "orders", "--json"], None));
    assert_eq!(described[0]["partitions"].as_array().map(Vec::len), Some(5));
    assert_eq!(described[0]["config"]["retention.bytes"], "1000000");
    let human = ok(d, &["topic", "describe", "orders"], None);
    assert!(human.contains("HIGH-WATERMARK") && human.contains("retention.ms=86400000"), "{human}");
    assert!(ok(d, &["topic", "delete", "orders"], None).contains("Deleted topic orders"));
    assert!(ok(d, &["topic", "list"], None).contains("No topics yet"));
}

#[test]
fn mistakes_get_one_clear_error_and_a_failing_exit() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let e = fails(d, &["topic", "create", "bad name!"]);
    assert!(e.contains("\"bad name!\"") && e.contains("ASCII"), "{e}");
    let e = fails(d, &["topic", "create", "t", "--config", "retention.msec=5"]);
    assert!(e.contains("retention.ms"), "suggests the key: {e}");
    let e = fails(d, &["topic", "create", "t", "--config", "segment.bytes=tiny"]);
    assert!(e.contains("segment.bytes") && e.contains("tiny"), "{e}");
    let e = fails(d, &["consume", "missing", "--timeout-ms", "10"]);
    assert!(e.contains("plexus topic create missing"), "says what to do: {e}");
    ok(d, &["topic", "create", "t", "--partitions", "2"], None);
    let e = fails(d, &["topic", "alter", "t", "--partitions", "1"]);
    assert!(e.contains("can only grow"), "{e}");
    let e = fails(d, &["consume", "t", "--partition", "7"]);
    assert!(e.contains("no partition 7"), "{e}");
    let e = fails(d, &["group", "describe", "nobody"]);
    assert!(e.contains("nobody"), "{e}");
}

#[test]
fn a_second_process_is_told_who_holds_the_data_directory() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    ok(d, &["topic", "create", "t"], None);
    let mut holder = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .arg("--data-dir")
        .arg(d)
        .args(["consume", "t"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the holder has the lock (its pid is in the lock file).
    let lock = d.join(".lock");
    let pid = holder.id().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&lock).unwrap_or_default() != pid {
        assert!(std::time::Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let e = fails(d, &["topic", "list"]);
    assert!(e.contains(&format!("data directory {} is in use by process {pid}", d.display())), "{e}");
    holder.kill().expect("kill");
    holder.wait().expect("reap");
    ok(d, &["topic", "list"], None);
}

mod cdc;
mod connect;
#[path = "../../connectors/tests/connect/pg.rs"]
mod pg;
mod serve;
