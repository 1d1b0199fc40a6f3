//! The option objects operators take, as in Kafka Streams: [`Consumed`],
//! [`Produced`], [`Grouped`], [`Materialized`], [`Joined`],
//! [`StreamJoined`] and [`Repartitioned`].
//!
//! Serdes are optional where the stream already knows them: a stream read
//! with `Consumed` carries its serdes along until an operator changes the
//! key or value type; an operator that needs a serde nobody gave fails the
//! build with a message naming it.

use std::sync::Arc;
use std::time::Duration;

use plexus_runtime::serde::Serde;

/// A serde held by an option object.
pub(crate) type SerdeRef<T> = Arc<dyn Serde<T>>;

/// Where a source starts without committed offsets (Kafka's `AutoOffsetReset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// From the beginning of each partition.
    Earliest,
    /// From the end: only records written after the application starts.
    Latest,
}

/// Picks a record's event time (Kafka's `TimestampExtractor`).
pub(crate) type Extractor<K, V> = Arc<dyn Fn(&K, &V, i64) -> i64 + Send + Sync>;

/// How a source topic is read (Kafka's `Consumed`): serdes, and where each
/// record's event time comes from.
pub struct Consumed<K, V> {
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
    pub(crate) extractor: Option<Extractor<K, V>>,
    pub(crate) offset_reset: Option<&'static str>,
}

impl<K, V> Consumed<K, V> {
    /// Reads keys and values with these serdes; a record's event time is
    /// its timestamp in the log.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde), extractor: None, offset_reset: None }
    }

    /// Where the topic's partitions start when the application has no
    /// committed offset for them (Kafka's `withOffsetResetPolicy`), instead
    /// of `auto.offset.reset`.
    ///
    /// ```
    /// # use plexus_dsl::{AutoOffsetReset, Consumed};
    /// # use plexus_runtime::serde::{I64Serde, StringSerde};
    /// // Only new readings; the value is the event time in ms.
    /// let consumed = Consumed::with(StringSerde, I64Serde)
    ///     .with_offset_reset_policy(AutoOffsetReset::Latest)
    ///     .with_timestamp_extractor(|_, ts, _| *ts);
    /// ```
    #[must_use]
    pub fn with_offset_reset_policy(mut self, policy: AutoOffsetReset) -> Self {
        self.offset_reset = Some(match policy {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
        });
        self
    }

    /// Takes each record's event time from `extractor(key, value,
    /// log_timestamp)` — a time field of the value, say. A negative time
    /// skips the record (counted as dropped).
    #[must_use]
    pub fn with_timestamp_extractor(mut self, extractor: impl Fn(&K, &V, i64) -> i64 + Send + Sync + 'static) -> Self {
        self.extractor = Some(Arc::new(extractor));
        self
    }
}

/// Serdes of a sink topic (Kafka's `Produced`).
pub struct Produced<K, V> {
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
}

impl<K, V> Produced<K, V> {
    /// Writes keys and values with these serdes.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde) }
    }
}

/// How a stream is grouped (Kafka's `Grouped`): the serdes of its
/// repartition topic, if one is needed, and a name for it.
pub struct Grouped<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Self { name: None, key_serde: None, value_serde: None }
    }
}

impl<K, V> Grouped<K, V> {
    /// Groups with these serdes.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { name: None, key_serde: Some(Arc::new(key_serde)), value_serde: Some(Arc::new(value_serde)) }
    }

    /// Names the grouping: its repartition topic is `<name>-repartition`.
    pub fn named(name: &str) -> Self {
        Self { name: Some(name.to_owned()), ..Self::default() }
    }

    /// Also names the grouping.
    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

/// How an aggregate or table is stored (Kafka's `Materialized`): the
/// store's name (queryable under it), serdes, RocksDB or memory, changelog,
/// retention of windows.
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) in_memory: bool,
    pub(crate) logging: bool,
    pub(crate) caching: bool,
    pub(crate) retention: Option<Duration>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Self {
            name: None,
            key_serde: None,
            value_serde: None,
            in_memory: false,
            logging: true,
            caching: true,
            retention: None,
        }
    }
}

impl<K, V> Materialized<K, V> {
    /// A store named `name`, queryable as such (Kafka's `Materialized.as`).
    pub fn named(name: &str) -> Self {
        Self { name: Some(name.to_owned()), ..Self::default() }
    }

    /// A store with these serdes and a generated name.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self::default().with_key_serde(key_serde).with_value_serde(value_serde)
    }

    /// The key serde.
    #[must_use]
    pub fn with_key_serde(mut self, serde: impl Serde<K> + 'static) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// The value serde.
    #[must_use]
    pub fn with_value_serde(mut self, serde: impl Serde<V> + 'static) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// Keeps the store in memory rather than RocksDB.
    #[must_use]
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// No changelog topic.
    #[must_use]
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// Forwards every update of an aggregation at once, rather than the
    /// latest per key once per commit (the record cache; on by default,
    /// sized by `cache.max.bytes.buffering`).
    #[must_use]
    pub fn with_caching_disabled(mut self) -> Self {
        self.caching = false;
        self
    }

    /// The record cache's coalescing (the default): an aggregation forwards
    /// the latest update per key once per commit.
    #[must_use]
    pub fn with_caching_enabled(mut self) -> Self {
        self.caching = true;
        self
    }

    /// `store` kept where and how this says: in memory, without changelog.
    pub(crate) fn configure(
        &self,
        mut store: plexus_runtime::topology::StoreBuilder,
    ) -> plexus_runtime::topology::StoreBuilder {
        if self.in_memory {
            store = store.in_memory();
        }
        if !self.logging {
            store = store.with_logging_disabled();
        }
        store
    }

    /// How long a window store keeps windows (at least window size + grace).
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }
}

/// Serdes for a stream–table join (Kafka's `Joined`): the stream's key and
/// value, used if the stream must be repartitioned first.
pub struct Joined<K, V> {
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Joined<K, V> {
    fn default() -> Self {
        Self { key_serde: None, value_serde: None, name: None }
    }
}

impl<K, V> Joined<K, V> {
    /// The stream side's serdes.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Some(Arc::new(key_serde)), value_serde: Some(Arc::new(value_serde)), name: None }
    }

    /// Names the join (and its repartition topic).
    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

/// Serdes and stores of a stream–stream join (Kafka's `StreamJoined`).
pub struct StreamJoined<K, V, VO> {
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) other_value_serde: Option<SerdeRef<VO>>,
    pub(crate) store_name: Option<String>,
    pub(crate) in_memory: bool,
}

impl<K, V, VO> Default for StreamJoined<K, V, VO> {
    fn default() -> Self {
        Self { key_serde: None, value_serde: None, other_value_serde: None, store_name: None, in_memory: false }
    }
}

impl<K, V, VO> StreamJoined<K, V, VO> {
    /// The key serde and both sides' value serdes.
    pub fn with(
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
        other_value_serde: impl Serde<VO> + 'static,
    ) -> Self {
        Self {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            other_value_serde: Some(Arc::new(other_value_serde)),
            store_name: None,
            in_memory: false,
        }
    }

    /// Names the join's two window stores `<name>-this-join-store` and
    /// `<name>-other-join-store`.
    #[must_use]
    pub fn with_store_name(mut self, name: &str) -> Self {
        self.store_name = Some(name.to_owned());
        self
    }

    /// Keeps the join's window stores in memory.
    #[must_use]
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }
}

/// An explicit repartition step (Kafka's `Repartitioned`).
pub struct Repartitioned<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) partitions: Option<i32>,
}

impl<K, V> Default for Repartitioned<K, V> {
    fn default() -> Self {
        Self { name: None, key_serde: None, value_serde: None, partitions: None }
    }
}

impl<K, V> Repartitioned<K, V> {
    /// Repartitions with these serdes.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Some(Arc::new(key_serde)), value_serde: Some(Arc::new(value_serde)), ..Self::default() }
    }

    /// Names the topic `<name>-repartition`.
    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Gives the topic this many partitions (else: as many as the input).
    #[must_use]
    pub fn with_number_of_partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}
