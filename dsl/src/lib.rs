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

mod kstream;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use plexus_runtime::serde::Serde;
use plexus_runtime::{Error, Result, Topology};

pub use kstream::KStream;

/// Serdes of a source topic (Kafka's `Consumed`).
pub struct Consumed<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Consumed<K, V> {
    /// Reads keys and values with these serdes.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde) }
    }
}

/// Serdes of a sink topic (Kafka's `Produced`).
pub struct Produced<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Produced<K, V> {
    /// Writes keys and values with these serdes.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde) }
    }
}

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
        let node = inner.topology.add_source(&name, &[topic], consumed.key_serde, consumed.value_serde);
        let node = match node {
            Ok(n) => Some(n),
            Err(e) => {
                inner.record_error(e);
                None
            }
        };
        KStream { builder: self.clone(), node }
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
