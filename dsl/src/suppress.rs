//! `KTable::suppress`: holds a table's updates back and emits only the
//! last one per key — when its window closes (final results of a windowed
//! aggregation) or after a time limit — as Kafka's `Suppressed`.
//!
//! The buffer is a key-value store (with a changelog, so a restart neither
//! loses nor repeats an emission) keyed by due time then key, so that the
//! due entries are a prefix scan; an in-memory index from key to its due
//! time is rebuilt from the store when the task starts. Time is the task's
//! stream time, as in Kafka Streams: nothing is emitted while no records
//! arrive.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use plexus_runtime::processor::{Processor, ProcessorContext, Record};
use plexus_runtime::serde::{BytesSerde, Serde};
use plexus_runtime::state::KeyValueStoreRef;
use plexus_runtime::topology::StoreBuilder;
use plexus_runtime::{Error, Result};

use crate::ktable::{Change, KTable};
use crate::need_serde;
use crate::options::SerdeRef;
use crate::windows::{Windowed, millis};

/// What to do when a bounded buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenFull {
    EmitEarly,
    ShutDown,
}

/// How much a suppression buffer may hold (Kafka's `BufferConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    when_full: WhenFull,
}

impl BufferConfig {
    /// No bound: the buffer grows as needed (it lives in a store).
    pub fn unbounded() -> Self {
        Self { max_records: None, max_bytes: None, when_full: WhenFull::ShutDown }
    }

    /// At most `n` keys; when full, the oldest is emitted early.
    pub fn max_records(n: usize) -> Self {
        Self { max_records: Some(n), max_bytes: None, when_full: WhenFull::EmitEarly }
    }

    /// At most `n` bytes of keys and values; when full, the oldest is emitted early.
    pub fn max_bytes(n: usize) -> Self {
        Self { max_records: None, max_bytes: Some(n), when_full: WhenFull::EmitEarly }
    }

    /// When full, fail the task rather than emit early (the only choice
    /// that keeps "final results only" strict).
    #[must_use]
    pub fn shut_down_when_full(mut self) -> Self {
        self.when_full = WhenFull::ShutDown;
        self
    }
}

/// The end of a windowed key's window.
type WindowEnd<K> = Arc<dyn Fn(&K) -> i64 + Send + Sync>;

/// When a suppressed table emits (Kafka's `Suppressed`).
pub struct Suppressed<K> {
    window_end: Option<WindowEnd<K>>,
    time_limit: i64,
    buffer: BufferConfig,
    name: Option<String>,
}

impl<K> Suppressed<Windowed<K>> {
    /// Only the final result of each window, once stream time passes its
    /// end plus the grace period.
    pub fn until_window_closes(buffer: BufferConfig) -> Self {
        Self { window_end: Some(Arc::new(|w: &Windowed<K>| w.window.end)), time_limit: 0, buffer, name: None }
    }
}

impl<K> Suppressed<K> {
    /// A key's latest value once `limit` of stream time has passed since
    /// its update (rate-limiting a table's updates).
    pub fn until_time_limit(limit: Duration, buffer: BufferConfig) -> Self {
        Self { window_end: None, time_limit: millis(limit), buffer, name: None }
    }

    /// Names the suppression (its node and buffer store).
    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// Holds updates back and emits the latest per key as `suppressed`
    /// says — for a windowed count, say, one final count per window.
    #[must_use]
    pub fn suppress(&self, suppressed: Suppressed<K>) -> KTable<K, V> {
        let mut inner = self.inner();
        let name = match &suppressed.name {
            Some(n) => n.clone(),
            None => inner.name("KTABLE-SUPPRESS"),
        };
        let store_name = format!("{name}-store");
        let option = "Materialized::with on the aggregation";
        let ks = need_serde(&mut inner, None, self.key_serde.as_ref(), "key", "suppress()", option);
        let vs = need_serde(&mut inner, None, self.value_serde.as_ref(), "value", "suppress()", option);
        let grace = match (&suppressed.window_end, self.grace) {
            (Some(_), None) => {
                inner.record_error(Error::Topology(
                    "suppress(until_window_closes): the table is not the result of a windowed aggregation".into(),
                ));
                None
            }
            (_, g) => Some(g.unwrap_or(0)),
        };
        let mut node = None;
        if let (Some(parent), Some(ks), Some(vs), Some(grace)) = (self.node, ks, vs, grace) {
            let buffer = KeyValueStoreRef::new(&store_name, BytesSerde, BytesSerde);
            let due: Due<K> = match suppressed.window_end.clone() {
                Some(end) => Arc::new(move |k: &K, _| end(k).saturating_add(grace)),
                None => {
                    let limit = suppressed.time_limit;
                    Arc::new(move |_: &K, ts| ts.saturating_add(limit))
                }
            };
            let config = suppressed.buffer;
            node = inner.processor(
                &name,
                move || SuppressProcessor {
                    buffer: buffer.clone(),
                    key_serde: Arc::clone(&ks),
                    value_serde: Arc::clone(&vs),
                    due: Arc::clone(&due),
                    config,
                    index: HashMap::new(),
                    order: BTreeSet::new(),
                    bytes: 0,
                },
                &[parent],
            );
            if node.is_some() {
                inner.store(StoreBuilder::key_value(&store_name).in_memory(), &[&name]);
            }
        }
        drop(inner);
        KTable {
            grace: self.grace,
            ..KTable::new(&self.builder, node, name, self.key_serde.clone(), self.value_serde.clone())
        }
    }
}

/// When a key's buffered update is due, from its key and timestamp.
type Due<K> = Arc<dyn Fn(&K, i64) -> i64 + Send + Sync>;

struct SuppressProcessor<K, V> {
    buffer: KeyValueStoreRef<Bytes, Bytes>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    due: Due<K>,
    config: BufferConfig,
    /// Serialized key → (due time, entry size).
    index: HashMap<Bytes, (i64, usize)>,
    /// The buffered keys by due time: what to emit next, without scanning
    /// the store (whose deletions stay as tombstones until the commit).
    order: BTreeSet<(i64, Bytes)>,
    bytes: usize,
}

fn buffer_key(due: i64, key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + key.len());
    // Flipping the sign bit makes big-endian bytes sort as signed numbers.
    b.put_i64(due ^ i64::MIN);
    b.put_slice(key);
    b.freeze()
}

fn put_opt(out: &mut BytesMut, v: Option<&Bytes>) {
    match v {
        Some(v) => {
            out.put_u8(1);
            out.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
            out.put_slice(v);
        }
        None => out.put_u8(0),
    }
}

fn get_opt(b: &mut &[u8]) -> Option<Option<Bytes>> {
    if b.remaining() < 1 {
        return None;
    }
    if b.get_u8() == 0 {
        return Some(None);
    }
    if b.remaining() < 4 {
        return None;
    }
    let n = usize::try_from(b.get_u32()).ok()?;
    if b.remaining() < n {
        return None;
    }
    let v = Bytes::copy_from_slice(&b[..n]);
    b.advance(n);
    Some(Some(v))
}

impl<K: Clone + 'static, V: Clone + 'static> SuppressProcessor<K, V> {
    fn corrupt(&self) -> Error {
        Error::Topology(format!("suppression buffer {:?} holds an entry it cannot read", self.buffer.name()))
    }

    fn ser_value(&self, v: Option<&V>) -> Result<Option<Bytes>> {
        let err = |e: plexus_runtime::serde::SerdeError| Error::Topology(format!("suppress: value: {e}"));
        v.map(|v| self.value_serde.serialize(v).map_err(err)).transpose().map(Option::flatten)
    }

    fn de_value(&self, b: Option<Bytes>) -> Result<Option<V>> {
        let err = |e: plexus_runtime::serde::SerdeError| Error::Topology(format!("suppress: value: {e}"));
        b.map(|b| self.value_serde.deserialize(Some(&b)).map_err(err)).transpose()
    }

    /// Emits (and removes) buffered entries: every one due at `now`, then
    /// the oldest while the buffer is over its bounds.
    fn evict(&mut self, now: i64, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        loop {
            let over = self.config.max_records.is_some_and(|m| self.index.len() > m)
                || self.config.max_bytes.is_some_and(|m| self.bytes > m);
            let Some((due, key)) = self.order.first().cloned() else { return Ok(()) };
            if due > now && !over {
                return Ok(());
            }
            if due > now && self.config.when_full == WhenFull::ShutDown {
                return Err(Error::Topology(format!(
                    "suppression buffer {:?} is full ({} keys, {} bytes) and is set to shut down when full; \
                     give it a larger BufferConfig",
                    self.buffer.name(),
                    self.index.len(),
                    self.bytes
                )));
            }
            let bk = buffer_key(due, &key);
            let entry = ctx.key_value_store(&self.buffer)?.get(&bk)?.ok_or_else(|| self.corrupt())?;
            self.emit(&bk, &entry, ctx)?;
        }
    }

    fn due_of(&self, bk: &[u8]) -> Result<i64> {
        let head: [u8; 8] = bk.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| self.corrupt())?;
        Ok(i64::from_be_bytes(head) ^ i64::MIN)
    }

    /// Forwards one buffered entry and removes it.
    fn emit(&mut self, bk: &Bytes, entry: &Bytes, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        let key_bytes = bk.slice(8..);
        let mut rest: &[u8] = entry;
        if rest.len() < 8 {
            return Err(self.corrupt());
        }
        let ts = rest.get_i64();
        let old = get_opt(&mut rest).ok_or_else(|| self.corrupt())?;
        let new = get_opt(&mut rest).ok_or_else(|| self.corrupt())?;
        ctx.key_value_store(&self.buffer)?.delete(bk)?;
        if let Some((due, size)) = self.index.remove(&key_bytes) {
            self.bytes -= size;
            self.order.remove(&(due, key_bytes.clone()));
        }
        let key =
            self.key_serde.deserialize(Some(&key_bytes)).map_err(|e| Error::Topology(format!("suppress: key: {e}")))?;
        let change = Change { new: self.de_value(new)?, old: self.de_value(old)? };
        ctx.forward(Record::new(key, change, ts))
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>, K, Change<V>> for SuppressProcessor<K, V> {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        // Rebuild the index from the (restored) buffer.
        self.index.clear();
        self.order.clear();
        self.bytes = 0;
        for (bk, entry) in ctx.key_value_store(&self.buffer)?.all()? {
            let due = self.due_of(&bk)?;
            let size = bk.len() + entry.len();
            self.bytes += size;
            self.order.insert((due, bk.slice(8..)));
            self.index.insert(bk.slice(8..), (due, size));
        }
        Ok(())
    }

    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        let key_bytes = self
            .key_serde
            .serialize(&r.key)
            .map_err(|e| Error::Topology(format!("suppress: key: {e}")))?
            .unwrap_or_default();
        let due = (self.due)(&r.key, r.timestamp);
        // A key already buffered keeps the value it had before its first
        // buffered update as the "old" value.
        let mut old = self.ser_value(r.value.old.as_ref())?;
        if let Some((prev_due, size)) = self.index.remove(&key_bytes) {
            self.bytes -= size;
            self.order.remove(&(prev_due, key_bytes.clone()));
            let prev_key = buffer_key(prev_due, &key_bytes);
            let mut store = ctx.key_value_store(&self.buffer)?;
            if let Some(entry) = store.get(&prev_key)? {
                let mut rest: &[u8] = &entry;
                if rest.len() >= 8 {
                    rest.advance(8);
                    old = get_opt(&mut rest).ok_or_else(|| self.corrupt())?;
                }
            }
            store.delete(&prev_key)?;
        }
        let new = self.ser_value(r.value.new.as_ref())?;
        let mut entry = BytesMut::new();
        entry.put_i64(r.timestamp);
        put_opt(&mut entry, old.as_ref());
        put_opt(&mut entry, new.as_ref());
        let bk = buffer_key(due, &key_bytes);
        let size = bk.len() + entry.len();
        ctx.key_value_store(&self.buffer)?.put(&bk, &entry.freeze())?;
        self.order.insert((due, key_bytes.clone()));
        self.index.insert(key_bytes, (due, size));
        self.bytes += size;
        let now = ctx.stream_time();
        self.evict(now, ctx)
    }
}
