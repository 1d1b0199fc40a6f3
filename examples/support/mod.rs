//! What every example needs around its topology: a throwaway embedded log,
//! its topics and input, a `Streams` application run until its output is
//! complete, and the output read back.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use plexus_core::client::{
    Admin, Consumer, ConsumerConfig, EmbeddedAdmin, EmbeddedClients, EmbeddedConsumer, EmbeddedProducer, Producer,
    ProducerConfig,
};
use plexus_core::{ConsumerRecord, Log, LogConfig, Record, TopicConfig, TopicPartition};
use plexus_runtime::{Streams, StreamsConfig, Topology};

/// An embedded log in a temporary data directory, removed on drop.
pub(crate) struct Example {
    pub(crate) log: Log,
    _data: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Example {
    /// Opens the log and creates `topics` (name, partitions).
    pub(crate) fn new(topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let state = tempfile::tempdir()?;
        let log = Log::open(LogConfig::new(data.path()))?;
        for (name, partitions) in topics {
            log.create_topic(name, *partitions, TopicConfig::default())?;
        }
        Ok(Self { log, _data: data, state })
    }

    /// Produces `(key, value, timestamp)` records to `topic`.
    pub(crate) async fn produce(&self, topic: &str, records: &[(&str, &[u8], i64)]) -> anyhow::Result<()> {
        let producer = EmbeddedProducer::new(self.log.clone(), ProducerConfig::default())?;
        for (key, value, ts) in records {
            producer.send(topic, Record::with_key(key.to_string(), value.to_vec()).timestamp(*ts)).await?;
        }
        producer.flush().await?;
        Ok(())
    }

    /// Starts `topology` as application `application_id` (state in a
    /// temporary directory, commits every 100 ms).
    pub(crate) fn start(&self, topology: Topology, application_id: &str) -> anyhow::Result<Streams> {
        let state_dir = self.state.path().to_string_lossy().into_owned();
        let config = StreamsConfig::from_pairs([
            ("application.id", application_id),
            ("commit.interval.ms", "100"),
            ("state.dir", state_dir.as_str()),
        ])?;
        let mut streams = Streams::new(topology, config, EmbeddedClients::new(self.log.clone()))?;
        streams.start()?;
        Ok(streams)
    }

    /// Every record of `topic`, once at least `expected` are there (or
    /// what arrived within 30 s).
    pub(crate) async fn read(&self, topic: &str, expected: usize) -> anyhow::Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let partitions = loop {
            if let Ok(d) = EmbeddedAdmin::new(self.log.clone()).describe_topic(topic).await {
                break (0..d.partitions.len() as i32).map(|p| TopicPartition::new(topic, p)).collect::<Vec<_>>();
            }
            anyhow::ensure!(Instant::now() < deadline, "topic {topic} never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut config = ConsumerConfig::without_group();
        config.set("auto.offset.reset", "earliest")?;
        let mut consumer = EmbeddedConsumer::new(self.log.clone(), config);
        consumer.assign(&partitions).await?;
        let mut out = Vec::new();
        while out.len() < expected && Instant::now() < deadline {
            out.extend(consumer.poll(Duration::from_millis(100)).await?);
        }
        Ok(out)
    }
}

/// Polls `f` until it returns `Some` (stores show writes once their task
/// commits, every `commit.interval.ms`), for at most 10 s.
pub(crate) async fn eventually<T>(mut f: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "the store never caught up with the output");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
