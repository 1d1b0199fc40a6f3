//! The transaction coordinator's decisions, as a pure state machine.
//!
//! Each function takes a transactional id's current [`TxnMetadata`] and an
//! event (a producer's request, or time passing) and returns the
//! [`Step`]s to carry out, in order: persist a new state to
//! `__transaction_state`, write markers, persist the next state. Nothing
//! here does I/O, so every transition is tested directly.
//!
//! The states and their order are Kafka's:
//!
//! ```text
//! Empty ──add partitions──> Ongoing ──end(commit)──> PrepareCommit ──markers──> CompleteCommit
//!   ^                          │    └──end(abort) / timeout / fenced──> PrepareAbort ──markers──> CompleteAbort
//!   └──────────── init_producer_id (epoch + 1) ───────────────────────────────────────────────────┘
//! ```
//!
//! A state is persisted before the coordinator acts on it, so that after a
//! crash a `Prepare*` state found in the topic is completed (its markers
//! written again; a repeated marker is harmless) and an `Ongoing` one is
//! aborted when its producer re-initialises or its timeout passes.

use std::collections::BTreeSet;

use super::TxnErrorKind;
use crate::record::ControlType;
use crate::types::{ProducerId, Timestamp, TopicPartition};

/// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for (Kafka's default, 15 min).
pub const MAX_TIMEOUT_MS: i64 = 900_000;

/// Where a transactional id's current transaction stands (Kafka's ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    /// No transaction open.
    Empty,
    /// A transaction is open; partitions are being added.
    Ongoing,
    /// Committing: markers being written.
    PrepareCommit,
    /// Aborting: markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
    /// The id expired.
    Dead,
}

impl TxnStatus {
    /// Kafka's numeric id of the state in `__transaction_state`.
    pub fn id(self) -> i8 {
        match self {
            Self::Empty => 0,
            Self::Ongoing => 1,
            Self::PrepareCommit => 2,
            Self::PrepareAbort => 3,
            Self::CompleteCommit => 4,
            Self::CompleteAbort => 5,
            Self::Dead => 6,
        }
    }

    /// The state with Kafka's numeric id.
    pub fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => Self::Empty,
            1 => Self::Ongoing,
            2 => Self::PrepareCommit,
            3 => Self::PrepareAbort,
            4 => Self::CompleteCommit,
            5 => Self::CompleteAbort,
            6 => Self::Dead,
            _ => return None,
        })
    }
}

impl std::fmt::Display for TxnStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The producer's `transactional.id`.
    pub transactional_id: String,
    /// The producer id it maps to.
    pub producer_id: ProducerId,
    /// The current epoch; older epochs are fenced.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// The state of the current (or last) transaction.
    pub status: TxnStatus,
    /// Partitions the current transaction wrote to (offsets partitions included).
    pub partitions: BTreeSet<TopicPartition>,
    /// When the current transaction started.
    pub start_ms: Timestamp,
    /// When this metadata last changed.
    pub last_update_ms: Timestamp,
}

/// One thing the coordinator must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write this metadata to `__transaction_state`, durably, and adopt it.
    Persist(TxnMetadata),
    /// Write a marker into each partition, durably.
    WriteMarkers {
        /// The producer whose transaction ends.
        producer_id: ProducerId,
        /// The epoch the markers carry.
        producer_epoch: i16,
        /// Commit or abort.
        kind: ControlType,
        /// Where.
        partitions: Vec<TopicPartition>,
    },
}

/// Handles `InitProducerId` for a transactional id: a first producer gets a
/// new producer id; a later one bumps the epoch (fencing the older
/// instance) after completing or aborting what is in flight.
pub fn init_producer_id(
    current: Option<&TxnMetadata>,
    transactional_id: &str,
    timeout_ms: i64,
    now: Timestamp,
    allocate: &mut dyn FnMut() -> ProducerId,
) -> Result<Vec<Step>, TxnErrorKind> {
    if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(TxnErrorKind::InvalidTransactionTimeout(timeout_ms));
    }
    let timeout_ms = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
    let Some(m) = current.filter(|m| m.status != TxnStatus::Dead) else {
        return Ok(vec![Step::Persist(TxnMetadata {
            transactional_id: transactional_id.to_owned(),
            producer_id: allocate(),
            producer_epoch: 0,
            timeout_ms,
            status: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
        })]);
    };
    let mut steps = Vec::new();
    let mut m = m.clone();
    match m.status {
        TxnStatus::Ongoing => {
            // Fence the old instance first: its markers and writes carry an
            // older epoch from here on.
            let (pid, epoch) = bump(&m, allocate);
            m.producer_id = pid;
            m.producer_epoch = epoch;
            steps.extend(complete(&m, ControlType::Abort, now));
        }
        TxnStatus::PrepareCommit => steps.extend(complete(&m, ControlType::Commit, now)),
        TxnStatus::PrepareAbort => steps.extend(complete(&m, ControlType::Abort, now)),
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort | TxnStatus::Dead => {}
    }
    if let Some(Step::Persist(last)) = steps.last() {
        m = last.clone();
    }
    let (pid, epoch) = bump(&m, allocate);
    steps.push(Step::Persist(TxnMetadata {
        producer_id: pid,
        producer_epoch: epoch,
        timeout_ms,
        status: TxnStatus::Empty,
        partitions: BTreeSet::new(),
        start_ms: -1,
        last_update_ms: now,
        ..m
    }));
    Ok(steps)
}

/// The next (producer id, epoch): the epoch plus one, or a new producer id
/// when the epoch would overflow (as Kafka does).
fn bump(m: &TxnMetadata, allocate: &mut dyn FnMut() -> ProducerId) -> (ProducerId, i16) {
    if m.producer_epoch >= i16::MAX - 1 { (allocate(), 0) } else { (m.producer_id, m.producer_epoch + 1) }
}

/// The prepare state, the markers, and the complete state of ending `m`'s
/// transaction.
fn complete(m: &TxnMetadata, kind: ControlType, now: Timestamp) -> Vec<Step> {
    let (prepare, done) = match kind {
        ControlType::Commit => (TxnStatus::PrepareCommit, TxnStatus::CompleteCommit),
        ControlType::Abort => (TxnStatus::PrepareAbort, TxnStatus::CompleteAbort),
    };
    let prepared = TxnMetadata { status: prepare, last_update_ms: now, ..m.clone() };
    let completed = TxnMetadata { status: done, partitions: BTreeSet::new(), last_update_ms: now, ..prepared.clone() };
    vec![
        Step::Persist(prepared),
        Step::WriteMarkers {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            kind,
            partitions: m.partitions.iter().cloned().collect(),
        },
        Step::Persist(completed),
    ]
}

fn check_producer(m: &TxnMetadata, producer_id: ProducerId, epoch: i16) -> Result<(), TxnErrorKind> {
    if producer_id != m.producer_id {
        // After an epoch overflow the id changes; the old id's holder is fenced.
        return Err(TxnErrorKind::InvalidProducerIdMapping);
    }
    if epoch != m.producer_epoch {
        return Err(TxnErrorKind::ProducerFenced { epoch, current: m.producer_epoch });
    }
    Ok(())
}

/// Handles `AddPartitionsToTxn` (and `AddOffsetsToTxn`, whose partition is
/// the group's `__consumer_offsets` partition): opens the transaction if
/// none is open and registers the partitions.
pub fn add_partitions(
    m: &TxnMetadata,
    producer_id: ProducerId,
    epoch: i16,
    partitions: &[TopicPartition],
    now: Timestamp,
) -> Result<Vec<Step>, TxnErrorKind> {
    check_producer(m, producer_id, epoch)?;
    let mut next = m.clone();
    match m.status {
        TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => return Err(TxnErrorKind::ConcurrentTransactions),
        TxnStatus::Dead => return Err(TxnErrorKind::InvalidTxnState("the transactional id expired".into())),
        TxnStatus::Ongoing => {
            if partitions.iter().all(|tp| m.partitions.contains(tp)) {
                return Ok(Vec::new());
            }
        }
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
            next.status = TxnStatus::Ongoing;
            next.partitions.clear();
            next.start_ms = now;
        }
    }
    next.partitions.extend(partitions.iter().cloned());
    next.last_update_ms = now;
    Ok(vec![Step::Persist(next)])
}

/// Handles `EndTxn`: commits or aborts the open transaction. Repeating the
/// request that completed the last transaction succeeds again (a retry).
pub fn end_txn(
    m: &TxnMetadata,
    producer_id: ProducerId,
    epoch: i16,
    kind: ControlType,
    now: Timestamp,
) -> Result<Vec<Step>, TxnErrorKind> {
    check_producer(m, producer_id, epoch)?;
    match (m.status, kind) {
        (TxnStatus::Ongoing, _) => Ok(complete(m, kind, now)),
        (TxnStatus::Empty, _)
        | (TxnStatus::CompleteCommit, ControlType::Commit)
        | (TxnStatus::CompleteAbort, ControlType::Abort) => Ok(Vec::new()),
        (TxnStatus::PrepareCommit | TxnStatus::PrepareAbort, _) => Err(TxnErrorKind::ConcurrentTransactions),
        (status, kind) => Err(TxnErrorKind::InvalidTxnState(format!(
            "cannot {} a transaction in state {status}",
            if kind == ControlType::Commit { "commit" } else { "abort" }
        ))),
    }
}

/// Time passing: a transaction open longer than its timeout is aborted,
/// with the epoch bumped so that its producer is fenced (as Kafka does).
pub fn expire(m: &TxnMetadata, now: Timestamp, allocate: &mut dyn FnMut() -> ProducerId) -> Option<Vec<Step>> {
    if m.status != TxnStatus::Ongoing || now <= m.start_ms.saturating_add(i64::from(m.timeout_ms)) {
        return None;
    }
    let (producer_id, producer_epoch) = bump(m, allocate);
    if producer_id != m.producer_id {
        // The epoch is exhausted: abort at the current one; the producer's
        // next request is fenced by the new producer id its successor gets.
        return Some(complete(m, ControlType::Abort, now));
    }
    Some(complete(&TxnMetadata { producer_epoch, ..m.clone() }, ControlType::Abort, now))
}

/// After a restart: finishes a transaction that was committing or aborting.
pub fn resume(m: &TxnMetadata, now: Timestamp) -> Vec<Step> {
    match m.status {
        TxnStatus::PrepareCommit => complete(m, ControlType::Commit, now).split_off(1),
        TxnStatus::PrepareAbort => complete(m, ControlType::Abort, now).split_off(1),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator() -> impl FnMut() -> ProducerId {
        let mut next = 100;
        move || {
            next += 1;
            next
        }
    }

    fn last(steps: &[Step]) -> TxnMetadata {
        steps
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Persist(m) => Some(m.clone()),
                Step::WriteMarkers { .. } => None,
            })
            .expect("a persisted state")
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("out", p)
    }

    #[test]
    fn a_transaction_commits_through_prepare_and_complete() {
        let mut alloc = allocator();
        let m = last(&init_producer_id(None, "t", 60_000, 0, &mut alloc).expect("init"));
        assert_eq!((m.producer_id, m.producer_epoch, m.status), (101, 0, TxnStatus::Empty));
        let m = last(&add_partitions(&m, 101, 0, &[tp(0), tp(1)], 5).expect("add"));
        assert_eq!((m.status, m.start_ms, m.partitions.len()), (TxnStatus::Ongoing, 5, 2));
        assert!(add_partitions(&m, 101, 0, &[tp(1)], 6).expect("add again").is_empty());
        let steps = end_txn(&m, 101, 0, ControlType::Commit, 7).expect("commit");
        assert!(matches!(&steps[0], Step::Persist(p) if p.status == TxnStatus::PrepareCommit));
        assert!(
            matches!(&steps[1], Step::WriteMarkers { kind: ControlType::Commit, partitions, .. } if partitions.len() == 2)
        );
        let m = last(&steps);
        assert_eq!((m.status, m.partitions.len()), (TxnStatus::CompleteCommit, 0));
        assert!(end_txn(&m, 101, 0, ControlType::Commit, 8).expect("a retried commit").is_empty());
        assert!(matches!(end_txn(&m, 101, 0, ControlType::Abort, 8), Err(TxnErrorKind::InvalidTxnState(_))));
    }

    #[test]
    fn a_new_instance_fences_the_old_one_and_aborts_its_transaction() {
        let mut alloc = allocator();
        let m = last(&init_producer_id(None, "t", 60_000, 0, &mut alloc).expect("init"));
        let m = last(&add_partitions(&m, 101, 0, &[tp(0)], 1).expect("add"));
        let steps = init_producer_id(Some(&m), "t", 60_000, 2, &mut alloc).expect("re-init");
        let markers: Vec<_> = steps.iter().filter(|s| matches!(s, Step::WriteMarkers { .. })).collect();
        assert_eq!(
            markers,
            [&Step::WriteMarkers {
                producer_id: 101,
                producer_epoch: 1,
                kind: ControlType::Abort,
                partitions: vec![tp(0)]
            }],
            "the abort markers carry the bumped epoch, fencing the old instance"
        );
        let m = last(&steps);
        assert_eq!((m.producer_id, m.producer_epoch, m.status), (101, 2, TxnStatus::Empty));
        assert_eq!(add_partitions(&m, 101, 0, &[tp(0)], 3), Err(TxnErrorKind::ProducerFenced { epoch: 0, current: 2 }));
        assert_eq!(end_txn(&m, 7, 2, ControlType::Commit, 3), Err(TxnErrorKind::InvalidProducerIdMapping));
    }

    #[test]
    fn an_expired_transaction_is_aborted_with_a_bumped_epoch() {
        let mut alloc = allocator();
        let m = last(&init_producer_id(None, "t", 1_000, 0, &mut alloc).expect("init"));
        let m = last(&add_partitions(&m, 101, 0, &[tp(0)], 10).expect("add"));
        assert!(expire(&m, 1_010, &mut alloc).is_none(), "not yet");
        let steps = expire(&m, 1_011, &mut alloc).expect("expired");
        let m = last(&steps);
        assert_eq!((m.producer_epoch, m.status), (1, TxnStatus::CompleteAbort));
        assert!(matches!(end_txn(&m, 101, 0, ControlType::Commit, 1_012), Err(TxnErrorKind::ProducerFenced { .. })));
    }

    #[test]
    fn the_epoch_overflows_into_a_new_producer_id() {
        let mut alloc = allocator();
        let m = last(&init_producer_id(None, "t", 1_000, 0, &mut alloc).expect("init"));
        let m = TxnMetadata { producer_epoch: i16::MAX - 1, ..m };
        let m = last(&init_producer_id(Some(&m), "t", 1_000, 1, &mut alloc).expect("re-init"));
        assert_eq!((m.producer_id, m.producer_epoch), (102, 0));
    }

    #[test]
    fn a_prepared_transaction_is_completed_after_a_restart() {
        let mut alloc = allocator();
        let m = last(&init_producer_id(None, "t", 1_000, 0, &mut alloc).expect("init"));
        let m = last(&add_partitions(&m, 101, 0, &[tp(0)], 1).expect("add"));
        let Step::Persist(prepared) = &end_txn(&m, 101, 0, ControlType::Commit, 2).expect("commit")[0] else {
            panic!("the first step persists the prepare state")
        };
        let steps = resume(prepared, 3);
        assert!(matches!(&steps[0], Step::WriteMarkers { kind: ControlType::Commit, .. }));
        assert_eq!(last(&steps).status, TxnStatus::CompleteCommit);
        assert!(matches!(
            init_producer_id(Some(&m), "t", 0, 4, &mut alloc),
            Err(TxnErrorKind::InvalidTransactionTimeout(0))
        ));
    }
}
