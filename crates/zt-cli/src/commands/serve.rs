//! `zt serve`: run the control plane until SIGTERM or SIGINT, then drain and exit 0.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use zt_server::{
    default_rate_limit, AuthMode, ClientCerts, JwtSvidConfig, NatsConfig, NatsUrl, RateLimit,
    RateSetting, ServerConfig, SpiffeId, StreamName, Subject, TlsConfig, WorkloadIdentityConfig,
    DEFAULT_NATS_STREAM, DEFAULT_NATS_SUBJECT,
};

use crate::exit::Exit;
use crate::logging::LogFormat;

/// Authentication modes `--auth` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuthFlag {
    /// Every caller presents a credential (the default): agents the bearer token `POST /agents`
    /// issued, admins a token from the admin token file. The actor is the one the credential names.
    Credentials,
    /// No authentication: the request body's `actor` is trusted if registered. Loudly logged,
    /// reported by /health, and recorded as authenticated=false in every record.
    None,
}

/// `zt serve` arguments.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// A TOML file of settings: each key is a flag of `zt serve` without `--`
    /// (`listen = "127.0.0.1:3000"`); flags and environment variables override it.
    #[arg(long, env = "ZT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on: `HOST:PORT` (`127.0.0.1:3000`, `localhost:3000`,
    /// `0.0.0.0:3000` for every interface) or a bare port (on 127.0.0.1).
    #[arg(long, env = "ZT_LISTEN", default_value = "127.0.0.1:3000", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Directory holding all state (audit log, signing key, registry, policy); created on first start.
    #[arg(long, env = "ZT_DATA_DIR", default_value = "./zt-data")]
    pub data_dir: PathBuf,
    /// Policy file to activate at start: Cedar (`.cedar`) or the reference JSON format
    /// (`.json`); reloaded on SIGHUP or change.
    #[arg(long, env = "ZT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Authentication mode.
    #[arg(long, env = "ZT_AUTH", value_enum, default_value = "credentials")]
    pub auth: AuthFlag,
    /// File of admin tokens (`NAME TOKEN` per line); created with one random token, mode 0600,
    /// if missing. Default: DATA_DIR/admin-token.
    #[arg(long, env = "ZT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Per-actor rate limit, decisions per second (`100/s`), or `none` for no limit. Default
    /// 100/s with credentials; off under `--auth none` unless given.
    #[arg(long, env = "ZT_RATE_LIMIT", value_parser = RateSetting::parse)]
    pub rate_limit: Option<RateSetting>,
    /// Burst of the per-actor rate limit (default: twice the rate).
    #[arg(long, env = "ZT_RATE_BURST")]
    pub rate_burst: Option<NonZeroU32>,
    /// Let an admin approve their own policy proposals (recorded as single-admin approvals).
    /// Danger: removes the second review of policy changes. Implied by `--auth none`.
    #[arg(long, env = "ZT_SINGLE_ADMIN")]
    pub single_admin: bool,
    /// Danger: start with credentials although agents or the policy in force were chosen
    /// while authentication was off (`--auth none`), which is otherwise refused. The
    /// acceptance is recorded in the audit log and the marks are cleared.
    #[arg(long, env = "ZT_ACCEPT_UNAUTHENTICATED_STATE")]
    pub accept_unauthenticated_state: bool,
    /// Seconds a `request_id` stays used (replay protection), 1 to 604800 (a week).
    #[arg(long, env = "ZT_REPLAY_WINDOW", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=zt_server::MAX_REPLAY_WINDOW_SECS))]
    pub replay_window: u64,
    /// Mebibytes of request ids the replay guard may keep; past it, a request with a new
    /// `request_id` gets 503 until old ids expire.
    #[arg(long, env = "ZT_REPLAY_MEMORY", value_name = "MIB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub replay_memory: u64,
    /// Refused admin access (an agent credential on an admin route) audited per caller, per
    /// second (bursts of twice the rate, at least 10); past it, 429 with no record.
    #[arg(long, env = "ZT_REFUSED_ADMIN_RATE", value_name = "RATE", default_value = "1/s", value_parser = RateLimit::parse_rate)]
    pub refused_admin_rate: NonZeroU32,
    /// Connections and how long a client may take.
    #[command(flatten)]
    pub listener: crate::listener_args::ListenerArgs,
    /// Decisions that may wait for an audit commit; past this, new requests get 503 at once.
    #[arg(long, env = "ZT_QUEUE_CAPACITY", default_value_t = 8192)]
    pub queue_capacity: usize,
    /// Seconds between summary records of requests refused before any decision.
    #[arg(long, env = "ZT_REJECTION_SUMMARY_INTERVAL", default_value_t = 60)]
    pub rejection_summary_interval: u64,
    /// Serve HTTPS with this PEM certificate chain (leaf first) instead of plain HTTP.
    #[arg(
        long,
        env = "ZT_TLS_CERT",
        requires = "tls_key",
        help_heading = "TLS and workload identity"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(
        long,
        env = "ZT_TLS_KEY",
        requires = "tls_cert",
        help_heading = "TLS and workload identity"
    )]
    pub tls_key: Option<PathBuf>,
    /// PEM trust bundle for client certificates (X.509-SVIDs). A verified client certificate
    /// whose only URI SAN is a SPIFFE ID authenticates its caller as that SPIFFE ID. Clients
    /// without a certificate may still connect and use bearer tokens, unless
    /// `--require-client-cert`.
    #[arg(
        long,
        env = "ZT_CLIENT_CA",
        requires = "tls_cert",
        help_heading = "TLS and workload identity"
    )]
    pub client_ca: Option<PathBuf>,
    /// The authorities of one trust domain, `DOMAIN=FILE` (repeatable; the environment twin is
    /// comma-separated): a client certificate naming a SPIFFE ID of DOMAIN is an identity only
    /// if it chains to FILE's CAs, and one naming any other domain only if it chains to
    /// `--client-ca`'s, so a federated domain's CA cannot name another domain's workloads.
    #[arg(
        long = "client-ca-for",
        env = "ZT_CLIENT_CA_FOR",
        value_name = "DOMAIN=FILE",
        value_delimiter = ',',
        value_parser = parse_domain_bundle,
        requires = "client_ca",
        help_heading = "TLS and workload identity"
    )]
    pub client_ca_for: Vec<(String, PathBuf)>,
    /// Refuse TLS clients without a certificate verified against `--client-ca` (or a
    /// `--client-ca-for` bundle).
    #[arg(
        long,
        env = "ZT_REQUIRE_CLIENT_CERT",
        requires = "client_ca",
        help_heading = "TLS and workload identity"
    )]
    pub require_client_cert: bool,
    /// A SPIFFE ID allowed on the admin routes (repeatable; the environment twin is
    /// comma-separated). Admin changes are recorded under this ID.
    #[arg(
        long = "admin-spiffe-id",
        env = "ZT_ADMIN_SPIFFE_IDS",
        value_name = "SPIFFE_ID",
        value_delimiter = ',',
        value_parser = parse_spiffe_id,
        help_heading = "TLS and workload identity"
    )]
    pub admin_spiffe_ids: Vec<SpiffeId>,
    /// A SPIFFE trust domain whose IDs are callers (repeatable; the environment twin is
    /// comma-separated). Any authority in `--client-ca` or `--jwt-svid-jwks` can name any ID;
    /// with this set, an ID of any other trust domain is refused (401). Set it whenever those
    /// bundles hold more than one trust domain's authorities.
    #[arg(
        long = "spiffe-trust-domain",
        env = "ZT_SPIFFE_TRUST_DOMAINS",
        value_name = "DOMAIN",
        value_delimiter = ',',
        value_parser = parse_trust_domain,
        help_heading = "TLS and workload identity"
    )]
    pub spiffe_trust_domains: Vec<String>,
    /// JWKS bundle of keys trusted to sign JWT-SVIDs (EC P-256/P-384 or RSA). A bearer token
    /// shaped like a JWT is then checked as a JWT-SVID; its `sub` is the caller's identity.
    #[arg(
        long,
        env = "ZT_JWT_SVID_JWKS",
        requires = "jwt_svid_audience",
        help_heading = "TLS and workload identity"
    )]
    pub jwt_svid_jwks: Option<PathBuf>,
    /// The JWT-SVID keys of one trust domain, `DOMAIN=FILE` (repeatable; the environment twin
    /// is comma-separated): they alone sign DOMAIN's JWT-SVIDs, and name no other domain's;
    /// `--jwt-svid-jwks` signs every other domain's. Reloaded like it.
    #[arg(
        long = "jwt-svid-jwks-for",
        env = "ZT_JWT_SVID_JWKS_FOR",
        value_name = "DOMAIN=FILE",
        value_delimiter = ',',
        value_parser = parse_domain_bundle,
        requires = "jwt_svid_jwks",
        help_heading = "TLS and workload identity"
    )]
    pub jwt_svid_jwks_for: Vec<(String, PathBuf)>,
    /// The audience JWT-SVIDs must carry in `aud` (required with `--jwt-svid-jwks`).
    #[arg(
        long,
        env = "ZT_JWT_SVID_AUDIENCE",
        requires = "jwt_svid_jwks",
        help_heading = "TLS and workload identity"
    )]
    pub jwt_svid_audience: Option<String>,
    /// The longest a JWT-SVID may still be valid when first seen (`90s`, `10m`, `24h`; at most
    /// and by default 24 hours): a longer-lived token is refused (401). SPIRE issues them for
    /// minutes.
    #[arg(
        long,
        env = "ZT_JWT_SVID_MAX_LIFETIME",
        value_name = "DURATION",
        value_parser = parse_jwt_lifetime,
        requires = "jwt_svid_jwks",
        help_heading = "TLS and workload identity"
    )]
    pub jwt_svid_max_lifetime: Option<Duration>,
    /// Audit store: a `postgres://USER@HOST[:PORT]/DB[?schema=NAME]` URL. Default: the embedded
    /// SQLite database in DATA_DIR. Several servers (each with its own DATA_DIR and key) may
    /// share one PostgreSQL store: they write one chain.
    #[arg(long, env = "ZT_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
    /// The log's origin: the first line of its checkpoints. Default: `zt-infra/<kid>` of the
    /// first key published in the store (the same on every server sharing it).
    #[arg(long, env = "ZT_LOG_ORIGIN")]
    pub log_origin: Option<String>,
    /// Publish every audit record to NATS JetStream at this server:
    /// `nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT]` or `tls://…`. Off by default; decisions
    /// never wait for NATS (docs/NATS.md).
    #[arg(
        long,
        env = "ZT_NATS_URL",
        value_name = "URL",
        hide_env_values = true,
        help_heading = "NATS JetStream publishing"
    )]
    pub nats_url: Option<String>,
    /// The JetStream stream for the records; created (file storage) if missing.
    #[arg(long, env = "ZT_NATS_STREAM", default_value = DEFAULT_NATS_STREAM, help_heading = "NATS JetStream publishing")]
    pub nats_stream: StreamName,
    /// The subject every record is published to.
    #[arg(long, env = "ZT_NATS_SUBJECT", default_value = DEFAULT_NATS_SUBJECT, help_heading = "NATS JetStream publishing")]
    pub nats_subject: Subject,
    /// Where the audit signing (custody) key lives: `local` (a key file in DATA_DIR),
    /// `aws-kms:<key id, alias or ARN>` (an ECC_NIST_P256 KMS key; credentials, Region and
    /// endpoint from the standard AWS configuration), or
    /// `pkcs11:module=<path>;token=<label>;key=<label>` (an HSM). See docs/SIGNING.md.
    #[arg(
        long,
        env = "ZT_SIGNER",
        default_value = "local",
        value_name = "SIGNER",
        help_heading = "Audit key custody"
    )]
    pub signer: zt_custody::SignerSpec,
    /// The custody key being rotated away from, in `--signer` syntax, to endorse the new
    /// `--signer` in the rotation record at this start (docs/SIGNING.md). Not needed after
    /// `zt keys rotate`, whose outgoing local key waits in DATA_DIR until it has endorsed.
    #[arg(
        long,
        env = "ZT_PREVIOUS_SIGNER",
        value_name = "SIGNER",
        help_heading = "Audit key custody"
    )]
    pub previous_signer: Option<zt_custody::SignerSpec>,
    /// Sign records with in-memory session keys, each certified by the custody key for this
    /// long (`90s`, `30m`, `1h`, or seconds), renewed before they expire; checkpoints stay
    /// signed by the custody key every second. Default: the custody key signs every record.
    #[arg(long, env = "ZT_SESSION_KEY_TTL", value_name = "DURATION", value_parser = parse_ttl, help_heading = "Audit key custody")]
    pub session_key_ttl: Option<Duration>,
    /// The PKCS#11 user PIN, first line of this file (mode 0600); else `ZT_PKCS11_PIN`.
    #[arg(long, value_name = "FILE", help_heading = "Audit key custody")]
    pub pin_file: Option<PathBuf>,
    /// Longest wait, in milliseconds, for one call to a KMS or HSM key (a batch of records)
    /// before its decisions get 503.
    #[arg(long, env = "ZT_SIGNER_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=60_000), help_heading = "Audit key custody")]
    pub signer_timeout_ms: u64,
    /// Most AWS KMS `Sign` calls in flight at once (per-record mode).
    #[arg(long, env = "ZT_KMS_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024), help_heading = "Audit key custody")]
    pub kms_concurrency: u64,
    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "ZT_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Log line format on stderr: `text` (coloured only on a terminal, never with `NO_COLOR`)
    /// or `json` (one object per line). The level comes from `ZT_LOG`.
    #[arg(long, env = "ZT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// A session key's validity period: `90s`, `30m`, `1h`, `1d` or a number of seconds; at least
/// ten seconds.
/// The longest `--jwt-svid-max-lifetime`, and its default (the server's own cap).
const JWT_SVID_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn parse_jwt_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = parse_ttl(text)?;
    if lifetime > JWT_SVID_MAX_LIFETIME {
        return Err(format!("`{text}`: at most 24h"));
    }
    Ok(lifetime)
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: use a number with s, m, h or d")),
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| (10..=30 * 86_400).contains(s))
        .ok_or_else(|| format!("`{text}`: between 10s and 30d"))?;
    Ok(Duration::from_secs(seconds))
}

/// Runs `zt serve`.
pub(crate) fn run(args: ServeArgs) -> Exit {
    crate::logging::init_with("info", args.log_format);
    let auth = match args.auth {
        AuthFlag::Credentials => AuthMode::Credentials,
        AuthFlag::None => AuthMode::DangerousNone,
    };
    let rate_limit = match (args.rate_limit, auth) {
        (Some(RateSetting::Off), _) => None,
        (Some(RateSetting::PerSecond(per_second)), _) => Some(RateLimit {
            per_second,
            burst: args
                .rate_burst
                .unwrap_or(per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1))),
        }),
        (None, AuthMode::Credentials) => Some(default_rate_limit()),
        (None, AuthMode::DangerousNone) => None,
    };
    let tls = tls_config(&args);
    for (flag, bundles) in [
        ("--client-ca-for", &args.client_ca_for),
        ("--jwt-svid-jwks-for", &args.jwt_svid_jwks_for),
    ] {
        if let Some(domain) = repeated_domain(bundles) {
            eprintln!("error: {flag} names `{domain}` twice; give each trust domain one bundle");
            return Exit::Usage;
        }
    }
    // Parsed here, not by clap, whose errors would echo a password.
    let nats = match args.nats_url.as_deref().map(str::parse::<NatsUrl>) {
        None => None,
        Some(Ok(url)) => Some(NatsConfig {
            url,
            stream: args.nats_stream.clone(),
            subject: args.nats_subject.clone(),
        }),
        Some(Err(e)) => {
            eprintln!("error: --nats-url: {e}");
            return Exit::Usage;
        }
    };
    let workload = WorkloadIdentityConfig {
        admin_spiffe_ids: args.admin_spiffe_ids.clone(),
        trust_domains: args.spiffe_trust_domains.clone(),
        jwt_svid: match (&args.jwt_svid_jwks, &args.jwt_svid_audience) {
            (Some(jwks), Some(audience)) => Some(JwtSvidConfig {
                jwks: jwks.clone(),
                audience: audience.clone(),
                jwks_by_domain: args.jwt_svid_jwks_for.iter().cloned().collect(),
                max_lifetime: args.jwt_svid_max_lifetime.unwrap_or(JWT_SVID_MAX_LIFETIME),
            }),
            _ => None,
        },
    };
    let allowed_origins = match args.listener.allowed_origins() {
        Ok(origins) => origins,
        Err(exit) => return exit,
    };
    let config = ServerConfig {
        data_dir: args.data_dir,
        policy_file: args.policy,
        auth,
        queue_capacity: args.queue_capacity,
        rejection_summary_interval: Duration::from_secs(args.rejection_summary_interval.max(1)),
        admin_token_file: args.admin_token_file,
        rate_limit,
        replay_window: Duration::from_secs(args.replay_window),
        replay_memory: usize::try_from(args.replay_memory << 20).unwrap_or(usize::MAX),
        refused_admin_rate: RateLimit {
            per_second: args.refused_admin_rate,
            burst: args
                .refused_admin_rate
                .saturating_mul(NonZeroU32::MIN.saturating_add(1))
                .max(NonZeroU32::MIN.saturating_add(9)),
        },
        connections: args.listener.limits(),
        allowed_origins,
        single_admin: args.single_admin,
        tls,
        workload,
        store_url: args.store,
        log_origin: args.log_origin,
        nats,
        accept_unauthenticated_state: args.accept_unauthenticated_state,
        custody: zt_custody::CustodyConfig {
            spec: args.signer,
            session_key_ttl: args.session_key_ttl,
            timeout: Duration::from_millis(args.signer_timeout_ms),
            kms_concurrency: usize::try_from(args.kms_concurrency).unwrap_or(32),
            pin_file: args.pin_file,
            previous: args.previous_signer,
        },
    };
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return Exit::Usage;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return Exit::Failure;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return Exit::Failure;
            }
        };
        match zt_server::serve(config, listener, shutdown_signal()).await {
            Ok(()) => Exit::Success,
            Err(e) => {
                eprintln!("error: {e}");
                // A refused setting or admin token file is the operator's to fix: exit 2.
                if e.is_usage() {
                    Exit::Usage
                } else {
                    Exit::Failure
                }
            }
        }
    })
}

/// `HOST:PORT` (a host name resolves; its first IPv4 address is preferred) or a bare port on
/// 127.0.0.1.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let forms = "write HOST:PORT (`127.0.0.1:3000`, `localhost:3000`, `0.0.0.0:3000` for every \
                 interface, `[::1]:3000`) or a bare port (`3000`, on 127.0.0.1)";
    if text.contains("://") {
        return Err(format!("`{text}` is a url, not an address: {forms}"));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a port (1 to 65535): {forms}"));
    }
    if !text.contains(':') {
        return Err(format!("`{text}` has no port: {forms}"));
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("`{text}` does not resolve ({e}): {forms}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("`{text}` resolves to no address: {forms}"))
}

fn parse_trust_domain(text: &str) -> Result<String, String> {
    match SpiffeId::parse(&format!("spiffe://{text}")) {
        Ok(id) if id.trust_domain() == text => Ok(text.to_string()),
        _ => Err(format!(
            "`{text}` is not a spiffe trust domain (lower case letters, digits, `.`, `-`, `_`)"
        )),
    }
}

fn parse_domain_bundle(text: &str) -> Result<(String, PathBuf), String> {
    let Some((domain, file)) = text.split_once('=') else {
        return Err(format!("`{text}` is not DOMAIN=FILE"));
    };
    if file.is_empty() {
        return Err(format!("`{text}` names no file"));
    }
    Ok((parse_trust_domain(domain)?, PathBuf::from(file)))
}

/// A trust domain given more than one bundle by the same flag (`--client-ca-for`,
/// `--jwt-svid-jwks-for`): ambiguous, so refused.
fn repeated_domain(bundles: &[(String, PathBuf)]) -> Option<&str> {
    let mut seen = std::collections::BTreeSet::new();
    bundles
        .iter()
        .map(|(domain, _)| domain.as_str())
        .find(|domain| !seen.insert(*domain))
}

fn parse_spiffe_id(text: &str) -> Result<SpiffeId, String> {
    SpiffeId::parse(text).map_err(|e| format!("`{text}` is not a spiffe id: {e}"))
}

fn tls_config(args: &ServeArgs) -> Option<TlsConfig> {
    let (Some(cert_chain), Some(private_key)) = (&args.tls_cert, &args.tls_key) else {
        return None;
    };
    let client_certs = match (&args.client_ca, args.require_client_cert) {
        (None, _) => ClientCerts::NotRequested,
        (Some(ca), false) => ClientCerts::Optional { ca: ca.clone() },
        (Some(ca), true) => ClientCerts::Required { ca: ca.clone() },
    };
    Some(TlsConfig {
        cert_chain: cert_chain.clone(),
        private_key: private_key.clone(),
        client_certs,
        client_ca_by_domain: args.client_ca_for.iter().cloned().collect(),
    })
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("3405").unwrap().to_string(), "127.0.0.1:3405");
        assert_eq!(parse_listen("0.0.0.0:1").unwrap().to_string(), "0.0.0.0:1");
        assert_eq!(parse_listen("[::1]:7").unwrap().to_string(), "[::1]:7");
        assert_eq!(parse_listen("localhost:3405").unwrap().port(), 3405);
        for (bad, want) in [
            ("localhost", "has no port"),
            ("http://127.0.0.1:3000", "is a url"),
            ("99999", "is not a port"),
        ] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains(want) && e.contains("bare port"), "{bad}: {e}");
        }
    }
}
