//! Workload identity settings: which SPIFFE IDs are admins, and the JWT-SVID verifier.
//!
//! They live in the server's state (`AppState::workload`), where the extractors find them. The
//! default settings fail closed: no SPIFFE ID is an admin and no JWT-SVID is accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::jwt_bundle::JwtSvidBundle;
use super::jwt_svid::{claimed_trust_domain, looks_like_jwt, JwtSvidError, JwtSvidVerifier};
use super::spiffe::SpiffeId;

/// Workload identity settings.
#[derive(Debug, Default)]
pub(crate) struct WorkloadAuth {
    admin_spiffe_ids: BTreeSet<SpiffeId>,
    jwt_svid: Option<Arc<JwtSvidBundle>>,
    /// The bundles of the trust domains that have their own (`--jwt-svid-jwks-for`): their
    /// keys alone name those domains' IDs, and name no other.
    jwt_by_domain: BTreeMap<String, Arc<JwtSvidBundle>>,
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
            jwt_by_domain: BTreeMap::new(),
            trust_domains: trust_domains.into_iter().collect(),
        }
    }

    /// These settings, with trust domains that have JWT-SVID bundles of their own.
    pub(crate) fn with_jwt_bundles_by_domain(
        mut self,
        bundles: impl IntoIterator<Item = (String, JwtSvidBundle)>,
    ) -> Self {
        self.jwt_by_domain = bundles
            .into_iter()
            .map(|(domain, bundle)| (domain, Arc::new(bundle)))
            .collect();
        self
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
    fn jwt_svid(&self) -> Option<Arc<JwtSvidVerifier>> {
        self.jwt_svid.as_ref().map(|bundle| bundle.verifier())
    }

    /// Whether `token` is to be checked as a JWT-SVID: JWT-SVIDs are accepted and it has the
    /// shape of a JWT (anything else is an opaque token).
    pub(crate) fn takes_jwt(&self, token: &str) -> bool {
        self.jwt_svid.is_some() && looks_like_jwt(token)
    }

    /// The SPIFFE ID `token` proves as a JWT-SVID, or why it proves none; `None` if it is not
    /// to be checked as one ([`Self::takes_jwt`]).
    ///
    /// The bundle is chosen by the trust domain the token claims in `sub`, as SPIFFE does:
    /// that domain's own bundle if it has one, else the general one; only that bundle's keys
    /// may verify it, and the verified ID must be of a domain that bundle speaks for. So one
    /// domain's key never names another domain's workloads, whatever key id it carries.
    pub(crate) fn verify_jwt(&self, token: &str) -> Option<Result<SpiffeId, JwtSvidError>> {
        if !self.takes_jwt(token) {
            return None;
        }
        // The claimed domain is read only when some domain has its own bundle: otherwise a
        // remembered token costs a hash, as before.
        let own = (!self.jwt_by_domain.is_empty())
            .then(|| claimed_trust_domain(token))
            .flatten()
            .and_then(|domain| {
                self.jwt_by_domain
                    .get_key_value(&domain)
                    .map(|(domain, bundle)| (domain.clone(), bundle.verifier()))
            });
        let verified = match own {
            Some((domain, verifier)) => verifier.verify(token).and_then(|id| {
                (id.trust_domain() == domain)
                    .then_some(id)
                    .ok_or(JwtSvidError::NotByItsDomain)
            }),
            None => self.jwt_svid()?.verify(token).and_then(|id| {
                (!self.jwt_by_domain.contains_key(id.trust_domain()))
                    .then_some(id)
                    .ok_or(JwtSvidError::NotByItsDomain)
            }),
        };
        Some(verified)
    }

    /// Every JWT-SVID trust bundle (the general one first) and the name `/health` reports
    /// its reload errors under, for the file watcher and `/health`.
    pub(crate) fn jwt_bundles(&self) -> Vec<(String, Arc<JwtSvidBundle>)> {
        let general = self
            .jwt_svid
            .iter()
            .map(|bundle| ("jwt_svid_jwks".to_string(), bundle.clone()));
        let by_domain = self
            .jwt_by_domain
            .iter()
            .map(|(domain, bundle)| (format!("jwt_svid_jwks_for.{domain}"), bundle.clone()));
        general.chain(by_domain).collect()
    }
}
