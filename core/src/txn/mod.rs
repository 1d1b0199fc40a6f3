//! Transactions: the transaction coordinator that lets a producer write to
//! many partitions (and commit consumed offsets) atomically.
//!
//! As Kafka defines them (KIP-98): a producer with a `transactional.id`
//! gets a producer id and an epoch from [`TransactionCoordinator::init_producer_id`];
//! a newer instance with the same id bumps the epoch, which fences the
//! older one everywhere (its writes and markers are refused) and aborts
//! what it left open. Each partition a transaction writes to is registered
//! with the coordinator first; committing or aborting writes a marker (a
//! control batch) into every one of them, which closes the transaction
//! there: `read_committed` readers see its records only after a commit
//! marker, and never after an abort marker.
//!
//! - [`state`]: the coordinator's decisions as a pure state machine:
//!   metadata and events in, the new metadata and what to write out.
//! - [`log_format`]: Kafka's key and value layout in `__transaction_state`.
//! - [`coordinator`]: runs the state machine on the log: persists each
//!   state in the compacted `__transaction_state` topic before acting on
//!   it, writes the markers, completes transactional offset commits, and
//!   aborts transactions open past their timeout.

pub mod coordinator;
pub mod log_format;
pub mod state;

pub use coordinator::TransactionCoordinator;
pub use state::{TxnMetadata, TxnStatus};

/// What went wrong in a transaction operation, with Kafka's error names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnErrorKind {
    /// A newer producer with the same `transactional.id` took over (or the
    /// coordinator aborted this one's transaction on timeout): this
    /// producer must be closed.
    ProducerFenced {
        /// The epoch this producer holds.
        epoch: i16,
        /// The coordinator's epoch for the id.
        current: i16,
    },
    /// The producer id does not belong to this `transactional.id`.
    InvalidProducerIdMapping,
    /// The operation does not fit the transaction's state.
    InvalidTxnState(String),
    /// The previous transaction is still completing: retry.
    ConcurrentTransactions,
    /// `transaction.timeout.ms` is out of range.
    InvalidTransactionTimeout(i64),
}

impl std::fmt::Display for TxnErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ProducerFenced { epoch, current } => write!(
                f,
                "the producer (epoch {epoch}) is fenced: another producer with the same transactional.id took over, or its transaction timed out (epoch {current}); close it and create a new one"
            ),
            Self::InvalidProducerIdMapping => {
                f.write_str("the producer id does not belong to this transactional.id; call init_transactions")
            }
            Self::InvalidTxnState(why) => f.write_str(why),
            Self::ConcurrentTransactions => f.write_str("the previous transaction is still completing; retry"),
            Self::InvalidTransactionTimeout(ms) => write!(
                f,
                "transaction.timeout.ms={ms} is out of range: it must be positive and at most transaction.max.timeout.ms ({})",
                state::MAX_TIMEOUT_MS
            ),
        }
    }
}
