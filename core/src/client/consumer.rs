//! The embedded consumer: fetching, positions, offset resets, commits and
//! consumer-group membership.
//!
//! In a group, the consumer is a member of the Kafka group protocol: `poll`
//! (re)joins when the coordinator starts a rebalance, the leader runs the
//! assignor on the client side, and a heartbeat task keeps the session
//! alive. With an eager assignor (`range`) every partition is given up
//! before rejoining (committing first when auto-commit is on); with
//! `cooperative-sticky` only the partitions that move are given up, and the
//! member rejoins once more so that they can be handed on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::task::JoinHandle;

use super::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerGroupMetadata, SeekTo, defaults};
use crate::error::{Error, Result};
use crate::group::assignor::{MemberSubscription, RebalanceProtocol, assignor_by_name};
use crate::group::protocol::{
    Subscription, decode_assignment, decode_subscription, encode_assignment, encode_subscription,
};
use crate::group::state::JoinRequest;
use crate::group::{GroupCoordinator, GroupErrorKind, OffsetAndMetadata};
use crate::log::Log;
use crate::record::{ConsumerRecord, decode_committed};
use crate::types::IsolationLevel;
use crate::types::{Offset, TopicPartition, now_ms};

/// Membership shared with the heartbeat task.
#[derive(Debug, Default)]
struct Membership {
    member_id: Option<String>,
    generation: i32,
}

#[derive(Debug)]
struct Shared {
    membership: Mutex<Membership>,
    rejoin: AtomicBool,
    last_poll: Mutex<Instant>,
}

/// A [`Consumer`] on a local [`Log`].
#[derive(Debug)]
pub struct EmbeddedConsumer {
    log: Log,
    config: ConsumerConfig,
    coordinator: GroupCoordinator,
    subscription: Option<Vec<String>>,
    positions: BTreeMap<TopicPartition, Option<Offset>>,
    /// Records fetched but not yet returned by `poll` (beyond `max.poll.records`),
    /// per partition; the partition's position is the first one's offset.
    buffered: BTreeMap<TopicPartition, std::collections::VecDeque<ConsumerRecord>>,
    shared: Arc<Shared>,
    heartbeat: Option<JoinHandle<()>>,
    rebalances: Option<tokio::sync::watch::Receiver<u64>>,
    last_auto_commit: Instant,
    /// Where the next fetch starts, for fairness across partitions.
    next_partition: usize,
}

impl EmbeddedConsumer {
    /// A consumer; it reads nothing until `subscribe` or `assign`.
    pub fn new(log: Log, config: ConsumerConfig) -> Self {
        let coordinator = log.group_coordinator();
        Self {
            log,
            config,
            coordinator,
            subscription: None,
            positions: BTreeMap::new(),
            buffered: BTreeMap::new(),
            shared: Arc::new(Shared {
                membership: Mutex::new(Membership::default()),
                rejoin: AtomicBool::new(false),
                last_poll: Mutex::new(Instant::now()),
            }),
            heartbeat: None,
            rebalances: None,
            last_auto_commit: Instant::now(),
            next_partition: 0,
        }
    }

    /// This consumer's member id and generation in its group, if it is a member.
    pub fn member(&self) -> Option<(String, i32)> {
        let m = self.shared.membership.lock().unwrap_or_else(PoisonError::into_inner);
        m.member_id.clone().map(|id| (id, m.generation))
    }

    fn group(&self) -> Result<&str> {
        self.config.group_id.as_deref().ok_or_else(|| {
            Error::InvalidState("this consumer has no group.id: set one to subscribe or commit offsets".into())
        })
    }

    fn membership(&self) -> (String, i32) {
        let m = self.shared.membership.lock().unwrap_or_else(PoisonError::into_inner);
        (m.member_id.clone().unwrap_or_default(), if m.member_id.is_some() { m.generation } else { -1 })
    }

    fn protocol(&self) -> RebalanceProtocol {
        self.config
            .partition_assignment_strategy
            .first()
            .and_then(|n| assignor_by_name(n))
            .map_or(RebalanceProtocol::Eager, |a| a.protocol())
    }

    /// Whether the group wants this member to (re)join.
    fn must_rejoin(&mut self) -> bool {
        if self.subscription.is_none() {
            return false;
        }
        if self.shared.rejoin.swap(false, Ordering::AcqRel) {
            return true;
        }
        if self.rebalances.as_mut().is_some_and(|rx| rx.has_changed().unwrap_or(true)) {
            if let Some(rx) = self.rebalances.as_mut() {
                rx.borrow_and_update();
            }
            let (member, generation) = self.membership();
            return self.group().is_ok_and(|g| self.coordinator.needs_rejoin(g, &member, generation));
        }
        let (member, _) = self.membership();
        member.is_empty()
    }

    /// Runs the join/sync protocol until this member has a stable
    /// assignment, or (cooperative protocol) has given partitions up:
    /// returns whether it did, and then must rejoin once more.
    async fn rejoin(&mut self) -> Result<bool> {
        let group = self.group()?.to_owned();
        loop {
            let eager = self.protocol() == RebalanceProtocol::Eager;
            if eager && !self.positions.is_empty() {
                // Eager: every partition is given up before joining. Return
                // with none assigned, so that the caller commits what it
                // processed first (Kafka's `onPartitionsRevoked`); the next
                // poll joins.
                self.auto_commit_before_revoke().await;
                self.positions.clear();
                self.buffered.clear();
                self.shared.rejoin.store(true, Ordering::Release);
                return Ok(true);
            }
            let (member_id, generation) = self.membership();
            let subscription = Subscription {
                topics: self.subscription.clone().unwrap_or_default(),
                owned_partitions: self.positions.keys().cloned().collect(),
                generation,
            };
            let metadata = encode_subscription(&subscription);
            let request = JoinRequest {
                member_id: (!member_id.is_empty()).then_some(member_id),
                client_id: self.config.client_id.clone(),
                session_timeout_ms: millis(self.config.session_timeout),
                rebalance_timeout_ms: millis(self.config.max_poll_interval),
                protocols: self
                    .config
                    .partition_assignment_strategy
                    .iter()
                    .map(|name| (name.clone(), metadata.clone()))
                    .collect(),
            };
            let joined = match self.coordinator.join_group(&group, request).await {
                Ok(joined) => joined,
                Err(Error::Group { kind: GroupErrorKind::UnknownMemberId(_), .. }) => {
                    self.reset_membership();
                    continue;
                }
                Err(e) => return Err(e),
            };
            {
                let mut m = self.shared.membership.lock().unwrap_or_else(PoisonError::into_inner);
                m.member_id = Some(joined.member_id.clone());
                m.generation = joined.generation;
            }
            let assignments = if joined.leader == joined.member_id {
                Some(self.assign_as_leader(&joined.protocol, &joined.members)?)
            } else {
                None
            };
            let assignment =
                match self.coordinator.sync_group(&group, &joined.member_id, joined.generation, assignments).await {
                    Ok(bytes) => decode_assignment(&bytes).map_err(|reason| {
                        Error::InvalidState(format!(
                            "group {group} sent an assignment this consumer cannot read: {reason}"
                        ))
                    })?,
                    Err(Error::Group { kind: GroupErrorKind::RebalanceInProgress, .. }) => continue,
                    Err(Error::Group {
                        kind: GroupErrorKind::UnknownMemberId(_) | GroupErrorKind::IllegalGeneration { .. },
                        ..
                    }) => {
                        self.reset_membership();
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            let new: BTreeSet<TopicPartition> = assignment.into_iter().collect();
            let revoked: Vec<TopicPartition> = self.positions.keys().filter(|tp| !new.contains(*tp)).cloned().collect();
            if !revoked.is_empty() {
                self.auto_commit_before_revoke().await;
                for tp in &revoked {
                    self.positions.remove(tp);
                    self.buffered.remove(tp);
                }
            }
            for tp in new {
                self.positions.entry(tp).or_insert(None);
            }
            tracing::debug!(group = %group, generation = joined.generation, assigned = ?self.positions.keys().collect::<Vec<_>>(), "joined group");
            // Cooperative: partitions given up are handed on in a follow-up
            // rebalance, which the next poll starts; this poll returns first
            // so that the caller sees the smaller assignment and commits
            // what it processed of the revoked partitions before anyone
            // else reads them (Kafka's `onPartitionsRevoked`).
            if !eager && !revoked.is_empty() {
                self.shared.rejoin.store(true, Ordering::Release);
                return Ok(true);
            }
            return Ok(false);
        }
    }

    fn reset_membership(&self) {
        let mut m = self.shared.membership.lock().unwrap_or_else(PoisonError::into_inner);
        *m = Membership::default();
    }

    /// The leader's part: run the chosen assignor over every member's subscription.
    fn assign_as_leader(
        &self,
        protocol: &str,
        members: &[(String, bytes::Bytes)],
    ) -> Result<BTreeMap<String, bytes::Bytes>> {
        let assignor = assignor_by_name(protocol).ok_or_else(|| {
            Error::InvalidState(format!("the group chose assignor {protocol:?}, which this consumer lacks"))
        })?;
        let mut subscriptions = Vec::new();
        let mut topics = BTreeMap::new();
        for (member_id, metadata) in members {
            let s = decode_subscription(metadata).map_err(|reason| {
                Error::InvalidState(format!("member {member_id} sent unreadable metadata: {reason}"))
            })?;
            for t in &s.topics {
                if let Ok(n) = self.log.partition_count(t) {
                    topics.insert(t.clone(), n);
                }
            }
            subscriptions.push(MemberSubscription {
                member_id: member_id.clone(),
                group_instance_id: None,
                topics: s.topics,
                owned_partitions: s.owned_partitions,
                generation: s.generation,
            });
        }
        let plan = assignor.assign(&subscriptions, &topics);
        Ok(plan.into_iter().map(|(member, tps)| (member, encode_assignment(&tps))).collect())
    }

    async fn auto_commit_before_revoke(&mut self) {
        if self.config.enable_auto_commit
            && self.config.group_id.is_some()
            && let Err(e) = self.commit_positions().await
        {
            tracing::warn!(error = %e, "committing offsets before a rebalance failed");
        }
    }

    async fn maybe_auto_commit(&mut self) {
        if self.config.enable_auto_commit
            && self.config.group_id.is_some()
            && self.last_auto_commit.elapsed() >= self.config.auto_commit_interval
        {
            self.last_auto_commit = Instant::now();
            if let Err(e) = self.commit_positions().await {
                tracing::warn!(error = %e, "auto-commit failed");
            }
        }
    }

    fn current_positions(&self) -> BTreeMap<TopicPartition, Offset> {
        self.positions.iter().filter_map(|(tp, p)| p.map(|p| (tp.clone(), p))).collect()
    }

    async fn commit_positions(&mut self) -> Result<()> {
        let positions = self.current_positions();
        self.commit_offsets(positions).await
    }

    /// Resolves partitions without a position: the committed offset, or `auto.offset.reset`.
    async fn resolve_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> =
            self.positions.iter().filter(|(_, p)| p.is_none()).map(|(tp, _)| tp.clone()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let committed = match &self.config.group_id {
            Some(g) => self.coordinator.committed(g, Some(&missing)),
            None => BTreeMap::new(),
        };
        for tp in missing {
            let position = match committed.get(&tp) {
                Some(c) => c.offset,
                None => self.reset_position(&tp)?,
            };
            self.positions.insert(tp, Some(position));
        }
        Ok(())
    }

    /// The log start offset, and the end as this consumer sees it: the
    /// high watermark, or for `read_committed` the last stable offset.
    fn bounds(&self, tp: &TopicPartition) -> Result<(Offset, Offset)> {
        let (start, hw, _) = self.log.offsets(tp)?;
        match self.config.isolation_level {
            IsolationLevel::ReadUncommitted => Ok((start, hw)),
            IsolationLevel::ReadCommitted => Ok((start, self.log.last_stable_offset(tp)?)),
        }
    }

    fn reset_position(&self, tp: &TopicPartition) -> Result<Offset> {
        let (start, end) = self.bounds(tp)?;
        match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => Ok(start),
            AutoOffsetReset::Latest => Ok(end),
            AutoOffsetReset::None => Err(Error::InvalidState(format!(
                "no committed offset for {tp} and auto.offset.reset=none; seek first or set auto.offset.reset"
            ))),
        }
    }

    /// One pass over the assigned partitions, taking buffered records first
    /// and fetching from each partition with none buffered, in turn.
    fn fetch_once(&mut self) -> Result<Vec<ConsumerRecord>> {
        let mut out = Vec::new();
        self.buffered.retain(|tp, b| !b.is_empty() && self.positions.contains_key(tp));
        let tps: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        if tps.is_empty() {
            return Ok(out);
        }
        let start = self.next_partition % tps.len();
        self.next_partition = self.next_partition.wrapping_add(1);
        for i in 0..tps.len() {
            let room = self.config.max_poll_records.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            let tp = &tps[(start + i) % tps.len()];
            let Some(Some(position)) = self.positions.get(tp).copied() else { continue };
            let mut records = match self.buffered.remove(tp) {
                Some(buffer) => buffer,
                None => match self.fetch_partition(tp, position)? {
                    Some(records) => records,
                    None => continue,
                },
            };
            if records.len() > room {
                let rest = records.split_off(room);
                self.buffered.insert(tp.clone(), rest);
            }
            let next = self
                .buffered
                .get(tp)
                .and_then(|b| b.front())
                .map_or_else(|| records.back().map_or(position, |r| r.offset + 1), |r| r.offset);
            self.positions.insert(tp.clone(), Some(next));
            out.extend(records);
        }
        Ok(out)
    }

    /// Fetches and decodes from one partition; `None` if there is nothing new.
    fn fetch_partition(
        &mut self,
        tp: &TopicPartition,
        position: Offset,
    ) -> Result<Option<std::collections::VecDeque<ConsumerRecord>>> {
        let isolation = self.config.isolation_level;
        let fetched = match self.log.fetch_with(tp, position, self.config.max_partition_fetch_bytes, isolation) {
            Ok(f) => f,
            Err(Error::OffsetOutOfRange { .. }) if self.config.auto_offset_reset != AutoOffsetReset::None => {
                let reset = self.reset_position(tp)?;
                tracing::info!(partition = %tp, from = position, to = reset, "offset out of range, resetting");
                self.positions.insert(tp.clone(), Some(reset));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if fetched.records.bytes.is_empty() {
            return Ok(None);
        }
        let aborted = fetched.aborted_transactions.as_deref();
        let records = decode_committed(&tp.topic, tp.partition, fetched.records.bytes, position, aborted)
            .map_err(|reason| Error::InvalidRecord { tp: tp.clone(), reason })?;
        if records.is_empty() {
            // Only control records or compacted-away offsets: move past them.
            self.positions.insert(tp.clone(), Some(fetched.records.next_offset));
            return Ok(None);
        }
        Ok(Some(records.into()))
    }

    fn start_heartbeat(&mut self) {
        if self.heartbeat.is_some() {
            return;
        }
        let Some(group) = self.config.group_id.clone() else { return };
        let shared = Arc::clone(&self.shared);
        let coordinator = self.coordinator.clone();
        let interval = self.config.heartbeat_interval;
        let max_poll = self.config.max_poll_interval;
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let (member, generation) = {
                    let m = shared.membership.lock().unwrap_or_else(PoisonError::into_inner);
                    (m.member_id.clone(), m.generation)
                };
                let Some(member) = member else { continue };
                let idle = shared.last_poll.lock().unwrap_or_else(PoisonError::into_inner).elapsed();
                if idle > max_poll {
                    tracing::warn!(group = %group, member = %member, "no poll within max.poll.interval.ms, leaving the group");
                    let _ = coordinator.leave_group(&group, &member);
                    *shared.membership.lock().unwrap_or_else(PoisonError::into_inner) = Membership::default();
                    shared.rejoin.store(true, Ordering::Release);
                    continue;
                }
                if let Err(e) = coordinator.heartbeat(&group, &member, generation) {
                    tracing::debug!(error = %e, "heartbeat asks for a rejoin");
                    if matches!(e, Error::Group { kind: GroupErrorKind::UnknownMemberId(_), .. }) {
                        *shared.membership.lock().unwrap_or_else(PoisonError::into_inner) = Membership::default();
                    }
                    shared.rejoin.store(true, Ordering::Release);
                }
            }
        }));
    }

    fn leave(&mut self) {
        if let (Some(group), (member, _)) = (self.config.group_id.clone(), self.membership())
            && !member.is_empty()
        {
            let _ = self.coordinator.leave_group(&group, &member);
        }
        self.reset_membership();
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        let group = self.group()?.to_owned();
        for t in topics {
            self.log.ensure_topic(t)?;
        }
        self.positions.clear();
        self.buffered.clear();
        self.subscription = Some(topics.iter().map(|t| (*t).to_owned()).collect());
        self.rebalances = Some(self.coordinator.rebalance_watch(&group));
        self.shared.rejoin.store(true, Ordering::Release);
        self.start_heartbeat();
        Ok(())
    }

    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        if self.subscription.is_some() {
            self.unsubscribe().await?;
        }
        for tp in partitions {
            self.log.offsets(tp)?; // the partition must exist
        }
        self.positions = partitions.iter().map(|tp| (tp.clone(), None)).collect();
        self.buffered.clear();
        Ok(())
    }

    async fn unsubscribe(&mut self) -> Result<()> {
        if self.subscription.take().is_some() {
            self.auto_commit_before_revoke().await;
            self.leave();
        }
        self.positions.clear();
        self.buffered.clear();
        Ok(())
    }

    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        *self.shared.last_poll.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        loop {
            if self.must_rejoin() && self.rejoin().await? {
                return Ok(Vec::new());
            }
            self.maybe_auto_commit().await;
            self.resolve_positions().await?;
            let log = self.log.clone();
            let notified = log.data_notify().notified();
            let records = self.fetch_once()?;
            if !records.is_empty() {
                return Ok(records);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(records);
            }
            let wait = (deadline - now).min(defaults::POLL_SLICE);
            match self.rebalances.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        () = notified => {}
                        _ = rx.changed() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                None => {
                    let _ = tokio::time::timeout(wait, notified).await;
                }
            }
        }
    }

    async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()> {
        if !self.positions.contains_key(tp) {
            return Err(Error::InvalidState(format!("{tp} is not assigned to this consumer")));
        }
        let (start, end) = self.bounds(tp)?;
        let position = match to {
            SeekTo::Offset(o) => o,
            SeekTo::Beginning => start,
            SeekTo::End => end,
            SeekTo::Timestamp(ts) => self.log.offset_for_timestamp(tp, ts)?.unwrap_or(end),
        };
        self.positions.insert(tp.clone(), Some(position));
        self.buffered.remove(tp);
        Ok(())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let group_id = self.config.group_id.clone()?;
        let (member_id, generation_id) = self.membership();
        Some(ConsumerGroupMetadata { group_id, generation_id, member_id, group_instance_id: None })
    }

    fn position(&self, tp: &TopicPartition) -> Option<Offset> {
        self.positions.get(tp).copied().flatten()
    }

    async fn commit_sync(&mut self) -> Result<()> {
        self.commit_positions().await
    }

    async fn commit_offsets(&mut self, offsets: BTreeMap<TopicPartition, Offset>) -> Result<()> {
        let group = self.group()?.to_owned();
        let (member, generation) = self.membership();
        let now = now_ms();
        let offsets = offsets
            .into_iter()
            .map(|(tp, offset)| (tp, OffsetAndMetadata { offset, metadata: String::new(), commit_timestamp: now }))
            .collect();
        let result = self.coordinator.commit_offsets(&group, &member, generation, &offsets).await;
        if let Err(Error::Group {
            kind:
                GroupErrorKind::IllegalGeneration { .. }
                | GroupErrorKind::UnknownMemberId(_)
                | GroupErrorKind::RebalanceInProgress,
            ..
        }) = &result
        {
            self.shared.rejoin.store(true, Ordering::Release);
        }
        result
    }

    fn commit_async(&mut self) {
        let (Some(group), (member, generation)) = (self.config.group_id.clone(), self.membership()) else { return };
        let now = now_ms();
        let offsets: BTreeMap<_, _> = self
            .current_positions()
            .into_iter()
            .map(|(tp, offset)| (tp, OffsetAndMetadata { offset, metadata: String::new(), commit_timestamp: now }))
            .collect();
        let coordinator = self.coordinator.clone();
        tokio::spawn(async move {
            if let Err(e) = coordinator.commit_offsets(&group, &member, generation, &offsets).await {
                tracing::warn!(error = %e, "asynchronous commit failed");
            }
        });
    }

    async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, Offset>> {
        let group = self.group()?;
        Ok(self.coordinator.committed(group, Some(partitions)).into_iter().map(|(tp, v)| (tp, v.offset)).collect())
    }

    async fn close(&mut self) -> Result<()> {
        if self.config.group_id.is_some() && self.config.enable_auto_commit && !self.positions.is_empty() {
            self.commit_positions().await?;
        }
        self.leave();
        self.subscription = None;
        self.positions.clear();
        self.buffered.clear();
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        self.leave();
    }
}
