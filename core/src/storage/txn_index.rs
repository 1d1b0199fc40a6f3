//! The transaction index: the transactions aborted in a partition, which
//! `read_committed` fetches return so that consumers can skip their records.
//!
//! As Kafka's `.txnindex`: one file per segment, `<base>.txnindex`, holding
//! the aborted transactions whose abort marker lies in that segment, 34
//! bytes each (big-endian):
//!
//! ```text
//! version i16 = 0 | producer_id i64 | first_offset i64 | last_offset i64 | last_stable_offset i64
//! ```
//!
//! `last_offset` is the marker's offset; `last_stable_offset` the partition's
//! last stable offset when the marker was written. Entries are appended
//! unsynced; a segment's file is synced when the segment rolls and on a
//! clean shutdown, and after a crash every entry at or after the newest
//! producer-state snapshot is rebuilt from the log (see
//! [`super::producer_state`]), so a lost or torn append costs nothing.
//!
//! The whole index is also held in memory (aborts are rare; an entry is a
//! few dozen bytes), ordered by marker offset.

use std::collections::BTreeMap;
use std::path::Path;

use super::io::{OpenMode, Storage};
use super::segment::file_name;
use crate::error::{Error, IoContext, Result};
use crate::record::AbortedTransaction;
use crate::types::Offset;

/// File suffix of transaction indexes.
pub(crate) const TXN_INDEX_SUFFIX: &str = ".txnindex";

const ENTRY: usize = 34;

/// The aborted transactions of one partition.
#[derive(Debug, Default)]
pub(crate) struct TxnIndex {
    /// By marker offset: the entry and its last stable offset.
    entries: BTreeMap<Offset, (AbortedTransaction, Offset)>,
}

impl TxnIndex {
    /// Reads the index files of these segments. A torn last entry (a crash
    /// during an append) is ignored; recovery rebuilds it.
    pub(crate) fn load(storage: &dyn Storage, dir: &Path, bases: impl Iterator<Item = Offset>) -> Result<Self> {
        let mut index = Self::default();
        for base in bases {
            let path = dir.join(file_name(base, TXN_INDEX_SUFFIX));
            let bytes = match storage.read_all(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(path, e)),
            };
            for chunk in bytes.chunks_exact(ENTRY) {
                let (entry, lso) = decode(chunk);
                index.entries.insert(entry.last_offset, (entry, lso));
            }
        }
        Ok(index)
    }

    /// Records an abort whose marker was appended to the segment at
    /// `segment_base`, in memory and in that segment's file (unsynced).
    pub(crate) fn append(
        &mut self,
        storage: &dyn Storage,
        dir: &Path,
        segment_base: Offset,
        entry: AbortedTransaction,
        last_stable_offset: Offset,
    ) -> Result<()> {
        self.entries.insert(entry.last_offset, (entry, last_stable_offset));
        let path = dir.join(file_name(segment_base, TXN_INDEX_SUFFIX));
        let file = storage.open(&path, OpenMode::CreateOrOpen).at(&path)?;
        let len = file.len().at(&path)?;
        let at = len - len % ENTRY as u64;
        file.write_at(&encode(&entry, last_stable_offset), at).at(&path)
    }

    /// Adds an entry in memory only (recovery; see [`Self::rewrite`]).
    pub(crate) fn insert(&mut self, entry: AbortedTransaction, last_stable_offset: Offset) {
        self.entries.insert(entry.last_offset, (entry, last_stable_offset));
    }

    /// Forgets the entries whose marker is at or after `offset`.
    pub(crate) fn truncate_from(&mut self, offset: Offset) {
        self.entries.split_off(&offset);
    }

    /// Forgets the entries whose marker is below `offset` (retention).
    pub(crate) fn remove_below(&mut self, offset: Offset) {
        self.entries = self.entries.split_off(&offset);
    }

    /// Rewrites, durably, the files of the segments `[base, next_base)` in
    /// `segments` from memory: after recovery rebuilt their entries.
    pub(crate) fn rewrite(&self, storage: &dyn Storage, dir: &Path, segments: &[(Offset, Offset)]) -> Result<()> {
        for &(base, next_base) in segments {
            let path = dir.join(file_name(base, TXN_INDEX_SUFFIX));
            let entries: Vec<u8> =
                self.entries.range(base..next_base).flat_map(|(_, (e, lso))| encode(e, *lso)).collect();
            if entries.is_empty() {
                match storage.remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(path, e)),
                    _ => {}
                }
            } else {
                storage.write_atomic(&path, &entries).at(&path)?;
            }
        }
        Ok(())
    }

    /// Syncs the file of the segment at `base`, if it has one.
    pub(crate) fn sync(storage: &dyn Storage, dir: &Path, base: Offset) -> Result<()> {
        let path = dir.join(file_name(base, TXN_INDEX_SUFFIX));
        if !storage.exists(&path) {
            return Ok(());
        }
        let file = storage.open(&path, OpenMode::Existing).at(&path)?;
        file.sync().map_err(|source| Error::FsyncFailed { path, source })
    }

    /// The aborted transactions that overlap `[from, upto)`: whose marker is
    /// at or after `from` and whose first record is before `upto`, ordered
    /// by first offset (what a fetch from `from` up to `upto` must return).
    pub(crate) fn overlapping(&self, from: Offset, upto: Offset) -> Vec<AbortedTransaction> {
        let mut out: Vec<AbortedTransaction> =
            self.entries.range(from..).map(|(_, (e, _))| *e).filter(|e| e.first_offset < upto).collect();
        out.sort_by_key(|e| e.first_offset);
        out
    }

    /// Every aborted transaction with a marker in `[from, upto)`.
    pub(crate) fn in_range(&self, from: Offset, upto: Offset) -> Vec<AbortedTransaction> {
        self.entries.range(from..upto).map(|(_, (e, _))| *e).collect()
    }
}

fn encode(e: &AbortedTransaction, last_stable_offset: Offset) -> [u8; ENTRY] {
    let mut out = [0; ENTRY];
    out[2..10].copy_from_slice(&e.producer_id.to_be_bytes());
    out[10..18].copy_from_slice(&e.first_offset.to_be_bytes());
    out[18..26].copy_from_slice(&e.last_offset.to_be_bytes());
    out[26..34].copy_from_slice(&last_stable_offset.to_be_bytes());
    out
}

fn decode(b: &[u8]) -> (AbortedTransaction, Offset) {
    let i64_at = |at: usize| {
        let mut a = [0; 8];
        a.copy_from_slice(&b[at..at + 8]);
        i64::from_be_bytes(a)
    };
    let entry = AbortedTransaction { producer_id: i64_at(2), first_offset: i64_at(10), last_offset: i64_at(18) };
    (entry, i64_at(26))
}
