//! Kafka Connect's REST API on a [`Worker`]: the same paths, JSON shapes
//! and status codes, so that Kafka Connect's tools and scripts (`curl`,
//! UIs, `kcctl`) drive Plexus Connect unchanged.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | `{"version", "commit", "kafka_cluster_id"}` |
//! | `GET /connectors` | names; `?expand=status` / `?expand=info` (both may be given): `{name: {"status", "info"}}` |
//! | `POST /connectors` | `{"name", "config", "initial_state"?}` → 201 with the connector's info; 409 if it exists; 400 for a bad config |
//! | `GET /connectors/{name}` | `{"name", "config", "tasks": [{"connector", "task"}], "type"}` |
//! | `GET`, `PUT /connectors/{name}/config` | the config; PUT creates (201) or reconfigures (200): old tasks stop, new ones start |
//! | `GET /connectors/{name}/status` | `{"name", "connector": {"state", "worker_id"}, "tasks": [{"id", "state", "worker_id", "trace"?}], "type"}` |
//! | `GET /connectors/{name}/tasks`, `…/tasks/{task}/status` | the tasks and their configs; one task's status |
//! | `POST /connectors/{name}/restart` | 204; with `?includeTasks=true` or `?onlyFailed=true`, 202 and the status (`onlyFailed`: only if a task failed) |
//! | `PUT /connectors/{name}/pause`, `…/resume` | 202 |
//! | `PUT /connectors/{name}/stop` | 204: tasks stopped, config kept (STOPPED); `resume` starts it again |
//! | `DELETE /connectors/{name}` | 204 |
//! | `GET`, `PATCH`, `DELETE /connectors/{name}/offsets` | `{"offsets": [{"partition", "offset"}]}`; altering and resetting only while STOPPED |
//! | `GET /connector-plugins` | `[{"class", "type", "version"}]` |
//! | `PUT /connector-plugins/{class}/config/validate` | Kafka's ConfigInfos: one entry per key, the error on the key it names |
//!
//! Errors are `{"error_code", "message"}` with the status as the code:
//! 404 `Connector x not found`, 400 for a bad config or request, 409 for a
//! name taken, 500 for a failure of the log. A connector's state in its
//! status is what it was asked to be (RUNNING, PAUSED, STOPPED), as in
//! Kafka; each task's state says whether it runs or failed, and why.
//!
//! [`router`] returns an `axum::Router` to serve, or to merge with other
//! routes in one server (`plexus serve`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::config::is_common_key;
use crate::error::Error;
use crate::offsets::ConnectorOffsets;
use crate::worker::{ConnectorStatus, State as TaskState, TargetState, not_stopped, validate};
use crate::{ConnectorConfig, Worker};

/// What the handlers share.
#[derive(Debug)]
struct Api {
    worker: Worker,
    /// How this worker is named in statuses (Kafka: its REST `host:port`).
    worker_id: String,
}

type Shared = State<Arc<Api>>;

/// The Connect REST API on `worker`; `worker_id` names it in statuses
/// (Kafka Connect uses the REST listener's `host:port`).
pub fn router(worker: Worker, worker_id: impl Into<String>) -> Router {
    let api = Arc::new(Api { worker, worker_id: worker_id.into() });
    Router::new()
        .route("/", get(root))
        .route("/connectors", get(list).post(create))
        .route("/connectors/{name}", get(info).delete(delete))
        .route("/connectors/{name}/config", get(config).put(put_config))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route("/connectors/{name}/restart", axum::routing::post(restart))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/offsets", get(offsets).patch(alter_offsets).delete(reset_offsets))
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{class}/config/validate", put(validate_config))
        .fallback(|| async { RestError::new(StatusCode::NOT_FOUND, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            RestError::new(StatusCode::METHOD_NOT_ALLOWED, "HTTP 405 Method Not Allowed")
        })
        .with_state(api)
}

/// An error answer: `{"error_code", "message"}` with the status as code.
#[derive(Debug)]
struct RestError {
    status: StatusCode,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.status.as_u16(), "message": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<Error> for RestError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(name) => Self::new(StatusCode::NOT_FOUND, format!("Connector {name} not found")),
            e @ (Error::Config { .. } | Error::ConfigFile { .. } | Error::Connector { .. }) => {
                Self::bad_request(e.to_string())
            }
            e => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

type Reply = Result<Response, RestError>;

fn ok<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    Ok((status, axum::Json(body)).into_response())
}

/// Parses a JSON request body, or says what is wrong with it.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, RestError> {
    serde_json::from_slice(bytes).map_err(|e| RestError::bad_request(format!("the request body is not {what}: {e}")))
}

/// The query's `key=value` pairs (values as given; none here needs decoding).
fn query(raw: Option<&str>) -> Vec<(&str, &str)> {
    raw.unwrap_or("").split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect()
}

/// A config map as Kafka sends it (values may be numbers or booleans too),
/// with `name` in it as Kafka keeps it.
fn connector_config(name: &str, map: Json) -> Result<ConnectorConfig, RestError> {
    if !map.is_object() {
        return Err(RestError::bad_request("the connector config must be a JSON object of keys and values"));
    }
    let mut config: ConnectorConfig = serde_json::from_value(json!({"name": name, "config": map}))
        .map_err(|e| RestError::bad_request(format!("the connector config must map keys to strings: {e}")))?;
    match config.config.get("name") {
        Some(given) if given != name => {
            return Err(RestError::bad_request(format!(
                "Connector name configuration ({given}) doesn't match connector name in the URL ({name})"
            )));
        }
        _ => {
            config.config.insert("name".to_owned(), name.to_owned());
        }
    }
    Ok(config)
}

/// `GET /`: the version.
async fn root() -> Reply {
    ok(
        StatusCode::OK,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": option_env!("PLEXUS_COMMIT").unwrap_or("unknown"),
            // The embedded log has no cluster id of its own.
            "kafka_cluster_id": "plexus",
        }),
    )
}

/// Kafka's `ConnectorInfo`.
fn info_of(api: &Api, name: &str) -> Result<Json, RestError> {
    let config = api.worker.config(name)?;
    let status = api.worker.status(name)?;
    let tasks: Vec<Json> = status.tasks.iter().map(|t| json!({"connector": name, "task": t.id})).collect();
    Ok(json!({"name": name, "config": config.config, "tasks": tasks, "type": status.kind}))
}

fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Running => "RUNNING",
        TaskState::Paused => "PAUSED",
        TaskState::Failed => "FAILED",
        TaskState::Stopped => "STOPPED",
    }
}

fn task_json(api: &Api, task: &crate::worker::TaskStatus) -> Json {
    let mut t = json!({"id": task.id, "state": state_name(task.state), "worker_id": api.worker_id});
    if let (Some(trace), Some(map)) = (&task.trace, t.as_object_mut()) {
        map.insert("trace".into(), Json::String(trace.clone()));
    }
    t
}

/// Kafka's `ConnectorStateInfo`: the connector's state is its target
/// state; each task's is its own.
fn status_of(api: &Api, name: &str) -> Result<Json, RestError> {
    let status: ConnectorStatus = api.worker.status(name)?;
    let state = match api.worker.target_state(name)? {
        TargetState::Started => "RUNNING",
        TargetState::Paused => "PAUSED",
        TargetState::Stopped => "STOPPED",
    };
    let tasks: Vec<Json> = status.tasks.iter().map(|t| task_json(api, t)).collect();
    Ok(json!({
        "name": name,
        "connector": {"state": state, "worker_id": api.worker_id},
        "tasks": tasks,
        "type": status.kind,
    }))
}

/// `GET /connectors`, with `?expand=status` and/or `?expand=info`.
async fn list(State(api): Shared, RawQuery(raw): RawQuery) -> Reply {
    let expand: BTreeSet<&str> =
        query(raw.as_deref()).into_iter().filter(|(k, _)| *k == "expand").map(|(_, v)| v).collect();
    let names = api.worker.connectors();
    if expand.is_empty() {
        return ok(StatusCode::OK, &names);
    }
    let mut out = serde_json::Map::new();
    for name in names {
        let mut entry = serde_json::Map::new();
        // A connector deleted meanwhile is left out, as Kafka does.
        if expand.contains("status") {
            let Ok(s) = status_of(&api, &name) else { continue };
            entry.insert("status".into(), s);
        }
        if expand.contains("info") {
            let Ok(i) = info_of(&api, &name) else { continue };
            entry.insert("info".into(), i);
        }
        out.insert(name, Json::Object(entry));
    }
    ok(StatusCode::OK, &out)
}

/// `POST /connectors`: `{"name", "config", "initial_state"?}`.
async fn create(State(api): Shared, bytes: Bytes) -> Reply {
    let mut request: serde_json::Map<String, Json> = body(&bytes, "a JSON object")?;
    let name = match request.remove("name") {
        Some(Json::String(n)) if !n.trim().is_empty() => n.trim().to_owned(),
        _ => return Err(RestError::bad_request("\"name\" is missing or empty; name the connector")),
    };
    let map = request.remove("config").unwrap_or_else(|| json!({}));
    let target = match request.remove("initial_state").as_ref().map(|s| s.as_str()) {
        None | Some(Some("RUNNING")) => TargetState::Started,
        Some(Some("PAUSED")) => TargetState::Paused,
        Some(Some("STOPPED")) => TargetState::Stopped,
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "initial_state {other:?} is not one of RUNNING, PAUSED, STOPPED"
            )));
        }
    };
    if let Some(key) = request.keys().next() {
        return Err(RestError::bad_request(format!(
            "unknown field {key:?}; the request is {{\"name\", \"config\", \"initial_state\"}}"
        )));
    }
    let config = connector_config(&name, map)?;
    if api.worker.config(&name).is_ok() {
        return Err(already_exists(&name));
    }
    match api.worker.create(config, target).await {
        Ok(()) => {}
        // Created by another request in the meantime.
        Err(Error::Config { key, .. }) if key == "name" && api.worker.config(&name).is_ok() => {
            return Err(already_exists(&name));
        }
        Err(e) => return Err(e.into()),
    }
    created(&api, &name)
}

fn already_exists(name: &str) -> RestError {
    RestError::new(StatusCode::CONFLICT, format!("Connector {name} already exists"))
}

/// 201 with `Location: /connectors/{name}` and the connector's info.
fn created(api: &Api, name: &str) -> Reply {
    let mut response = (StatusCode::CREATED, axum::Json(info_of(api, name)?)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/connectors/{name}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /connectors/{name}`.
async fn info(State(api): Shared, Path(name): Path<String>) -> Reply {
    ok(StatusCode::OK, &info_of(&api, &name)?)
}

/// `GET /connectors/{name}/config`.
async fn config(State(api): Shared, Path(name): Path<String>) -> Reply {
    ok(StatusCode::OK, &api.worker.config(&name)?.config)
}

/// `PUT /connectors/{name}/config`: creates or reconfigures.
async fn put_config(State(api): Shared, Path(name): Path<String>, bytes: Bytes) -> Reply {
    let map: Json = body(&bytes, "a JSON object of config keys")?;
    let config = connector_config(&name, map)?;
    if api.worker.put_config(config).await? { created(&api, &name) } else { ok(StatusCode::OK, &info_of(&api, &name)?) }
}

/// `GET /connectors/{name}/status`.
async fn status(State(api): Shared, Path(name): Path<String>) -> Reply {
    ok(StatusCode::OK, &status_of(&api, &name)?)
}

/// `GET /connectors/{name}/tasks`.
async fn tasks(State(api): Shared, Path(name): Path<String>) -> Reply {
    ok(StatusCode::OK, &api.worker.tasks(&name)?)
}

/// `GET /connectors/{name}/tasks/{task}/status`.
async fn task_status(State(api): Shared, Path((name, task)): Path<(String, String)>) -> Reply {
    let status = api.worker.status(&name)?;
    let found = task.parse::<usize>().ok().and_then(|id| status.tasks.iter().find(|t| t.id == id));
    match found {
        Some(t) => ok(StatusCode::OK, &task_json(&api, t)),
        None => Err(RestError::new(StatusCode::NOT_FOUND, format!("No status found for task {name}-{task}"))),
    }
}

/// `POST /connectors/{name}/restart?includeTasks=&onlyFailed=`.
async fn restart(State(api): Shared, Path(name): Path<String>, RawQuery(raw): RawQuery) -> Reply {
    let flag = |key: &str| query(raw.as_deref()).iter().any(|(k, v)| *k == key && v.eq_ignore_ascii_case("true"));
    let (include_tasks, only_failed) = (flag("includeTasks"), flag("onlyFailed"));
    api.worker.restart(&name, only_failed).await?;
    if include_tasks || only_failed {
        ok(StatusCode::ACCEPTED, &status_of(&api, &name)?)
    } else {
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// `PUT /connectors/{name}/pause`.
async fn pause(State(api): Shared, Path(name): Path<String>) -> Reply {
    api.worker.set_target_state(&name, TargetState::Paused).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `PUT /connectors/{name}/resume`: a paused or stopped connector runs again.
async fn resume(State(api): Shared, Path(name): Path<String>) -> Reply {
    api.worker.set_target_state(&name, TargetState::Started).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `PUT /connectors/{name}/stop`.
async fn stop(State(api): Shared, Path(name): Path<String>) -> Reply {
    api.worker.set_target_state(&name, TargetState::Stopped).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /connectors/{name}`.
async fn delete(State(api): Shared, Path(name): Path<String>) -> Reply {
    api.worker.stop(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /connectors/{name}/offsets`.
async fn offsets(State(api): Shared, Path(name): Path<String>) -> Reply {
    ok(StatusCode::OK, &api.worker.offsets(&name).await?)
}

/// Refuses to change offsets unless the connector is stopped, in Kafka's words.
fn must_be_stopped(api: &Api, name: &str) -> Result<(), RestError> {
    if api.worker.target_state(name)? != TargetState::Stopped {
        return Err(RestError::bad_request(not_stopped(name)));
    }
    Ok(())
}

/// `PATCH /connectors/{name}/offsets`.
async fn alter_offsets(State(api): Shared, Path(name): Path<String>, bytes: Bytes) -> Reply {
    must_be_stopped(&api, &name)?;
    let offsets: ConnectorOffsets = body(&bytes, r#"{"offsets": [{"partition": {...}, "offset": {...}}]}"#)?;
    if offsets.offsets.is_empty() {
        return Err(RestError::bad_request("Partitions / offsets need to be provided for an alter offsets request"));
    }
    api.worker.alter_offsets(&name, offsets).await?;
    ok(StatusCode::OK, &json!({"message": framework_message("altered")}))
}

/// `DELETE /connectors/{name}/offsets`.
async fn reset_offsets(State(api): Shared, Path(name): Path<String>) -> Reply {
    must_be_stopped(&api, &name)?;
    api.worker.reset_offsets(&name).await?;
    ok(StatusCode::OK, &json!({"message": framework_message("reset")}))
}

fn framework_message(done: &str) -> String {
    format!(
        "The Connect framework-managed offsets for this connector have been {done} successfully. However, if this \
         connector manages offsets externally, they will need to be manually {done} in the system that the \
         connector uses."
    )
}

/// A class's kind, from its name (every built-in class ends in Source or Sink).
fn plugin_type(class: &str) -> &'static str {
    if class.ends_with("Sink") { "sink" } else { "source" }
}

/// `GET /connector-plugins`.
async fn plugins() -> Reply {
    let list: Vec<Json> = crate::CLASSES
        .iter()
        .map(|c| json!({"class": c, "type": plugin_type(c), "version": env!("CARGO_PKG_VERSION")}))
        .collect();
    ok(StatusCode::OK, &list)
}

/// `PUT /connector-plugins/{class}/config/validate`: Kafka's ConfigInfos,
/// one entry per given key (and the key an error names, if not given).
async fn validate_config(Path(class): Path<String>, bytes: Bytes) -> Reply {
    let map: Json = body(&bytes, "a JSON object of config keys")?;
    let given = map.get("connector.class").and_then(Json::as_str).map(str::to_owned);
    if let Some(given) = &given
        && !given.ends_with(class.as_str())
        && !class.ends_with(given.as_str())
    {
        return Err(RestError::bad_request(format!(
            "Included connector type {given} does not match request type {class}"
        )));
    }
    let name = map.get("name").and_then(Json::as_str).unwrap_or(&class).to_owned();
    let mut config = connector_config(&name, map)?;
    config.config.entry("connector.class".to_owned()).or_insert_with(|| class.clone());
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match validate(&config).await {
        Ok(_) => {}
        Err(Error::Config { key, reason, .. }) => errors.entry(key).or_default().push(reason),
        Err(e) => errors.entry("connector.class".to_owned()).or_default().push(e.to_string()),
    }
    let keys: BTreeSet<&String> = config.config.keys().chain(errors.keys()).collect();
    let own_group = given.unwrap_or_else(|| class.clone());
    let group_of = |key: &str| if is_common_key(key) { "Common".to_owned() } else { own_group.clone() };
    let mut groups: Vec<String> = Vec::new();
    let mut configs = Vec::new();
    for (order, key) in keys.into_iter().enumerate() {
        let group = group_of(key);
        if !groups.contains(&group) {
            groups.push(group.clone());
        }
        let key_errors = errors.get(key.as_str()).cloned().unwrap_or_default();
        configs.push(json!({
            "definition": {
                "name": key,
                "type": "STRING",
                "required": key == "connector.class" || key == "name",
                "default_value": null,
                "importance": "HIGH",
                "documentation": "",
                "group": group,
                "width": "NONE",
                "display_name": key,
                "dependents": [],
                "order": order,
            },
            "value": {
                "name": key,
                "value": config.config.get(key.as_str()),
                "recommended_values": [],
                "errors": key_errors,
                "visible": true,
            },
        }));
    }
    let error_count: usize = errors.values().map(Vec::len).sum();
    ok(
        StatusCode::OK,
        &json!({"name": config.config.get("connector.class"), "error_count": error_count, "groups": groups, "configs": configs}),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use plexus_core::client::EmbeddedClients;
    use plexus_core::{Log, LogConfig};
    use tower::ServiceExt;

    use super::*;

    async fn call(app: &Router, method: &str, uri: &str, body: Option<Json>) -> (StatusCode, Json) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("a request");
        let response = app.clone().oneshot(request).await.expect("an answer");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("a body").to_bytes();
        let json = if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
        (status, json)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_router_answers_in_kafka_connects_shapes() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = Log::open(LogConfig::new(dir.path().join("data"))).expect("log");
        let worker = Worker::new(Arc::new(EmbeddedClients::new(log.clone())));
        let app = router(worker.clone(), "test:8083");
        let input = dir.path().join("in.txt");
        std::fs::write(&input, "a\nb\n").expect("input");

        let (s, root) = call(&app, "GET", "/", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(root["version"].is_string(), "{root}");

        let (s, e) = call(&app, "GET", "/connectors/nope/status", None).await;
        assert_eq!((s, e), (StatusCode::NOT_FOUND, json!({"error_code": 404, "message": "Connector nope not found"})));

        let bad = json!({"name": "bad", "config": {"connector.class": "FileSource", "file": "x", "topic": "t", "batch.size": "-3"}});
        let (s, e) = call(&app, "POST", "/connectors", Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(e["error_code"], 400);
        assert!(e["message"].as_str().is_some_and(|m| m.contains("batch.size")), "{e}");

        let good = json!({"name": "in", "config": {"connector.class": "FileSource", "file": input, "topic": "lines"}});
        let (s, created) = call(&app, "POST", "/connectors", Some(good.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{created}");
        assert_eq!(created["type"], "source");
        assert_eq!(created["config"]["name"], "in");
        assert_eq!(created["tasks"], json!([{"connector": "in", "task": 0}]));
        let (s, e) = call(&app, "POST", "/connectors", Some(good)).await;
        assert_eq!((s, e["message"].as_str()), (StatusCode::CONFLICT, Some("Connector in already exists")));

        let (s, status) = call(&app, "GET", "/connectors/in/status", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(status["connector"], json!({"state": "RUNNING", "worker_id": "test:8083"}));
        assert_eq!(status["tasks"][0]["id"], 0);

        let (s, e) = call(&app, "DELETE", "/connectors/in/offsets", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(e["message"].as_str().is_some_and(|m| m.contains("STOPPED")), "{e}");
        assert_eq!(call(&app, "PUT", "/connectors/in/stop", None).await.0, StatusCode::NO_CONTENT);
        let (_, status) = call(&app, "GET", "/connectors/in/status", None).await;
        assert_eq!((status["connector"]["state"].as_str(), status["tasks"].clone()), (Some("STOPPED"), json!([])));
        let (s, listed) = call(&app, "GET", "/connectors?expand=status&expand=info", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(listed["in"]["info"]["name"], "in", "{listed}");
        assert_eq!(listed["in"]["status"]["connector"]["state"], "STOPPED", "{listed}");

        let (s, plugins) = call(&app, "GET", "/connector-plugins", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(plugins.as_array().is_some_and(|p| {
            p.contains(&json!({"class": "FileSink", "type": "sink", "version": env!("CARGO_PKG_VERSION")}))
        }));
        let checked = json!({"connector.class": "FileSource", "file": "x", "topic": "t", "batch.size": "lots"});
        let (s, infos) = call(&app, "PUT", "/connector-plugins/FileSource/config/validate", Some(checked)).await;
        assert_eq!((s, infos["error_count"].as_u64()), (StatusCode::OK, Some(1)), "{infos}");
        let with_error: Vec<&Json> = infos["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .filter(|c| c["value"]["errors"].as_array().is_some_and(|e| !e.is_empty()))
            .collect();
        assert_eq!(with_error.len(), 1, "{infos}");
        assert_eq!(with_error[0]["value"]["name"], "batch.size");

        assert_eq!(call(&app, "DELETE", "/connectors/in", None).await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "GET", "/connectors", None).await.1, json!([]));
        assert_eq!(call(&app, "GET", "/nowhere", None).await.1["error_code"], 404);
        worker.stop_all().await;
        log.close().expect("close");
    }
}
