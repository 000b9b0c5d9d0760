//! The resource of a tool call, read from its arguments the way the reference gateway does.

use rmcp::model::JsonObject;
use serde_json::Value;

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

/// `owner/repo` when both are non-empty strings, else the first non-empty string among
/// [`RESOURCE_ARGUMENTS`], else `""`.
pub fn resource_of(arguments: Option<&JsonObject>) -> String {
    let Some(arguments) = arguments else {
        return String::new();
    };
    let text = |key: &str| match arguments.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    };
    if let (Some(owner), Some(repo)) = (text("owner"), text("repo")) {
        return format!("{owner}/{repo}");
    }
    RESOURCE_ARGUMENTS
        .iter()
        .find_map(|key| text(key))
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(arguments: Value) -> String {
        resource_of(arguments.as_object())
    }

    #[test]
    fn owner_and_repo_make_one_resource() {
        assert_eq!(
            of(json!({"owner": "acme", "repo": "zt", "path": "x"})),
            "acme/zt"
        );
    }

    #[test]
    fn otherwise_the_first_non_empty_string_in_order() {
        assert_eq!(of(json!({"id": "7", "path": "/tmp/a"})), "/tmp/a");
        assert_eq!(of(json!({"owner": "acme", "repo": "", "name": "n"})), "n");
        assert_eq!(of(json!({"owner": "", "repo": "zt"})), "zt");
        assert_eq!(of(json!({"resource": "", "url": "https://x"})), "https://x");
        assert_eq!(of(json!({"resource": 5, "name": "n"})), "n");
    }

    #[test]
    fn no_candidate_is_empty() {
        assert_eq!(of(json!({"message": "hi"})), "");
        assert_eq!(resource_of(None), "");
    }
}
