//! [`StreamsConfig`]: Kafka Streams' configuration keys, with their
//! defaults, validated before anything starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// `processing.guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// Outputs and store writes are flushed before input offsets are
    /// committed: after a crash, records since the last commit are
    /// processed again (duplicates possible, no loss).
    AtLeastOnce,
    /// Outputs, changelog writes and input offsets commit in one
    /// transaction: after a crash the application resumes with no duplicate
    /// and no loss.
    ExactlyOnceV2,
}

/// What a source does with a record it cannot deserialize
/// (`default.deserialization.exception.handler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeserializationHandler {
    /// Stop the task with the error (Kafka's `LogAndFailExceptionHandler`, the default).
    LogAndFail,
    /// Log it, count it and skip it (`LogAndContinueExceptionHandler`).
    LogAndContinue,
    /// Write the raw record to a dead-letter topic, with the error and its
    /// origin in headers, and go on.
    DeadLetterQueue {
        /// The dead-letter topic.
        topic: String,
    },
}

/// The configuration of a [`crate::Streams`] application.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// `application.id`: names the consumer group, the transactional ids
    /// and the internal topics (`<application.id>-<store>-changelog`,
    /// `<application.id>-<name>-repartition`). Required.
    pub application_id: String,
    /// `num.stream.threads`.
    pub num_stream_threads: usize,
    /// `processing.guarantee`: `at_least_once` (default) or `exactly_once_v2`.
    pub processing_guarantee: ProcessingGuarantee,
    /// `commit.interval.ms`: 30 s at least once, 100 ms exactly once (Kafka's defaults).
    pub commit_interval: Duration,
    /// `cache.max.bytes.buffering`: uncommitted store writes held per
    /// thread before a commit is forced (10 MiB).
    pub cache_max_bytes_buffering: usize,
    /// `state.dir`: where RocksDB stores live (`<state.dir>/<application.id>/<task>/rocksdb/<store>`).
    pub state_dir: PathBuf,
    /// `num.standby.replicas`.
    pub num_standby_replicas: usize,
    /// `auto.offset.reset` for source topics without committed offsets
    /// (`earliest`, Kafka Streams' default).
    pub auto_offset_reset: String,
    /// `default.deserialization.exception.handler`.
    pub deserialization_handler: DeserializationHandler,
    /// `rocksdb.memory.bytes` (Plexus): one memory budget for every RocksDB
    /// store of the process — block cache and write buffers (128 MiB).
    pub rocksdb_memory_bytes: usize,
    /// `replication.factor` of internal topics.
    pub replication_factor: i16,
    commit_interval_set: bool,
}

const KEYS: &[&str] = &[
    "application.id",
    "num.stream.threads",
    "processing.guarantee",
    "commit.interval.ms",
    "cache.max.bytes.buffering",
    "statestore.cache.max.bytes",
    "state.dir",
    "num.standby.replicas",
    "auto.offset.reset",
    "default.deserialization.exception.handler",
    "errors.deadletterqueue.topic.name",
    "rocksdb.memory.bytes",
    "replication.factor",
];

impl StreamsConfig {
    /// Defaults for an application.
    pub fn new(application_id: impl Into<String>) -> Self {
        Self {
            application_id: application_id.into(),
            num_stream_threads: 1,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            commit_interval: Duration::from_secs(30),
            cache_max_bytes_buffering: 10 * 1024 * 1024,
            state_dir: std::env::temp_dir().join("plexus-streams"),
            num_standby_replicas: 0,
            auto_offset_reset: "earliest".into(),
            deserialization_handler: DeserializationHandler::LogAndFail,
            rocksdb_memory_bytes: 128 * 1024 * 1024,
            replication_factor: 1,
            commit_interval_set: false,
        }
    }

    /// Builds a config from `key = value` pairs (Kafka's names).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let pairs: BTreeMap<&str, &str> = pairs.into_iter().collect();
        let id = pairs.get("application.id").ok_or_else(|| Error::Config {
            key: "application.id".into(),
            reason: "is required: it names the application's group, transactions and internal topics".into(),
        })?;
        let mut config = Self::new(*id);
        for (k, v) in pairs {
            config.set(k, v)?;
        }
        Ok(config)
    }

    /// Sets a key by its Kafka Streams name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |reason: &str| Error::Config { key: key.to_owned(), reason: format!("{value:?}: {reason}") };
        let number = |what: &str| value.trim().parse::<u64>().map_err(|_| bad(&format!("expected {what}")));
        match key {
            "application.id" => self.application_id = value.to_owned(),
            "num.stream.threads" => self.num_stream_threads = usize::try_from(number("a thread count")?).unwrap_or(1),
            "processing.guarantee" => {
                self.processing_guarantee = match value {
                    "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                    "exactly_once_v2" | "exactly_once" => ProcessingGuarantee::ExactlyOnceV2,
                    _ => return Err(bad("expected at_least_once or exactly_once_v2")),
                };
            }
            "commit.interval.ms" => {
                self.commit_interval = Duration::from_millis(number("milliseconds")?);
                self.commit_interval_set = true;
            }
            "cache.max.bytes.buffering" | "statestore.cache.max.bytes" => {
                self.cache_max_bytes_buffering = usize::try_from(number("a byte count")?).unwrap_or(usize::MAX);
            }
            "state.dir" => self.state_dir = PathBuf::from(value),
            "num.standby.replicas" => self.num_standby_replicas = usize::try_from(number("a count")?).unwrap_or(0),
            "auto.offset.reset" => match value {
                "earliest" | "latest" | "none" => self.auto_offset_reset = value.to_owned(),
                _ => return Err(bad("expected earliest, latest or none")),
            },
            "default.deserialization.exception.handler" => {
                self.deserialization_handler = match value {
                    "LogAndFailExceptionHandler" | "log_and_fail" | "fail" => DeserializationHandler::LogAndFail,
                    "LogAndContinueExceptionHandler" | "log_and_continue" | "continue" => {
                        DeserializationHandler::LogAndContinue
                    }
                    _ => {
                        return Err(bad(
                            "expected log_and_fail or log_and_continue (for a dead-letter topic set errors.deadletterqueue.topic.name)",
                        ));
                    }
                };
            }
            "errors.deadletterqueue.topic.name" => {
                plexus_core::config::validate_topic_name(value).map_err(|e| bad(&e.to_string()))?;
                self.deserialization_handler = DeserializationHandler::DeadLetterQueue { topic: value.to_owned() };
            }
            "rocksdb.memory.bytes" => {
                self.rocksdb_memory_bytes = usize::try_from(number("a byte count")?).unwrap_or(usize::MAX);
            }
            "replication.factor" => {
                self.replication_factor = i16::try_from(number("a count")?).map_err(|_| bad("too large"))?;
            }
            _ => {
                let suggestion = KEYS.iter().find(|k| k.split('.').next() == key.split('.').next());
                let hint = suggestion.map(|s| format!("; did you mean {s}?")).unwrap_or_default();
                return Err(Error::Config { key: key.to_owned(), reason: format!("is not a Streams setting{hint}") });
            }
        }
        if key == "processing.guarantee" && !self.commit_interval_set {
            self.commit_interval = match self.processing_guarantee {
                ProcessingGuarantee::AtLeastOnce => Duration::from_secs(30),
                ProcessingGuarantee::ExactlyOnceV2 => Duration::from_millis(100),
            };
        }
        Ok(())
    }

    /// Checks the whole configuration.
    pub fn validate(&self) -> Result<()> {
        if self.application_id.is_empty()
            || !self.application_id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(Error::Config {
                key: "application.id".into(),
                reason: format!(
                    "{:?}: use letters, digits, '.', '_' and '-' (it becomes part of topic names)",
                    self.application_id
                ),
            });
        }
        if self.num_stream_threads == 0 {
            return Err(Error::Config { key: "num.stream.threads".into(), reason: "must be at least 1".into() });
        }
        Ok(())
    }

    /// Where a task's stores live.
    pub fn task_dir(&self, task: crate::processor::TaskId) -> PathBuf {
        self.state_dir.join(&self.application_id).join(task.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kafka_streams_names_and_mistakes_are_named() {
        let c = StreamsConfig::from_pairs([("application.id", "wc"), ("processing.guarantee", "exactly_once_v2")])
            .expect("valid");
        assert_eq!(c.commit_interval, Duration::from_millis(100), "EOS commits every 100 ms by default");
        let err = StreamsConfig::from_pairs([("application.id", "wc"), ("commit.interval", "5")]).expect_err("typo");
        assert!(err.to_string().contains("commit.interval.ms"), "{err}");
        let err = StreamsConfig::from_pairs([("num.stream.threads", "2")]).expect_err("no id");
        assert!(err.to_string().contains("application.id"), "{err}");
        assert!(StreamsConfig::new("bad id!").validate().is_err());
    }
}
