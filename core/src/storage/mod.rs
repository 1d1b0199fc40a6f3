//! Durable storage of partitions: segments, indexes, recovery, retention
//! and compaction, over a file-system seam that tests replace with a
//! fault-injecting one.
//!
//! - [`io`]: the [`Storage`] trait, the real file system, and its obligations.
//! - [`memory`]: an in-memory [`Storage`] that simulates crashes.
//! - [`index`], [`segment`]: one segment and its sparse indexes.
//! - [`partition_log`]: one partition: append, read, flush, recover, retain.
//! - [`cleaner`]: log compaction.
//! - `producer_state`, `txn_index`: idempotent and transactional producers, aborted transactions.
//! - [`checkpoint`]: the data directory's checkpoint files.

pub mod checkpoint;
pub mod cleaner;
pub(crate) mod index;
pub mod io;
pub mod memory;
pub mod partition_log;
pub(crate) mod producer_state;
pub(crate) mod segment;
pub(crate) mod txn_index;

pub use io::{FileRef, FileStorage, OpenMode, Storage, StorageFile};
pub use memory::MemStorage;
pub use partition_log::{AppendInfo, Corruption, FlushJob, OpenOptions, PartitionLog, ReadPlan, ReadResult};
