//! [`KTable`]: a changelog stream seen as a table — the latest value per
//! key — and its operators.
//!
//! Between operators a table's records carry a [`Change`]: the key's new
//! value and the value it replaces (`None`: absent). A table is
//! materialized in a key-value store when it is read from a topic, when it
//! comes from an aggregation, when [`Materialized`] names it, and when a
//! join needs to look its values up; other tables (`filter`, `map_values`
//! of a table) are computed on the fly.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use plexus_runtime::processor::{ProcessorContext, Record};
use plexus_runtime::serde::OptionSerde;
use plexus_runtime::state::KeyValueStoreRef;
use plexus_runtime::topology::{NodeHandle, StoreBuilder};

use crate::kstream::KStream;
use crate::options::{Consumed, Materialized, Produced, SerdeRef};
use crate::processors::add_fn;
use crate::{Inner, StreamsBuilder, need_serde};

/// An update of a table row: the new value and the one it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The value after the update (`None`: deleted).
    pub new: Option<V>,
    /// The value before it (`None`: there was none).
    pub old: Option<V>,
}

/// A store a table's processor writes its rows to once a join (or
/// `Materialized`) asks for them after the processor was added.
pub(crate) type Mirror<K, V> = Arc<OnceLock<KeyValueStoreRef<K, V>>>;

/// A table: the latest value per key of a changelog (Kafka's `KTable`).
pub struct KTable<K, V> {
    pub(crate) builder: StreamsBuilder,
    pub(crate) node: Option<NodeHandle<K, Change<V>>>,
    /// The processor producing the rows.
    pub(crate) processor: String,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    /// The store holding the rows, once there is one.
    pub(crate) store: Rc<RefCell<Option<KeyValueStoreRef<K, V>>>>,
    /// How to give the table a store later, if its processor can.
    pub(crate) mirror: Option<Mirror<K, V>>,
    /// For a windowed table: the grace period after a window's end.
    pub(crate) grace: Option<i64>,
}

impl<K, V> KTable<K, V> {
    /// A table produced by `processor`'s node, with no store, mirror or
    /// grace yet (set them with struct-update syntax).
    pub(crate) fn new(
        builder: &StreamsBuilder,
        node: Option<NodeHandle<K, Change<V>>>,
        processor: String,
        key_serde: Option<SerdeRef<K>>,
        value_serde: Option<SerdeRef<V>>,
    ) -> Self {
        Self {
            builder: builder.clone(),
            node,
            processor,
            key_serde,
            value_serde,
            store: Rc::new(RefCell::new(None)),
            mirror: None,
            grace: None,
        }
    }
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        Self {
            builder: self.builder.clone(),
            node: self.node,
            processor: self.processor.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            store: Rc::clone(&self.store),
            mirror: self.mirror.clone(),
            grace: self.grace,
        }
    }
}

/// Writes a row change into a table's mirror store, if it has one.
pub(crate) fn write_mirror<K, V, KO, VO>(
    mirror: &OnceLock<KeyValueStoreRef<K, V>>,
    ctx: &ProcessorContext<'_, KO, VO>,
    key: &K,
    change: &Change<V>,
) -> plexus_runtime::Result<()> {
    if let Some(store) = mirror.get() {
        let mut store = ctx.key_value_store(store)?;
        match &change.new {
            Some(v) => store.put(key, v)?,
            None => {
                store.delete(key)?;
            }
        }
    }
    Ok(())
}

/// The store for a table, as `Materialized` describes it.
pub(crate) fn store_builder<K, V>(name: &str, m: &Materialized<K, V>) -> StoreBuilder {
    m.configure(StoreBuilder::key_value(name))
}

pub(crate) fn source_table<K, V>(
    builder: &StreamsBuilder,
    topic: &str,
    consumed: Consumed<K, V>,
    materialized: Materialized<K, V>,
) -> KTable<K, V>
where
    K: Clone + 'static,
    V: Clone + 'static,
{
    let mut inner = builder.inner.borrow_mut();
    let source = inner.name("KSTREAM-SOURCE");
    let name = inner.name("KTABLE-SOURCE");
    let store_name = materialized.name.clone().unwrap_or_else(|| format!("{topic}-STATE-STORE-{name}"));
    let key_serde = materialized.key_serde.clone().unwrap_or_else(|| Arc::clone(&consumed.key_serde));
    let value_serde = materialized.value_serde.clone().unwrap_or_else(|| Arc::clone(&consumed.value_serde));
    let store = KeyValueStoreRef::new(&store_name, Arc::clone(&key_serde), Arc::clone(&value_serde));
    let (ks, vs) = (Arc::clone(&consumed.key_serde), OptionSerde(Arc::clone(&consumed.value_serde)));
    // A tombstone keeps its log timestamp.
    let extractor = consumed.extractor.clone().map(|extract| -> crate::options::Extractor<K, Option<V>> {
        Arc::new(move |k: &K, v: &Option<V>, t| v.as_ref().map_or(t, |v| extract(k, v, t)))
    });
    let parent = inner.source(&source, topic, ks, vs, extractor, consumed.offset_reset);
    let node = parent.and_then(|parent| {
        let store = store.clone();
        add_fn(&mut inner, &name, &[parent], move |r: Record<K, Option<V>>, ctx| {
            let old = {
                let mut s = ctx.key_value_store(&store)?;
                let old = s.get(&r.key)?;
                match &r.value {
                    Some(v) => s.put(&r.key, v)?,
                    None => {
                        s.delete(&r.key)?;
                    }
                }
                old
            };
            if old.is_none() && r.value.is_none() {
                return Ok(());
            }
            let change = Change { new: r.value, old };
            ctx.forward(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers })
        })
    });
    if node.is_some() {
        inner.store(store_builder(&store_name, &materialized), &[&name]);
    }
    KTable {
        store: Rc::new(RefCell::new(Some(store))),
        ..KTable::new(builder, node, name, Some(key_serde), Some(value_serde))
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// A derived table computed by `f` from this one's changes, which can
    /// be materialized later (or at once, when `materialized` names it).
    fn derive<V2, F>(
        &self,
        kind: &str,
        value_serde: Option<SerdeRef<V2>>,
        materialized: Option<Materialized<K, V2>>,
        f: F,
    ) -> KTable<K, V2>
    where
        V2: Clone + 'static,
        F: Fn(&K, Change<V>) -> Change<V2> + Send + Sync + 'static,
    {
        let mirror: Mirror<K, V2> = Arc::new(OnceLock::new());
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name(kind);
        let node = self.node.and_then(|parent| {
            let mirror = Arc::clone(&mirror);
            add_fn(&mut inner, &name, &[parent], move |r: Record<K, Change<V>>, ctx| {
                let change = f(&r.key, r.value);
                if change.new.is_none() && change.old.is_none() {
                    return Ok(());
                }
                write_mirror(&mirror, ctx, &r.key, &change)?;
                ctx.forward(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers })
            })
        });
        drop(inner);
        let table = KTable {
            mirror: Some(mirror),
            grace: self.grace,
            ..KTable::new(&self.builder, node, name, self.key_serde.clone(), value_serde)
        };
        if let Some(m) = materialized.filter(|m| m.name.is_some()) {
            table.materialize(m, kind);
        }
        table
    }

    /// The store holding this table's rows, creating it if needed (for a
    /// join, or a name to query it by).
    pub(crate) fn materialize(
        &self,
        materialized: Materialized<K, V>,
        operator: &str,
    ) -> Option<KeyValueStoreRef<K, V>> {
        if let Some(store) = self.store.borrow().as_ref() {
            return Some(store.clone());
        }
        let mut inner = self.builder.inner.borrow_mut();
        let mirror = self.mirror.as_ref()?;
        let option = "Materialized::with on the table's operator";
        let ks =
            need_serde(&mut inner, materialized.key_serde.clone(), self.key_serde.as_ref(), "key", operator, option);
        let vs = need_serde(
            &mut inner,
            materialized.value_serde.clone(),
            self.value_serde.as_ref(),
            "value",
            operator,
            option,
        );
        let (ks, vs) = (ks?, vs?);
        let name = match &materialized.name {
            Some(n) => n.clone(),
            None => {
                let n = inner.name("KTABLE-STATE-STORE");
                format!("{}-{n}", self.processor)
            }
        };
        let store = KeyValueStoreRef::new(&name, ks, vs);
        inner.store(store_builder(&name, &materialized), &[&self.processor]);
        // The processor was added before; it writes here from its first record.
        let _ = mirror.set(store.clone());
        *self.store.borrow_mut() = Some(store.clone());
        Some(store)
    }

    /// The name of the store holding this table's rows, creating it if
    /// needed: what [`plexus_runtime::Streams::store`] queries.
    pub fn queryable_store_name(&self) -> Option<String> {
        self.materialize(Materialized::default(), "queryable_store_name()").map(|s| s.name().to_owned())
    }

    /// Keeps the rows for which `predicate` holds; a row that stops
    /// matching is deleted downstream.
    #[must_use]
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        self.filter_materialized(predicate, Materialized::default())
    }

    /// As [`Self::filter`], with the result stored (and queryable) as `materialized` says.
    #[must_use]
    pub fn filter_materialized(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let keep = move |k: &K, v: Option<V>| v.filter(|v| predicate(k, v));
        self.derive("KTABLE-FILTER", self.value_serde.clone(), Some(materialized), move |k, c| Change {
            new: keep(k, c.new),
            old: keep(k, c.old),
        })
    }

    /// Drops the rows for which `predicate` holds.
    #[must_use]
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Replaces each row's value.
    #[must_use]
    pub fn map_values<V2: Clone + 'static>(&self, f: impl Fn(&V) -> V2 + Send + Sync + 'static) -> KTable<K, V2> {
        self.derive("KTABLE-MAPVALUES", None, None, move |_, c| Change {
            new: c.new.as_ref().map(&f),
            old: c.old.as_ref().map(&f),
        })
    }

    /// As [`Self::map_values`], with the result stored (and queryable) as
    /// `materialized` says.
    #[must_use]
    pub fn map_values_materialized<V2: Clone + 'static>(
        &self,
        f: impl Fn(&V) -> V2 + Send + Sync + 'static,
        materialized: Materialized<K, V2>,
    ) -> KTable<K, V2> {
        let vs = materialized.value_serde.clone();
        self.derive("KTABLE-MAPVALUES", vs, Some(materialized), move |_, c| Change {
            new: c.new.as_ref().map(&f),
            old: c.old.as_ref().map(&f),
        })
    }

    /// The table's changelog: each update as a record, a deletion as
    /// `None` (written as a tombstone by `to`).
    #[must_use]
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name("KTABLE-TOSTREAM");
        let node = self.node.and_then(|parent| {
            add_fn(&mut inner, &name, &[parent], |r: Record<K, Change<V>>, ctx| {
                let new = r.value.new;
                ctx.forward(Record { key: r.key, value: new, timestamp: r.timestamp, headers: r.headers })
            })
        });
        let value_serde = self.value_serde.clone().map(|vs| Arc::new(OptionSerde(vs)) as SerdeRef<Option<V>>);
        KStream {
            builder: self.builder.clone(),
            node,
            key_serde: self.key_serde.clone(),
            value_serde,
            repartition_required: false,
        }
    }

    /// Writes the table's updates to a topic, deletions as tombstones
    /// (`to_stream().to(..)` with the value serde made nullable).
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let stream = self.to_stream();
        stream.to(
            topic,
            Produced { key_serde: produced.key_serde, value_serde: Arc::new(OptionSerde(produced.value_serde)) },
        );
    }

    pub(crate) fn inner(&self) -> std::cell::RefMut<'_, Inner> {
        self.builder.inner.borrow_mut()
    }
}
