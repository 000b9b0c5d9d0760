use std::str::FromStr;

use cedar_policy::Policy;

use super::*;

fn mentions(text: &str) -> Mentions {
    Mentions::of(&Policy::from_str(text).unwrap().to_json().unwrap())
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn finds_actions_in_scope_and_conditions() {
    let m = mentions(
        r#"permit(principal, action in [Action::"a.*", Action::"b"], resource)
           when { action == Action::"c.d" || action in Action::"e.*" };"#,
    );
    assert_eq!(m.actions, set(&["a.*", "b", "c.d", "e.*"]));
    assert!(m.unknown_types.is_empty());
    let m = mentions(r#"forbid(principal, action == Action::"x", resource);"#);
    assert_eq!(m.actions, set(&["x"]));
}

#[test]
fn finds_context_keys_and_unknown_types() {
    let m = mentions(
        r#"permit(principal is Agent, action, resource == Thing::"t")
           when { context.arguments.repo == "x" && context has approval_id
                  && context["source"] == "s" && principal in Group::"g" };"#,
    );
    assert_eq!(m.context_keys, set(&["approval_id", "arguments", "source"]));
    assert_eq!(m.unknown_types, set(&["Thing"]));
    assert!(m.actions.is_empty());
}

#[test]
fn annotations_are_not_names() {
    let m = mentions(r#"@type("Action") @id("x") permit(principal, action, resource);"#);
    assert!(m.actions.is_empty());
}

#[test]
fn finds_what_context_action_is_compared_with() {
    let m = mentions(
        r#"permit(principal, action, resource)
           when { context.action like "mcp.Git*x*" || "a.B" == context.action
                  || context["action"] != "c" || context.source == "not.an.action" };"#,
    );
    assert_eq!(m.action_literals, set(&["mcp.Git*x*", "a.B", "c"]));
}
