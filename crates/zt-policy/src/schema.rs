//! The shipped schema and the validation schema built from it for one policy set.
//!
//! Actions are open-ended, so the shipped schema declares only the root group `Action::"*"`.
//! To validate policies, every action or group they name is declared too, each a member of its
//! wildcard groups (and those groups declared in turn), all with the same `appliesTo` as
//! `"*"`; and each group gets one more member, `<group prefix><any>` (`aws.<any>` in `aws.*`),
//! standing for the actions nobody named. Because every action shares one principal type,
//! resource type and context type, the validator checks each policy against the same request
//! shape whatever actions it names, so this is as strict as a schema listing every action ever
//! asked; and because the schema a policy is checked against holds the actions it names plus a
//! stand-in for all others, a policy's verdict does not depend on which other policies are
//! validated with it (so large sets are validated in chunks, in linear time).

use std::collections::BTreeSet;

use cedar_policy::{Schema, SchemaFragment};
use serde_json::{json, Map, Value};

use crate::error::PolicyError;
use crate::names::{action_groups, AGENT, RESOURCE, ROOT_GROUP};

/// The shipped schema (`schema/zt.cedarschema`), in Cedar schema syntax.
pub const SCHEMA: &str = include_str!("../schema/zt.cedarschema");

/// Context key the server sets to the action name.
pub(crate) const CONTEXT_ACTION: &str = "action";
/// Context key the server sets to the request time, in seconds since the Unix epoch.
pub(crate) const CONTEXT_REQUEST_TIME: &str = "request_time";
/// Optional context keys the schema types as strings; a request that gives one with another
/// type is denied, so validated policies can rely on the type.
pub(crate) const STRING_CONTEXT_KEYS: [&str; 3] = ["environment", "approval_id", "source"];

/// Optional context key of the execution broker's command: a record of the string fields
/// [`EXEC_CONTEXT_FIELDS`], exactly.
pub(crate) use zt_contract::EXEC_CONTEXT_KEY;
pub(crate) const EXEC_CONTEXT_FIELDS: [&str; 2] =
    [zt_contract::EXEC_ARGS_SHA256, zt_contract::EXEC_PROGRAM];

/// True if the schema declares context key `key`.
pub(crate) fn is_declared_context_key(key: &str) -> bool {
    key == CONTEXT_ACTION
        || key == CONTEXT_REQUEST_TIME
        || key == EXEC_CONTEXT_KEY
        || STRING_CONTEXT_KEYS.contains(&key)
}

/// Name of the stand-in member of every group: `aws.*` has `aws.<any>`.
const ANY_MEMBER: &str = "<any>";

/// The shipped schema, parsed.
pub(crate) fn shipped() -> Result<SchemaFragment, PolicyError> {
    let (shipped, _warnings) = SchemaFragment::from_cedarschema_str(SCHEMA)
        .map_err(|e| PolicyError::Schema(e.to_string()))?;
    Ok(shipped)
}

/// `shipped` plus a declaration of each action in `actions`, of all their groups, and of a
/// stand-in member of each group.
pub(crate) fn validation_schema(
    shipped: &SchemaFragment,
    actions: &BTreeSet<String>,
) -> Result<Schema, PolicyError> {
    let shipped = shipped.clone();
    let generated = SchemaFragment::from_json_value(actions_fragment(actions))
        .map_err(|e| PolicyError::Schema(e.to_string()))?;
    Schema::from_schema_fragments([shipped, generated])
        .map_err(|e| PolicyError::Schema(e.to_string()))
}

/// The JSON schema fragment declaring `actions` and their groups (except the root group, which
/// the shipped schema declares).
fn actions_fragment(actions: &BTreeSet<String>) -> Value {
    let mut all: BTreeSet<String> = BTreeSet::new();
    for action in actions {
        all.extend(action_groups(action));
        all.insert(action.clone());
    }
    all.insert(ROOT_GROUP.to_string());
    let stand_ins: Vec<String> = all
        .iter()
        .filter_map(|name| name.strip_suffix('*'))
        .map(|prefix| format!("{prefix}{ANY_MEMBER}"))
        .collect();
    all.extend(stand_ins);
    all.remove(ROOT_GROUP);
    let declared: Map<String, Value> = all
        .into_iter()
        .map(|action| {
            let member_of: Vec<Value> = action_groups(&action)
                .into_iter()
                .map(|group| json!({ "id": group }))
                .collect();
            let declaration = json!({
                "memberOf": member_of,
                "appliesTo": {
                    "principalTypes": [AGENT],
                    "resourceTypes": [RESOURCE],
                    "context": { "type": "RequestContext" },
                },
            });
            (action, declaration)
        })
        .collect();
    json!({ "": { "entityTypes": {}, "actions": declared } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_schema_parses_alone_and_with_generated_actions() {
        let shipped = shipped().unwrap();
        validation_schema(&shipped, &BTreeSet::new()).unwrap();
        let actions = ["aws.iam.create_user", "mcp.*", "we\"ird\\name.x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let schema = validation_schema(&shipped, &actions).unwrap();
        let declared: BTreeSet<String> = schema
            .actions()
            .map(|uid| uid.id().unescaped().to_string())
            .collect();
        for name in [
            "*",
            "aws.*",
            "aws.iam.*",
            "aws.iam.create_user",
            "mcp.*",
            "we\"ird\\name.*",
            "we\"ird\\name.x",
            "<any>",
            "aws.<any>",
            "aws.iam.<any>",
            "mcp.<any>",
            "we\"ird\\name.<any>",
        ] {
            assert!(declared.contains(name), "{name} missing from {declared:?}");
        }
        assert_eq!(declared.len(), 12);
    }

    #[test]
    fn declared_context_keys() {
        assert!(is_declared_context_key("request_time"));
        assert!(is_declared_context_key("approval_id"));
        assert!(!is_declared_context_key("arguments"));
    }
}
