//! Windows over event time: tumbling and hopping ([`TimeWindows`]),
//! [`SlidingWindows`] and [`SessionWindows`], each with a grace period
//! after which a window closes and later records are dropped; and
//! [`Windowed`] keys, as windowed aggregations produce them.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use plexus_runtime::serde::{Serde, SerdeError};

use crate::options::SerdeRef;

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A time window `[start, end)` in ms (sessions: `[start, end]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// The first ms of the window.
    pub start: i64,
    /// The end (exclusive for time windows, inclusive for sessions).
    pub end: i64,
}

/// A key together with the window its aggregate belongs to (Kafka's
/// `Windowed<K>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

impl<K: std::fmt::Display> std::fmt::Display for Windowed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}@{}/{}]", self.key, self.window.start, self.window.end)
    }
}

/// Serializes [`Windowed`] keys: the inner key's bytes, then the window's
/// start and end as big-endian i64 (16 bytes).
pub struct WindowedSerde<K> {
    inner: SerdeRef<K>,
}

impl<K> WindowedSerde<K> {
    /// Windowed keys whose inner key uses `inner`.
    pub fn new(inner: impl Serde<K> + 'static) -> Self {
        Self { inner: std::sync::Arc::new(inner) }
    }

    pub(crate) fn from_ref(inner: SerdeRef<K>) -> Self {
        Self { inner }
    }
}

impl<K> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize(&self, value: &Windowed<K>) -> Result<Option<Bytes>, SerdeError> {
        let key = self.inner.serialize(&value.key)?.unwrap_or_default();
        let mut out = BytesMut::with_capacity(key.len() + 16);
        out.put_slice(&key);
        out.put_i64(value.window.start);
        out.put_i64(value.window.end);
        Ok(Some(out.freeze()))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Windowed<K>, SerdeError> {
        let b = bytes.ok_or_else(|| SerdeError("null where a windowed key was expected".into()))?;
        if b.len() < 16 {
            return Err(SerdeError(format!("{} bytes: a windowed key has at least 16", b.len())));
        }
        let (key, window) = b.split_at(b.len() - 16);
        let int = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        let window = Window { start: int(&window[..8]), end: int(&window[8..]) };
        Ok(Windowed { key: self.inner.deserialize(Some(key))?, window })
    }
}

/// Fixed-size windows, tumbling (advance = size) or hopping (Kafka's
/// `TimeWindows`).
///
/// ```
/// use std::time::Duration;
/// use plexus_dsl::TimeWindows;
///
/// let tumbling = TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10));
/// let hopping = TimeWindows::of_size_with_no_grace(Duration::from_secs(60)).advance_by(Duration::from_secs(15));
/// assert_eq!(hopping.windows_for(61_000).len(), 4);
/// assert_eq!(tumbling.windows_for(61_000)[0].start, 60_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub(crate) size: i64,
    pub(crate) advance: i64,
    pub(crate) grace: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size`; a record later than its window's end is dropped.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        Self::of_size_and_grace(size, Duration::ZERO)
    }

    /// Tumbling windows of `size` that accept records up to `grace` after their end.
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        let size = millis(size).max(1);
        Self { size, advance: size, grace: millis(grace) }
    }

    /// Hopping windows: a new window every `advance` (at most the size).
    #[must_use]
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance = millis(advance).clamp(1, self.size);
        self
    }

    /// The windows a record at `timestamp` belongs to, earliest first.
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        let first = (timestamp - self.size + self.advance).max(0);
        let mut start = first - first.rem_euclid(self.advance);
        let mut out = Vec::new();
        while start <= timestamp {
            out.push(Window { start, end: start + self.size });
            start += self.advance;
        }
        out
    }
}

/// Windows of a fixed length defined by the records' own timestamps
/// (Kafka's `SlidingWindows`): two records share a window when their
/// timestamps differ by at most `time_difference`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub(crate) difference: i64,
    pub(crate) grace: i64,
}

impl SlidingWindows {
    /// Sliding windows of `time_difference`, accepting records up to
    /// `grace` after a window's end.
    pub fn of_time_difference_and_grace(time_difference: Duration, grace: Duration) -> Self {
        Self { difference: millis(time_difference), grace: millis(grace) }
    }

    /// Sliding windows with no grace.
    pub fn of_time_difference_with_no_grace(time_difference: Duration) -> Self {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }
}

/// Sessions: a key's records closer together than the inactivity gap form
/// one window (Kafka's `SessionWindows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub(crate) gap: i64,
    pub(crate) grace: i64,
}

impl SessionWindows {
    /// Sessions split by `gap` of inactivity, no grace.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    /// Sessions split by `gap` of inactivity, accepting records up to
    /// `grace` after a session's end.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        Self { gap: millis(gap), grace: millis(grace) }
    }
}
