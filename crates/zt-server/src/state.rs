//! What every handler shares. The parts a background task also uses are behind their own
//! `Arc`, so that each task is given those parts only (see `tasks.rs`), never this whole
//! state.

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
pub(crate) struct AppState {
    /// The audit log.
    pub(crate) ledger: Ledger,
    /// The active policy.
    pub(crate) policy: Arc<PolicyStore>,
    /// Registered agents.
    pub(crate) registry: Arc<Registry>,
    /// Where the registry and the policy are kept (shared by replicas on PostgreSQL).
    pub(crate) docs: Arc<crate::state_docs::Documents>,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Refusals awaiting their summary record.
    pub(crate) rejections: Arc<RejectionCounter>,
    /// How callers are authenticated.
    pub(crate) auth: AuthMode,
    /// Admin credentials, reloaded when their file changes; `None` under `--auth none`.
    pub(crate) admin_tokens: Option<Arc<AdminTokenSet>>,
    /// Per-actor rate limits, when on.
    pub(crate) limiter: Option<Arc<ActorLimiter>>,
    /// Refused admin access per caller: past it, no more records (429).
    pub(crate) refused_admin: Arc<ActorLimiter>,
    /// Used request ids.
    pub(crate) replay: Arc<ReplayGuard>,
    /// Decisions that have their execution receipt.
    pub(crate) receipts: crate::receipts::ReceiptBook,
    /// Recent decision requests, for replaying policy proposals.
    pub(crate) recent: RecentRequests,
    /// Policy proposals, kept across restarts (and shared by replicas on PostgreSQL).
    pub(crate) proposals: Arc<Proposals>,
    /// Whether a proposer may approve their own policy change.
    pub(crate) single_admin: bool,
    /// Serializes admin changes, so that each is audited and applied before the next starts.
    pub(crate) admin_lock: Arc<Mutex<()>>,
    /// Signed checkpoints of the audit log.
    pub(crate) checkpoints: Arc<crate::checkpoints::Checkpoints>,
    /// The signer of records, for its status in `/health` and `/metrics`.
    pub(crate) signer: Arc<dyn zt_ledger::Signer>,
    /// Workload identities: admin SPIFFE IDs and the JWT-SVID verifier.
    pub(crate) workload: WorkloadAuth,
    /// The TLS certificate and client authorities in force, when serving HTTPS.
    pub(crate) tls: Option<Arc<crate::tls::ReloadedTls>>,
    /// Turns true when the server starts draining, so that responses that would never end on
    /// their own (`GET /audit/stream`) end and let the drain finish.
    pub(crate) draining: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The state as handlers receive it.
pub(crate) type SharedState = Arc<AppState>;
