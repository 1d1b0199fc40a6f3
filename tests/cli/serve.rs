//! `plexus serve`: connectors created, inspected, paused, stopped, their
//! offsets altered and reset, restarted and deleted through Kafka
//! Connect's REST API and through `plexus connect`, on a real process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::{fails, json_lines, ok};

/// A running `plexus serve` on a free port; killed if a test fails.
struct Serve {
    child: Child,
    address: String,
}

impl Serve {
    /// Starts it and waits for the line saying where it listens.
    fn start(data: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--http-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run plexus serve");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let address = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("stderr") == 0 {
                panic!("plexus serve exited before listening");
            }
            if let Some(a) = line.trim().strip_prefix("listening on http://") {
                break a.to_owned();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self { child, address }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// One HTTP/1.1 request: the status and the JSON body (`null` for none).
    fn http(&self, method: &str, path: &str, body: Option<&Json>) -> (u16, Json) {
        let mut stream = TcpStream::connect(&self.address).expect("connect to plexus serve");
        let body = body.map(Json::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .expect("send the request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read the response");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        let json = if body.is_empty() { Json::Null } else { serde_json::from_str(body).expect("a JSON body") };
        (status, json)
    }

    fn get(&self, path: &str) -> Json {
        let (status, body) = self.http("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `plexus connect ARGS --url …`.
    fn cli(&self, dir: &Path, args: &[&str]) -> String {
        let url = self.url();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--url", &url]);
        ok(dir, &all, None)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, failing once it has not held for 60 s while
/// `progress` stood still (a slow machine only takes longer).
fn until(what: &str, mut progress: impl FnMut() -> u64, mut check: impl FnMut() -> bool) {
    let (mut last, mut moved) = (progress(), Instant::now());
    while !check() {
        assert!(moved.elapsed() < Duration::from_secs(60), "stalled waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
        let now = progress();
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open input");
    for l in lines {
        writeln!(f, "{l}").expect("write input");
    }
}

#[test]
fn connectors_are_managed_through_the_rest_api_and_plexus_connect() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (input, output) = (d.join("in.txt"), d.join("out.txt"));
    let first: Vec<String> = (0..2000).map(|i| format!("line {i:05}")).collect();
    append(&input, first.clone());
    let serve = Serve::start(&d.join("data"));
    let out_lines = || lines_of(&output).len() as u64;

    // Create a source and a sink.
    let source_config = json!({"connector.class": "FileSource", "file": input, "topic": "lines", "batch.size": "300"});
    let (status, created) =
        serve.http("POST", "/connectors", Some(&json!({"name": "in", "config": source_config.clone()})));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["type"], "source");
    assert_eq!(created["tasks"], json!([{"connector": "in", "task": 0}]));
    let sink = json!({"name": "out", "config": {"connector.class": "FileSink", "file": output, "topics": "lines",
        "offset.flush.interval.ms": "20"}});
    let (status, created) = serve.http("POST", "/connectors", Some(&sink));
    assert_eq!((status, &created["type"]), (201, &json!("sink")), "{created}");
    let (status, conflict) = serve.http("POST", "/connectors", Some(&sink));
    assert_eq!((status, conflict), (409, json!({"error_code": 409, "message": "Connector out already exists"})));
    until("the first lines out", out_lines, || out_lines() >= 2000);
    assert_eq!(lines_of(&output), first);

    // Listing and status, over HTTP and with plexus connect.
    assert_eq!(serve.get("/connectors"), json!(["in", "out"]));
    let status = serve.get("/connectors/in/status");
    assert_eq!(status["name"], "in");
    assert_eq!(status["type"], "source");
    assert_eq!(status["connector"], json!({"state": "RUNNING", "worker_id": serve.address}));
    assert_eq!(status["tasks"], json!([{"id": 0, "state": "RUNNING", "worker_id": serve.address}]));
    let listed = json_lines(&serve.cli(d, &["connect", "list", "--json"]));
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| s["connector"]["state"] == "RUNNING"), "{listed:?}");
    let human = serve.cli(d, &["connect", "list"]);
    assert!(human.contains("CONNECTOR") && human.contains("out") && human.contains("1/1 running"), "{human}");
    let human = serve.cli(d, &["connect", "status", "in"]);
    assert!(human.contains("Connector in (source): RUNNING"), "{human}");
    assert_eq!(json_lines(&serve.cli(d, &["connect", "status", "out", "--json"]))[0]["type"], "sink");
    assert_eq!(serve.get("/connectors/in/config")["file"], json!(input));
    let tasks = serve.get("/connectors/in/tasks");
    assert_eq!(tasks[0]["id"], json!({"connector": "in", "task": 0}), "{tasks}");

    // Pause and resume with plexus connect: lines written meanwhile arrive after.
    assert!(serve.cli(d, &["connect", "pause", "in"]).contains("Paused connector in"));
    let status = serve.get("/connectors/in/status");
    assert_eq!((&status["connector"]["state"], &status["tasks"][0]["state"]), (&json!("PAUSED"), &json!("PAUSED")));
    let second: Vec<String> = (2000..2500).map(|i| format!("line {i:05}")).collect();
    append(&input, second.clone());
    serve.cli(d, &["connect", "resume", "in"]);
    assert_eq!(serve.get("/connectors/in/status")["connector"]["state"], "RUNNING");
    until("the lines written while paused", out_lines, || out_lines() >= 2500);
    let expected: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(lines_of(&output), expected, "nothing lost or repeated across pause and resume");

    // Reconfigure: the source restarts where it was.
    let mut changed = source_config.clone();
    changed["batch.size"] = json!("100");
    let (status, info) = serve.http("PUT", "/connectors/in/config", Some(&changed));
    assert_eq!((status, &info["config"]["batch.size"]), (200, &json!("100")), "{info}");
    append(&input, ["line 02500".to_owned()]);
    until("the line after reconfiguring", out_lines, || out_lines() >= 2501);

    // Offsets: changed only while stopped.
    let sink_offsets = serve.get("/connectors/out/offsets");
    assert_eq!(
        sink_offsets["offsets"][0]["partition"],
        json!({"kafka_topic": "lines", "kafka_partition": 0}),
        "{sink_offsets}"
    );
    let (status, refused) = serve.http("DELETE", "/connectors/in/offsets", None);
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("STOPPED")), "{refused}");
    let (status, _) = serve.http("PUT", "/connectors/in/stop", None);
    assert_eq!(status, 204);
    let status = serve.get("/connectors/in/status");
    assert_eq!((&status["connector"]["state"], &status["tasks"]), (&json!("STOPPED"), &json!([])));
    assert_eq!(serve.get("/connectors/in/tasks"), json!([]));
    let offsets = serve.get("/connectors/in/offsets");
    let entry = &offsets["offsets"][0];
    let size = std::fs::metadata(&input).expect("input size").len();
    assert_eq!(entry["offset"]["position"], json!(size), "{offsets}");
    // Rewind by the last 10 lines (11 bytes each), then resume: they come again.
    let mut rewound = entry.clone();
    rewound["offset"]["position"] = json!(size - 110);
    let (status, altered) = serve.http("PATCH", "/connectors/in/offsets", Some(&json!({"offsets": [rewound]})));
    assert_eq!(status, 200, "{altered}");
    assert!(altered["message"].as_str().is_some_and(|m| m.contains("altered successfully")), "{altered}");
    assert_eq!(serve.get("/connectors/in/offsets")["offsets"][0]["offset"]["position"], json!(size - 110));
    assert_eq!(serve.http("PUT", "/connectors/in/resume", None).0, 202);
    until("the 10 rewound lines again", out_lines, || out_lines() >= 2511);
    let got = lines_of(&output);
    assert_eq!(got[2501..], got[2491..2501], "the last 10 lines once more");
    // Reset: the whole file again.
    serve.cli(d, &["connect", "stop", "in"]);
    let (status, reset) = serve.http("DELETE", "/connectors/in/offsets", None);
    assert_eq!(status, 200, "{reset}");
    assert!(reset["message"].as_str().is_some_and(|m| m.contains("reset successfully")), "{reset}");
    assert_eq!(serve.get("/connectors/in/offsets"), json!({"offsets": []}));
    serve.cli(d, &["connect", "resume", "in"]);
    until("the whole file again", out_lines, || out_lines() >= 2511 + 2501);
    assert_eq!(lines_of(&output)[2511..], lines_of(&input)[..], "read again from the start");

    // Restart, with plexus connect and over HTTP.
    assert!(serve.cli(d, &["connect", "restart", "out"]).contains("Restarted connector out"));
    let (status, restarted) = serve.http("POST", "/connectors/out/restart?includeTasks=true&onlyFailed=false", None);
    assert_eq!((status, &restarted["connector"]["state"]), (202, &json!("RUNNING")), "{restarted}");
    assert_eq!(serve.http("POST", "/connectors/in/restart", None).0, 204);
    append(&input, ["line 02501".to_owned()]);
    until("a line after the restarts", out_lines, || out_lines() >= 2511 + 2502);
    assert_eq!(lines_of(&output).last().map(String::as_str), Some("line 02501"));

    // Mistakes: a bad config names the key; an unknown connector is a 404.
    let bad = json!({"name": "bad", "config": {"connector.class": "FileSource", "file": input, "topic": "t", "batch.size": "-3"}});
    let (status, error) = serve.http("POST", "/connectors", Some(&bad));
    assert_eq!((status, &error["error_code"]), (400, &json!(400)), "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("batch.size")), "{error}");
    assert_eq!(
        serve.http("GET", "/connectors/nope/status", None),
        (404, json!({"error_code": 404, "message": "Connector nope not found"}))
    );
    let e = fails(d, &["connect", "status", "nope", "--url", &serve.url()]);
    assert!(e.contains("Connector nope not found"), "{e}");
    let plugins = serve.get("/connector-plugins");
    assert!(plugins.as_array().is_some_and(|p| p.iter().any(|c| c["class"] == "FileSource" && c["type"] == "source")));
    let checked = json!({"connector.class": "FileSink", "file": "x.txt", "topics": "t", "format": "yaml"});
    let (status, infos) = serve.http("PUT", "/connector-plugins/FileSink/config/validate", Some(&checked));
    assert_eq!((status, &infos["error_count"]), (200, &json!(1)), "{infos}");
    let configs = infos["configs"].as_array().expect("configs");
    assert!(configs.len() >= 4, "an entry per key: {infos}");
    let format = configs.iter().find(|c| c["value"]["name"] == "format").expect("format's entry");
    assert!(format["value"]["errors"].as_array().is_some_and(|e| e.len() == 1), "{infos}");
    let ok_config = json!({"connector.class": "FileSink", "file": "x.txt", "topics": "t"});
    assert_eq!(serve.http("PUT", "/connector-plugins/FileSink/config/validate", Some(&ok_config)).1["error_count"], 0);

    // Delete, with plexus connect and over HTTP.
    assert!(serve.cli(d, &["connect", "delete", "in"]).contains("Deleted connector in"));
    assert_eq!(serve.http("DELETE", "/connectors/out", None).0, 204);
    assert_eq!(serve.get("/connectors"), json!([]));
    assert!(serve.cli(d, &["connect", "list"]).contains("No connectors yet"));

    // SIGTERM: a clean stop.
    let mut serve = serve;
    let term = Command::new("kill").args(["-TERM", &serve.child.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    assert!(serve.child.wait().expect("wait").success(), "a clean stop on SIGTERM");
}

#[test]
fn plexus_connect_says_when_no_plexus_serve_listens() {
    let dir = tempfile::tempdir().expect("tmp");
    // Bind and drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let e = fails(dir.path(), &["connect", "list", "--url", &url]);
    assert_eq!(e.trim(), format!("error: no Plexus Connect at {url}: is `plexus serve` running?"));
}
