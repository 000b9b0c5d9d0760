use super::*;

fn policy(text: &str) -> ActionPolicy {
    ActionPolicy::from_json(text).unwrap()
}

#[test]
fn default_policy_denies_ec2_termination_and_everything_unmatched() {
    let p = ActionPolicy::default();
    let d = p.evaluate("aws.ec2.terminate_instances");
    assert!(!d.allowed);
    assert!(d.reason.contains("EC2"));
    let d = p.evaluate("hello-world.say_hello");
    assert!(!d.allowed);
    assert_eq!(d.reason, REASON_NOT_ALLOWED);
    assert_eq!(d.rule, None);
}

#[test]
fn exact_and_trailing_star_matches() {
    let p = policy(
        r#"{"allow":[{"action":"mcp.github.*","reason":"gh"},{"action":"x.y","reason":"xy"}]}"#,
    );
    assert!(p.evaluate("mcp.github.create_pr").allowed);
    assert!(p.evaluate("mcp.github.x").allowed);
    assert!(!p.evaluate("mcp.github.").allowed, "not an action name");
    assert!(p.evaluate("MCP.GitHub.Create_PR").allowed, "folded");
    assert!(!p.evaluate("mcp.githubx").allowed);
    assert!(p.evaluate("x.y").allowed);
    assert!(!p.evaluate("x.y.z").allowed);
    assert!(!p.evaluate("x.").allowed);
}

#[test]
fn deny_beats_allow_whatever_the_order() {
    let p = policy(
        r#"{"allow":[{"action":"*","reason":"all"}],"deny":[{"action":"aws.iam.*","reason":"no iam"}]}"#,
    );
    let d = p.evaluate("aws.iam.create_user");
    assert!(!d.allowed);
    assert_eq!(d.reason, "no iam");
    assert_eq!(d.rule.as_deref(), Some("aws.iam.*"));
    assert!(p.evaluate("aws.s3.list").allowed);
}

#[test]
fn rejects_unknown_fields_and_empty_patterns() {
    assert!(ActionPolicy::from_json(r#"{"allow":[],"typo":1}"#).is_err());
    assert!(ActionPolicy::from_json(r#"{"allow":[{"action":"","reason":"r"}]}"#).is_err());
    assert!(ActionPolicy::from_json(r#"{"defaultDecision":"maybe"}"#).is_err());
}

#[test]
fn add_allow_changes_the_version_and_decision() {
    let mut p = ActionPolicy::default();
    let before = p.version();
    p.add_allow("hello-world.say_hello", "");
    assert_ne!(p.version(), before);
    let d = p.evaluate("hello-world.say_hello");
    assert!(d.allowed);
    assert!(!d.reason.is_empty());
    let again = p.version();
    p.add_allow("hello-world.say_hello", "");
    assert_eq!(
        p.version(),
        again,
        "adding the same rule twice is idempotent"
    );
}

#[test]
fn reference_file_format_loads() {
    let p = policy(
        r#"{"defaultDecision":"deny","allow":[{"action":"hello-world.say_hello","reason":"ok"}],"deny":[{"action":"aws.ec2.terminate_instances","reason":"no"}]}"#,
    );
    assert!(p.evaluate("hello-world.say_hello").allowed);
    assert!(!p.evaluate("aws.ec2.terminate_instances").allowed);
}
