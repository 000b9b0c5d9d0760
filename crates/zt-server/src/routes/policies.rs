//! Policy routes: the active policy, reviewed proposals, and the quickstart shortcut.
//!
//! `POST /policies/proposals` validates a policy set (Cedar text, or the reference JSON
//! format) and files it; `GET /policies/proposals/{id}` shows the diff against the active set
//! and the decisions it would change on recent requests; `POST /policies/proposals/{id}/approve`
//! by a second admin activates it. With a single admin (`--auth none`, or `--single-admin`)
//! the proposer may approve, and the record says so. `POST /policies/allow` is a shortcut
//! through the same path: propose "allow this action", then approve.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use zt_contract::{AllowRuleRequest, Decision};
use zt_ledger::clock::wire_now;
use zt_policy::{ActionPolicy, PolicyEngine};

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::proposals::{impact, text_diff, Proposal, ProposalStatus};
use crate::routes::admin::{admin_record, saved};
use crate::state::SharedState;

/// How many recent requests a proposal is replayed against by default.
const DEFAULT_REPLAY: usize = 200;

/// The policy router.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/policies", get(show_policy))
        .route("/policies/allow", post(allow_action))
        .route("/policies/proposals", post(propose))
        .route("/policies/proposals/{id}", get(show_proposal))
        .route("/policies/proposals/{id}/approve", post(approve))
}

/// `POST /policies/proposals` body: exactly one of `cedar` and `policy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeRequest {
    /// A whole Cedar policy set.
    #[serde(default)]
    cedar: Option<String>,
    /// A whole policy in the reference JSON format.
    #[serde(default)]
    policy: Option<Value>,
}

async fn show_policy(State(state): State<SharedState>, _caller: AdminCaller) -> Json<Value> {
    let active = state.policy.current();
    Json(json!({
        "ok": true,
        "policy_version": active.version(),
        "policies": active.policy_count(),
        "cedar": active.source(),
    }))
}

fn proposal_view(state: &SharedState, p: &Proposal, replay: usize) -> Value {
    let active = state.policy.current();
    let changes = impact(
        &active,
        &p.engine,
        &state.registry,
        &state.recent.last(replay),
    );
    json!({
        "ok": true,
        "id": p.id,
        "status": p.status,
        "proposed_by": p.proposed_by,
        "proposed_at": p.proposed_at,
        "base_version": p.base_version,
        "policy_version": p.engine.version(),
        "stale": p.base_version != active.version(),
        "diff": text_diff(active.source(), p.engine.source()),
        "impact": {"replayed": state.recent.last(replay).len(), "changed": changes},
    })
}

/// Files a proposal (recorded in the chain) and returns it.
async fn file_proposal(
    state: &SharedState,
    caller: &AdminCaller,
    engine: PolicyEngine,
) -> Result<Proposal, ApiError> {
    let base = state.policy.current();
    let engine = Arc::new(engine);
    let proposal = state
        .proposals
        .add(&caller.name, wire_now(), base.version(), engine.clone());
    let record = admin_record(
        caller,
        "zt.admin.policies.propose",
        &proposal.id,
        format!(
            "policy proposal `{}` filed against `{}`",
            proposal.id,
            base.version()
        ),
        Some(engine.version().to_string()),
    );
    state.ledger.append(record).await?;
    Ok(proposal)
}

async fn propose(
    State(state): State<SharedState>,
    caller: AdminCaller,
    JsonBody(request): JsonBody<ProposeRequest>,
) -> Result<Response, ApiError> {
    let engine = match (request.cedar, request.policy) {
        (Some(text), None) => PolicyEngine::from_cedar(&text),
        (None, Some(json)) => ActionPolicy::from_json(&json.to_string())
            .and_then(|p| PolicyEngine::from_action_policy(&p)),
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of `cedar` and `policy`".into(),
            ))
        }
    }
    .map_err(|e| ApiError::InvalidPolicy(e.to_string()))?;
    let _serialized = state.admin_lock.lock().await;
    let proposal = file_proposal(&state, &caller, engine).await?;
    Ok((
        StatusCode::CREATED,
        Json(proposal_view(&state, &proposal, DEFAULT_REPLAY)),
    )
        .into_response())
}

async fn show_proposal(
    State(state): State<SharedState>,
    _caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let proposal = state
        .proposals
        .get(&id)
        .ok_or(ApiError::ProposalNotFound(id))?;
    Ok(Json(proposal_view(&state, &proposal, DEFAULT_REPLAY)))
}

/// Approves and activates a proposal; every check happens under the admin lock.
async fn approve_and_activate(
    state: &SharedState,
    caller: &AdminCaller,
    id: &str,
) -> Result<Proposal, ApiError> {
    let proposal = state
        .proposals
        .get(id)
        .ok_or_else(|| ApiError::ProposalNotFound(id.into()))?;
    if proposal.status != ProposalStatus::Pending {
        return Err(ApiError::ProposalClosed(id.into()));
    }
    let same_admin = proposal.proposed_by == caller.name;
    if same_admin && !state.single_admin {
        return Err(ApiError::SelfApproval);
    }
    let active = state.policy.current();
    if proposal.base_version != active.version() {
        return Err(ApiError::ProposalStale(id.into()));
    }
    let how = if same_admin {
        "approved by its proposer (single-admin mode: no second review)"
    } else {
        "approved by a second admin"
    };
    let version = proposal.engine.version().to_string();
    let approval = admin_record(
        caller,
        "zt.admin.policies.approve",
        id,
        format!("policy proposal `{id}` {how}"),
        Some(version.clone()),
    );
    state.ledger.append(approval).await?;
    let activation = admin_record(
        caller,
        "zt.admin.policies.activate",
        id,
        format!(
            "policy `{version}` activated, replacing `{}`",
            active.version()
        ),
        Some(version),
    );
    state.ledger.append(activation).await?;
    if !caller.authenticated {
        let version = proposal.engine.version();
        saved(crate::unauthenticated_state::mark_policy(&state.docs, version).await)?;
    }
    saved(state.policy.activate(proposal.engine.clone()).await)?;
    state.proposals.mark_activated(id, &caller.name);
    Ok(proposal)
}

async fn approve(
    State(state): State<SharedState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let _serialized = state.admin_lock.lock().await;
    let proposal = approve_and_activate(&state, &caller, &id).await?;
    Ok(Json(json!({
        "ok": true,
        "id": proposal.id,
        "approved_by": caller.name,
        "policy_version": proposal.engine.version(),
    })))
}

async fn allow_action(
    State(state): State<SharedState>,
    caller: AdminCaller,
    JsonBody(request): JsonBody<AllowRuleRequest>,
) -> Result<Response, ApiError> {
    if request.action.is_empty() {
        return Err(ApiError::ActionRequired);
    }
    zt_contract::names::ActionPattern::parse(&request.action)?;
    let _serialized = state.admin_lock.lock().await;
    let active = state.policy.current();
    if active.source().contains(&format!(
        "@id(\"{}\")",
        zt_policy::allow_rule_id(&request.action)
    )) {
        // Already allowed by this shortcut: nothing to change.
        let body = zt_contract::AllowRuleResponse {
            ok: true,
            action: request.action,
            decision: Decision::Allow,
            policy_version: active.version().to_string(),
        };
        return Ok((StatusCode::CREATED, Json(body)).into_response());
    }
    let text = format!(
        "{}\n{}",
        active.source(),
        zt_policy::allow_rule(&request.action, &request.reason)
    );
    let engine =
        PolicyEngine::from_cedar(&text).map_err(|e| ApiError::InvalidPolicy(e.to_string()))?;
    let proposal = file_proposal(&state, &caller, engine).await?;
    if !state.single_admin {
        let body = json!({"ok": true, "action": request.action, "proposal": proposal.id, "status": "pending",
                          "policy_version": proposal.engine.version()});
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let activated = approve_and_activate(&state, &caller, &proposal.id).await?;
    let body = zt_contract::AllowRuleResponse {
        ok: true,
        action: request.action,
        decision: Decision::Allow,
        policy_version: activated.engine.version().to_string(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
