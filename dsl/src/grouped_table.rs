//! [`KGroupedTable`]: a table regrouped by a new key, aggregated with an
//! adder and a subtractor (Kafka's `KTable.groupBy`): when a row changes,
//! its old value is subtracted from the aggregate of its old group and its
//! new value added to its new group's.
//!
//! The regrouped changes travel through `<name>-repartition`, each record
//! carrying a value to subtract, to add, or both (when the group did not
//! change), as Kafka's `ChangedSerializer` does.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use plexus_runtime::processor::Record;
use plexus_runtime::serde::{I64Serde, Serde, SerdeError};
use plexus_runtime::state::KeyValueStoreRef;

use crate::cache::{add_aggregation, key_bytes};
use crate::ktable::{Change, KTable, store_builder};
use crate::need_serde;
use crate::options::{Grouped, Materialized, SerdeRef};
use crate::processors::{add_fn, repartition};

/// Serializes a [`Change`]: a flag byte (bit 0: old present, bit 1: new
/// present), then each present value as a 4-byte length and its bytes.
pub(crate) struct ChangeSerde<V>(pub(crate) SerdeRef<V>);

impl<V> Serde<Change<V>> for ChangeSerde<V> {
    fn serialize(&self, c: &Change<V>) -> Result<Option<Bytes>, SerdeError> {
        let mut out = BytesMut::new();
        out.put_u8(u8::from(c.old.is_some()) | (u8::from(c.new.is_some()) << 1));
        for v in [&c.old, &c.new].into_iter().flatten() {
            let b = self.0.serialize(v)?.unwrap_or_default();
            out.put_u32(u32::try_from(b.len()).map_err(|_| SerdeError("a value over 4 GiB".into()))?);
            out.put_slice(&b);
        }
        Ok(Some(out.freeze()))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Change<V>, SerdeError> {
        let mut b = bytes.ok_or_else(|| SerdeError("null where a table change was expected".into()))?;
        if b.is_empty() {
            return Err(SerdeError("an empty table change".into()));
        }
        let flags = b.get_u8();
        let mut next = |present: bool| -> Result<Option<V>, SerdeError> {
            if !present {
                return Ok(None);
            }
            if b.remaining() < 4 {
                return Err(SerdeError("a truncated table change".into()));
            }
            let n = b.get_u32() as usize;
            if b.remaining() < n {
                return Err(SerdeError("a truncated table change".into()));
            }
            let v = self.0.deserialize(Some(&b[..n]))?;
            b.advance(n);
            Ok(Some(v))
        };
        let old = next(flags & 1 != 0)?;
        let new = next(flags & 2 != 0)?;
        Ok(Change { new, old })
    }
}

/// A table regrouped by a new key (Kafka's `KGroupedTable`).
pub struct KGroupedTable<K, V> {
    builder: crate::StreamsBuilder,
    /// The repartitioned changes, keyed by group; `None` after an error.
    node: Option<plexus_runtime::topology::NodeHandle<K, Change<V>>>,
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// Regroups the rows by the key `selector` computes (it may also
    /// change the value), for an aggregation with adder and subtractor.
    /// The changes go through a repartition topic named by `grouped` or
    /// generated; its serdes come from `grouped`.
    #[must_use]
    pub fn group_by<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2> {
        let mut inner = self.inner();
        let select = inner.name("KTABLE-SELECT");
        let base = grouped.name.clone().unwrap_or_else(|| inner.name("KTABLE-GROUPBY"));
        let op = "KTable::group_by()";
        let ks = need_serde(&mut inner, grouped.key_serde, None, "key", op, "Grouped::with");
        let vs = need_serde(&mut inner, grouped.value_serde, None, "value", op, "Grouped::with");
        let mut node = None;
        if let (Some(parent), Some(ks), Some(vs)) = (self.node, ks.clone(), vs.clone()) {
            let key_serde = Arc::clone(&ks);
            // Two keys are one group when their bytes are (the partitioner's view).
            let same = move |a: &K2, b: &K2| matches!((key_serde.serialize(a), key_serde.serialize(b)), (Ok(x), Ok(y)) if x == y);
            let selected = add_fn(&mut inner, &select, &[parent], move |r: Record<K, Change<V>>, ctx| {
                let old = r.value.old.as_ref().map(|v| selector(&r.key, v));
                let new = r.value.new.as_ref().map(|v| selector(&r.key, v));
                match (old, new) {
                    (Some((ko, vo)), Some((kn, vn))) if same(&ko, &kn) => {
                        ctx.forward(Record::new(kn, Change { new: Some(vn), old: Some(vo) }, r.timestamp))
                    }
                    (old, new) => {
                        if let Some((k, v)) = old {
                            ctx.forward(Record::new(k, Change { new: None, old: Some(v) }, r.timestamp))?;
                        }
                        if let Some((k, v)) = new {
                            ctx.forward(Record::new(k, Change { new: Some(v), old: None }, r.timestamp))?;
                        }
                        Ok(())
                    }
                }
            });
            let change_serde: SerdeRef<Change<V2>> = Arc::new(ChangeSerde(Arc::clone(&vs)));
            node = selected.and_then(|s| repartition(&mut inner, s, &base, Arc::clone(&ks), change_serde, None));
        }
        KGroupedTable { builder: self.builder.clone(), node, key_serde: ks, value_serde: vs }
    }
}

/// Applies a change to an aggregate: subtracts the old value, adds the
/// new one; `None` in, `None` out when the group has no aggregate.
type Apply<K, V, VA> = Arc<dyn Fn(&K, Option<V>, Option<V>, Option<VA>) -> Option<VA> + Send + Sync>;

impl<K: Clone + 'static, V: Clone + 'static> KGroupedTable<K, V> {
    fn table<VA: Clone + 'static>(
        &self,
        materialized: Materialized<K, VA>,
        operator: &str,
        apply: Apply<K, V, VA>,
    ) -> KTable<K, VA> {
        let mut inner = self.builder.inner.borrow_mut();
        let store_name = match &materialized.name {
            Some(n) => n.clone(),
            None => inner.name("KTABLE-AGGREGATE-STATE-STORE"),
        };
        let name = inner.name("KTABLE-AGGREGATE");
        let option = "Materialized::with";
        let ks =
            need_serde(&mut inner, materialized.key_serde.clone(), self.key_serde.as_ref(), "key", operator, option);
        let vs = need_serde(&mut inner, materialized.value_serde.clone(), None, "aggregate value", operator, option);
        let mut node = None;
        let mut store_ref = None;
        if let (Some(parent), Some(ks), Some(vs)) = (self.node, ks.clone(), vs.clone()) {
            let cache = materialized.caching.then(|| key_bytes(Arc::clone(&ks)));
            let store = KeyValueStoreRef::new(&store_name, ks, vs);
            let s = store.clone();
            node = add_aggregation(&mut inner, &name, parent, cache, move |r: Record<K, Change<V>>, ctx, changes| {
                let (new, old) = {
                    let mut st = ctx.key_value_store(&s)?;
                    let old = st.get(&r.key)?;
                    let new = apply(&r.key, r.value.old, r.value.new, old.clone());
                    match &new {
                        Some(v) => st.put(&r.key, v)?,
                        None => {
                            st.delete(&r.key)?;
                        }
                    }
                    (new, old)
                };
                if new.is_some() || old.is_some() {
                    let change = Change { new, old };
                    changes.push(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers });
                }
                Ok(())
            });
            if node.is_some() {
                inner.store(store_builder(&store_name, &materialized), &[&name]);
            }
            store_ref = Some(store);
        }
        drop(inner);
        KTable { store: Rc::new(RefCell::new(store_ref)), ..KTable::new(&self.builder, node, name, ks, vs) }
    }

    /// Counts the rows per group.
    #[must_use]
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let vs = materialized.value_serde.clone().or_else(|| Some(Arc::new(I64Serde)));
        self.table(
            Materialized { value_serde: vs, ..materialized },
            "count()",
            Arc::new(|_: &K, sub: Option<V>, add: Option<V>, agg: Option<i64>| {
                Some(agg.unwrap_or(0) - i64::from(sub.is_some()) + i64::from(add.is_some()))
            }),
        )
    }

    /// Combines the rows of each group with `adder`, taking a row's old
    /// value back out with `subtractor`.
    #[must_use]
    pub fn reduce(
        &self,
        adder: impl Fn(V, V) -> V + Send + Sync + 'static,
        subtractor: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let vs = materialized.value_serde.clone().or_else(|| self.value_serde.clone());
        self.table(
            Materialized { value_serde: vs, ..materialized },
            "reduce()",
            Arc::new(move |_: &K, sub: Option<V>, add: Option<V>, agg: Option<V>| {
                let agg = match (sub, agg) {
                    (Some(s), Some(a)) => Some(subtractor(a, s)),
                    (_, a) => a,
                };
                match (add, agg) {
                    (Some(v), Some(a)) => Some(adder(a, v)),
                    (Some(v), None) => Some(v),
                    (None, a) => a,
                }
            }),
        )
    }

    /// Folds the rows of each group: `initializer()` first, `adder` for a
    /// new value, `subtractor` for a value taken back.
    #[must_use]
    pub fn aggregate<VA: Clone + 'static>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        adder: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        subtractor: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.table(
            materialized,
            "aggregate()",
            Arc::new(move |k: &K, sub: Option<V>, add: Option<V>, agg: Option<VA>| {
                let mut agg = agg.unwrap_or_else(&initializer);
                if let Some(s) = sub {
                    agg = subtractor(k, s, agg);
                }
                if let Some(a) = add {
                    agg = adder(k, a, agg);
                }
                Some(agg)
            }),
        )
    }
}
