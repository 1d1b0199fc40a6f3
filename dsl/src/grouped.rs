//! Grouped streams and their aggregations: [`KGroupedStream`] (count,
//! reduce, aggregate into a [`KTable`]), windowed by time
//! ([`TimeWindowedKStream`]), by sliding windows or by sessions
//! ([`SessionWindowedKStream`]), and cogrouped ([`CogroupedKStream`]).
//!
//! A grouped stream whose key changed is repartitioned first, through
//! `<name>-repartition` where `name` is the grouping's (from [`Grouped`])
//! or else the store's.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use plexus_runtime::serde::I64Serde;
use plexus_runtime::state::{KeyValueStoreRef, SessionStoreRef, WindowStoreRef};
use plexus_runtime::topology::{NodeHandle, StoreBuilder};

use crate::aggregate::{
    Combine, Merger, aggregating, counting, kv_aggregate, reducing, session_aggregate, sliding_aggregate,
    time_window_aggregate,
};
use crate::cache::{KeyBytes, key_bytes, windowed_key_bytes};
use crate::kstream::KStream;
use crate::ktable::{Change, KTable, store_builder};
use crate::options::{Grouped, Materialized, SerdeRef};
use crate::processors::add_fn;
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows, Windowed, WindowedSerde, millis};
use crate::{Inner, need_serde};

/// A stream grouped by key, ready to aggregate (Kafka's `KGroupedStream`).
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    grouped: Grouped<K, V>,
}

/// What every aggregation needs: the stream repartitioned if needed, the
/// store name and serdes.
struct Plan<K, V, VA> {
    stream: KStream<K, V>,
    store: String,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<VA>,
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>, grouped: Grouped<K, V>) -> Self {
        Self { stream, grouped }
    }

    /// Names the store (from `materialized` or generated), repartitions
    /// the stream if its key changed, and finds the serdes.
    fn plan<VA>(&self, materialized: &Materialized<K, VA>, operator: &str) -> Option<Plan<K, V, VA>> {
        let store = {
            let mut inner = self.stream.builder.inner.borrow_mut();
            materialized.name.clone().unwrap_or_else(|| inner.name("KSTREAM-AGGREGATE-STATE-STORE"))
        };
        let base = self.grouped.name.clone().unwrap_or_else(|| store.clone());
        let stream = self.stream.prepared_for_state(
            &base,
            self.grouped.key_serde.clone(),
            self.grouped.value_serde.clone(),
            operator,
            "Grouped::with",
        );
        let mut inner = self.stream.builder.inner.borrow_mut();
        let option = "Materialized::with";
        let ks =
            need_serde(&mut inner, materialized.key_serde.clone(), stream.key_serde.as_ref(), "key", operator, option);
        let vs = need_serde(&mut inner, materialized.value_serde.clone(), None, "aggregate value", operator, option);
        Some(Plan { stream, store, key_serde: ks?, value_serde: vs? })
    }

    fn table<VA: Clone + 'static>(
        &self,
        materialized: Materialized<K, VA>,
        operator: &str,
        combine: Combine<K, V, VA>,
    ) -> KTable<K, VA> {
        let plan = self.plan(&materialized, operator);
        let mut inner = self.stream.builder.inner.borrow_mut();
        let name = inner.name("KSTREAM-AGGREGATE");
        let (node, store, key_serde, value_serde) = match plan {
            Some(p) => {
                let store = KeyValueStoreRef::new(&p.store, Arc::clone(&p.key_serde), Arc::clone(&p.value_serde));
                let cache = materialized.caching.then(|| key_bytes(Arc::clone(&p.key_serde)));
                let node = p
                    .stream
                    .node
                    .and_then(|parent| kv_aggregate(&mut inner, &name, parent, store.clone(), combine, cache));
                if node.is_some() {
                    inner.store(store_builder(&p.store, &materialized), &[&name]);
                }
                (node, Some(store), Some(p.key_serde), Some(p.value_serde))
            }
            None => (None, None, None, None),
        };
        KTable {
            store: Rc::new(RefCell::new(store)),
            ..KTable::new(&self.stream.builder, node, name, key_serde, value_serde)
        }
    }

    /// Counts the records per key. `materialized` may name the store; its
    /// value serde defaults to `I64Serde`.
    ///
    /// ```
    /// # use plexus_dsl::{Consumed, Materialized, StreamsBuilder};
    /// # use plexus_runtime::serde::StringSerde;
    /// let builder = StreamsBuilder::new();
    /// let counts = builder
    ///     .stream("words", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key()
    ///     .count(Materialized::named("counts"));
    /// ```
    #[must_use]
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let materialized = with_count_serde(materialized);
        self.table(materialized, "count()", counting())
    }

    /// Combines each key's values with `reducer(aggregate, value)`; the
    /// first value is the first aggregate.
    #[must_use]
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let materialized = Materialized {
            value_serde: materialized.value_serde.clone().or_else(|| self.stream.value_serde.clone()),
            ..materialized
        };
        self.table(materialized, "reduce()", reducing(reducer))
    }

    /// Folds each key's values into an aggregate: `initializer()` first,
    /// then `aggregator(key, value, aggregate)` per record.
    #[must_use]
    pub fn aggregate<VA: Clone + 'static>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.table(materialized, "aggregate()", aggregating(initializer, aggregator))
    }

    /// Aggregates in fixed time windows (tumbling or hopping).
    #[must_use]
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream { grouped: self.clone_shallow(), windows: WindowKind::Time(windows) }
    }

    /// Aggregates in sliding windows.
    #[must_use]
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream { grouped: self.clone_shallow(), windows: WindowKind::Sliding(windows) }
    }

    /// Aggregates in sessions.
    #[must_use]
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream { grouped: self.clone_shallow(), windows }
    }

    /// Starts a cogroup: several grouped streams aggregated into one table,
    /// each with its own aggregator (Kafka's `cogroup`).
    #[must_use]
    pub fn cogroup<VA: Clone + 'static>(
        &self,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    ) -> CogroupedKStream<K, VA> {
        CogroupedKStream { builder: self.stream.builder.clone(), inputs: Vec::new() }.cogroup(self, aggregator)
    }

    fn clone_shallow(&self) -> KGroupedStream<K, V> {
        KGroupedStream {
            stream: self.stream.clone(),
            grouped: Grouped {
                name: self.grouped.name.clone(),
                key_serde: self.grouped.key_serde.clone(),
                value_serde: self.grouped.value_serde.clone(),
            },
        }
    }
}

fn with_count_serde<K>(m: Materialized<K, i64>) -> Materialized<K, i64> {
    let value_serde = m.value_serde.clone().or_else(|| Some(Arc::new(I64Serde)));
    Materialized { value_serde, ..m }
}

enum WindowKind {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

/// A grouped stream windowed by time (Kafka's `TimeWindowedKStream`).
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: WindowKind,
}

impl<K: Clone + 'static, V: Clone + 'static> TimeWindowedKStream<K, V> {
    fn table<VA: Clone + 'static>(
        &self,
        materialized: Materialized<K, VA>,
        operator: &str,
        combine: Combine<K, V, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let plan = self.grouped.plan(&materialized, operator);
        let builder = self.grouped.stream.builder.clone();
        let mut inner = builder.inner.borrow_mut();
        let name = inner.name("KSTREAM-AGGREGATE");
        let (size, grace) = match &self.windows {
            WindowKind::Time(w) => (w.size, w.grace),
            WindowKind::Sliding(w) => (w.difference, w.grace),
        };
        let retention = materialized.retention.map_or(size + grace, millis).max(size + grace);
        let mut out = WindowedTable { node: None, key_serde: None, value_serde: None };
        let record_serde = match (&self.windows, &plan) {
            (WindowKind::Sliding(_), Some(p)) => need_serde(
                &mut inner,
                None,
                p.stream.value_serde.as_ref(),
                "value",
                "windowed_by_sliding()",
                "Grouped::with (sliding windows keep the records)",
            ),
            _ => None,
        };
        if let Some(p) = plan {
            let store = WindowStoreRef::new(&p.store, Arc::clone(&p.key_serde), Arc::clone(&p.value_serde));
            let cache = materialized.caching.then(|| windowed_key_bytes(Arc::clone(&p.key_serde)));
            out.node = p.stream.node.and_then(|parent| match &self.windows {
                WindowKind::Time(w) => time_window_aggregate(&mut inner, &name, parent, store, *w, combine, cache),
                WindowKind::Sliding(w) => {
                    let records = WindowStoreRef::new(
                        &format!("{}-records", p.store),
                        Arc::clone(&p.key_serde),
                        Arc::clone(record_serde.as_ref()?),
                    );
                    sliding_aggregate(&mut inner, &name, parent, store, records, *w, combine, cache)
                }
            });
            if out.node.is_some() {
                let keep = std::time::Duration::from_millis(u64::try_from(retention).unwrap_or(u64::MAX));
                inner.store(materialized.configure(StoreBuilder::window(&p.store, keep, false)), &[&name]);
                if let WindowKind::Sliding(w) = &self.windows {
                    // The raw records, kept long enough to rebuild any open window.
                    let keep = retention.max(2 * w.difference + w.grace + 1);
                    let keep = std::time::Duration::from_millis(u64::try_from(keep).unwrap_or(u64::MAX));
                    let records = StoreBuilder::window(&format!("{}-records", p.store), keep, true);
                    inner.store(materialized.configure(records), &[&name]);
                }
            }
            out.key_serde = Some(Arc::new(WindowedSerde::from_ref(p.key_serde)) as SerdeRef<Windowed<K>>);
            out.value_serde = Some(p.value_serde);
        }
        out.into_table(&builder, name, grace)
    }

    /// Counts the records per key and window.
    #[must_use]
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.table(with_count_serde(materialized), "count()", counting())
    }

    /// Combines each key's values per window.
    #[must_use]
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let vs = materialized.value_serde.clone().or_else(|| self.grouped.stream.value_serde.clone());
        self.table(Materialized { value_serde: vs, ..materialized }, "reduce()", reducing(reducer))
    }

    /// Folds each key's values per window into an aggregate.
    #[must_use]
    pub fn aggregate<VA: Clone + 'static>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        self.table(materialized, "aggregate()", aggregating(initializer, aggregator))
    }
}

/// The parts of a windowed table being built.
struct WindowedTable<K, VA> {
    node: Option<NodeHandle<Windowed<K>, Change<VA>>>,
    key_serde: Option<SerdeRef<Windowed<K>>>,
    value_serde: Option<SerdeRef<VA>>,
}

impl<K, VA> WindowedTable<K, VA> {
    fn into_table(self, builder: &crate::StreamsBuilder, processor: String, grace: i64) -> KTable<Windowed<K>, VA> {
        KTable { grace: Some(grace), ..KTable::new(builder, self.node, processor, self.key_serde, self.value_serde) }
    }
}

/// A grouped stream windowed by sessions (Kafka's `SessionWindowedKStream`).
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
}

impl<K: Clone + 'static, V: Clone + 'static> SessionWindowedKStream<K, V> {
    fn table<VA: Clone + 'static>(
        &self,
        materialized: Materialized<K, VA>,
        operator: &str,
        combine: Combine<K, V, VA>,
        merger: Merger<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let plan = self.grouped.plan(&materialized, operator);
        let builder = self.grouped.stream.builder.clone();
        let mut inner = builder.inner.borrow_mut();
        let name = inner.name("KSTREAM-SESSION-AGGREGATE");
        let w = self.windows;
        let mut out = WindowedTable { node: None, key_serde: None, value_serde: None };
        if let Some(p) = plan {
            let store = SessionStoreRef::new(&p.store, Arc::clone(&p.key_serde), Arc::clone(&p.value_serde));
            let cache = materialized.caching.then(|| windowed_key_bytes(Arc::clone(&p.key_serde)));
            out.node = p
                .stream
                .node
                .and_then(|parent| session_aggregate(&mut inner, &name, parent, store, w, combine, merger, cache));
            if out.node.is_some() {
                // A late record may bridge to a session ending up to two gaps
                // before the close time: keep those (Kafka keeps gap + grace).
                let least = 2 * w.gap + w.grace + 1;
                let retention = materialized.retention.map_or(least, millis).max(least);
                let retention = std::time::Duration::from_millis(u64::try_from(retention).unwrap_or(u64::MAX));
                inner.store(materialized.configure(StoreBuilder::session(&p.store, retention)), &[&name]);
            }
            out.key_serde = Some(Arc::new(WindowedSerde::from_ref(p.key_serde)) as SerdeRef<Windowed<K>>);
            out.value_serde = Some(p.value_serde);
        }
        out.into_table(&builder, name, w.grace)
    }

    /// Counts the records per key and session.
    #[must_use]
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.table(with_count_serde(materialized), "count()", counting(), Arc::new(|_: &K, a, b| a + b))
    }

    /// Combines each key's values per session; sessions that merge are
    /// combined with the same reducer.
    #[must_use]
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let vs = materialized.value_serde.clone().or_else(|| self.grouped.stream.value_serde.clone());
        let reducer = Arc::new(reducer);
        let r = Arc::clone(&reducer);
        self.table(
            Materialized { value_serde: vs, ..materialized },
            "reduce()",
            reducing(move |a, b| r(a, b)),
            Arc::new(move |_: &K, a, b| reducer(a, b)),
        )
    }

    /// Folds each key's values per session; `merger` combines the
    /// aggregates of sessions a record joins together.
    #[must_use]
    pub fn aggregate<VA: Clone + 'static>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        self.table(materialized, "aggregate()", aggregating(initializer, aggregator), Arc::new(merger))
    }
}

/// Several grouped streams aggregated into one table (Kafka's
/// `CogroupedKStream`).
pub struct CogroupedKStream<K, VA> {
    builder: crate::StreamsBuilder,
    /// Each input: adds its aggregating processor for a store, given the
    /// store name to repartition through.
    #[allow(clippy::type_complexity)]
    inputs: Vec<
        Box<
            dyn FnOnce(
                &KeyValueStoreRef<K, VA>,
                Arc<dyn Fn() -> VA + Send + Sync>,
                Option<KeyBytes<K>>,
            ) -> Option<(String, NodeHandle<K, Change<VA>>)>,
        >,
    >,
}

impl<K: Clone + 'static, VA: Clone + 'static> CogroupedKStream<K, VA> {
    /// Adds another grouped stream with its aggregator.
    #[must_use]
    pub fn cogroup<V: Clone + 'static>(
        mut self,
        grouped: &KGroupedStream<K, V>,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    ) -> Self {
        let grouped = grouped.clone_shallow();
        let aggregator = Arc::new(aggregator);
        self.inputs.push(Box::new(move |store: &KeyValueStoreRef<K, VA>, init, cache| {
            let stream = grouped.stream.prepared_for_state(
                &grouped.grouped.name.clone().unwrap_or_else(|| store.name().to_owned()),
                grouped.grouped.key_serde.clone(),
                grouped.grouped.value_serde.clone(),
                "cogroup()",
                "Grouped::with",
            );
            let mut inner = stream.builder.inner.borrow_mut();
            let name = inner.name("COGROUPKSTREAM-AGGREGATE");
            let combine: Combine<K, V, VA> =
                Arc::new(move |k: &K, v: V, old: Option<VA>| aggregator(k, v, old.unwrap_or_else(|| init())));
            let node = stream
                .node
                .and_then(|parent| kv_aggregate(&mut inner, &name, parent, store.clone(), combine, cache))?;
            Some((name, node))
        }));
        self
    }

    /// Aggregates every input into one table, starting each key at `initializer()`.
    #[must_use]
    pub fn aggregate(
        self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        let (store_name, merge) = {
            let mut inner = self.builder.inner.borrow_mut();
            let store = materialized.name.clone().unwrap_or_else(|| inner.name("COGROUPKSTREAM-AGGREGATE-STATE-STORE"));
            (store, inner.name("COGROUPKSTREAM-MERGE"))
        };
        let (ks, vs) = (materialized.key_serde.clone(), materialized.value_serde.clone());
        let missing = ks.is_none() || vs.is_none();
        let init: Arc<dyn Fn() -> VA + Send + Sync> = Arc::new(initializer);
        let mut node = None;
        let mut store_ref = None;
        if missing {
            let mut inner = self.builder.inner.borrow_mut();
            record_missing(&mut inner);
        } else if let (Some(ks), Some(vs)) = (ks.clone(), vs.clone()) {
            let cache = materialized.caching.then(|| key_bytes(Arc::clone(&ks)));
            let store = KeyValueStoreRef::new(&store_name, ks, vs);
            let mut parents = Vec::new();
            let mut names = Vec::new();
            for input in self.inputs {
                if let Some((name, n)) = input(&store, Arc::clone(&init), cache.clone()) {
                    names.push(name);
                    parents.push(n);
                }
            }
            let mut inner = self.builder.inner.borrow_mut();
            if !parents.is_empty() {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                inner.store(store_builder(&store_name, &materialized), &names);
                node = add_fn(&mut inner, &merge, &parents, |r, ctx| ctx.forward(r));
            }
            store_ref = Some(store);
        }
        KTable { store: Rc::new(RefCell::new(store_ref)), ..KTable::new(&self.builder, node, merge, ks, vs) }
    }
}

fn record_missing(inner: &mut Inner) {
    inner.record_error(plexus_runtime::Error::Topology(
        "cogroup().aggregate(): the store's serdes are needed; pass them with Materialized::with".into(),
    ));
}
