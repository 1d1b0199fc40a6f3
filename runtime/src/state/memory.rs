//! [`InMemoryStore`]: a [`BytesStore`] in a `BTreeMap` behind a lock.
//!
//! The whole store is one `RwLock`: a batch is applied under the write lock,
//! so readers see all of it or none of it. A range scan copies the matching
//! entries into a `Vec` under the read lock and iterates the copy: that is
//! the snapshot the trait promises, and the lock is not held while the caller
//! iterates (a caller that iterates slowly, or writes while it iterates,
//! cannot block or deadlock the stream thread). The copy is cheap per entry:
//! keys and values are [`Bytes`], reference-counted.
//!
//! The store is not persistent. It records the changelog offsets of its
//! writes like any store, but a new store is empty and has no offsets, so it
//! is always restored from its changelog's beginning.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::{BytesIter, BytesStore, Direction, KeyRange, Op, WriteBatch};
use crate::{Error, Result};

/// A [`BytesStore`] held in memory; lost when the process ends.
#[derive(Debug)]
pub struct InMemoryStore {
    name: String,
    state: RwLock<State>,
}

/// What the lock protects: the entries and the offsets they correspond to.
#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<Bytes, Bytes>,
    changelog_offsets: BTreeMap<i32, i64>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), state: RwLock::new(State::default()) }
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, State>> {
        self.state.read().map_err(|_| Error::Poisoned { store: self.name.clone() })
    }

    fn write_lock(&self) -> Result<RwLockWriteGuard<'_, State>> {
        self.state.write().map_err(|_| Error::Poisoned { store: self.name.clone() })
    }
}

/// The entries of `entries` within `range`.
fn entries_in<'a>(
    entries: &'a BTreeMap<Bytes, Bytes>,
    range: &KeyRange,
) -> std::collections::btree_map::Range<'a, Bytes, Bytes> {
    let upper = match &range.upper {
        Some(upper) => Bound::Excluded(upper.as_slice()),
        None => Bound::Unbounded,
    };
    // `KeyRange::new` guarantees lower < upper, so `range` cannot panic.
    entries.range::<[u8], _>((Bound::Included(range.lower.as_slice()), upper))
}

impl BytesStore for InMemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn persistent(&self) -> bool {
        false
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.read()?.entries.get(key).cloned())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, direction: Direction) -> Result<BytesIter<'_>> {
        let Some(range) = KeyRange::new(from, to) else {
            return Ok(Box::new(std::iter::empty()));
        };
        let state = self.read()?;
        let matching = entries_in(&state.entries, &range).map(|(k, v)| Ok((k.clone(), v.clone())));
        let snapshot: Vec<Result<(Bytes, Bytes)>> = match direction {
            Direction::Forward => matching.collect(),
            Direction::Reverse => matching.rev().collect(),
        };
        Ok(Box::new(snapshot.into_iter()))
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let (ops, offsets) = batch.into_parts();
        let mut state = self.write_lock()?;
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    state.entries.insert(key, value);
                }
                Op::Delete { key } => {
                    state.entries.remove(&key);
                }
                Op::DeleteRange { from, to } => {
                    let Some(range) = KeyRange::new(Bound::Included(&from[..]), Bound::Excluded(&to[..])) else {
                        continue;
                    };
                    let doomed: Vec<Bytes> = entries_in(&state.entries, &range).map(|(k, _)| k.clone()).collect();
                    for key in doomed {
                        state.entries.remove(&key);
                    }
                }
            }
        }
        state.changelog_offsets.extend(offsets);
        Ok(())
    }

    fn changelog_offsets(&self) -> Result<BTreeMap<i32, i64>> {
        Ok(self.read()?.changelog_offsets.clone())
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self.read()?.entries.len() as u64)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
