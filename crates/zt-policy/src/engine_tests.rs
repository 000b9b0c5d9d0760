use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::*;

fn engine(text: &str) -> PolicyEngine {
    PolicyEngine::from_cedar(text).unwrap()
}

fn decide(engine: &PolicyEngine, action: &str) -> PolicyDecision {
    engine.decide(&PolicyRequest::new("agent", action, "res"))
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn engines_are_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<PolicyEngine>();
}

#[test]
fn the_default_policy_denies_ec2_termination_by_name_and_the_rest_by_default() {
    let engine = PolicyEngine::default_policy();
    assert_eq!(engine.policy_count(), 1);
    let d = decide(&engine, "aws.ec2.terminate_instances");
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "Terminating EC2 instances is denied by the default policy."
    );
    assert_eq!(d.determining_policies, ["deny-1"]);
    let d = decide(&engine, "hello-world.say_hello");
    assert_eq!(d, PolicyDecision::deny(REASON_NOT_ALLOWED));
}

#[test]
fn an_empty_set_denies_everything() {
    let engine = engine("// nothing yet\n");
    assert_eq!(engine.policy_count(), 0);
    assert_eq!(engine.source(), "");
    assert_eq!(
        decide(&engine, "a"),
        PolicyDecision::deny(REASON_NOT_ALLOWED)
    );
}

#[test]
fn the_first_matching_forbid_decides_then_the_first_permit() {
    let engine = engine(
        r#"
@id("all") @reason("everything is allowed")
permit(principal, action, resource);
@id("aws") @reason("aws is allowed")
permit(principal, action in Action::"aws.*", resource);
@id("iam-group")
forbid(principal, action in Action::"aws.iam.*", resource);
@id("iam-user") @reason("no new users")
forbid(principal, action == Action::"aws.iam.create_user", resource);
"#,
    );
    let d = decide(&engine, "aws.iam.create_user");
    assert!(!d.allowed);
    assert_eq!(d.reason, "denied by policy `iam-group`");
    assert_eq!(d.determining_policies, ["iam-group", "iam-user"]);
    let d = decide(&engine, "aws.s3.list");
    assert!(d.allowed);
    assert_eq!(d.reason, "everything is allowed");
    assert_eq!(d.determining_policies, ["all", "aws"]);
    assert!(d.errors.is_empty());
}

#[test]
fn unannotated_policies_get_generated_ids_and_default_reasons() {
    let engine = engine(
        r#"permit(principal, action == Action::"a", resource);
           forbid(principal, action == Action::"b", resource);"#,
    );
    let d = decide(&engine, "a");
    assert_eq!(d.reason, "allowed by policy `policy-1`");
    assert_eq!(d.determining_policies, ["policy-1"]);
    let d = decide(&engine, "b");
    assert_eq!(d.reason, "denied by policy `policy-2`");
}

#[test]
fn actions_are_in_their_wildcard_groups() {
    let engine = engine(
        r#"@id("aws") permit(principal, action in Action::"aws.*", resource);
           @id("root") forbid(principal, action in Action::"*", resource) when { context.action == "x.y" };"#,
    );
    assert!(decide(&engine, "aws.iam.create_user").allowed);
    assert!(decide(&engine, "aws.s3").allowed);
    assert!(
        !decide(&engine, "aws.*").allowed,
        "a group is not an action"
    );
    assert!(!decide(&engine, "awsx.s3").allowed);
    assert!(!decide(&engine, "aws").allowed);
    let d = decide(&engine, "x.y");
    assert_eq!(d.determining_policies, ["root"]);
}

#[test]
fn principal_resource_and_context_attributes_are_visible() {
    let engine = engine(
        r#"permit(principal, action == Action::"deploy", resource)
             when { principal has trust_level && principal.trust_level == "high"
                    && resource has environment && resource.environment == "staging"
                    && context has approval_id };"#,
    );
    let high: BTreeMap<String, String> = [("trust_level".to_string(), "high".to_string())].into();
    let staging: BTreeMap<String, String> =
        [("environment".to_string(), "staging".to_string())].into();
    let approved = object(json!({"approval_id": "chg-1"}));
    let full = PolicyRequest::new("a", "deploy", "svc")
        .with_actor_attributes(&high)
        .with_resource_attributes(&staging)
        .with_context(&approved);
    assert!(engine.decide(&full).allowed);
    assert!(
        !engine
            .decide(&full.with_actor_attributes(&BTreeMap::new()))
            .allowed
    );
    assert!(
        !engine
            .decide(&full.with_resource_attributes(&BTreeMap::new()))
            .allowed
    );
    let none = Map::new();
    assert!(!engine.decide(&full.with_context(&none)).allowed);
}

#[test]
fn the_request_time_is_in_seconds() {
    let engine = engine(
        r#"permit(principal, action, resource) when { context.request_time < 1800000000 };"#,
    );
    let before = UNIX_EPOCH + Duration::from_secs(1_799_999_999);
    let after = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert!(
        engine
            .decide(&PolicyRequest::new("a", "b", "c").at(before))
            .allowed
    );
    assert!(
        !engine
            .decide(&PolicyRequest::new("a", "b", "c").at(after))
            .allowed
    );
    assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
}

#[test]
fn an_evaluation_error_denies_and_names_the_policy() {
    let engine = engine(
        r#"@id("all") permit(principal, action, resource);
           @id("big-args") @unvalidated("reads tool arguments")
           forbid(principal, action, resource) when { context.arguments.count > 3 };"#,
    );
    let small = object(json!({"arguments": {"count": 1}}));
    let big = object(json!({"arguments": {"count": 5}}));
    let wrong = object(json!({"arguments": {"count": "many"}}));
    let ask = |context: &Map<String, Value>| {
        engine.decide(&PolicyRequest::new("a", "b", "c").with_context(context))
    };
    assert!(ask(&small).allowed);
    assert_eq!(ask(&big).determining_policies, ["big-args"]);
    for context in [&wrong, &Map::new()] {
        let d = ask(context);
        assert!(!d.allowed, "Cedar alone would allow: the forbid is skipped");
        assert_eq!(
            d.reason,
            "policy `big-args` failed to evaluate, so the request is denied (fail closed)"
        );
        assert_eq!(d.determining_policies, ["big-args"]);
        assert_eq!(d.errors.len(), 1);
        assert!(d.errors[0].contains("big-args"), "{:?}", d.errors);
    }
}

#[test]
fn a_context_cedar_cannot_hold_denies_with_a_reason() {
    let engine = engine("permit(principal, action, resource);");
    let float = object(json!({"arguments": {"temperature": 0.5}}));
    let d = engine.decide(&PolicyRequest::new("a", "b", "c").with_context(&float));
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "request denied: context value `arguments.temperature` is not an integer between -2^63 and 2^63-1"
    );
    assert!(d.determining_policies.is_empty());
    let typed = object(json!({"environment": ["production"]}));
    let d = engine.decide(&PolicyRequest::new("a", "b", "c").with_context(&typed));
    assert_eq!(
        d.reason,
        "request denied: context value `environment` must be a string"
    );
}

#[test]
fn versions_follow_the_policies_not_their_layout() {
    let a = engine("// one\npermit(principal, action == Action::\"x\", resource);");
    let b = engine("permit(\n  principal,\n  action == Action::\"x\",\n  resource\n);\n");
    let c = engine("permit(principal, action == Action::\"y\", resource);");
    assert_eq!(a.version(), b.version());
    assert_ne!(a.version(), c.version());
    assert!(a.version().starts_with("sha256:"));
    assert_eq!(a.version().len(), "sha256:".len() + 64);
    assert!(a.source().contains("@id(\"policy-1\")"), "{}", a.source());
    // The source loads back to the same version.
    assert_eq!(engine(a.source()).version(), a.version());
    let json = PolicyEngine::from_action_policy(&ActionPolicy::default()).unwrap();
    assert_eq!(engine(json.source()).version(), json.version());
    assert_eq!(json.version(), PolicyEngine::default_policy().version());
}

#[test]
fn load_errors_carry_line_and_column() {
    let e = PolicyEngine::from_cedar(
        "permit(principal, action, resource);\n\n  forbid(principal action, resource);",
    )
    .unwrap_err();
    let PolicyError::Syntax { location, .. } = &e else {
        panic!("unexpected {e}");
    };
    assert_eq!(location.line, 3);
    assert!(
        e.to_string()
            .starts_with("cedar syntax error at line 3, column "),
        "{e}"
    );
}

#[test]
fn files_load_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("p.json");
    std::fs::write(&json, r#"{"allow":[{"action":"hello.*","reason":"hi"}]}"#).unwrap();
    let d = decide(&PolicyEngine::from_file(&json).unwrap(), "hello.world");
    assert_eq!((d.allowed, d.reason.as_str()), (true, "hi"));

    let cedar = dir.path().join("p.cedar");
    std::fs::write(
        &cedar,
        "@reason(\"ok\") permit(principal, action, resource);",
    )
    .unwrap();
    assert_eq!(
        decide(&PolicyEngine::from_file(&cedar).unwrap(), "x").reason,
        "ok"
    );

    std::fs::write(&cedar, "permit(principal, action, resource)").unwrap();
    let e = PolicyEngine::from_file(&cedar).unwrap_err();
    assert!(matches!(e, PolicyError::File { .. }), "{e}");
    assert!(e.to_string().contains("p.cedar"), "{e}");

    let other = dir.path().join("p.yaml");
    assert!(matches!(
        PolicyEngine::from_file(&other),
        Err(PolicyError::UnknownFormat { .. })
    ));
    let missing = dir.path().join("missing.cedar");
    assert!(matches!(
        PolicyEngine::from_file(&missing),
        Err(PolicyError::Io { .. })
    ));
}

#[test]
fn invalid_reference_policies_are_refused() {
    let mut p = ActionPolicy::default();
    p.add_allow("", "empty");
    assert!(matches!(
        PolicyEngine::from_action_policy(&p),
        Err(PolicyError::EmptyAction { .. })
    ));
}

#[test]
fn order_holds_across_the_always_set_and_the_slice() {
    let engine = engine(
        r#"@id("slice-late") @reason("late") forbid(principal, action in Action::"a.*", resource);
           @id("always") @reason("always") forbid(principal, action, resource) when { context.action == "a.b" };
           @id("slice-early") @reason("early") forbid(principal, action == Action::"a.b", resource);"#,
    );
    let d = decide(&engine, "a.b");
    assert_eq!(d.reason, "late");
    assert_eq!(
        d.determining_policies,
        ["slice-late", "always", "slice-early"]
    );
    let engine = engine_from_reordered();
    let d = decide(&engine, "a.b");
    assert_eq!(d.reason, "always");
    assert_eq!(d.determining_policies, ["always", "slice"]);
}

fn engine_from_reordered() -> PolicyEngine {
    engine(
        r#"@id("always") @reason("always") forbid(principal, action, resource) when { context.action == "a.b" };
           @id("slice") @reason("slice") forbid(principal, action in Action::"a.*", resource);"#,
    )
}

#[test]
fn threads_share_one_engine() {
    let engine = std::sync::Arc::new(engine(
        r#"@id("even") permit(principal, action in Action::"even.*", resource);
           @id("no-zero") forbid(principal, action == Action::"even.0", resource);"#,
    ));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let engine = std::sync::Arc::clone(&engine);
            std::thread::spawn(move || {
                for i in 0..500 {
                    let action = format!(
                        "{}.{}",
                        if i % 2 == 0 { "even" } else { "odd" },
                        (i + t) % 50
                    );
                    let d = engine.decide(&PolicyRequest::new("a", &action, "r"));
                    let expected = action.starts_with("even.") && action != "even.0";
                    assert_eq!(d.allowed, expected, "{action}");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

#[test]
fn names_that_evaded_deny_rules_are_denied() {
    let policy = ActionPolicy::from_json(
        r#"{"allow":[{"action":"aws.s3.*"}],
            "deny":[{"action":"aws.s3.delete*","reason":"no deletes"}]}"#,
    )
    .unwrap();
    let engine = PolicyEngine::from_action_policy(&policy).unwrap();
    let d = decide(&engine, "aws.s3.DELETE_bucket");
    assert!(!d.allowed);
    assert_eq!(d.reason, "no deletes", "the folded name hits the deny");
    let dots = format!("h{}", ".".repeat(16_300));
    for action in [
        "aws.s3.\u{0}delete",
        "aws.s3.\u{200b}delete",
        "aws.s3.\u{ff44}elete",
        "aws.s3.*",
        dots.as_str(),
    ] {
        let d = decide(&engine, action);
        assert!(!d.allowed, "{action:?}");
        assert!(
            d.reason.starts_with("request denied: action "),
            "{}",
            d.reason
        );
    }
    assert!(decide(&engine, "aws.s3.get_object").allowed);
    let d = engine.decide(&PolicyRequest::new("\u{430}gent", "aws.s3.get_object", "r"));
    assert!(!d.allowed, "{}", d.reason);
    let d = engine.decide(&PolicyRequest::new(
        "agent",
        "aws.s3.get_object",
        "r\u{202e}",
    ));
    assert!(!d.allowed, "{}", d.reason);
}

#[test]
fn policies_naming_actions_no_request_can_carry_are_refused() {
    for json in [
        r#"{"deny":[{"action":"aws.s3.DELETE*"}]}"#,
        r#"{"deny":[{"action":"aws.s3.\u200bdelete"}]}"#,
        r#"{"allow":[{"action":"a*b.*"}]}"#,
        r#"{"allow":[{"action":"a..b"}]}"#,
    ] {
        let error = ActionPolicy::from_json(json).unwrap_err();
        assert!(
            matches!(error, PolicyError::InvalidPattern { .. }),
            "{json}: {error}"
        );
    }
}

#[test]
fn conditions_naming_groups_see_the_action_in_them() {
    let engine = engine(
        r#"@id("x") permit(principal, action, resource) when { action in Action::"x.y.*" };"#,
    );
    assert!(decide(&engine, "x.y.z").allowed);
    assert!(!decide(&engine, "x.z").allowed);
}
