//! Server settings, validated before anything starts.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::SpiffeId;
use crate::limits::RateLimit;

/// Largest request body accepted, in bytes (defined beside the wire types, which the gateways
/// read it from).
pub const MAX_BODY_BYTES: usize = zt_contract::MAX_REQUEST_BODY_BYTES;

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Every caller presents a credential: agents their bearer token, admins an admin token.
    /// The actor is the one the credential names.
    #[default]
    Credentials,
    /// No authentication: the body's `actor` is trusted if registered. Every record says the
    /// actor was not authenticated, and `/health` and the start-up log say so loudly.
    DangerousNone,
}

impl AuthMode {
    /// The spelling used on the command line and in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Credentials => "credentials",
            AuthMode::DangerousNone => "none",
        }
    }
}

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where all state lives; created on first start.
    pub data_dir: PathBuf,
    /// A policy file to activate at start (reference JSON action-policy format).
    pub policy_file: Option<PathBuf>,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// Decisions that may wait for an audit commit before new ones get 503.
    pub queue_capacity: usize,
    /// How often counts of rejected requests are written to the log as one summary record.
    pub rejection_summary_interval: Duration,
    /// The admin token file (default `DATA_DIR/admin-token`); unused under `--auth none`.
    pub admin_token_file: Option<PathBuf>,
    /// Per-actor rate limit; `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// How long a `request_id` stays used: 1 s to a week (`validate`).
    pub replay_window: Duration,
    /// Bytes of request ids the replay guard may keep; past it, new ids get 503.
    pub replay_memory: usize,
    /// Per-caller rate of refused admin access (an agent credential on an admin route) that
    /// is audited one record each; past it, 429 with no record, counted as `rate_limited`.
    pub refused_admin_rate: RateLimit,
    /// Connection limits and timeouts of the listener.
    pub connections: zt_listener::Limits,
    /// Web origins whose pages may send requests besides this machine's own (see
    /// [`zt_listener::PageGuard`]).
    pub allowed_origins: zt_listener::AllowedOrigins,
    /// A proposer may approve their own policy change (recorded as such). Always true under
    /// `--auth none`, where admins are not told apart.
    pub single_admin: bool,
    /// Serve HTTPS instead of HTTP, optionally verifying client certificates.
    pub tls: Option<TlsConfig>,
    /// Workload identities: admin SPIFFE IDs and JWT-SVIDs.
    pub workload: WorkloadIdentityConfig,
    /// The audit store: `None` for the embedded SQLite database in the data directory, or a
    /// `postgres://` URL (optionally `?schema=NAME`); see docs/STORAGE.md.
    pub store_url: Option<String>,
    /// The log's origin, the name its checkpoints carry. `None`: `zt-infra/<kid>` of the
    /// first key published in the store, which every replica of a shared store agrees on.
    pub log_origin: Option<String>,
    /// Publish the audit log to NATS JetStream; `None`: off. See docs/NATS.md.
    pub nats: Option<crate::nats::NatsConfig>,
    /// Start with credentials even though agents or the policy in force were chosen while
    /// authentication was off; the acceptance is audited and the marks cleared (see
    /// [`crate::unauthenticated_state`]).
    pub accept_unauthenticated_state: bool,
    /// Where the audit key lives and how records are signed (docs/SIGNING.md).
    pub custody: zt_custody::CustodyConfig,
}

/// Default budget of the replay guard: 128 MiB of request ids.
pub(crate) const DEFAULT_REPLAY_MEMORY: usize = 128 << 20;

/// The default rate of audited refused admin access per caller: 1/s, bursts of 10.
pub(crate) fn default_refused_admin_rate() -> RateLimit {
    RateLimit {
        per_second: NonZeroU32::MIN,
        burst: NonZeroU32::MIN.saturating_add(9),
    }
}

/// HTTPS: the server's certificate chain and key (PEM files), and what is asked of clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// Client certificates.
    pub client_certs: ClientCerts,
    /// PEM bundles of the authorities that alone may vouch for the SPIFFE IDs of one trust
    /// domain (`--client-ca-for DOMAIN=FILE`): a client certificate naming an ID of such a
    /// domain must chain to that bundle; one naming any other domain, to the `ClientCerts` CA.
    pub client_ca_by_domain: std::collections::BTreeMap<String, PathBuf>,
}

/// Whether and how TLS clients present certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientCerts {
    /// Not asked for: callers authenticate with bearer tokens only.
    #[default]
    NotRequested,
    /// Asked for and, when presented, verified against the CA bundle `ca`; a client without
    /// one still connects and may use a bearer token.
    Optional {
        /// PEM trust bundle for client certificates.
        ca: PathBuf,
    },
    /// Required and verified against `ca`: a client without a valid one fails the handshake.
    Required {
        /// PEM trust bundle for client certificates.
        ca: PathBuf,
    },
}

impl ClientCerts {
    /// The spelling in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ClientCerts::NotRequested => "not requested",
            ClientCerts::Optional { .. } => "optional",
            ClientCerts::Required { .. } => "required",
        }
    }
}

/// Workload identity settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadIdentityConfig {
    /// SPIFFE IDs (from a client certificate or a JWT-SVID) allowed on the admin routes.
    pub admin_spiffe_ids: Vec<SpiffeId>,
    /// Accept JWT-SVID bearer tokens.
    pub jwt_svid: Option<JwtSvidConfig>,
    /// The trust domains whose SPIFFE IDs are callers (from a client certificate or a
    /// JWT-SVID); empty: any the CA and JWKS bundles' authorities name.
    pub trust_domains: Vec<String>,
}

/// JWT-SVID bearer tokens: the trusted keys and this server's audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSvidConfig {
    /// JWKS bundle of trusted signing keys (e.g. a SPIFFE trust bundle).
    pub jwks: PathBuf,
    /// The audience every token must carry in `aud`.
    pub audience: String,
    /// JWKS bundles of the keys that alone may sign the JWT-SVIDs of one trust domain
    /// (`--jwt-svid-jwks-for DOMAIN=FILE`); `jwks` signs those of every other domain.
    pub jwks_by_domain: std::collections::BTreeMap<String, PathBuf>,
    /// The longest a token may still be valid when first seen (at most, and by default, 24
    /// hours): SPIRE issues JWT-SVIDs for minutes.
    pub max_lifetime: Duration,
}

/// Settings that contradict each other, or are out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An admin SPIFFE ID that no trusted trust domain holds: it could never call.
    #[error("`--admin-spiffe-id {0}` is not of a trust domain given with `--spiffe-trust-domain`")]
    AdminOutsideTrustDomains(String),
    /// Workload identities need authentication on.
    #[error("`{0}` needs `--auth credentials`: under `--auth none` nobody is authenticated")]
    NeedsCredentials(&'static str),
    /// A replay window outside [`REPLAY_WINDOW_RANGE`].
    #[error("the replay window must be 1 s to a week, not {0:?}")]
    ReplayWindow(Duration),
}

/// The longest replay window, in seconds (a week): short enough that every clock and database
/// timestamp it is added to stays in range.
pub const MAX_REPLAY_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// The replay windows accepted: a second to [`MAX_REPLAY_WINDOW_SECS`].
pub(crate) const REPLAY_WINDOW_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(MAX_REPLAY_WINDOW_SECS);

/// The default per-actor rate limit in authenticated mode: 100 decisions/s, bursts of 200.
pub fn default_rate_limit() -> RateLimit {
    RateLimit {
        per_second: NonZeroU32::MIN.saturating_add(99),
        burst: NonZeroU32::MIN.saturating_add(199),
    }
}

impl ServerConfig {
    /// Defaults for a data directory: authenticated, default rate limit.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            policy_file: None,
            auth: AuthMode::Credentials,
            queue_capacity: 8192,
            rejection_summary_interval: Duration::from_secs(60),
            admin_token_file: None,
            rate_limit: Some(default_rate_limit()),
            replay_window: Duration::from_secs(300),
            replay_memory: DEFAULT_REPLAY_MEMORY,
            refused_admin_rate: default_refused_admin_rate(),
            connections: zt_listener::Limits::default(),
            allowed_origins: zt_listener::AllowedOrigins::default(),
            single_admin: false,
            tls: None,
            workload: WorkloadIdentityConfig::default(),
            store_url: None,
            log_origin: None,
            nats: None,
            accept_unauthenticated_state: false,
            custody: zt_custody::CustodyConfig::default(),
        }
    }

    /// Refuses a replay window outside [`REPLAY_WINDOW_RANGE`], and contradictory settings:
    /// workload identities (client certificates, admin SPIFFE IDs, JWT-SVIDs) under
    /// `--auth none`, where they would silently prove nothing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !REPLAY_WINDOW_RANGE.contains(&self.replay_window) {
            return Err(ConfigError::ReplayWindow(self.replay_window));
        }
        if self.auth == AuthMode::DangerousNone {
            let client_certs = self
                .tls
                .as_ref()
                .is_some_and(|t| t.client_certs != ClientCerts::NotRequested);
            if client_certs {
                return Err(ConfigError::NeedsCredentials("--client-ca"));
            }
            if !self.workload.admin_spiffe_ids.is_empty() {
                return Err(ConfigError::NeedsCredentials("--admin-spiffe-id"));
            }
            if self.workload.jwt_svid.is_some() {
                return Err(ConfigError::NeedsCredentials("--jwt-svid-jwks"));
            }
            if !self.workload.trust_domains.is_empty() {
                return Err(ConfigError::NeedsCredentials("--spiffe-trust-domain"));
            }
            if self.accept_unauthenticated_state {
                return Err(ConfigError::NeedsCredentials(
                    crate::unauthenticated_state::ACCEPT_FLAG,
                ));
            }
        }
        let domains = &self.workload.trust_domains;
        if let Some(admin) = self
            .workload
            .admin_spiffe_ids
            .iter()
            .find(|id| !domains.is_empty() && !domains.iter().any(|d| d == id.trust_domain()))
        {
            return Err(ConfigError::AdminOutsideTrustDomains(admin.to_string()));
        }
        Ok(())
    }

    /// Defaults with authentication off and no rate limit (the reference quickstart).
    pub fn dangerous_unauthenticated(data_dir: PathBuf) -> Self {
        Self {
            auth: AuthMode::DangerousNone,
            rate_limit: None,
            single_admin: true,
            ..Self::new(data_dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_window_outside_a_second_to_a_week_is_refused() {
        let mut config = ServerConfig::new(PathBuf::from("/nonexistent"));
        for (window, valid) in [
            (Duration::ZERO, false),
            (Duration::from_millis(999), false),
            (Duration::from_secs(1), true),
            (Duration::from_secs(7 * 24 * 3600), true),
            (Duration::from_secs(7 * 24 * 3600 + 1), false),
            (Duration::MAX, false),
        ] {
            config.replay_window = window;
            assert_eq!(config.validate().is_ok(), valid, "{window:?}");
        }
    }
}
