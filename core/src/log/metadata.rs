//! `meta.json`: the topics of a data directory and their configuration
//! overrides, plus the next block of producer ids.
//!
//! Written whole with [`Storage::write_atomic`] after every change, before
//! the change's files are created or after they are removed, so that a
//! crash leaves directories the metadata does not name (removed on open),
//! never metadata naming partitions that do not exist.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Storage;

/// Name of the metadata file.
pub(crate) const META_FILE: &str = "meta.json";

/// One topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopicMeta {
    /// Partition count.
    pub(crate) partitions: i32,
    /// Non-default configuration, by Kafka key.
    #[serde(default)]
    pub(crate) config: BTreeMap<String, String>,
}

/// The whole metadata file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metadata {
    /// Format version.
    pub(crate) version: u32,
    /// Topics by name.
    pub(crate) topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this were handed out (possibly before a crash).
    pub(crate) producer_id_block_end: i64,
}

impl Metadata {
    /// Reads the metadata, or an empty one if there is no file yet.
    pub(crate) fn load(storage: &dyn Storage, dir: &Path) -> Result<Self> {
        let path = dir.join(META_FILE);
        match storage.read_all(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::BadMetadata { path, reason: format!("not valid metadata JSON: {e}") }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self { version: 1, ..Self::default() }),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes the metadata atomically and durably.
    pub(crate) fn store(&self, storage: &dyn Storage, dir: &Path) -> Result<()> {
        let path = dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::BadMetadata { path: path.clone(), reason: format!("cannot encode metadata: {e}") })?;
        storage.write_atomic(&path, &json).map_err(|e| Error::io(path, e))
    }
}
