//! Model-based property tests of the storage against crashes (being written).
