//! [`KStream`]: a stream of records, its stateless operators, and the
//! entry points of grouping and joining.

use std::collections::BTreeMap;
use std::sync::Arc;

use plexus_runtime::processor::{Processor, ProcessorContext, Record};
use plexus_runtime::topology::NodeHandle;

use crate::grouped::KGroupedStream;
use crate::options::{Grouped, Produced, Repartitioned, SerdeRef};
use crate::processors::{add_fn, repartition};
use crate::{StreamsBuilder, need_serde};

/// An unbounded stream of key-value records (Kafka's `KStream`).
///
/// Operators return new streams; the stream they are called on stays
/// usable, so one stream can feed several branches of a topology.
pub struct KStream<K, V> {
    pub(crate) builder: StreamsBuilder,
    /// `None` after an error (recorded in the builder).
    pub(crate) node: Option<NodeHandle<K, V>>,
    /// The serdes, while the stream's types are those it was read with.
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    /// Whether the key changed since the stream was last read from a
    /// topic, so that a stateful operator must repartition it first.
    pub(crate) repartition_required: bool,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        Self {
            builder: self.builder.clone(),
            node: self.node,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            repartition_required: self.repartition_required,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Adds a node running `f` on every record; the new stream has the
    /// given serdes and repartitioning need.
    fn then<K2, V2, F>(
        &self,
        kind: &str,
        key_serde: Option<SerdeRef<K2>>,
        value_serde: Option<SerdeRef<V2>>,
        repartition_required: bool,
        f: F,
    ) -> KStream<K2, V2>
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        F: Fn(Record<K, V>, &mut ProcessorContext<'_, K2, V2>) -> plexus_runtime::Result<()> + Send + Sync + 'static,
    {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name(kind);
        let node = self.node.and_then(|parent| add_fn(&mut inner, &name, &[parent], f));
        KStream { builder: self.builder.clone(), node, key_serde, value_serde, repartition_required }
    }

    /// Keeps the records for which `predicate` holds.
    ///
    /// ```
    /// # use plexus_dsl::{Consumed, StreamsBuilder};
    /// # use plexus_runtime::serde::{I64Serde, StringSerde};
    /// let builder = StreamsBuilder::new();
    /// let big = builder.stream("amounts", Consumed::with(StringSerde, I64Serde)).filter(|_, amount| *amount > 100);
    /// ```
    #[must_use]
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.then(
            "KSTREAM-FILTER",
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.repartition_required,
            move |r, ctx| if predicate(&r.key, &r.value) { ctx.forward(r) } else { Ok(()) },
        )
    }

    /// Drops the records for which `predicate` holds.
    #[must_use]
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Replaces each value (the key stays, so no repartitioning follows).
    #[must_use]
    pub fn map_values<V2: Clone + 'static>(&self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        self.then("KSTREAM-MAPVALUES", self.key_serde.clone(), None, self.repartition_required, move |r, ctx| {
            let value = f(r.value);
            ctx.forward(Record { key: r.key, value, timestamp: r.timestamp, headers: r.headers })
        })
    }

    /// Replaces each record's key and value; a stateful operator after it
    /// repartitions the stream by the new key.
    #[must_use]
    pub fn map<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        self.then("KSTREAM-MAP", None, None, true, move |r, ctx| {
            let (key, value) = f(r.key, r.value);
            ctx.forward(Record { key, value, timestamp: r.timestamp, headers: r.headers })
        })
    }

    /// Replaces each record by zero or more records.
    #[must_use]
    pub fn flat_map<K2, V2, I>(&self, f: impl Fn(K, V) -> I + Send + Sync + 'static) -> KStream<K2, V2>
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.then("KSTREAM-FLATMAP", None, None, true, move |r, ctx| {
            for (key, value) in f(r.key, r.value) {
                ctx.forward(Record { key, value, timestamp: r.timestamp, headers: r.headers.clone() })?;
            }
            Ok(())
        })
    }

    /// Replaces each value by zero or more values, each with the record's key.
    ///
    /// ```
    /// # use plexus_dsl::{Consumed, StreamsBuilder};
    /// # use plexus_runtime::serde::StringSerde;
    /// let builder = StreamsBuilder::new();
    /// let words = builder
    ///     .stream("lines", Consumed::with(StringSerde, StringSerde))
    ///     .flat_map_values(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
    /// ```
    #[must_use]
    pub fn flat_map_values<V2, I>(&self, f: impl Fn(V) -> I + Send + Sync + 'static) -> KStream<K, V2>
    where
        V2: Clone + 'static,
        I: IntoIterator<Item = V2>,
    {
        self.then("KSTREAM-FLATMAPVALUES", self.key_serde.clone(), None, self.repartition_required, move |r, ctx| {
            for value in f(r.value) {
                ctx.forward(Record { key: r.key.clone(), value, timestamp: r.timestamp, headers: r.headers.clone() })?;
            }
            Ok(())
        })
    }

    /// Gives each record a new key computed from it; a stateful operator
    /// after it repartitions the stream by the new key.
    #[must_use]
    pub fn select_key<K2: Clone + 'static>(&self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> KStream<K2, V> {
        self.then("KSTREAM-KEY-SELECT", None, self.value_serde.clone(), true, move |r, ctx| {
            let key = f(&r.key, &r.value);
            ctx.forward(r.with_key(key))
        })
    }

    /// Calls `f` on each record and passes it on unchanged.
    #[must_use]
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        self.then(
            "KSTREAM-PEEK",
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.repartition_required,
            move |r, ctx| {
                f(&r.key, &r.value);
                ctx.forward(r)
            },
        )
    }

    /// Calls `f` on each record (a terminal operation).
    pub fn foreach(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) {
        let _: KStream<K, V> = self.then("KSTREAM-FOREACH", None, None, false, move |r: Record<K, V>, _| {
            f(&r.key, &r.value);
            Ok(())
        });
    }

    /// Splits the stream by predicates (Kafka's `split()`): each record
    /// goes to the first branch whose predicate holds.
    ///
    /// ```
    /// # use plexus_dsl::{Consumed, StreamsBuilder};
    /// # use plexus_runtime::serde::{I64Serde, StringSerde};
    /// let builder = StreamsBuilder::new();
    /// let branches = builder
    ///     .stream("amounts", Consumed::with(StringSerde, I64Serde))
    ///     .split()
    ///     .branch("large", |_, a| *a >= 1000)
    ///     .branch("small", |_, a| *a > 0)
    ///     .default_branch("other");
    /// assert_eq!(branches.keys().collect::<Vec<_>>(), ["large", "other", "small"]);
    /// ```
    #[must_use]
    pub fn split(&self) -> Branched<K, V> {
        Branched { stream: self.clone(), predicates: Vec::new() }
    }

    /// One stream of the records of both (Kafka's `merge`).
    #[must_use]
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name("KSTREAM-MERGE");
        let node = match (self.node, other.node) {
            (Some(a), Some(b)) => add_fn(&mut inner, &name, &[a, b], |r, ctx| ctx.forward(r)),
            _ => None,
        };
        KStream {
            builder: self.builder.clone(),
            node,
            key_serde: self.key_serde.clone().or_else(|| other.key_serde.clone()),
            value_serde: self.value_serde.clone().or_else(|| other.value_serde.clone()),
            repartition_required: self.repartition_required || other.repartition_required,
        }
    }

    /// Sends the stream through a repartition topic, so that records are
    /// partitioned by their current key (Kafka's `repartition`).
    #[must_use]
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let mut inner = self.builder.inner.borrow_mut();
        let op = "repartition()";
        let ks =
            need_serde(&mut inner, repartitioned.key_serde, self.key_serde.as_ref(), "key", op, "Repartitioned::with");
        let vs = need_serde(
            &mut inner,
            repartitioned.value_serde,
            self.value_serde.as_ref(),
            "value",
            op,
            "Repartitioned::with",
        );
        let base = match repartitioned.name {
            Some(n) => n,
            None => inner.name("KSTREAM-REPARTITION"),
        };
        let node = match (self.node, ks.clone(), vs.clone()) {
            (Some(parent), Some(ks), Some(vs)) => {
                repartition(&mut inner, parent, &base, ks, vs, repartitioned.partitions)
            }
            _ => None,
        };
        KStream { builder: self.builder.clone(), node, key_serde: ks, value_serde: vs, repartition_required: false }
    }

    /// This stream, repartitioned if its key changed, for a stateful
    /// operator named `base`.
    pub(crate) fn prepared_for_state(
        &self,
        base: &str,
        key_serde: Option<SerdeRef<K>>,
        value_serde: Option<SerdeRef<V>>,
        operator: &str,
        option: &str,
    ) -> KStream<K, V> {
        if !self.repartition_required {
            let mut s = self.clone();
            s.key_serde = key_serde.or(s.key_serde);
            s.value_serde = value_serde.or(s.value_serde);
            return s;
        }
        let mut inner = self.builder.inner.borrow_mut();
        let ks = need_serde(&mut inner, key_serde, self.key_serde.as_ref(), "key", operator, option);
        let vs = need_serde(&mut inner, value_serde, self.value_serde.as_ref(), "value", operator, option);
        let node = match (self.node, ks.clone(), vs.clone()) {
            (Some(parent), Some(ks), Some(vs)) => repartition(&mut inner, parent, base, ks, vs, None),
            _ => None,
        };
        KStream { builder: self.builder.clone(), node, key_serde: ks, value_serde: vs, repartition_required: false }
    }

    /// Writes the stream to a topic.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name("KSTREAM-SINK");
        if let Some(parent) = self.node {
            let r = inner.topology.add_sink(&name, topic, produced.key_serde, produced.value_serde, &[parent]);
            inner.ok(r);
        }
    }

    /// Writes each record to the topic `extractor` names for it (Kafka's
    /// `TopicNameExtractor`). The topics must exist.
    pub fn to_dynamic(&self, extractor: impl Fn(&K, &V) -> String + Send + Sync + 'static, produced: Produced<K, V>) {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name("KSTREAM-SINK");
        if let Some(parent) = self.node {
            let r =
                inner.topology.add_dynamic_sink(&name, extractor, produced.key_serde, produced.value_serde, &[parent]);
            inner.ok(r);
        }
    }

    /// Runs a custom processor on each record (Kafka's `process`): it may
    /// use the named state stores (added with
    /// [`StreamsBuilder::add_state_store`]) and schedule punctuators.
    #[must_use]
    pub fn process<K2, V2, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<K2, V2>
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        P: Processor<K, V, K2, V2>,
    {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name("KSTREAM-PROCESSOR");
        let node = self.node.and_then(|parent| inner.processor(&name, supplier, &[parent]));
        if node.is_some() && !stores.is_empty() {
            inner.connect(&name, stores);
        }
        KStream { builder: self.builder.clone(), node, key_serde: None, value_serde: None, repartition_required: true }
    }

    /// Groups the records by their key, for an aggregation; repartitions
    /// first if the key changed (with the stream's serdes).
    #[must_use]
    pub fn group_by_key(&self) -> KGroupedStream<K, V> {
        self.group_by_key_with(Grouped::default())
    }

    /// Groups the records by their key, naming the grouping and giving the
    /// serdes of its repartition topic.
    #[must_use]
    pub fn group_by_key_with(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self.clone(), grouped)
    }

    /// Groups the records by a new key computed from each; always
    /// repartitions, so the key serde must be given unless `K2 = K`'s is known.
    #[must_use]
    pub fn group_by<K2: Clone + 'static>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        KGroupedStream::new(self.select_key(selector), grouped)
    }
}

/// A stream being split into named branches (Kafka's `BranchedKStream`).
pub struct Branched<K, V> {
    stream: KStream<K, V>,
    #[allow(clippy::type_complexity)]
    predicates: Vec<(String, Arc<dyn Fn(&K, &V) -> bool + Send + Sync>)>,
}

impl<K: Clone + 'static, V: Clone + 'static> Branched<K, V> {
    /// A branch for the records `predicate` holds for (and no earlier branch took).
    #[must_use]
    pub fn branch(mut self, name: &str, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.predicates.push((name.to_owned(), Arc::new(predicate)));
        self
    }

    /// The branches, with a last one named `name` for the records no
    /// predicate took.
    pub fn default_branch(mut self, name: &str) -> BTreeMap<String, KStream<K, V>> {
        self.predicates.push((name.to_owned(), Arc::new(|_, _| true)));
        self.no_default_branch()
    }

    /// The branches; records no predicate took are dropped.
    pub fn no_default_branch(self) -> BTreeMap<String, KStream<K, V>> {
        let predicates = self.predicates;
        let names: Vec<String> = predicates.iter().map(|(n, _)| n.clone()).collect();
        let tests: Vec<_> = predicates.into_iter().map(|(_, p)| p).collect();
        // One node finds the branch, its children keep their own records.
        let router: KStream<K, (usize, V)> = self.stream.then("KSTREAM-BRANCH", None, None, false, move |r, ctx| {
            match tests.iter().position(|t| t(&r.key, &r.value)) {
                Some(i) => {
                    let value = (i, r.value);
                    ctx.forward(Record { key: r.key, value, timestamp: r.timestamp, headers: r.headers })
                }
                None => Ok(()),
            }
        });
        let mut out = BTreeMap::new();
        for (i, name) in names.into_iter().enumerate() {
            let branch: KStream<K, V> = router.then(
                "KSTREAM-BRANCHCHILD",
                self.stream.key_serde.clone(),
                self.stream.value_serde.clone(),
                self.stream.repartition_required,
                move |r: Record<K, (usize, V)>, ctx| {
                    if r.value.0 == i {
                        let value = r.value.1;
                        ctx.forward(Record { key: r.key, value, timestamp: r.timestamp, headers: r.headers })
                    } else {
                        Ok(())
                    }
                },
            );
            out.insert(name, branch);
        }
        out
    }
}
