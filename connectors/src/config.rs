//! Connector configs: Kafka Connect's JSON shape, or TOML, validated
//! before anything starts.
//!
//! ```json
//! {"name": "orders-file", "config": {"connector.class": "FileSource", "file": "orders.txt", "topic": "orders"}}
//! ```
//!
//! ```toml
//! name = "orders-file"
//! [config]
//! "connector.class" = "FileSource"
//! file = "orders.txt"
//! topic = "orders"
//! ```
//!
//! Values may be strings (as Kafka Connect writes every value) or native
//! JSON/TOML numbers and booleans. The keys every connector shares —
//! `tasks.max`, the converters, transforms and predicates, the `errors.*`
//! keys and a sink's `topics` / `topics.regex` — are read here into
//! [`CommonConfig`]; the rest belong to the connector class, found in the
//! registry of classes ([`crate::connector::ConnectorClass`], by the
//! `typetag` crate) under `connector.class`, which parses them into its own
//! typed config, refusing unknown keys. Every error names the key.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value as Json;

use crate::converter::Converter;
use crate::error::{Error, Result};

/// A connector config as Kafka Connect's REST API and files carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// The connector's name: unique in a worker; names its offsets and its
    /// sink consumer group (`connect-<name>`).
    pub name: String,
    /// Every key, as strings.
    #[serde(deserialize_with = "string_map")]
    pub config: BTreeMap<String, String>,
}

impl ConnectorConfig {
    /// A config from Kafka Connect's JSON shape.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a connector config ({e}); expected {EXAMPLE}"))
    }

    /// A config from TOML: `name = …` and a `[config]` table.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text)
            .map_err(|e| format!("not a connector config ({e}); expected `name = \"…\"` and a [config] table"))
    }

    /// Reads a `.json` or `.toml` file (by extension; otherwise JSON, then TOML).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::ConfigFile { path: path.to_owned(), reason: format!("cannot read it: {e}") })?;
        let parsed = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml(&text),
            Some("json") => Self::from_json(&text),
            _ => Self::from_json(&text).or_else(|_| Self::from_toml(&text)),
        };
        let config = parsed.map_err(|reason| Error::ConfigFile { path: path.to_owned(), reason })?;
        if config.name.trim().is_empty() {
            return Err(Error::ConfigFile {
                path: path.to_owned(),
                reason: "\"name\" is empty; name the connector".into(),
            });
        }
        Ok(config)
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.config.get(key).map(String::as_str)
    }

    /// `connector.class`, or the error saying it is missing.
    pub fn class(&self) -> Result<&str> {
        self.get("connector.class").filter(|c| !c.trim().is_empty()).ok_or_else(|| {
            Error::config(
                &self.name,
                "connector.class",
                format!("missing; set it to one of {}", crate::CLASSES.join(", ")),
            )
        })
    }
}

const EXAMPLE: &str = r#"{"name": "...", "config": {"connector.class": "...", ...}}"#;

/// A map whose values may be strings, numbers or booleans, as strings.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    let raw: BTreeMap<String, Scalar> = BTreeMap::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// `errors.tolerance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerance {
    /// Any failed record stops the connector's task (the default).
    None,
    /// Failed records are skipped (logged, and sent to the dead-letter
    /// topic if one is set); the rest flow on.
    All,
}

/// The keys every connector shares (see the module docs).
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `tasks.max` (default 1).
    pub tasks_max: usize,
    /// `key.converter` (default: JSON without the schema envelope, which
    /// reads an envelope too; see [`Converter`]).
    pub key_converter: Converter,
    /// `value.converter` (default as for the key).
    pub value_converter: Converter,
    /// `errors.tolerance`.
    pub tolerance: Tolerance,
    /// `errors.retry.timeout` (ms; 0: no retries; -1: forever).
    pub retry_timeout: Option<Duration>,
    /// `errors.retry.delay.max.ms` (default 60 s).
    pub retry_delay_max: Duration,
    /// `errors.log.enable`.
    pub log_errors: bool,
    /// `errors.log.include.messages`.
    pub log_messages: bool,
    /// `errors.deadletterqueue.topic.name` (sinks; sources too in Plexus).
    pub dead_letter_topic: Option<String>,
    /// `errors.deadletterqueue.context.headers.enable` (default true in
    /// Plexus: a dead letter without its reason helps nobody).
    pub dead_letter_headers: bool,
    /// A sink's `topics`.
    pub topics: Vec<String>,
    /// A sink's `topics.regex`.
    pub topics_regex: Option<regex::Regex>,
    /// `offset.flush.interval.ms`: how often a source's offsets and a
    /// sink's consumed offsets are committed (default 1 s; Kafka's is 60 s,
    /// but Plexus commits sources transactionally, so a commit is cheap).
    pub offset_flush_interval: Duration,
}

/// Whether `key` is one [`CommonConfig::parse`] reads (or a transform's).
pub fn is_common_key(key: &str) -> bool {
    const KEYS: &[&str] = &[
        "name",
        "connector.class",
        "tasks.max",
        "key.converter",
        "value.converter",
        "header.converter",
        "errors.tolerance",
        "errors.retry.timeout",
        "errors.retry.delay.max.ms",
        "errors.log.enable",
        "errors.log.include.messages",
        "errors.deadletterqueue.topic.name",
        "errors.deadletterqueue.topic.replication.factor",
        "errors.deadletterqueue.context.headers.enable",
        "topics",
        "topics.regex",
        "offset.flush.interval.ms",
    ];
    KEYS.contains(&key)
        || key.starts_with("key.converter.")
        || key.starts_with("value.converter.")
        || crate::transforms::is_transform_key(key)
}

impl CommonConfig {
    /// Reads the shared keys of `config`.
    pub fn parse(config: &ConnectorConfig) -> Result<Self> {
        Self::parse_with(config, false)
    }

    /// Reads the shared keys of `config`, for a class whose JSON converters
    /// embed the schema unless told otherwise when `schemas` (see
    /// [`crate::ConnectorClass::schemas_by_default`]).
    pub fn parse_with(config: &ConnectorConfig, schemas: bool) -> Result<Self> {
        let name = &config.name;
        let err = |key: &str, reason: String| Error::config(name, key, reason);
        let tasks_max: usize = typed(config, "tasks.max")?.unwrap_or(1);
        if tasks_max == 0 {
            return Err(err("tasks.max", "must be at least 1".into()));
        }
        let tolerance = match config.get("errors.tolerance").unwrap_or("none") {
            "none" => Tolerance::None,
            "all" => Tolerance::All,
            other => return Err(err("errors.tolerance", format!("{other:?} is not a tolerance; use none or all"))),
        };
        let retry_timeout = match typed::<i64>(config, "errors.retry.timeout")?.unwrap_or(0) {
            0 => None,
            -1 => Some(Duration::MAX),
            ms if ms > 0 => Some(Duration::from_millis(ms.unsigned_abs())),
            ms => {
                return Err(err(
                    "errors.retry.timeout",
                    format!("{ms} is negative; use 0 (no retry), -1 (forever) or a number of ms"),
                ));
            }
        };
        let topics: Vec<String> = config
            .get("topics")
            .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let topics_regex = match config.get("topics.regex").filter(|r| !r.is_empty()) {
            Some(r) => Some(
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| err("topics.regex", format!("{r:?} is not a regular expression: {e}")))?,
            ),
            None => None,
        };
        Ok(Self {
            tasks_max,
            key_converter: Converter::parse(config, "key.converter", schemas)?,
            value_converter: Converter::parse(config, "value.converter", schemas)?,
            tolerance,
            retry_timeout,
            retry_delay_max: Duration::from_millis(typed(config, "errors.retry.delay.max.ms")?.unwrap_or(60_000)),
            log_errors: typed(config, "errors.log.enable")?.unwrap_or(false),
            log_messages: typed(config, "errors.log.include.messages")?.unwrap_or(false),
            dead_letter_topic: config
                .get("errors.deadletterqueue.topic.name")
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            dead_letter_headers: typed(config, "errors.deadletterqueue.context.headers.enable")?.unwrap_or(true),
            topics,
            topics_regex,
            offset_flush_interval: Duration::from_millis(typed(config, "offset.flush.interval.ms")?.unwrap_or(1_000)),
        })
    }

    /// Whether a sink reads `topic`.
    pub fn reads(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic) || self.topics_regex.as_ref().is_some_and(|r| r.is_match(topic))
    }
}

/// A key parsed as `T`, naming the key and the value when it does not parse.
pub fn typed<T: FromStr>(config: &ConnectorConfig, key: &str) -> Result<Option<T>> {
    match config.get(key) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            Error::config(
                &config.name,
                key,
                format!("{v:?} is not {}", std::any::type_name::<T>().rsplit("::").next().map_or("valid", kind_name)),
            )
        }),
    }
}

fn kind_name(t: &str) -> &'static str {
    match t {
        "bool" => "true or false",
        "usize" | "u64" | "u32" | "u16" => "a non-negative whole number",
        "i64" | "i32" => "a whole number",
        "f64" => "a number",
        _ => "valid",
    }
}

/// The connector class's own keys (every key that is not common) parsed
/// into its typed config `T` (serde, with `deny_unknown_fields`); an error
/// names the key. Numbers and booleans are parsed from their strings by
/// the fields' `deserialize_with = "crate::config::from_str"`.
pub fn class_config<T: DeserializeOwned>(config: &ConnectorConfig) -> Result<T> {
    let own: serde_json::Map<String, Json> = config
        .config
        .iter()
        .filter(|(k, _)| !is_common_key(k))
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect();
    serde_path_to_error::deserialize(Json::Object(own)).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde says "unknown field `x`, expected one of …" at the top level.
        let key = if key == "." { inner.split('`').nth(1).unwrap_or("config").to_owned() } else { key };
        Error::config(&config.name, &key, inner)
    })
}

/// Deserializes a `T: FromStr` from a string (connector configs carry
/// every value as one).
pub fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
}

/// As [`from_str`], for an optional key.
pub fn from_str_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    from_str(d).map(Some)
}

/// A comma-separated list.
pub fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let s = String::deserialize(d)?;
    Ok(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_toml_configs_read_the_same() {
        let json = ConnectorConfig::from_json(
            r#"{"name": "f", "config": {"connector.class": "FileSource", "tasks.max": 1, "file": "a.txt"}}"#,
        )
        .expect("json");
        let toml = ConnectorConfig::from_toml(
            "name = \"f\"\n[config]\n\"connector.class\" = \"FileSource\"\n\"tasks.max\" = 1\nfile = \"a.txt\"\n",
        )
        .expect("toml");
        assert_eq!(json, toml);
        assert_eq!(json.get("tasks.max"), Some("1"));
    }

    #[test]
    fn shared_keys_are_checked_and_named() {
        let config = |k: &str, v: &str| ConnectorConfig {
            name: "c".into(),
            config: [("connector.class".to_owned(), "FileSink".to_owned()), (k.to_owned(), v.to_owned())].into(),
        };
        let e = CommonConfig::parse(&config("tasks.max", "many")).expect_err("ill-typed");
        assert_eq!(e.to_string(), "connector \"c\": tasks.max: \"many\" is not a non-negative whole number");
        let e = CommonConfig::parse(&config("errors.tolerance", "some")).expect_err("bad tolerance");
        assert!(e.to_string().contains("errors.tolerance: \"some\" is not a tolerance; use none or all"), "{e}");
        let c = CommonConfig::parse(&config("topics.regex", "orders-.*")).expect("regex");
        assert!(c.reads("orders-eu") && !c.reads("xorders-eu"));
    }
}
