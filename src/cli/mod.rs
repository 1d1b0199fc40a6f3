//! Command-line parsing (clap) and dispatch.

mod connect;
mod consume;
mod demo;
mod group;
mod output;
mod produce;
mod serve;
mod topic;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use plexus::{Log, LogConfig};

/// Plexus: a durable, partitioned event log with Kafka's concepts, on your machine.
///
/// Every command works on the data directory given by --data-dir (or
/// PLEXUS_DATA_DIR), created on first use. One process at a time may open it.
#[derive(Debug, Parser)]
#[command(name = "plexus", version, about, long_about, propagate_version = true)]
pub(crate) struct Cli {
    /// The data directory holding topics and consumer offsets (default
    /// ./plexus-data; `demo` uses a temporary one unless given).
    #[arg(long, global = true, env = "PLEXUS_DATA_DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Write records to a topic, one per input line.
    Produce(produce::ProduceArgs),
    /// Read records from a topic.
    Consume(consume::ConsumeArgs),
    /// List, describe and reset consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Run connectors from config files (Kafka Connect's shape): files and
    /// PostgreSQL in and out of topics; list, pause, resume, restart and
    /// delete the connectors of a running `plexus serve`.
    #[command(subcommand)]
    Connect(connect::ConnectCommand),
    /// Run Plexus as a service: connectors on the data directory behind
    /// Kafka Connect's REST API (default http://127.0.0.1:8083), until
    /// Ctrl-C or SIGTERM. Create connectors with `curl -X POST
    /// localhost:8083/connectors -H 'Content-Type: application/json' -d
    /// @config.json`; manage them with `plexus connect list|status|...`.
    Serve(serve::ServeArgs),
    /// The main job in one command: a payments file through a FileSource
    /// into a topic, a streams topology keeping totals per payer and per
    /// minute (RocksDB), a FileSink writing the totals; prints the top payers
    /// (an interactive query), the time taken and the rate.
    Demo(demo::DemoArgs),
}

impl Cli {
    /// Whether the command runs as a long-lived service (`plexus serve`).
    pub(crate) fn is_service(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

/// Opens the data directory.
pub(crate) fn open_log(dir: &std::path::Path) -> anyhow::Result<Log> {
    Ok(Log::open(LogConfig::new(dir))?)
}

/// Runs a parsed command.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args, cli.data_dir.as_deref()).await,
        // These talk to a running `plexus serve`, which holds the data directory.
        Command::Connect(c) if c.is_remote() => connect::run_remote(c).await,
        command => {
            let dir = cli.data_dir.unwrap_or_else(|| PathBuf::from("./plexus-data"));
            let log = open_log(&dir)?;
            let result = match command {
                Command::Topic(c) => topic::run(&log, c).await,
                Command::Produce(a) => produce::run(&log, a).await,
                Command::Consume(a) => consume::run(&log, a).await,
                Command::Group(c) => group::run(&log, c).await,
                Command::Connect(c) => connect::run(&log, c).await,
                Command::Serve(a) => serve::run(&log, a).await,
                Command::Demo(_) => unreachable!("handled above"),
            };
            let closed = log.close();
            result?;
            Ok(closed?)
        }
    }
}
