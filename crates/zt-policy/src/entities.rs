//! A request to Cedar's request and entities: `Agent::"<actor>"` (a member of its
//! `Group::"<name>"`s) and `Resource::"<id>"` with their string attributes, and `Action::"<name>"` as a member of its wildcard groups.

use std::collections::{BTreeMap, HashMap, HashSet};

use cedar_policy::{Context, Entities, Entity, EntityUid, Request, RestrictedExpression};

use crate::names::Names;
use crate::request::PolicyRequest;

/// Builds the Cedar request and the entities it may read. `action` and `action_entities` (the
/// action as a member of its groups) come from the request's slice, which built them once for
/// this action name.
pub(crate) fn build(
    names: &Names,
    request: &PolicyRequest<'_>,
    action: &EntityUid,
    action_entities: &Entities,
    context: Context,
) -> Result<(Request, Entities), String> {
    let principal = names.agent(request.actor);
    let resource = names.resource(request.resource);
    let groups = request
        .actor_groups
        .iter()
        .map(|g| names.group(g))
        .collect();
    let entities = [
        entity(principal.clone(), request.actor_attributes, groups)?,
        entity(
            resource.clone(),
            request.resource_attributes,
            HashSet::new(),
        )?,
    ];
    let entities = action_entities
        .clone()
        .add_entities(entities, None)
        .map_err(|e| e.to_string())?;
    let request = Request::new(principal, action.clone(), resource, context, None)
        .map_err(|e| e.to_string())?;
    Ok((request, entities))
}

fn entity(
    uid: EntityUid,
    attributes: &BTreeMap<String, String>,
    parents: HashSet<EntityUid>,
) -> Result<Entity, String> {
    let attrs: HashMap<String, RestrictedExpression> = attributes
        .iter()
        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())))
        .collect();
    Entity::new(uid, attrs, parents).map_err(|e| e.to_string())
}
