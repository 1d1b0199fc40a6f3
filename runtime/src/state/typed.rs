//! Typed views of the byte stores: what processors and interactive queries
//! use. Keys and values are serialized with the store's serdes; ranges are
//! in the order of the serialized keys, as in Kafka Streams.
//!
//! A processor reaches its task's stores through
//! [`ProcessorContext`](crate::processor::ProcessorContext) with a typed
//! reference ([`KeyValueStoreRef`], [`WindowStoreRef`], [`SessionStoreRef`])
//! that the topology handed out when the store was added; the view it gets
//! reads and writes the task's uncommitted state ([`super::OverlayStore`]).
//! Interactive queries get the same views over the committed stores,
//! read-only.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::{BytesStore, Direction, SessionBytesStore, SessionKey, WindowBytesStore, WriteBatch};
use crate::error::{Error, Result};
use crate::serde::Serde;

/// A key-value store's name and serdes: how a processor asks its context
/// for the store ([`crate::processor::ProcessorContext::key_value_store`]).
pub struct KeyValueStoreRef<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

/// A window store's name and serdes.
pub struct WindowStoreRef<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

/// A session store's name and serdes.
pub struct SessionStoreRef<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

macro_rules! store_ref {
    ($t:ident) => {
        impl<K, V> $t<K, V> {
            /// A reference to the store `name` with these serdes.
            pub fn new(name: &str, key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
                Self { name: name.into(), key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde) }
            }

            /// The store's name.
            pub fn name(&self) -> &str {
                &self.name
            }
        }

        impl<K, V> Clone for $t<K, V> {
            fn clone(&self) -> Self {
                Self {
                    name: Arc::clone(&self.name),
                    key_serde: Arc::clone(&self.key_serde),
                    value_serde: Arc::clone(&self.value_serde),
                }
            }
        }

        impl<K, V> std::fmt::Debug for $t<K, V> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.name)
            }
        }
    };
}

store_ref!(KeyValueStoreRef);
store_ref!(WindowStoreRef);
store_ref!(SessionStoreRef);

fn ser<T>(store: &str, what: &str, serde: &dyn Serde<T>, value: &T) -> Result<Bytes> {
    serde
        .serialize(value)
        .map_err(|e| Error::StoreSerde { store: store.to_owned(), reason: format!("{what}: {e}") })?
        .ok_or_else(|| Error::StoreSerde {
            store: store.to_owned(),
            reason: format!("{what} serialized to null; a store cannot hold null {what}s"),
        })
}

fn de<T>(store: &str, what: &str, serde: &dyn Serde<T>, bytes: &[u8]) -> Result<T> {
    serde
        .deserialize(Some(bytes))
        .map_err(|e| Error::StoreSerde { store: store.to_owned(), reason: format!("{what}: {e}") })
}

/// A typed key-value view over a byte store: read-write for a processor,
/// read-only for a query (the write methods are on [`KeyValueStore`]).
pub struct ReadOnlyKeyValueStore<'a, K, V> {
    pub(crate) bytes: &'a dyn BytesStore,
    pub(crate) store: &'a KeyValueStoreRef<K, V>,
}

impl<K, V> ReadOnlyKeyValueStore<'_, K, V> {
    fn key(&self, key: &K) -> Result<Bytes> {
        ser(&self.store.name, "key", &*self.store.key_serde, key)
    }

    fn entry(&self, k: &[u8], v: &[u8]) -> Result<(K, V)> {
        Ok((
            de(&self.store.name, "key", &*self.store.key_serde, k)?,
            de(&self.store.name, "value", &*self.store.value_serde, v)?,
        ))
    }

    /// The value of a key.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = self.key(key)?;
        self.bytes.get(&k)?.map(|v| de(&self.store.name, "value", &*self.store.value_serde, &v)).transpose()
    }

    /// Entries with `from <= key <= to` (serialized order), ascending.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let (from, to) = (self.key(from)?, self.key(to)?);
        self.scan(Bound::Included(&from), Bound::Included(&to), Direction::Forward)
    }

    /// Entries whose serialized key starts with the serialized `prefix`.
    pub fn prefix(&self, prefix: &K) -> Result<Vec<(K, V)>> {
        let p = self.key(prefix)?;
        let mut out = Vec::new();
        for entry in self.bytes.range(Bound::Included(&p), Bound::Unbounded, Direction::Forward)? {
            let (k, v) = entry?;
            if !k.starts_with(&p) {
                break;
            }
            out.push(self.entry(&k, &v)?);
        }
        Ok(out)
    }

    /// Every entry, ascending.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.scan(Bound::Unbounded, Bound::Unbounded, Direction::Forward)
    }

    /// Every entry, descending.
    pub fn reverse_all(&self) -> Result<Vec<(K, V)>> {
        self.scan(Bound::Unbounded, Bound::Unbounded, Direction::Reverse)
    }

    /// The number of entries, estimated.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        self.bytes.approximate_num_entries()
    }

    fn scan(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, direction: Direction) -> Result<Vec<(K, V)>> {
        self.bytes.range(from, to, direction)?.map(|e| e.and_then(|(k, v)| self.entry(&k, &v))).collect()
    }
}

/// A key-value store as a processor sees it: reads and writes.
pub struct KeyValueStore<'a, K, V> {
    pub(crate) read: ReadOnlyKeyValueStore<'a, K, V>,
}

impl<'a, K, V> std::ops::Deref for KeyValueStore<'a, K, V> {
    type Target = ReadOnlyKeyValueStore<'a, K, V>;
    fn deref(&self) -> &Self::Target {
        &self.read
    }
}

impl<K, V> KeyValueStore<'_, K, V> {
    /// Sets a key's value.
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        let k = self.read.key(key)?;
        let v = ser(&self.read.store.name, "value", &*self.read.store.value_serde, value)?;
        let mut batch = WriteBatch::new();
        batch.put(k, v);
        self.read.bytes.write(batch)
    }

    /// Removes a key; returns its old value.
    pub fn delete(&mut self, key: &K) -> Result<Option<V>> {
        let old = self.read.get(key)?;
        let mut batch = WriteBatch::new();
        batch.delete(self.read.key(key)?);
        self.read.bytes.write(batch)?;
        Ok(old)
    }
}

/// A typed window view: values per key and window start.
pub struct ReadOnlyWindowStore<'a, K, V> {
    pub(crate) bytes: &'a WindowBytesStore,
    pub(crate) store: &'a WindowStoreRef<K, V>,
}

impl<K, V> ReadOnlyWindowStore<'_, K, V> {
    fn key(&self, key: &K) -> Result<Bytes> {
        ser(&self.store.name, "key", &*self.store.key_serde, key)
    }

    fn value(&self, v: &[u8]) -> Result<V> {
        de(&self.store.name, "value", &*self.store.value_serde, v)
    }

    /// The value of one window of a key.
    pub fn fetch_window(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        self.bytes.fetch_window(&self.key(key)?, window_start)?.map(|v| self.value(&v)).transpose()
    }

    /// A key's windows starting in `[from, to]`, by start time: `(start, value)`.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        let k = self.key(key)?;
        self.bytes
            .fetch(&k, from, to, Direction::Forward)
            .map(|e| e.and_then(|(ts, v)| Ok((ts, self.value(&v)?))))
            .collect()
    }

    /// Every key's windows starting in `[from, to]`: `(key, start, value)`.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>> {
        self.bytes
            .fetch_all(from, to, Direction::Forward)
            .map(|e| {
                let (wk, v) = e?;
                Ok((de(&self.store.name, "key", &*self.store.key_serde, &wk.key)?, wk.window_start, self.value(&v)?))
            })
            .collect()
    }
}

/// A window store as a processor sees it.
pub struct WindowStore<'a, K, V> {
    pub(crate) read: ReadOnlyWindowStore<'a, K, V>,
}

impl<'a, K, V> std::ops::Deref for WindowStore<'a, K, V> {
    type Target = ReadOnlyWindowStore<'a, K, V>;
    fn deref(&self) -> &Self::Target {
        &self.read
    }
}

impl<K, V> WindowStore<'_, K, V> {
    /// Sets (or with `None` removes) the value of a key's window. Returns
    /// `false` if the window is older than the store's retention and was dropped.
    pub fn put(&mut self, key: &K, window_start: i64, value: Option<&V>) -> Result<bool> {
        let k = self.read.key(key)?;
        let v = value.map(|v| ser(&self.read.store.name, "value", &*self.read.store.value_serde, v)).transpose()?;
        let mut batch = WriteBatch::new();
        let outcome = self.read.bytes.put(&k, window_start, v.as_deref(), &mut batch)?;
        self.read.bytes.write(batch)?;
        Ok(outcome == super::PutOutcome::Written)
    }
}

/// A typed session view: values per key and session `[start, end]`.
pub struct ReadOnlySessionStore<'a, K, V> {
    pub(crate) bytes: &'a SessionBytesStore,
    pub(crate) store: &'a SessionStoreRef<K, V>,
}

impl<K, V> ReadOnlySessionStore<'_, K, V> {
    fn key(&self, key: &K) -> Result<Bytes> {
        ser(&self.store.name, "key", &*self.store.key_serde, key)
    }

    fn session(&self, s: &SessionKey, v: &[u8]) -> Result<(i64, i64, V)> {
        Ok((s.start, s.end, de(&self.store.name, "value", &*self.store.value_serde, v)?))
    }

    /// A key's sessions that end at or after `earliest_end` and start at or
    /// before `latest_start` (those a new event may merge with): `(start, end, value)`.
    pub fn find_sessions(&self, key: &K, earliest_end: i64, latest_start: i64) -> Result<Vec<(i64, i64, V)>> {
        let k = self.key(key)?;
        self.bytes
            .find_sessions(&k, earliest_end, latest_start, Direction::Forward)
            .map(|e| e.and_then(|(s, v)| self.session(&s, &v)))
            .collect()
    }

    /// Every session of a key.
    pub fn fetch(&self, key: &K) -> Result<Vec<(i64, i64, V)>> {
        let k = self.key(key)?;
        self.bytes.fetch(&k, Direction::Forward).map(|e| e.and_then(|(s, v)| self.session(&s, &v))).collect()
    }
}

/// A session store as a processor sees it.
pub struct SessionStore<'a, K, V> {
    pub(crate) read: ReadOnlySessionStore<'a, K, V>,
}

impl<'a, K, V> std::ops::Deref for SessionStore<'a, K, V> {
    type Target = ReadOnlySessionStore<'a, K, V>;
    fn deref(&self) -> &Self::Target {
        &self.read
    }
}

impl<K, V> SessionStore<'_, K, V> {
    /// Sets (or with `None` removes) a session's value. Returns `false` if
    /// the session is older than the retention and was dropped.
    pub fn put(&mut self, key: &K, start: i64, end: i64, value: Option<&V>) -> Result<bool> {
        let k = self.read.key(key)?;
        let v = value.map(|v| ser(&self.read.store.name, "value", &*self.read.store.value_serde, v)).transpose()?;
        let mut batch = WriteBatch::new();
        let outcome = self.read.bytes.put(&k, start, end, v.as_deref(), &mut batch)?;
        self.read.bytes.write(batch)?;
        Ok(outcome == super::PutOutcome::Written)
    }
}
