//! Single message transforms: the chain named by `transforms` (Kafka
//! Connect's keys: `transforms`, `transforms.<alias>.type`,
//! `transforms.<alias>.*`, `predicates`, `predicates.<alias>.*`).
//!
//! This build reads the keys and refuses any configured transform by
//! name, so that a config that asks for one is never run without it; the
//! transforms themselves (InsertField, ReplaceField, MaskField, ValueToKey,
//! ExtractField, Cast, TimestampConverter, RegexRouter, HoistField,
//! Flatten, Filter with predicates) land in this module next.

use std::collections::BTreeMap;

use crate::record::ConnectRecord;

/// One transform in a chain.
#[derive(Debug)]
pub struct TransformStage {
    /// The alias it was configured under.
    pub name: String,
}

impl TransformStage {
    /// Applies the transform; `Ok(None)` drops the record.
    pub fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        Ok(Some(record))
    }
}

/// The chain a config names, in order. Errors are `(key, reason)`.
pub fn build_transforms(config: &BTreeMap<String, String>) -> Result<Vec<TransformStage>, (String, String)> {
    let aliases = config.get("transforms").map(String::as_str).unwrap_or_default();
    match aliases.split(',').map(str::trim).find(|a| !a.is_empty()) {
        None => Ok(Vec::new()),
        Some(alias) => {
            let key = format!("transforms.{alias}.type");
            let kind = config.get(&key).map_or("(missing)", String::as_str);
            Err((
                key,
                format!("{kind:?}: single message transforms are not available in this build yet; remove `transforms`"),
            ))
        }
    }
}

/// Whether `key` belongs to the transform chain's configuration.
pub fn is_transform_key(key: &str) -> bool {
    key == "transforms" || key == "predicates" || key.starts_with("transforms.") || key.starts_with("predicates.")
}
