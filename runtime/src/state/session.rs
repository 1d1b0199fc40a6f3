//! [`SessionBytesStore`]: session windows per key in time segments of a
//! [`BytesStore`], with retention.
//!
//! Layout of an entry's key (see also the [module documentation](super)):
//!
//! ```text
//!   [segment id of the session end: 8][key bytes][session end: 8][session start: 8]
//! ```
//!
//! Sessions are segmented and expired by their end, the time that decides
//! whether a session can still grow. Within a segment the sessions of a key
//! are contiguous and ordered by end, then start.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::segments::{PutOutcome, Segments, encode_time, segment_id, time_at, whole_segment};
use super::{BytesStore, Direction, WriteBatch};
use crate::{Error, Result};

/// The logical key of a session: a record key and the session's window.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The record key.
    pub key: Bytes,
    /// The time of the session's first record, in milliseconds.
    pub start: i64,
    /// The time of the session's last record, in milliseconds.
    pub end: i64,
}

impl SessionKey {
    /// The bytes of a store key besides the record key: segment id, end and
    /// start.
    pub const OVERHEAD: usize = 8 + 8 + 8;

    /// The key of this session in a [`BytesStore`] whose segments are
    /// `segment_interval_ms` long.
    pub fn to_store_key(&self, segment_interval_ms: i64) -> Vec<u8> {
        key_in_segment(segment_id(self.end, segment_interval_ms), &self.key, self.end, self.start)
    }

    /// Decodes a key written by [`to_store_key`](Self::to_store_key);
    /// `None` if it is shorter than [`OVERHEAD`](Self::OVERHEAD).
    pub fn from_store_key(store_key: &Bytes) -> Option<Self> {
        let key_end = store_key.len().checked_sub(16).filter(|&end| end >= 8)?;
        let end = time_at(store_key, key_end)?;
        let start = time_at(store_key, key_end + 8)?;
        Some(Self { key: store_key.slice(8..key_end), start, end })
    }
}

/// The store key of a session, with the segment id given: for a scan's
/// bounds, whose times may lie outside the segment.
fn key_in_segment(segment: i64, key: &[u8], end: i64, start: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + SessionKey::OVERHEAD);
    out.extend_from_slice(&encode_time(segment));
    out.extend_from_slice(key);
    out.extend_from_slice(&encode_time(end));
    out.extend_from_slice(&encode_time(start));
    out
}

/// Sessions and their values.
pub type SessionIter<'a> = Box<dyn Iterator<Item = Result<(SessionKey, Bytes)>> + Send + 'a>;

/// A session store at the byte level, on a [`BytesStore`] that it owns
/// entirely.
///
/// Observed stream time (the largest session end put) decides what is
/// expired; it is kept in memory, so after a restart nothing is filtered or
/// expired until the first put.
pub struct SessionBytesStore {
    inner: Arc<dyn BytesStore>,
    segments: Segments,
}

impl SessionBytesStore {
    /// A session store keeping sessions that ended within `retention_ms` of
    /// observed stream time, in segments of `max(retention_ms / 2, 60 s)`.
    /// A retention that is not positive is refused.
    pub fn new(inner: Arc<dyn BytesStore>, retention_ms: i64) -> Result<Self> {
        let segments = Segments::new(inner.name(), retention_ms)?;
        Ok(Self { inner, segments })
    }

    /// The name of the underlying store.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The underlying store.
    pub fn inner(&self) -> &Arc<dyn BytesStore> {
        &self.inner
    }

    /// How long sessions are kept after their end, in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        self.segments.retention_ms()
    }

    /// The length of a segment, in milliseconds.
    pub fn segment_interval_ms(&self) -> i64 {
        self.segments.interval_ms()
    }

    /// The largest session end put since the store was created.
    pub fn observed_stream_time(&self) -> Option<i64> {
        self.segments.observed()
    }

    /// Adds to `batch` the put of `value` for the session `key`, `start` to
    /// `end` (`None`: remove the session), advancing observed stream time,
    /// and the removal of the segments that this advance expires.
    ///
    /// A session whose end is at or before observed stream time − retention
    /// is refused with [`PutOutcome::Expired`]; one that ends before it
    /// starts with [`Error::InvalidSession`]. The batch must be written (with
    /// [`write`](Self::write) or the underlying store's `write`) for the put
    /// to happen.
    pub fn put(
        &self,
        key: &[u8],
        start: i64,
        end: i64,
        value: Option<&[u8]>,
        batch: &mut WriteBatch,
    ) -> Result<PutOutcome> {
        if end < start {
            return Err(Error::InvalidSession { store: self.name().to_owned(), start, end });
        }
        if self.segments.observe(end, batch) == PutOutcome::Expired {
            return Ok(PutOutcome::Expired);
        }
        let store_key = key_in_segment(self.segments.segment_id(end), key, end, start);
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

    fn decode(&self, store_key: &Bytes) -> Result<SessionKey> {
        SessionKey::from_store_key(store_key).ok_or_else(|| Error::Corrupt {
            store: self.name().to_owned(),
            reason: format!("the session key {store_key:?} is shorter than {} bytes", SessionKey::OVERHEAD),
        })
    }

    /// The value of the session `key`, `start` to `end`, if it is stored and
    /// has not expired.
    pub fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Bytes>> {
        if end < self.segments.live_from() {
            return Ok(None);
        }
        self.inner.get(&key_in_segment(self.segments.segment_id(end), key, end, start))
    }

    /// The sessions of `key` that end at or after `earliest_session_end` and
    /// start at or before `latest_session_start`, that is, that overlap (or
    /// touch) that span: the sessions a record at time `t` merges with are
    /// `find_sessions(key, t - gap, t + gap)`. Ordered by end, then start.
    pub fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
        direction: Direction,
    ) -> SessionIter<'_> {
        let (from, to) = (earliest_session_end.max(self.segments.live_from()), self.segments.live_to());
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
                let lower = key_in_segment(segment, &range_key, from, i64::MIN);
                let upper = key_in_segment(segment, &range_key, to, i64::MAX);
                (Bound::Included(lower), Bound::Included(upper))
            },
            // The range also holds sessions of longer keys that begin with
            // `key`: only an exact match of the decoded key counts.
            move |store_key, value| {
                let session = self.decode(&store_key)?;
                let found = session.key == wanted && session.end >= from && session.start <= latest_session_start;
                Ok(found.then_some((session, value)))
            },
        )
    }

    /// Every session of `key` that has not expired, ordered by end, then
    /// start.
    pub fn fetch(&self, key: &[u8], direction: Direction) -> SessionIter<'_> {
        self.find_sessions(key, i64::MIN, i64::MAX, direction)
    }

    /// Every session that has not expired, by segment, then key, then end,
    /// then start.
    pub fn fetch_all(&self, direction: Direction) -> SessionIter<'_> {
        let from = self.segments.live_from();
        let interval = self.segment_interval_ms();
        self.segments.scan(
            &*self.inner,
            (segment_id(from, interval), segment_id(self.segments.live_to(), interval)),
            direction,
            whole_segment,
            move |store_key, value| {
                let session = self.decode(&store_key)?;
                Ok((session.end >= from).then_some((session, value)))
            },
        )
    }
}

impl fmt::Debug for SessionBytesStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBytesStore").field("inner", &self.inner).field("segments", &self.segments).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_round_trip() {
        for (key, start, end) in [(&b""[..], 0, 0), (b"a", -5, 7), (b"key", i64::MIN, i64::MAX)] {
            let session = SessionKey { key: Bytes::copy_from_slice(key), start, end };
            let encoded = Bytes::from(session.to_store_key(60_000));
            assert_eq!(encoded.len(), key.len() + SessionKey::OVERHEAD);
            assert_eq!(SessionKey::from_store_key(&encoded), Some(session));
        }
        assert_eq!(SessionKey::from_store_key(&Bytes::from_static(&[0; 23])), None);
    }
}
