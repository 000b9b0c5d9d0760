//! The resource of a tool call, read from the arguments its tool declares, in the reference
//! gateway's order.

use rmcp::model::JsonObject;
use serde_json::Value;

use crate::tools::DeclaredArguments;

/// Argument names tried in order when there is no `owner` + `repo` pair.
pub const RESOURCE_ARGUMENTS: [&str; 7] = [
    "resource",
    "repository",
    "repo",
    "path",
    "url",
    "name",
    "id",
];

/// `owner/repo` when the tool declares both and both are non-empty strings, else the first of
/// the declared [`RESOURCE_ARGUMENTS`] the call carries, if it is a non-empty string, else `""`.
/// An argument the tool does not declare never names the resource: the tool ignores it, so an
/// agent could add it to be decided on something other than what the tool acts on. Nor does a
/// later candidate when an earlier one is there but not a name (`"path": ["/etc/shadow"]` beside
/// `"name": "notes"` is decided on `""`, not on `notes`).
pub fn resource_of(arguments: Option<&JsonObject>, declared: &DeclaredArguments) -> String {
    let Some(arguments) = arguments else {
        return String::new();
    };
    let given = |key: &str| arguments.get(key).filter(|_| declared.declares(key));
    if let (Some(owner), Some(repo)) = (name(given("owner")), name(given("repo"))) {
        return format!("{owner}/{repo}");
    }
    RESOURCE_ARGUMENTS
        .iter()
        .find_map(|key| given(key))
        .and_then(|value| name(Some(value)))
        .unwrap_or_default()
        .to_string()
}

/// `value` if it is a non-empty string.
fn name(value: Option<&Value>) -> Option<&str> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The resource when the tool declares every argument given.
    fn of(arguments: Value) -> String {
        let properties: serde_json::Map<String, Value> = arguments
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), json!({})))
            .collect();
        let declared = DeclaredArguments::from_input_schema(&json!({ "properties": properties }));
        resource_of(arguments.as_object(), &declared)
    }

    #[test]
    fn owner_and_repo_make_one_resource() {
        assert_eq!(
            of(json!({"owner": "acme", "repo": "zt", "path": "x"})),
            "acme/zt"
        );
    }

    #[test]
    fn otherwise_the_first_candidate_given_in_order() {
        assert_eq!(of(json!({"id": "7", "path": "/tmp/a"})), "/tmp/a");
        assert_eq!(of(json!({"owner": "", "repo": "zt"})), "zt");
        assert_eq!(
            of(json!({"message": "hi", "url": "https://x"})),
            "https://x"
        );
    }

    #[test]
    fn a_candidate_given_but_not_a_name_decides_on_nothing_not_on_the_next() {
        // The tool acts on the array's path; deciding on `notes` would let the agent choose.
        assert_eq!(of(json!({"path": ["/etc/shadow"], "name": "notes"})), "");
        assert_eq!(of(json!({"resource": 5, "name": "n"})), "");
        assert_eq!(of(json!({"resource": "", "url": "https://x"})), "");
        assert_eq!(of(json!({"owner": "acme", "repo": "", "name": "n"})), "");
    }

    #[test]
    fn no_candidate_is_empty() {
        assert_eq!(of(json!({"message": "hi"})), "");
        assert_eq!(resource_of(None, &DeclaredArguments::default()), "");
    }

    #[test]
    fn an_argument_the_tool_does_not_declare_never_names_the_resource() {
        // A schema that admits other arguments lets `resource` through to the tool's context,
        // but the tool declares `path`, so `path` is what the call is decided on.
        let declared = DeclaredArguments::from_input_schema(&json!({
            "properties": {"path": {}, "content": {}, "owner": {}},
            "additionalProperties": true
        }));
        let call =
            json!({"resource": "harmless", "path": "/etc/shadow", "owner": "a", "repo": "b"});
        assert_eq!(resource_of(call.as_object(), &declared), "/etc/shadow");
    }
}
