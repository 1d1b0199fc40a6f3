//! `plexus connect`: run connectors from config files.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use plexus::Log;
use plexus::client::EmbeddedClients;
use plexus_connectors::{ConnectorConfig, State, Worker};

/// Run and inspect connectors.
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
    }
}

async fn run_connectors(log: &Log, args: RunArgs) -> anyhow::Result<()> {
    let mut configs = Vec::new();
    for path in &args.configs {
        let config = ConnectorConfig::from_file(path)?;
        plexus_connectors::worker::validate(&config).await?;
        configs.push(config);
    }
    // Signals are caught from here on, before anything starts.
    let mut stop = Shutdown::new()?;
    let worker = Worker::new(Arc::new(EmbeddedClients::new(log.clone())));
    for config in configs {
        let name = config.name.clone();
        if let Err(e) = worker.start(config).await {
            worker.stop_all().await;
            return Err(e.into());
        }
        eprintln!("started connector {name}");
    }
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
struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
