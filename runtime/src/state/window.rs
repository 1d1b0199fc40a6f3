//! [`WindowBytesStore`]: values per (key, window start) in time segments of
//! a [`BytesStore`], with retention.
//!
//! Layout of an entry's key (see also the [module documentation](super)):
//!
//! ```text
//!   [segment id of the window start: 8][key bytes][window start: 8][sequence number: u32 BE]
//! ```
//!
//! A store that [retains duplicates](Duplicates::Retain) (the two sides of a
//! stream–stream join) gives every put of the same key and window start its
//! own sequence number, so none overwrites another; otherwise the sequence
//! number is always 0 and a put replaces the window's value.
//!
//! Writes go into a caller's [`WriteBatch`], so that a caching or
//! changelogging layer can group many puts, the segment expiry they cause,
//! and its changelog offsets into one atomic write.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use super::segments::{PutOutcome, Segments, encode_time, segment_id, time_at, whole_segment};
use super::{BytesStore, Direction, WriteBatch};
use crate::{Error, Result};

/// Whether puts of the same key and window start replace each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Duplicates {
    /// A put replaces the window's value; `None` removes it.
    #[default]
    Overwrite,
    /// Every put is kept, in the order of the puts (stream–stream joins);
    /// a put of `None` does nothing.
    Retain,
}

/// The logical key of a window entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowKey {
    /// The record key.
    pub key: Bytes,
    /// The start of the window, in milliseconds.
    pub window_start: i64,
    /// The sequence number among duplicates; 0 in a store that overwrites.
    pub seq: u32,
}

impl WindowKey {
    /// The bytes of a store key besides the record key: segment id, window
    /// start and sequence number.
    pub const OVERHEAD: usize = 8 + 8 + 4;

    /// The key of this entry in a [`BytesStore`] whose segments are
    /// `segment_interval_ms` long.
    pub fn to_store_key(&self, segment_interval_ms: i64) -> Vec<u8> {
        store_key(&self.key, self.window_start, self.seq, segment_interval_ms)
    }

    /// Decodes a key written by [`to_store_key`](Self::to_store_key);
    /// `None` if it is shorter than [`OVERHEAD`](Self::OVERHEAD).
    pub fn from_store_key(store_key: &Bytes) -> Option<Self> {
        let key_end = store_key.len().checked_sub(12).filter(|&end| end >= 8)?;
        let window_start = time_at(store_key, key_end)?;
        let seq = u32::from_be_bytes(store_key.get(key_end + 8..)?.try_into().ok()?);
        Some(Self { key: store_key.slice(8..key_end), window_start, seq })
    }
}

/// The store key of (key, window start, seq).
fn store_key(key: &[u8], window_start: i64, seq: u32, segment_interval_ms: i64) -> Vec<u8> {
    key_in_segment(segment_id(window_start, segment_interval_ms), key, window_start, seq)
}

/// The store key of (key, window start, seq) with the segment id given:
/// for a scan's bounds, whose times may lie outside the segment.
fn key_in_segment(segment: i64, key: &[u8], window_start: i64, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + WindowKey::OVERHEAD);
    out.extend_from_slice(&encode_time(segment));
    out.extend_from_slice(key);
    out.extend_from_slice(&encode_time(window_start));
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The windows of one key: (window start, value).
pub type WindowIter<'a> = Box<dyn Iterator<Item = Result<(i64, Bytes)>> + Send + 'a>;

/// Window entries of any key: (key, value).
pub type WindowEntries<'a> = Box<dyn Iterator<Item = Result<(WindowKey, Bytes)>> + Send + 'a>;

/// A window store at the byte level, on a [`BytesStore`] that it owns
/// entirely.
///
/// Observed stream time (the largest window start put) decides what is
/// expired; it is kept in memory, so after a restart nothing is filtered or
/// expired until the first put.
pub struct WindowBytesStore {
    inner: Arc<dyn BytesStore>,
    segments: Segments,
    duplicates: Duplicates,
    /// The next sequence number for duplicates, unless the store already
    /// holds a larger one for the window.
    next_seq: AtomicU32,
}

impl WindowBytesStore {
    /// A window store keeping windows that started within `retention_ms` of
    /// observed stream time, in segments of `max(retention_ms / 2, 60 s)`.
    /// A retention that is not positive is refused.
    pub fn new(inner: Arc<dyn BytesStore>, retention_ms: i64, duplicates: Duplicates) -> Result<Self> {
        let segments = Segments::new(inner.name(), retention_ms)?;
        Ok(Self { inner, segments, duplicates, next_seq: AtomicU32::new(0) })
    }

    /// The name of the underlying store.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The underlying store.
    pub fn inner(&self) -> &Arc<dyn BytesStore> {
        &self.inner
    }

    /// How long windows are kept after their start, in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        self.segments.retention_ms()
    }

    /// The length of a segment, in milliseconds.
    pub fn segment_interval_ms(&self) -> i64 {
        self.segments.interval_ms()
    }

    /// Whether puts of the same key and window start are all kept.
    pub fn duplicates(&self) -> Duplicates {
        self.duplicates
    }

    /// The largest window start put since the store was created.
    pub fn observed_stream_time(&self) -> Option<i64> {
        self.segments.observed()
    }

    /// Adds to `batch` the put of `value` for `key` in the window starting
    /// at `window_start` (`None`: remove it), advancing observed stream
    /// time, and the removal of the segments that this advance expires.
    ///
    /// A window whose start is at or before observed stream time − retention
    /// is refused with [`PutOutcome::Expired`]. The batch must be written
    /// (with [`write`](Self::write) or the underlying store's `write`) for
    /// the put to happen. With [`Duplicates::Retain`], a put of `None` does
    /// nothing, and finding the next sequence number reads the store.
    pub fn put(
        &self,
        key: &[u8],
        window_start: i64,
        value: Option<&[u8]>,
        batch: &mut WriteBatch,
    ) -> Result<PutOutcome> {
        if self.duplicates == Duplicates::Retain && value.is_none() {
            return Ok(PutOutcome::Written);
        }
        if self.segments.observe(window_start, batch) == PutOutcome::Expired {
            return Ok(PutOutcome::Expired);
        }
        let seq = match self.duplicates {
            Duplicates::Overwrite => 0,
            Duplicates::Retain => self.next_seq(key, window_start)?,
        };
        let store_key = store_key(key, window_start, seq, self.segment_interval_ms());
        match value {
            Some(value) => batch.put(store_key, Bytes::copy_from_slice(value)),
            None => batch.delete(store_key),
        }
        Ok(PutOutcome::Written)
    }

    /// Writes a batch into the underlying store.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.inner.write(batch)
    }

    /// The sequence number for the next duplicate of (key, window start):
    /// past both the store's last one for it (so a restart cannot overwrite
    /// duplicates) and the last one handed out (so several puts into one
    /// unwritten batch do not collide).
    fn next_seq(&self, key: &[u8], window_start: i64) -> Result<u32> {
        let interval = self.segment_interval_ms();
        let lower = store_key(key, window_start, 0, interval);
        let upper = store_key(key, window_start, u32::MAX, interval);
        let mut after_stored = 0;
        for entry in self.inner.range(Bound::Included(&lower), Bound::Included(&upper), Direction::Reverse)? {
            let (store_key, _) = entry?;
            let decoded = self.decode(&store_key)?;
            if decoded.key == key {
                // 2^32 puts of one key at one window start cannot be kept
                // in one segment: wrapping cannot meet a live duplicate.
                after_stored = decoded.seq.wrapping_add(1);
                break;
            }
        }
        let seq = self.next_seq.load(Ordering::Relaxed).max(after_stored);
        self.next_seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        Ok(seq)
    }

    fn decode(&self, store_key: &Bytes) -> Result<WindowKey> {
        WindowKey::from_store_key(store_key).ok_or_else(|| Error::Corrupt {
            store: self.name().to_owned(),
            reason: format!("the window key {store_key:?} is shorter than {} bytes", WindowKey::OVERHEAD),
        })
    }

    /// The value of `key` in the window starting at `window_start` (the
    /// first duplicate in a store that retains them).
    pub fn fetch_window(&self, key: &[u8], window_start: i64) -> Result<Option<Bytes>> {
        self.fetch(key, window_start, window_start, Direction::Forward).next().transpose().map(|w| w.map(|(_, v)| v))
    }

    /// The windows of `key` that start between `from_start` and `to_start`
    /// (both included) and have not expired, by window start (duplicates in
    /// the order they were put).
    pub fn fetch(&self, key: &[u8], from_start: i64, to_start: i64, direction: Direction) -> WindowIter<'_> {
        let (from, to) = (from_start.max(self.segments.live_from()), to_start.min(self.segments.live_to()));
        if from > to {
            return Box::new(std::iter::empty());
        }
        let interval = self.segment_interval_ms();
        let wanted = Bytes::copy_from_slice(key);
        let range_key = wanted.clone();
        self.segments.scan(
            &*self.inner,
            (segment_id(from, interval), segment_id(to, interval)),
            direction,
            move |segment| {
                let lower = key_in_segment(segment, &range_key, from, 0);
                let upper = key_in_segment(segment, &range_key, to, u32::MAX);
                (Bound::Included(lower), Bound::Included(upper))
            },
            // The range also holds entries of longer keys that begin with
            // `key`: only an exact match of the decoded key counts.
            move |store_key, value| {
                let decoded = self.decode(&store_key)?;
                let inside = decoded.key == wanted && (from..=to).contains(&decoded.window_start);
                Ok(inside.then_some((decoded.window_start, value)))
            },
        )
    }

    /// The windows of every key that start between `from_start` and
    /// `to_start` (both included) and have not expired, by segment, then
    /// key, then window start (not by window start across keys).
    pub fn fetch_all(&self, from_start: i64, to_start: i64, direction: Direction) -> WindowEntries<'_> {
        let (from, to) = (from_start.max(self.segments.live_from()), to_start.min(self.segments.live_to()));
        if from > to {
            return Box::new(std::iter::empty());
        }
        let interval = self.segment_interval_ms();
        self.segments.scan(
            &*self.inner,
            (segment_id(from, interval), segment_id(to, interval)),
            direction,
            whole_segment,
            move |store_key, value| {
                let decoded = self.decode(&store_key)?;
                Ok((from..=to).contains(&decoded.window_start).then_some((decoded, value)))
            },
        )
    }

    /// Every window that has not expired, ordered as by
    /// [`fetch_all`](Self::fetch_all).
    pub fn all(&self, direction: Direction) -> WindowEntries<'_> {
        self.fetch_all(i64::MIN, i64::MAX, direction)
    }
}

impl fmt::Debug for WindowBytesStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowBytesStore")
            .field("inner", &self.inner)
            .field("segments", &self.segments)
            .field("duplicates", &self.duplicates)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_round_trip() {
        for (key, start, seq) in [(&b""[..], 0, 0), (b"a", -5, 7), (b"key", i64::MAX, u32::MAX), (b"k", i64::MIN, 1)] {
            let window = WindowKey { key: Bytes::copy_from_slice(key), window_start: start, seq };
            let encoded = Bytes::from(window.to_store_key(60_000));
            assert_eq!(encoded.len(), key.len() + WindowKey::OVERHEAD);
            assert_eq!(WindowKey::from_store_key(&encoded), Some(window));
        }
        assert_eq!(WindowKey::from_store_key(&Bytes::from_static(&[0; 19])), None);
    }

    #[test]
    fn window_keys_of_one_key_sort_by_start_then_seq() {
        let key = |start, seq| store_key(b"k", start, seq, 60_000);
        assert!(key(-1, 5) < key(0, 0));
        assert!(key(0, 0) < key(0, 1));
        assert!(key(1, u32::MAX) < key(2, 0));
    }
}
