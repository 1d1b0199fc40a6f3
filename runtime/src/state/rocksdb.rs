//! [`RocksDbStore`]: a persistent [`BytesStore`], one RocksDB instance per
//! store, and [`RocksDbMemory`], the memory budget that all of them share.
//!
//! # On disk
//!
//! A store named `name` opened in `dir` is the RocksDB directory
//! `dir/name`, with two column families:
//!
//! - `default`: the entries, keys and values as given;
//! - `__plexus_offsets`: the changelog offsets, key = partition (`i32`
//!   big-endian, sign bit flipped), value = next offset to restore from
//!   (`i64` big-endian).
//!
//! A [`WriteBatch`] becomes one RocksDB write batch across both column
//! families, written with the write-ahead log on and without sync: RocksDB
//! writes a batch as one log record, so after a crash the entries and the
//! offsets that describe them are both there or both not. `atomic_flush`
//! keeps the two column families' memtables flushed together as well.
//! [`BytesStore::flush`] syncs the write-ahead log; memtables need not be
//! flushed for durability.
//!
//! # Memory
//!
//! Kafka Streams gives every store its own block cache and memtables, so
//! memory grows with the number of stores; here one [`RocksDbMemory`] is
//! shared by every store of the process (or of a runtime): one LRU block
//! cache holds data, index and filter blocks, and a write buffer manager
//! charges the memtables to that same cache, so the total stays near one
//! number however many stores are open.
//!
//! The store is closed, and its directory unlocked, when it is dropped;
//! an open scan borrows the store, so it cannot outlive it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRawIteratorWithThreadMode,
    Options, ReadOptions, WriteBufferManager, WriteOptions,
};
use bytes::Bytes;

use super::{BytesIter, BytesStore, Direction, KeyRange, Op, WriteBatch};
use crate::{Error, Result};

/// The column family of the changelog offsets.
const OFFSETS_CF: &str = "__plexus_offsets";

const MIB: usize = 1024 * 1024;

/// The memory budget shared by every [`RocksDbStore`] it is given to: one
/// LRU block cache of `total_bytes`, and memtables charged to that cache.
///
/// The split: all of `total_bytes` is the block cache's capacity; a quarter
/// of it is the memtable budget, charged to the cache (so memtables and
/// cached blocks together stay near `total_bytes`; when the memtables reach
/// their budget, RocksDB flushes the largest). Index and filter blocks live
/// in the cache as well, at high priority. Each store's memtable is an
/// eighth of the memtable budget, between 64 KiB and 16 MiB, with up to 3 of
/// them.
///
/// Cloning is cheap and shares the budget. Two runtimes in one process can
/// each have their own.
#[derive(Clone)]
pub struct RocksDbMemory {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    total_bytes: usize,
    memtable_bytes: usize,
    cache: Cache,
    write_buffers: WriteBufferManager,
}

impl RocksDbMemory {
    /// The default budget: 128 MiB in all, of which up to 32 MiB memtables.
    pub const DEFAULT_TOTAL_BYTES: usize = 128 * MIB;

    /// A budget of `total_bytes` for block cache and memtables together.
    pub fn new(total_bytes: usize) -> Self {
        let memtable_bytes = total_bytes / 4;
        let cache = Cache::new_lru_cache(total_bytes);
        // Not stalling writers: a stall would stop the stream thread until a
        // flush ends; going over the budget for a moment is the lesser harm.
        let write_buffers =
            WriteBufferManager::new_write_buffer_manager_with_cache(memtable_bytes, false, cache.clone());
        Self { inner: Arc::new(MemoryInner { total_bytes, memtable_bytes, cache, write_buffers }) }
    }

    /// The whole budget, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.inner.total_bytes
    }

    /// The part of the budget for memtables, in bytes.
    pub fn memtable_bytes(&self) -> usize {
        self.inner.memtable_bytes
    }

    /// Bytes in use in the block cache, memtables included.
    pub fn usage(&self) -> usize {
        self.inner.cache.get_usage()
    }

    /// Bytes in use by memtables.
    pub fn memtable_usage(&self) -> usize {
        self.inner.write_buffers.get_usage()
    }

    /// The size of one store's memtable.
    fn write_buffer_size(&self) -> usize {
        (self.inner.memtable_bytes / 8).clamp(64 * 1024, 16 * MIB)
    }

    /// The options of a column family of a store.
    fn cf_options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.inner.cache);
        table.set_block_size(4 * 1024);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);

        let mut options = Options::default();
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_size(self.write_buffer_size());
        options.set_max_write_buffer_number(3);
        options.set_compression_type(DBCompressionType::Lz4);
        options
    }

    /// The options of a store's database.
    fn db_options(&self) -> Options {
        let mut options = self.cf_options();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_atomic_flush(true);
        options.set_write_buffer_manager(&self.inner.write_buffers);
        // RocksDB's own info log, per store: keep it small.
        options.set_max_log_file_size(MIB);
        options.set_keep_log_file_num(2);
        options
    }
}

impl Default for RocksDbMemory {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TOTAL_BYTES)
    }
}

impl fmt::Debug for RocksDbMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbMemory")
            .field("total_bytes", &self.total_bytes())
            .field("memtable_bytes", &self.memtable_bytes())
            .field("usage", &self.usage())
            .field("memtable_usage", &self.memtable_usage())
            .finish()
    }
}

/// A persistent [`BytesStore`]: a RocksDB instance in its own directory.
pub struct RocksDbStore {
    name: String,
    path: PathBuf,
    db: DB,
    write_options: WriteOptions,
}

impl RocksDbStore {
    /// Opens the store `name` in the directory `dir/name`, creating it if
    /// it does not exist.
    ///
    /// `name` must be usable as one directory name. A directory that
    /// RocksDB cannot open (damaged, held by another open store, written
    /// with other column families) gives [`Error::Open`] naming it.
    pub fn open(dir: impl AsRef<Path>, name: &str, memory: &RocksDbMemory) -> Result<Self> {
        validate_name(name)?;
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            store: name.to_owned(),
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(name);
        let families = [
            ColumnFamilyDescriptor::new(::rocksdb::DEFAULT_COLUMN_FAMILY_NAME, memory.cf_options()),
            ColumnFamilyDescriptor::new(OFFSETS_CF, memory.cf_options()),
        ];
        let db = DB::open_cf_descriptors(&memory.db_options(), &path, families).map_err(|source| Error::Open {
            store: name.to_owned(),
            path: path.clone(),
            source,
        })?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(false);
        write_options.disable_wal(false);
        let store = Self { name: name.to_owned(), path, db, write_options };
        // Fails only if RocksDB did not create the column family asked for.
        store.offsets_cf()?;
        tracing::debug!(store = %store.name, path = %store.path.display(), "opened RocksDB state store");
        Ok(store)
    }

    /// The store's RocksDB directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn offsets_cf(&self) -> Result<&ColumnFamily> {
        self.db.cf_handle(OFFSETS_CF).ok_or_else(|| Error::Corrupt {
            store: self.name.clone(),
            reason: format!("the column family {OFFSETS_CF} is missing"),
        })
    }

    fn store_error(&self, operation: &'static str) -> impl FnOnce(::rocksdb::Error) -> Error + '_ {
        move |source| Error::Store { store: self.name.clone(), operation, source }
    }
}

/// Refuses names that are not a single, ordinary path component.
/// Checks that a store name can be a directory name.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it names a directory relative to the state directory"
    } else if name.contains(['/', '\\', '\0']) {
        "it contains a path separator or a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidStoreName { name: name.to_owned(), reason })
}

/// The key of a partition in the offsets column family; ordered like `i32`.
fn offset_key(partition: i32) -> [u8; 4] {
    ((partition as u32) ^ (1 << 31)).to_be_bytes()
}

impl fmt::Debug for RocksDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbStore").field("name", &self.name).field("path", &self.path).finish_non_exhaustive()
    }
}

impl BytesStore for RocksDbStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn persistent(&self) -> bool {
        true
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let value = self.db.get(key).map_err(self.store_error("get"))?;
        Ok(value.map(Bytes::from))
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, direction: Direction) -> Result<BytesIter<'_>> {
        let Some(range) = KeyRange::new(from, to) else {
            return Ok(Box::new(std::iter::empty()));
        };
        // Without an explicit snapshot, a RocksDB iterator reads the
        // database as of its creation: the snapshot the trait promises.
        let mut options = ReadOptions::default();
        if !range.lower.is_empty() {
            options.set_iterate_lower_bound(range.lower);
        }
        if let Some(upper) = range.upper {
            options.set_iterate_upper_bound(upper);
        }
        let mut raw = self.db.raw_iterator_opt(options);
        match direction {
            Direction::Forward => raw.seek_to_first(),
            Direction::Reverse => raw.seek_to_last(),
        }
        Ok(Box::new(RocksDbIter { store: self, raw, direction, started: false, done: false }))
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let (ops, offsets) = batch.into_parts();
        let mut rocks = ::rocksdb::WriteBatch::default();
        for op in ops {
            match op {
                Op::Put { key, value } => rocks.put(key, value),
                Op::Delete { key } => rocks.delete(key),
                Op::DeleteRange { from, to } => rocks.delete_range(from, to),
            }
        }
        if !offsets.is_empty() {
            let cf = self.offsets_cf()?;
            for (partition, offset) in offsets {
                rocks.put_cf(cf, offset_key(partition), offset.to_be_bytes());
            }
        }
        self.db.write_opt(rocks, &self.write_options).map_err(self.store_error("write"))
    }

    fn changelog_offsets(&self) -> Result<BTreeMap<i32, i64>> {
        let cf = self.offsets_cf()?;
        let mut offsets = BTreeMap::new();
        for item in self.db.iterator_cf(cf, ::rocksdb::IteratorMode::Start) {
            let (key, value) = item.map_err(self.store_error("read of the changelog offsets"))?;
            let (Ok(key), Ok(value)) = (<[u8; 4]>::try_from(&*key), <[u8; 8]>::try_from(&*value)) else {
                return Err(Error::Corrupt {
                    store: self.name.clone(),
                    reason: format!(
                        "an entry of {OFFSETS_CF} has a {}-byte key and a {}-byte value instead of 4 and 8",
                        key.len(),
                        value.len()
                    ),
                });
            };
            let partition = (u32::from_be_bytes(key) ^ (1 << 31)) as i32;
            offsets.insert(partition, i64::from_be_bytes(value));
        }
        Ok(offsets)
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        let estimate = self
            .db
            .property_int_value(::rocksdb::properties::ESTIMATE_NUM_KEYS)
            .map_err(self.store_error("read of the estimated number of keys"))?;
        Ok(estimate.unwrap_or(0))
    }

    fn flush(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(self.store_error("sync of the write-ahead log"))
    }
}

/// A range scan of a [`RocksDbStore`].
struct RocksDbIter<'a> {
    store: &'a RocksDbStore,
    raw: DBRawIteratorWithThreadMode<'a, DB>,
    direction: Direction,
    /// Whether the iterator has been moved past its first position.
    started: bool,
    /// Whether the scan ended (or failed, and the error was returned).
    done: bool,
}

impl Iterator for RocksDbIter<'_> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.started {
            match self.direction {
                Direction::Forward => self.raw.next(),
                Direction::Reverse => self.raw.prev(),
            }
        }
        self.started = true;
        if let Some((key, value)) = self.raw.item() {
            return Some(Ok((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value))));
        }
        self.done = true;
        match self.raw.status() {
            Ok(()) => None,
            Err(source) => Some(Err(self.store.store_error("range scan")(source))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_keys_sort_like_partitions() {
        let partitions = [i32::MIN, -1, 0, 1, 7, i32::MAX];
        let keys: Vec<[u8; 4]> = partitions.iter().map(|&p| offset_key(p)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names_must_be_one_path_component() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            assert!(matches!(validate_name(bad), Err(Error::InvalidStoreName { .. })), "{bad:?}");
        }
        for good in ["counts", "KSTREAM-AGGREGATE-STATE-STORE-0000000003", "a.b"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn memory_budget_splits_a_quarter_to_memtables() {
        let memory = RocksDbMemory::new(64 * MIB);
        assert_eq!(memory.total_bytes(), 64 * MIB);
        assert_eq!(memory.memtable_bytes(), 16 * MIB);
        assert_eq!(memory.write_buffer_size(), 2 * MIB);
        assert_eq!(RocksDbMemory::new(0).write_buffer_size(), 64 * 1024);
        assert_eq!(RocksDbMemory::default().total_bytes(), 128 * MIB);
    }
}
