//! `plexus connect`: run connectors from config files, or manage the
//! connectors of a running `plexus serve` through its Connect REST API.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use plexus::Log;
use plexus::client::EmbeddedClients;
use plexus_connectors::{ConnectorConfig, State, Worker};

use super::output;

/// Run and inspect connectors.
///
/// `run` and `validate` work on config files; `list`, `status`, `pause`,
/// `resume`, `stop`, `restart` and `delete` talk to a running `plexus serve`
/// (its Kafka Connect REST API at --url), which creates connectors with
/// `curl -X POST http://127.0.0.1:8083/connectors -H 'Content-Type: application/json' -d @config.json`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConnectCommand {
    /// Run connectors from config files until interrupted (Ctrl-C or
    /// SIGTERM), on the embedded log in --data-dir.
    ///
    /// Each file is a connector config in Kafka Connect's JSON shape,
    /// `{"name": "...", "config": {"connector.class": "...", ...}}`, or the
    /// same as TOML (`name = "..."` and a `[config]` table). Every config is
    /// checked before anything starts; a bad key is named with the fix.
    /// Stopping commits what each connector did, so the next run resumes
    /// exactly there.
    Run(RunArgs),
    /// Check config files without running them.
    Validate(ValidateArgs),
    /// List the connectors of a running `plexus serve`, with their state
    /// and tasks.
    List(RemoteArgs),
    /// Show a connector's state and each task's (with the error of a
    /// failed task).
    Status(NamedArgs),
    /// Pause a connector: its tasks stay, idle, until `resume`.
    Pause(NamedArgs),
    /// Resume a paused or stopped connector.
    Resume(NamedArgs),
    /// Stop a connector's tasks but keep its config (Kafka's STOPPED);
    /// its offsets may then be altered or reset through the REST API, and
    /// `resume` starts it again.
    Stop(NamedArgs),
    /// Restart a connector's tasks with its config (e.g. after a failure).
    Restart(NamedArgs),
    /// Delete a connector: its tasks commit what they did and stop, its
    /// config is dropped (its offsets stay, for a connector of the same name).
    Delete(NamedArgs),
}

/// Where `plexus serve` listens, and how to print.
#[derive(Debug, Args)]
pub(crate) struct RemoteArgs {
    /// The Connect REST API of a running `plexus serve`.
    #[arg(long, env = "PLEXUS_CONNECT_URL", default_value = "http://127.0.0.1:8083")]
    url: String,
    /// Print JSON lines (Kafka Connect's shapes), for scripts.
    #[arg(long)]
    json: bool,
}

/// A connector's name and where `plexus serve` listens.
#[derive(Debug, Args)]
pub(crate) struct NamedArgs {
    /// The connector's name.
    name: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Connector config files (.json or .toml).
    #[arg(required = true, value_name = "CONFIG")]
    configs: Vec<PathBuf>,
    /// Print each connector's status as a JSON line on stop, for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Connector config files (.json or .toml).
    #[arg(required = true, value_name = "CONFIG")]
    configs: Vec<PathBuf>,
}

impl ConnectCommand {
    /// Whether the command talks to `plexus serve` (and so opens no data directory).
    pub(crate) fn is_remote(&self) -> bool {
        !matches!(self, Self::Run(_) | Self::Validate(_))
    }
}

pub(crate) async fn run(log: &Log, command: ConnectCommand) -> anyhow::Result<()> {
    match command {
        ConnectCommand::Run(args) => run_connectors(log, args).await,
        ConnectCommand::Validate(args) => {
            for path in &args.configs {
                let config = ConnectorConfig::from_file(path)?;
                plexus_connectors::worker::validate(&config).await?;
                println!("{}: connector {:?} is valid", path.display(), config.name);
            }
            Ok(())
        }
        remote => run_remote(remote).await,
    }
}

/// Reads and validates connector config files, all before any starts.
pub(crate) async fn read_configs(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<ConnectorConfig>> {
    let mut configs = Vec::new();
    for path in paths {
        let config = ConnectorConfig::from_file(path)?;
        plexus_connectors::worker::validate(&config).await?;
        configs.push(config);
    }
    Ok(configs)
}

/// A worker on the embedded log running `configs`, each announced on
/// stderr (`started connector NAME`); if one cannot start, none runs.
pub(crate) async fn start_all(log: &Log, configs: Vec<ConnectorConfig>) -> anyhow::Result<Worker> {
    let worker = Worker::new(Arc::new(EmbeddedClients::new(log.clone())));
    for config in configs {
        let name = config.name.clone();
        if let Err(e) = worker.start(config).await {
            worker.stop_all().await;
            return Err(e.into());
        }
        eprintln!("started connector {name}");
    }
    Ok(worker)
}

async fn run_connectors(log: &Log, args: RunArgs) -> anyhow::Result<()> {
    let configs = read_configs(&args.configs).await?;
    // Signals are caught from here on, before anything starts.
    let mut stop = Shutdown::new()?;
    let worker = start_all(log, configs).await?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    });
    let started = Instant::now();
    let failure = loop {
        tokio::select! {
            () = stop.wait() => break None,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let names = worker.connectors();
        let mut parts = Vec::new();
        let mut failed = None;
        for name in &names {
            let status = worker.status(name)?;
            parts.push(format!("{name}: {} records", worker.records(name)));
            if status.state == State::Failed {
                let trace = status.tasks.iter().find_map(|t| t.trace.clone()).unwrap_or_default();
                failed = Some(format!("connector {name} failed: {trace}"));
            }
        }
        if let Some(bar) = &bar {
            bar.set_message(format!("{} ({:.0?})", parts.join(", "), started.elapsed()));
            bar.tick();
        }
        if failed.is_some() {
            break failed;
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let statuses: Vec<_> = worker.connectors().iter().filter_map(|n| worker.status(n).ok()).collect();
    worker.stop_all().await;
    for s in &statuses {
        let records: u64 = s.tasks.iter().map(|t| t.records).sum();
        if args.json {
            println!("{}", serde_json::to_string(s)?);
        } else {
            println!("{}: {records} records", s.name);
        }
    }
    match failure {
        Some(f) => Err(anyhow::anyhow!(f)),
        None => Ok(()),
    }
}

/// Ctrl-C (SIGINT) or SIGTERM, caught from the moment it is made.
pub(crate) struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub(crate) fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    pub(crate) async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Runs a command against `plexus serve`'s REST API.
pub(crate) async fn run_remote(command: ConnectCommand) -> anyhow::Result<()> {
    let (action, args) = match command {
        ConnectCommand::List(remote) => return list(&remote).await,
        ConnectCommand::Status(args) => return status(&args).await,
        ConnectCommand::Pause(args) => (("PUT", "pause", "Paused"), args),
        ConnectCommand::Resume(args) => (("PUT", "resume", "Resumed"), args),
        ConnectCommand::Stop(args) => (("PUT", "stop", "Stopped"), args),
        ConnectCommand::Restart(args) => (("POST", "restart", "Restarted"), args),
        ConnectCommand::Delete(args) => (("DELETE", "", "Deleted"), args),
        ConnectCommand::Run(_) | ConnectCommand::Validate(_) => {
            anyhow::bail!("`plexus connect run` and `validate` work on files, not on `plexus serve`")
        }
    };
    let (method, verb, done) = action;
    let path = if verb.is_empty() {
        format!("/connectors/{}", args.name)
    } else {
        format!("/connectors/{}/{verb}", args.name)
    };
    rest_call(&args.remote.url, method, &path).await?;
    if args.remote.json {
        output::json(&serde_json::json!({"connector": args.name, "done": verb_or_delete(verb)}))
    } else {
        println!("{done} connector {}", args.name);
        Ok(())
    }
}

fn verb_or_delete(verb: &str) -> &str {
    if verb.is_empty() { "delete" } else { verb }
}

/// `plexus connect list`.
async fn list(remote: &RemoteArgs) -> anyhow::Result<()> {
    let listed = rest_call(&remote.url, "GET", "/connectors?expand=status").await?;
    let statuses: Vec<&serde_json::Value> =
        listed.as_object().map(|m| m.values().filter_map(|v| v.get("status")).collect()).unwrap_or_default();
    if remote.json {
        for s in statuses {
            output::json(s)?;
        }
        return Ok(());
    }
    if statuses.is_empty() {
        println!(
            "No connectors yet; create one with `curl -X POST {}/connectors -H 'Content-Type: application/json' -d @config.json`",
            remote.url.trim_end_matches('/')
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            let tasks = s["tasks"].as_array().map_or(&[][..], Vec::as_slice);
            let running = tasks.iter().filter(|t| t["state"] == "RUNNING").count();
            let failed = tasks.iter().filter(|t| t["state"] == "FAILED").count();
            let mut summary = format!("{running}/{} running", tasks.len());
            if failed > 0 {
                summary.push_str(&format!(", {failed} failed"));
            }
            vec![text(&s["name"]), text(&s["type"]), text(&s["connector"]["state"]), summary]
        })
        .collect();
    output::table(&["CONNECTOR", "TYPE", "STATE", "TASKS"], &rows);
    Ok(())
}

/// `plexus connect status NAME`.
async fn status(args: &NamedArgs) -> anyhow::Result<()> {
    let s = rest_call(&args.remote.url, "GET", &format!("/connectors/{}/status", args.name)).await?;
    if args.remote.json {
        return output::json(&s);
    }
    println!(
        "Connector {} ({}): {} on {}",
        text(&s["name"]),
        text(&s["type"]),
        text(&s["connector"]["state"]),
        text(&s["connector"]["worker_id"])
    );
    let tasks = s["tasks"].as_array().map_or(&[][..], Vec::as_slice);
    if tasks.is_empty() {
        println!("No tasks (a stopped connector runs none; `plexus connect resume {}` starts them)", args.name);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| vec![t["id"].to_string(), text(&t["state"]), text(&t["worker_id"]), text(&t["trace"])])
        .collect();
    output::table(&["TASK", "STATE", "WORKER", "TRACE"], &rows);
    Ok(())
}

/// A JSON string as text (`""` for anything else).
fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// One request to the Connect REST API at `url`: the JSON answer (`null`
/// for none), or its `message` as the error.
async fn rest_call(url: &str, method: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let base = url.trim_end_matches('/');
    let uri: hyper::Uri =
        format!("{base}{path}").parse().map_err(|e| anyhow::anyhow!("--url {url} is not an http:// address ({e})"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("--url {url} is not an http:// address (plexus serve speaks plain HTTP)");
    }
    let request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<bytes::Bytes>::new())?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => anyhow::bail!("no Plexus Connect at {base}: is `plexus serve` running?"),
        Err(e) => anyhow::bail!("the request to Plexus Connect at {base} failed: {e}"),
    };
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let json: serde_json::Value =
        if body.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&body).unwrap_or_default() };
    if !status.is_success() {
        let message = json["message"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
        anyhow::bail!("{message}");
    }
    Ok(json)
}
