//! `zt serve`: run the control plane until SIGTERM or SIGINT, then drain and exit 0.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use zt_server::auth::SpiffeId;
use zt_server::config::{
    default_rate_limit, ClientCerts, JwtSvidConfig, TlsConfig, WorkloadIdentityConfig,
};
use zt_server::limits::RateLimit;
use zt_server::nats;
use zt_server::{AuthMode, ServerConfig};

use crate::exit::Exit;

/// Authentication modes `--auth` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthFlag {
    /// Every caller presents a credential (the default): agents the bearer token `POST /agents`
    /// issued, admins a token from the admin token file. The actor is the one the credential names.
    Credentials,
    /// No authentication: the request body's `actor` is trusted if registered. Loudly logged,
    /// reported by /health, and recorded as authenticated=false in every record.
    None,
}

/// `zt serve` arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ZT_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Directory holding all state (audit log, signing key, registry, policy); created on first start.
    #[arg(long, env = "ZT_DATA_DIR", default_value = "./zt-data")]
    pub data_dir: PathBuf,
    /// Policy file (reference JSON action-policy format) to activate at start.
    #[arg(long, env = "ZT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Authentication mode.
    #[arg(long, env = "ZT_AUTH", value_enum, default_value = "credentials")]
    pub auth: AuthFlag,
    /// File of admin tokens (`NAME TOKEN` per line); created with one random token, mode 0600,
    /// if missing. Default: DATA_DIR/admin-token.
    #[arg(long, env = "ZT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Per-actor rate limit, decisions per second (`100/s`). Default 100/s with credentials;
    /// off under `--auth none` unless given.
    #[arg(long, env = "ZT_RATE_LIMIT", value_parser = RateLimit::parse_rate)]
    pub rate_limit: Option<NonZeroU32>,
    /// Burst of the per-actor rate limit (default: twice the rate).
    #[arg(long, env = "ZT_RATE_BURST")]
    pub rate_burst: Option<NonZeroU32>,
    /// Let an admin approve their own policy proposals (recorded as single-admin approvals).
    /// Danger: removes the second review of policy changes. Implied by `--auth none`.
    #[arg(long, env = "ZT_SINGLE_ADMIN")]
    pub single_admin: bool,
    /// Seconds a `request_id` stays used (replay protection).
    #[arg(long, env = "ZT_REPLAY_WINDOW", default_value_t = 300)]
    pub replay_window: u64,
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
    /// Refuse TLS clients without a certificate verified against `--client-ca`.
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
    /// JWKS bundle of keys trusted to sign JWT-SVIDs (EC P-256/P-384 or RSA). A bearer token
    /// shaped like a JWT is then checked as a JWT-SVID; its `sub` is the caller's identity.
    #[arg(
        long,
        env = "ZT_JWT_SVID_JWKS",
        requires = "jwt_svid_audience",
        help_heading = "TLS and workload identity"
    )]
    pub jwt_svid_jwks: Option<PathBuf>,
    /// The audience JWT-SVIDs must carry in `aud` (required with `--jwt-svid-jwks`).
    #[arg(
        long,
        env = "ZT_JWT_SVID_AUDIENCE",
        requires = "jwt_svid_jwks",
        help_heading = "TLS and workload identity"
    )]
    pub jwt_svid_audience: Option<String>,
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
    #[arg(long, env = "ZT_NATS_STREAM", default_value = nats::DEFAULT_STREAM, help_heading = "NATS JetStream publishing")]
    pub nats_stream: nats::StreamName,
    /// The subject every record is published to.
    #[arg(long, env = "ZT_NATS_SUBJECT", default_value = nats::DEFAULT_SUBJECT, help_heading = "NATS JetStream publishing")]
    pub nats_subject: nats::Subject,
    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "ZT_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

/// Runs `zt serve`.
pub fn run(args: ServeArgs) -> Exit {
    crate::logging::init("info");
    let auth = match args.auth {
        AuthFlag::Credentials => AuthMode::Credentials,
        AuthFlag::None => AuthMode::DangerousNone,
    };
    let rate_limit = match (args.rate_limit, auth) {
        (Some(per_second), _) => Some(RateLimit {
            per_second,
            burst: args
                .rate_burst
                .unwrap_or(per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1))),
        }),
        (None, AuthMode::Credentials) => Some(default_rate_limit()),
        (None, AuthMode::DangerousNone) => None,
    };
    let tls = tls_config(&args);
    // Parsed here, not by clap, whose errors would echo a password.
    let nats = match args.nats_url.as_deref().map(str::parse::<nats::NatsUrl>) {
        None => None,
        Some(Ok(url)) => Some(nats::NatsConfig {
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
        jwt_svid: match (&args.jwt_svid_jwks, &args.jwt_svid_audience) {
            (Some(jwks), Some(audience)) => Some(JwtSvidConfig {
                jwks: jwks.clone(),
                audience: audience.clone(),
            }),
            _ => None,
        },
    };
    let config = ServerConfig {
        data_dir: args.data_dir,
        policy_file: args.policy,
        auth,
        queue_capacity: args.queue_capacity,
        rejection_summary_interval: Duration::from_secs(args.rejection_summary_interval.max(1)),
        admin_token_file: args.admin_token_file,
        rate_limit,
        replay_window: Duration::from_secs(args.replay_window.max(1)),
        single_admin: args.single_admin,
        tls,
        workload,
        store_url: args.store,
        log_origin: args.log_origin,
        nats,
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
                Exit::Failure
            }
        }
    })
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
