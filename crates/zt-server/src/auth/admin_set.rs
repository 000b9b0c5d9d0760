//! The admin tokens in force, reloaded from the admin token file when it changes (checked every
//! second) or on SIGHUP, without a restart ([`Reloadable`]). A file that is refused (weak
//! token, bad line, wrong mode) never replaces the set in force: the error is logged and
//! reported by `/health` until a reload succeeds. Logs name admins, never tokens.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::admin_tokens::{AdminTokenError, AdminTokens};
use crate::reloadable::{Reloadable, ReloadedSetting};

/// The admin tokens in force and the file they come from.
#[derive(Debug)]
pub(crate) struct AdminTokenSet {
    file: Reloadable<AdminTokens>,
}

impl AdminTokenSet {
    /// The set read at start.
    pub(crate) fn new(tokens: AdminTokens) -> Self {
        Self {
            file: Reloadable::new(tokens.path().to_path_buf(), tokens),
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

    fn tokens(&self) -> Arc<AdminTokens> {
        self.file.current()
    }
}

impl ReloadedSetting for AdminTokenSet {
    type Value = AdminTokens;

    fn file(&self) -> &Reloadable<AdminTokens> {
        &self.file
    }

    /// Reads the file again and, if it is accepted, puts it in force; logs what changed
    /// (names only). A refused file keeps the set in force.
    fn reload(&self, trigger: &str) {
        match self.file.reload(AdminTokens::load) {
            Ok((before, now)) => {
                let (before, after) = (before.names(), now.names());
                let added: Vec<&String> = after.difference(&before).collect();
                let removed: Vec<&String> = before.difference(&after).collect();
                tracing::info!(
                    admin_token_file = %self.path().display(),
                    trigger,
                    admins = ?after,
                    added = ?added,
                    removed = ?removed,
                    "admin token file reloaded"
                );
            }
            Err(error) => tracing::error!(
                error,
                trigger,
                kept = ?self.names(),
                "admin token file refused; the admins in force stay"
            ),
        }
    }
}

/// Loads the admin token file at start, creating it if missing.
pub(crate) fn load_at_start(path: &Path) -> Result<AdminTokenSet, AdminTokenError> {
    Ok(AdminTokenSet::new(AdminTokens::load_or_create(path)?))
}
