//! Plexus Connect end to end on the embedded log: file source and sink
//! with restarts and rotation, configs that must be refused, and a poison
//! record that goes to the dead-letter topic while the rest flows on.

mod cdc;
mod file;
mod pg;
mod postgres;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_connectors::{ConnectorConfig, Worker};
use plexus_core::client::{Consumer, ConsumerConfig, EmbeddedClients, EmbeddedConsumer, SeekTo};
use plexus_core::{ConsumerRecord, Log, LogConfig, TopicPartition};

/// An embedded log in a temporary directory, with a worker on it.
struct Connect {
    log: Log,
    worker: Worker,
    _data: tempfile::TempDir,
}

impl Connect {
    fn new() -> Self {
        let data = tempfile::tempdir().expect("tmp");
        let log = Log::open(LogConfig::new(data.path())).expect("open");
        let worker = Worker::new(Arc::new(EmbeddedClients::new(log.clone())));
        Self { log, worker, _data: data }
    }

    /// A fresh worker on the same log (a restart of the process's worker).
    fn restart_worker(&mut self) {
        self.worker = Worker::new(Arc::new(EmbeddedClients::new(self.log.clone())));
    }

    async fn start(&self, json: &str) {
        let config = ConnectorConfig::from_json(json).expect("config");
        self.worker.start(config).await.expect("start");
    }

    /// Every record of partition 0 of `topic` (read_committed).
    async fn read(&self, topic: &str) -> Vec<ConsumerRecord> {
        let end = self.log.offsets(&TopicPartition::new(topic, 0)).map_or(0, |o| o.2);
        let mut config = ConsumerConfig::without_group();
        config.set("isolation.level", "read_committed").expect("valid");
        let mut consumer = EmbeddedConsumer::new(self.log.clone(), config);
        let tp = TopicPartition::new(topic, 0);
        consumer.assign(std::slice::from_ref(&tp)).await.expect("assign");
        consumer.seek(&tp, SeekTo::Beginning).await.expect("seek");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while consumer.position(&tp).unwrap_or(0) < end && Instant::now() < deadline {
            out.extend(consumer.poll(Duration::from_millis(50)).await.expect("poll"));
        }
        out
    }

    /// The values of `topic`, as text.
    async fn values(&self, topic: &str) -> Vec<String> {
        self.read(topic)
            .await
            .into_iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }
}

/// Why each dead letter died (its `__connect.errors.exception.message`).
fn dead_letter_reasons(dead: &[ConsumerRecord]) -> Vec<String> {
    dead.iter()
        .filter_map(|r| r.headers.iter().find(|h| h.key == "__connect.errors.exception.message"))
        .map(|h| String::from_utf8_lossy(h.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// Waits until `done` holds, failing after 30 s with `what`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
