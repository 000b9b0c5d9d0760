//! Workload identity settings: which SPIFFE IDs are admins, and the JWT-SVID verifier.
//!
//! They live in the server's state (`AppState::workload`), where the extractors find them. The
//! default settings fail closed: no SPIFFE ID is an admin and no JWT-SVID is accepted.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::jwt_bundle::JwtSvidBundle;
use super::jwt_svid::JwtSvidVerifier;
use super::spiffe::SpiffeId;

/// Workload identity settings.
#[derive(Debug, Default)]
pub(crate) struct WorkloadAuth {
    admin_spiffe_ids: BTreeSet<SpiffeId>,
    jwt_svid: Option<Arc<JwtSvidBundle>>,
    /// The trust domains whose IDs are callers; empty: any the bundles' authorities name.
    trust_domains: BTreeSet<String>,
}

impl WorkloadAuth {
    /// Settings with these admin SPIFFE IDs and, if given, a JWT-SVID trust bundle.
    pub(crate) fn new(
        admin_spiffe_ids: impl IntoIterator<Item = SpiffeId>,
        jwt_svid: Option<JwtSvidBundle>,
        trust_domains: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            admin_spiffe_ids: admin_spiffe_ids.into_iter().collect(),
            jwt_svid: jwt_svid.map(Arc::new),
            trust_domains: trust_domains.into_iter().collect(),
        }
    }

    /// Whether `id` is of a trust domain this server trusts (any, when none is named).
    pub(crate) fn trusts(&self, id: &SpiffeId) -> bool {
        self.trust_domains.is_empty() || self.trust_domains.contains(id.trust_domain())
    }

    /// Whether `id` may use the admin routes.
    pub(crate) fn is_admin(&self, id: &SpiffeId) -> bool {
        self.admin_spiffe_ids.contains(id)
    }

    /// The admin SPIFFE IDs.
    pub(crate) fn admin_spiffe_ids(&self) -> impl Iterator<Item = &SpiffeId> {
        self.admin_spiffe_ids.iter()
    }

    /// The verifier of the JWT-SVID trust bundle in force, when `--jwt-svid-jwks` is set.
    pub(crate) fn jwt_svid(&self) -> Option<Arc<JwtSvidVerifier>> {
        self.jwt_svid.as_ref().map(|bundle| bundle.verifier())
    }

    /// The JWT-SVID trust bundle, for the file watcher and `/health`.
    pub(crate) fn jwt_bundle(&self) -> Option<Arc<JwtSvidBundle>> {
        self.jwt_svid.clone()
    }
}
