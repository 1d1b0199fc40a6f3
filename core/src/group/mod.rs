//! Consumer groups: membership (the Kafka group protocol as a state
//! machine), client-side assignors, and committed offsets.

pub mod assignor;
pub mod coordinator;
pub mod offsets;
pub mod protocol;
pub mod state;

pub use coordinator::{GroupCoordinator, GroupDescription, MemberDescription};
pub use offsets::OffsetAndMetadata;

/// What went wrong in a group operation, with Kafka's error names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupErrorKind {
    /// The member is not (or no longer) in the group: rejoin.
    UnknownMemberId(String),
    /// The member's generation is stale: a rebalance happened; rejoin.
    IllegalGeneration {
        /// The generation the member sent.
        got: i32,
        /// The group's generation.
        current: i32,
    },
    /// A rebalance is under way: rejoin.
    RebalanceInProgress,
    /// Members use assignors that have none in common.
    InconsistentProtocol,
    /// The group has active members, so the operation is refused.
    NotEmpty,
    /// The group does not exist.
    UnknownGroup,
}

impl std::fmt::Display for GroupErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownMemberId(m) => write!(f, "member {m} is not in the group (session expired or left); it must rejoin"),
            Self::IllegalGeneration { got, current } => {
                write!(f, "generation {got} is stale, the group is at generation {current}; the member must rejoin")
            }
            Self::RebalanceInProgress => f.write_str("a rebalance is in progress; the member must rejoin"),
            Self::InconsistentProtocol => {
                f.write_str("the members' partition assignors have none in common; configure the same partition.assignment.strategy")
            }
            Self::NotEmpty => f.write_str("the group has active members; stop its consumers first"),
            Self::UnknownGroup => f.write_str("no such group"),
        }
    }
}
