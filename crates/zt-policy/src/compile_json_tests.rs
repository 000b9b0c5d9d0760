use super::*;

#[test]
fn patterns_map_to_scopes() {
    assert_eq!(
        scope_of("aws.ec2.terminate_instances"),
        (
            "action == Action::\"aws.ec2.terminate_instances\"".into(),
            None
        )
    );
    assert_eq!(scope_of("*"), ("action".into(), None));
    assert_eq!(
        scope_of("aws.iam.*"),
        ("action in Action::\"aws.iam.*\"".into(), None)
    );
    assert_eq!(
        scope_of("mcp.git*"),
        (
            "action in Action::\"mcp.*\"".into(),
            Some("context.action like \"mcp.git*\"".into())
        )
    );
    assert_eq!(
        scope_of("aws*"),
        ("action".into(), Some("context.action like \"aws*\"".into()))
    );
    assert_eq!(
        scope_of("a*b.c*"),
        (
            "action in Action::\"a*b.*\"".into(),
            Some("context.action like \"a\\*b.c*\"".into())
        )
    );
}

#[test]
fn strings_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd\u{1}é", false), "a\\\"b\\\\c\\nd\\u{1}é");
    assert_eq!(escape("a*b", true), "a\\*b");
    assert_eq!(escape("a*b", false), "a*b");
}

#[test]
fn the_default_policy_compiles_to_one_forbid() {
    let text = to_cedar(&ActionPolicy::default());
    assert_eq!(
        text,
        "@id(\"deny-1\")\n@reason(\"Terminating EC2 instances is denied by the default policy.\")\n\
         forbid(principal, action == Action::\"aws.ec2.terminate_instances\", resource);\n\n"
    );
}

#[test]
fn blank_reasons_get_the_reference_defaults_and_default_allow_comes_last() {
    let policy = ActionPolicy::from_json(
        r#"{"defaultDecision":"allow","allow":[{"action":"a","reason":" "}],"deny":[{"action":"b"}]}"#,
    )
    .unwrap();
    let text = to_cedar(&policy);
    let deny = text
        .find("@reason(\"action is denied by policy\")")
        .unwrap();
    let allow = text
        .find("@reason(\"action is in the allow list\")")
        .unwrap();
    let default = text.find("@id(\"default-allow\")").unwrap();
    assert!(deny < allow && allow < default, "{text}");
}
