//! Policy routes: the active policy, reviewed proposals, and the quickstart shortcut.
//!
//! `POST /policies/proposals` validates a policy set (Cedar text, or the reference JSON
//! format) and files it; `GET /policies/proposals/{id}` shows the diff against the active set
//! and the decisions it would change on recent requests; `POST /policies/proposals/{id}/approve`
//! by a second admin activates it. With a single admin (`--auth none`, or `--single-admin`)
//! the proposer may approve, and the record says so. `DELETE /policies/proposals/{id}` withdraws
//! a pending proposal (any admin). `POST /policies/allow` is a shortcut
//! through the same path: propose "allow this action", then approve.
//!
//! When `--policy FILE` owns the policy, the routes that change it answer 409 naming the
//! file; the reading routes keep working.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use zt_contract::{AdminAction, AllowRuleRequest, Decision};
use zt_ledger::clock::wire_now;
use zt_policy::{impact, text_diff, ActionPolicy, PolicyEngine};

use super::admin::admin_turn;
use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::evaluation;
use crate::extract::JsonBody;
use crate::policy_store::PolicyStoreError;
use crate::proposals::{Proposal, ProposalStatus, MAX_PROPOSALS_KEPT};
use crate::routes::admin::{admin_record, admin_refusal, refuse_after_claim, saved};
use crate::state::SharedState;

/// How many recent requests a proposal is replayed against by default.
const DEFAULT_REPLAY: usize = 200;

/// The policy router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/policies", get(show_policy))
        .route("/policies/allow", post(allow_action))
        .route("/policies/proposals", post(propose))
        .route(
            "/policies/proposals/{id}",
            get(show_proposal).delete(withdraw),
        )
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
        "policy_file": state.policy.source_file().map(|p| p.display().to_string()),
    }))
}

/// Refuses a policy change through the API when `--policy FILE` owns the policy: the file
/// would silently replace the change at its next reload.
fn api_may_change_policy(state: &SharedState) -> Result<(), ApiError> {
    match state.policy.source_file() {
        Some(file) => Err(ApiError::PolicyManagedByFile(file.display().to_string())),
        None => Ok(()),
    }
}

/// Who may approve a proposal by `proposer`: every other admin (names from the admin token
/// file, admin SPIFFE IDs), or the proposer alone in single-admin mode.
fn approvers(state: &SharedState, proposer: &str) -> Vec<String> {
    if state.single_admin {
        return vec![proposer.to_string()];
    }
    let mut names: Vec<String> = state
        .admin_tokens
        .as_ref()
        .map(|a| a.names().into_iter().collect())
        .unwrap_or_default();
    names.extend(state.workload.admin_spiffe_ids().map(|id| id.to_string()));
    names.retain(|name| name != proposer);
    names.sort();
    names.dedup();
    names
}

/// What happens next to a pending proposal, in words.
fn next_step(p: &Proposal, approvers: &[String]) -> String {
    let route = format!("POST /policies/proposals/{}/approve", p.id);
    if approvers.is_empty() {
        return format!(
            "no other admin can approve it: add one with `zt admin add NAME` on the server's \
             admin token file (picked up without a restart), who then calls `{route}`"
        );
    }
    format!(
        "an admin among {} approves it: `{route}`",
        approvers.join(", ")
    )
}

fn proposal_view(state: &SharedState, p: &Proposal, replay: usize) -> Value {
    let active = state.policy.current();
    let mut replayed = state.recent.last(replay);
    for request in &mut replayed {
        let registered = state
            .registry
            .attributes(&request.actor)
            .unwrap_or_default();
        request.actor_attributes = registered.to_map();
        request.actor_groups = registered.groups;
    }
    let changes: Vec<Value> = impact(&active, &p.engine, &replayed)
        .into_iter()
        .map(|c| {
            json!({
                "actor": c.request.actor,
                "action": c.request.action,
                "resource": c.request.resource,
                "active": c.outcomes.before,
                "proposed": c.outcomes.after,
            })
        })
        .collect();
    let stale = p.base_version != active.version();
    let mut view = json!({
        "ok": true,
        "id": p.id,
        "status": p.status,
        "proposed_by": p.proposed_by,
        "proposed_at": p.proposed_at,
        "base_version": p.base_version,
        "policy_version": p.engine.version(),
        "stale": stale,
        "diff": text_diff(active.source(), p.engine.source(), "active", "proposed"),
        "impact": {"replayed": replayed.len(), "changed": changes},
    });
    if let Some(fields) = view
        .as_object_mut()
        .filter(|_| p.status == ProposalStatus::Pending && !stale)
    {
        let approvers = approvers(state, &p.proposed_by);
        fields.insert("next".into(), json!(next_step(p, &approvers)));
        fields.insert("approvers".into(), json!(approvers));
    }
    view
}

/// Files a proposal (recorded in the chain; its id is that record's seq) and returns it.
async fn file_proposal(
    state: &SharedState,
    caller: &AdminCaller,
    engine: PolicyEngine,
) -> Result<Proposal, ApiError> {
    let base = state.policy.current();
    saved(state.proposals.refresh().await)?;
    if !state.proposals.has_room(base.version()) {
        return Err(ApiError::TooManyProposals);
    }
    let engine = Arc::new(engine);
    let record = admin_record(
        caller,
        AdminAction::PoliciesPropose,
        "policy proposal",
        format!(
            "policy proposal filed against `{}`; its id is `prop-` and this record's seq",
            base.version()
        ),
    )
    .with_policy_version(Some(engine.version().to_string()));
    let sealed = state.ledger.append(record).await?;
    let id = crate::proposals::proposal_id(sealed.body.seq);
    let added = state
        .proposals
        .add(
            sealed.body.seq,
            &caller.name,
            wire_now(),
            base.version(),
            engine,
        )
        .await;
    // The filing record is in the log: if the proposal is not kept after all, the log says so
    // right after it, so that no id names a proposal that never existed.
    let (why, error) = match added {
        Ok(Some(proposal)) => return Ok(proposal),
        Ok(None) => (
            format!("{MAX_PROPOSALS_KEPT} proposals are open, the most kept"),
            ApiError::TooManyProposals,
        ),
        Err(e) => {
            tracing::error!(error = %e, "saving a proposal failed after its audit record");
            ("it could not be saved".to_string(), ApiError::Internal)
        }
    };
    let refused = admin_refusal(
        caller,
        AdminAction::PoliciesPropose,
        &id,
        format!("policy proposal `{id}` not kept: {why}"),
    );
    refuse_after_claim(state, refused, || error).await
}

async fn propose(
    State(state): State<SharedState>,
    caller: AdminCaller,
    JsonBody(request): JsonBody<ProposeRequest>,
) -> Result<Response, ApiError> {
    api_may_change_policy(&state)?;
    let engine = match (request.cedar, request.policy) {
        (Some(text), None) => evaluation::load(move || PolicyEngine::from_cedar(&text)).await,
        (None, Some(json)) => {
            let json = json.to_string();
            evaluation::load(move || {
                ActionPolicy::from_json(&json).and_then(|p| PolicyEngine::from_action_policy(&p))
            })
            .await
        }
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of `cedar` and `policy`".into(),
            ))
        }
    }
    .map_err(|e| ApiError::InvalidPolicy(e.to_string()))?;
    let _serialized = admin_turn(&state, &caller).await?;
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
    saved(state.proposals.refresh().await)?;
    let proposal = state
        .proposals
        .get(&id)
        .ok_or(ApiError::ProposalNotFound(id))?;
    Ok(Json(proposal_view(&state, &proposal, DEFAULT_REPLAY)))
}

/// Withdraws a pending proposal (any admin: its proposer, or a reviewer turning it down). The
/// withdrawal is recorded in the chain first, then the proposal is forgotten; an activated
/// one is history and stays (409).
async fn withdraw(
    State(state): State<SharedState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let _serialized = admin_turn(&state, &caller).await?;
    saved(state.proposals.refresh().await)?;
    let proposal = state
        .proposals
        .get(&id)
        .ok_or(ApiError::ProposalNotFound(id))?;
    let id = proposal.id.as_str();
    if proposal.status != ProposalStatus::Pending {
        return Err(ApiError::ProposalClosed(id.into()));
    }
    let record = admin_record(
        &caller,
        AdminAction::PoliciesWithdraw,
        id,
        format!(
            "policy proposal `{id}` by `{}` withdrawn",
            proposal.proposed_by
        ),
    )
    .with_policy_version(Some(proposal.engine.version().to_string()));
    state.ledger.append(record).await?;
    // Removed only if still pending in the store: an approval on another replica may have
    // taken it first (then it stays, and the log says the withdrawal did not happen).
    if !saved(state.proposals.remove(id).await)? {
        let refused = admin_refusal(
            &caller,
            AdminAction::PoliciesWithdraw,
            id,
            format!("policy proposal `{id}` not withdrawn: another server activated or withdrew it first"),
        )
        .with_policy_version(Some(proposal.engine.version().to_string()));
        return refuse_after_claim(&state, refused, || ApiError::ProposalClosed(id.into())).await;
    }
    Ok(Json(json!({
        "ok": true,
        "id": id,
        "withdrawn_by": caller.name,
    })))
}

/// Approves and activates a proposal; every check happens under the admin lock. The records
/// name the proposal's canonical id.
async fn approve_and_activate(
    state: &SharedState,
    caller: &AdminCaller,
    id: &str,
) -> Result<Proposal, ApiError> {
    saved(state.proposals.refresh().await)?;
    let proposal = state
        .proposals
        .get(id)
        .ok_or_else(|| ApiError::ProposalNotFound(id.into()))?;
    let id = proposal.id.as_str();
    if proposal.status != ProposalStatus::Pending {
        return Err(ApiError::ProposalClosed(id.into()));
    }
    let same_admin = proposal.proposed_by == caller.name;
    if same_admin && !state.single_admin {
        return Err(ApiError::SelfApproval);
    }
    // The policy in force as stored, not as this server last polled it: another replica may
    // have activated one since.
    saved(state.policy.reload_if_newer(None).await)?;
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
        AdminAction::PoliciesApprove,
        id,
        format!("policy proposal `{id}` {how}"),
    )
    .with_policy_version(Some(version.clone()));
    state.ledger.append(approval).await?;
    let activation = admin_record(
        caller,
        AdminAction::PoliciesActivate,
        id,
        format!(
            "policy `{version}` activated, replacing `{}`",
            active.version()
        ),
    )
    .with_policy_version(Some(version));
    state.ledger.append(activation).await?;
    if !caller.authenticated {
        let version = proposal.engine.version();
        saved(crate::unauthenticated_state::mark_policy(&state.docs, version).await)?;
    }
    let version = proposal.engine.version().to_string();
    // Of an approval and a withdrawal racing on two replicas, the one that changes the stored
    // proposal first wins: it is marked activated only if still pending there, and before its
    // policy is activated.
    if !saved(state.proposals.mark_activated(id, &caller.name).await)? {
        let refused = admin_refusal(
            caller,
            AdminAction::PoliciesActivate,
            id,
            format!("policy `{version}` not activated: another server withdrew or activated proposal `{id}` first"),
        )
        .with_policy_version(Some(version));
        return refuse_after_claim(state, refused, || ApiError::ProposalClosed(id.into())).await;
    }
    match state
        .policy
        .activate_over(proposal.engine.clone(), &proposal.base_version)
        .await
    {
        Ok(()) => Ok(proposal),
        // Another replica activated a policy between the check above and the save: the
        // log says so after the activation it already holds, and the proposal is pending
        // again (stale: it is refused from now on).
        Err(PolicyStoreError::Superseded { current, .. }) => {
            saved(state.proposals.unmark_activated(id, &caller.name).await)?;
            let refused = admin_refusal(
                caller,
                AdminAction::PoliciesActivate,
                id,
                format!(
                    "policy `{version}` not activated: another server activated `{current}` first; proposal `{id}` is stale"
                ),
            )
            .with_policy_version(Some(version));
            refuse_after_claim(state, refused, || ApiError::ProposalStale(id.into())).await
        }
        Err(e) => {
            // The policy was not saved: the proposal is not activated either.
            let _ = state.proposals.unmark_activated(id, &caller.name).await;
            saved(Err(e))
        }
    }
}

async fn approve(
    State(state): State<SharedState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    api_may_change_policy(&state)?;
    let _serialized = admin_turn(&state, &caller).await?;
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
    api_may_change_policy(&state)?;
    let invalid = |e: zt_policy::PolicyError| ApiError::InvalidPolicy(e.to_string());
    let id = zt_policy::allow_rule_id(&request.action);
    let rule = zt_policy::allow_rule(&request.action, &request.reason);
    let wanted = PolicyEngine::from_cedar(&rule).map_err(invalid)?;
    let _serialized = admin_turn(&state, &caller).await?;
    let active = state.policy.current();
    // Compared as parsed policies (by their parsed `@id` and canonical text), never as
    // escaped source text.
    if let Some(existing) = active.policy_text(&id) {
        if Some(existing) != wanted.policy_text(&id) {
            return Err(ApiError::PolicyIdTaken(id));
        }
        // Already allowed by this shortcut: nothing to change.
        let body = zt_contract::AllowRuleResponse {
            ok: true,
            action: request.action,
            decision: Decision::Allow,
            policy_version: active.version().to_string(),
        };
        return Ok((StatusCode::CREATED, Json(body)).into_response());
    }
    let text = format!("{}\n{rule}", active.source());
    let engine = evaluation::load(move || PolicyEngine::from_cedar(&text))
        .await
        .map_err(invalid)?;
    let proposal = file_proposal(&state, &caller, engine).await?;
    if !state.single_admin {
        let approvers = approvers(&state, &caller.name);
        let body = json!({
            "ok": true,
            "action": request.action,
            "status": "pending",
            "proposal": proposal.id,
            "proposed_policy_version": proposal.engine.version(),
            "active_policy_version": active.version(),
            "approvers": approvers,
            "next": next_step(&proposal, &approvers),
        });
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
