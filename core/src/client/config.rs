//! Producer and consumer settings, with Kafka's keys and defaults.

use std::time::Duration;

use crate::config::ConfigError;

/// What a consumer does when it has no committed offset for a partition, or
/// its offset is out of range (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// From the log start.
    Earliest,
    /// From the high watermark: only new records (Kafka's default).
    Latest,
    /// Fail with an error.
    None,
}

use crate::types::IsolationLevel;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `client.id`.
    pub client_id: String,
    /// `linger.ms`: how long a batch waits for more records (Kafka 4: 5 ms).
    pub linger: Duration,
    /// `batch.size`: bytes at which a partition's batch is sent at once.
    pub batch_size: usize,
    /// `enable.idempotence`: producer id and sequence numbers, so a retried
    /// batch is never written twice.
    pub enable_idempotence: bool,
    /// `transactional.id`: makes the producer transactional. Producers
    /// with the same id fence each other: the newest one's
    /// `init_transactions` aborts what an older one left open, and the
    /// older one's writes are refused from then on.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: a transaction open longer is aborted by
    /// the coordinator (Kafka's default: 60 s).
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            client_id: "plexus-producer".into(),
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            enable_idempotence: true,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

impl ProducerConfig {
    /// Sets a key by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = known_key(key, PRODUCER_KEYS)?;
        match key {
            "client.id" => self.client_id = value.to_owned(),
            "linger.ms" => self.linger = Duration::from_millis(parse(key, value, "milliseconds")?),
            "batch.size" => self.batch_size = parse(key, value, "a byte count")?,
            "enable.idempotence" => self.enable_idempotence = parse(key, value, "true or false")?,
            "transactional.id" => self.transactional_id = Some(value.to_owned()),
            "transaction.timeout.ms" => {
                self.transaction_timeout = Duration::from_millis(parse(key, value, "milliseconds")?);
            }
            _ => unreachable!("known_key checked the key"),
        }
        Ok(())
    }
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `group.id`: the consumer group; `None` for a consumer that only
    /// uses `assign` and commits nothing.
    pub group_id: Option<String>,
    /// `client.id`.
    pub client_id: String,
    /// `auto.offset.reset`.
    pub auto_offset_reset: AutoOffsetReset,
    /// `enable.auto.commit`.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: a member that does not poll for this long
    /// leaves the group so that its partitions move on.
    pub max_poll_interval: Duration,
    /// `max.poll.records`.
    pub max_poll_records: usize,
    /// `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: usize,
    /// `partition.assignment.strategy`, by preference (Kafka's default:
    /// range, then cooperative-sticky).
    pub partition_assignment_strategy: Vec<String>,
    /// `isolation.level`: `read_uncommitted` (Kafka's default) returns
    /// every record; `read_committed` only committed transactions' records
    /// and reads no further than the last stable offset.
    pub isolation_level: IsolationLevel,
}

impl ConsumerConfig {
    /// Defaults for a member of `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Self { group_id: Some(group.into()), ..Self::without_group() }
    }

    /// Defaults for a consumer outside any group.
    pub fn without_group() -> Self {
        Self {
            group_id: None,
            client_id: "plexus-consumer".into(),
            auto_offset_reset: AutoOffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            max_poll_records: 500,
            max_partition_fetch_bytes: 1024 * 1024,
            partition_assignment_strategy: vec!["range".into(), "cooperative-sticky".into()],
            isolation_level: IsolationLevel::ReadUncommitted,
        }
    }

    /// Sets a key by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = known_key(key, CONSUMER_KEYS)?;
        let ms = |v: &str| parse::<u64>(key, v, "milliseconds").map(Duration::from_millis);
        match key {
            "group.id" => self.group_id = Some(value.to_owned()),
            "client.id" => self.client_id = value.to_owned(),
            "auto.offset.reset" => {
                self.auto_offset_reset = match value {
                    "earliest" => AutoOffsetReset::Earliest,
                    "latest" => AutoOffsetReset::Latest,
                    "none" => AutoOffsetReset::None,
                    _ => return Err(invalid(key, value, "earliest, latest or none")),
                }
            }
            "enable.auto.commit" => self.enable_auto_commit = parse(key, value, "true or false")?,
            "auto.commit.interval.ms" => self.auto_commit_interval = ms(value)?,
            "session.timeout.ms" => self.session_timeout = ms(value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = ms(value)?,
            "max.poll.interval.ms" => self.max_poll_interval = ms(value)?,
            "max.poll.records" => self.max_poll_records = parse(key, value, "a positive count")?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = parse(key, value, "a byte count")?,
            "partition.assignment.strategy" => {
                let names: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(bad) = names.iter().find(|n| crate::group::assignor::assignor_by_name(n).is_none()) {
                    return Err(invalid(key, bad, "range, roundrobin or cooperative-sticky"));
                }
                self.partition_assignment_strategy = names;
            }
            "isolation.level" => {
                self.isolation_level = match value {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => return Err(invalid(key, value, "read_uncommitted or read_committed")),
                }
            }
            _ => unreachable!("known_key checked the key"),
        }
        Ok(())
    }
}

const PRODUCER_KEYS: &[&str] =
    &["client.id", "linger.ms", "batch.size", "enable.idempotence", "transactional.id", "transaction.timeout.ms"];

const CONSUMER_KEYS: &[&str] = &[
    "group.id",
    "client.id",
    "auto.offset.reset",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "max.poll.records",
    "max.partition.fetch.bytes",
    "partition.assignment.strategy",
    "isolation.level",
];

/// The static name of a known key, or an error suggesting one.
fn known_key(key: &str, known: &[&'static str]) -> Result<&'static str, ConfigError> {
    known.iter().find(|k| **k == key).copied().ok_or_else(|| {
        let suggestion = known.iter().find(|k| k.split('.').next() == key.split('.').next()).copied();
        ConfigError::UnknownKey { key: key.to_owned(), suggestion }
    })
}

fn parse<T: std::str::FromStr>(key: &'static str, value: &str, expected: &'static str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| invalid(key, value, expected))
}

fn invalid(key: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::InvalidValue { key, value: value.to_owned(), expected }
}
