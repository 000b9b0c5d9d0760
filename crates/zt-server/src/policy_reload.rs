//! Reload of the `--policy` file on SIGHUP or when the file changes (see [`crate::reload`]).
//! The new file goes through the same validation as at start: an invalid file never replaces a
//! valid active policy; the error is logged, reported by `/health` until a reload succeeds, and
//! the old policy stays. A successful reload is an audit record.
//!
//! A file-managed policy is reviewed where the file is (its repository's review), and the
//! API's policy changes are refused (409) so that the file stays the one source of truth; the
//! API's two-admin proposals are for policies managed through the API.

use std::sync::Arc;
use std::time::SystemTime;

use zt_contract::{AdminAction, RecordDraft};
use zt_policy::PolicyEngine;

use crate::state::SharedState;

/// Who reloads, in the audit record.
const RELOADER: &str = "policy-file";

/// The file's modification time, to notice a change.
pub(crate) fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Loads and validates the file; activates it (after its audit record) if it differs.
pub(crate) async fn reload(state: &SharedState, path: &std::path::Path, why: &str) {
    let file = path.to_path_buf();
    let engine = match crate::evaluation::load(move || PolicyEngine::from_file(&file)).await {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!(error = %e, trigger = why, kept = %state.policy.current().version(), "policy reload refused; the active policy stays");
            state.policy.set_file_error(Some(e.to_string()));
            return;
        }
    };
    state.policy.set_file_error(None);
    let _serialized = state.admin_lock.lock().await;
    let active = state.policy.current();
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
    if let Err(e) = state.ledger.append(record).await {
        tracing::error!(error = %e, "policy reload not recorded; the active policy stays");
        state
            .policy
            .set_file_error(Some(format!("the reload could not be recorded: {e}")));
        return;
    }
    match state.policy.activate(Arc::new(engine)).await {
        Ok(()) => {
            tracing::info!(trigger = why, version = %state.policy.current().version(), "policy reloaded")
        }
        Err(e) => {
            tracing::error!(error = %e, "policy reload could not be saved");
            state
                .policy
                .set_file_error(Some(format!("the reload could not be saved: {e}")));
        }
    }
}
