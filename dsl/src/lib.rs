//! The Plexus streams DSL: Kafka Streams' `StreamsBuilder`, `KStream` and
//! friends, in Rust's idiom, compiled to the runtime's Processor API
//! ([`plexus_runtime::Topology`]) as Kafka Streams' DSL is.
//!
//! Each operator adds one processor node, named as Kafka Streams names
//! them (`KSTREAM-FILTER-0000000001`); records pass between operators as
//! typed Rust values.
//!
//! ```
//! use plexus_dsl::{Consumed, Produced, StreamsBuilder};
//! use plexus_runtime::serde::StringSerde;
//! use plexus_runtime::TopologyTestDriver;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("words", Consumed::with(StringSerde, StringSerde))
//!     .filter(|_, w| !w.is_empty())
//!     .map_values(|w| w.to_uppercase())
//!     .to("shouted", Produced::with(StringSerde, StringSerde));
//! let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
//! driver.pipe_input("words", &StringSerde, &StringSerde, &"k".to_owned(), &"hi".to_owned(), 0).unwrap();
//! assert_eq!(driver.read_output("shouted", &StringSerde, &StringSerde).unwrap()[0].value, "HI");
//! ```

mod aggregate;
mod cache;
mod fk_join;
mod grouped;
mod grouped_table;
mod join;
mod kstream;
mod ktable;
mod options;
mod processors;
mod suppress;
mod windows;

use std::cell::RefCell;
use std::rc::Rc;

use plexus_runtime::topology::{NodeHandle, StoreBuilder};
use plexus_runtime::{Error, Result, Topology};

pub use grouped::{CogroupedKStream, KGroupedStream, SessionWindowedKStream, TimeWindowedKStream};
pub use grouped_table::KGroupedTable;
pub use join::{GlobalKTable, JoinWindows};
pub use kstream::{Branched, KStream};
pub use ktable::{Change, KTable};
pub use options::{AutoOffsetReset, Consumed, Grouped, Joined, Materialized, Produced, Repartitioned, StreamJoined};
pub use suppress::{BufferConfig, Suppressed};
pub use windows::{SessionWindows, SlidingWindows, TimeWindows, Window, Windowed, WindowedSerde};

/// The builder's state, shared by the streams and tables it hands out.
pub(crate) struct Inner {
    pub(crate) topology: Topology,
    counter: usize,
    /// The first error an operator met; `build` returns it.
    pub(crate) error: Option<Error>,
}

impl Inner {
    /// The next node name, Kafka Streams style: `KSTREAM-FILTER-0000000001`.
    pub(crate) fn name(&mut self, kind: &str) -> String {
        let name = format!("{kind}-{:010}", self.counter);
        self.counter += 1;
        name
    }

    pub(crate) fn record_error(&mut self, e: Error) {
        self.error.get_or_insert(e);
    }

    /// The value of `r`, or `None` with its error recorded for `build`.
    pub(crate) fn ok<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.record_error(e);
                None
            }
        }
    }

    /// Adds a processor node named `name` (recording a failure).
    pub(crate) fn processor<KIn, VIn, KOut, VOut, P>(
        &mut self,
        name: &str,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        parents: &[NodeHandle<KIn, VIn>],
    ) -> Option<NodeHandle<KOut, VOut>>
    where
        P: plexus_runtime::processor::Processor<KIn, VIn, KOut, VOut>,
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + 'static,
        VOut: Clone + 'static,
    {
        let r = self.topology.add_processor(name, supplier, parents);
        self.ok(r)
    }

    /// Adds a source node reading `topic` with the timestamp extractor and
    /// offset reset policy `Consumed` gave (recording a failure).
    pub(crate) fn source<K, V>(
        &mut self,
        name: &str,
        topic: &str,
        key_serde: impl plexus_runtime::serde::Serde<K> + 'static,
        value_serde: impl plexus_runtime::serde::Serde<V> + 'static,
        extractor: Option<options::Extractor<K, V>>,
        offset_reset: Option<&str>,
    ) -> Option<NodeHandle<K, V>>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        let node = match extractor {
            Some(extract) => self.topology.add_source_with_timestamp_extractor(
                name,
                &[topic],
                key_serde,
                value_serde,
                move |k, v, t| extract(k, v, t),
            ),
            None => self.topology.add_source(name, &[topic], key_serde, value_serde),
        };
        let node = self.ok(node)?;
        if let Some(policy) = offset_reset {
            let r = self.topology.set_offset_reset(topic, policy);
            self.ok(r)?;
        }
        Some(node)
    }

    /// Adds a state store used by the named processors (recording a failure).
    pub(crate) fn store(&mut self, store: StoreBuilder, processors: &[&str]) {
        let r = self.topology.add_state_store(store, processors);
        self.ok(r);
    }

    /// Gives a processor access to an existing store (recording a failure).
    pub(crate) fn connect(&mut self, processor: &str, stores: &[&str]) {
        let r = self.topology.connect_processor_and_state_stores(processor, stores);
        self.ok(r);
    }
}

/// The serde an operator needs: the one given, else the one the stream
/// knows; a missing one fails the build naming the operator.
pub(crate) fn need_serde<T: ?Sized>(
    inner: &mut Inner,
    given: Option<std::sync::Arc<T>>,
    known: Option<&std::sync::Arc<T>>,
    what: &str,
    operator: &str,
    option: &str,
) -> Option<std::sync::Arc<T>> {
    match given.or_else(|| known.cloned()) {
        Some(s) => Some(s),
        None => {
            inner.record_error(Error::Topology(format!(
                "{operator}: the {what} serde is not known (an earlier operator changed the type); pass one with {option}"
            )));
            None
        }
    }
}

/// Builds a topology from streams and tables (Kafka's `StreamsBuilder`).
#[derive(Clone)]
pub struct StreamsBuilder {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self { inner: Rc::new(RefCell::new(Inner { topology: Topology::new(), counter: 0, error: None })) }
    }

    /// A stream of the records of `topic`.
    pub fn stream<K, V>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        let mut inner = self.inner.borrow_mut();
        let name = inner.name("KSTREAM-SOURCE");
        let (ks, vs) = (std::sync::Arc::clone(&consumed.key_serde), std::sync::Arc::clone(&consumed.value_serde));
        let node = inner.source(&name, topic, ks, vs, consumed.extractor, consumed.offset_reset);
        KStream {
            builder: self.clone(),
            node,
            key_serde: Some(consumed.key_serde),
            value_serde: Some(consumed.value_serde),
            repartition_required: false,
        }
    }

    /// A table of the latest value per key of `topic` (a record with a
    /// null value deletes its key), materialized in a store named by
    /// `materialized` (queryable under that name) or generated.
    pub fn table<K, V>(&self, topic: &str, consumed: Consumed<K, V>, materialized: Materialized<K, V>) -> KTable<K, V>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        ktable::source_table(self, topic, consumed, materialized)
    }

    /// A table of all partitions of `topic` on every instance (Kafka's
    /// `globalTable`), for [`KStream::join_global`]: the application starts
    /// processing once it holds the whole topic.
    pub fn global_table<K: 'static, V: 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> GlobalKTable<K, V> {
        join::global_table(self, topic, consumed, materialized)
    }

    /// Adds a state store for custom processors ([`KStream::process`]),
    /// which name it to use it.
    pub fn add_state_store(&self, store: StoreBuilder) {
        let mut inner = self.inner.borrow_mut();
        let r = inner.topology.add_state_store(store, &[]);
        inner.ok(r);
    }

    /// The topology, or the first error an operator met. The builder is
    /// empty afterwards.
    pub fn build(&self) -> Result<Topology> {
        let mut inner = self.inner.borrow_mut();
        match inner.error.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut inner.topology)),
        }
    }
}
