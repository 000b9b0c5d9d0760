//! Reload of the `--policy` file on SIGHUP or when the file changes. The new file goes through
//! the same validation as at start: an invalid file never replaces a valid active policy; the
//! error is logged and the old policy stays. A successful reload is an audit record.
//!
//! A file-managed policy is reviewed where the file is (its repository's review); the API's
//! two-admin proposals are for policies managed through the API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zt_contract::{Decision, RecordKind};
use zt_ledger::RecordDraft;
use zt_policy::PolicyEngine;

use crate::state::SharedState;

/// How often the file's modification time is checked.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Who reloads, in the audit record.
const RELOADER: &str = "policy-file";

/// Watches the policy file until the server stops (the task is aborted with the server).
pub async fn watch(state: SharedState) {
    let Some(path) = state.policy.source_file().map(PathBuf::from) else {
        return;
    };
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the policy file is still watched");
            None
        }
    };
    let mut seen = modified(&path);
    let mut ticker = tokio::time::interval(POLL_EVERY);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            _ = hangup => "SIGHUP",
            _ = ticker.tick() => {
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        reload(&state, &path, why).await;
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Loads and validates the file; activates it (after its audit record) if it differs.
pub async fn reload(state: &SharedState, path: &std::path::Path, why: &str) {
    let engine = match PolicyEngine::from_file(path) {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!(error = %e, trigger = why, kept = %state.policy.current().version(), "policy reload refused; the active policy stays");
            return;
        }
    };
    let _serialized = state.admin_lock.lock().await;
    let active = state.policy.current();
    if engine.version() == active.version() {
        return;
    }
    let record = RecordDraft {
        kind: RecordKind::Admin,
        actor: RELOADER.into(),
        action: "zt.admin.policies.reload".into(),
        resource: path.display().to_string(),
        decision: Decision::Allow,
        reason: format!(
            "policy file reloaded ({why}), replacing `{}`",
            active.version()
        ),
        authenticated: true,
        policy_version: Some(engine.version().to_string()),
        ..RecordDraft::default()
    };
    if let Err(e) = state.ledger.append(record).await {
        tracing::error!(error = %e, "policy reload not recorded; the active policy stays");
        return;
    }
    match state.policy.activate(Arc::new(engine)).await {
        Ok(()) => {
            tracing::info!(trigger = why, version = %state.policy.current().version(), "policy reloaded")
        }
        Err(e) => tracing::error!(error = %e, "policy reload could not be saved"),
    }
}
