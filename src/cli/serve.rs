//! `plexus serve`: the long-running Plexus process. Today it runs
//! connectors on the embedded log behind Kafka Connect's REST API; its
//! HTTP router is composed of parts ([`routes`]) so later listeners and
//! endpoints join the same process.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use plexus::Log;
use plexus_connectors::Worker;

use super::connect::Shutdown;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Connector config files to start with (.json or .toml, Kafka
    /// Connect's shape); more are created through the REST API.
    #[arg(value_name = "CONFIG")]
    configs: Vec<PathBuf>,
    /// Where the HTTP API listens (Kafka Connect's REST API under
    /// /connectors and /connector-plugins); port 0 picks a free one.
    #[arg(long, env = "PLEXUS_HTTP_LISTEN", default_value = "127.0.0.1:8083", value_name = "HOST:PORT")]
    http_listen: String,
}

/// Every HTTP route of `plexus serve`: for now Kafka Connect's REST API on
/// `worker`, named `worker_id` in statuses.
pub(crate) fn routes(worker: &Worker, worker_id: &str) -> axum::Router {
    axum::Router::new().merge(plexus_connectors::rest::router(worker.clone(), worker_id))
}

/// Serves until SIGINT or SIGTERM, then stops every connector (each task
/// commits what it did).
pub(crate) async fn run(log: &Log, args: ServeArgs) -> anyhow::Result<()> {
    let configs = super::connect::read_configs(&args.configs).await?;
    // Signals are caught from here on, before anything starts.
    let mut stop = Shutdown::new()?;
    let listener = tokio::net::TcpListener::bind(&args.http_listen)
        .await
        .with_context(|| format!("cannot listen on --http-listen {}", args.http_listen))?;
    let address =
        listener.local_addr().with_context(|| format!("cannot listen on --http-listen {}", args.http_listen))?;
    let worker = super::connect::start_all(log, configs).await?;
    let app = routes(&worker, &address.to_string());
    eprintln!("listening on http://{address}");
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.wait().await }).await;
    worker.stop_all().await;
    served.with_context(|| format!("serving HTTP on {address} failed"))
}
