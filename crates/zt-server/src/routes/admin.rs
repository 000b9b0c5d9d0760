//! Admin routes: the agent registry and the policy. Every change is first committed to the
//! audit chain, then applied, under one lock so changes are applied in log order.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use zt_contract::{
    AllowRuleRequest, AllowRuleResponse, Decision, RecordKind, RegisterAgentRequest,
    RegisterAgentResponse,
};
use zt_ledger::clock::wire_now;
use zt_ledger::RecordDraft;

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::SharedState;

/// Who performs admin changes until admin authentication exists.
const UNAUTHENTICATED_ADMIN: &str = "unauthenticated-admin";

/// The admin router.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/agents", post(register_agent).get(list_agents))
        .route("/agents/{actor}", delete(remove_agent))
        .route("/policies", get(show_policy))
        .route("/policies/allow", post(allow_action))
}

fn admin_record(
    action: &str,
    resource: &str,
    reason: String,
    policy_version: Option<String>,
) -> RecordDraft {
    RecordDraft {
        kind: RecordKind::Admin,
        actor: UNAUTHENTICATED_ADMIN.into(),
        action: action.into(),
        resource: resource.into(),
        decision: Decision::Allow,
        reason,
        authenticated: false,
        policy_version,
        request_id: None,
        context_sha256: None,
        counts: None,
    }
}

async fn register_agent(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<RegisterAgentRequest>,
) -> Result<Response, ApiError> {
    if request.actor.is_empty() {
        return Err(ApiError::ActorRequired);
    }
    let _serialized = state.admin_lock.lock().await;
    if !state.registry.contains(&request.actor) {
        let record = admin_record(
            "zt.admin.agents.register",
            &request.actor,
            format!("agent `{}` registered", request.actor),
            None,
        );
        state.ledger.append(record).await?;
        state
            .registry
            .insert(&request.actor, wire_now())
            .map_err(|e| {
                tracing::error!(error = %e, "registry save failed after its audit record");
                ApiError::Internal
            })?;
    }
    let body = RegisterAgentResponse {
        ok: true,
        actor: request.actor,
        registered: true,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_agents(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(json!({"ok": true, "agents": state.registry.list()}))
}

async fn remove_agent(
    State(state): State<SharedState>,
    Path(actor): Path<String>,
) -> Result<Response, ApiError> {
    let _serialized = state.admin_lock.lock().await;
    if !state.registry.contains(&actor) {
        return Err(ApiError::AgentNotFound(actor));
    }
    let record = admin_record(
        "zt.admin.agents.remove",
        &actor,
        format!("agent `{actor}` removed"),
        None,
    );
    state.ledger.append(record).await?;
    state.registry.remove(&actor).map_err(|e| {
        tracing::error!(error = %e, "registry save failed after its audit record");
        ApiError::Internal
    })?;
    Ok(Json(json!({"ok": true, "actor": actor, "registered": false})).into_response())
}

async fn show_policy(State(state): State<SharedState>) -> Json<serde_json::Value> {
    let active = state.policy.current();
    Json(json!({"ok": true, "policy_version": active.version, "policy": active.policy}))
}

async fn allow_action(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<AllowRuleRequest>,
) -> Result<Response, ApiError> {
    if request.action.is_empty() {
        return Err(ApiError::ActionRequired);
    }
    let _serialized = state.admin_lock.lock().await;
    let next = state
        .policy
        .preview(|p| p.add_allow(&request.action, &request.reason));
    let record = admin_record(
        "zt.admin.policies.allow",
        &request.action,
        format!("allow rule for `{}` activated", request.action),
        Some(next.version.clone()),
    );
    state.ledger.append(record).await?;
    let policy_version = next.version.clone();
    state.policy.activate(next).map_err(|e| {
        tracing::error!(error = %e, "policy save failed after its audit record");
        ApiError::Internal
    })?;
    let body = AllowRuleResponse {
        ok: true,
        action: request.action,
        decision: Decision::Allow,
        policy_version,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
