//! State stores in a topology: what kind, where they live, whether they
//! have a changelog, and which processors use them.

use std::time::Duration;

/// What a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A sorted map of keys to values.
    KeyValue,
    /// Values per key and window start, kept for `retention`.
    Window {
        /// How long windows are kept (window size + grace at least).
        retention: Duration,
        /// Whether equal (key, window) puts are all kept (stream–stream joins).
        retain_duplicates: bool,
    },
    /// Values per key and session, kept for `retention`.
    Session {
        /// How long sessions are kept (inactivity gap + grace at least).
        retention: Duration,
    },
}

/// Describes a state store to add to a topology (Kafka's `StoreBuilder`):
/// persistent (RocksDB) by default, with a compacted changelog topic
/// `<application.id>-<name>-changelog`.
///
/// ```
/// use plexus_runtime::topology::StoreBuilder;
///
/// let counts = StoreBuilder::key_value("counts");
/// let scratch = StoreBuilder::key_value("scratch").in_memory().with_logging_disabled();
/// assert!(counts.is_persistent() && !scratch.is_persistent());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreBuilder {
    pub(crate) name: String,
    pub(crate) kind: StoreKind,
    pub(crate) persistent: bool,
    pub(crate) logging: bool,
}

impl StoreBuilder {
    fn new(name: &str, kind: StoreKind) -> Self {
        Self { name: name.to_owned(), kind, persistent: true, logging: true }
    }

    /// A key-value store.
    pub fn key_value(name: &str) -> Self {
        Self::new(name, StoreKind::KeyValue)
    }

    /// A window store keeping windows for `retention`.
    pub fn window(name: &str, retention: Duration, retain_duplicates: bool) -> Self {
        Self::new(name, StoreKind::Window { retention, retain_duplicates })
    }

    /// A session store keeping sessions for `retention`.
    pub fn session(name: &str, retention: Duration) -> Self {
        Self::new(name, StoreKind::Session { retention })
    }

    /// Keeps the store in memory instead of RocksDB: it is restored from
    /// its changelog's beginning on every start.
    #[must_use]
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// No changelog topic: the store's contents are lost with its task's
    /// directory (and never restored on another instance).
    #[must_use]
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the store holds.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Whether the store lives in RocksDB.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether the store has a changelog topic.
    pub fn is_logged(&self) -> bool {
        self.logging
    }

    /// The changelog topic of this store in an application.
    pub fn changelog_topic(&self, application_id: &str) -> String {
        format!("{application_id}-{}-changelog", self.name)
    }
}
