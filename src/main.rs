//! The `plexus` command: topics, producing, consuming, groups and
//! connectors on the embedded log in a data directory, and `plexus serve`,
//! the long-running process with Kafka Connect's REST API.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // A command that ends with an error prints it once, as its last line:
    // failures it reports itself (target `plexus::failure`) are not logged
    // too, unless RUST_LOG asks. `plexus serve` logs them: its status API
    // is not where operators look first. Colour only on a terminal.
    let default_filter = if args.is_service() { "warn" } else { "warn,plexus::failure=off" };
    let stderr = std::io::stderr();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_ansi(stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
