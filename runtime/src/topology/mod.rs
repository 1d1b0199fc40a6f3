//! [`Topology`]: the graph of sources, processors and sinks an application
//! runs, built with the Processor API (or compiled from the DSL), and
//! [`Topology::describe`] to print it as Kafka Streams does.
//!
//! Nodes are added with typed handles: a processor's parents must produce
//! the record types it takes, which the compiler checks. The topology
//! itself keeps node *builders*; each task builds its own typed graph of
//! processor instances from them ([`crate::task`]), on the thread that runs it.
//!
//! Nodes connected by parent edges form a sub-topology; a task is one
//! sub-topology on one partition of its input topics.

mod describe;
mod internal;
mod store;

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::processor::node::{Lifecycle, Node, ProcessorNode};
use crate::processor::{Child, Processor};
use crate::serde::Serde;
use crate::source_sink::{RawSource, SinkNode, SinkTopic, SourceNode, TopicExtractor};
pub use describe::TopologyDescription;
pub use internal::InternalTopic;
pub use store::{StoreBuilder, StoreKind};

/// A typed handle on a node of a [`Topology`]: what its records look like
/// to the nodes downstream of it.
pub struct NodeHandle<K, V> {
    pub(crate) index: usize,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for NodeHandle<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for NodeHandle<K, V> {}

impl<K, V> std::fmt::Debug for NodeHandle<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeHandle({})", self.index)
    }
}

/// How `describe()` shows the topic of a sink that picks topics per record.
const DYNAMIC_TOPIC: &str = "[topic chosen per record]";

/// What kind of node, for `describe()` and for routing input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source { topics: Vec<String> },
    Processor,
    Sink { topic: String },
}

/// A node's type-erased builder: given its index, its kind (with its
/// topics resolved) and its children (each a `Child<KOut, VOut>` behind
/// `Any`), builds the node for one task and returns how parents reach it
/// and how the task drives it.
pub(crate) type Builder = Arc<dyn Fn(usize, &NodeKind, Vec<Rc<dyn Any>>) -> Result<Built> + Send + Sync>;

/// One built node.
pub(crate) struct Built {
    /// How parents reach it: a `Child<KIn, VIn>` behind `Any` (none for
    /// sources); shared, since a node may have several parents.
    pub(crate) as_child: Option<Rc<dyn Any>>,
    /// How the task initialises, punctuates and closes it.
    pub(crate) lifecycle: Option<Rc<RefCell<dyn Lifecycle>>>,
    /// How the task feeds it input (sources only).
    pub(crate) source: Option<Rc<RefCell<dyn RawSource>>>,
}

pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) stores: Vec<String>,
    pub(crate) builder: Builder,
}

/// A processing graph: sources reading topics, processors, sinks writing
/// topics (Kafka's `Topology`).
///
/// ```
/// use plexus_runtime::processor::{Processor, ProcessorContext, Record};
/// use plexus_runtime::serde::StringSerde;
/// use plexus_runtime::Topology;
///
/// struct Upper;
/// impl Processor<String, String> for Upper {
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, String>) -> plexus_runtime::Result<()> {
///         let upper = r.value.to_uppercase();
///         ctx.forward(r.with_value(upper))
///     }
/// }
///
/// let mut topology = Topology::new();
/// let source = topology.add_source("in", &["words"], StringSerde, StringSerde).unwrap();
/// let upper = topology.add_processor("upper", || Upper, &[source]).unwrap();
/// topology.add_sink("out", "shouted", StringSerde, StringSerde, &[upper]).unwrap();
/// assert!(topology.describe().to_string().contains("Processor: upper (stores: [])"));
/// ```
#[derive(Default)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) stores: Vec<StoreBuilder>,
    /// Topics the application owns (repartition topics), by their names
    /// without the `<application.id>-` prefix.
    pub(crate) internal_topics: Vec<InternalTopic>,
    /// Groups of topics that must have as many partitions as each other
    /// (the inputs of a join), checked when the application starts.
    pub(crate) copartition_groups: Vec<Vec<String>>,
    /// The application id internal topic names were prefixed with, once
    /// they were.
    pub(crate) resolved_for: Option<String>,
    /// Stores holding a whole topic on every instance (global tables).
    pub(crate) global_stores: Vec<GlobalStore>,
    /// Per-topic `auto.offset.reset` (`earliest` / `latest`), overriding
    /// the application's for partitions without a committed offset.
    pub(crate) offset_resets: std::collections::BTreeMap<String, String>,
}

/// A store every task can read, holding the latest record per key of all
/// partitions of a topic (Kafka's global store, behind a `GlobalKTable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStore {
    /// The store (key-value, no changelog: the topic is its changelog).
    pub store: StoreBuilder,
    /// The topic it mirrors.
    pub topic: String,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::Topology("a node needs a name".into()));
        }
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(Error::Topology(format!("a node named {name:?} already exists; node names must be unique")));
        }
        Ok(())
    }

    fn push(&mut self, name: &str, kind: NodeKind, parents: Vec<usize>, builder: Builder) -> usize {
        self.nodes.push(NodeSpec { name: name.to_owned(), kind, parents, stores: Vec::new(), builder });
        self.nodes.len() - 1
    }

    /// A source reading `topics`, deserializing keys and values with the
    /// serdes; a record's event time is its timestamp in the log.
    pub fn add_source<K, V>(
        &mut self,
        name: &str,
        topics: &[&str],
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
    ) -> Result<NodeHandle<K, V>>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        self.add_source_inner(name, topics, key_serde, value_serde, None)
    }

    /// A source whose records' event time `extractor` picks from the key,
    /// the value and the log timestamp (Kafka's `TimestampExtractor`); a
    /// negative time skips the record (counted as dropped).
    pub fn add_source_with_timestamp_extractor<K, V>(
        &mut self,
        name: &str,
        topics: &[&str],
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
        extractor: impl Fn(&K, &V, plexus_core::Timestamp) -> plexus_core::Timestamp + Send + Sync + 'static,
    ) -> Result<NodeHandle<K, V>>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        self.add_source_inner(name, topics, key_serde, value_serde, Some(Arc::new(extractor)))
    }

    fn add_source_inner<K, V>(
        &mut self,
        name: &str,
        topics: &[&str],
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
        extractor: Option<crate::source_sink::TimestampExtractor<K, V>>,
    ) -> Result<NodeHandle<K, V>>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        self.check_name(name)?;
        if topics.is_empty() {
            return Err(Error::Topology(format!("source {name:?} reads no topic")));
        }
        let taken: BTreeSet<&str> = self.source_topics().into_iter().collect();
        if let Some(t) = topics.iter().find(|t| taken.contains(**t)) {
            return Err(Error::Topology(format!(
                "topic {t:?} is already read by another source; a topic has one source"
            )));
        }
        let (key_serde, value_serde) = (Arc::new(key_serde), Arc::new(value_serde));
        let node_name = name.to_owned();
        let builder: Builder = Arc::new(move |_, _, children| {
            let children = downcast_children::<K, V>(&node_name, children)?;
            let node = SourceNode {
                key_serde: Arc::clone(&key_serde) as Arc<dyn Serde<K>>,
                value_serde: Arc::clone(&value_serde) as Arc<dyn Serde<V>>,
                extractor: extractor.clone(),
                children,
            };
            Ok(Built { as_child: None, lifecycle: None, source: Some(Rc::new(RefCell::new(node))) })
        });
        let topics = topics.iter().map(|t| (*t).to_owned()).collect();
        let index = self.push(name, NodeKind::Source { topics }, Vec::new(), builder);
        Ok(NodeHandle { index, _types: PhantomData })
    }

    /// A processor: `supplier` makes one instance per task; it takes the
    /// records of every parent.
    pub fn add_processor<KIn, VIn, KOut, VOut, P>(
        &mut self,
        name: &str,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        parents: &[NodeHandle<KIn, VIn>],
    ) -> Result<NodeHandle<KOut, VOut>>
    where
        P: Processor<KIn, VIn, KOut, VOut>,
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + 'static,
        VOut: Clone + 'static,
    {
        self.check_name(name)?;
        let parents = self.check_parents(name, parents)?;
        let node_name = name.to_owned();
        let builder: Builder = Arc::new(move |index, _, children| {
            let children = downcast_children::<KOut, VOut>(&node_name, children)?;
            let node =
                Rc::new(RefCell::new(ProcessorNode { index, processor: supplier(), children, _types: PhantomData }));
            let as_child: Rc<RefCell<dyn Node<KIn, VIn>>> = node.clone();
            Ok(Built {
                as_child: Some(Rc::new(Child(as_child))),
                lifecycle: Some(node as Rc<RefCell<dyn Lifecycle>>),
                source: None,
            })
        });
        let index = self.push(name, NodeKind::Processor, parents, builder);
        Ok(NodeHandle { index, _types: PhantomData })
    }

    /// A sink writing its parents' records to `topic`.
    pub fn add_sink<K, V>(
        &mut self,
        name: &str,
        topic: &str,
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
        parents: &[NodeHandle<K, V>],
    ) -> Result<()>
    where
        K: 'static,
        V: 'static,
    {
        plexus_core::config::validate_topic_name(topic).map_err(|e| Error::Topology(format!("sink {name:?}: {e}")))?;
        self.push_sink(name, topic, None, key_serde, value_serde, parents)
    }

    /// A sink writing each record of its parents to the topic `extractor`
    /// names for it (Kafka's `TopicNameExtractor`); the topics must exist.
    pub fn add_dynamic_sink<K, V>(
        &mut self,
        name: &str,
        extractor: impl Fn(&K, &V) -> String + Send + Sync + 'static,
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
        parents: &[NodeHandle<K, V>],
    ) -> Result<()>
    where
        K: 'static,
        V: 'static,
    {
        self.push_sink(name, DYNAMIC_TOPIC, Some(Arc::new(extractor)), key_serde, value_serde, parents)
    }

    /// Adds a sink to `topic` (as `describe()` shows it), or to the topic
    /// `extractor` picks per record.
    fn push_sink<K, V>(
        &mut self,
        name: &str,
        topic: &str,
        extractor: Option<TopicExtractor<K, V>>,
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
        parents: &[NodeHandle<K, V>],
    ) -> Result<()>
    where
        K: 'static,
        V: 'static,
    {
        self.check_name(name)?;
        let parents = self.check_parents(name, parents)?;
        let (key_serde, value_serde) = (Arc::new(key_serde), Arc::new(value_serde));
        let node_name = name.to_owned();
        let builder: Builder = Arc::new(move |_, kind, _| {
            // The topic as resolved (an internal one gets its prefix).
            let topic = match (&extractor, kind) {
                (Some(extract), _) => SinkTopic::Dynamic(Arc::clone(extract)),
                (None, NodeKind::Sink { topic }) => SinkTopic::Fixed(topic.clone()),
                (None, _) => return Err(Error::Topology(format!("node {node_name:?} is not a sink"))),
            };
            let node = SinkNode::<K, V> {
                name: node_name.clone(),
                topic,
                key_serde: Arc::clone(&key_serde) as Arc<dyn Serde<K>>,
                value_serde: Arc::clone(&value_serde) as Arc<dyn Serde<V>>,
            };
            let as_child: Rc<RefCell<dyn Node<K, V>>> = Rc::new(RefCell::new(node));
            Ok(Built { as_child: Some(Rc::new(Child(as_child))), lifecycle: None, source: None })
        });
        self.push(name, NodeKind::Sink { topic: topic.to_owned() }, parents, builder);
        Ok(())
    }

    fn check_parents<K, V>(&self, name: &str, parents: &[NodeHandle<K, V>]) -> Result<Vec<usize>> {
        if parents.is_empty() {
            return Err(Error::Topology(format!("node {name:?} needs at least one parent")));
        }
        let mut out: Vec<usize> = parents.iter().map(|p| p.index).collect();
        if let Some(p) = out.iter().find(|p| **p >= self.nodes.len()) {
            return Err(Error::Topology(format!("node {name:?}: parent #{p} belongs to another topology")));
        }
        if let Some(sink) = out.iter().find(|p| matches!(self.nodes[**p].kind, NodeKind::Sink { .. })) {
            return Err(Error::Topology(format!(
                "node {name:?}: sink {:?} cannot have children",
                self.nodes[*sink].name
            )));
        }
        out.dedup();
        Ok(out)
    }

    /// Adds a state store, usable by the named processors (Kafka's
    /// `addStateStore`). Processors reach it through their context with a
    /// typed reference ([`crate::state::KeyValueStoreRef`] and the like).
    pub fn add_state_store(&mut self, store: StoreBuilder, processors: &[&str]) -> Result<()> {
        crate::state::validate_store_name(&store.name)?;
        if self.stores.iter().any(|s| s.name == store.name) {
            return Err(Error::Topology(format!("a state store named {:?} already exists", store.name)));
        }
        let name = store.name.clone();
        self.stores.push(store);
        self.connect_processor_and_state_stores_each(processors, &name)
    }

    /// Adds a global store: every instance keeps the latest record per key
    /// of all partitions of `topic` in it (a tombstone deletes), kept up to
    /// date by a global thread, and every processor may read it. Its typed
    /// references must use the topic's serdes: it holds the records' bytes
    /// as they are.
    pub fn add_global_store(&mut self, store: StoreBuilder, topic: &str) -> Result<()> {
        crate::state::validate_store_name(&store.name)?;
        plexus_core::config::validate_topic_name(topic)
            .map_err(|e| Error::Topology(format!("global store {:?}: {e}", store.name)))?;
        if store.kind != StoreKind::KeyValue {
            return Err(Error::Topology(format!("global store {:?} must be a key-value store", store.name)));
        }
        if self.stores.iter().any(|s| s.name == store.name)
            || self.global_stores.iter().any(|g| g.store.name == store.name)
        {
            return Err(Error::Topology(format!("a state store named {:?} already exists", store.name)));
        }
        if self.source_topics().contains(&topic) || self.global_stores.iter().any(|g| g.topic == topic) {
            return Err(Error::Topology(format!("topic {topic:?} is already read; a topic has one source")));
        }
        let store = store.with_logging_disabled();
        self.global_stores.push(GlobalStore { store, topic: topic.to_owned() });
        Ok(())
    }

    /// Where a source topic's partitions start when the application has
    /// no committed offset for them: `earliest` or `latest` (Kafka's
    /// `Consumed.withOffsetResetPolicy`), instead of `auto.offset.reset`.
    pub fn set_offset_reset(&mut self, topic: &str, policy: &str) -> Result<()> {
        if policy != "earliest" && policy != "latest" {
            return Err(Error::Topology(format!(
                "offset reset policy {policy:?} for topic {topic:?}: use \"earliest\" or \"latest\""
            )));
        }
        self.offset_resets.insert(topic.to_owned(), policy.to_owned());
        Ok(())
    }

    /// A topic's own offset reset policy, if it has one.
    pub fn offset_reset(&self, topic: &str) -> Option<&String> {
        self.offset_resets.get(topic)
    }

    /// The global stores.
    pub fn global_stores(&self) -> &[GlobalStore] {
        &self.global_stores
    }

    /// Gives processors access to stores added before (Kafka's
    /// `connectProcessorAndStateStores`).
    pub fn connect_processor_and_state_stores(&mut self, processor: &str, stores: &[&str]) -> Result<()> {
        for store in stores {
            self.connect_processor_and_state_stores_each(&[processor], store)?;
        }
        Ok(())
    }

    fn connect_processor_and_state_stores_each(&mut self, processors: &[&str], store: &str) -> Result<()> {
        if self.global_stores.iter().any(|g| g.store.name == store) {
            // Every processor may read a global store.
            return Ok(());
        }
        if !self.stores.iter().any(|s| s.name == store) {
            return Err(Error::Topology(format!("no state store named {store:?}; add it with add_state_store first")));
        }
        for p in processors {
            let node =
                self.nodes.iter_mut().find(|n| n.name == *p && n.kind == NodeKind::Processor).ok_or_else(|| {
                    Error::Topology(format!("no processor named {p:?} to connect store {store:?} to"))
                })?;
            if !node.stores.iter().any(|s| s == store) {
                node.stores.push(store.to_owned());
            }
        }
        Ok(())
    }

    /// The stores, as added.
    pub fn state_stores(&self) -> &[StoreBuilder] {
        &self.stores
    }

    /// Every topic a source reads.
    pub fn source_topics(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Source { topics } => Some(topics.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Which sub-topology reads each source topic.
    pub(crate) fn readers(&self) -> std::collections::BTreeMap<String, u32> {
        let mut out = std::collections::BTreeMap::new();
        for (id, members) in self.subtopologies().iter().enumerate() {
            for &i in members {
                if let NodeKind::Source { topics } = &self.nodes[i].kind {
                    for t in topics {
                        out.insert(t.clone(), u32::try_from(id).unwrap_or(u32::MAX));
                    }
                }
            }
        }
        out
    }

    /// The node indexes of each sub-topology (nodes connected by parent
    /// edges), numbered by their first node, each list in insertion order.
    pub(crate) fn subtopologies(&self) -> Vec<Vec<usize>> {
        let mut group: Vec<usize> = (0..self.nodes.len()).collect();
        fn root(group: &mut [usize], mut i: usize) -> usize {
            while group[i] != i {
                group[i] = group[group[i]];
                i = group[i];
            }
            i
        }
        let link = |group: &mut Vec<usize>, x: usize, y: usize| {
            let (a, b) = (root(group, x), root(group, y));
            group[a.max(b)] = a.min(b);
        };
        for (i, node) in self.nodes.iter().enumerate() {
            for &p in &node.parents {
                link(&mut group, i, p);
            }
            // Processors sharing a store run in one task.
            for (j, other) in self.nodes.iter().enumerate().take(i) {
                if node.stores.iter().any(|s| other.stores.contains(s)) {
                    link(&mut group, i, j);
                }
            }
        }
        let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
        for i in 0..self.nodes.len() {
            let r = root(&mut group, i);
            match out.iter_mut().find(|(root, _)| *root == r) {
                Some((_, members)) => members.push(i),
                None => out.push((r, vec![i])),
            }
        }
        out.into_iter().map(|(_, members)| members).collect()
    }

    /// The topology as Kafka Streams prints it (`Display`), or as Graphviz
    /// dot ([`TopologyDescription::to_dot`]).
    pub fn describe(&self) -> TopologyDescription {
        describe::describe(self)
    }
}

/// The children of a node, back from their type-erased boxes.
fn downcast_children<K: 'static, V: 'static>(name: &str, children: Vec<Rc<dyn Any>>) -> Result<Vec<Child<K, V>>> {
    children
        .into_iter()
        .map(|c| {
            // Typed handles make a mismatch impossible through the public
            // API; an error (not a panic) covers a bug here.
            c.downcast_ref::<Child<K, V>>().cloned().ok_or_else(|| {
                Error::Topology(format!("node {name:?}: a child does not take the records this node forwards"))
            })
        })
        .collect()
}
