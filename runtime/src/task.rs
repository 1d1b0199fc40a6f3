//! A stream task: one sub-topology's processor graph, built for one
//! partition, fed records one at a time; it keeps the task's stream time
//! and fires punctuators.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use plexus_core::{ConsumerRecord, Timestamp};

use crate::error::{Error, Result};
use crate::processor::node::Lifecycle;
use crate::processor::{CacheBudget, OutputRecord, PunctuationType, RecordMetadata, TaskContext, TaskId};
use crate::source_sink::RawSource;
use crate::state::overlay::Dirty;
use crate::state::task_store::TaskStore;
use crate::state::{BytesStore, WriteBatch};
use crate::topology::{NodeKind, StoreBuilder, Topology};

/// Opens the committed store engine of a task's store (RocksDB in the
/// task's directory, or memory).
pub(crate) type OpenStore<'a> = dyn FnMut(TaskId, &StoreBuilder) -> Result<Arc<dyn BytesStore>> + 'a;

type SourceRef = Rc<RefCell<dyn RawSource>>;

/// Stores with their specs: an instance's global stores (shared by all
/// its tasks), or a standby task's stores.
pub(crate) type OpenStores = Vec<(StoreBuilder, Arc<dyn BytesStore>)>;

/// One task's processor graph and state.
pub(crate) struct StreamTask {
    context: TaskContext,
    /// Each source node with the topics it reads.
    sources: Vec<(Vec<String>, SourceRef)>,
    /// Processor nodes by topology node index (for punctuation and close).
    nodes: Vec<(usize, Rc<RefCell<dyn Lifecycle>>)>,
    initialized: bool,
    /// How many of the context's stores are the task's own (the rest are
    /// the instance's global stores, which it only reads).
    local_stores: usize,
}

impl std::fmt::Debug for StreamTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTask").field("task", &self.context.task).finish_non_exhaustive()
    }
}

impl StreamTask {
    /// Builds the graph of sub-topology `id.subtopology` for `id.partition`
    /// and opens its stores.
    pub(crate) fn build(
        topology: &Topology,
        id: TaskId,
        wall_clock: Timestamp,
        open_store: &mut OpenStore<'_>,
        globals: &[(StoreBuilder, Arc<dyn BytesStore>)],
        cache: Arc<CacheBudget>,
    ) -> Result<Self> {
        let subtopologies = topology.subtopologies();
        let members = usize::try_from(id.subtopology).ok().and_then(|s| subtopologies.get(s)).ok_or_else(|| {
            Error::Topology(format!("task {id}: the topology has no sub-topology {}", id.subtopology))
        })?;
        let mut built: Vec<Option<Rc<dyn std::any::Any>>> = vec![None; topology.nodes.len()];
        let mut sources = Vec::new();
        let mut nodes = Vec::new();
        // Children are added after their parents, so building in reverse
        // insertion order builds every child before its parents.
        for &i in members.iter().rev() {
            let spec = &topology.nodes[i];
            let children: Vec<Rc<dyn std::any::Any>> = members
                .iter()
                .filter(|&&c| topology.nodes[c].parents.contains(&i))
                .filter_map(|&c| built[c].clone())
                .collect();
            let node = (spec.builder)(i, &spec.kind, children)?;
            built[i] = node.as_child;
            if let Some(lifecycle) = node.lifecycle {
                nodes.push((i, lifecycle));
            }
            if let (Some(source), NodeKind::Source { topics }) = (node.source, &spec.kind) {
                sources.push((topics.clone(), source));
            }
        }
        nodes.reverse();
        let mut context = TaskContext::new(id, wall_clock, cache);
        for spec in &topology.stores {
            let connected: Vec<usize> =
                members.iter().copied().filter(|&i| topology.nodes[i].stores.contains(&spec.name)).collect();
            if connected.is_empty() {
                continue;
            }
            let committed = open_store(id, spec)?;
            context.stores.push(TaskStore::new(spec.clone(), committed, connected)?);
        }
        // Global stores: readable by every processor of the task.
        let local_stores = context.stores.len();
        for (spec, committed) in globals {
            context.stores.push(TaskStore::new(spec.clone(), Arc::clone(committed), members.clone())?);
        }
        Ok(Self { context, sources, nodes, initialized: false, local_stores })
    }

    /// The task's id.
    pub(crate) fn id(&self) -> TaskId {
        self.context.task
    }

    /// Whether a processor asked for a commit since the last one.
    pub(crate) fn commit_requested(&self) -> bool {
        self.context.commit_requested
    }

    /// The task's stream time.
    pub(crate) fn stream_time(&self) -> Timestamp {
        self.context.stream_time
    }

    /// The logged stores' uncommitted writes, one per key (`None`: a
    /// deletion), by store: what their changelogs must get before the commit.
    pub(crate) fn changelog_writes(&self) -> Vec<(StoreBuilder, Vec<Dirty>)> {
        self.context
            .stores
            .iter()
            .filter(|s| s.spec.logging && !s.overlay.is_clean())
            .map(|s| (s.spec.clone(), s.overlay.dirty_entries()))
            .collect()
    }

    /// Whether a logged store has writes its changelog has not had.
    pub(crate) fn has_changelog_writes(&self) -> bool {
        self.context.stores.iter().any(|s| s.spec.logging && !s.overlay.is_clean())
    }

    /// Bytes held uncommitted over all stores (the record caches' size).
    pub(crate) fn dirty_bytes(&self) -> usize {
        self.context.stores.iter().map(|s| s.overlay.dirty_bytes()).sum()
    }

    /// Applies every store's uncommitted writes, with the changelog offset
    /// each logged store reached (`changelog_next_offsets`, by store name).
    pub(crate) fn commit_stores(&mut self, changelog_next_offsets: &BTreeMap<String, i64>) -> Result<()> {
        let partition = self.context.task.partition;
        for store in &self.context.stores {
            let offsets = changelog_next_offsets
                .get(&store.spec.name)
                .map(|o| BTreeMap::from([(partition, *o)]))
                .unwrap_or_default();
            store.overlay.commit(&offsets)?;
        }
        self.context.commit_requested = false;
        Ok(())
    }

    /// Drops every store's uncommitted writes (the transaction aborted).
    pub(crate) fn discard_uncommitted(&mut self) {
        for store in &self.context.stores {
            store.overlay.discard();
        }
    }

    /// The changelog offset a store's committed contents reach (where its
    /// restore starts), if the store has recorded one.
    pub(crate) fn restored_offset(&self, store: &str) -> Result<Option<i64>> {
        let partition = self.context.task.partition;
        match self.context.stores.iter().find(|s| s.spec.name == store) {
            Some(s) => Ok(s.committed.changelog_offsets()?.get(&partition).copied()),
            None => Ok(None),
        }
    }

    /// Writes changelog records straight into a store's committed contents
    /// (restoration), with the changelog offset they reach, atomically.
    pub(crate) fn restore(&self, store: &str, records: &[(Bytes, Option<Bytes>)], next_offset: i64) -> Result<()> {
        let Some(s) = self.context.stores.iter().find(|s| s.spec.name == store) else { return Ok(()) };
        let mut batch = WriteBatch::new();
        for (k, v) in records {
            match v {
                Some(v) => batch.put(k.clone(), v.clone()),
                None => batch.delete(k.clone()),
            }
        }
        batch.set_changelog_offset(self.context.task.partition, next_offset);
        s.committed.write(batch)
    }

    /// The committed stores of this task, by name (interactive queries).
    pub(crate) fn committed_stores(&self) -> impl Iterator<Item = (&StoreBuilder, &Arc<dyn BytesStore>)> {
        self.context.stores.iter().take(self.local_stores).map(|s| (&s.spec, &s.committed))
    }

    fn init(&mut self) -> Result<()> {
        if !self.initialized {
            self.initialized = true;
            for (_, node) in &self.nodes {
                node.borrow_mut().init(&mut self.context)?;
            }
        }
        Ok(())
    }

    /// Processes one input record: advances stream time, runs it through
    /// the graph, then fires the stream-time punctuators that are due.
    pub(crate) fn process(&mut self, raw: &ConsumerRecord) -> Result<()> {
        self.init()?;
        let source =
            self.sources.iter().find(|(topics, _)| topics.contains(&raw.topic)).map(|(_, s)| Rc::clone(s)).ok_or_else(
                || Error::Topology(format!("task {}: no source reads topic {:?}", self.context.task, raw.topic)),
            )?;
        self.context.current =
            Some(RecordMetadata { topic: raw.topic.clone(), partition: raw.partition, offset: raw.offset });
        let result = source.borrow_mut().process_raw(raw, &mut self.context);
        self.context.current = None;
        result?;
        let now = self.context.stream_time;
        self.punctuate(PunctuationType::StreamTime, now)
    }

    /// Moves the task's wall clock and fires the wall-clock punctuators due.
    pub(crate) fn advance_wall_clock(&mut self, now: Timestamp) -> Result<()> {
        self.init()?;
        self.context.wall_clock = self.context.wall_clock.max(now);
        self.punctuate(PunctuationType::WallClockTime, self.context.wall_clock)
    }

    /// Fires each due punctuator of a kind once, at `now`; the next firing
    /// is the first point of its interval grid after `now`.
    fn punctuate(&mut self, kind: PunctuationType, now: Timestamp) -> Result<()> {
        let mut i = 0;
        while i < self.context.schedules.len() {
            let s = &mut self.context.schedules[i];
            i += 1;
            if s.cancelled || s.punctuator.kind != kind {
                continue;
            }
            let interval = i64::try_from(s.punctuator.interval.as_millis()).unwrap_or(i64::MAX).max(1);
            let due = s.next.is_none_or(|next| now >= next);
            if !due {
                continue;
            }
            let next = match s.next {
                None => now.saturating_add(interval),
                Some(next) => next.saturating_add(((now - next) / interval + 1).saturating_mul(interval)),
            };
            s.next = Some(next);
            let (node, punctuator) = (s.node, s.punctuator);
            if let Some((_, lifecycle)) = self.nodes.iter().find(|(n, _)| *n == node) {
                let lifecycle = Rc::clone(lifecycle);
                lifecycle.borrow_mut().punctuate(punctuator, now, &mut self.context)?;
            }
        }
        Ok(())
    }

    /// Has every processor forward what it held back (the record cache),
    /// parents before children, so that downstream caches get their
    /// parents' updates before they flush themselves.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if !self.initialized {
            return Ok(());
        }
        for (_, node) in &self.nodes {
            node.borrow_mut().flush(&mut self.context)?;
        }
        Ok(())
    }

    /// Takes the count of records processors dropped since the last call.
    pub(crate) fn take_dropped_records(&mut self) -> u64 {
        std::mem::take(&mut self.context.dropped_records)
    }

    /// Takes the records the sinks produced since the last call.
    pub(crate) fn take_outputs(&mut self) -> Vec<OutputRecord> {
        std::mem::take(&mut self.context.outputs)
    }

    /// Closes every processor.
    pub(crate) fn close(&mut self) -> Result<()> {
        for (_, node) in &self.nodes {
            node.borrow_mut().close()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use plexus_core::ConsumerRecord;

    use super::*;
    use crate::processor::{Processor, ProcessorContext, Punctuator, Record};
    use crate::serde::{I64Serde, StringSerde};

    /// Counts values per key in memory and emits every count on a
    /// stream-time punctuation.
    #[derive(Default)]
    struct Counter {
        counts: std::collections::BTreeMap<String, i64>,
    }

    impl Processor<String, String, String, i64> for Counter {
        fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<()> {
            ctx.schedule(Duration::from_millis(10), PunctuationType::StreamTime);
            Ok(())
        }
        fn process(&mut self, r: Record<String, String>, _: &mut ProcessorContext<'_, String, i64>) -> Result<()> {
            *self.counts.entry(r.key).or_default() += 1;
            Ok(())
        }
        fn punctuate(
            &mut self,
            _: Punctuator,
            ts: Timestamp,
            ctx: &mut ProcessorContext<'_, String, i64>,
        ) -> Result<()> {
            for (k, v) in &self.counts {
                ctx.forward(Record::new(k.clone(), *v, ts))?;
            }
            Ok(())
        }
    }

    fn memory(_: TaskId, spec: &StoreBuilder) -> Result<Arc<dyn BytesStore>> {
        Ok(Arc::new(crate::state::InMemoryStore::new(spec.name())))
    }

    fn raw(topic: &str, offset: i64, key: &str, value: &str, timestamp: Timestamp) -> ConsumerRecord {
        ConsumerRecord {
            topic: topic.into(),
            partition: 0,
            offset,
            timestamp,
            key: Some(key.to_owned().into()),
            value: Some(value.to_owned().into()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_task_runs_records_through_its_graph_and_punctuates_on_stream_time() {
        let mut t = Topology::new();
        let src = t.add_source("src", &["in"], StringSerde, StringSerde).expect("source");
        let count = t.add_processor("count", Counter::default, &[src]).expect("processor");
        t.add_sink("sink", "counts", StringSerde, I64Serde, &[count]).expect("sink");
        let mut task = StreamTask::build(
            &t,
            TaskId { subtopology: 0, partition: 0 },
            0,
            &mut memory,
            &[],
            Arc::new(CacheBudget::new(0)),
        )
        .expect("task");
        task.process(&raw("in", 0, "a", "x", 100)).expect("process");
        let first = task.take_outputs();
        assert_eq!(first.len(), 1, "the first record fires the punctuator: {first:?}");
        task.process(&raw("in", 1, "a", "x", 105)).expect("process");
        task.process(&raw("in", 2, "b", "x", 109)).expect("process");
        assert!(task.take_outputs().is_empty(), "not due before 110");
        task.process(&raw("in", 3, "b", "x", 131)).expect("process");
        let out = task.take_outputs();
        let decoded: Vec<(String, i64, Timestamp)> = out
            .iter()
            .map(|o| {
                let k = String::from_utf8(o.key.as_deref().unwrap_or_default().to_vec()).expect("utf8");
                let v = i64::from_be_bytes(o.value.as_deref().unwrap_or_default().try_into().expect("8 bytes"));
                (k, v, o.timestamp)
            })
            .collect();
        assert_eq!(decoded, [("a".to_owned(), 2, 131), ("b".to_owned(), 2, 131)]);
        assert!(out.iter().all(|o| o.topic == "counts"));
        let err = task.process(&raw("elsewhere", 0, "a", "x", 0)).expect_err("no source");
        assert!(err.to_string().contains("elsewhere"));
        task.close().expect("close");
    }

    #[test]
    fn a_bad_record_names_its_topic_partition_and_offset() {
        let mut t = Topology::new();
        let src = t.add_source("src", &["nums"], StringSerde, I64Serde).expect("source");
        t.add_sink("sink", "out", StringSerde, I64Serde, &[src]).expect("sink");
        let mut task = StreamTask::build(
            &t,
            TaskId { subtopology: 0, partition: 0 },
            0,
            &mut memory,
            &[],
            Arc::new(CacheBudget::new(0)),
        )
        .expect("task");
        let err = task.process(&raw("nums", 17, "k", "not a number", 1)).expect_err("bad value");
        let text = err.to_string();
        assert!(text.contains("nums") && text.contains("17"), "{text}");
    }

    #[test]
    fn describe_prints_subtopologies_like_kafka_streams() {
        let mut t = Topology::new();
        let a = t.add_source("source-a", &["a"], StringSerde, StringSerde).expect("source");
        let b = t.add_source("source-b", &["b"], StringSerde, StringSerde).expect("source");
        t.add_sink("sink-a", "a-out", StringSerde, StringSerde, &[a]).expect("sink");
        let both = t.add_processor("count", Counter::default, &[b]).expect("processor");
        t.add_sink("sink-b", "b-out", StringSerde, I64Serde, &[both]).expect("sink");
        let text = t.describe().to_string();
        let expected = "Topologies:
   Sub-topology: 0
    Source: source-a (topics: [a])
      --> sink-a
    Sink: sink-a (topic: a-out)
      <-- source-a
   Sub-topology: 1
    Source: source-b (topics: [b])
      --> count
    Processor: count (stores: [])
      --> sink-b
      <-- source-b
    Sink: sink-b (topic: b-out)
      <-- count
";
        assert_eq!(text, expected);
        assert!(t.describe().to_dot().contains("\"count\" -> \"sink-b\";"));
        assert!(t.add_source("source-c", &["a"], StringSerde, StringSerde).is_err(), "a topic has one source");
        assert!(t.add_processor("count", Counter::default, &[a]).is_err(), "names are unique");
    }
}
