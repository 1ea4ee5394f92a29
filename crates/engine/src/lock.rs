//! Advisory file locks that keep two writers off one directory, in this process or another.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub(crate) const LOCK_FILE: &str = ".lock";

/// How a directory is locked: exclusively by a writer, shared by read-only inspectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockMode {
    Exclusive,
    Shared,
}

/// Holds a lock on a directory until dropped. `flock` locks belong to the open file, so a
/// second open of the same directory fails even inside one process.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, or returns `busy(path)` if someone holds a conflicting one.
    pub fn acquire(
        dir: &Path,
        mode: LockMode,
        busy: impl FnOnce(PathBuf) -> Error,
    ) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .context("open lock file", &path)?;
        let attempt = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match attempt {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(busy(dir.to_owned())),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
        }
    }
}
