//! The Plexus stream-processing runtime: the Processor API, topologies and
//! the tasks that run them, state stores and their changelogs, processing
//! guarantees, and interactive queries.
//!
//! For now it holds the [`state`] stores at the byte level: key-value stores
//! on RocksDB or in memory, and the window and session layouts on top.
//!
//! ```
//! use std::ops::Bound;
//! use std::sync::Arc;
//!
//! use plexus_runtime::state::{BytesStore, Direction, RocksDbMemory, RocksDbStore, WriteBatch};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let memory = RocksDbMemory::default(); // one budget for every store of the process
//! let store = Arc::new(RocksDbStore::open(dir.path(), "counts", &memory).unwrap());
//!
//! let mut batch = WriteBatch::new();
//! batch.put("alice", "3");
//! batch.put("bob", "1");
//! batch.set_changelog_offset(0, 42); // atomically with the data
//! store.write(batch).unwrap();
//!
//! assert_eq!(store.get(b"alice").unwrap().as_deref(), Some(&b"3"[..]));
//! let keys: Vec<_> = store
//!     .range(Bound::Unbounded, Bound::Unbounded, Direction::Reverse)
//!     .unwrap()
//!     .map(|entry| entry.unwrap().0)
//!     .collect();
//! assert_eq!(keys, ["bob", "alice"]);
//! assert_eq!(store.changelog_offsets().unwrap()[&0], 42);
//! ```

pub mod error;
pub mod processor;
pub mod serde;
mod source_sink;
pub mod state;
pub mod streams;
mod task;
pub mod test_driver;
pub mod topology;

pub use error::{Error, Result};
pub use processor::{Processor, ProcessorContext, Record};
pub use streams::{
    ProcessingGuarantee, QueryableKeyValueStore, QueryableSessionStore, QueryableWindowStore, Streams, StreamsConfig,
    StreamsMetrics, StreamsState,
};
pub use test_driver::TopologyTestDriver;
pub use topology::{StoreBuilder, Topology};
