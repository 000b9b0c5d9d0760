//! Start-up, serving and orderly shutdown.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Mutex;
use zt_ledger::committer::LedgerConfig;
use zt_ledger::{AuditStore, Ledger, LedgerWorker, LocalKeySigner, Signer, SqliteStore};

use crate::config::{AuthMode, ServerConfig};
use crate::lock::DataDirLock;
use crate::metrics::Metrics;
use crate::policy_store::PolicyStore;
use crate::registry::Registry;
use crate::rejections::RejectionCounter;
use crate::routes::router;
use crate::state::{AppState, SharedState};

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
    /// The audit store could not be opened or is corrupt.
    #[error(transparent)]
    Store(#[from] zt_ledger::StoreError),
    /// The registry could not be loaded.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] crate::policy_store::PolicyStoreError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(std::io::Error),
}

/// A started control plane, not yet serving: its shared state, the audit committer and the
/// data directory's lock, which must outlive both.
pub struct Started {
    /// What every handler shares.
    pub state: SharedState,
    /// The audit committer; join it after the state is dropped.
    pub worker: LedgerWorker,
    /// The single-writer lock.
    pub lock: DataDirLock,
}

/// Prepares the data directory, takes its lock, loads the key, opens and checks the audit
/// log, and loads the registry and policy.
pub fn start(config: &ServerConfig) -> Result<Started, ServerError> {
    let data_dir = config.data_dir.clone();
    let shown = data_dir.display().to_string();
    std::fs::create_dir_all(&data_dir).map_err(|e| ServerError::DataDir(shown.clone(), e))?;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ServerError::DataDir(shown.clone(), e))?;
    let lock = DataDirLock::acquire(&data_dir)?;

    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(&data_dir)?);
    let db = SqliteStore::path_in(&data_dir);
    let store = SqliteStore::open(&db)?;
    let metrics = Arc::new(Metrics::default());
    let observer_metrics = metrics.clone();
    let (ledger, worker) = Ledger::start(
        Box::new(store),
        Box::new(move || Ok(Box::new(SqliteStore::open_read_only(&db)?) as Box<dyn AuditStore>)),
        signer.clone(),
        LedgerConfig {
            queue_capacity: config.queue_capacity,
        },
        Some(Box::new(move |s| {
            observer_metrics.commit(s.records, s.duration, s.head_seq)
        })),
    )?;
    metrics.set_chain_length(ledger.head().map_or(0, |h| h.seq + 1));

    let state: SharedState = Arc::new(AppState {
        ledger,
        policy: PolicyStore::load(&data_dir, config.policy_file.as_deref())?,
        registry: Registry::load(&data_dir)?,
        metrics,
        rejections: RejectionCounter::default(),
        auth: config.auth,
        admin_lock: Mutex::new(()),
    });
    tracing::info!(
        data_dir = %shown,
        key_id = signer.key_id(),
        records = state.ledger.head().map_or(0, |h| h.seq + 1),
        policy_version = %state.policy.current().version,
        "zt control plane started"
    );
    Ok(Started {
        state,
        worker,
        lock,
    })
}

/// Runs the control plane on `listener` until `shutdown` resolves, then drains: stops
/// accepting, lets in-flight requests finish (their records commit), writes the last
/// rejection summary, and waits for the audit committer to exit.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let Started {
        state,
        worker,
        lock,
    } = start(&config)?;
    let addr = listener.local_addr().map_err(ServerError::Io)?;
    tracing::info!(listen = %addr, "zt control plane ready");
    if config.auth == AuthMode::DangerousNone {
        tracing::warn!("AUTHENTICATION IS OFF (--auth none): any caller may claim any registered actor; every record says authenticated=false");
    }

    let (stop_summaries, summaries_stopped) = tokio::sync::oneshot::channel();
    let summaries = tokio::spawn(write_rejection_summaries(
        state.clone(),
        config.rejection_summary_interval,
        summaries_stopped,
    ));
    let served = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_summaries.send(());
    let _ = summaries.await;
    flush_rejection_summary(&state).await;
    drop(state);
    // Every ledger handle is gone once the router and the state are dropped; the committer
    // then commits what is queued and exits.
    tokio::task::spawn_blocking(move || worker.join())
        .await
        .ok();
    drop(lock);
    tracing::info!("zt control plane stopped");
    served.map_err(ServerError::Io)
}

async fn write_rejection_summaries(
    state: SharedState,
    every: std::time::Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => flush_rejection_summary(&state).await,
            _ = &mut stop => return,
        }
    }
}

async fn flush_rejection_summary(state: &SharedState) {
    if let Some(summary) = state.rejections.take_summary() {
        if let Err(e) = state.ledger.append(summary.clone()).await {
            tracing::warn!(error = %e, "rejection summary not committed; keeping its counts");
            state.rejections.restore(&summary);
        }
    }
}
