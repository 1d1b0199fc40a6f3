//! The worker: runs connectors' tasks against the log, through the core's
//! client traits (so the same worker runs on the embedded log and, later,
//! on a Kafka-protocol cluster).
//!
//! Each task runs on its own tokio task. A source task's batches go to the
//! log in one transaction each, with their source offsets
//! ([`crate::offsets`]); a sink task reads with the consumer group
//! `connect-<name>` and commits after its `flush`. Failed records follow
//! `errors.tolerance` ([`errors`]).

mod errors;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::config::{CommonConfig, ConnectorConfig};
use crate::connector::{Connector, lookup};
use crate::error::{Error, Result};
use crate::transforms::{TransformStage, build_transforms};

pub use errors::DEAD_LETTER_HEADERS;

/// A connector's or task's state, as Kafka Connect's status API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Running.
    Running,
    /// Paused by a request; resumes where it stopped.
    Paused,
    /// Failed: the trace says why.
    Failed,
    /// Stopped (finished, or stopped by a request).
    Stopped,
}

/// What a running task counts, for status and progress bars.
#[derive(Debug, Default)]
pub struct TaskMetrics {
    /// Records written to the log (sources) or given to the task (sinks).
    pub records: AtomicU64,
    /// Records skipped by `errors.tolerance=all`.
    pub skipped: AtomicU64,
    /// Batches committed.
    pub commits: AtomicU64,
}

/// A task's status.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    /// The task's number.
    pub id: usize,
    /// Its state.
    pub state: State,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Records it moved.
    pub records: u64,
}

/// A connector's status (Kafka Connect's `GET /connectors/{name}/status`).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    /// The connector.
    pub name: String,
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Running while any task runs; failed if one failed.
    pub state: State,
    /// Its tasks.
    pub tasks: Vec<TaskStatus>,
}

/// What one task shares with the worker.
#[derive(Debug)]
pub(crate) struct TaskShared {
    pub(crate) metrics: TaskMetrics,
    pub(crate) stop: AtomicBool,
    pub(crate) paused: AtomicBool,
    pub(crate) state: Mutex<(State, Option<String>)>,
}

impl TaskShared {
    fn new() -> Self {
        Self {
            metrics: TaskMetrics::default(),
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            state: Mutex::new((State::Running, None)),
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn set(&self, state: State, trace: Option<String>) {
        *self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (state, trace);
    }
}

/// Everything a task loop needs.
pub(crate) struct TaskContext {
    pub(crate) connector: String,
    pub(crate) id: usize,
    pub(crate) clients: Arc<dyn plexus_core::client::Clients>,
    pub(crate) common: CommonConfig,
    pub(crate) transforms: Arc<Vec<TransformStage>>,
    pub(crate) shared: Arc<TaskShared>,
}

struct Running {
    config: ConnectorConfig,
    kind: &'static str,
    tasks: Vec<(Arc<TaskShared>, JoinHandle<()>)>,
}

/// Runs connectors (see the module docs).
#[derive(Clone)]
pub struct Worker {
    clients: Arc<dyn plexus_core::client::Clients>,
    running: Arc<Mutex<BTreeMap<String, Running>>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

/// Checks a config completely — class, shared keys, transforms, the
/// class's own keys, and what the connector can check of its outside
/// system — without starting anything.
pub async fn validate(config: &ConnectorConfig) -> Result<(Connector, CommonConfig, Vec<TransformStage>)> {
    let class = lookup(config)?;
    let common = CommonConfig::parse(config)?;
    let transforms =
        build_transforms(&config.config).map_err(|(key, reason)| Error::config(&config.name, &key, reason))?;
    let connector = class.configure(config)?;
    match &connector {
        Connector::Source(s) => s.validate().await?,
        Connector::Sink(s) => {
            if common.topics.is_empty() && common.topics_regex.is_none() {
                return Err(Error::config(
                    &config.name,
                    "topics",
                    "a sink needs topics (a comma-separated list) or topics.regex",
                ));
            }
            s.validate().await?;
        }
    }
    Ok((connector, common, transforms))
}

impl Worker {
    /// A worker on these clients.
    pub fn new(clients: Arc<dyn plexus_core::client::Clients>) -> Self {
        Self { clients, running: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Validates `config` and starts its tasks.
    pub async fn start(&self, config: ConnectorConfig) -> Result<()> {
        if self.running().contains_key(&config.name) {
            return Err(Error::config(
                &config.name,
                "name",
                "a connector of that name is running; delete it first or pick another name",
            ));
        }
        let (connector, common, transforms) = validate(&config).await?;
        crate::offsets::ensure_topic(self.clients.admin().as_ref()).await?;
        let transforms = Arc::new(transforms);
        let mut tasks = Vec::new();
        let kind = match &connector {
            Connector::Source(_) => "source",
            Connector::Sink(_) => "sink",
        };
        let count = match &connector {
            Connector::Source(s) => s.task_count(common.tasks_max),
            Connector::Sink(s) => s.task_count(common.tasks_max),
        }
        .clamp(1, common.tasks_max);
        for id in 0..count {
            let shared = Arc::new(TaskShared::new());
            let ctx = TaskContext {
                connector: config.name.clone(),
                id,
                clients: Arc::clone(&self.clients),
                common: common.clone(),
                transforms: Arc::clone(&transforms),
                shared: Arc::clone(&shared),
            };
            let handle = match &connector {
                Connector::Source(s) => {
                    let task = s.task(id, count)?;
                    tokio::spawn(run_task(Arc::clone(&shared), source::run(ctx, task)))
                }
                Connector::Sink(s) => {
                    let task = s.task(id, count)?;
                    tokio::spawn(run_task(Arc::clone(&shared), sink::run(ctx, task)))
                }
            };
            tasks.push((shared, handle));
        }
        tracing::info!(connector = %config.name, kind, tasks = count, "connector started");
        self.running().insert(config.name.clone(), Running { config, kind, tasks });
        Ok(())
    }

    /// The names of the connectors it runs.
    pub fn connectors(&self) -> Vec<String> {
        self.running().keys().cloned().collect()
    }

    /// A connector's config.
    pub fn config(&self, name: &str) -> Result<ConnectorConfig> {
        self.running().get(name).map(|r| r.config.clone()).ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// A connector's status.
    pub fn status(&self, name: &str) -> Result<ConnectorStatus> {
        let running = self.running();
        let r = running.get(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
        let tasks: Vec<TaskStatus> = r
            .tasks
            .iter()
            .enumerate()
            .map(|(id, (shared, _))| {
                let (state, trace) = shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                TaskStatus { id, state, trace, records: shared.metrics.records.load(Ordering::Relaxed) }
            })
            .collect();
        let state = if tasks.iter().any(|t| t.state == State::Failed) {
            State::Failed
        } else if tasks.iter().all(|t| t.state == State::Paused) {
            State::Paused
        } else if tasks.iter().any(|t| t.state == State::Running) {
            State::Running
        } else {
            State::Stopped
        };
        Ok(ConnectorStatus { name: name.to_owned(), kind: r.kind, state, tasks })
    }

    /// Records a connector's tasks moved so far.
    pub fn records(&self, name: &str) -> u64 {
        self.running()
            .get(name)
            .map_or(0, |r| r.tasks.iter().map(|(s, _)| s.metrics.records.load(Ordering::Relaxed)).sum())
    }

    /// Pauses (`true`) or resumes a connector's tasks.
    pub fn pause(&self, name: &str, paused: bool) -> Result<()> {
        let running = self.running();
        let r = running.get(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
        for (shared, _) in &r.tasks {
            shared.paused.store(paused, Ordering::Release);
            let mut state = shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.0 != State::Failed {
                state.0 = if paused { State::Paused } else { State::Running };
            }
        }
        Ok(())
    }

    /// Stops a connector: each task commits what it did and stops.
    pub async fn stop(&self, name: &str) -> Result<ConnectorConfig> {
        let r = self.running().remove(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
        for (shared, _) in &r.tasks {
            shared.stop.store(true, Ordering::Release);
        }
        for (_, handle) in r.tasks {
            let _ = handle.await;
        }
        tracing::info!(connector = %name, "connector stopped");
        Ok(r.config)
    }

    /// Stops every connector.
    pub async fn stop_all(&self) {
        for name in self.connectors() {
            let _ = self.stop(&name).await;
        }
    }
}

/// Runs a task loop, recording how it ended.
async fn run_task(shared: Arc<TaskShared>, task: impl std::future::Future<Output = Result<()>>) {
    match task.await {
        Ok(()) => shared.set(State::Stopped, None),
        Err(e) => {
            tracing::error!(error = %e, "connector task failed");
            shared.set(State::Failed, Some(e.to_string()));
        }
    }
}
