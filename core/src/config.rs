//! Topic names and topic-level configuration, with Kafka's key names and rules.
//!
//! [`validate_topic_name`] applies exactly the rules of Kafka's
//! `org.apache.kafka.common.internals.Topic.validate`. [`TopicConfig`] holds the
//! per-topic settings (`retention.ms`, `cleanup.policy`, ...) as typed fields,
//! parses and validates them from the strings a user or a Kafka admin client
//! sends, prints them back as Kafka would, and persists only the values that
//! differ from the defaults (see [`TopicConfig::overrides`]).
//!
//! Defaults are Kafka's, with these deliberate differences:
//!
//! * `flush.messages` is 1 and `flush.ms` is 0 (Kafka: never; it leaves
//!   durability to replication and the page cache). In Plexus an
//!   acknowledged write is an fsynced write, and the log group-commits
//!   concurrent appends so that this costs one fsync per batch of appends,
//!   not per record. Larger values relax this as in Kafka; see
//!   [`TopicConfig::durable_ack`].
//! * `segment.bytes` may be as small as 1024 bytes ([`MIN_SEGMENT_BYTES`]);
//!   Kafka 4 requires 1 MiB. Tests roll segments at 1 KiB, and anything smaller
//!   makes no sense when a record batch header alone is 61 bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest topic name Kafka accepts, in characters.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// The internal topic holding committed consumer-group offsets.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The internal topic holding transaction coordinator state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// The smallest `segment.bytes` Plexus accepts (Kafka 4 requires 1 MiB).
pub const MIN_SEGMENT_BYTES: i32 = 1024;

/// The rule of topic naming that a name breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicNameRule {
    /// The name is empty.
    Empty,
    /// The name is "." or "..", which would name a directory's self or parent.
    Reserved,
    /// The name is longer than [`MAX_TOPIC_NAME_LEN`] characters.
    TooLong {
        /// The name's length in characters.
        len: usize,
    },
    /// The name contains a character other than ASCII letters, digits, '.', '_' and '-'.
    IllegalChar {
        /// The first offending character.
        ch: char,
    },
}

impl fmt::Display for TopicNameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = MAX_TOPIC_NAME_LEN;
        match self {
            Self::Empty => write!(f, "it is empty; give the topic a name of 1 to {MAX} characters"),
            Self::Reserved => f.write_str("\".\" and \"..\" are reserved; choose another name"),
            Self::TooLong { len } => {
                write!(f, "it has {len} characters, more than {MAX}; shorten it")
            }
            Self::IllegalChar { ch } => write!(
                f,
                "it may contain only ASCII letters, digits, '.', '_' and '-', not {ch:?}; \
                 rename it using only those"
            ),
        }
    }
}

/// What is wrong with a topic name or topic configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A topic name breaks one of Kafka's naming rules.
    #[error("topic name {name:?} is invalid: {rule}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// The rule it breaks.
        rule: TopicNameRule,
    },
    /// A configuration key that topics do not have.
    #[error("unknown topic config key {key:?}; {}", unknown_key_hint(*.suggestion))]
    UnknownKey {
        /// The key as given.
        key: String,
        /// The closest known key, if one is within edit distance 3.
        suggestion: Option<&'static str>,
    },
    /// A value that does not parse or is out of range for its key.
    #[error("topic config {key} cannot be {value:?}: it must be {expected}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// The type and range the key accepts.
        expected: &'static str,
    },
    /// `min.compaction.lag.ms` is greater than `max.compaction.lag.ms`.
    #[error(
        "topic config min.compaction.lag.ms ({min}) is greater than max.compaction.lag.ms ({max}); \
         lower the first or raise the second"
    )]
    CompactionLagConflict {
        /// The value of `min.compaction.lag.ms`.
        min: i64,
        /// The value of `max.compaction.lag.ms`.
        max: i64,
    },
    /// A config assignment that is not of the form `key=value`.
    #[error(
        "config assignment {input:?} is not of the form key=value; \
         write it as, for example, retention.ms=86400000"
    )]
    InvalidAssignment {
        /// The assignment as given.
        input: String,
    },
}

fn unknown_key_hint(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(key) => format!("did you mean {key:?}?"),
        None => format!("use one of: {}", KEYS.join(", ")),
    }
}

/// Checks a topic name against Kafka's rules: not empty, not "." or "..", at
/// most 249 characters, and only ASCII letters, digits, '.', '_' and '-'.
pub fn validate_topic_name(name: &str) -> Result<(), ConfigError> {
    let len = name.chars().count();
    let rule = if name.is_empty() {
        TopicNameRule::Empty
    } else if name == "." || name == ".." {
        TopicNameRule::Reserved
    } else if len > MAX_TOPIC_NAME_LEN {
        TopicNameRule::TooLong { len }
    } else if let Some(ch) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        TopicNameRule::IllegalChar { ch }
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidTopicName { name: name.to_owned(), rule })
}

/// Whether `name` is one of Kafka's internal topics ([`CONSUMER_OFFSETS_TOPIC`],
/// [`TRANSACTION_STATE_TOPIC`]), which clients may read but not produce to or delete.
pub fn is_internal_topic(name: &str) -> bool {
    name == CONSUMER_OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

/// Whether `name` contains '.' or '_', which may collide with another topic in
/// metric names; Kafka warns users to use one or the other, not both.
pub fn has_collision_chars(name: &str) -> bool {
    name.contains(['.', '_'])
}

/// Whether two topic names become equal when '.' and '_' are treated as the
/// same character, as they are in metric names (Kafka's `Topic.hasCollision`).
/// Identical names collide too; check for an existing topic first.
pub fn collides_with(a: &str, b: &str) -> bool {
    let unify = |c: u8| if c == b'.' { b'_' } else { c };
    a.len() == b.len() && a.bytes().map(unify).eq(b.bytes().map(unify))
}

/// Splits a `key=value` assignment (as given to `--config`) at its first '=',
/// trimming whitespace around both; the key must not be empty.
pub fn parse_assignment(s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => Err(ConfigError::InvalidAssignment { input: s.to_owned() }),
    }
}

/// `cleanup.policy`: what happens to a partition's old segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Delete segments older than `retention.ms` or beyond `retention.bytes`.
    pub delete: bool,
    /// Keep only the latest record for each key.
    pub compact: bool,
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            (false, true) => "delete",
            (false, false) => "",
        })
    }
}

impl FromStr for CleanupPolicy {
    type Err = ConfigError;

    /// Parses "delete", "compact", "compact,delete" or "delete,compact".
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let mut policy = CleanupPolicy { delete: false, compact: false };
        for item in s.split(',').map(str::trim) {
            let flag = match item {
                "delete" => &mut policy.delete,
                "compact" => &mut policy.compact,
                _ => return Err(Key::cleanup_policy.invalid(s)),
            };
            if std::mem::replace(flag, true) {
                return Err(Key::cleanup_policy.invalid(s));
            }
        }
        Ok(policy)
    }
}

/// Defines a string-valued enumeration with Kafka's spelling of each value.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident for $key:ident {
        $($(#[$vdoc:meta])* $variant:ident = $text:literal,)*
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// The value as Kafka spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ConfigError;

            fn from_str(s: &str) -> Result<Self, ConfigError> {
                match s.trim() {
                    $($text => Ok(Self::$variant),)*
                    _ => Err(Key::$key.invalid(s)),
                }
            }
        }
    };
}

string_enum! {
    /// `message.timestamp.type`: where a record's timestamp comes from.
    MessageTimestampType for message_timestamp_type {
        /// The timestamp the producer set.
        CreateTime = "CreateTime",
        /// The log's clock when the batch was appended.
        LogAppendTime = "LogAppendTime",
    }
}

string_enum! {
    /// `compression.type`: the compression of batches as stored.
    TopicCompression for compression_type {
        /// Keep whatever codec the producer used.
        Producer = "producer",
        /// Store batches uncompressed.
        Uncompressed = "uncompressed",
        /// Recompress with gzip.
        Gzip = "gzip",
        /// Recompress with Snappy.
        Snappy = "snappy",
        /// Recompress with LZ4.
        Lz4 = "lz4",
        /// Recompress with Zstandard.
        Zstd = "zstd",
    }
}

/// One key as `topic describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The key, e.g. `retention.ms`.
    pub name: String,
    /// The value as Kafka prints it.
    pub value: String,
    /// Whether the value is the default (not overridden for this topic).
    pub is_default: bool,
    /// One line saying what the key controls.
    pub doc: &'static str,
}

/// Defines [`TopicConfig`], its defaults and its keys from one table. Each row
/// is a documentation line, then `field: type = default, "key", parser,
/// "what the key accepts"`, where the parser turns a value string into
/// `Option<type>`. Rows are in alphabetical order of key.
macro_rules! topic_config {
    ($(
        #[doc = $doc:literal]
        $field:ident: $ty:ty = $default:expr, $key:literal, $parse:expr, $expected:expr;
    )*) => {
        /// The per-topic settings, with Kafka's keys. Fields are public for
        /// reading; after changing them directly, call [`TopicConfig::validate`].
        ///
        /// Serializes (with serde) as the JSON object of its [`overrides`](Self::overrides).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(try_from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
        pub struct TopicConfig {
            $(#[doc = concat!("`", $key, "`:", $doc)] pub $field: $ty,)*
        }

        /// The one place where defaults are set.
        impl Default for TopicConfig {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        /// A key of [`TopicConfig`], named after its field.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Key { $($field,)* }

        impl Key {
            const ALL: &[Key] = &[$(Key::$field,)*];

            const fn name(self) -> &'static str {
                match self { $(Key::$field => $key,)* }
            }

            fn doc(self) -> &'static str {
                match self { $(Key::$field => $doc.trim_ascii(),)* }
            }

            fn expected(self) -> &'static str {
                match self { $(Key::$field => $expected,)* }
            }
        }

        impl TopicConfig {
            /// Parses `value` into the field of `key`; `None` if it is invalid.
            fn parse_into(&mut self, key: Key, value: &str) -> Option<()> {
                match key { $(Key::$field => self.$field = ($parse)(value)?,)* }
                Some(())
            }

            /// The value of `key` as Kafka prints it.
            fn value(&self, key: Key) -> String {
                match key { $(Key::$field => self.$field.print(),)* }
            }
        }
    };
}

const MS_AT_LEAST_0: &str = "an integer number of milliseconds, at least 0";

topic_config! {
    /// What happens to old segments: "delete" drops them, "compact" keeps each key's latest.
    cleanup_policy: CleanupPolicy = CleanupPolicy { delete: true, compact: false },
        "cleanup.policy", parse_str, "\"delete\", \"compact\" or \"compact,delete\"";
    /// Compression of stored batches: "producer" keeps the producer's, others recompress.
    compression_type: TopicCompression = TopicCompression::Producer, "compression.type",
        parse_str, "one of producer, uncompressed, gzip, snappy, lz4, zstd";
    /// How long tombstones are kept after compaction, so that consumers see the deletes.
    delete_retention_ms: i64 = 86_400_000, "delete.retention.ms", at_least(0), MS_AT_LEAST_0;
    /// How long a deleted segment's files stay on disk before they are removed.
    file_delete_delay_ms: i64 = 60_000, "file.delete.delay.ms", at_least(0), MS_AT_LEAST_0;
    /// Fsync after this many messages; 1 (Plexus' default) acknowledges only what is on disk.
    flush_messages: i64 = 1, "flush.messages", at_least(1),
        "an integer number of messages, at least 1 (1 means fsync before acknowledging)";
    /// Fsync once data has been unflushed this long; matters only if flush.messages > 1.
    flush_ms: i64 = 0, "flush.ms", at_least(0), MS_AT_LEAST_0;
    /// Bytes of records between offset-index entries; smaller gives finer seeks.
    index_interval_bytes: i32 = 4096, "index.interval.bytes", at_least(0),
        "an integer number of bytes from 0 to 2147483647";
    /// Longest time a record may stay uncompacted before its segment must be compacted.
    max_compaction_lag_ms: i64 = i64::MAX, "max.compaction.lag.ms", at_least(1),
        "an integer number of milliseconds, at least 1";
    /// Largest record batch the topic accepts, after compression.
    max_message_bytes: i32 = 1_048_588, "max.message.bytes", at_least(0),
        "an integer number of bytes from 0 to 2147483647";
    /// Whether timestamps are the producer's (CreateTime) or the log's (LogAppendTime).
    message_timestamp_type: MessageTimestampType = MessageTimestampType::CreateTime,
        "message.timestamp.type", parse_str, "CreateTime or LogAppendTime";
    /// Fraction of the log that must be uncompacted before the cleaner compacts it.
    min_cleanable_dirty_ratio: f64 = 0.5, "min.cleanable.dirty.ratio", ratio,
        "a decimal number from 0 to 1";
    /// Shortest time a record stays uncompacted, so that consumers can see every update.
    min_compaction_lag_ms: i64 = 0, "min.compaction.lag.ms", at_least(0), MS_AT_LEAST_0;
    /// Replicas that must have a write before an acks=all produce succeeds.
    min_insync_replicas: i32 = 1, "min.insync.replicas", at_least(1),
        "an integer from 1 to 2147483647";
    /// Size a partition may reach before its oldest segments are deleted; -1: no limit.
    retention_bytes: i64 = -1, "retention.bytes", parse_str,
        "an integer number of bytes (-1 means unlimited)";
    /// How long records are kept before their segment is deleted; -1: forever.
    retention_ms: i64 = 604_800_000, "retention.ms", at_least(-1),
        "an integer number of milliseconds, at least -1 (-1 means unlimited)";
    /// Size at which a partition's active segment is closed and a new one started.
    segment_bytes: i32 = 1_073_741_824, "segment.bytes", at_least(MIN_SEGMENT_BYTES),
        "an integer number of bytes from 1024 to 2147483647";
    /// Largest size of a segment's offset and time index files.
    segment_index_bytes: i32 = 10_485_760, "segment.index.bytes", at_least(4),
        "an integer number of bytes from 4 to 2147483647";
    /// Age at which the active segment is rolled even if not full, for retention to act.
    segment_ms: i64 = 604_800_000, "segment.ms", at_least(1),
        "an integer number of milliseconds, at least 1";
    /// Whether an out-of-sync replica may become leader, losing acknowledged writes.
    unclean_leader_election_enable: bool = false, "unclean.leader.election.enable", boolean,
        "true or false";
}

impl Key {
    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.iter().copied().find(|k| k.name() == name)
    }

    fn invalid(self, value: &str) -> ConfigError {
        ConfigError::InvalidValue { key: self.name(), value: value.to_owned(), expected: self.expected() }
    }
}

/// Every topic config key, in alphabetical order.
pub const KEYS: &[&str] = &{
    let mut names = [""; Key::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Key::ALL[i].name();
        i += 1;
    }
    names
};

/// Parses any value of a type, allowing surrounding whitespace as Kafka does.
fn parse_str<T: FromStr>(value: &str) -> Option<T> {
    value.trim().parse().ok()
}

/// A parser of numbers of at least `min`.
fn at_least<T: FromStr + PartialOrd>(min: T) -> impl Fn(&str) -> Option<T> {
    move |value| parse_str(value).filter(|n| *n >= min)
}

/// Parses a fraction from 0 to 1.
fn ratio(value: &str) -> Option<f64> {
    parse_str(value).filter(|r| (0.0..=1.0).contains(r))
}

/// Parses a boolean, ignoring case as Kafka does.
fn boolean(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Prints a value as Kafka does.
trait Print {
    fn print(&self) -> String;
}

impl Print for f64 {
    /// Debug prints "0.5" and "1.0", as Java's `Double.toString` does.
    fn print(&self) -> String {
        format!("{self:?}")
    }
}

macro_rules! print_with_display {
    ($($ty:ty),*) => { $(impl Print for $ty { fn print(&self) -> String { self.to_string() } })* };
}
print_with_display!(i32, i64, bool, CleanupPolicy, TopicCompression, MessageTimestampType);

/// Levenshtein distance between two strings, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn unknown_key(key: &str) -> ConfigError {
    let lower = key.to_ascii_lowercase();
    let suggestion = KEYS
        .iter()
        .map(|known| (edit_distance(&lower, known), *known))
        .filter(|(distance, _)| *distance <= 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known);
    ConfigError::UnknownKey { key: key.to_owned(), suggestion }
}

impl TopicConfig {
    /// Builds a config from `key=value` pairs over the defaults, as Kafka's
    /// `CreateTopics` does; a later pair for the same key wins.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for (key, value) in pairs {
            config.set(key, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Rebuilds a config persisted with [`overrides`](Self::overrides).
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_pairs(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Parses and sets one key. Checks the value's type and range but not its
    /// consistency with other keys; [`from_pairs`](Self::from_pairs) and
    /// [`validate`](Self::validate) do that once all keys are set.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = Key::from_name(key).ok_or_else(|| unknown_key(key))?;
        self.parse_into(key, value).ok_or_else(|| key.invalid(value))
    }

    /// The value of `key` as Kafka prints it, or `None` for an unknown key.
    pub fn get(&self, key: &str) -> Option<String> {
        Key::from_name(key).map(|k| self.value(k))
    }

    /// Checks every field's range (fields may have been changed directly) and
    /// that `min.compaction.lag.ms` is not above `max.compaction.lag.ms`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut scratch = Self::default();
        for &key in Key::ALL {
            scratch.set(key.name(), &self.value(key))?;
        }
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms {
            return Err(ConfigError::CompactionLagConflict {
                min: self.min_compaction_lag_ms,
                max: self.max_compaction_lag_ms,
            });
        }
        Ok(())
    }

    /// Every key with its value, whether it is the default, and its documentation.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        let defaults = Self::default();
        Key::ALL
            .iter()
            .copied()
            .map(|key| {
                let value = self.value(key);
                ConfigEntry {
                    name: key.name().to_owned(),
                    is_default: value == defaults.value(key),
                    value,
                    doc: key.doc(),
                }
            })
            .collect()
    }

    /// The keys whose values differ from the defaults: what to persist.
    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.entries().into_iter().filter(|e| !e.is_default).map(|e| (e.name, e.value)).collect()
    }

    /// Whether appends are acknowledged only once fsynced (`flush.messages` is
    /// 1, the Plexus default; concurrent appends share one fsync). Otherwise,
    /// as in Kafka, appends are acknowledged when written and fsynced after
    /// `flush.messages` messages or `flush.ms` milliseconds.
    pub fn durable_ack(&self) -> bool {
        self.flush_messages == 1
    }

    /// Whether the log stamps batches with its own clock (`LogAppendTime`).
    pub fn log_append_time(&self) -> bool {
        self.message_timestamp_type == MessageTimestampType::LogAppendTime
    }
}

impl TryFrom<BTreeMap<String, String>> for TopicConfig {
    type Error = ConfigError;

    fn try_from(overrides: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_overrides(&overrides)
    }
}

impl From<TopicConfig> for BTreeMap<String, String> {
    fn from(config: TopicConfig) -> Self {
        config.overrides()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for name in ["a", "foo.bar_baz-1", "ABC123", "...", "-", &"a".repeat(249)] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
        let rule = |name: &str| match validate_topic_name(name) {
            Err(ConfigError::InvalidTopicName { rule, .. }) => rule,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(rule(""), TopicNameRule::Empty);
        assert_eq!(rule("."), TopicNameRule::Reserved);
        assert_eq!(rule(".."), TopicNameRule::Reserved);
        assert_eq!(rule(&"a".repeat(250)), TopicNameRule::TooLong { len: 250 });
        assert_eq!(rule("a b"), TopicNameRule::IllegalChar { ch: ' ' });
        assert_eq!(rule("a/b"), TopicNameRule::IllegalChar { ch: '/' });
        assert_eq!(rule("é"), TopicNameRule::IllegalChar { ch: 'é' });
        let message = validate_topic_name("a b").expect_err("invalid").to_string();
        assert!(message.starts_with("topic name \"a b\" is invalid: it may contain only ASCII"));

        assert!(is_internal_topic("__consumer_offsets") && is_internal_topic("__transaction_state"));
        assert!(!is_internal_topic("__other"));
        assert!(collides_with("a.b", "a_b") && collides_with("a_b", "a_b"));
        assert!(!collides_with("a.b", "a-b") && !collides_with("a.b", "a.bc"));
        assert!(has_collision_chars("a.b") && !has_collision_chars("a-b"));
    }

    #[test]
    fn defaults() {
        let config = TopicConfig::default();
        assert_eq!(config.get("retention.ms").as_deref(), Some("604800000"));
        assert_eq!(config.get("max.compaction.lag.ms").as_deref(), Some("9223372036854775807"));
        assert_eq!(config.get("min.cleanable.dirty.ratio").as_deref(), Some("0.5"));
        assert_eq!(config.get("cleanup.policy").as_deref(), Some("delete"));
        assert_eq!(config.get("nope"), None);
        assert!(config.durable_ack());
        assert_eq!(config.validate(), Ok(()));
        assert!(config.overrides().is_empty());
        let entries = config.entries();
        assert_eq!(entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), KEYS);
        assert!(entries.iter().all(|e| e.is_default && !e.doc.is_empty()));
        assert!(KEYS.windows(2).all(|w| w[0] < w[1]), "KEYS are sorted and unique");
    }

    #[test]
    fn every_key_accepts_valid_and_rejects_invalid_values() {
        // (key, valid value, as printed, invalid values)
        let cases: [(&str, &str, &str, &[&str]); 19] = [
            ("cleanup.policy", "compact", "compact", &["", "none", "compact,"]),
            ("compression.type", "zstd", "zstd", &["ZSTD", "brotli"]),
            ("delete.retention.ms", "5", "5", &["-1", "x"]),
            ("file.delete.delay.ms", "0", "0", &["-1", "1.5"]),
            ("flush.messages", "100", "100", &["0", "-1"]),
            ("flush.ms", "1000", "1000", &["-1", ""]),
            ("index.interval.bytes", "0", "0", &["-1", "2147483648"]),
            ("max.compaction.lag.ms", "1", "1", &["0", "1e3"]),
            ("max.message.bytes", "2048", "2048", &["-1", "big"]),
            ("message.timestamp.type", " LogAppendTime", "LogAppendTime", &["logappendtime"]),
            ("min.cleanable.dirty.ratio", "1", "1.0", &["1.5", "-0.1", "NaN"]),
            ("min.compaction.lag.ms", "10", "10", &["-5", "ten"]),
            ("min.insync.replicas", "2", "2", &["0", "2.0"]),
            ("retention.bytes", "-7", "-7", &["1 GB", "9223372036854775808"]),
            ("retention.ms", "-1", "-1", &["-2", "forever"]),
            ("segment.bytes", "1024", "1024", &["1023", "2147483648"]),
            ("segment.index.bytes", "4", "4", &["3", "x"]),
            ("segment.ms", "1", "1", &["0", "x"]),
            ("unclean.leader.election.enable", "TRUE", "true", &["yes", "1"]),
        ];
        assert_eq!(cases.map(|c| c.0), KEYS);
        for (key, valid, printed, invalid) in cases {
            let mut config = TopicConfig::default();
            config.set(key, valid).unwrap_or_else(|e| panic!("{key}={valid}: {e}"));
            assert_eq!(config.get(key).as_deref(), Some(printed), "{key}");
            let overrides: Vec<_> = config.overrides().into_iter().collect();
            assert_eq!(overrides, [(key.to_owned(), printed.to_owned())]);
            for bad in invalid {
                match config.set(key, bad) {
                    Err(ConfigError::InvalidValue { key: k, value, .. }) => {
                        assert_eq!((k, value.as_str()), (key, *bad));
                    }
                    other => panic!("{key}={bad}: {other:?}"),
                }
            }
            assert_eq!(config.get(key).as_deref(), Some(printed), "rejected values change nothing");
        }
        let message = TopicConfig::default().set("retention.ms", "x").expect_err("invalid");
        assert_eq!(
            message.to_string(),
            "topic config retention.ms cannot be \"x\": it must be an integer number of \
             milliseconds, at least -1 (-1 means unlimited)"
        );
    }

    #[test]
    fn cleanup_policies() {
        let parse = |s: &str| s.parse::<CleanupPolicy>();
        assert_eq!(parse("delete"), Ok(CleanupPolicy { delete: true, compact: false }));
        assert_eq!(parse("compact"), Ok(CleanupPolicy { delete: false, compact: true }));
        let both = CleanupPolicy { delete: true, compact: true };
        assert_eq!(parse("compact,delete"), Ok(both));
        assert_eq!(parse("delete, compact"), Ok(both));
        assert_eq!(both.to_string(), "compact,delete");
        for bad in ["", "delete,delete", "compact;delete", "Delete"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let neither = CleanupPolicy { delete: false, compact: false };
        let config = TopicConfig { cleanup_policy: neither, ..TopicConfig::default() };
        let err = config.validate();
        assert!(matches!(err, Err(ConfigError::InvalidValue { key: "cleanup.policy", .. })));
    }

    #[test]
    fn unknown_keys() {
        let unknown = |key: &str| TopicConfig::default().set(key, "1").expect_err("unknown key");
        let err = unknown("retention.msec");
        let expected = ConfigError::UnknownKey { key: "retention.msec".into(), suggestion: Some("retention.ms") };
        assert_eq!(err, expected);
        assert_eq!(err.to_string(), "unknown topic config key \"retention.msec\"; did you mean \"retention.ms\"?");
        let err = unknown("Segment.MS");
        assert!(matches!(err, ConfigError::UnknownKey { suggestion: Some("segment.ms"), .. }));
        let err = unknown("colour");
        assert!(matches!(err, ConfigError::UnknownKey { suggestion: None, .. }));
        assert!(err.to_string().contains("use one of: cleanup.policy, compression.type,"));
    }

    #[test]
    fn overrides_round_trip() {
        let pairs = [
            ("cleanup.policy", "delete,compact"),
            ("retention.ms", "-1"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("flush.messages", "1000"),
            ("compression.type", "lz4"),
            ("segment.ms", "604800000"),
        ];
        let config = TopicConfig::from_pairs(pairs).expect("valid pairs");
        assert!(!config.durable_ack());
        let overrides = config.overrides();
        assert_eq!(overrides.len(), 5, "segment.ms is the default: {overrides:?}");
        assert_eq!(TopicConfig::from_overrides(&overrides).as_ref(), Ok(&config));

        let json = serde_json::to_string(&config).expect("serializes");
        assert_eq!(json, serde_json::to_string(&overrides).expect("serializes"));
        assert_eq!(serde_json::from_str::<TopicConfig>(&json).expect("deserializes"), config);
        assert_eq!(serde_json::to_string(&TopicConfig::default()).expect("serializes"), "{}");
        assert!(serde_json::from_str::<TopicConfig>(r#"{"retention.ms":"soon"}"#).is_err());
    }

    #[test]
    fn cross_checks() {
        let pairs = [("min.compaction.lag.ms", "10"), ("max.compaction.lag.ms", "5")];
        let err = TopicConfig::from_pairs(pairs);
        assert_eq!(err, Err(ConfigError::CompactionLagConflict { min: 10, max: 5 }));
        let config = TopicConfig { segment_bytes: 10, ..TopicConfig::default() };
        let err = config.validate();
        assert!(matches!(err, Err(ConfigError::InvalidValue { key: "segment.bytes", .. })));
    }

    #[test]
    fn assignments() {
        assert_eq!(parse_assignment("retention.ms=1"), Ok(("retention.ms".into(), "1".into())));
        assert_eq!(parse_assignment(" a = b=c "), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_assignment("k="), Ok(("k".into(), String::new())));
        for bad in ["retention.ms", "=1", " =1"] {
            let err = ConfigError::InvalidAssignment { input: bad.into() };
            assert_eq!(parse_assignment(bad), Err(err));
        }
    }
}
