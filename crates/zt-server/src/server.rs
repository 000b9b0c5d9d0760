//! Start-up, serving and orderly shutdown.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::net::TcpListener;
use zt_ledger::committer::LedgerConfig;
use zt_ledger::{Ledger, LedgerWorker};

use crate::auth::admin_set::load_at_start;
use crate::auth::admin_tokens::ADMIN_TOKEN_FILE_NAME;
use crate::auth::jwt_bundle::JwtSvidBundle;
use crate::auth::{AdminTokens, WorkloadAuth};
use crate::config::{AuthMode, ClientCerts, ServerConfig};
use crate::limits::ActorLimiter;
use crate::lock::DataDirLock;
use crate::metrics::Metrics;
use crate::policy_store::{PolicyFile, PolicyStore};
use crate::proposals::Proposals;
use crate::recent::RecentRequests;
use crate::registry::Registry;
use crate::reloadable::ReloadedSetting;
use crate::replay::{reload_from_log, ReplayGuard};
use crate::routes::router;
use crate::state::{AppState, SharedState};
use crate::state_docs::Documents;
use crate::tasks::Tasks;
use crate::unauthenticated_state::{accept, UnauthenticatedState, ACCEPT_FLAG};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be prepared.
    #[error("data directory `{0}`: {1}")]
    DataDir(String, std::io::Error),
    /// Another server holds the data directory.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The signing key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] zt_ledger::SignError),
    /// The custody key (local, AWS KMS, PKCS#11) could not be opened.
    #[error(transparent)]
    Custody(#[from] zt_custody::CustodyError),
    /// The record of a key rotation could not be written.
    #[error("recording the audit key rotation: {0}")]
    Rotation(String),
    /// The audit store could not be opened or is corrupt.
    #[error(transparent)]
    Store(#[from] zt_ledger::StoreError),
    /// The registry could not be loaded.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] crate::policy_store::PolicyStoreError),
    /// The registry and policy documents could not be opened.
    #[error("state documents: {0}")]
    Documents(#[from] crate::state_docs::DocError),
    /// The admin token file could not be used.
    #[error(transparent)]
    AdminTokens(#[from] crate::auth::admin_tokens::AdminTokenError),
    /// The policy proposals could not be loaded.
    #[error(transparent)]
    Proposals(#[from] crate::proposals::ProposalsError),
    /// The settings contradict each other.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The TLS certificate, key or client CA cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    /// The JWT-SVID bundle cannot be used.
    #[error(transparent)]
    JwtSvid(#[from] crate::auth::jwt_svid::JwksError),
    /// Audit checkpoints cannot be signed.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoints::CheckpointSetupError),
    /// Agents or the policy in force were chosen while authentication was off.
    #[error(
        "this state was changed while authentication was off (`--auth none`): {0} came from an unauthenticated caller and would stay in force; start once with `{ACCEPT_FLAG}` to keep them (recorded in the audit log), then remove or rotate whatever is not trusted"
    )]
    UnauthenticatedState(String),
    /// The unauthenticated state marks could not be read.
    #[error(transparent)]
    Marks(#[from] crate::unauthenticated_state::MarksError),
    /// The `--policy` file could not replace the stored policy.
    #[error("the --policy file cannot replace the stored policy: {0}")]
    PolicyAtStart(String),
    /// Accepting the unauthenticated state failed.
    #[error("accepting the unauthenticated state failed: {0}")]
    AcceptUnauthenticated(String),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(std::io::Error),
}

impl ServerError {
    /// True if what the operator gave is refused (a contradiction between settings, a weak or
    /// malformed admin token file): a usage error, not a failure of the machine.
    pub fn is_usage(&self) -> bool {
        match self {
            ServerError::Config(_) => true,
            ServerError::Tls(crate::tls::TlsSetupError::KeyReadable(_)) => true,
            ServerError::AdminTokens(e) => e.is_refused_content(),
            _ => false,
        }
    }
}

/// A started control plane, not yet serving: its shared state, the audit committer and the
/// data directory's lock, which must outlive both.
pub(crate) struct Started {
    /// What every handler shares.
    pub(crate) state: SharedState,
    /// The audit committer; join it after the state is dropped.
    pub(crate) worker: LedgerWorker,
    /// The single-writer lock.
    pub(crate) lock: DataDirLock,
    /// State chosen without authentication that the operator accepted with
    /// [`ACCEPT_FLAG`]; [`serve`] records the acceptance and clears the marks.
    pub(crate) accepted: UnauthenticatedState,
    /// The record of a custody key rotation (since the log's newest record; on a replica of a
    /// shared store, from its outgoing key), which [`serve`] writes before anything else.
    pub(crate) rotation: Option<crate::key_rotation::Rotation>,
    /// A `--policy` file that replaces a different stored policy, which [`serve`] records and
    /// then stores, after the rotation's record.
    pub(crate) policy_at_start: Option<crate::policy_store::FileAtStart>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").finish_non_exhaustive()
    }
}

/// Checks the files the operator gave, then prepares the data directory, takes its lock,
/// loads the key, opens and checks the audit log, and loads the registry, policy and
/// proposals.
pub(crate) fn start(config: &ServerConfig) -> Result<Started, ServerError> {
    let tls = config
        .tls
        .as_ref()
        .map(crate::tls::ReloadedTls::load)
        .transpose()?
        .map(Arc::new);
    let jwt_svid = config
        .workload
        .jwt_svid
        .as_ref()
        .map(|j| {
            JwtSvidBundle::load_with_max_lifetime(&j.jwks, &j.audience, j.max_lifetime.as_secs())
        })
        .transpose()?;
    let jwt_by_domain = config
        .workload
        .jwt_svid
        .iter()
        .flat_map(|j| {
            j.jwks_by_domain.iter().map(|(domain, jwks)| {
                JwtSvidBundle::load_with_max_lifetime(jwks, &j.audience, j.max_lifetime.as_secs())
                    .map(|bundle| (domain.clone(), bundle))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let workload = WorkloadAuth::new(
        config.workload.admin_spiffe_ids.iter().cloned(),
        jwt_svid,
        config.workload.trust_domains.iter().cloned(),
    )
    .with_jwt_bundles_by_domain(jwt_by_domain);
    let data_dir = config.data_dir.clone();
    // Everything that can be refused is read and checked before anything is created, so a
    // refused start leaves no data directory (token file, key, audit database, lock) behind.
    let policy_file = config
        .policy_file
        .as_deref()
        .map(PolicyFile::read)
        .transpose()?;
    let admin_token_path = match config.auth {
        AuthMode::Credentials => Some(
            config
                .admin_token_file
                .clone()
                .unwrap_or_else(|| data_dir.join(ADMIN_TOKEN_FILE_NAME)),
        ),
        AuthMode::DangerousNone => None,
    };
    if let Some(path) = admin_token_path.as_deref().filter(|p| p.exists()) {
        AdminTokens::load(path)?;
    }
    if let Some(url) = &config.store_url {
        zt_ledger::PostgresLocation::parse(url)?;
    }
    let shown = data_dir.display().to_string();
    std::fs::create_dir_all(&data_dir).map_err(|e| ServerError::DataDir(shown.clone(), e))?;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ServerError::DataDir(shown.clone(), e))?;
    let lock = DataDirLock::acquire(&data_dir)?;

    let custody = zt_custody::open_custody(&config.custody, &data_dir)?;
    let (mut store, open_reader) = zt_ledger::open_store(config.store_url.as_deref(), &data_dir)?;
    let known_keys = store.keys()?;
    let origin = match &config.log_origin {
        Some(origin) => origin.clone(),
        None => crate::checkpoints::default_origin(
            known_keys
                .first()
                .map_or(custody.key_id(), |k| k.kid.as_str()),
        ),
    };
    // Replicas of a shared store each hold their own key: only one writer's log tells a
    // rotation from its head.
    let open_outgoing = || Ok(zt_custody::open_outgoing(&config.custody, &data_dir)?);
    let rotation = if store.is_shared() {
        crate::key_rotation::replica_rotation_record(
            &known_keys,
            custody.as_ref(),
            config.custody.previous.is_some(),
            open_outgoing,
            &origin,
        )?
    } else {
        crate::key_rotation::rotation_record(
            store.as_mut(),
            &known_keys,
            custody.as_ref(),
            open_outgoing,
            &origin,
        )?
    };
    let signer = zt_custody::record_signer(&config.custody, custody.clone(), &origin)?;
    let mut metrics = Metrics::default();
    if config.nats.is_some() {
        metrics.enable_nats();
    }
    let metrics = Arc::new(metrics);
    let observer_metrics = metrics.clone();
    let (ledger, worker) = Ledger::start(
        store,
        open_reader,
        signer.clone(),
        LedgerConfig {
            queue_capacity: config.queue_capacity,
            request_id_window: config.replay_window,
        },
        Some(Box::new(move |s| observer_metrics.commit(&s))),
    )?;
    metrics.set_chain_length(ledger.head().map_or(0, |h| h.seq + 1));

    let admin_tokens = match admin_token_path {
        Some(path) => {
            let tokens = load_at_start(&path)?;
            tracing::info!(admin_token_file = %tokens.path().display(), admins = ?tokens.names(), "admin credentials loaded; the file is reloaded when it changes or on SIGHUP");
            Some(Arc::new(tokens))
        }
        None => None,
    };
    let replay = Arc::new(ReplayGuard::new(config.replay_window, config.replay_memory));
    let reloaded = reload_from_log(&replay, &ledger)?;
    let checkpoints = Arc::new(crate::checkpoints::Checkpoints::new(
        origin,
        custody.clone(),
        &ledger,
    )?);
    let docs = Arc::new(Documents::open(config.store_url.as_deref(), &data_dir)?);
    let proposals = Arc::new(Proposals::load(docs.clone(), &data_dir)?);
    let receipts = crate::receipts::ReceiptBook::new(&ledger);
    let (policy, policy_at_start) = PolicyStore::load(docs.clone(), &data_dir, policy_file)?;
    let state: SharedState = Arc::new(AppState {
        receipts,
        ledger,
        policy: Arc::new(policy),
        registry: Arc::new(Registry::load(docs.clone(), &data_dir)?),
        docs,
        metrics,
        rejections: Arc::default(),
        auth: config.auth,
        admin_tokens,
        limiter: config.rate_limit.map(|r| Arc::new(ActorLimiter::new(r))),
        refused_admin: Arc::new(ActorLimiter::new(config.refused_admin_rate)),
        replay,
        recent: RecentRequests::default(),
        proposals,
        single_admin: config.single_admin || config.auth == AuthMode::DangerousNone,
        admin_lock: Arc::default(),
        checkpoints,
        signer: signer.clone(),
        workload,
        tls,
        draining: tokio::sync::watch::Sender::new(false),
    });
    let accepted = match config.auth {
        AuthMode::Credentials => {
            state.policy.refuse_unauthenticated();
            UnauthenticatedState::find(&state.docs, &data_dir, &state.registry, &state.policy)?
        }
        AuthMode::DangerousNone => UnauthenticatedState::default(),
    };
    if !accepted.is_empty() && !config.accept_unauthenticated_state {
        return Err(ServerError::UnauthenticatedState(accepted.describe()));
    }
    tracing::info!(
        data_dir = %shown,
        key_id = custody.key_id(),
        signer = signer.status().kind,
        signer_mode = signer.status().mode,
        records = state.ledger.head().map_or(0, |h| h.seq + 1),
        policy_version = %state.policy.current().version(),
        replay_ids_reloaded = reloaded,
        "zt control plane started"
    );
    Ok(Started {
        state,
        worker,
        lock,
        accepted,
        rotation,
        policy_at_start,
    })
}

/// The records a start writes before it serves, in this order: a custody key rotation, a
/// `--policy` file that replaces the stored policy, the acceptance of state chosen without
/// authentication. The first that fails stops the start.
async fn record_start(
    state: &SharedState,
    config: &ServerConfig,
    rotation: Option<crate::key_rotation::Rotation>,
    policy_at_start: Option<crate::policy_store::FileAtStart>,
    accepted: &UnauthenticatedState,
) -> Result<(), ServerError> {
    if let Some(rotation) = rotation {
        let sealed = state
            .ledger
            .append(rotation.draft.clone())
            .await
            .map_err(|e| ServerError::Rotation(e.to_string()))?;
        rotation.check_place(&sealed)?;
        tracing::info!(
            key_id = state.checkpoints.key_id(),
            "audit signing key rotation recorded"
        );
    }
    // The retiring local key has endorsed the rotation, or has nothing left to endorse.
    if let Err(e) = zt_ledger::LocalKeySigner::discard_retiring(&config.data_dir) {
        tracing::error!(error = %e, "the retired audit key could not be destroyed; delete the file by hand");
    }
    if let Some(at_start) = policy_at_start {
        crate::policy_reload::record_file_at_start(&state.policy, &state.ledger, at_start)
            .await
            .map_err(ServerError::PolicyAtStart)?;
    }
    if !accepted.is_empty() {
        accept(state, accepted)
            .await
            .map_err(ServerError::AcceptUnauthenticated)?;
    }
    Ok(())
}

/// Runs the control plane on `listener` until `shutdown` resolves, then drains: stops
/// accepting, lets in-flight requests finish (their records commit), writes the last
/// rejection summary, and waits for the audit committer to exit.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Everything that can be refused without touching the data directory is checked first.
    config.validate()?;
    let Started {
        state,
        worker,
        lock,
        accepted,
        rotation,
        policy_at_start,
    } = start(&config)?;
    if let Err(e) = record_start(&state, &config, rotation, policy_at_start, &accepted).await {
        // Nothing was served: the committer ends once the state is gone.
        drop(state);
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        return Err(e);
    }
    let addr = listener.local_addr().map_err(ServerError::Io)?;
    log_identity_settings(&config, &state.workload);
    tracing::info!(listen = %addr, https = state.tls.is_some(), "zt control plane ready");
    if config.auth == AuthMode::DangerousNone {
        tracing::warn!("AUTHENTICATION IS OFF (--auth none): any caller may claim any registered actor; every record says authenticated=false");
    }

    let tasks = Tasks::spawn(&state, &config);
    let pages = zt_listener::PageGuard::new(addr, config.allowed_origins.clone());
    let app = router(state.clone(), pages);
    let draining = state.draining.clone();
    let shutdown = async move {
        shutdown.await;
        draining.send_replace(true);
    };
    let apps = zt_listener::Apps {
        regular: app,
        overflow: crate::routes::overflow_router(state.clone()),
    };
    let gauges = state.metrics.connection_gauges();
    let metrics = state.metrics.clone();
    let tls = state.tls.clone().map(|files| {
        let named_by = files.clone();
        zt_listener::Tls {
            acceptor: Arc::new(move || files.current().acceptor.clone()),
            identify: Arc::new(move |chain: &[_]| named_by.current().authorities.identify(chain)),
            on_handshake_failure: Arc::new(move || metrics.tls_handshake_failed()),
        }
    });
    zt_listener::serve_connections(
        listener,
        tls,
        apps,
        config.connections,
        Some(gauges),
        shutdown,
    )
    .await;
    tasks.stop().await;
    drop(state);
    // Every ledger handle is gone once the router, the tasks and the state are dropped; the
    // committer then commits what is queued and exits.
    tokio::task::spawn_blocking(move || worker.join())
        .await
        .ok();
    drop(lock);
    tracing::info!("zt control plane stopped");
    Ok(())
}

/// Says at start-up how callers can prove who they are (never a secret).
fn log_identity_settings(config: &ServerConfig, workload: &WorkloadAuth) {
    if let Some(tls) = &config.tls {
        let client_ca = match &tls.client_certs {
            ClientCerts::NotRequested => None,
            ClientCerts::Optional { ca } | ClientCerts::Required { ca } => {
                Some(ca.display().to_string())
            }
        };
        tracing::info!(
            cert = %tls.cert_chain.display(),
            client_certs = tls.client_certs.as_str(),
            client_ca = client_ca.as_deref().unwrap_or("-"),
            client_ca_for = ?tls.client_ca_by_domain.keys().collect::<Vec<_>>(),
            "https on"
        );
    }
    let admins: Vec<&str> = workload.admin_spiffe_ids().map(|id| id.as_str()).collect();
    if !admins.is_empty() {
        tracing::info!(admin_spiffe_ids = ?admins, "admin spiffe ids");
    }
    for (bundle, jwt) in workload.jwt_bundles() {
        let jwt = jwt.verifier();
        tracing::info!(
            bundle,
            keys = jwt.key_count(),
            audience = jwt.audience(),
            "jwt-svid bearer tokens accepted"
        );
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "in_flight_tests.rs"]
mod in_flight_tests;
