use super::*;
use crate::error::Location;
use crate::load::parse;

fn check(text: &str) -> Result<Vec<String>, PolicyError> {
    validate(text, &parse(text)?).map(|v| v.warnings)
}

fn invalid(text: &str) -> (String, Location, String) {
    match check(text).unwrap_err() {
        PolicyError::Invalid {
            id,
            location,
            message,
        } => (id, location, message),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn accepts_policies_on_any_actions_and_groups() {
    check(
        r#"
permit(principal, action in Action::"aws.iam.*", resource)
  when { principal has trust_level && principal.trust_level == "high" };
forbid(principal, action == Action::"aws.ec2.terminate_instances", resource);
permit(principal, action in [Action::"mcp.*", Action::"a2a.x.send_message"], resource)
  when { context has approval_id && context.action like "mcp.git*" && context.request_time > 0 };
permit(principal, action, resource)
  when { resource has environment && resource.environment == "staging" && action in Action::"svc.*" };
"#,
    )
    .unwrap();
}

#[test]
fn type_errors_and_typos_are_caught_with_a_location() {
    let (id, location, message) = invalid(
        "permit(principal, action, resource);\n\n@id(\"typo\")\npermit(principal, action, resource)\n  when { principal.trustlevel == \"x\" };",
    );
    assert_eq!(id, "typo");
    assert_eq!(location.line, 5);
    assert!(message.contains("trustlevel"), "{message}");
    assert!(!message.starts_with("for policy"), "{message}");
    assert!(message.contains("did you mean `trust_level`?"), "{message}");

    // Guarded by `has`, the typo makes the policy impossible: refused as well.
    let (_, location, message) = invalid(
        "\n@id(\"typo\")\npermit(principal, action, resource)\n  when { principal has trustlevel && principal.trustlevel == \"x\" };",
    );
    assert_eq!(location.line, 2);
    assert!(message.contains("impossible"), "{message}");

    let (_, _, message) =
        invalid(r#"permit(principal, action, resource) when { context.request_time == "now" };"#);
    assert!(message.contains("type"), "{message}");

    let (_, _, message) =
        invalid(r#"permit(principal, action, resource) when { principal.trust_level == "high" };"#);
    assert!(message.contains("has trust_level"), "{message}");
}

#[test]
fn unknown_entity_types_are_refused_even_unvalidated() {
    let (_, _, message) = invalid(r#"permit(principal in Team::"g", action, resource);"#);
    assert!(message.contains("Team"), "{message}");
    let (_, _, message) =
        invalid(r#"@unvalidated("x") permit(principal is Agnt, action, resource);"#);
    assert!(message.contains("Agnt"), "{message}");
}

#[test]
fn agent_groups_validate_in_scopes_and_conditions() {
    check(
        r#"
permit(principal in Group::"billing", action == Action::"invoices.read", resource);
permit(principal is Agent in Group::"ops", action, resource) when { principal in Group::"oncall" };
forbid(principal, action, resource) unless { principal in Group::"staff" };
"#,
    )
    .unwrap();
    // A group is never a resource, nor the principal itself: the validator proves it.
    let (_, _, message) = invalid(r#"permit(principal == Group::"g", action, resource);"#);
    assert!(message.contains("applicable action"), "{message}");
}

#[test]
fn free_form_context_needs_the_opt_out() {
    let text = r#"permit(principal, action, resource) when { context.arguments.repo == "zt" };"#;
    let (_, _, message) = invalid(text);
    assert!(message.contains("@unvalidated"), "{message}");
    // Guarding with `has` makes the validator see an impossible policy: refused too.
    let (_, _, message) = invalid(
        r#"permit(principal, action, resource) when { context has arguments && context.arguments.repo == "zt" };"#,
    );
    assert!(message.contains("impossible"), "{message}");
    assert!(message.contains("@unvalidated"), "{message}");
    check(&format!("@unvalidated(\"reads tool arguments\") {text}")).unwrap();
}

#[test]
fn impossible_policies_are_errors() {
    let (_, _, message) = invalid(r#"forbid(principal is Resource, action, resource);"#);
    assert!(!message.is_empty());
}

#[test]
fn conditions_on_actions_nobody_named_are_possible() {
    // Only the group is named; the stand-in member makes `!=` satisfiable.
    check(r#"permit(principal, action in Action::"aws.*", resource) when { action != Action::"aws.*" };"#)
        .unwrap();
    check(r#"forbid(principal, action, resource) unless { action in Action::"aws.*" };"#).unwrap();
}

#[test]
fn the_first_error_in_text_order_is_reported_across_chunks() {
    let mut text = String::new();
    for i in 0..(CHUNK * 3) {
        if i == CHUNK + 5 || i == CHUNK * 2 + 1 {
            text.push_str(&format!(
                "@id(\"bad{i}\") permit(principal, action, resource) when {{ principal.nope }};\n"
            ));
        } else {
            text.push_str(&format!(
                "permit(principal, action in Action::\"s{i}.*\", resource);\n"
            ));
        }
    }
    let (id, location, _) = invalid(&text);
    assert_eq!(id, format!("bad{}", CHUNK + 5));
    assert_eq!(location.line, CHUNK + 6);
}

#[test]
fn the_code_and_the_schema_file_agree_on_context_keys() {
    for key in crate::schema::STRING_CONTEXT_KEYS {
        check(&format!(
            "permit(principal, action, resource) when {{ context has {key} && context.{key} == \"x\" }};"
        ))
        .unwrap();
    }
    check(r#"permit(principal, action, resource) when { context.action like "a*" && context.request_time > 0 };"#)
        .unwrap();
    for key in ["type", "workspace", "trust_level"] {
        check(&format!(
            "permit(principal, action, resource) when {{ principal has {key} && principal[\"{key}\"] == \"x\" }};"
        ))
        .unwrap();
    }
    for key in ["type", "environment"] {
        check(&format!(
            "permit(principal, action, resource) when {{ resource has {key} && resource[\"{key}\"] == \"x\" }};"
        ))
        .unwrap();
    }
}

#[test]
fn action_names_no_request_can_carry_are_refused() {
    for (text, expected) in [
        (
            r#"forbid(principal, action == Action::"aws.s3.DELETE_bucket", resource);"#,
            "upper case `D` (U+0044) at byte 7",
        ),
        (
            r#"forbid(principal, action in Action::"aws.s3.Delete*", resource);"#,
            "upper case `D`",
        ),
        (
            r#"forbid(principal, action in Action::"mcp.git*", resource);"#,
            "is not an action group",
        ),
        (
            r#"forbid(principal, action == Action::"aws..s3", resource);"#,
            "empty segment",
        ),
        (
            r#"forbid(principal, action == Action::"aws.s3.\u{200b}delete", resource);"#,
            "U+200B",
        ),
        (
            r#"forbid(principal, action, resource) when { context.action like "aws.s3.DELETE*" };"#,
            "`context.action` is compared with \"aws.s3.DELETE*\"",
        ),
        (
            r#"@unvalidated("x") forbid(principal, action == Action::"A", resource);"#,
            "upper case",
        ),
    ] {
        let (_, _, message) = invalid(text);
        assert!(message.contains(expected), "{text}: {message}");
    }
    let names = r#"permit(principal, action in [Action::"*", Action::"aws.*", Action::"aws.s3.get-x"], resource)
                   when { context.action like "*delete*" };"#;
    assert!(check(names).is_ok());
}
