//! `POST /actions`: authenticate, decide, commit the audit record, then answer.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use zt_contract::canonical::canonical_json;
use zt_contract::{
    AuditEnvelope, Decision, DecisionRequest, DecisionResponse, Digest32, Evidence, RecordKind,
    REASON_UNREGISTERED,
};
use zt_ledger::{RecordDraft, SealedRecord};

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::SharedState;

/// The agent-facing router.
pub fn router() -> Router<SharedState> {
    Router::new().route("/actions", post(decide))
}

async fn decide(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<DecisionRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    if request.actor.is_empty() {
        return Err(ApiError::ActorRequired);
    }
    if request.action.is_empty() {
        return Err(ApiError::ActionRequired);
    }
    let policy = state.policy.current();
    let (decision, reason) = if state.registry.contains(&request.actor) {
        let verdict = policy.policy.evaluate(&request.action);
        let decision = if verdict.allowed {
            Decision::Allow
        } else {
            Decision::Deny
        };
        (decision, verdict.reason)
    } else {
        (Decision::Deny, REASON_UNREGISTERED.to_string())
    };
    let context_sha256 = request
        .context
        .map(|c| Digest32::sha256(canonical_json(&Value::Object(c)).as_bytes()).to_hex());
    let draft = RecordDraft {
        kind: RecordKind::Decision,
        actor: request.actor,
        action: request.action,
        resource: request.resource,
        decision,
        reason,
        authenticated: false,
        policy_version: Some(policy.version.clone()),
        request_id: request.request_id,
        context_sha256,
        counts: None,
    };
    let record = state.ledger.append(draft).await?;
    let allowed = record.body.decision == Decision::Allow;
    state.metrics.decision(allowed, started.elapsed());
    let status = if allowed {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    Ok((status, Json(response_for(record))).into_response())
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
            policy_version: b.policy_version,
            request_id: b.request_id,
            context_sha256: b.context_sha256,
        },
    }
}
