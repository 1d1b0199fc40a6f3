//! Checkpoint files of the data directory, in Kafka's text format:
//!
//! ```text
//! 0                 version
//! 2                 number of entries
//! orders 0 1500     topic partition offset
//! orders 1 1432
//! ```
//!
//! `recovery-point-offset-checkpoint` holds, per partition, the offset below
//! which everything is fsynced; recovery after a crash starts there. It is
//! written with [`Storage::write_atomic`] (temporary file, fsync, rename,
//! directory fsync), so a crash leaves the old or the new one, never a mix.

use std::collections::BTreeMap;
use std::path::Path;

use super::io::Storage;
use crate::error::{Error, Result};
use crate::types::{Offset, TopicPartition};

/// Name of the recovery-point checkpoint file.
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";

/// Reads a checkpoint file; an absent file is empty.
pub fn read(storage: &dyn Storage, path: &Path) -> Result<BTreeMap<TopicPartition, Offset>> {
    let bytes = match storage.read_all(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let bad = |reason: String| Error::BadMetadata { path: path.to_path_buf(), reason };
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    let mut lines = text.lines();
    match lines.next() {
        Some("0") => {}
        other => return Err(bad(format!("unknown version {other:?}"))),
    }
    let count: usize =
        lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| bad("missing entry count".into()))?;
    let mut out = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let mut parts = line.rsplitn(3, ' ');
        let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("line {} is not `topic partition offset`", i + 3)));
        };
        let (Ok(offset), Ok(partition)) = (offset.parse(), partition.parse()) else {
            return Err(bad(format!("line {} has a non-numeric partition or offset", i + 3)));
        };
        out.insert(TopicPartition::new(topic, partition), offset);
    }
    if out.len() != count {
        return Err(bad(format!("{count} entries announced, {} found", out.len())));
    }
    Ok(out)
}

/// Writes a checkpoint file atomically and durably.
pub fn write(storage: &dyn Storage, path: &Path, entries: &BTreeMap<TopicPartition, Offset>) -> Result<()> {
    let mut text = format!("0\n{}\n", entries.len());
    for (tp, offset) in entries {
        text.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, offset));
    }
    storage.write_atomic(path, text.as_bytes()).map_err(|e| Error::io(path, e))
}
