//! Processors shared by several operators.

use std::sync::Arc;

use plexus_runtime::Result;
use plexus_runtime::processor::{Processor, ProcessorContext, Record};
use plexus_runtime::topology::NodeHandle;

use crate::Inner;
use crate::options::SerdeRef;

/// A processor calling a function per record.
pub(crate) struct FnProcessor<F>(pub(crate) Arc<F>);

impl<K, V, K2, V2, F> Processor<K, V, K2, V2> for FnProcessor<F>
where
    F: Fn(Record<K, V>, &mut ProcessorContext<'_, K2, V2>) -> Result<()> + Send + Sync + 'static,
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>) -> Result<()> {
        (self.0)(record, ctx)
    }
}

/// Adds a node running `f` on every record of `parents`.
pub(crate) fn add_fn<K, V, K2, V2, F>(
    inner: &mut Inner,
    name: &str,
    parents: &[NodeHandle<K, V>],
    f: F,
) -> Option<NodeHandle<K2, V2>>
where
    K: 'static,
    V: 'static,
    K2: Clone + 'static,
    V2: Clone + 'static,
    F: Fn(Record<K, V>, &mut ProcessorContext<'_, K2, V2>) -> Result<()> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    inner.processor(name, move || FnProcessor(Arc::clone(&f)), parents)
}

/// Sends a stream through a repartition topic `<base>-repartition`: a sink
/// writes it, a source reads it back, so that each record lands in the
/// partition (and task) its current key hashes to.
pub(crate) fn repartition<K, V>(
    inner: &mut Inner,
    parent: NodeHandle<K, V>,
    base: &str,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    partitions: Option<i32>,
) -> Option<NodeHandle<K, V>>
where
    K: Clone + 'static,
    V: Clone + 'static,
{
    let topic = format!("{base}-repartition");
    let r = inner.topology.add_internal_topic(&topic, partitions);
    inner.ok(r)?;
    let sink = inner.name("KSTREAM-SINK");
    let r = inner.topology.add_sink(&sink, &topic, Arc::clone(&key_serde), Arc::clone(&value_serde), &[parent]);
    inner.ok(r)?;
    let source = inner.name("KSTREAM-SOURCE");
    let r = inner.topology.add_source(&source, &[&topic], key_serde, value_serde);
    inner.ok(r)
}
