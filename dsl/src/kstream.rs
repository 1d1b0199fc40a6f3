//! [`KStream`]: a stream of records, and its stateless operators.

use std::sync::Arc;

use plexus_runtime::Result;
use plexus_runtime::processor::{Processor, ProcessorContext, Record};
use plexus_runtime::topology::NodeHandle;

use crate::{Produced, StreamsBuilder};

/// An unbounded stream of key-value records (Kafka's `KStream`).
pub struct KStream<K, V> {
    pub(crate) builder: StreamsBuilder,
    /// `None` after an error (recorded in the builder).
    pub(crate) node: Option<NodeHandle<K, V>>,
}

/// A processor calling a function per record.
struct FnProcessor<F>(Arc<F>);

impl<K, V, K2, V2, F> Processor<K, V, K2, V2> for FnProcessor<F>
where
    F: Fn(Record<K, V>, &mut ProcessorContext<'_, K2, V2>) -> Result<()> + Send + Sync + 'static,
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>) -> Result<()> {
        (self.0)(record, ctx)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Adds a node running `f` on every record.
    fn then<K2, V2, F>(&self, kind: &str, f: F) -> KStream<K2, V2>
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        F: Fn(Record<K, V>, &mut ProcessorContext<'_, K2, V2>) -> Result<()> + Send + Sync + 'static,
    {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name(kind);
        let node = self.node.and_then(|parent| {
            let f = Arc::new(f);
            match inner.topology.add_processor(&name, move || FnProcessor(Arc::clone(&f)), &[parent]) {
                Ok(n) => Some(n),
                Err(e) => {
                    inner.record_error(e);
                    None
                }
            }
        });
        KStream { builder: self.builder.clone(), node }
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
        self.then("KSTREAM-FILTER", move |r, ctx| if predicate(&r.key, &r.value) { ctx.forward(r) } else { Ok(()) })
    }

    /// Drops the records for which `predicate` holds.
    #[must_use]
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Replaces each value (the key stays, so no repartitioning follows).
    #[must_use]
    pub fn map_values<V2: Clone + 'static>(&self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        self.then("KSTREAM-MAPVALUES", move |r: Record<K, V>, ctx| {
            let value = f(r.value);
            ctx.forward(Record { key: r.key, value, timestamp: r.timestamp, headers: r.headers })
        })
    }

    /// Replaces each record's key and value.
    #[must_use]
    pub fn map<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        self.then("KSTREAM-MAP", move |r: Record<K, V>, ctx| {
            let (key, value) = f(r.key, r.value);
            ctx.forward(Record { key, value, timestamp: r.timestamp, headers: r.headers })
        })
    }

    /// Calls `f` on each record and passes it on unchanged.
    #[must_use]
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        self.then("KSTREAM-PEEK", move |r, ctx| {
            f(&r.key, &r.value);
            ctx.forward(r)
        })
    }

    /// Writes the stream to a topic.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name("KSTREAM-SINK");
        if let Some(parent) = self.node
            && let Err(e) = inner.topology.add_sink(&name, topic, produced.key_serde, produced.value_serde, &[parent])
        {
            inner.record_error(e);
        }
    }
}
