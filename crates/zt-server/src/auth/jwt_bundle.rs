//! The JWT-SVID trust bundle in force, reloaded from its JWKS file when it changes (checked
//! every second) or on SIGHUP, without a restart: SPIFFE trust bundles rotate their keys, and a
//! key removed from the bundle (retired, or compromised) must stop verifying tokens. A bundle
//! that is refused never replaces the one in force: the error is logged and reported by
//! `/health` until a reload succeeds; an explicitly empty bundle (`"keys": []`) is taken, and
//! trusts no key (how the last key is withdrawn). A new bundle starts with an empty cache of
//! verified tokens, so a token verified by a removed key is refused at its next use.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::jwt_svid::{JwksError, JwtSvidVerifier};
use crate::reloadable::{Reloadable, ReloadedSetting};

/// The verifier of the bundle in force, and the file it comes from.
#[derive(Debug)]
pub(crate) struct JwtSvidBundle {
    file: Reloadable<JwtSvidVerifier>,
    audience: String,
    max_lifetime_seconds: u64,
}

impl JwtSvidBundle {
    /// Reads the bundle at `path` at start; tokens must carry `audience` in `aud`.
    #[cfg(test)]
    pub(crate) fn load(path: &Path, audience: &str) -> Result<Self, JwksError> {
        Self::load_with_max_lifetime(path, audience, super::jwt_svid::MAX_LIFETIME_SECONDS)
    }

    /// Reads the bundle at `path` at start; tokens must carry `audience` in `aud` and be valid
    /// for at most `max_lifetime_seconds` when first seen.
    pub(crate) fn load_with_max_lifetime(
        path: &Path,
        audience: &str,
        max_lifetime_seconds: u64,
    ) -> Result<Self, JwksError> {
        let verifier =
            JwtSvidVerifier::load(path, audience)?.with_max_lifetime(max_lifetime_seconds);
        Ok(Self {
            file: Reloadable::new(path.to_path_buf(), verifier),
            audience: audience.to_string(),
            max_lifetime_seconds,
        })
    }

    /// The verifier in force.
    pub(crate) fn verifier(&self) -> Arc<JwtSvidVerifier> {
        self.file.current()
    }
}

impl ReloadedSetting for JwtSvidBundle {
    type Value = JwtSvidVerifier;

    fn file(&self) -> &Reloadable<JwtSvidVerifier> {
        &self.file
    }

    /// Reads the bundle again and, if it is accepted, puts it in force; logs the key ids
    /// added and removed.
    fn reload(&self, trigger: &str) {
        match self.file.reload(|path| {
            JwtSvidVerifier::reload(path, &self.audience)
                .map(|v| v.with_max_lifetime(self.max_lifetime_seconds))
        }) {
            Ok((_, now)) if now.key_count() == 0 => tracing::warn!(
                jwks = %self.path().display(),
                trigger,
                "jwt-svid trust bundle reloaded empty: every jwt-svid is refused"
            ),
            Ok((before, now)) => {
                let (before, after): (BTreeSet<&str>, BTreeSet<&str>) =
                    (before.key_ids().collect(), now.key_ids().collect());
                tracing::info!(
                    jwks = %self.path().display(),
                    trigger,
                    added = ?after.difference(&before).collect::<Vec<_>>(),
                    removed = ?before.difference(&after).collect::<Vec<_>>(),
                    "jwt-svid trust bundle reloaded"
                );
            }
            Err(error) => tracing::error!(
                error,
                trigger,
                "jwt-svid trust bundle refused; the keys in force stay"
            ),
        }
    }
}
