//! `Topology::describe()`: sub-topologies with their sources, processors
//! and sinks, in Kafka Streams' text layout, and as Graphviz dot.

use std::fmt;

use super::{NodeKind, Topology};

/// A printable description of a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription {
    subtopologies: Vec<SubtopologyDescription>,
    /// Global stores: (store, topic).
    globals: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SubtopologyDescription {
    id: usize,
    nodes: Vec<NodeDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeDescription {
    name: String,
    kind: NodeKind,
    stores: Vec<String>,
    children: Vec<String>,
    parents: Vec<String>,
}

pub(super) fn describe(topology: &Topology) -> TopologyDescription {
    let nodes = &topology.nodes;
    let children =
        |i: usize| -> Vec<String> { nodes.iter().filter(|n| n.parents.contains(&i)).map(|n| n.name.clone()).collect() };
    let subtopologies = topology
        .subtopologies()
        .into_iter()
        .enumerate()
        .map(|(id, members)| SubtopologyDescription {
            id,
            nodes: members
                .into_iter()
                .map(|i| NodeDescription {
                    name: nodes[i].name.clone(),
                    kind: nodes[i].kind.clone(),
                    stores: nodes[i].stores.clone(),
                    children: children(i),
                    parents: nodes[i].parents.iter().map(|p| nodes[*p].name.clone()).collect(),
                })
                .collect(),
        })
        .collect();
    let globals = topology.global_stores.iter().map(|g| (g.store.name.clone(), g.topic.clone())).collect();
    TopologyDescription { subtopologies, globals }
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topologies:")?;
        for sub in &self.subtopologies {
            writeln!(f, "   Sub-topology: {}", sub.id)?;
            for node in &sub.nodes {
                match &node.kind {
                    NodeKind::Source { topics } => {
                        writeln!(f, "    Source: {} (topics: [{}])", node.name, topics.join(", "))?;
                    }
                    NodeKind::Processor => {
                        writeln!(f, "    Processor: {} (stores: [{}])", node.name, node.stores.join(", "))?;
                    }
                    NodeKind::Sink { topic } => writeln!(f, "    Sink: {} (topic: {topic})", node.name)?,
                }
                let arrow = |names: &[String]| if names.is_empty() { "none".to_owned() } else { names.join(", ") };
                if !matches!(node.kind, NodeKind::Sink { .. }) {
                    writeln!(f, "      --> {}", arrow(&node.children))?;
                }
                if !matches!(node.kind, NodeKind::Source { .. }) {
                    writeln!(f, "      <-- {}", arrow(&node.parents))?;
                }
            }
        }
        for (store, topic) in &self.globals {
            writeln!(f, "   Global store: {store} (topic: {topic})")?;
        }
        Ok(())
    }
}

impl TopologyDescription {
    /// The topology as a Graphviz `digraph`: one cluster per sub-topology,
    /// topics as ellipses, processors as boxes, stores as cylinders.
    pub fn to_dot(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\\\""));
        let mut out = String::from("digraph topology {\n  rankdir=LR;\n");
        for sub in &self.subtopologies {
            out.push_str(&format!("  subgraph cluster_{} {{\n    label=\"Sub-topology {}\";\n", sub.id, sub.id));
            for node in &sub.nodes {
                out.push_str(&format!("    {} [shape=box];\n", q(&node.name)));
            }
            out.push_str("  }\n");
            for node in &sub.nodes {
                match &node.kind {
                    NodeKind::Source { topics } => {
                        for t in topics {
                            out.push_str(&format!("  {} [shape=ellipse];\n  {} -> {};\n", q(t), q(t), q(&node.name)));
                        }
                    }
                    NodeKind::Sink { topic } => {
                        out.push_str(&format!(
                            "  {} [shape=ellipse];\n  {} -> {};\n",
                            q(topic),
                            q(&node.name),
                            q(topic)
                        ));
                    }
                    NodeKind::Processor => {}
                }
                for s in &node.stores {
                    out.push_str(&format!(
                        "  {} [shape=cylinder];\n  {} -> {} [dir=both];\n",
                        q(s),
                        q(&node.name),
                        q(s)
                    ));
                }
                for c in &node.children {
                    out.push_str(&format!("  {} -> {};\n", q(&node.name), q(c)));
                }
            }
        }
        out.push_str("}\n");
        out
    }
}
