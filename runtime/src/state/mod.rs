//! State stores at the byte level: sorted maps of byte keys to byte values,
//! and the window and session layouts on top of them.
//!
//! # Layers
//!
//! Kafka Streams builds a state store as a stack of layers; this module is
//! the bottom of that stack and knows nothing of serdes, caches or topics:
//!
//! ```text
//!   typed store (serdes: K, V)             KeyValueStore<K, V>, WindowStore, SessionStore
//!   record cache                           coalesces updates, flushes them as one WriteBatch
//!   WindowBytesStore / SessionBytesStore   logical (key, time) -> physical key (this module)
//!   changelogging                          a BytesStore wrapper that logs each put/delete
//!   BytesStore                             RocksDbStore | InMemoryStore (this module)
//! ```
//!
//! Every layer above [`BytesStore`] talks to the one below through the same
//! trait and groups its changes into one [`WriteBatch`], so that a flush of
//! the record cache, the changelog offsets it corresponds to, and the expiry
//! of old window segments land in the store in one atomic write.
//!
//! # Correctness obligations of a [`BytesStore`]
//!
//! 1. **Order.** Keys are compared as unsigned bytes, lexicographically (the
//!    order of `[u8]`); the empty key is a valid key.
//! 2. **Atomic batches.** [`BytesStore::write`] applies the operations of a
//!    batch in order (a later operation on a key wins, a put after a
//!    `delete_range` that covers it survives) together with its changelog
//!    offsets. Readers on other threads see all of a batch or none of it, and
//!    after a crash either all of it or none of it is there.
//! 3. **Offsets with the data.** The changelog offsets are stored inside the
//!    store, in the same atomic write as the data (RocksDB: the column family
//!    `__plexus_offsets`; memory: a field under the same lock), so that the
//!    recorded offset always describes exactly the contents: restoring from
//!    it neither skips nor replays-out-of-order a change. A batch merges its
//!    offsets partition by partition into the stored ones; a batch without
//!    offsets leaves them as they are.
//! 4. **Read your writes.** Once `write` has returned, every `get` and every
//!    `range` started afterwards, on any thread, sees the batch.
//! 5. **Snapshots.** [`BytesStore::range`] returns the entries as of the
//!    call: writes that happen while the caller iterates are not seen. An
//!    error ends the iteration (the iterator yields it once, then `None`).
//! 6. **Durability.** After `write` returns, a process crash loses nothing
//!    of a persistent store (RocksDB: the write-ahead log is in the operating
//!    system's page cache); after [`BytesStore::flush`] returns, neither does
//!    a machine crash. A store that is not [persistent](BytesStore::persistent)
//!    starts empty: it is restored from its changelog's beginning.
//! 7. **Sharing.** All methods take `&self`; the stream thread writes while
//!    interactive queries read from other threads.
//!
//! The generic suite in [`testing`] checks these for any implementation.
//!
//! # Key layouts of the window and session stores
//!
//! Timestamps (milliseconds, `i64`) are stored as `u64` big-endian with the
//! sign bit flipped, so that their byte order is their numeric order,
//! negative ones included. A segment id is `timestamp.div_euclid(segment
//! interval)`, stored the same way. The segment interval is
//! `max(retention / 2, 60 000 ms)`, as in Kafka Streams.
//!
//! ```text
//!   window:  [segment id of start: 8][key bytes: n][window start: 8][sequence number: u32 BE]
//!   session: [segment id of end: 8][key bytes: n][session end: 8][session start: 8]
//! ```
//!
//! The key has no length prefix (its length is the entry's length minus the
//! fixed 20 or 24 bytes), so that the entries of one key are contiguous and
//! ordered by time within a segment. A scan for key `a` can meet entries of
//! other keys that begin with `a`; the stores decode every entry and compare
//! its key exactly. A whole segment is dropped with one `delete_range` once
//! its end is at or before the first live timestamp (observed stream time −
//! retention + 1). A window or session store owns its whole [`BytesStore`].

pub mod memory;
pub mod rocksdb;
pub mod session;
pub mod testing;
pub mod window;

pub mod overlay;
mod segments;
pub(crate) mod task_store;
pub mod typed;

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::Result;

pub use self::memory::InMemoryStore;
pub use self::overlay::OverlayStore;
pub use self::rocksdb::validate_name as validate_store_name;
pub use self::rocksdb::{RocksDbMemory, RocksDbStore};
pub use self::segments::PutOutcome;
pub use self::session::{SessionBytesStore, SessionKey};
pub use self::typed::{
    KeyValueStore, KeyValueStoreRef, ReadOnlyKeyValueStore, ReadOnlySessionStore, ReadOnlyWindowStore, SessionStore,
    SessionStoreRef, WindowStore, WindowStoreRef,
};
pub use self::window::{Duplicates, WindowBytesStore, WindowKey};

/// A sorted map of byte keys to byte values, shared between the stream
/// thread (writes) and readers (interactive queries): all methods take
/// `&self`.
///
/// Implementations must keep the obligations listed in the
/// [module documentation](self); [`testing::run_bytes_store_suite`] checks
/// them.
pub trait BytesStore: Send + Sync + std::fmt::Debug {
    /// The store's name, unique within its task.
    fn name(&self) -> &str;

    /// Whether the contents survive a restart of the process (and so need
    /// not be restored from the changelog's beginning).
    fn persistent(&self) -> bool;

    /// The value of `key`, if there is one.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;

    /// Entries with `from <= key < to` (as the bounds say), ascending or
    /// descending; a consistent snapshot as of the call. Bounds that admit
    /// no key give an empty iterator.
    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, direction: Direction) -> Result<BytesIter<'_>>;

    /// Applies every operation of the batch and records its changelog
    /// offsets atomically: after a crash either all of it or none is there.
    fn write(&self, batch: WriteBatch) -> Result<()>;

    /// The changelog offsets stored by the writes so far (changelog
    /// partition → next offset to restore from); empty for a new store.
    fn changelog_offsets(&self) -> Result<BTreeMap<i32, i64>>;

    /// The number of entries, estimated: RocksDB counts overwritten and
    /// deleted keys until a compaction removes them.
    fn approximate_num_entries(&self) -> Result<u64>;

    /// Makes everything written so far durable against a machine crash
    /// (RocksDB: syncs the write-ahead log). A no-op for a store that is not
    /// persistent.
    fn flush(&self) -> Result<()>;
}

/// The entries of a [`BytesStore::range`] scan. An `Err` item ends the scan.
pub type BytesIter<'a> = Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send + 'a>;

/// The order in which a scan returns entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending keys (or times).
    #[default]
    Forward,
    /// Descending keys (or times).
    Reverse,
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Removes `key` (nothing happens if it is absent).
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Removes every key with `from <= key < to`; `from < to` always holds.
    DeleteRange {
        /// The first key removed.
        from: Bytes,
        /// The first key after the range.
        to: Bytes,
    },
}

/// Operations and changelog offsets that a [`BytesStore`] applies
/// atomically, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Op>,
    changelog_offsets: BTreeMap<i32, i64>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.ops.push(Op::Put { key: key.into(), value: value.into() });
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl Into<Bytes>) {
        self.ops.push(Op::Delete { key: key.into() });
    }

    /// Removes every key with `from <= key < to`. An empty range
    /// (`from >= to`) adds nothing.
    pub fn delete_range(&mut self, from: impl Into<Bytes>, to: impl Into<Bytes>) {
        let (from, to) = (from.into(), to.into());
        if from < to {
            self.ops.push(Op::DeleteRange { from, to });
        }
    }

    /// Records that the store's contents, once this batch is written,
    /// correspond to changelog `partition` up to (excluding) `next_offset`.
    /// A later call for the same partition replaces the offset.
    pub fn set_changelog_offset(&mut self, partition: i32, next_offset: i64) {
        self.changelog_offsets.insert(partition, next_offset);
    }

    /// Appends the operations of `other` after this batch's and merges its
    /// changelog offsets (`other`'s win).
    pub fn append(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
        self.changelog_offsets.extend(other.changelog_offsets);
    }

    /// The number of operations (changelog offsets not counted).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether writing the batch would change nothing: no operations and no
    /// changelog offsets.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.changelog_offsets.is_empty()
    }

    /// The operations, in the order they are applied.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The changelog offsets the batch records.
    pub fn changelog_offsets(&self) -> &BTreeMap<i32, i64> {
        &self.changelog_offsets
    }

    /// The operations and the changelog offsets.
    pub fn into_parts(self) -> (Vec<Op>, BTreeMap<i32, i64>) {
        (self.ops, self.changelog_offsets)
    }
}

/// A key range in the form both backends use: an inclusive lower bound and
/// an exclusive upper bound (`None`: no upper bound).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyRange {
    /// The smallest key in the range.
    pub(crate) lower: Vec<u8>,
    /// The smallest key after the range.
    pub(crate) upper: Option<Vec<u8>>,
}

impl KeyRange {
    /// Normalizes the bounds; `None` if no key lies between them.
    ///
    /// The successor of a key `k` in byte order is `k` followed by `0x00`,
    /// which turns an excluded lower or an included upper bound into the
    /// other form without losing or adding a key.
    pub(crate) fn new(from: Bound<&[u8]>, to: Bound<&[u8]>) -> Option<Self> {
        let lower = match from {
            Bound::Included(k) => k.to_vec(),
            Bound::Excluded(k) => successor(k),
            Bound::Unbounded => Vec::new(),
        };
        let upper = match to {
            Bound::Included(k) => Some(successor(k)),
            Bound::Excluded(k) => Some(k.to_vec()),
            Bound::Unbounded => None,
        };
        match &upper {
            Some(upper) if lower >= *upper => None,
            _ => Some(Self { lower, upper }),
        }
    }
}

/// The smallest key greater than `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_range_turns_bounds_into_inclusive_exclusive() {
        let r = KeyRange::new(Bound::Excluded(&b"a"[..]), Bound::Included(&b"c"[..])).expect("non-empty");
        assert_eq!(r, KeyRange { lower: b"a\0".to_vec(), upper: Some(b"c\0".to_vec()) });
        let r = KeyRange::new(Bound::Unbounded, Bound::Unbounded).expect("non-empty");
        assert_eq!(r, KeyRange { lower: Vec::new(), upper: None });
    }

    #[test]
    fn key_range_is_none_when_no_key_fits() {
        assert_eq!(KeyRange::new(Bound::Included(&b"b"[..]), Bound::Excluded(&b"b"[..])), None);
        assert_eq!(KeyRange::new(Bound::Excluded(&b"b"[..]), Bound::Included(&b"b"[..])), None);
        assert_eq!(KeyRange::new(Bound::Included(&b"c"[..]), Bound::Included(&b"b"[..])), None);
        assert_eq!(KeyRange::new(Bound::Unbounded, Bound::Excluded(&b""[..])), None);
        assert!(KeyRange::new(Bound::Included(&b"b"[..]), Bound::Included(&b"b"[..])).is_some());
        // "a" < "a\0": excluding "a" still admits "a\0" below an upper bound of "a\0\0".
        assert!(KeyRange::new(Bound::Excluded(&b"a"[..]), Bound::Excluded(&b"a\0\0"[..])).is_some());
    }

    #[test]
    fn empty_delete_range_is_not_recorded() {
        let mut batch = WriteBatch::new();
        batch.delete_range("b", "b");
        batch.delete_range("c", "a");
        assert!(batch.is_empty());
        batch.set_changelog_offset(0, 7);
        assert!(!batch.is_empty());
        assert_eq!(batch.len(), 0);
    }
}
