//! Periodic work while serving: rejection summaries into the audit log (a last one when the
//! server stops), and forgetting expired request ids and idle callers' rate-limit buckets.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use zt_ledger::Ledger;

use crate::limits::ActorLimiter;
use crate::rejections::RejectionCounter;
use crate::replay::ReplayGuard;

/// How often expired request ids and idle buckets are forgotten.
const EXPIRE_EVERY: Duration = Duration::from_secs(10);

/// All the periodic work touches.
pub(crate) struct Housekeeping {
    /// Where rejection summaries are recorded.
    pub(crate) ledger: Ledger,
    /// Refusals awaiting their summary record.
    pub(crate) rejections: Arc<RejectionCounter>,
    /// Used request ids.
    pub(crate) replay: Arc<ReplayGuard>,
    /// Per-actor rate limits, when on.
    pub(crate) limiter: Option<Arc<ActorLimiter>>,
    /// Refused admin access per caller.
    pub(crate) refused_admin: Arc<ActorLimiter>,
}

/// Summarizes refusals every `summary_every` and forgets what expired; on `stop`, writes the
/// last summary and returns.
pub(crate) async fn run(
    work: Housekeeping,
    summary_every: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut summaries = tokio::time::interval(summary_every);
    let mut expiry = tokio::time::interval(EXPIRE_EVERY);
    summaries.tick().await;
    loop {
        tokio::select! {
            _ = summaries.tick() => flush_rejection_summary(&work.ledger, &work.rejections).await,
            _ = expiry.tick() => {
                work.replay.expire();
                if let Some(limiter) = &work.limiter {
                    limiter.shrink();
                }
                work.refused_admin.shrink();
            }
            _ = &mut stop => {
                flush_rejection_summary(&work.ledger, &work.rejections).await;
                return;
            }
        }
    }
}

/// Records the refusals counted since the last summary; keeps the counts if the record cannot
/// be committed, so the next summary carries them.
async fn flush_rejection_summary(ledger: &Ledger, rejections: &RejectionCounter) {
    if let Some(summary) = rejections.take_summary() {
        if let Err(e) = ledger.append(summary.clone()).await {
            tracing::warn!(error = %e, "rejection summary not committed; keeping its counts");
            rejections.restore(&summary);
        }
    }
}
