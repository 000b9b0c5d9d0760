//! One writer per data directory: two servers on one log would fork its chain.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// The lock file's name inside the data directory.
pub const LOCK_FILE_NAME: &str = "zt.lock";

/// Holds the data directory's exclusive lock until dropped (the OS releases it if the process
/// dies, so a `kill -9` leaves no stale lock behind).
pub struct DataDirLock {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "data directory `{0}` is in use by another zt server (lock file `{0}/{LOCK_FILE_NAME}`)"
    )]
    InUse(String),
    /// The lock file could not be opened or locked.
    #[error("cannot lock data directory `{0}`: {1}")]
    Io(String, std::io::Error),
}

impl DataDirLock {
    /// Takes the lock without waiting.
    pub fn acquire(data_dir: &Path) -> Result<Self, LockError> {
        let shown = data_dir.display().to_string();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(LOCK_FILE_NAME))
            .map_err(|e| LockError::Io(shown.clone(), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::InUse(shown)),
            Err(TryLockError::Error(e)) => Err(LockError::Io(shown, e)),
        }
    }
}
