//! The transaction coordinator of the embedded log: runs the
//! [`state`](super::state) machine for each transactional id and carries
//! out its steps — durable writes to `__transaction_state`, markers into
//! the partitions, completion of transactional offset commits.
//!
//! The coordinator's writes are synchronous (each returns once fsynced) and
//! serialised by one lock: ending a transaction is a handful of small
//! writes, and the maintenance thread, which aborts expired transactions,
//! runs outside any async runtime.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::TxnErrorKind;
use super::log_format;
use super::state::{self, Step, TxnMetadata};
use crate::config::{CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::record::{ControlType, ProducerStamp, Record, decode_records, encode_batch};
use crate::types::{ProducerId, TopicPartition, now_ms};

/// The coordinator's state, held by the log.
#[derive(Debug, Default)]
pub(crate) struct TxnsState {
    txns: Mutex<BTreeMap<String, TxnMetadata>>,
}

impl TxnsState {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, TxnMetadata>> {
        self.txns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rebuilds the state from `__transaction_state` and completes the
    /// transactions a crash left committing or aborting.
    pub(crate) fn load(&self, log: &Log) -> Result<()> {
        if !log.topic_exists(TRANSACTION_STATE_TOPIC) {
            return Ok(());
        }
        let mut txns = self.lock();
        for p in 0..log.partition_count(TRANSACTION_STATE_TOPIC)? {
            let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, p);
            let (mut offset, hw, _) = log.offsets(&tp)?;
            while offset < hw {
                let fetched = log.fetch(&tp, offset, 1 << 20)?;
                let from = offset;
                offset = fetched.records.next_offset;
                let records = decode_records(&tp.topic, p, fetched.records.bytes, from)
                    .map_err(|reason| Error::InvalidRecord { tp: tp.clone(), reason })?;
                for r in records {
                    let Some(id) = r.key.as_ref().and_then(log_format::decode_key) else { continue };
                    match r.value.as_ref().and_then(|v| log_format::decode_value(&id, v)) {
                        Some(m) => txns.insert(id, m),
                        None => txns.remove(&id),
                    };
                }
                if offset <= from {
                    break;
                }
            }
        }
        let coordinator = TransactionCoordinator::new(log.clone());
        let now = now_ms();
        let unfinished: Vec<TxnMetadata> =
            txns.values().filter(|m| !state::resume(m, now).is_empty()).cloned().collect();
        for m in unfinished {
            tracing::info!(transactional_id = %m.transactional_id, status = %m.status, "completing a transaction after a restart");
            coordinator.execute(&mut txns, state::resume(&m, now))?;
        }
        Ok(())
    }
}

/// The embedded transaction coordinator: a handle on the log's transactions.
#[derive(Debug, Clone)]
pub struct TransactionCoordinator {
    log: Log,
}

impl TransactionCoordinator {
    /// The coordinator of a log.
    pub fn new(log: Log) -> Self {
        Self { log }
    }

    fn error(transactional_id: &str, kind: TxnErrorKind) -> Error {
        Error::Transaction { transactional_id: transactional_id.to_owned(), kind }
    }

    /// `InitProducerId` for a transactional producer: returns its producer
    /// id and epoch, fencing any older instance with the same id and
    /// aborting (or completing) what that one left in flight.
    pub fn init_producer_id(&self, transactional_id: &str, timeout_ms: i64) -> Result<(ProducerId, i16)> {
        if transactional_id.is_empty() {
            return Err(Error::InvalidState("transactional.id must not be empty".into()));
        }
        self.log.ensure_internal_topic(TRANSACTION_STATE_TOPIC)?;
        let mut txns = self.log.txns_state().lock();
        let mut allocated = Ok(());
        let steps = {
            let log = &self.log;
            let mut allocate = || {
                log.allocate_producer_id().unwrap_or_else(|e| {
                    allocated = Err(e);
                    -1
                })
            };
            state::init_producer_id(txns.get(transactional_id), transactional_id, timeout_ms, now_ms(), &mut allocate)
                .map_err(|k| Self::error(transactional_id, k))?
        };
        allocated?;
        self.execute(&mut txns, steps)?;
        let m = &txns[transactional_id];
        tracing::debug!(
            transactional_id,
            producer_id = m.producer_id,
            epoch = m.producer_epoch,
            "initialised a transactional producer"
        );
        Ok((m.producer_id, m.producer_epoch))
    }

    /// `AddPartitionsToTxn`: registers partitions the producer's current
    /// transaction writes to (opening the transaction if needed).
    pub fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: ProducerId,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<()> {
        let mut txns = self.log.txns_state().lock();
        let m = Self::current(&txns, transactional_id)?;
        let steps = state::add_partitions(m, producer_id, epoch, partitions, now_ms())
            .map_err(|k| Self::error(transactional_id, k))?;
        self.execute(&mut txns, steps)
    }

    /// `AddOffsetsToTxn`: registers the group's `__consumer_offsets`
    /// partition, so that offsets committed in the transaction
    /// ([`crate::group::GroupCoordinator::txn_offset_commit`]) complete with it.
    pub fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: ProducerId,
        epoch: i16,
        group_id: &str,
    ) -> Result<()> {
        let partition = self.log.group_coordinator().offsets_partition(group_id)?;
        self.add_partitions(
            transactional_id,
            producer_id,
            epoch,
            &[TopicPartition::new(CONSUMER_OFFSETS_TOPIC, partition)],
        )
    }

    /// `EndTxn`: commits or aborts the current transaction; returns once
    /// every marker is durable.
    pub fn end_txn(&self, transactional_id: &str, producer_id: ProducerId, epoch: i16, commit: bool) -> Result<()> {
        let mut txns = self.log.txns_state().lock();
        let m = Self::current(&txns, transactional_id)?;
        let kind = if commit { ControlType::Commit } else { ControlType::Abort };
        let steps =
            state::end_txn(m, producer_id, epoch, kind, now_ms()).map_err(|k| Self::error(transactional_id, k))?;
        self.execute(&mut txns, steps)
    }

    /// Aborts every transaction open longer than its timeout (fencing its
    /// producer). Returns how many.
    pub fn abort_expired(&self) -> Result<usize> {
        let mut txns = self.log.txns_state().lock();
        let now = now_ms();
        let log = &self.log;
        let mut allocate = || log.allocate_producer_id().unwrap_or(-1);
        let expired: Vec<Vec<Step>> = txns.values().filter_map(|m| state::expire(m, now, &mut allocate)).collect();
        let n = expired.len();
        for steps in expired {
            if let Some(Step::Persist(m)) = steps.first() {
                tracing::warn!(transactional_id = %m.transactional_id, producer_id = m.producer_id, "aborting a transaction open past transaction.timeout.ms");
            }
            self.execute(&mut txns, steps)?;
        }
        Ok(n)
    }

    /// The state of a transactional id.
    pub fn describe(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.log.txns_state().lock().get(transactional_id).cloned()
    }

    /// Every transactional id's state.
    pub fn list(&self) -> Vec<TxnMetadata> {
        self.log.txns_state().lock().values().cloned().collect()
    }

    fn current<'a>(txns: &'a BTreeMap<String, TxnMetadata>, transactional_id: &str) -> Result<&'a TxnMetadata> {
        txns.get(transactional_id).ok_or_else(|| Self::error(transactional_id, TxnErrorKind::InvalidProducerIdMapping))
    }

    /// Carries out steps in order; a failed step leaves the last persisted
    /// state in force, to be resumed.
    fn execute(&self, txns: &mut BTreeMap<String, TxnMetadata>, steps: Vec<Step>) -> Result<()> {
        for step in steps {
            match step {
                Step::Persist(m) => {
                    let record = Record {
                        key: Some(log_format::encode_key(&m.transactional_id)),
                        value: Some(log_format::encode_value(&m)),
                        headers: Vec::new(),
                        timestamp: Some(m.last_update_ms),
                    };
                    let n = self.log.partition_count(TRANSACTION_STATE_TOPIC)?;
                    let partition = crate::group::coordinator::java_string_hash(&m.transactional_id)
                        .unsigned_abs()
                        .rem_euclid(n.unsigned_abs()) as i32;
                    let batch = encode_batch(&[record], ProducerStamp::NONE, now_ms());
                    self.log.append_blocking(&TopicPartition::new(TRANSACTION_STATE_TOPIC, partition), batch)?;
                    txns.insert(m.transactional_id.clone(), m);
                }
                Step::WriteMarkers { producer_id, producer_epoch, kind, partitions } => {
                    for tp in &partitions {
                        match self.log.append_marker_blocking(tp, kind, producer_id, producer_epoch) {
                            Ok(_) => {}
                            Err(Error::UnknownTopic(_) | Error::UnknownPartition { .. }) => {
                                tracing::warn!(partition = %tp, "a transaction's partition is gone; no marker written");
                            }
                            Err(e) => return Err(e),
                        }
                        if tp.topic == CONSUMER_OFFSETS_TOPIC {
                            self.log.groups_state().complete_txn(producer_id, kind == ControlType::Commit);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
