//! FileSource and FileSink.

use std::io::Write;
use std::path::Path;

use plexus_connectors::{ConnectorConfig, State};
use plexus_core::Record;
use plexus_core::client::{EmbeddedProducer, Producer, ProducerConfig};

use crate::{Connect, until};

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
    f.sync_data().expect("sync");
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

fn source(name: &str, file: &Path, topic: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "config": {{"connector.class": "FileStreamSource", "file": "{}", "topic": "{topic}"{extra}}}}}"#,
        file.display()
    )
}

fn sink(name: &str, file: &Path, topics: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "config": {{"connector.class": "FileSink", "file": "{}", "topics": "{topics}"{extra}}}}}"#,
        file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_through_a_topic_into_another_file_and_a_restart_resumes_exactly() {
    let mut connect = Connect::new();
    let dir = tempfile::tempdir().expect("tmp");
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    let expected: Vec<String> = (0..1500).map(|i| format!("line {i} with some text")).collect();
    append(&input, expected[..1000].iter().cloned());
    connect.start(&source("in", &input, "lines", "")).await;
    connect.start(&sink("out", &output, "lines", "")).await;
    until("the sink wrote 1000 lines", || lines_of(&output).len() >= 1000).await;
    connect.worker.stop_all().await;

    // More lines while nothing runs; a new worker resumes both sides.
    append(&input, expected[1000..].iter().cloned());
    connect.restart_worker();
    connect.start(&source("in", &input, "lines", "")).await;
    connect.start(&sink("out", &output, "lines", "")).await;
    until("the sink wrote 1500 lines", || lines_of(&output).len() >= 1500).await;
    connect.worker.stop_all().await;
    assert_eq!(lines_of(&output), expected, "every line once, in order");
    let in_topic = connect.values("lines").await;
    assert_eq!(in_topic.len(), 1500, "the source wrote each line once");
    assert_eq!(in_topic[0], "\"line 0 with some text\"", "JSON strings by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_source_follows_rotation_while_running_and_while_stopped() {
    let mut connect = Connect::new();
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("app.log");
    let config = source("tail", &log, "app", r#", "value.converter": "string""#);
    let mut written = Vec::new();
    let mut write = |path: &Path, from: usize, n: usize| {
        let lines: Vec<String> = (from..from + n).map(|i| format!("event {i}")).collect();
        written.extend(lines.iter().cloned());
        append(path, lines);
    };
    write(&log, 0, 100);
    connect.start(&config).await;
    until("100 lines read", || connect.worker.records("tail") >= 100).await;

    // Rotation while running: the old file gets a last few lines after
    // the rename, then the new file starts.
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rename");
    write(&dir.path().join("app.log.1"), 100, 5);
    write(&log, 105, 50);
    until("155 lines read", || connect.worker.records("tail") >= 155).await;
    connect.worker.stop_all().await;

    // Rotation while stopped: the rest of the old file, then the new one.
    write(&log, 155, 10);
    std::fs::rename(&log, dir.path().join("app.log.2")).expect("rename");
    write(&log, 165, 20);
    connect.restart_worker();
    connect.start(&config).await;
    until("the 30 lines since the restart are read", || connect.worker.records("tail") >= 30).await;
    connect.worker.stop_all().await;
    assert_eq!(connect.values("app").await, written, "no line lost or repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_become_structs_and_go_back_to_csv() {
    let connect = Connect::new();
    let dir = tempfile::tempdir().expect("tmp");
    let (input, output) = (dir.path().join("payments.csv"), dir.path().join("copy.csv"));
    append(&input, ["payer,payee,amount,note".to_owned(), "ada,bob,12,\"rent, june\"".into(), "cy,ada,7.5,".into()]);
    connect.start(&source("csv-in", &input, "payments", r#", "format": "csv""#)).await;
    connect.start(&sink("csv-out", &output, "payments", r#", "format": "csv""#)).await;
    until("two rows copied", || lines_of(&output).len() >= 3).await;
    connect.worker.stop_all().await;
    let values = connect.values("payments").await;
    // A column has one type: 12 is a number like 7.5 in its column.
    assert_eq!(values[0], r#"{"payer":"ada","payee":"bob","amount":12.0,"note":"rent, june"}"#);
    assert_eq!(values[1], r#"{"payer":"cy","payee":"ada","amount":7.5,"note":""}"#);
    assert_eq!(lines_of(&output), ["payer,payee,amount,note", "ada,bob,12.0,\"rent, june\"", "cy,ada,7.5,"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_files_appear_whole_and_cover_every_record() {
    let connect = Connect::new();
    let dir = tempfile::tempdir().expect("tmp");
    let producer = EmbeddedProducer::new(connect.log.clone(), ProducerConfig::default()).expect("producer");
    for i in 0..300 {
        producer.send("events", Record::new(format!("{{\"n\":{i}}}"))).await.expect("ack");
    }
    let out = dir.path().join("events.jsonl");
    connect.start(&sink("roll", &out, "events", r#", "format": "json", "roll.size.bytes": "1000""#)).await;
    let rolled = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("events-") && n.ends_with(".jsonl"))
            .collect();
        names.sort();
        names
    };
    until("the records are in rolled files", || {
        rolled().iter().map(|n| lines_of(&dir.path().join(n)).len()).sum::<usize>() >= 290
    })
    .await;
    connect.worker.stop_all().await;
    let mut seen: Vec<i64> = Vec::new();
    for name in rolled() {
        let lines = lines_of(&dir.path().join(&name));
        assert!(!lines.is_empty(), "{name} is empty");
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{name}: {l:?}: {e}"));
            seen.push(v["n"].as_i64().expect("n"));
        }
    }
    // The rest is in the in-progress file, hidden until it rolls.
    let inprogress: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".inprogress"))
        .collect();
    assert_eq!(inprogress.len(), 1, "one hidden in-progress file: {inprogress:?}");
    for l in lines_of(&dir.path().join(&inprogress[0])) {
        let v: serde_json::Value = serde_json::from_str(&l).expect("json");
        seen.push(v["n"].as_i64().expect("n"));
    }
    assert_eq!(seen, (0..300).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_goes_to_the_dead_letter_topic_and_the_rest_flow_on() {
    let connect = Connect::new();
    let dir = tempfile::tempdir().expect("tmp");
    let producer = EmbeddedProducer::new(connect.log.clone(), ProducerConfig::default()).expect("producer");
    for v in [r#"{"n":1}"#, "{not json", r#"{"n":3}"#] {
        producer.send("mixed", Record::new(v)).await.expect("ack");
    }
    let out = dir.path().join("good.jsonl");
    let tolerant = r#", "format": "json", "errors.tolerance": "all", "errors.deadletterqueue.topic.name": "mixed-dlq""#;
    connect.start(&sink("tolerant", &out, "mixed", tolerant)).await;
    until("the good records are written", || lines_of(&out).len() >= 2).await;
    connect.worker.stop_all().await;
    assert_eq!(lines_of(&out), [r#"{"n":1}"#, r#"{"n":3}"#]);
    let dead = connect.read("mixed-dlq").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&b"{not json"[..]), "the record as it was read");
    let header = |k: &str| {
        dead[0]
            .headers
            .iter()
            .find(|h| h.key == k)
            .and_then(|h| h.value.clone())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    assert_eq!(header("__connect.errors.stage").as_deref(), Some("value converter"));
    assert_eq!(header("__connect.errors.offset").as_deref(), Some("1"));
    assert_eq!(header("__connect.errors.topic").as_deref(), Some("mixed"));
    assert!(header("__connect.errors.exception.message").is_some_and(|m| m.starts_with("not JSON")));

    // Without tolerance the task stops at the poison record, naming it.
    let strict = dir.path().join("strict.jsonl");
    connect.start(&sink("strict", &strict, "mixed", r#", "format": "json""#)).await;
    until("the strict sink failed", || connect.worker.status("strict").is_ok_and(|s| s.state == State::Failed)).await;
    let status = connect.worker.status("strict").expect("status");
    let trace = status.tasks[0].trace.clone().expect("trace");
    assert!(trace.contains("value converter failed on the record at mixed-0 offset 1: not JSON"), "{trace}");
}

#[tokio::test]
async fn bad_configs_are_refused_with_the_key_and_the_fix() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("x.txt");
    let f = file.display();
    let cases = [
        (
            r#"{"name": "a", "config": {"connector.class": "Nope"}}"#.to_owned(),
            "connector \"a\": connector.class: \"Nope\" is not a connector class; use one of FileSource, FileSink",
        ),
        (r#"{"name": "b", "config": {"topic": "t"}}"#.to_owned(), "connector \"b\": connector.class: missing; set it to one of"),
        (
            format!(r#"{{"name": "c", "config": {{"connector.class": "FileSource", "file": "{f}"}}}}"#),
            "connector \"c\": topic: missing field `topic`",
        ),
        (
            format!(r#"{{"name": "d", "config": {{"connector.class": "FileSource", "file": "{f}", "topic": "t", "batch.size": "lots"}}}}"#),
            "connector \"d\": batch.size: \"lots\": invalid digit found in string",
        ),
        (
            format!(r#"{{"name": "e", "config": {{"connector.class": "FileSource", "file": "{f}", "topic": "t", "fiel": "x"}}}}"#),
            "connector \"e\": fiel: unknown field `fiel`, expected one of",
        ),
        (
            format!(r#"{{"name": "f", "config": {{"connector.class": "FileSink", "file": "{f}"}}}}"#),
            "connector \"f\": topics: a sink needs topics (a comma-separated list) or topics.regex",
        ),
        (
            format!(r#"{{"name": "g", "config": {{"connector.class": "FileSink", "file": "{f}", "topics": "t", "value.converter": "avro"}}}}"#),
            "connector \"g\": value.converter: \"avro\" is not a converter",
        ),
        (
            r#"{"name": "h", "config": {"connector.class": "FileSink", "file": "/no/such/dir/out.txt", "topics": "t"}}"#.to_owned(),
            "connector \"h\": file: \"/no/such/dir/out.txt\": the directory /no/such/dir does not exist; create it first",
        ),
        (
            format!(r#"{{"name": "i", "config": {{"connector.class": "FileSource", "file": "{f}", "topic": "t", "format": "xml"}}}}"#),
            "connector \"i\": format: unknown variant `xml`, expected one of `lines`, `json`, `csv`",
        ),
    ];
    for (json, expected) in cases {
        let config = ConnectorConfig::from_json(&json).expect("json");
        let Err(err) = plexus_connectors::worker::validate(&config).await else { panic!("accepted: {json}") };
        let err = err.to_string();
        assert!(err.starts_with(expected), "{json}\n  gave: {err}\n  want: {expected}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_key_and_route_the_records_of_a_source() {
    let connect = Connect::new();
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("payments.csv");
    append(&input, ["payer,amount".to_owned(), "ada,12".into(), "bob,7".into()]);
    let transforms = r#", "format": "csv", "key.converter": "string",
        "transforms": "key,extract,route",
        "transforms.key.type": "org.apache.kafka.connect.transforms.ValueToKey", "transforms.key.fields": "payer",
        "transforms.extract.type": "org.apache.kafka.connect.transforms.ExtractField$Key", "transforms.extract.field": "payer",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": "(.*)", "transforms.route.replacement": "$1-by-payer""#;
    connect.start(&source("keyed", &input, "payments", transforms)).await;
    until("two rows read", || connect.worker.records("keyed") >= 2).await;
    connect.worker.stop_all().await;
    let records = connect.read("payments-by-payer").await;
    let keys: Vec<&[u8]> = records.iter().map(|r| r.key.as_deref().unwrap_or_default()).collect();
    assert_eq!(keys, [&b"ada"[..], b"bob"]);
    assert_eq!(records[0].value.as_deref(), Some(&br#"{"payer":"ada","amount":12}"#[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_files_read_back_with_the_same_rows() {
    use arrow_array::{Array, Float64Array, Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let mut connect = Connect::new();
    let dir = tempfile::tempdir().expect("tmp");
    let producer = EmbeddedProducer::new(connect.log.clone(), ProducerConfig::default()).expect("producer");
    let produce = |from: i64, to: i64| {
        let producer = &producer;
        async move {
            for i in from..to {
                let v = format!(r#"{{"n":{i},"name":"row {i}","amount":{i}.5}}"#);
                producer.send("rows", Record::new(v)).await.expect("ack");
            }
        }
    };
    produce(0, 600).await;
    let out = dir.path().join("rows.parquet");
    let config = sink("pq", &out, "rows", r#", "format": "parquet", "roll.interval.ms": "200""#);
    connect.start(&config).await;
    until("600 rows given to the sink", || connect.worker.records("pq") >= 600).await;
    connect.worker.stop_all().await;
    // A second run resumes after the rows the first one's files hold.
    produce(600, 1000).await;
    connect.restart_worker();
    connect.start(&config).await;
    until("the other 400 rows given to the sink", || connect.worker.records("pq") >= 400).await;
    connect.worker.stop_all().await;

    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.iter().all(|n| !n.ends_with(".inprogress")), "no unfinished file left: {names:?}");
    let mut rows = Vec::new();
    for name in names.iter().filter(|n| n.starts_with("rows-") && n.ends_with(".parquet")) {
        let file = std::fs::File::open(dir.path().join(name)).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("a parquet file").build().expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let n = batch.column_by_name("n").expect("n").as_any().downcast_ref::<Int64Array>().expect("int64").clone();
            let name = batch
                .column_by_name("name")
                .expect("name")
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8")
                .clone();
            let amount = batch
                .column_by_name("amount")
                .expect("amount")
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("f64")
                .clone();
            for i in 0..batch.num_rows() {
                rows.push((n.value(i), name.value(i).to_owned(), amount.value(i)));
            }
        }
    }
    let expected: Vec<(i64, String, f64)> = (0..1000).map(|i| (i, format!("row {i}"), i as f64 + 0.5)).collect();
    assert_eq!(rows, expected);
}
