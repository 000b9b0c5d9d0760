//! What every handler shares.

use std::sync::Arc;

use tokio::sync::Mutex;
use zt_ledger::Ledger;

use crate::config::AuthMode;
use crate::metrics::Metrics;
use crate::policy_store::PolicyStore;
use crate::registry::Registry;
use crate::rejections::RejectionCounter;

/// Shared server state.
pub struct AppState {
    /// The audit log.
    pub ledger: Ledger,
    /// The active policy.
    pub policy: PolicyStore,
    /// Registered agents.
    pub registry: Registry,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Refusals awaiting their summary record.
    pub rejections: RejectionCounter,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// Serializes admin changes, so that each is audited and applied before the next starts.
    pub admin_lock: Mutex<()>,
}

/// The state as handlers receive it.
pub type SharedState = Arc<AppState>;
