//! What every handler shares.

use std::sync::Arc;

use tokio::sync::Mutex;
use zt_ledger::Ledger;

use crate::auth::{AdminTokenSet, WorkloadAuth};
use crate::config::AuthMode;
use crate::limits::ActorLimiter;
use crate::metrics::Metrics;
use crate::policy_store::PolicyStore;
use crate::proposals::Proposals;
use crate::recent::RecentRequests;
use crate::registry::Registry;
use crate::rejections::RejectionCounter;
use crate::replay::ReplayGuard;

/// Shared server state.
pub struct AppState {
    /// The audit log.
    pub ledger: Ledger,
    /// The active policy.
    pub policy: PolicyStore,
    /// Registered agents.
    pub registry: Registry,
    /// Where the registry and the policy are kept (shared by replicas on PostgreSQL).
    pub docs: Arc<crate::state_docs::Documents>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Refusals awaiting their summary record.
    pub rejections: RejectionCounter,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// Admin credentials, reloaded when their file changes; `None` under `--auth none`.
    pub admin_tokens: Option<AdminTokenSet>,
    /// Per-actor rate limits, when on.
    pub limiter: Option<ActorLimiter>,
    /// Refused admin access per caller: past it, no more records (429).
    pub refused_admin: ActorLimiter,
    /// Used request ids.
    pub replay: ReplayGuard,
    /// Decisions that have their execution receipt.
    pub receipts: crate::receipts::ReceiptBook,
    /// Recent decision requests, for replaying policy proposals.
    pub recent: RecentRequests,
    /// Policy proposals, kept across restarts (and shared by replicas on PostgreSQL).
    pub proposals: Proposals,
    /// Whether a proposer may approve their own policy change.
    pub single_admin: bool,
    /// Serializes admin changes, so that each is audited and applied before the next starts.
    pub admin_lock: Mutex<()>,
    /// Signed checkpoints of the audit log.
    pub checkpoints: crate::checkpoints::Checkpoints,
    /// The signer of records, for its status in `/health` and `/metrics`.
    pub signer: Arc<dyn zt_ledger::Signer>,
    /// Workload identities: admin SPIFFE IDs and the JWT-SVID verifier.
    pub workload: WorkloadAuth,
    /// Turns true when the server starts draining, so that responses that would never end on
    /// their own (`GET /audit/stream`) end and let the drain finish.
    pub draining: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The state as handlers receive it.
pub(crate) type SharedState = Arc<AppState>;
