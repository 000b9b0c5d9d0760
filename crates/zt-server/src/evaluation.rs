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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use zt_policy::{PolicyDecision, PolicyEngine, PolicyError, PolicyRequest};

/// Decisions evaluating at most this many policies run on the async worker.
pub(crate) const INLINE_POLICIES: usize = 64;
/// At most this many costly decisions evaluate at once on the blocking pool.
pub(crate) const BLOCKING_DECISIONS: usize = 4;

static BLOCKING: Semaphore = Semaphore::const_new(BLOCKING_DECISIONS);

/// Decides `request` inline, or, when costly, on the bounded blocking pool.
pub(crate) async fn decide(
    engine: &Arc<PolicyEngine>,
    request: &PolicyRequest<'_>,
) -> PolicyDecision {
    if engine.policy_count() <= INLINE_POLICIES
        || engine.policies_in_scope(request) <= INLINE_POLICIES
    {
        return engine.decide(request);
    }
    let Ok(_permit) = BLOCKING.acquire().await else {
        return deny_unevaluated();
    };
    let owned = Owned::from(request);
    let engine = Arc::clone(engine);
    tokio::task::spawn_blocking(move || engine.decide(&owned.borrowed()))
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

/// A request that owns its parts, to move to another thread.
struct Owned {
    actor: String,
    actor_attributes: BTreeMap<String, String>,
    actor_groups: Vec<String>,
    action: String,
    resource: String,
    resource_attributes: BTreeMap<String, String>,
    context: Option<Map<String, Value>>,
    request_time: SystemTime,
}

impl From<&PolicyRequest<'_>> for Owned {
    fn from(r: &PolicyRequest<'_>) -> Self {
        Self {
            actor: r.actor.to_string(),
            actor_attributes: r.actor_attributes.clone(),
            actor_groups: r.actor_groups.to_vec(),
            action: r.action.to_string(),
            resource: r.resource.to_string(),
            resource_attributes: r.resource_attributes.clone(),
            context: r.context.cloned(),
            request_time: r.request_time,
        }
    }
}

impl Owned {
    fn borrowed(&self) -> PolicyRequest<'_> {
        let mut request = PolicyRequest::new(&self.actor, &self.action, &self.resource)
            .with_actor_attributes(&self.actor_attributes)
            .with_actor_groups(&self.actor_groups)
            .with_resource_attributes(&self.resource_attributes)
            .at(self.request_time);
        if let Some(context) = &self.context {
            request = request.with_context(context);
        }
        request
    }
}
