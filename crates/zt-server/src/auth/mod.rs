//! Authentication: who is calling, derived from the credential, never from the request body.
//!
//! - Agents (`POST /actions`) present `Authorization: Bearer <agent token>` (issued by
//!   `POST /agents`, rotated by `POST /agents/{actor}/token`), or a workload identity: a TLS
//!   client certificate (X.509-SVID) or a JWT-SVID bearer token. The actor of a workload
//!   identity is its full SPIFFE ID, e.g. `spiffe://example.org/agent/billing`, registered like
//!   any actor.
//! - Admins (registry, policy and audit-record routes) present an admin token from the admin
//!   token file, or a workload identity listed with `--admin-spiffe-id`. Any other
//!   authenticated caller (an agent token, a SPIFFE ID not listed) is refused (403) and audited.
//! - One request, one credential header: several `Authorization` headers are refused (401).
//! - One request, one caller: a verified client certificate and a bearer token on the same
//!   request must name the same caller, or the request is refused (401). A client certificate
//!   without exactly one SPIFFE ID proves nothing (the connection is still encrypted, and a bearer
//!   token on it works as usual).
//! - Under `--auth none` nobody is authenticated: the body's `actor` is trusted if registered,
//!   and every record says `authenticated: false`.

pub(crate) mod admin_set;
pub mod admin_token_file;
pub(crate) mod admin_tokens;
pub(crate) mod jwt_bundle;
pub(crate) mod jwt_svid;
pub(crate) mod spiffe;
pub(crate) mod tokens;
pub(crate) mod workload;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use zt_contract::RecordDraft;
use zt_listener::HeaderOnceError;

use crate::config::AuthMode;
use crate::error::ApiError;
use crate::state::{AppState, SharedState};
pub(crate) use admin_set::AdminTokenSet;
pub(crate) use admin_tokens::AdminTokens;
pub(crate) use spiffe::{PeerIdentity, SpiffeId, Unproven};
pub(crate) use workload::WorkloadAuth;

/// Name recorded for admin changes under `--auth none`.
pub(crate) const UNAUTHENTICATED_ADMIN: &str = "unauthenticated-admin";

/// The caller of an agent route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentCaller {
    /// Authenticated as this actor.
    Authenticated(Agent),
    /// `--auth none`: the body's actor is taken on trust.
    Unauthenticated,
}

/// An authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agent {
    /// The actor its credential names.
    pub(crate) actor: String,
    /// The credential, asked again just before the request's record is queued.
    pub(crate) credential: Credential,
}

/// The credential an agent was authenticated with, kept because a request can outlive it: its
/// body may take up to `--body-timeout` to arrive, its decision a while to evaluate, and a
/// token rotated or an agent removed meanwhile must not get a decision recorded after the
/// record that revoked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    /// The hash of the agent token it called with, if it did.
    token_sha256: Option<String>,
    /// The registry's generation when the token was found (see
    /// [`crate::registry::Registry::confirm`]); read at the decision for other credentials.
    generation: Option<u64>,
    /// The JWT-SVID it called with, if it did: verified again, so that it expires.
    jwt_svid: Option<Secret>,
    /// The client certificate's identity it called with, if that named it.
    certificate: Option<PeerIdentity>,
}

impl Credential {
    /// The hash of the agent token presented, if any.
    pub(crate) fn token_sha256(&self) -> Option<&str> {
        self.token_sha256.as_deref()
    }

    /// The registry generation the agent token was checked at, if one was presented.
    pub(crate) fn token_generation(&self) -> Option<u64> {
        self.generation
    }

    /// Whether the JWT-SVID and the client certificate (whichever it presented) still prove
    /// `actor`: the JWT-SVID verifies again (not expired, its key still trusted), the
    /// certificate has not expired nor lost its authority. The agent token is confirmed by
    /// the registry, under its lock ([`crate::registry::Registry::confirm`]).
    pub(crate) fn still_proves(&self, actor: &str, state: &AppState) -> bool {
        if let Some(peer) = &self.certificate {
            let still = in_force(peer, state)
                .is_some_and(|now| now.spiffe_id.as_str() == actor && !now.expired());
            if !still {
                return false;
            }
        }
        match &self.jwt_svid {
            Some(Secret(jwt)) => state.workload.verify_jwt(jwt).is_some_and(|verified| {
                verified.is_ok_and(|id| id.as_str() == actor && state.workload.trusts(&id))
            }),
            None => true,
        }
    }
}

/// The refusal of a request whose credential was revoked while it was read or decided.
pub(crate) const REVOKED_IN_FLIGHT: ApiError = ApiError::Unauthenticated(
    "the credential was revoked (token rotated, agent removed, or no longer valid) while this \
     request was in flight",
);

/// The caller of an admin route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminCaller {
    /// The admin's name (from the admin token file), or [`UNAUTHENTICATED_ADMIN`].
    pub name: String,
    /// False under `--auth none`.
    pub authenticated: bool,
    /// The hash of the admin token it called with, if it did: a long-lived answer (the record
    /// stream) asks again whether that token still names this admin.
    token_sha256: Option<String>,
    /// The JWT-SVID it called with, if it did: asked again likewise, so that it expires.
    jwt_svid: Option<Secret>,
    /// The client certificate's identity it called with, if that made it this admin.
    certificate: Option<PeerIdentity>,
}

/// A credential kept for asking again, never shown.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl AdminCaller {
    /// Whether the credential this caller was authenticated with still makes it this admin:
    /// an admin token removed or rotated since (`zt admin remove`, a new file) no longer does.
    /// A JWT-SVID must still verify, and a client certificate must not have expired nor lost
    /// its authority.
    pub(crate) fn still_admin(&self, state: &SharedState) -> bool {
        if let Some(peer) = &self.certificate {
            // Expired, or no longer vouched for by the authorities in force.
            let still = in_force(peer, state)
                .is_some_and(|now| now.spiffe_id.as_str() == self.name && !now.expired());
            if !still {
                return false;
            }
        }
        if let Some(Secret(jwt)) = &self.jwt_svid {
            return state.workload.verify_jwt(jwt).is_some_and(|verified| {
                verified.is_ok_and(|id| id.as_str() == self.name && state.workload.is_admin(&id))
            });
        }
        match (&self.token_sha256, &state.admin_tokens) {
            (Some(hash), Some(admins)) => admins.name_for_hash(hash).as_deref() == Some(&self.name),
            (Some(_), None) => false,
            (None, _) => true,
        }
    }
}

/// The bearer token of the request, if it has an `Authorization` header. Several
/// `Authorization` headers are refused: which one counts would be a guess, and a proxy and the
/// server might guess differently. A header that is not `Bearer <token>` is refused with a hint
/// rather than ignored: the caller meant to present a credential, and a common slip (no
/// `Bearer `, a pasted `NAME TOKEN` line of the admin token file) deserves a message that says
/// so.
fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let text = match zt_listener::header_once(&parts.headers, AUTHORIZATION) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(None),
        Err(HeaderOnceError::Repeated) => {
            return Err(ApiError::Unauthenticated(
                "more than one authorization header",
            ))
        }
        Err(HeaderOnceError::NotText) => {
            return Err(ApiError::Unauthenticated(
                "the authorization header is not valid text",
            ))
        }
    };
    match tokens::bearer(text) {
        Some(token) if token.contains(char::is_whitespace) => Err(ApiError::Unauthenticated(
            "the bearer token contains a space: send only the token, not the `NAME TOKEN` line \
             of the admin token file",
        )),
        Some(token) => Ok(Some(token)),
        None => Err(ApiError::Unauthenticated(
            "the authorization header must be `Bearer <token>`",
        )),
    }
}

/// Refuses an admin token (by its [`tokens::token_hash`]) on an agent route, saying so (it is
/// valid, but names no agent).
fn not_an_admin_token(state: &SharedState, token_sha256: &str) -> Result<(), ApiError> {
    match state
        .admin_tokens
        .as_ref()
        .and_then(|a| a.name_for_hash(token_sha256))
    {
        Some(_) => Err(ApiError::Unauthenticated(
            "this is an admin credential, and this route takes an agent's: the token \
             `POST /agents` issued, or a workload identity",
        )),
        None => Ok(()),
    }
}

/// Whether the request carries an admin's credential (an admin token, or the certificate of an
/// admin SPIFFE ID), or authentication is off: a quiet check for what only admins may read in
/// an otherwise public answer. Nothing is recorded or rate limited, as nothing is refused.
pub(crate) fn is_admin_request(parts: &Parts, state: &SharedState) -> bool {
    let Some(admins) = &state.admin_tokens else {
        return true;
    };
    let by_token =
        matches!(bearer_token(parts), Ok(Some(token)) if admins.name_for(token).is_some());
    let by_certificate = connection_peer(parts, state)
        .filter(|peer| !peer.expired())
        .is_some_and(|peer| {
            state.workload.trusts(&peer.spiffe_id) && state.workload.is_admin(&peer.spiffe_id)
        });
    by_token || by_certificate
}

/// The identity of the client certificate of the request's connection, if any, as the client
/// authorities in force see it ([`in_force`]).
fn connection_peer(parts: &Parts, state: &SharedState) -> Option<PeerIdentity> {
    in_force(parts.extensions.get::<PeerIdentity>()?, state)
}

/// `peer` as the client authorities in force see it: verified again if they changed since it
/// was verified, so that a CA removed from a bundle names nothing more, even on a connection
/// opened before the change.
fn in_force(peer: &PeerIdentity, state: &AppState) -> Option<PeerIdentity> {
    let Some(tls) = &state.tls else {
        return Some(peer.clone());
    };
    let current = tls.current();
    if current.authorities.generation() == peer.generation {
        return Some(peer.clone());
    }
    current.authorities.identify(&peer.presented)
}

/// The SPIFFE ID of the connection's client certificate, refused if the certificate has
/// expired since the handshake, proves nothing under the authorities in force, or its trust
/// domain is not one this server trusts.
fn trusted_peer(parts: &Parts, state: &SharedState) -> Result<Option<SpiffeId>, ApiError> {
    let Some(peer) = parts.extensions.get::<PeerIdentity>() else {
        return Ok(None);
    };
    // A certificate no authority in force vouches for any more proves nothing.
    let peer = in_force(peer, state).ok_or(CERTIFICATE_NOT_BY_ITS_DOMAIN)?;
    match peer.standing {
        Err(Unproven::Unreadable) => return Err(CERTIFICATE_UNREADABLE),
        Err(Unproven::NotByItsDomain) => return Err(CERTIFICATE_NOT_BY_ITS_DOMAIN),
        Ok(_) => {}
    }
    if peer.expired() {
        return Err(CERTIFICATE_EXPIRED);
    }
    let id = peer.spiffe_id;
    if state.workload.trusts(&id) {
        Ok(Some(id))
    } else {
        Err(UNTRUSTED_DOMAIN)
    }
}

/// A connection kept alive past its client certificate's `notAfter` (or an intermediate's).
const CERTIFICATE_EXPIRED: ApiError = ApiError::Unauthenticated(
    "the connection's client certificate has expired; connect again with a current one",
);

/// A connection whose client certificate's path holds a certificate whose validity cannot be
/// read.
const CERTIFICATE_UNREADABLE: ApiError = ApiError::Unauthenticated(
    "a certificate of the client certificate's chain cannot be read for its validity",
);

/// A client certificate whose chain leads to an authority, but not to one of the trust
/// domain its SPIFFE ID names.
const CERTIFICATE_NOT_BY_ITS_DOMAIN: ApiError = ApiError::Unauthenticated(
    "the client certificate does not chain to an authority of its spiffe id's trust domain (--client-ca-for, else --client-ca)",
);

/// A JWT-SVID's `id`, refused if its trust domain is not one this server trusts.
fn trusted(state: &SharedState, id: SpiffeId) -> Result<SpiffeId, ApiError> {
    if state.workload.trusts(&id) {
        Ok(id)
    } else {
        Err(jwt_svid::JwtSvidError::UntrustedDomain.into())
    }
}

/// Any authority in the CA or JWKS bundle can name any SPIFFE ID; with
/// `--spiffe-trust-domain`, only IDs of the trust domains named there are callers.
const UNTRUSTED_DOMAIN: ApiError = ApiError::Unauthenticated(
    "the SPIFFE ID is not of a trust domain this server trusts (--spiffe-trust-domain)",
);

const MISMATCH: &str = "the client certificate and the bearer token name different callers";

const CHOSEN_WITHOUT_AUTHENTICATION: &str = "this agent was registered or given its token without authentication, by a server under --auth none on the same store; a server with credentials serves it only once started with --accept-unauthenticated-state";

/// Who a credential on an admin route names, before admin rights are checked.
enum Named {
    /// An admin token from the admin token file, and its hash (kept to ask again later).
    AdminToken { name: String, token_sha256: String },
    /// An agent token.
    Agent(String),
    /// A verified SPIFFE ID (client certificate or JWT-SVID).
    Spiffe(SpiffeId),
}

impl Named {
    fn name(&self) -> &str {
        match self {
            Named::AdminToken { name, .. } | Named::Agent(name) => name,
            Named::Spiffe(id) => id.as_str(),
        }
    }
}

impl FromRequestParts<SharedState> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        if state.auth == AuthMode::DangerousNone {
            return Ok(AgentCaller::Unauthenticated);
        }
        let mut credential = Credential {
            token_sha256: None,
            generation: None,
            jwt_svid: None,
            certificate: None,
        };
        // The actor and, for an agent token, its unauthenticated mark, read in the same lookup
        // (`None`: a SPIFFE ID, whose mark is read below).
        let from_token = match bearer_token(parts)? {
            None => None,
            Some(token) => Some(match state.workload.verify_jwt(token) {
                Some(verified) => {
                    let id = trusted(state, verified?)?.to_string();
                    credential.jwt_svid = Some(Secret(token.to_string()));
                    (id, None)
                }
                None => {
                    let token_sha256 = tokens::token_hash(token);
                    match state.registry.agent_for_token_fresh(&token_sha256).await {
                        Some(holder) => {
                            credential.token_sha256 = Some(token_sha256);
                            credential.generation = Some(holder.generation);
                            (holder.actor, Some(holder.unauthenticated))
                        }
                        None => {
                            not_an_admin_token(state, &token_sha256)?;
                            return Err(ApiError::Unauthenticated("the credential is not valid"));
                        }
                    }
                }
            }),
        };
        let (actor, marked) = match (trusted_peer(parts, state)?, from_token) {
            (None, None) => {
                return Err(ApiError::Unauthenticated("an agent credential is required"))
            }
            (Some(id), None) => (id.to_string(), None),
            (None, Some(named)) => named,
            (Some(id), Some((actor, marked))) if id.as_str() == actor => (actor, marked),
            (Some(_), Some(_)) => return Err(ApiError::Unauthenticated(MISMATCH)),
        };
        // Marked after this server started (marks found at start stop it, or are accepted and
        // cleared): a replica of the same store serving under `--auth none` chose this agent.
        if marked.unwrap_or_else(|| state.registry.is_unauthenticated(&actor)) {
            return Err(ApiError::Unauthenticated(CHOSEN_WITHOUT_AUTHENTICATION));
        }
        // The certificate named this actor (it was checked above, when there was one).
        credential.certificate = parts
            .extensions
            .get::<PeerIdentity>()
            .filter(|peer| peer.spiffe_id.as_str() == actor)
            .cloned();
        Ok(AgentCaller::Authenticated(Agent { actor, credential }))
    }
}

impl FromRequestParts<SharedState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let Some(admins) = &state.admin_tokens else {
            return Ok(AdminCaller {
                name: UNAUTHENTICATED_ADMIN.into(),
                authenticated: false,
                token_sha256: None,
                jwt_svid: None,
                certificate: None,
            });
        };
        let bearer = bearer_token(parts)?;
        let from_token = match bearer {
            None => None,
            Some(token) => Some(match state.workload.verify_jwt(token) {
                Some(verified) => Named::Spiffe(trusted(state, verified?)?),
                None => {
                    let token_sha256 = tokens::token_hash(token);
                    match admins.name_for_hash(&token_sha256) {
                        Some(name) => Named::AdminToken { name, token_sha256 },
                        None => state
                            .registry
                            .agent_for_token_fresh(&token_sha256)
                            .await
                            .map(|holder| Named::Agent(holder.actor))
                            .ok_or(ApiError::Unauthenticated("the credential is not valid"))?,
                    }
                }
            }),
        };
        let caller = match (trusted_peer(parts, state)?, from_token) {
            (None, None) => {
                return Err(ApiError::Unauthenticated("an admin credential is required"))
            }
            (Some(id), None) => Named::Spiffe(id),
            (None, Some(named)) => named,
            // Both name the same caller: an admin token keeps its admin rights; otherwise the
            // certificate's SPIFFE ID decides.
            (Some(id), Some(named)) if id.as_str() == named.name() => match named {
                Named::AdminToken { .. } => named,
                Named::Agent(_) | Named::Spiffe(_) => Named::Spiffe(id),
            },
            (Some(_), Some(_)) => return Err(ApiError::Unauthenticated(MISMATCH)),
        };
        let refused = match caller {
            Named::AdminToken { name, token_sha256 } => {
                return Ok(AdminCaller {
                    name,
                    authenticated: true,
                    token_sha256: Some(token_sha256),
                    jwt_svid: None,
                    certificate: None,
                })
            }
            Named::Spiffe(id) if state.workload.is_admin(&id) => {
                let jwt_svid = bearer
                    .filter(|token| state.workload.takes_jwt(token))
                    .map(|token| Secret(token.to_string()));
                let certificate = parts
                    .extensions
                    .get::<PeerIdentity>()
                    .filter(|peer| peer.spiffe_id == id)
                    .cloned();
                return Ok(AdminCaller {
                    name: id.to_string(),
                    authenticated: true,
                    token_sha256: None,
                    jwt_svid,
                    certificate,
                });
            }
            Named::Spiffe(id) => id.to_string(),
            Named::Agent(actor) => actor,
        };
        // An authenticated non-admin reaching for admin powers is worth a record of its own,
        // up to a rate per caller; past it the refusals are only counted, so that a caller
        // cannot flood the audit log with them.
        state.refused_admin.admit(&refused)?;
        let record = RecordDraft::admin_access_refused(
            refused.clone(),
            refused_resource(&parts.method, parts.uri.path()),
        );
        state.ledger.append(record).await?;
        Err(ApiError::AgentOnAdminRoute(refused))
    }
}

/// Characters of a refused admin access's path its record keeps (a path may be ~64 KB).
const SHOWN_PATH_CHARS: usize = 200;

/// The `resource` of a refused admin access's record: the method and the path, cut to
/// [`SHOWN_PATH_CHARS`] characters and marked `…` when cut, so the record keeps to the
/// 1024-byte rule of resources (at most 4 bytes a character, and a method).
fn refused_resource(method: &axum::http::Method, path: &str) -> String {
    let mut shown: String = path.chars().take(SHOWN_PATH_CHARS).collect();
    if shown.len() < path.len() {
        shown.push('…');
    }
    format!("{method} {shown}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_admin_access_keeps_at_most_200_characters_of_its_path() {
        let get = axum::http::Method::GET;
        assert_eq!(refused_resource(&get, "/agents"), "GET /agents");
        let long = format!("/agents/{}", "é".repeat(40_000));
        let resource = refused_resource(&axum::http::Method::DELETE, &long);
        assert!(
            resource.len() <= zt_contract::names::MAX_RESOURCE_BYTES,
            "{}",
            resource.len()
        );
        assert!(resource.starts_with("DELETE /agents/éé"));
        assert!(resource.ends_with('…'));
        assert_eq!(
            resource.chars().count(),
            "DELETE ".len() + SHOWN_PATH_CHARS + 1
        );
    }
}
