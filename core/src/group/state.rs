//! One consumer group's membership, as a pure state machine.
//!
//! The Kafka group protocol, as the broker's `GroupCoordinator` runs it:
//!
//! ```text
//!            join (new member, or a member rejoins)
//!  Empty ──────────────► PreparingRebalance ◄──────────── Stable
//!    ▲                      │  every member rejoined        ▲   │ member left, session
//!    │ last member left     │  or rebalance timeout        │   │ expired, or rejoin
//!    │                      ▼                              │   │
//!    └────────────── CompletingRebalance ── leader's sync ─┘   │
//!                           ▲                                  │
//!                           └──────────────────────────────────┘
//! ```
//!
//! Joining members wait until every known member has rejoined (or the
//! rebalance timeout passes, and those that did not are dropped); then the
//! generation increments, a leader is chosen and gets every member's
//! subscription, computes the assignment on the client side, and sends it
//! with its SyncGroup; every member's SyncGroup then returns its share.
//!
//! Methods take the current time and return [`Output`]s — responses due to
//! *other* members that were waiting — so that the whole protocol is tested
//! without clocks or threads; [`super::coordinator`] executes them.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::GroupErrorKind;
use crate::types::Timestamp;

/// The phase of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPhase {
    /// No members (committed offsets may exist).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl std::fmt::Display for GroupPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        })
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The member's id from an earlier join, or `None` for a new member.
    pub member_id: Option<String>,
    /// The client's id, used to make member ids readable.
    pub client_id: String,
    /// The member is removed if no heartbeat arrives within this time.
    pub session_timeout_ms: i64,
    /// How long a rebalance waits for this member to rejoin.
    pub rebalance_timeout_ms: i64,
    /// Supported assignors by preference, each with its subscription metadata.
    pub protocols: Vec<(String, Bytes)>,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// The new generation.
    pub generation: i32,
    /// The assignor chosen.
    pub protocol: String,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member's metadata for the chosen assignor — given to the leader only.
    pub members: Vec<(String, Bytes)>,
}

/// A response owed to a member that was waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A pending JoinGroup completes.
    Join {
        /// The member.
        member_id: String,
        /// Its response.
        response: Result<JoinResponse, GroupErrorKind>,
    },
    /// A pending SyncGroup completes with the member's assignment.
    Sync {
        /// The member.
        member_id: String,
        /// Its assignment.
        response: Result<Bytes, GroupErrorKind>,
    },
}

/// A member of the group.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// Its client id.
    pub client_id: String,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    protocols: Vec<(String, Bytes)>,
    last_heartbeat: Timestamp,
    awaiting_join: bool,
    awaiting_sync: bool,
    /// Its current assignment (assignor-specific bytes).
    pub assignment: Bytes,
}

impl Member {
    /// Its metadata for an assignor.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols.iter().find(|(p, _)| p == protocol).map(|(_, m)| m)
    }
}

/// One group's membership state.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    phase: GroupPhase,
    generation: i32,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    rebalance_deadline: Timestamp,
    next_member: u64,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            phase: GroupPhase::Empty,
            generation: 0,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: 0,
            next_member: 0,
        }
    }

    /// The group's id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Its phase.
    pub fn phase(&self) -> GroupPhase {
        self.phase
    }
    /// Its generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }
    /// The chosen assignor.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
    /// The leader.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    /// The members.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Handles a JoinGroup. Returns the member's id; its own response comes
    /// as an [`Output::Join`] for it, now or from a later call.
    pub fn join(&mut self, req: JoinRequest, now: Timestamp) -> Result<(String, Vec<Output>), GroupErrorKind> {
        if req.protocols.is_empty() {
            return Err(GroupErrorKind::InconsistentProtocol);
        }
        let others_share = self
            .members
            .values()
            .filter(|m| Some(&m.id) != req.member_id.as_ref())
            .all(|m| m.protocols.iter().any(|(p, _)| req.protocols.iter().any(|(q, _)| p == q)));
        if !others_share {
            return Err(GroupErrorKind::InconsistentProtocol);
        }
        let member_id = match req.member_id {
            Some(id) if self.members.contains_key(&id) => id,
            Some(id) => return Err(GroupErrorKind::UnknownMemberId(id)),
            None => {
                self.next_member += 1;
                format!("{}-{}-{}", req.client_id, self.generation, self.next_member)
            }
        };
        let mut outputs = Vec::new();
        let member = self.members.entry(member_id.clone()).or_insert_with(|| Member {
            id: member_id.clone(),
            client_id: req.client_id.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: Vec::new(),
            last_heartbeat: now,
            awaiting_join: false,
            awaiting_sync: false,
            assignment: Bytes::new(),
        });
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heartbeat = now;
        member.awaiting_join = true;
        if member.awaiting_sync {
            member.awaiting_sync = false;
            outputs.push(Output::Sync {
                member_id: member_id.clone(),
                response: Err(GroupErrorKind::RebalanceInProgress),
            });
        }
        if self.phase != GroupPhase::PreparingRebalance {
            outputs.extend(self.prepare_rebalance(now));
        }
        outputs.extend(self.maybe_complete_join(now));
        Ok((member_id, outputs))
    }

    fn prepare_rebalance(&mut self, now: Timestamp) -> Vec<Output> {
        let mut outputs = Vec::new();
        for m in self.members.values_mut() {
            if m.awaiting_sync {
                m.awaiting_sync = false;
                outputs
                    .push(Output::Sync { member_id: m.id.clone(), response: Err(GroupErrorKind::RebalanceInProgress) });
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        self.phase = GroupPhase::PreparingRebalance;
        self.rebalance_deadline = now.saturating_add(timeout);
        outputs
    }

    fn maybe_complete_join(&mut self, now: Timestamp) -> Vec<Output> {
        if self.phase != GroupPhase::PreparingRebalance {
            return Vec::new();
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join);
        if !all_joined && now < self.rebalance_deadline {
            return Vec::new();
        }
        self.members.retain(|_, m| m.awaiting_join); // those that did not rejoin in time
        self.generation += 1;
        if self.members.is_empty() {
            self.phase = GroupPhase::Empty;
            self.protocol = None;
            self.leader = None;
            return Vec::new();
        }
        let protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().unwrap_or_default();
        let all: Vec<(String, Bytes)> =
            self.members.values().map(|m| (m.id.clone(), m.metadata(&protocol).cloned().unwrap_or_default())).collect();
        self.phase = GroupPhase::CompletingRebalance;
        self.protocol = Some(protocol.clone());
        let generation = self.generation;
        self.members
            .values_mut()
            .map(|m| {
                m.awaiting_join = false;
                m.awaiting_sync = false;
                m.last_heartbeat = now;
                let members = if m.id == leader { all.clone() } else { Vec::new() };
                Output::Join {
                    member_id: m.id.clone(),
                    response: Ok(JoinResponse {
                        generation,
                        protocol: protocol.clone(),
                        leader: leader.clone(),
                        member_id: m.id.clone(),
                        members,
                    }),
                }
            })
            .collect()
    }

    /// Kafka's vote: each member votes for its most preferred protocol that
    /// every member supports; the most votes win.
    fn select_protocol(&self) -> String {
        let supported_by_all = |p: &str| self.members.values().all(|m| m.metadata(p).is_some());
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| supported_by_all(p)) {
                *votes.entry(p).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|(_, v)| *v).map(|(p, _)| p.to_owned()).unwrap_or_default()
    }

    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), GroupErrorKind> {
        if !self.members.contains_key(member_id) {
            return Err(GroupErrorKind::UnknownMemberId(member_id.to_owned()));
        }
        if generation != self.generation {
            return Err(GroupErrorKind::IllegalGeneration { got: generation, current: self.generation });
        }
        Ok(())
    }

    /// Handles a SyncGroup; the leader passes every member's assignment.
    /// The member's response comes as an [`Output::Sync`].
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Option<BTreeMap<String, Bytes>>,
        now: Timestamp,
    ) -> Result<Vec<Output>, GroupErrorKind> {
        self.check_member(member_id, generation)?;
        match self.phase {
            GroupPhase::Empty | GroupPhase::PreparingRebalance => Err(GroupErrorKind::RebalanceInProgress),
            GroupPhase::Stable => {
                let assignment = self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                Ok(vec![Output::Sync { member_id: member_id.to_owned(), response: Ok(assignment) }])
            }
            GroupPhase::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = true;
                    m.last_heartbeat = now;
                }
                if self.leader.as_deref() != Some(member_id) {
                    return Ok(Vec::new());
                }
                let mut assignments = assignments.unwrap_or_default();
                self.phase = GroupPhase::Stable;
                Ok(self
                    .members
                    .values_mut()
                    .filter_map(|m| {
                        m.assignment = assignments.remove(&m.id).unwrap_or_default();
                        std::mem::take(&mut m.awaiting_sync)
                            .then(|| Output::Sync { member_id: m.id.clone(), response: Ok(m.assignment.clone()) })
                    })
                    .collect())
            }
        }
    }

    /// Handles a Heartbeat. `RebalanceInProgress` tells the member to rejoin.
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now: Timestamp) -> Result<(), GroupErrorKind> {
        self.check_member(member_id, generation)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match self.phase {
            GroupPhase::PreparingRebalance => Err(GroupErrorKind::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles a LeaveGroup.
    pub fn leave(&mut self, member_id: &str, now: Timestamp) -> Result<Vec<Output>, GroupErrorKind> {
        let Some(member) = self.members.remove(member_id) else {
            return Err(GroupErrorKind::UnknownMemberId(member_id.to_owned()));
        };
        let mut outputs = Vec::new();
        if member.awaiting_join {
            outputs.push(Output::Join {
                member_id: member.id.clone(),
                response: Err(GroupErrorKind::UnknownMemberId(member.id.clone())),
            });
        }
        outputs.extend(self.membership_changed(now));
        Ok(outputs)
    }

    fn membership_changed(&mut self, now: Timestamp) -> Vec<Output> {
        if self.members.is_empty() {
            if self.phase != GroupPhase::Empty {
                self.generation += 1;
            }
            self.phase = GroupPhase::Empty;
            self.leader = None;
            self.protocol = None;
            return Vec::new();
        }
        let mut outputs = Vec::new();
        if self.phase != GroupPhase::PreparingRebalance {
            outputs.extend(self.prepare_rebalance(now));
        }
        outputs.extend(self.maybe_complete_join(now));
        outputs
    }

    /// Advances time: removes members whose session expired (unless they
    /// wait in a join or sync) and ends a rebalance whose timeout passed.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Output> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                !m.awaiting_join && !m.awaiting_sync && now > m.last_heartbeat.saturating_add(m.session_timeout_ms)
            })
            .map(|m| m.id.clone())
            .collect();
        let mut outputs = Vec::new();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "session expired, removing member");
            self.members.remove(id);
        }
        if !expired.is_empty() {
            outputs.extend(self.membership_changed(now));
        }
        outputs.extend(self.maybe_complete_join(now));
        outputs
    }

    /// Whether an OffsetCommit from this member and generation is accepted.
    /// A commit without a member (generation -1) is accepted only while the
    /// group has no members: manual assignment and admin resets.
    pub fn validate_commit(&self, member_id: &str, generation: i32) -> Result<(), GroupErrorKind> {
        if generation < 0 && member_id.is_empty() {
            return match self.phase {
                GroupPhase::Empty => Ok(()),
                _ => Err(GroupErrorKind::NotEmpty),
            };
        }
        self.check_member(member_id, generation)?;
        match self.phase {
            GroupPhase::CompletingRebalance => Err(GroupErrorKind::RebalanceInProgress),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(member: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member.map(str::to_owned),
            client_id: "c".into(),
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 5000,
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        }
    }

    fn joined(outputs: &[Output]) -> Vec<&JoinResponse> {
        outputs
            .iter()
            .filter_map(|o| if let Output::Join { response: Ok(r), .. } = o { Some(r) } else { None })
            .collect()
    }

    #[test]
    fn three_members_join_sync_and_rebalance_when_one_leaves() {
        let mut g = Group::new("g");
        let (a, out) = g.join(req(None), 0).expect("join");
        assert_eq!(joined(&out).len(), 1, "a lone member completes at once");
        assert_eq!(g.generation(), 1);
        let (b, out) = g.join(req(None), 1).expect("join");
        assert!(out.is_empty(), "b waits for a to rejoin");
        assert_eq!(g.phase(), GroupPhase::PreparingRebalance);
        assert_eq!(g.heartbeat(&a, 1, 2), Err(GroupErrorKind::RebalanceInProgress));
        let (_, out) = g.join(req(Some(&a)), 3).expect("rejoin");
        let responses = joined(&out);
        assert_eq!(responses.len(), 2);
        assert!(responses.iter().all(|r| r.generation == 2 && r.leader == a));
        assert_eq!(responses.iter().find(|r| r.member_id == a).map(|r| r.members.len()), Some(2));
        assert!(g.sync(&b, 2, None, 4).expect("sync").is_empty(), "follower waits for the leader");
        let mut assignments = BTreeMap::new();
        assignments.insert(a.clone(), Bytes::from_static(b"A"));
        assignments.insert(b.clone(), Bytes::from_static(b"B"));
        let out = g.sync(&a, 2, Some(assignments), 5).expect("sync");
        assert_eq!(out.len(), 2);
        assert!(out.contains(&Output::Sync { member_id: b.clone(), response: Ok(Bytes::from_static(b"B")) }));
        assert_eq!(g.phase(), GroupPhase::Stable);
        assert_eq!(g.validate_commit(&b, 1), Err(GroupErrorKind::IllegalGeneration { got: 1, current: 2 }));
        g.validate_commit(&b, 2).expect("commit accepted");

        g.leave(&a, 6).expect("leave");
        assert_eq!(g.phase(), GroupPhase::PreparingRebalance);
        g.validate_commit(&b, 2).expect("commits still accepted while preparing");
        let (_, out) = g.join(req(Some(&b)), 7).expect("rejoin");
        let r = joined(&out);
        assert_eq!((r.len(), r[0].leader.as_str(), r[0].generation), (1, b.as_str(), 3));
    }

    #[test]
    fn a_silent_member_is_expired_and_a_late_one_dropped() {
        let mut g = Group::new("g");
        let (a, _) = g.join(req(None), 0).expect("join");
        g.sync(&a, 1, Some(BTreeMap::new()), 0).expect("sync");
        let (b, _) = g.join(req(None), 10).expect("join");
        // `a` heartbeats but never rejoins: after the rebalance timeout it is dropped.
        for t in [900, 1800, 2700, 3600, 4500] {
            assert_eq!(g.heartbeat(&a, 1, t), Err(GroupErrorKind::RebalanceInProgress));
            assert!(g.tick(t).is_empty(), "still waiting for a at {t}");
        }
        let out = g.tick(5011);
        let r = joined(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].member_id, b);
        assert_eq!(g.members().count(), 1);
        g.sync(&b, 2, Some(BTreeMap::new()), 5011).expect("sync");
        // Stable, then silence: the session expires and the group empties.
        assert!(g.tick(6000).is_empty());
        g.tick(6012);
        assert_eq!(g.phase(), GroupPhase::Empty);
        g.validate_commit("", -1).expect("admin commit on an empty group");
    }

    #[test]
    fn members_without_a_common_assignor_are_refused() {
        let mut g = Group::new("g");
        g.join(req(None), 0).expect("join");
        let mut other = req(None);
        other.protocols = vec![("roundrobin".into(), Bytes::new())];
        assert_eq!(g.join(other, 1).map(|_| ()), Err(GroupErrorKind::InconsistentProtocol));
    }
}
