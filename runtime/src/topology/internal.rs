//! Internal topics: the repartition topics an application owns, named
//! after the operators that need them and prefixed with the application id
//! when it runs (`<application.id>-<name>`), and their partition counts.
//!
//! A repartition topic has the partition count it was given, or the
//! count of the topics it must be co-partitioned with (the other side of
//! a join), or else the largest count among the inputs of the
//! sub-topology writing it — as Kafka Streams decides.

use std::collections::BTreeMap;

use super::{NodeKind, Topology};
use crate::error::{Error, Result};

/// A topic the application creates and owns (Kafka Streams' repartition
/// topics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopic {
    /// The name without the application-id prefix, as `describe()` shows it.
    pub name: String,
    /// A fixed partition count, or `None` to derive it.
    pub partitions: Option<i32>,
}

impl Topology {
    /// Declares a repartition topic: sinks may write it and a source read
    /// it under `name`; the running application names it
    /// `<application.id>-<name>` and creates it.
    pub fn add_internal_topic(&mut self, name: &str, partitions: Option<i32>) -> Result<()> {
        plexus_core::config::validate_topic_name(name)
            .map_err(|e| Error::Topology(format!("internal topic {name:?}: {e}")))?;
        if let Some(p) = partitions.filter(|p| *p < 1) {
            return Err(Error::Topology(format!("internal topic {name:?}: {p} partitions; it needs at least one")));
        }
        if self.internal_topics.iter().any(|t| t.name == name) {
            return Err(Error::Topology(format!("an internal topic named {name:?} already exists")));
        }
        self.internal_topics.push(InternalTopic { name: name.to_owned(), partitions });
        Ok(())
    }

    /// Requires `topics` to have as many partitions as each other (the
    /// inputs of a join); checked when the application starts.
    pub fn add_copartition_group(&mut self, topics: &[&str]) {
        self.copartition_groups.push(topics.iter().map(|t| (*t).to_owned()).collect());
    }

    /// The internal topics, as declared.
    pub fn internal_topics(&self) -> &[InternalTopic] {
        &self.internal_topics
    }

    /// Gives internal topics their running names, `<application_id>-<name>`,
    /// wherever sources and sinks name them. Done once, when an application
    /// (or the test driver) takes the topology.
    pub(crate) fn resolve_internal_topics(&mut self, application_id: &str) -> Result<()> {
        if let Some(done) = &self.resolved_for {
            return if done == application_id {
                Ok(())
            } else {
                Err(Error::Topology(format!("this topology already runs as application {done:?}")))
            };
        }
        let rename = |t: &mut String, internal: &[InternalTopic]| {
            if internal.iter().any(|i| i.name == *t) {
                *t = format!("{application_id}-{t}");
            }
        };
        for node in &mut self.nodes {
            match &mut node.kind {
                NodeKind::Source { topics } => topics.iter_mut().for_each(|t| rename(t, &self.internal_topics)),
                NodeKind::Sink { topic } => rename(topic, &self.internal_topics),
                NodeKind::Processor => {}
            }
        }
        for group in &mut self.copartition_groups {
            group.iter_mut().for_each(|t| rename(t, &self.internal_topics));
        }
        for t in &mut self.internal_topics {
            t.name = format!("{application_id}-{}", t.name);
        }
        self.resolved_for = Some(application_id.to_owned());
        Ok(())
    }

    /// The partition count of every internal topic (running names), given
    /// the counts of the other topics (`external`), after checking that
    /// co-partitioned topics agree.
    pub(crate) fn internal_topic_partitions(
        &self,
        mut external: impl FnMut(&str) -> Result<i32>,
    ) -> Result<BTreeMap<String, i32>> {
        let is_internal = |t: &str| self.internal_topics.iter().any(|i| i.name == t);
        let mut counts: BTreeMap<String, i32> =
            self.internal_topics.iter().filter_map(|t| t.partitions.map(|p| (t.name.clone(), p))).collect();
        // Co-partitioned with external topics: their count.
        for group in &self.copartition_groups {
            let mut fixed: Vec<(&str, i32)> = Vec::new();
            for t in group.iter().filter(|t| !is_internal(t)) {
                fixed.push((t, external(t)?));
            }
            if let Some(((a, pa), (b, pb))) =
                fixed.iter().flat_map(|x| fixed.iter().map(move |y| (x, y))).find(|(x, y)| x.1 != y.1)
            {
                return Err(Error::Topology(format!(
                    "topics {a:?} ({pa} partitions) and {b:?} ({pb} partitions) are joined, so they must be \
                     co-partitioned: give them the same number of partitions (or repartition one side)"
                )));
            }
            if let Some(&(_, p)) = fixed.first() {
                for t in group.iter().filter(|t| is_internal(t)) {
                    counts.entry(t.clone()).or_insert(p);
                }
            }
        }
        // The rest: the largest input of the sub-topology writing them,
        // repeated until every upstream internal topic is known.
        let subtopologies = self.subtopologies();
        for _ in 0..=self.internal_topics.len() {
            let mut progressed = false;
            let pending: Vec<&InternalTopic> =
                self.internal_topics.iter().filter(|t| !counts.contains_key(&t.name)).collect();
            for topic in pending {
                let writers = subtopologies.iter().filter(|members| {
                    members
                        .iter()
                        .any(|&i| matches!(&self.nodes[i].kind, NodeKind::Sink { topic: t } if *t == topic.name))
                });
                let mut max = None::<i32>;
                let mut known = true;
                for members in writers {
                    for &i in members {
                        let NodeKind::Source { topics } = &self.nodes[i].kind else { continue };
                        for t in topics {
                            let n = if is_internal(t) { counts.get(t).copied() } else { Some(external(t)?) };
                            match n {
                                Some(n) => max = Some(max.map_or(n, |m| m.max(n))),
                                None => known = false,
                            }
                        }
                    }
                }
                if known {
                    counts.insert(topic.name.clone(), max.unwrap_or(1));
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        for group in &self.copartition_groups {
            let sizes: Vec<(&String, Option<i32>)> = group.iter().map(|t| (t, counts.get(t).copied())).collect();
            if let Some(((a, Some(pa)), (b, Some(pb)))) = sizes
                .iter()
                .filter(|(t, _)| is_internal(t))
                .flat_map(|x| sizes.iter().map(move |y| (x, y)))
                .find(|(x, y)| matches!((x.1, y.1), (Some(p), Some(q)) if p != q))
            {
                return Err(Error::Topology(format!(
                    "repartition topics {a:?} ({pa} partitions) and {b:?} ({pb} partitions) are joined but differ; \
                     give the repartition steps the same number of partitions"
                )));
            }
        }
        match self.internal_topics.iter().find(|t| !counts.contains_key(&t.name)) {
            Some(t) => Err(Error::Topology(format!(
                "cannot derive the partition count of internal topic {:?}: it is written in a cycle; give it one",
                t.name
            ))),
            None => Ok(counts),
        }
    }
}

impl Topology {
    /// The topics feeding `node`, through its ancestors up to their
    /// sources (for the co-partitioning of a join's inputs).
    pub fn upstream_source_topics<K, V>(&self, node: super::NodeHandle<K, V>) -> Vec<String> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![node.index];
        let mut out = Vec::new();
        while let Some(i) = stack.pop() {
            if i >= self.nodes.len() || std::mem::replace(&mut seen[i], true) {
                continue;
            }
            if let NodeKind::Source { topics } = &self.nodes[i].kind {
                out.extend(topics.iter().cloned());
            }
            stack.extend(self.nodes[i].parents.iter().copied());
        }
        out.sort();
        out.dedup();
        out
    }
}
