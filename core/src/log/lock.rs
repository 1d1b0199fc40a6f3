//! The data directory's lock: one process at a time.
//!
//! `<data-dir>/.lock` is locked with `flock` (through `std::fs::File::try_lock`)
//! for the life of the [`Log`](super::Log), and holds the owner's process id
//! so that a second process can say who has it. The kernel releases the lock
//! when the process dies, however it dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Name of the lock file.
pub(crate) const LOCK_FILE: &str = ".lock";

/// A held lock; released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir`, or says which process holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = match pid.trim() {
                    "" => "unknown".to_owned(),
                    p => p.to_owned(),
                };
                return Err(Error::DirLocked { dir: dir.to_path_buf(), pid });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        file.set_len(0).at(&path)?;
        file.seek(SeekFrom::Start(0)).at(&path)?;
        write!(file, "{}", std::process::id()).at(&path)?;
        Ok(Self { _file: file })
    }
}
