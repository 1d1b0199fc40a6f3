//! The embedded admin client: topics, configs, partitions, groups, lag and
//! offset resets.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::Admin;
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::group::{GroupCoordinator, GroupDescription, OffsetAndMetadata};
use crate::log::{Log, TopicDescription};
use crate::types::{Offset, Timestamp, TopicPartition};

/// Where `reset_offsets` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset of each partition.
    Earliest,
    /// The high watermark of each partition.
    Latest,
    /// The first offset at or after a timestamp (the end if none).
    Timestamp(Timestamp),
    /// The same offset on every partition (clamped to the partition's range).
    Offset(Offset),
}

/// One partition's lag in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub tp: TopicPartition,
    /// The group's committed offset, if any.
    pub committed: Option<Offset>,
    /// The partition's high watermark.
    pub end_offset: Offset,
    /// `end - committed` (or `end - log start` without a commit).
    pub lag: i64,
    /// The member consuming it, if any.
    pub member: Option<String>,
}

/// A group's lag over every partition it has committed or is assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// The group as described by the coordinator.
    pub group: GroupDescription,
    /// Per partition, sorted.
    pub partitions: Vec<PartitionLag>,
}

/// An [`Admin`] on a local [`Log`].
#[derive(Debug, Clone)]
pub struct EmbeddedAdmin {
    log: Log,
    groups: GroupCoordinator,
}

impl EmbeddedAdmin {
    /// The admin client of a log.
    pub fn new(log: Log) -> Self {
        let groups = log.group_coordinator();
        Self { log, groups }
    }

    fn resolve(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Offset> {
        let (start, hw, _) = self.log.offsets(tp)?;
        Ok(match spec {
            OffsetSpec::Earliest => start,
            OffsetSpec::Latest => hw,
            OffsetSpec::Timestamp(ts) => self.log.offset_for_timestamp(tp, ts)?.unwrap_or(hw),
            OffsetSpec::Offset(o) => o.clamp(start, hw),
        })
    }
}

#[async_trait]
impl Admin for EmbeddedAdmin {
    async fn create_topic(&self, name: &str, partitions: i32, config: TopicConfig) -> Result<()> {
        self.log.create_topic(name, partitions, config)
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        self.log.delete_topic(name)
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.log.topic_names())
    }

    async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        self.log.describe_topic(name)
    }

    async fn alter_topic_config(&self, name: &str, set: &[(String, String)], delete: &[String]) -> Result<TopicConfig> {
        self.log.alter_topic_config(name, set, delete)
    }

    async fn create_partitions(&self, name: &str, total: i32) -> Result<()> {
        self.log.create_partitions(name, total)
    }

    async fn list_groups(&self) -> Result<Vec<(String, String)>> {
        Ok(self.groups.list_groups())
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.groups.describe_group(group)
    }

    async fn group_lag(&self, group: &str) -> Result<GroupLag> {
        let description = self.groups.describe_group(group)?;
        let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
        for m in &description.members {
            for tp in &m.assignment {
                owners.insert(tp.clone(), m.member_id.clone());
            }
        }
        let mut tps: Vec<TopicPartition> = description.offsets.keys().chain(owners.keys()).cloned().collect();
        tps.sort();
        tps.dedup();
        let mut partitions = Vec::new();
        for tp in tps {
            let Ok((start, hw, _)) = self.log.offsets(&tp) else { continue }; // topic deleted since
            let committed = description.offsets.get(&tp).map(|c| c.offset);
            partitions.push(PartitionLag {
                lag: hw - committed.unwrap_or(start).clamp(start, hw),
                committed,
                end_offset: hw,
                member: owners.get(&tp).cloned(),
                tp,
            });
        }
        Ok(GroupLag { group: description, partitions })
    }

    async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        to: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, Offset>> {
        let count = self.log.partition_count(topic)?;
        let mut offsets = BTreeMap::new();
        for p in 0..count {
            let tp = TopicPartition::new(topic, p);
            let offset = self.resolve(&tp, to)?;
            offsets.insert(tp, offset);
        }
        self.groups.reset_offsets(group, offsets.clone()).await.map_err(|e| match e {
            Error::Group { group, kind: crate::group::GroupErrorKind::NotEmpty } => Error::InvalidState(format!(
                "group {group} has active members; stop its consumers before resetting its offsets"
            )),
            e => e,
        })?;
        Ok(offsets)
    }

    async fn committed_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        Ok(self.groups.committed(group, None))
    }
}
