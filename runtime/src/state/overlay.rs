//! [`OverlayStore`]: a task's uncommitted writes over its store — the record
//! cache and the boundary of a commit in one.
//!
//! Writes land in the overlay, which keeps the newest value (or deletion)
//! per key, so that repeated updates of a key between two commits coalesce
//! into one store write and one changelog record (Kafka Streams' record
//! cache). Reads through the overlay see the overlay merged over the store.
//! At a commit the task takes the overlay's entries
//! ([`OverlayStore::dirty_entries`]) to write them to the changelog, then
//! applies them to the store in one atomic batch together with the
//! changelog offset they reached ([`OverlayStore::commit`]).
//!
//! The store underneath therefore only ever holds committed state: readers
//! that go to it directly (interactive queries) never see writes of a
//! transaction that may still abort, and after a crash the store and its
//! recorded changelog offset agree.
//!
//! Range deletions (a window store dropping expired segments) are kept as
//! ranges: they hide the store's entries in the range at once and are
//! applied before the overlay's puts at commit.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::{BytesIter, BytesStore, Direction, Op, WriteBatch};
use crate::error::Result;

/// A key and its uncommitted value (`None`: deleted).
pub type Dirty = (Bytes, Option<Bytes>);

#[derive(Debug, Default)]
struct Overlay {
    entries: BTreeMap<Bytes, Option<Bytes>>,
    deleted_ranges: Vec<(Bytes, Bytes)>,
    bytes: usize,
}

impl Overlay {
    fn in_deleted_range(&self, key: &[u8]) -> bool {
        self.deleted_ranges.iter().any(|(from, to)| from.as_ref() <= key && key < to.as_ref())
    }

    fn set(&mut self, key: Bytes, value: Option<Bytes>) {
        let added = key.len() + value.as_ref().map_or(0, Bytes::len);
        if let Some(old) = self.entries.insert(key.clone(), value) {
            self.bytes -= key.len() + old.as_ref().map_or(0, Bytes::len);
        }
        self.bytes += added;
    }
}

/// A store with a task's uncommitted writes on top (see the module docs).
#[derive(Debug)]
pub struct OverlayStore {
    inner: Arc<dyn BytesStore>,
    overlay: Mutex<Overlay>,
}

impl OverlayStore {
    /// An empty overlay over `inner`.
    pub fn new(inner: Arc<dyn BytesStore>) -> Self {
        Self { inner, overlay: Mutex::new(Overlay::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Overlay> {
        // Only the task's thread writes; a panic mid-update leaves at worst
        // an overlay that is dropped with the failed task.
        self.overlay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The committed store underneath.
    pub fn inner(&self) -> &Arc<dyn BytesStore> {
        &self.inner
    }

    /// Bytes of keys and values held (the record cache's size).
    pub fn dirty_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether nothing is waiting for a commit.
    pub fn is_clean(&self) -> bool {
        let o = self.lock();
        o.entries.is_empty() && o.deleted_ranges.is_empty()
    }

    /// The uncommitted writes, one per key (`None`: deleted), in key order:
    /// what the changelog must get before the commit.
    pub fn dirty_entries(&self) -> Vec<(Bytes, Option<Bytes>)> {
        self.lock().entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Applies the overlay to the store, atomically with the changelog
    /// offsets it reached, and empties it.
    pub fn commit(&self, changelog_offsets: &BTreeMap<i32, i64>) -> Result<()> {
        let mut o = self.lock();
        let mut batch = WriteBatch::new();
        for (from, to) in &o.deleted_ranges {
            batch.delete_range(from.clone(), to.clone());
        }
        for (k, v) in &o.entries {
            match v {
                Some(v) => batch.put(k.clone(), v.clone()),
                None => batch.delete(k.clone()),
            }
        }
        for (p, offset) in changelog_offsets {
            batch.set_changelog_offset(*p, *offset);
        }
        if !batch.is_empty() {
            self.inner.write(batch)?;
        }
        *o = Overlay::default();
        Ok(())
    }

    /// Drops the uncommitted writes (a task that failed or lost its
    /// partition; its transaction aborts).
    pub fn discard(&self) {
        *self.lock() = Overlay::default();
    }
}

impl BytesStore for OverlayStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn persistent(&self) -> bool {
        self.inner.persistent()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        {
            let o = self.lock();
            if let Some(v) = o.entries.get(key) {
                return Ok(v.clone());
            }
            if o.in_deleted_range(key) {
                return Ok(None);
            }
        }
        self.inner.get(key)
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, direction: Direction) -> Result<BytesIter<'_>> {
        let deleted = self.lock().deleted_ranges.clone();
        let overlay = Chunked {
            store: self,
            lower: from.map(Bytes::copy_from_slice),
            upper: to.map(Bytes::copy_from_slice),
            reverse: direction == Direction::Reverse,
            buf: std::collections::VecDeque::new(),
            done: false,
            chunk: 2,
        };
        let inner = self.inner.range(from, to, direction)?;
        Ok(Box::new(Merge {
            overlay: overlay.peekable(),
            inner: inner.peekable(),
            deleted,
            reverse: direction == Direction::Reverse,
        }))
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut o = self.lock();
        let (ops, _) = batch.into_parts();
        for op in ops {
            match op {
                Op::Put { key, value } => o.set(key, Some(value)),
                Op::Delete { key } => o.set(key, None),
                Op::DeleteRange { from, to } => {
                    let doomed: Vec<Bytes> =
                        o.entries.range(from.clone()..to.clone()).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        if let Some(v) = o.entries.remove(&k) {
                            o.bytes -= k.len() + v.as_ref().map_or(0, Bytes::len);
                        }
                    }
                    o.deleted_ranges.push((from, to));
                }
            }
        }
        Ok(())
    }

    fn changelog_offsets(&self) -> Result<BTreeMap<i32, i64>> {
        self.inner.changelog_offsets()
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
}

/// How many overlay entries a scan copies out per visit under the lock at
/// most; the first visit takes 2 (most scans are point lookups in a
/// window or session store), each next one twice as many.
const MAX_CHUNK: usize = 256;

/// The overlay's entries in a range, copied out a chunk at a time under
/// the lock, so that a scan that stops early (a window store looking for
/// its first live segment, say) costs what it reads, not the whole range.
struct Chunked<'a> {
    store: &'a OverlayStore,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    reverse: bool,
    buf: std::collections::VecDeque<Dirty>,
    done: bool,
    chunk: usize,
}

impl Chunked<'_> {
    fn refill(&mut self) {
        let empty = match (&self.lower, &self.upper) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a >= b,
            _ => false,
        };
        if empty {
            self.done = true;
            return;
        }
        let o = self.store.lock();
        let range = o.entries.range::<Bytes, _>((self.lower.clone(), self.upper.clone()));
        let want = self.chunk;
        self.chunk = (self.chunk * 2).min(MAX_CHUNK);
        let chunk: Vec<Dirty> = if self.reverse {
            range.rev().take(want).map(|(k, v)| (k.clone(), v.clone())).collect()
        } else {
            range.take(want).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        drop(o);
        if chunk.len() < want {
            self.done = true;
        }
        if let Some((last, _)) = chunk.last() {
            if self.reverse {
                self.upper = Bound::Excluded(last.clone());
            } else {
                self.lower = Bound::Excluded(last.clone());
            }
        }
        self.buf.extend(chunk);
    }
}

impl Iterator for Chunked<'_> {
    type Item = Dirty;

    fn next(&mut self) -> Option<Dirty> {
        if self.buf.is_empty() && !self.done {
            self.refill();
        }
        self.buf.pop_front()
    }
}

/// The overlay's entries merged over the store's, in scan order.
struct Merge<'a> {
    overlay: std::iter::Peekable<Chunked<'a>>,
    inner: std::iter::Peekable<BytesIter<'a>>,
    deleted: Vec<(Bytes, Bytes)>,
    reverse: bool,
}

impl Iterator for Merge<'_> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // Skip store entries hidden by a range deletion; pass errors on.
            let inner_key = match self.inner.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => return self.inner.next(),
                None => None,
            };
            if let Some(k) = &inner_key
                && self.deleted.iter().any(|(from, to)| from <= k && k < to)
            {
                self.inner.next();
                continue;
            }
            let overlay_key = self.overlay.peek().map(|(k, _)| k.clone());
            let take_overlay = match (&overlay_key, &inner_key) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(a), Some(b)) => {
                    if a == b {
                        self.inner.next(); // the overlay's value replaces the store's
                        true
                    } else {
                        (a < b) != self.reverse
                    }
                }
            };
            if take_overlay {
                match self.overlay.next() {
                    Some((k, Some(v))) => return Some(Ok((k, v))),
                    Some((_, None)) => continue, // deleted in the overlay
                    None => return None,
                }
            }
            return self.inner.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::state::InMemoryStore;

    #[derive(Debug, Clone)]
    enum Step {
        Put(u8, u8),
        Delete(u8),
        DeleteRange(u8, u8),
        Commit,
        Discard,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..16, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
            2 => (0u8..16).prop_map(Step::Delete),
            1 => (0u8..16, 0u8..16).prop_map(|(a, b)| Step::DeleteRange(a, b)),
            1 => Just(Step::Commit),
            1 => Just(Step::Discard),
        ]
    }

    fn key(k: u8) -> Bytes {
        Bytes::from(vec![b'k', k])
    }

    fn scan(store: &dyn BytesStore, direction: Direction) -> Vec<(Bytes, Bytes)> {
        store.range(Bound::Unbounded, Bound::Unbounded, direction).expect("range").map(|e| e.expect("entry")).collect()
    }

    proptest! {
        /// The overlay reads like the model of all writes; the store under it
        /// like the model of committed writes only.
        #[test]
        fn reads_merge_the_overlay_over_the_committed_store(steps in proptest::collection::vec(step(), 1..60)) {
            let inner: Arc<dyn BytesStore> = Arc::new(InMemoryStore::new("s"));
            let store = OverlayStore::new(Arc::clone(&inner));
            let mut committed: BTreeMap<Bytes, Bytes> = BTreeMap::new();
            let mut current = committed.clone();
            for (i, s) in steps.into_iter().enumerate() {
                let mut batch = WriteBatch::new();
                match s {
                    Step::Put(k, v) => {
                        batch.put(key(k), vec![v]);
                        current.insert(key(k), Bytes::from(vec![v]));
                    }
                    Step::Delete(k) => {
                        batch.delete(key(k));
                        current.remove(&key(k));
                    }
                    Step::DeleteRange(a, b) => {
                        batch.delete_range(key(a), key(b));
                        current.retain(|k, _| !(key(a) <= *k && *k < key(b)));
                    }
                    Step::Commit => {
                        let dirty = store.dirty_entries();
                        store.commit(&BTreeMap::from([(0, i as i64)])).expect("commit");
                        committed = current.clone();
                        prop_assert!(store.is_clean());
                        prop_assert_eq!(inner.changelog_offsets().expect("offsets")[&0], i as i64);
                        prop_assert!(dirty.iter().all(|(k, v)| current.get(k) == v.as_ref()));
                    }
                    Step::Discard => {
                        store.discard();
                        current = committed.clone();
                    }
                }
                store.write(batch).expect("write");
                let expected: Vec<(Bytes, Bytes)> = current.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(scan(&store, Direction::Forward), expected.clone());
                let mut reversed = expected;
                reversed.reverse();
                prop_assert_eq!(scan(&store, Direction::Reverse), reversed);
                for k in 0..16 {
                    prop_assert_eq!(store.get(&key(k)).expect("get"), current.get(&key(k)).cloned());
                }
                let under: Vec<(Bytes, Bytes)> = committed.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(scan(&*inner, Direction::Forward), under);
                let lower = key(4);
                let upper = key(9);
                let bounded: Vec<(Bytes, Bytes)> = store
                    .range(Bound::Excluded(&lower), Bound::Included(&upper), Direction::Forward)
                    .expect("range")
                    .map(|e| e.expect("entry"))
                    .collect();
                let model: Vec<(Bytes, Bytes)> = current
                    .range::<Bytes, _>((Bound::Excluded(lower.clone()), Bound::Included(upper.clone())))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(bounded, model);
            }
        }
    }

    #[test]
    fn repeated_updates_coalesce_into_one_dirty_entry() {
        let store = OverlayStore::new(Arc::new(InMemoryStore::new("s")));
        for v in 0..100u8 {
            let mut batch = WriteBatch::new();
            batch.put("k", vec![v]);
            store.write(batch).expect("write");
        }
        assert_eq!(store.dirty_entries(), [(Bytes::from("k"), Some(Bytes::from(vec![99])))]);
        assert_eq!(store.dirty_bytes(), 2);
    }
}
