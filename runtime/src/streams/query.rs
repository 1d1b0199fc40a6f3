//! Interactive queries: read-only views of a running application's
//! key-value, window and session stores, over the committed contents of
//! the stores of this instance's tasks (in exactly-once mode, nothing a
//! transaction that may abort wrote), and of its global stores (whole
//! topics). Each call reads the tasks the instance has at that moment.

use std::sync::{Arc, PoisonError};

use super::Shared;
use crate::error::{Error, Result};
use crate::state::{
    BytesStore, Duplicates, KeyValueStoreRef, ReadOnlyKeyValueStore, ReadOnlySessionStore, ReadOnlyWindowStore,
    SessionBytesStore, SessionStoreRef, WindowBytesStore, WindowStoreRef,
};
use crate::topology::StoreKind;

/// The committed stores named `name`, one per local task, or the global
/// store of that name.
fn stores(shared: &Shared, name: &str) -> Vec<Arc<dyn BytesStore>> {
    if let Some(global) = shared.globals.get().and_then(|g| g.iter().find(|(spec, _)| spec.name() == name)) {
        return vec![Arc::clone(&global.1)];
    }
    let stores = shared.stores.lock().unwrap_or_else(PoisonError::into_inner);
    stores.get(name).map(|m| m.values().cloned().collect()).unwrap_or_default()
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn kind(shared: &Shared, name: &str) -> Result<StoreKind> {
    shared
        .topology
        .state_stores()
        .iter()
        .find(|s| s.name() == name)
        .map(crate::topology::StoreBuilder::kind)
        .ok_or_else(|| Error::Topology(format!("the topology has no state store {name:?}")))
}

/// An interactive query on a key-value store of a running application.
pub struct QueryableKeyValueStore<K, V> {
    pub(super) shared: Arc<Shared>,
    pub(super) store: KeyValueStoreRef<K, V>,
}

impl<K, V> QueryableKeyValueStore<K, V> {
    fn stores(&self) -> Vec<Arc<dyn BytesStore>> {
        stores(&self.shared, self.store.name())
    }

    /// The value of a key (from whichever local task holds it).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        for bytes in self.stores() {
            if let Some(v) = (ReadOnlyKeyValueStore { bytes: &*bytes, store: &self.store }).get(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Entries with `from <= key <= to`, task by task.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        for bytes in self.stores() {
            out.extend(ReadOnlyKeyValueStore { bytes: &*bytes, store: &self.store }.range(from, to)?);
        }
        Ok(out)
    }

    /// Entries whose serialized key starts with the serialized prefix.
    pub fn prefix(&self, prefix: &K) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        for bytes in self.stores() {
            out.extend(ReadOnlyKeyValueStore { bytes: &*bytes, store: &self.store }.prefix(prefix)?);
        }
        Ok(out)
    }

    /// Every entry, task by task.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        for bytes in self.stores() {
            out.extend(ReadOnlyKeyValueStore { bytes: &*bytes, store: &self.store }.all()?);
        }
        Ok(out)
    }

    /// The number of entries, estimated.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        let mut n = 0;
        for bytes in self.stores() {
            n += bytes.approximate_num_entries()?;
        }
        Ok(n)
    }
}

/// An interactive query on a window store of a running application.
pub struct QueryableWindowStore<K, V> {
    pub(super) shared: Arc<Shared>,
    pub(super) store: WindowStoreRef<K, V>,
}

impl<K, V> QueryableWindowStore<K, V> {
    fn each(&self, mut f: impl FnMut(ReadOnlyWindowStore<'_, K, V>) -> Result<()>) -> Result<()> {
        let StoreKind::Window { retention, retain_duplicates } = kind(&self.shared, self.store.name())? else {
            return Err(Error::Topology(format!("state store {:?} is not a window store", self.store.name())));
        };
        let duplicates = if retain_duplicates { Duplicates::Retain } else { Duplicates::Overwrite };
        for bytes in stores(&self.shared, self.store.name()) {
            let windows = WindowBytesStore::new(bytes, millis(retention), duplicates)?;
            f(ReadOnlyWindowStore { bytes: &windows, store: &self.store })?;
        }
        Ok(())
    }

    /// A key's windows starting in `[from, to]`: `(start, value)`.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        let mut out = Vec::new();
        self.each(|w| {
            out.extend(w.fetch(key, from, to)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Every key's windows starting in `[from, to]`: `(key, start, value)`.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>> {
        let mut out = Vec::new();
        self.each(|w| {
            out.extend(w.fetch_all(from, to)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// An interactive query on a session store of a running application.
pub struct QueryableSessionStore<K, V> {
    pub(super) shared: Arc<Shared>,
    pub(super) store: SessionStoreRef<K, V>,
}

impl<K, V> QueryableSessionStore<K, V> {
    /// Every session of a key: `(start, end, value)`.
    pub fn fetch(&self, key: &K) -> Result<Vec<(i64, i64, V)>> {
        let StoreKind::Session { retention } = kind(&self.shared, self.store.name())? else {
            return Err(Error::Topology(format!("state store {:?} is not a session store", self.store.name())));
        };
        let mut out = Vec::new();
        for bytes in stores(&self.shared, self.store.name()) {
            let sessions = SessionBytesStore::new(bytes, millis(retention))?;
            out.extend(ReadOnlySessionStore { bytes: &sessions, store: &self.store }.fetch(key)?);
        }
        Ok(out)
    }
}
