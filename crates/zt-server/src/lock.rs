//! One writer per data directory: two servers on one log would fork its chain.

use std::fs::{File, OpenOptions, Permissions, TryLockError};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The lock file's name inside the data directory.
pub(crate) const LOCK_FILE_NAME: &str = "zt.lock";

/// Holds the data directory's exclusive lock until dropped (the OS releases it if the process
/// dies, so a `kill -9` leaves no stale lock behind).
#[derive(Debug)]
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
        let path = data_dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LockError::Io(shown.clone(), e))?;
        // A lock file an older version created keeps its mode unless changed.
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(|e| LockError::Io(shown.clone(), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::InUse(shown)),
            Err(TryLockError::Error(e)) => Err(LockError::Io(shown, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_lock_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE_NAME);
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(mode(&path), 0o600);
        drop(lock);
        // One an older version created world-readable is made private.
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let _lock = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
