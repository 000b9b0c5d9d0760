//! The admin tokens in force, reloaded from the admin token file when it changes (checked every
//! second) or on SIGHUP, without a restart. A file that is refused (weak token, bad line, wrong
//! mode) never replaces the set in force: the error is logged and reported by `/health` until
//! a reload succeeds. Logs name admins, never tokens.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::admin_tokens::{AdminTokenError, AdminTokens};

/// What identifies one version of the file without reading it: inode, size and modification
/// time (an atomic replacement changes the inode, an edit in place the size or time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    size: u64,
    modified_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        size: meta.size(),
        modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

/// The admin tokens in force and the file they come from.
pub(crate) struct AdminTokenSet {
    path: PathBuf,
    current: RwLock<Arc<AdminTokens>>,
    seen: Mutex<Option<Stamp>>,
    last_error: Mutex<Option<String>>,
}

// The tokens themselves are never printed.
impl std::fmt::Debug for AdminTokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTokenSet")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AdminTokenSet {
    /// The set read at start.
    pub(crate) fn new(tokens: AdminTokens) -> Self {
        let path = tokens.path().to_path_buf();
        Self {
            seen: Mutex::new(stamp(&path)),
            path,
            current: RwLock::new(Arc::new(tokens)),
            last_error: Mutex::new(None),
        }
    }

    /// The admin name a token belongs to.
    pub(crate) fn name_for(&self, token: &str) -> Option<String> {
        self.tokens().name_for(token).map(str::to_string)
    }

    /// The admin name of the token whose hash is `hash`, in the file as it is now.
    pub(crate) fn name_for_hash(&self, hash: &str) -> Option<String> {
        self.tokens().name_for_hash(hash).map(str::to_string)
    }

    /// Every admin's name.
    pub(crate) fn names(&self) -> BTreeSet<String> {
        self.tokens().names()
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Why the last reload was refused, if the last attempt failed.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reloads the file if it changed since it was last read.
    pub(crate) fn reload_if_changed(&self) {
        let now = stamp(&self.path);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return;
            }
            *seen = now;
        }
        self.reload("file change");
    }

    /// Reads the file again and, if it is accepted, puts it in force; logs what changed
    /// (names only). A refused file keeps the set in force.
    pub(crate) fn reload(&self, trigger: &str) {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = stamp(&self.path);
        let result = AdminTokens::load(&self.path);
        let mut last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(tokens) => {
                let before = self.names();
                let after = tokens.names();
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
                *last_error = None;
                let added: Vec<&String> = after.difference(&before).collect();
                let removed: Vec<&String> = before.difference(&after).collect();
                tracing::info!(
                    admin_token_file = %self.path.display(),
                    trigger,
                    admins = ?after,
                    added = ?added,
                    removed = ?removed,
                    "admin token file reloaded"
                );
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    trigger,
                    kept = ?self.names(),
                    "admin token file refused; the admins in force stay"
                );
                *last_error = Some(e.to_string());
            }
        }
    }

    fn tokens(&self) -> Arc<AdminTokens> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Loads the admin token file at start, creating it if missing.
pub(crate) fn load_at_start(path: &Path) -> Result<AdminTokenSet, AdminTokenError> {
    Ok(AdminTokenSet::new(AdminTokens::load_or_create(path)?))
}
