//! The group coordinator of the embedded log: runs each group's
//! [`Group`] state machine, delivers the responses it owes to waiting
//! members, and keeps committed offsets in `__consumer_offsets`.
//!
//! Time moves when members call in: a member waiting in a join or sync
//! re-checks every 100 ms, and every heartbeat ticks its group, so expired
//! sessions and rebalance timeouts are noticed without a timer thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::GroupErrorKind;
use super::offsets::{self, OffsetAndMetadata};
use super::state::{Group, GroupPhase, JoinRequest, JoinResponse, Output};
use crate::config::CONSUMER_OFFSETS_TOPIC;
use crate::error::{Error, Result};
use crate::log::Log;
use crate::record::batch::decode_batches;
use crate::record::{ControlType, ProducerStamp, Record, encode_batch};
use crate::types::{Offset, ProducerId, TopicPartition, now_ms};

/// How often a waiting member re-checks its group's clock.
const WAIT_TICK: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Entry {
    group: Group,
    joins: HashMap<String, oneshot::Sender<Result<JoinResponse, GroupErrorKind>>>,
    syncs: HashMap<String, oneshot::Sender<Result<Bytes, GroupErrorKind>>>,
    /// Incremented whenever a rebalance starts, so members notice at once.
    rebalances: watch::Sender<u64>,
}

impl Entry {
    fn new(id: &str) -> Self {
        Self { group: Group::new(id), joins: HashMap::new(), syncs: HashMap::new(), rebalances: watch::Sender::new(0) }
    }

    fn deliver(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Join { member_id, response } => {
                    if let Some(tx) = self.joins.remove(&member_id) {
                        let _ = tx.send(response);
                    }
                }
                Output::Sync { member_id, response } => {
                    if let Some(tx) = self.syncs.remove(&member_id) {
                        let _ = tx.send(response);
                    }
                }
            }
        }
        if self.group.phase() == GroupPhase::PreparingRebalance {
            self.rebalances.send_if_modified(|n| {
                *n += 1;
                true
            });
        }
    }
}

/// The coordinator's state, held by the log.
#[derive(Debug, Default)]
pub(crate) struct GroupsState {
    groups: Mutex<BTreeMap<String, Entry>>,
    committed: Mutex<BTreeMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>>,
    /// Offsets committed inside open transactions, by producer id: applied
    /// when the transaction's commit marker is written, dropped on abort.
    pending: Mutex<BTreeMap<ProducerId, PendingOffsets>>,
}

type PendingOffsets = BTreeMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>;

impl GroupsState {
    /// Rebuilds committed offsets from `__consumer_offsets`: plain commits
    /// apply at once; transactional ones when their commit marker follows,
    /// and those of transactions still open stay pending.
    pub(crate) fn load(&self, log: &Log) -> Result<()> {
        let mut committed = self.committed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for p in 0..log.partition_count(CONSUMER_OFFSETS_TOPIC)? {
            let tp = TopicPartition::new(CONSUMER_OFFSETS_TOPIC, p);
            let (mut offset, hw, _) = log.offsets(&tp)?;
            while offset < hw {
                let fetched = log.fetch(&tp, offset, 1 << 20)?;
                let from = offset;
                offset = fetched.records.next_offset;
                let sets = decode_batches(fetched.records.bytes)
                    .map_err(|reason| Error::InvalidRecord { tp: tp.clone(), reason })?;
                for r in sets.into_iter().flat_map(|s| s.records).filter(|r| r.offset >= from) {
                    if r.control {
                        let commit = r.key.as_deref().and_then(ControlType::from_key) == Some(ControlType::Commit);
                        if let Some(offsets) = pending.remove(&r.producer_id)
                            && commit
                        {
                            apply(&mut committed, offsets);
                        }
                        continue;
                    }
                    let Some((group, key_tp)) = r.key.as_ref().and_then(offsets::decode_key) else { continue };
                    let value = r.value.as_ref().and_then(offsets::decode_value);
                    if r.transactional {
                        if let Some(v) = value {
                            pending.entry(r.producer_id).or_default().entry(group).or_default().insert(key_tp, v);
                        }
                        continue;
                    }
                    let entry = committed.entry(group).or_default();
                    match value {
                        Some(v) => entry.insert(key_tp, v),
                        None => entry.remove(&key_tp),
                    };
                }
                if offset <= from {
                    break;
                }
            }
        }
        committed.retain(|_, offsets| !offsets.is_empty());
        Ok(())
    }

    /// A transaction's marker reached `__consumer_offsets`: its offsets
    /// become the committed ones, or are dropped.
    pub(crate) fn complete_txn(&self, producer_id: ProducerId, commit: bool) {
        let offsets = self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&producer_id);
        if let Some(offsets) = offsets
            && commit
        {
            apply(&mut self.committed.lock().unwrap_or_else(PoisonError::into_inner), offsets);
        }
    }
}

fn apply(committed: &mut BTreeMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>, offsets: PendingOffsets) {
    for (group, offsets) in offsets {
        committed.entry(group).or_default().extend(offsets);
    }
}

/// A member's view of one group: what [`GroupCoordinator::describe_group`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group.
    pub group_id: String,
    /// Its phase (`Empty`, `Stable`, ...).
    pub state: String,
    /// Its generation.
    pub generation: i32,
    /// The assignor in use.
    pub protocol: Option<String>,
    /// Members: id, client id, assigned partitions.
    pub members: Vec<MemberDescription>,
    /// Committed offsets.
    pub offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// The client id.
    pub client_id: String,
    /// Its assignment.
    pub assignment: Vec<TopicPartition>,
}

/// The embedded group coordinator: a handle on the log's groups.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    log: Log,
}

impl GroupCoordinator {
    /// The coordinator of a log.
    pub fn new(log: Log) -> Self {
        Self { log }
    }

    fn state(&self) -> &GroupsState {
        self.log.groups_state()
    }

    fn groups(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.state().groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn group_error(group: &str, kind: GroupErrorKind) -> Error {
        Error::Group { group: group.to_owned(), kind }
    }

    /// JoinGroup: waits until the rebalance completes and returns this
    /// member's response.
    pub async fn join_group(&self, group_id: &str, req: JoinRequest) -> Result<JoinResponse> {
        let mut rx = {
            let mut groups = self.groups();
            let entry = groups.entry(group_id.to_owned()).or_insert_with(|| Entry::new(group_id));
            let (member_id, outputs) = entry.group.join(req, now_ms()).map_err(|k| Self::group_error(group_id, k))?;
            let (tx, rx) = oneshot::channel();
            entry.joins.insert(member_id, tx);
            entry.deliver(outputs);
            rx
        };
        self.wait(group_id, &mut rx).await
    }

    /// SyncGroup: the leader passes the assignments; every member gets its own.
    pub async fn sync_group(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        assignments: Option<BTreeMap<String, Bytes>>,
    ) -> Result<Bytes> {
        let mut rx = {
            let mut groups = self.groups();
            let entry = groups
                .get_mut(group_id)
                .ok_or_else(|| Self::group_error(group_id, GroupErrorKind::UnknownMemberId(member_id.into())))?;
            let (tx, rx) = oneshot::channel();
            entry.syncs.insert(member_id.to_owned(), tx);
            match entry.group.sync(member_id, generation, assignments, now_ms()) {
                Ok(outputs) => entry.deliver(outputs),
                Err(k) => {
                    entry.syncs.remove(member_id);
                    return Err(Self::group_error(group_id, k));
                }
            }
            rx
        };
        self.wait(group_id, &mut rx).await
    }

    async fn wait<T>(&self, group_id: &str, rx: &mut oneshot::Receiver<Result<T, GroupErrorKind>>) -> Result<T> {
        loop {
            match tokio::time::timeout(WAIT_TICK, &mut *rx).await {
                Ok(Ok(response)) => return response.map_err(|k| Self::group_error(group_id, k)),
                Ok(Err(_)) => return Err(Self::group_error(group_id, GroupErrorKind::RebalanceInProgress)),
                Err(_) => self.tick(group_id),
            }
        }
    }

    /// Advances a group's clock (expiring sessions, ending rebalances).
    pub fn tick(&self, group_id: &str) {
        let mut groups = self.groups();
        if let Some(entry) = groups.get_mut(group_id) {
            let outputs = entry.group.tick(now_ms());
            entry.deliver(outputs);
        }
    }

    /// Heartbeat. `RebalanceInProgress` means: rejoin.
    pub fn heartbeat(&self, group_id: &str, member_id: &str, generation: i32) -> Result<()> {
        let mut groups = self.groups();
        let entry = groups
            .get_mut(group_id)
            .ok_or_else(|| Self::group_error(group_id, GroupErrorKind::UnknownMemberId(member_id.into())))?;
        let now = now_ms();
        let outputs = entry.group.tick(now);
        entry.deliver(outputs);
        entry.group.heartbeat(member_id, generation, now).map_err(|k| Self::group_error(group_id, k))
    }

    /// LeaveGroup.
    pub fn leave_group(&self, group_id: &str, member_id: &str) -> Result<()> {
        let mut groups = self.groups();
        let Some(entry) = groups.get_mut(group_id) else { return Ok(()) };
        let outputs = entry.group.leave(member_id, now_ms()).map_err(|k| Self::group_error(group_id, k))?;
        entry.deliver(outputs);
        Ok(())
    }

    /// A watch that changes whenever the group starts a rebalance.
    pub fn rebalance_watch(&self, group_id: &str) -> watch::Receiver<u64> {
        let mut groups = self.groups();
        groups.entry(group_id.to_owned()).or_insert_with(|| Entry::new(group_id)).rebalances.subscribe()
    }

    /// Whether the member must rejoin (a rebalance started or it was removed).
    pub fn needs_rejoin(&self, group_id: &str, member_id: &str, generation: i32) -> bool {
        let groups = self.groups();
        groups.get(group_id).is_none_or(|e| {
            e.group.phase() == GroupPhase::PreparingRebalance
                || e.group.generation() != generation
                || !e.group.members().any(|m| m.id == member_id)
        })
    }

    /// Commits offsets for a group; durable before it returns. Members pass
    /// their id and generation; manual-assignment consumers and admin tools
    /// pass `""` and -1, accepted only while the group has no members.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<()> {
        if !self.write_offsets(group_id, member_id, generation, offsets, ProducerStamp::NONE).await? {
            return Ok(());
        }
        let mut committed = self.state().committed.lock().unwrap_or_else(PoisonError::into_inner);
        let group = committed.entry(group_id.to_owned()).or_default();
        for (tp, v) in offsets {
            group.insert(tp.clone(), v.clone());
        }
        Ok(())
    }

    /// `TxnOffsetCommit`: commits offsets inside a producer's transaction.
    /// They are written now, as transactional records, and take effect
    /// when the transaction commits (dropped if it aborts). The member id
    /// and generation, when given, must match the group's current ones,
    /// which fences a zombie member whose partitions moved on.
    pub async fn txn_offset_commit(
        &self,
        group_id: &str,
        producer_id: ProducerId,
        producer_epoch: i16,
        member_id: &str,
        generation: i32,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<()> {
        let stamp = ProducerStamp { producer_id, producer_epoch, base_sequence: -1, transactional: true };
        if !self.write_offsets(group_id, member_id, generation, offsets, stamp).await? {
            return Ok(());
        }
        let mut pending = self.state().pending.lock().unwrap_or_else(PoisonError::into_inner);
        let group = pending.entry(producer_id).or_default().entry(group_id.to_owned()).or_default();
        for (tp, v) in offsets {
            group.insert(tp.clone(), v.clone());
        }
        Ok(())
    }

    /// Checks the committer's membership and writes the offsets to the
    /// group's `__consumer_offsets` partition, durably; `false` if there
    /// was nothing to write.
    async fn write_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
        stamp: ProducerStamp,
    ) -> Result<bool> {
        {
            let groups = self.groups();
            if let Some(entry) = groups.get(group_id) {
                entry.group.validate_commit(member_id, generation).map_err(|k| Self::group_error(group_id, k))?;
            }
        }
        if offsets.is_empty() {
            return Ok(false);
        }
        let records: Vec<Record> = offsets
            .iter()
            .map(|(tp, v)| Record {
                key: Some(offsets::encode_key(group_id, tp)),
                value: Some(offsets::encode_value(v)),
                headers: Vec::new(),
                timestamp: Some(v.commit_timestamp),
            })
            .collect();
        let partition = self.offsets_partition(group_id)?;
        let batch = encode_batch(&records, stamp, now_ms());
        self.log.append(&TopicPartition::new(CONSUMER_OFFSETS_TOPIC, partition), batch).await?;
        Ok(true)
    }

    /// `__consumer_offsets` partition of a group, as Kafka picks it.
    pub(crate) fn offsets_partition(&self, group_id: &str) -> Result<i32> {
        let n = self.log.partition_count(CONSUMER_OFFSETS_TOPIC)?;
        Ok(java_string_hash(group_id).unsigned_abs().rem_euclid(n.unsigned_abs()) as i32)
    }

    /// Committed offsets of a group (all partitions if `partitions` is `None`).
    pub fn committed(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        let committed = self.state().committed.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(group) = committed.get(group_id) else { return BTreeMap::new() };
        match partitions {
            None => group.clone(),
            Some(tps) => tps.iter().filter_map(|tp| group.get(tp).map(|v| (tp.clone(), v.clone()))).collect(),
        }
    }

    /// Every group with members or committed offsets.
    pub fn list_groups(&self) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> = self
            .state()
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .map(|g| (g.clone(), GroupPhase::Empty.to_string()))
            .collect();
        for (id, entry) in self.groups().iter() {
            if entry.group.members().next().is_some() || out.contains_key(id) {
                out.insert(id.clone(), entry.group.phase().to_string());
            }
        }
        out.into_iter().collect()
    }

    /// Describes a group: members, assignments, committed offsets.
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let offsets = self.committed(group_id, None);
        let groups = self.groups();
        let entry = groups.get(group_id);
        if entry.is_none_or(|e| e.group.members().next().is_none()) && offsets.is_empty() {
            return Err(Self::group_error(group_id, GroupErrorKind::UnknownGroup));
        }
        let (state, generation, protocol, members) = match entry {
            Some(e) => (
                e.group.phase().to_string(),
                e.group.generation(),
                e.group.protocol().map(str::to_owned),
                e.group
                    .members()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        client_id: m.client_id.clone(),
                        assignment: super::protocol::decode_assignment(&m.assignment).unwrap_or_default(),
                    })
                    .collect(),
            ),
            None => (GroupPhase::Empty.to_string(), 0, None, Vec::new()),
        };
        Ok(GroupDescription { group_id: group_id.to_owned(), state, generation, protocol, members, offsets })
    }

    /// Resets a group's committed offsets; refused while it has members.
    pub async fn reset_offsets(&self, group_id: &str, offsets: BTreeMap<TopicPartition, Offset>) -> Result<()> {
        let now = now_ms();
        let offsets = offsets
            .into_iter()
            .map(|(tp, offset)| (tp, OffsetAndMetadata { offset, metadata: String::new(), commit_timestamp: now }))
            .collect();
        self.commit_offsets(group_id, "", -1, &offsets).await
    }
}

/// Java's `String.hashCode`, which Kafka uses to place a group's offsets.
pub(crate) fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}
