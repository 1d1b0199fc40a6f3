//! The worker: runs connectors' tasks against the log, through the core's
//! client traits (so the same worker runs on the embedded log and, later,
//! on a Kafka-protocol cluster).
//!
//! Each task runs on its own tokio task. A source task's batches go to the
//! log in one transaction each, with their source offsets
//! ([`crate::offsets`]); a sink task reads with the consumer group
//! `connect-<name>` and commits after its `flush`. Failed records follow
//! `errors.tolerance` ([`errors`]).
//!
//! A connector the worker has is started, paused or stopped
//! ([`TargetState`], as Kafka Connect's REST API sets it): stopped keeps
//! its config but runs no task, and only then may its offsets be altered
//! or reset. Changes to connectors are serialized, so two requests never
//! interleave on one connector.

mod errors;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures_util::FutureExt as _;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::config::{CommonConfig, ConnectorConfig};
use crate::connector::{Connector, lookup};
use crate::error::{Error, Result};
use crate::offsets::ConnectorOffsets;
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
    fn new(paused: bool) -> Self {
        Self {
            metrics: TaskMetrics::default(),
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(paused),
            state: Mutex::new((if paused { State::Paused } else { State::Running }, None)),
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

/// What a connector is asked to be, as Kafka Connect's `TargetState`
/// names it: `PUT /connectors/{name}/pause`, `…/resume` and `…/stop` set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetState {
    /// Its tasks run.
    Started,
    /// Its tasks are there but idle; `resume` continues where they paused.
    Paused,
    /// No task runs; the config is kept, and so are the offsets, which may
    /// be altered or reset only in this state (Kafka 3.5's STOPPED).
    Stopped,
}

/// A task's id, as Kafka Connect's `GET /connectors/{name}/tasks` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskId {
    /// The connector.
    pub connector: String,
    /// The task's number.
    pub task: usize,
}

/// A task and its config (`GET /connectors/{name}/tasks`).
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    /// Which task.
    pub id: TaskId,
    /// Its config: the connector's (a Plexus task splits its work by its
    /// number, not by keys of its own).
    pub config: BTreeMap<String, String>,
}

/// One connector the worker knows: its config, what it is asked to be,
/// and its running tasks (none while stopped).
struct Managed {
    config: ConnectorConfig,
    kind: &'static str,
    target: TargetState,
    tasks: Vec<(Arc<TaskShared>, JoinHandle<()>)>,
}

/// Runs connectors (see the module docs).
#[derive(Clone)]
pub struct Worker {
    clients: Arc<dyn plexus_core::client::Clients>,
    connectors: Arc<Mutex<BTreeMap<String, Managed>>>,
    /// Held by every change of a connector (create, reconfigure, pause,
    /// stop, restart, delete, offsets), so that two requests never
    /// interleave their awaits on one connector.
    changes: Arc<tokio::sync::Mutex<()>>,
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
    let common = CommonConfig::parse_with(config, class.schemas_by_default())?;
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

/// Why offsets cannot change now (Kafka's words, with the fix).
pub(crate) fn not_stopped(name: &str) -> String {
    format!(
        "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the \
         specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint"
    )
}

impl Worker {
    /// A worker on these clients.
    pub fn new(clients: Arc<dyn plexus_core::client::Clients>) -> Self {
        Self {
            clients,
            connectors: Arc::new(Mutex::new(BTreeMap::new())),
            changes: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn managed(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Managed>> {
        self.connectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Validates `config` and starts its tasks. A connector of that name
    /// must not exist (running, paused or stopped).
    pub async fn start(&self, config: ConnectorConfig) -> Result<()> {
        self.create(config, TargetState::Started).await
    }

    /// Validates `config` and adds the connector in the `target` state
    /// (Kafka's `initial_state`): started, paused (tasks made but idle) or
    /// stopped (only the config kept). A connector of that name must not
    /// exist.
    pub async fn create(&self, config: ConnectorConfig, target: TargetState) -> Result<()> {
        let _change = self.changes.lock().await;
        if self.managed().contains_key(&config.name) {
            return Err(Error::config(
                &config.name,
                "name",
                "a connector of that name exists; delete it first or pick another name",
            ));
        }
        let validated = validate(&config).await?;
        self.launch(config, validated, target).await
    }

    /// Creates a connector or reconfigures the one of that name (Kafka's
    /// `PUT /connectors/{name}/config`): the new config is validated
    /// first — a bad one leaves the old running — then the old tasks stop
    /// and new ones start in the state the connector was in. Returns
    /// whether it was created.
    pub async fn put_config(&self, config: ConnectorConfig) -> Result<bool> {
        let _change = self.changes.lock().await;
        let validated = validate(&config).await?;
        let previous = self.managed().remove(&config.name);
        let (created, target) = match previous {
            Some(old) => {
                stop_tasks(&config.name, old.tasks).await;
                (false, old.target)
            }
            None => (true, TargetState::Started),
        };
        self.launch(config, validated, target).await?;
        Ok(created)
    }

    /// Registers a validated connector and starts its tasks (none when
    /// `target` is stopped; idle when paused).
    async fn launch(
        &self,
        config: ConnectorConfig,
        (connector, common, transforms): (Connector, CommonConfig, Vec<TransformStage>),
        target: TargetState,
    ) -> Result<()> {
        crate::offsets::ensure_topic(self.clients.admin().as_ref()).await?;
        let kind = match &connector {
            Connector::Source(_) => "source",
            Connector::Sink(_) => "sink",
        };
        let mut tasks = Vec::new();
        if target != TargetState::Stopped {
            let transforms = Arc::new(transforms);
            let count = match &connector {
                Connector::Source(s) => s.task_count(common.tasks_max),
                Connector::Sink(s) => s.task_count(common.tasks_max),
            }
            .clamp(1, common.tasks_max);
            for id in 0..count {
                let shared = Arc::new(TaskShared::new(target == TargetState::Paused));
                let ctx = TaskContext {
                    connector: config.name.clone(),
                    id,
                    clients: Arc::clone(&self.clients),
                    common: common.clone(),
                    transforms: Arc::clone(&transforms),
                    shared: Arc::clone(&shared),
                };
                let made = match &connector {
                    Connector::Source(s) => s.task(id, count).map(|task| {
                        tokio::spawn(run_task(config.name.clone(), id, Arc::clone(&shared), source::run(ctx, task)))
                    }),
                    Connector::Sink(s) => s.task(id, count).map(|task| {
                        tokio::spawn(run_task(config.name.clone(), id, Arc::clone(&shared), sink::run(ctx, task)))
                    }),
                };
                match made {
                    Ok(handle) => tasks.push((shared, handle)),
                    Err(e) => {
                        // The tasks started so far stop with the connector that failed to start.
                        stop_tasks(&config.name, tasks).await;
                        return Err(e);
                    }
                }
            }
        }
        tracing::info!(connector = %config.name, kind, tasks = tasks.len(), ?target, "connector started");
        self.managed().insert(config.name.clone(), Managed { config, kind, target, tasks });
        Ok(())
    }

    /// The names of the connectors it has (stopped ones too).
    pub fn connectors(&self) -> Vec<String> {
        self.managed().keys().cloned().collect()
    }

    /// A connector's config.
    pub fn config(&self, name: &str) -> Result<ConnectorConfig> {
        self.managed().get(name).map(|r| r.config.clone()).ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// What a connector is asked to be.
    pub fn target_state(&self, name: &str) -> Result<TargetState> {
        self.managed().get(name).map(|r| r.target).ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// A connector's status: stopped, with no tasks, when it is stopped.
    pub fn status(&self, name: &str) -> Result<ConnectorStatus> {
        let managed = self.managed();
        let r = managed.get(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
        let tasks: Vec<TaskStatus> = r
            .tasks
            .iter()
            .enumerate()
            .map(|(id, (shared, _))| {
                let (state, trace) = shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                TaskStatus { id, state, trace, records: shared.metrics.records.load(Ordering::Relaxed) }
            })
            .collect();
        let state = if r.target == TargetState::Stopped {
            State::Stopped
        } else if tasks.iter().any(|t| t.state == State::Failed) {
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

    /// A connector's tasks and their configs (none while it is stopped).
    pub fn tasks(&self, name: &str) -> Result<Vec<TaskInfo>> {
        let managed = self.managed();
        let r = managed.get(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
        Ok((0..r.tasks.len())
            .map(|task| TaskInfo { id: TaskId { connector: name.to_owned(), task }, config: r.config.config.clone() })
            .collect())
    }

    /// Records a connector's tasks moved so far (since they last started).
    pub fn records(&self, name: &str) -> u64 {
        self.managed()
            .get(name)
            .map_or(0, |r| r.tasks.iter().map(|(s, _)| s.metrics.records.load(Ordering::Relaxed)).sum())
    }

    /// Pauses (`true`) or resumes a connector's running tasks. A stopped
    /// connector has none: [`Worker::set_target_state`] starts it.
    pub fn pause(&self, name: &str, paused: bool) -> Result<()> {
        let mut managed = self.managed();
        let r = managed.get_mut(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
        if r.target == TargetState::Stopped {
            return Err(Error::connector(name, "is stopped; resume it to start its tasks"));
        }
        r.target = if paused { TargetState::Paused } else { TargetState::Started };
        pause_tasks(&r.tasks, paused);
        Ok(())
    }

    /// Moves a connector to `target` (Kafka's pause, resume and stop): a
    /// stopped connector's tasks start again from its kept config (checked
    /// again first), a stopping one's tasks commit what they did and end.
    pub async fn set_target_state(&self, name: &str, target: TargetState) -> Result<()> {
        let _change = self.changes.lock().await;
        let (current, config) = {
            let managed = self.managed();
            let r = managed.get(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
            (r.target, r.config.clone())
        };
        match (current, target) {
            (current, target) if current == target => Ok(()),
            (TargetState::Stopped, target) => {
                let validated = validate(&config).await?;
                self.managed().remove(name);
                self.launch(config, validated, target).await
            }
            (_, TargetState::Stopped) => {
                let tasks = {
                    let mut managed = self.managed();
                    let r = managed.get_mut(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
                    r.target = TargetState::Stopped;
                    std::mem::take(&mut r.tasks)
                };
                stop_tasks(name, tasks).await;
                Ok(())
            }
            (_, target) => {
                let mut managed = self.managed();
                let r = managed.get_mut(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
                r.target = target;
                pause_tasks(&r.tasks, target == TargetState::Paused);
                Ok(())
            }
        }
    }

    /// Restarts a connector's tasks with its config (checked again first),
    /// in the state it is in; with `only_failed`, only if a task failed.
    /// A stopped connector has nothing to restart. Returns whether tasks
    /// were restarted.
    pub async fn restart(&self, name: &str, only_failed: bool) -> Result<bool> {
        let _change = self.changes.lock().await;
        let (target, config) = {
            let managed = self.managed();
            let r = managed.get(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
            (r.target, r.config.clone())
        };
        let failed = self.status(name)?.state == State::Failed;
        if target == TargetState::Stopped || (only_failed && !failed) {
            return Ok(false);
        }
        let validated = validate(&config).await?;
        let old = self.managed().remove(name);
        if let Some(old) = old {
            stop_tasks(name, old.tasks).await;
        }
        self.launch(config, validated, target).await?;
        Ok(true)
    }

    /// Stops a connector and forgets it (Kafka's `DELETE
    /// /connectors/{name}`): each task commits what it did and stops. Its
    /// offsets stay in the log, so a connector of the same name resumes
    /// from them.
    pub async fn stop(&self, name: &str) -> Result<ConnectorConfig> {
        let _change = self.changes.lock().await;
        let r = self.managed().remove(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
        stop_tasks(name, r.tasks).await;
        Ok(r.config)
    }

    /// Stops and forgets every connector.
    pub async fn stop_all(&self) {
        for name in self.connectors() {
            let _ = self.stop(&name).await;
        }
    }

    /// A connector's committed offsets: a source's from `connect-offsets`,
    /// a sink's from its consumer group `connect-<name>`.
    pub async fn offsets(&self, name: &str) -> Result<ConnectorOffsets> {
        let kind = self.status(name)?.kind;
        if kind == "source" {
            crate::offsets::source_offsets(self.clients.as_ref(), name).await
        } else {
            crate::offsets::sink_offsets(self.clients.as_ref(), name).await
        }
    }

    /// Alters a stopped connector's offsets (Kafka's `PATCH
    /// /connectors/{name}/offsets`); a `null` offset forgets a source
    /// partition, or puts a sink partition back at its log start.
    pub async fn alter_offsets(&self, name: &str, offsets: ConnectorOffsets) -> Result<()> {
        let _change = self.changes.lock().await;
        let kind = self.stopped_kind(name)?;
        if kind == "source" {
            crate::offsets::alter_source_offsets(self.clients.as_ref(), name, &offsets).await
        } else {
            crate::offsets::alter_sink_offsets(self.clients.as_ref(), name, &offsets).await
        }
    }

    /// Resets a stopped connector's offsets (Kafka's `DELETE
    /// /connectors/{name}/offsets`): a source starts over, a sink reads its
    /// topics from their log start.
    pub async fn reset_offsets(&self, name: &str) -> Result<()> {
        let _change = self.changes.lock().await;
        let kind = self.stopped_kind(name)?;
        let mut current = if kind == "source" {
            crate::offsets::source_offsets(self.clients.as_ref(), name).await?
        } else {
            crate::offsets::sink_offsets(self.clients.as_ref(), name).await?
        };
        for o in &mut current.offsets {
            o.offset = serde_json::Value::Null;
        }
        if kind == "source" {
            crate::offsets::alter_source_offsets(self.clients.as_ref(), name, &current).await
        } else {
            crate::offsets::alter_sink_offsets(self.clients.as_ref(), name, &current).await
        }
    }

    /// A connector's kind, if it is stopped; otherwise the error saying to stop it.
    fn stopped_kind(&self, name: &str) -> Result<&'static str> {
        let managed = self.managed();
        let r = managed.get(name).ok_or_else(|| Error::NotFound(name.to_owned()))?;
        if r.target != TargetState::Stopped {
            return Err(Error::connector(name, not_stopped(name)));
        }
        Ok(r.kind)
    }
}

/// Sets or clears the pause flag of tasks (a failed or finished task keeps its state).
fn pause_tasks(tasks: &[(Arc<TaskShared>, JoinHandle<()>)], paused: bool) {
    for (shared, _) in tasks {
        shared.paused.store(paused, Ordering::Release);
        let mut state = shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if matches!(state.0, State::Running | State::Paused) {
            state.0 = if paused { State::Paused } else { State::Running };
        }
    }
}

/// Asks tasks to stop and waits until each has committed and ended.
async fn stop_tasks(name: &str, tasks: Vec<(Arc<TaskShared>, JoinHandle<()>)>) {
    for (shared, _) in &tasks {
        shared.stop.store(true, Ordering::Release);
    }
    for (_, handle) in tasks {
        let _ = handle.await;
    }
    tracing::info!(connector = %name, "connector tasks stopped");
}

/// Runs a task loop, recording how it ended. A panic in a task (a bug,
/// never bad input — that is an error) fails the task like an error does:
/// its message goes to the status and the log, so that it is never
/// swallowed and `plexus connect run` ends with it.
async fn run_task(connector: String, id: usize, shared: Arc<TaskShared>, task: impl Future<Output = Result<()>>) {
    let outcome = AssertUnwindSafe(task).catch_unwind().await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Some(format!("task {id} panicked: {message} (a bug in Plexus: please report it)"))
        }
    };
    match failure {
        None => shared.set(State::Stopped, None),
        Some(trace) => {
            // Also in the status (and so in what `plexus connect run`
            // prints, with the `plexus::failure` target off).
            tracing::error!(target: "plexus::failure", %connector, task = id, error = %trace, "connector task failed");
            shared.set(State::Failed, Some(trace));
        }
    }
}
