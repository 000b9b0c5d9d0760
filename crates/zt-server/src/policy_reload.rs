//! Reload of the `--policy` file on SIGHUP or when the file changes (see [`crate::reload`]).
//! The new file goes through the same validation as at start: an invalid file never replaces a
//! valid active policy; the error is logged, reported by `/health` until a reload succeeds, and
//! the old policy stays. A successful reload is an audit record.
//!
//! A file-managed policy is reviewed where the file is (its repository's review), and the
//! API's policy changes are refused (409) so that the file stays the one source of truth; the
//! API's two-admin proposals are for policies managed through the API.

use std::sync::Arc;

use tokio::sync::Mutex;
use zt_contract::{AdminAction, RecordDraft};
use zt_ledger::Ledger;
use zt_policy::PolicyEngine;

use crate::policy_store::{FileAtStart, PolicyStore, PolicyStoreError};

/// Who reloads, in the audit record.
pub(crate) const RELOADER: &str = "policy-file";

/// All a reload touches: the policy it replaces, the lock that orders it among admin
/// changes, and the log its record goes to.
pub(crate) struct Reloader {
    /// The active policy.
    pub(crate) policy: Arc<PolicyStore>,
    /// The server's admin lock (see `AppState::admin_lock`).
    pub(crate) admin_lock: Arc<Mutex<()>>,
    /// The audit log.
    pub(crate) ledger: Ledger,
}

/// Loads and validates the file; activates it (after its audit record) if it differs.
pub(crate) async fn reload(reloader: &Reloader, path: &std::path::Path, why: &str) {
    let file = path.to_path_buf();
    let engine = match crate::evaluation::load(move || PolicyEngine::from_file(&file)).await {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!(error = %e, trigger = why, kept = %reloader.policy.current().version(), "policy reload refused; the active policy stays");
            reloader.policy.set_file_error(Some(e.to_string()));
            return;
        }
    };
    reloader.policy.set_file_error(None);
    let _serialized = reloader.admin_lock.lock().await;
    let active = reloader.policy.current();
    if engine.version() == active.version() {
        tracing::info!(trigger = why, version = %active.version(), "policy file unchanged");
        return;
    }
    let record = RecordDraft::admin(
        RELOADER,
        true,
        AdminAction::PoliciesReload,
        path.display().to_string(),
        format!(
            "policy file reloaded ({why}), replacing `{}`",
            active.version()
        ),
    )
    .with_policy_version(Some(engine.version().to_string()));
    if let Err(e) = reloader.ledger.append(record).await {
        tracing::error!(error = %e, "policy reload not recorded; the active policy stays");
        reloader
            .policy
            .set_file_error(Some(format!("the reload could not be recorded: {e}")));
        return;
    }
    match reloader.policy.activate(Arc::new(engine)).await {
        Ok(()) => {
            tracing::info!(trigger = why, version = %reloader.policy.current().version(), "policy reloaded")
        }
        Err(e) => {
            tracing::error!(error = %e, "policy reload could not be saved");
            reloader
                .policy
                .set_file_error(Some(format!("the reload could not be saved: {e}")));
        }
    }
}

/// Records that the `--policy` file given at start replaces the policy stored before it, then
/// stores it; the server does not start if either fails (the stored policy then stays).
pub(crate) async fn record_file_at_start(
    policy: &PolicyStore,
    ledger: &Ledger,
    at_start: FileAtStart,
) -> Result<(), String> {
    let version = policy.current().version().to_string();
    let record = RecordDraft::admin(
        RELOADER,
        true,
        AdminAction::PoliciesReload,
        at_start.path.display().to_string(),
        format!(
            "policy file loaded at start, replacing `{}`",
            at_start.replaced
        ),
    )
    .with_policy_version(Some(version.clone()));
    ledger
        .append(record)
        .await
        .map_err(|e| format!("its audit record could not be written: {e}"))?;
    policy
        .store_file_at_start()
        .await
        .map_err(|e: PolicyStoreError| format!("it could not be stored: {e}"))?;
    tracing::info!(%version, replaced = %at_start.replaced, "policy file loaded at start, replacing the stored policy");
    Ok(())
}
