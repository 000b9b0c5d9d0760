//! Policy work that must not stall the async workers: a costly decision, and loading a policy
//! set.
//!
//! Most decisions evaluate a handful of policies (the index files each policy under the
//! action, agent, group and resource its scope names) and run inline: a thread hop would
//! cost more than the decision. A decision whose in-scope policies exceed
//! [`INLINE_POLICIES`] (broad policies with conditions, many of them on one action) runs on
//! the blocking pool instead, at most [`BLOCKING_DECISIONS`] at once; the others wait for a
//! permit without holding a worker. Loading (parsing, validating, indexing) is linear in
//! the set and takes seconds at 100,000 policies, so every load on the server goes through
//! [`load`], and the result is swapped in whole.

use std::sync::Arc;

use tokio::sync::Semaphore;
use zt_policy::{PolicyDecision, PolicyEngine, PolicyError, PolicyRequest, Scoped};

/// Decisions evaluating at most this many policies run on the async worker.
pub(crate) const INLINE_POLICIES: usize = 64;
/// At most this many costly decisions evaluate at once on the blocking pool.
pub(crate) const BLOCKING_DECISIONS: usize = 4;

static BLOCKING: Semaphore = Semaphore::const_new(BLOCKING_DECISIONS);

/// Decides `request` inline, or, when costly, on the bounded blocking pool. The request is
/// scoped once (its names checked, its policies found in the index): the count chooses where
/// it runs, and the same scope is decided there.
pub(crate) async fn decide(
    engine: &Arc<PolicyEngine>,
    request: &PolicyRequest<'_>,
) -> PolicyDecision {
    if engine.policy_count() <= INLINE_POLICIES {
        return engine.decide(request);
    }
    let scoped = Scoped::new(Arc::clone(engine), request);
    if scoped.len() <= INLINE_POLICIES {
        return scoped.decide();
    }
    let Ok(_permit) = BLOCKING.acquire().await else {
        return deny_unevaluated();
    };
    let scoped = scoped.into_owned();
    tokio::task::spawn_blocking(move || scoped.decide())
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "a policy decision failed on the blocking pool");
            deny_unevaluated()
        })
}

/// Loads a policy set on the blocking pool (`work` parses, validates and indexes it).
pub(crate) async fn load(
    work: impl FnOnce() -> Result<PolicyEngine, PolicyError> + Send + 'static,
) -> Result<PolicyEngine, PolicyError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(PolicyError::Internal(format!(
            "loading the policy failed: {e}"
        )))
    })
}

fn deny_unevaluated() -> PolicyDecision {
    PolicyDecision {
        allowed: false,
        reason: "the policy decision could not be evaluated, so the request is denied".into(),
        determining_policies: Vec::new(),
        errors: Vec::new(),
    }
}

#[cfg(test)]
#[path = "evaluation_tests.rs"]
mod tests;
