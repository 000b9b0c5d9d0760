//! The decision path shared by `POST /actions` and the AuthZEN API: check the names, bind the
//! actor, limit, reserve the request id (released if the record does not commit), decide,
//! commit the audit record, then answer.

use std::time::Instant;

use axum::http::StatusCode;
use serde_json::Value;
use zt_contract::canonical::canonical_json;
use zt_contract::names::{ActionName, ActorName, ResourceName};
use zt_contract::{
    AuditEnvelope, Decision, DecisionRequest, DecisionResponse, Digest32, Evidence, RecordKind,
    REASON_UNREGISTERED,
};
use zt_ledger::{RecordDraft, SealedRecord};
use zt_policy::PolicyRequest;

use crate::auth::AgentCaller;
use crate::error::ApiError;
use crate::recent::RecentRequest;
use crate::replay::{replay_reason, ReplayRefusal, MAX_REQUEST_ID_BYTES};
use crate::state::AppState;

/// A decision before it is logged: outcome, reason, deciding policies, and the status it is
/// answered with.
struct Verdict {
    decision: Decision,
    reason: String,
    policies: Vec<String>,
    status: StatusCode,
}

impl Verdict {
    fn deny(reason: String, status: StatusCode) -> Self {
        Self {
            decision: Decision::Deny,
            reason,
            policies: Vec::new(),
            status,
        }
    }
}

/// Checks the request's names against their grammar (`zt_contract::names`) and puts them in
/// canonical form: the action folded to lower case, the resource normalized to NFC, the actor
/// (when given) as it is. A name outside its grammar is refused (400) before any other work.
/// Idempotent.
pub fn canonical_names(request: &mut DecisionRequest) -> Result<(), ApiError> {
    if !request.actor.is_empty() {
        ActorName::parse(&request.actor)?;
    }
    request.action = ActionName::parse(&request.action)?.into_string();
    request.resource = ResourceName::parse(&request.resource)?.into_string();
    Ok(())
}

/// Decides `request` for `caller`, commits the record, and returns the status to answer with
/// (200 allow, 403 deny, 409 replay) and the contract's response.
pub async fn decide(
    state: &AppState,
    caller: AgentCaller,
    mut request: DecisionRequest,
) -> Result<(StatusCode, DecisionResponse), ApiError> {
    let started = Instant::now();
    if caller == AgentCaller::Unauthenticated && request.actor.is_empty() {
        return Err(ApiError::ActorRequired);
    }
    if request.action.is_empty() {
        return Err(ApiError::ActionRequired);
    }
    canonical_names(&mut request)?;
    let (actor, authenticated, claimed_actor) = match caller {
        AgentCaller::Authenticated(actor) => {
            let claimed = (!request.actor.is_empty() && request.actor != actor)
                .then(|| request.actor.clone());
            (actor, true, claimed)
        }
        AgentCaller::Unauthenticated if request.actor.is_empty() => {
            return Err(ApiError::ActorRequired)
        }
        AgentCaller::Unauthenticated => (request.actor.clone(), false, None),
    };
    if request
        .request_id
        .as_ref()
        .is_some_and(|id| id.len() > MAX_REQUEST_ID_BYTES)
    {
        return Err(ApiError::InvalidRequest(format!(
            "`request_id` is longer than {MAX_REQUEST_ID_BYTES} bytes"
        )));
    }
    if let Some(limiter) = &state.limiter {
        limiter
            .check(&actor)
            .map_err(|wait| ApiError::RateLimited(wait.as_secs() + 1))?;
    }
    // The id is reserved for the actor the record names, whatever the verdict, so the live
    // guard spends exactly what reloading the log spends.
    let (replayed, reserved) = match request.request_id.as_deref() {
        None => (false, None),
        Some(id) => match state.replay.reserve(&actor, id) {
            Ok(()) => (false, Some((actor.clone(), id.to_string()))),
            Err(ReplayRefusal::AlreadyUsed) => (true, None),
            Err(ReplayRefusal::Full) => return Err(ApiError::ReplayMemoryFull),
        },
    };
    let engine = state.policy.current();
    let resource_attributes = request.resource_attributes.clone().unwrap_or_default();
    let verdict = if let Some(id) = request.request_id.as_deref().filter(|_| replayed) {
        Verdict::deny(replay_reason(id), StatusCode::CONFLICT)
    } else if let Some(claimed) = &claimed_actor {
        Verdict::deny(
            format!(
                "the request claims actor `{claimed}` but its credential authenticates `{actor}`"
            ),
            StatusCode::FORBIDDEN,
        )
    } else if let Some(attributes) = state.registry.attributes(&actor) {
        let actor_attributes = attributes.to_map();
        let mut asked = PolicyRequest::new(&actor, &request.action, &request.resource)
            .with_actor_attributes(&actor_attributes)
            .with_actor_groups(&attributes.groups)
            .with_resource_attributes(&resource_attributes);
        if let Some(context) = &request.context {
            asked = asked.with_context(context);
        }
        let decided = crate::evaluation::decide(&engine, &asked).await;
        state.recent.push(RecentRequest {
            actor: actor.clone(),
            action: request.action.clone(),
            resource: request.resource.clone(),
            resource_attributes,
            context: request.context.clone(),
        });
        Verdict {
            decision: if decided.allowed {
                Decision::Allow
            } else {
                Decision::Deny
            },
            status: if decided.allowed {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            },
            reason: decided.reason,
            policies: decided.determining_policies,
        }
    } else {
        Verdict::deny(REASON_UNREGISTERED.to_string(), StatusCode::FORBIDDEN)
    };
    let context_sha256 = request
        .context
        .map(|c| Digest32::sha256(canonical_json(&Value::Object(c)).as_bytes()).to_hex());
    let draft = RecordDraft {
        kind: RecordKind::Decision,
        actor,
        action: request.action,
        resource: request.resource,
        decision: verdict.decision,
        reason: verdict.reason,
        authenticated,
        claimed_actor,
        policies: (!verdict.policies.is_empty()).then_some(verdict.policies),
        policy_version: Some(engine.version().to_string()),
        request_id: request.request_id,
        context_sha256,
        counts: None,
    };
    let record = match state.ledger.append(draft).await {
        Ok(record) => record,
        Err(e) => {
            // Not committed: the id is not spent, so the retry a 503 invites is not a replay.
            // (A request abandoned while its record commits keeps its reservation.)
            if let Some((actor, id)) = reserved {
                state.replay.release(&actor, &id);
            }
            return Err(e.into());
        }
    };
    let allowed = record.body.decision == Decision::Allow;
    state.metrics.decision(allowed, started.elapsed());
    Ok((verdict.status, response_for(record)))
}

/// The contract's response for a committed decision record: every hashed field is echoed,
/// the four envelope keys in `audit`, the extensions in `evidence`.
fn response_for(record: SealedRecord) -> DecisionResponse {
    let b = record.body;
    DecisionResponse {
        ok: b.decision == Decision::Allow,
        actor: b.actor,
        action: b.action,
        resource: b.resource,
        decision: b.decision,
        reason: b.reason,
        audit: AuditEnvelope {
            timestamp: b.timestamp,
            previous_hash: b.previous_hash,
            current_hash: record.current_hash.to_hex(),
            kms_signature: record.signature,
        },
        evidence: Evidence {
            kind: b.kind,
            seq: b.seq,
            authenticated: b.authenticated,
            claimed_actor: b.claimed_actor,
            policies: b.policies,
            policy_version: b.policy_version,
            request_id: b.request_id,
            context_sha256: b.context_sha256,
        },
    }
}
