//! Admin routes of the agent registry. Every change is first committed to the
//! audit chain, then applied, under one lock so changes are applied in log order; a revocation
//! (a token rotated, an agent removed) is saved revoked before it is recorded, and put back if
//! its record fails, so the log never says revoked what the store does not. Every route here
//! takes an [`AdminCaller`]: an admin credential, never an agent's.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde_json::json;
use zt_contract::names::ActorName;
use zt_contract::{
    AdminAction, Decision, RecordDraft, RegisterAgentRequest, RegisterAgentResponse, TokenResponse,
};
use zt_ledger::clock::wire_now;

use crate::auth::tokens::{new_token, token_hash, AGENT_TOKEN_PREFIX};
use crate::auth::AdminCaller;
use crate::config::AuthMode;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::registry::{AgentAttributes, AgentEntry, RegistryError, Revocation};
use crate::state::SharedState;

/// The admin router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/agents", post(register_agent).get(list_agents))
        .route("/agents/{actor}", delete(remove_agent))
        .route("/agents/{actor}/token", post(rotate_token))
        .route(
            "/agents/{actor}/groups",
            put(super::admin_groups::set_groups),
        )
}

/// An admin change, attributed to `caller`.
pub(crate) fn admin_record(
    caller: &AdminCaller,
    action: AdminAction,
    resource: &str,
    reason: String,
) -> RecordDraft {
    RecordDraft::admin(
        caller.name.clone(),
        caller.authenticated,
        action,
        resource,
        reason,
    )
}

/// The record of an admin act whose record was committed but which did not take effect (another
/// server changed the same state first): the log says so right after the claim.
pub(crate) fn admin_refusal(
    caller: &AdminCaller,
    action: AdminAction,
    resource: &str,
    reason: String,
) -> RecordDraft {
    let mut record = admin_record(caller, action, resource, reason);
    record.decision = Decision::Deny;
    record
}

/// Appends `refusal` (an [`admin_refusal`]) to the log, then fails with the error `error`
/// builds, from the state after the append; fails with the log's error instead if the refusal
/// cannot be appended.
pub(crate) async fn refuse_after_claim<T>(
    state: &SharedState,
    refusal: RecordDraft,
    error: impl FnOnce() -> ApiError,
) -> Result<T, ApiError> {
    state.ledger.append(refusal).await?;
    Err(error())
}

/// Takes the admin lock (see `AppState::admin_lock`) for `caller`, asking again whether its
/// credential still makes it this admin: it may have been removed from the admin token file,
/// or its certificate or JWT-SVID may have expired, while its request waited for the lock.
pub(crate) async fn admin_turn<'s>(
    state: &'s SharedState,
    caller: &AdminCaller,
) -> Result<tokio::sync::MutexGuard<'s, ()>, ApiError> {
    let turn = state.admin_lock.lock().await;
    if !caller.still_admin(state) {
        return Err(ApiError::Unauthenticated(
            "the admin credential was revoked while this request waited for its turn",
        ));
    }
    Ok(turn)
}

/// The registry as stored, before an admin act checks it: another replica may have changed it
/// since this server last polled (a removal refused as "not found" there left the token working
/// everywhere).
pub(crate) async fn fresh_registry(state: &SharedState) -> Result<(), ApiError> {
    saved(state.registry.refresh().await)
}

/// What saving `revocation` (before its record) came to: it stands once the registry holds it;
/// otherwise it is given back and nothing is recorded: the agent was removed by another server
/// meanwhile (404), or the save failed (an internal error).
fn revocation_saved(
    state: &SharedState,
    revocation: Revocation,
    outcome: Result<bool, RegistryError>,
    actor: String,
) -> Result<Revocation, ApiError> {
    match outcome {
        Ok(true) => Ok(revocation),
        Ok(false) => {
            state.registry.unrevoke(revocation);
            Err(ApiError::AgentNotFound(actor))
        }
        Err(e) => {
            state.registry.unrevoke(revocation);
            tracing::error!(error = %e, "saving a revocation failed; it was not recorded, and is given back");
            Err(ApiError::Internal)
        }
    }
}

/// Maps a failure to save state (after its audit record) to an internal error.
pub(crate) fn saved<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, ApiError> {
    result.map_err(|e| {
        tracing::error!(error = %e, "saving state failed after its audit record");
        ApiError::Internal
    })
}

/// Registers an agent, or confirms an existing one (no new token) when every attribute the
/// request gives equals the stored one (a bare `{"actor"}` only confirms it exists). An
/// attribute that differs is refused (409, naming the stored ones): attributes steer policy,
/// so they change only by removing and registering the agent again, each audited. Under
/// `--auth none` no token is issued (nobody checks it).
async fn register_agent(
    State(state): State<SharedState>,
    caller: AdminCaller,
    JsonBody(request): JsonBody<RegisterAgentRequest>,
) -> Result<Response, ApiError> {
    if request.actor.is_empty() {
        return Err(ApiError::ActorRequired);
    }
    ActorName::parse(&request.actor)?;
    let attributes = AgentAttributes {
        agent_type: request.agent_type,
        workspace: request.workspace,
        trust_level: request.trust_level,
        groups: Vec::new(),
    };
    let _serialized = admin_turn(&state, &caller).await?;
    fresh_registry(&state).await?;
    let mut token = None;
    match state.registry.attributes(&request.actor) {
        Some(stored) if !agrees(&attributes, &stored) => {
            return Err(agent_exists(request.actor, &stored))
        }
        Some(_) => {}
        None => {
            let issued = match state.auth {
                AuthMode::Credentials => {
                    Some(new_token(AGENT_TOKEN_PREFIX).ok_or(ApiError::Internal)?)
                }
                AuthMode::DangerousNone => None,
            };
            let record = admin_record(
                &caller,
                AdminAction::AgentsRegister,
                &request.actor,
                format!("agent `{}` registered", request.actor),
            );
            state.ledger.append(record).await?;
            let entry = AgentEntry {
                actor: request.actor.clone(),
                registered_at: wire_now(),
                attributes,
                token_sha256: issued.as_deref().map(token_hash),
                unauthenticated: !caller.authenticated,
            };
            // Another replica may have registered the same actor meanwhile: its token stands.
            if !saved(state.registry.insert(entry).await)? {
                let refusal = admin_refusal(
                    &caller,
                    AdminAction::AgentsRegister,
                    &request.actor,
                    format!(
                        "agent `{}` not registered: another server registered it first",
                        request.actor
                    ),
                );
                return refuse_after_claim(&state, refusal, || {
                    let stored = state
                        .registry
                        .attributes(&request.actor)
                        .unwrap_or_default();
                    agent_exists(request.actor, &stored)
                })
                .await;
            }
            token = issued;
        }
    }
    let body = RegisterAgentResponse {
        ok: true,
        actor: request.actor,
        registered: true,
        token,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The refusal of registering `actor` again, naming its `stored` attributes.
fn agent_exists(actor: String, stored: &AgentAttributes) -> ApiError {
    match serde_json::to_string(stored) {
        Ok(attributes) => ApiError::AgentExists { actor, attributes },
        Err(_) => ApiError::Internal,
    }
}

/// True if every attribute `asked` gives equals the `stored` one.
fn agrees(asked: &AgentAttributes, stored: &AgentAttributes) -> bool {
    let same = |asked: &Option<String>, stored: &Option<String>| asked.is_none() || asked == stored;
    same(&asked.agent_type, &stored.agent_type)
        && same(&asked.workspace, &stored.workspace)
        && same(&asked.trust_level, &stored.trust_level)
}

async fn list_agents(
    State(state): State<SharedState>,
    _caller: AdminCaller,
) -> Json<serde_json::Value> {
    Json(json!({"ok": true, "agents": state.registry.list()}))
}

async fn rotate_token(
    State(state): State<SharedState>,
    caller: AdminCaller,
    Path(actor): Path<String>,
) -> Result<Response, ApiError> {
    // A name registered before the actor grammar existed gets no new token (remove it).
    ActorName::parse(&actor)?;
    let _serialized = admin_turn(&state, &caller).await?;
    fresh_registry(&state).await?;
    if !state.registry.contains(&actor) {
        return Err(ApiError::AgentNotFound(actor));
    }
    let token = new_token(AGENT_TOKEN_PREFIX).ok_or(ApiError::Internal)?;
    let record = admin_record(
        &caller,
        AdminAction::AgentsRotateToken,
        &actor,
        format!("token of agent `{actor}` rotated; the previous token is revoked"),
    );
    // Revoked here at once, then saved without a token, and only then recorded: a failed save
    // refuses the rotation unrecorded, where before the recorded revocation was undone by a
    // restart, and never reached the other replicas.
    let revocation = state.registry.revoke_token_now(&actor);
    let previous = revocation.token().map(str::to_string);
    let cleared = state.registry.set_token(&actor, None, false).await;
    let revocation = revocation_saved(&state, revocation, cleared, actor.clone())?;
    if let Err(e) = state.ledger.append(record).await {
        // Not recorded, so not revoked: the previous token is put back, if it can be.
        if let Err(undo) = state.registry.set_token(&actor, previous, false).await {
            tracing::error!(error = %undo, actor, "a rotation not recorded could not be undone: the agent has no token (fail closed)");
        }
        state.registry.unrevoke(revocation);
        return Err(e.into());
    }
    // Should this save fail, the agent is left without a token (fail closed): rotate again.
    if !saved(
        state
            .registry
            .set_token(&actor, Some(token_hash(&token)), !caller.authenticated)
            .await,
    )? {
        // Removed on another replica meanwhile.
        let refusal = admin_refusal(
            &caller,
            AdminAction::AgentsRotateToken,
            &actor,
            format!("token of agent `{actor}` not rotated: another server removed the agent first"),
        );
        return refuse_after_claim(&state, refusal, || ApiError::AgentNotFound(actor)).await;
    }
    Ok(Json(TokenResponse {
        ok: true,
        actor,
        token,
    })
    .into_response())
}

async fn remove_agent(
    State(state): State<SharedState>,
    caller: AdminCaller,
    Path(actor): Path<String>,
) -> Result<Response, ApiError> {
    let _serialized = admin_turn(&state, &caller).await?;
    fresh_registry(&state).await?;
    let Some(entry) = state.registry.entry(&actor) else {
        return Err(ApiError::AgentNotFound(actor));
    };
    let record = admin_record(
        &caller,
        AdminAction::AgentsRemove,
        &actor,
        format!("agent `{actor}` removed; its token is revoked"),
    );
    // Removed here at once, then saved, and only then recorded (as a rotation).
    let revocation = state.registry.revoke_agent_now(&actor);
    let removed = state.registry.remove(&actor).await;
    let revocation = revocation_saved(&state, revocation, removed, actor.clone())?;
    if let Err(e) = state.ledger.append(record).await {
        // Not recorded, so not removed: the agent is put back, if it can be.
        if let Err(undo) = state.registry.insert(entry).await {
            tracing::error!(error = %undo, actor, "a removal not recorded could not be undone: the agent stays removed (fail closed)");
        }
        state.registry.unrevoke(revocation);
        return Err(e.into());
    }
    Ok(Json(json!({"ok": true, "actor": actor, "registered": false})).into_response())
}
