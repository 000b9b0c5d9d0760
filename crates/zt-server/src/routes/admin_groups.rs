//! `PUT /agents/{actor}/groups`: the groups an agent is a member of, so least privilege can be
//! written per group (`principal in Group::"billing"`) rather than per agent. The whole list
//! is replaced; the change is an admin record (`zt.admin.agents.set_groups`) committed before
//! it is applied, like every registry change.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use zt_contract::names::ActorName;
use zt_contract::AdminAction;

use super::admin::{
    admin_record, admin_refusal, admin_turn, fresh_registry, refuse_after_claim, saved,
};
use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::SharedState;

/// At most this many groups per agent: each is looked up on every decision the agent asks.
pub(crate) const MAX_AGENT_GROUPS: usize = 64;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetGroupsRequest {
    /// The agent's groups: names of the actor grammar, at most [`MAX_AGENT_GROUPS`].
    groups: Vec<String>,
}

/// The groups, checked, sorted and without repeats.
fn checked(mut groups: Vec<String>) -> Result<Vec<String>, ApiError> {
    if groups.len() > MAX_AGENT_GROUPS {
        return Err(ApiError::InvalidRequest(format!(
            "an agent is in at most {MAX_AGENT_GROUPS} groups"
        )));
    }
    for group in &groups {
        ActorName::parse(group).map_err(|e| {
            ApiError::InvalidRequest(format!(
                "group `{}` is not a valid name: {e}",
                group.escape_debug()
            ))
        })?;
    }
    groups.sort();
    groups.dedup();
    Ok(groups)
}

/// Replaces the agent's groups (audited first, then saved).
pub(crate) async fn set_groups(
    State(state): State<SharedState>,
    caller: AdminCaller,
    Path(actor): Path<String>,
    JsonBody(request): JsonBody<SetGroupsRequest>,
) -> Result<Response, ApiError> {
    let groups = checked(request.groups)?;
    let _serialized = admin_turn(&state, &caller).await?;
    fresh_registry(&state).await?;
    if !state.registry.contains(&actor) {
        return Err(ApiError::AgentNotFound(actor));
    }
    let record = admin_record(
        &caller,
        AdminAction::AgentsSetGroups,
        &actor,
        format!("groups of agent `{actor}` set to [{}]", groups.join(", ")),
    );
    state.ledger.append(record).await?;
    if !saved(state.registry.set_groups(&actor, groups.clone()).await)? {
        // Removed on another replica meanwhile.
        let refusal = admin_refusal(
            &caller,
            AdminAction::AgentsSetGroups,
            &actor,
            format!("groups of agent `{actor}` not set: another server removed the agent first"),
        );
        return refuse_after_claim(&state, refusal, || ApiError::AgentNotFound(actor)).await;
    }
    Ok(Json(json!({"ok": true, "actor": actor, "groups": groups})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_names_bounded_sorted_and_unique() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            checked(names(&["ops", "billing", "ops"])).unwrap(),
            ["billing", "ops"]
        );
        assert!(checked(names(&["has space"])).is_err());
        assert!(checked(names(&[""])).is_err());
        let many: Vec<String> = (0..=MAX_AGENT_GROUPS).map(|i| format!("g{i}")).collect();
        assert!(checked(many).is_err());
        assert!(checked(Vec::new()).unwrap().is_empty());
    }
}
