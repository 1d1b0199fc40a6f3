//! The forwarding side of the record cache: an aggregation holds its
//! updates back and forwards only the latest per key, once per commit.
//!
//! The store side (one store write and one changelog record per key per
//! commit) is the runtime's overlay; this is the other half of Kafka
//! Streams' record cache: downstream operators and output topics see one
//! [`Change`] per key per commit interval — the newest value, with the
//! value it had at the previous flush as the old one — instead of every
//! intermediate update. The runtime calls [`Processor::flush`] before each
//! commit; a cache also flushes itself when the thread's budget
//! (`cache.max.bytes.buffering`) is exceeded. With the budget at 0, or
//! `Materialized::with_caching_disabled`, every update is forwarded at once.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use plexus_runtime::processor::{Processor, ProcessorContext, Record};
use plexus_runtime::topology::NodeHandle;
use plexus_runtime::{Error, Result};

use crate::Inner;
use crate::ktable::Change;
use crate::options::SerdeRef;
use crate::windows::Windowed;

/// How a cache tells keys apart: their serialized form (keys need not be
/// `Hash` or `Ord`; the store serializes them anyway).
pub(crate) type KeyBytes<K> = Arc<dyn Fn(&K) -> Result<Bytes> + Send + Sync>;

/// A key's bytes through its serde.
pub(crate) fn key_bytes<K: 'static>(serde: SerdeRef<K>) -> KeyBytes<K> {
    Arc::new(move |key: &K| {
        let bytes = serde.serialize(key).map_err(|e| Error::Topology(format!("record cache: {e}")))?;
        Ok(bytes.unwrap_or_default())
    })
}

/// A windowed key's bytes: the key's, then the window's bounds.
pub(crate) fn windowed_key_bytes<K: 'static>(serde: SerdeRef<K>) -> KeyBytes<Windowed<K>> {
    let inner = key_bytes(serde);
    Arc::new(move |key: &Windowed<K>| {
        let k = inner(&key.key)?;
        let mut bytes = BytesMut::with_capacity(k.len() + 16);
        bytes.put_slice(&k);
        bytes.put_i64(key.window.start);
        bytes.put_i64(key.window.end);
        Ok(bytes.freeze())
    })
}

/// Updates held back, in the order their keys were first updated.
struct ForwardCache<K, V> {
    key_bytes: KeyBytes<K>,
    index: HashMap<Bytes, usize>,
    entries: Vec<Record<K, Change<V>>>,
    /// What the entries count against the budget: their key bytes plus
    /// the size of a record (values are not serialized to be measured).
    bytes: usize,
}

impl<K: Clone, V: Clone> ForwardCache<K, V> {
    fn put(&mut self, record: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        let key = (self.key_bytes)(&record.key)?;
        if let Some(&i) = self.index.get(&key) {
            // The old value stays the one the previous flush left.
            let held = &mut self.entries[i];
            held.value.new = record.value.new;
            held.timestamp = record.timestamp;
            held.headers = record.headers;
            return Ok(());
        }
        let size = key.len() + std::mem::size_of::<Record<K, Change<V>>>();
        self.index.insert(key, self.entries.len());
        self.entries.push(record);
        self.bytes += size;
        if ctx.cache_resize(size, 0) {
            self.flush(ctx)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        self.index.clear();
        ctx.cache_resize(0, std::mem::take(&mut self.bytes));
        for record in std::mem::take(&mut self.entries) {
            // Created and deleted between two flushes: nothing to tell.
            if record.value.new.is_some() || record.value.old.is_some() {
                ctx.forward(record)?;
            }
        }
        Ok(())
    }
}

/// An aggregation step: folds a record into its store and pushes the
/// changes it made onto the vector.
pub(crate) trait Step<KIn, VIn, K, V>:
    Fn(Record<KIn, VIn>, &mut ProcessorContext<'_, K, Change<V>>, &mut Vec<Record<K, Change<V>>>) -> Result<()>
    + Send
    + Sync
    + 'static
{
}

impl<KIn, VIn, K, V, F> Step<KIn, VIn, K, V> for F where
    F: Fn(Record<KIn, VIn>, &mut ProcessorContext<'_, K, Change<V>>, &mut Vec<Record<K, Change<V>>>) -> Result<()>
        + Send
        + Sync
        + 'static
{
}

/// A processor running an aggregation step, its changes going through a
/// forwarding cache (or straight on when it has none).
struct Cached<F, K, V> {
    step: Arc<F>,
    cache: Option<ForwardCache<K, V>>,
    changes: Vec<Record<K, Change<V>>>,
}

impl<KIn, VIn, K, V, F> Processor<KIn, VIn, K, Change<V>> for Cached<F, K, V>
where
    K: Clone + 'static,
    V: Clone + 'static,
    F: Step<KIn, VIn, K, V>,
{
    fn process(&mut self, record: Record<KIn, VIn>, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        (self.step)(record, ctx, &mut self.changes)?;
        for change in self.changes.drain(..) {
            match &mut self.cache {
                Some(cache) if ctx.caching() => cache.put(change, ctx)?,
                _ => ctx.forward(change)?,
            }
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        match &mut self.cache {
            Some(cache) => cache.flush(ctx),
            None => Ok(()),
        }
    }
}

/// Adds an aggregation node running `step` on every record of `parent`;
/// with `cache` (how to tell keys apart) its changes are coalesced per key
/// until the next commit.
pub(crate) fn add_aggregation<KIn, VIn, K, V, F>(
    inner: &mut Inner,
    name: &str,
    parent: NodeHandle<KIn, VIn>,
    cache: Option<KeyBytes<K>>,
    step: F,
) -> Option<NodeHandle<K, Change<V>>>
where
    KIn: 'static,
    VIn: 'static,
    K: Clone + 'static,
    V: Clone + 'static,
    F: Step<KIn, VIn, K, V>,
{
    let step = Arc::new(step);
    let supplier = move || Cached {
        step: Arc::clone(&step),
        cache: cache.clone().map(|key_bytes| ForwardCache {
            key_bytes,
            index: HashMap::new(),
            entries: Vec::new(),
            bytes: 0,
        }),
        changes: Vec::new(),
    };
    inner.processor(name, supplier, &[parent])
}
