//! Time segments of the window and session stores: the encoding of times
//! and segment ids, observed stream time, retention and segment expiry.
//!
//! Kafka Streams keeps each segment in its own RocksDB instance; here a
//! segment is a key prefix (its id, 8 bytes) of one [`BytesStore`], and
//! dropping a segment is one `delete_range` over its prefix.

use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;

use super::{BytesIter, BytesStore, Direction, WriteBatch};
use crate::{Error, Result};

/// The smallest segment interval, as in Kafka Streams.
const MIN_SEGMENT_INTERVAL_MS: i64 = 60_000;

/// Observed stream time before the first put.
const NO_TIME: i64 = i64::MIN;

/// What a put into a window or session store did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "an expired record is dropped; count it"]
pub enum PutOutcome {
    /// The operation was added to the batch.
    Written,
    /// The record's time is older than the store's retention; nothing was
    /// added (Kafka Streams counts these as dropped records).
    Expired,
}

/// The time encoding: `i64` as `u64` big-endian with the sign bit flipped,
/// so that byte order is numeric order.
pub(crate) fn encode_time(time: i64) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`encode_time`].
pub(crate) fn decode_time(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// Reads an encoded time at `at`; `None` if `bytes` is too short.
pub(crate) fn time_at(bytes: &[u8], at: usize) -> Option<i64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    Some(decode_time(slice.try_into().ok()?))
}

/// The segments of one window or session store.
#[derive(Debug)]
pub(crate) struct Segments {
    retention_ms: i64,
    interval_ms: i64,
    /// The largest time put so far, [`NO_TIME`] before the first.
    observed: AtomicI64,
    /// The first live segment as of the last expiry added to a batch.
    expired_below: AtomicI64,
}

impl Segments {
    /// Segments for a retention of `retention_ms`, which must be positive.
    pub(crate) fn new(store: &str, retention_ms: i64) -> Result<Self> {
        if retention_ms <= 0 {
            return Err(Error::InvalidStoreConfig {
                store: store.to_owned(),
                reason: format!("the retention must be positive, not {retention_ms} ms"),
            });
        }
        Ok(Self {
            retention_ms,
            interval_ms: (retention_ms / 2).max(MIN_SEGMENT_INTERVAL_MS),
            observed: AtomicI64::new(NO_TIME),
            expired_below: AtomicI64::new(NO_TIME),
        })
    }

    pub(crate) fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    pub(crate) fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// The segment a time falls into.
    pub(crate) fn segment_id(&self, time: i64) -> i64 {
        segment_id(time, self.interval_ms)
    }

    /// The largest time put so far.
    pub(crate) fn observed(&self) -> Option<i64> {
        let observed = self.observed.load(Ordering::Acquire);
        (observed != NO_TIME).then_some(observed)
    }

    /// The smallest live time: observed stream time − retention + 1, or
    /// `i64::MIN` before the first put (after a restart, records are not
    /// filtered until a put tells the store what time it is).
    pub(crate) fn live_from(&self) -> i64 {
        match self.observed() {
            Some(observed) => observed.saturating_sub(self.retention_ms).saturating_add(1),
            None => i64::MIN,
        }
    }

    /// The largest time any record can have: the observed stream time, or
    /// `i64::MAX` before the first put.
    pub(crate) fn live_to(&self) -> i64 {
        self.observed().unwrap_or(i64::MAX)
    }

    /// Advances observed stream time to `time`. Refuses a `time` that is no
    /// longer live; if the advance expires segments, adds the deletion of
    /// every segment before the first live one to `batch` (so it is written
    /// atomically with the put that caused it).
    pub(crate) fn observe(&self, time: i64, batch: &mut WriteBatch) -> PutOutcome {
        self.observed.fetch_max(time, Ordering::AcqRel);
        let live_from = self.live_from();
        if time < live_from {
            return PutOutcome::Expired;
        }
        let first_live = self.segment_id(live_from);
        let before = self.expired_below.fetch_max(first_live, Ordering::AcqRel);
        if first_live > before {
            // From the start of the key space rather than from the last
            // segment dropped: a range tombstone costs the same whatever its
            // width, and so a batch that was never written, or a restart,
            // cannot leave old segments behind.
            batch.delete_range(Bytes::new(), Bytes::copy_from_slice(&encode_time(first_live)));
        }
        PutOutcome::Written
    }

    /// The ids of the segments in `from..=to` that hold at least one entry,
    /// in `direction`; each step is one seek.
    pub(crate) fn present<'a>(
        &self,
        store: &'a dyn BytesStore,
        from: i64,
        to: i64,
        direction: Direction,
    ) -> impl Iterator<Item = Result<i64>> + Send + use<'a> {
        // The segments still to look at: lo..=hi.
        let (mut lo, mut hi) = (from, to);
        let mut done = from > to;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let lower = encode_time(lo);
            let upper = hi.checked_add(1).map(encode_time);
            let upper = upper.as_ref().map_or(Bound::Unbounded, |u| Bound::Excluded(&u[..]));
            let first =
                store.range(Bound::Included(&lower[..]), upper, direction).and_then(|mut it| it.next().transpose());
            let segment = match first {
                Ok(Some((key, _))) => match time_at(&key, 0) {
                    Some(segment) => segment,
                    None => {
                        done = true;
                        return Some(Err(Error::Corrupt {
                            store: store.name().to_owned(),
                            reason: format!("the key {key:?} is shorter than a segment id"),
                        }));
                    }
                },
                Ok(None) => {
                    done = true;
                    return None;
                }
                Err(error) => {
                    done = true;
                    return Some(Err(error));
                }
            };
            match direction {
                Direction::Forward => match segment.checked_add(1) {
                    Some(next) if next <= hi => lo = next,
                    _ => done = true,
                },
                Direction::Reverse => match segment.checked_sub(1) {
                    Some(next) if next >= lo => hi = next,
                    _ => done = true,
                },
            }
            Some(Ok(segment))
        })
    }

    /// Scans the present segments in `from..=to`, in `direction`, with
    /// the key range `scan` gives for each segment, and keeps what `keep`
    /// decodes. Each segment is a snapshot of its own: a write between two
    /// segments' scans may be seen in the later one only.
    pub(crate) fn scan<'a, T: 'a>(
        &self,
        store: &'a dyn BytesStore,
        (from, to): (i64, i64),
        direction: Direction,
        scan: impl Fn(i64) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) + Send + 'a,
        keep: impl Fn(Bytes, Bytes) -> Result<Option<T>> + Send + 'a,
    ) -> Box<dyn Iterator<Item = Result<T>> + Send + 'a> {
        let entries = self.present(store, from, to, direction).flat_map(move |segment| -> BytesIter<'a> {
            let (lower, upper) = match segment {
                Ok(segment) => scan(segment),
                Err(error) => return Box::new(std::iter::once(Err(error))),
            };
            let (lower, upper) = (lower.as_ref().map(Vec::as_slice), upper.as_ref().map(Vec::as_slice));
            match store.range(lower, upper, direction) {
                Ok(entries) => entries,
                Err(error) => Box::new(std::iter::once(Err(error))),
            }
        });
        Box::new(fused_on_error(entries.filter_map(move |entry| match entry {
            Ok((key, value)) => keep(key, value).transpose(),
            Err(error) => Some(Err(error)),
        })))
    }
}

/// The segment a time falls into, for a segment interval.
pub(crate) fn segment_id(time: i64, interval_ms: i64) -> i64 {
    time.div_euclid(interval_ms)
}

/// The key range of a whole segment.
pub(crate) fn whole_segment(segment: i64) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let upper = segment.checked_add(1).map_or(Bound::Unbounded, |next| Bound::Excluded(encode_time(next).to_vec()));
    (Bound::Included(encode_time(segment).to_vec()), upper)
}

/// Ends an iterator after its first error.
fn fused_on_error<T>(iter: impl Iterator<Item = Result<T>>) -> impl Iterator<Item = Result<T>> {
    let mut failed = false;
    iter.take_while(move |item| {
        let go = !failed;
        failed |= item.is_err();
        go
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_encode_in_numeric_order() {
        let times = [i64::MIN, -60_000, -1, 0, 1, 59_999, 60_000, i64::MAX];
        let encoded: Vec<[u8; 8]> = times.iter().map(|&t| encode_time(t)).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
        for t in times {
            assert_eq!(decode_time(encode_time(t)), t);
        }
    }

    #[test]
    fn segment_interval_is_half_the_retention_but_at_least_a_minute() {
        assert_eq!(Segments::new("s", 1_000).expect("valid").interval_ms(), 60_000);
        assert_eq!(Segments::new("s", 600_000).expect("valid").interval_ms(), 300_000);
        assert!(matches!(Segments::new("s", 0), Err(Error::InvalidStoreConfig { .. })));
    }

    #[test]
    fn segment_ids_round_down_for_negative_times() {
        assert_eq!(segment_id(-1, 60_000), -1);
        assert_eq!(segment_id(0, 60_000), 0);
        assert_eq!(segment_id(59_999, 60_000), 0);
        assert_eq!(segment_id(60_000, 60_000), 1);
    }

    #[test]
    fn observe_expires_whole_segments_once() {
        let segments = Segments::new("s", 120_000).expect("valid");
        let mut batch = WriteBatch::new();
        assert_eq!(segments.observe(70_000, &mut batch), PutOutcome::Written);
        // live_from = 70_000 - 120_000 + 1 < 0: segment -1 and below are
        // dropped (nothing of segment 0 yet).
        assert_eq!(batch.len(), 1);
        let mut batch = WriteBatch::new();
        assert_eq!(segments.observe(200_000, &mut batch), PutOutcome::Written);
        // live_from = 80_001 lies in segment 1: segment 0 is dropped.
        assert_eq!(
            batch.ops(),
            &[super::super::Op::DeleteRange { from: Bytes::new(), to: Bytes::copy_from_slice(&encode_time(1)) }]
        );
        let mut batch = WriteBatch::new();
        assert_eq!(segments.observe(80_001, &mut batch), PutOutcome::Written);
        assert_eq!(segments.observe(80_000, &mut batch), PutOutcome::Expired);
        assert!(batch.is_empty());
        assert_eq!(segments.observed(), Some(200_000));
    }
}
