//! The compiled reference format decides exactly as `ActionPolicy::evaluate`: random rule sets
//! over a small alphabet (so exact and prefix matches at and between dots collide often),
//! random actions (upper case, stars, quotes and empty segments included, which both deny
//! the same way), same `allowed`, same reason, and the deciding policy is the deciding rule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use proptest::prelude::*;
use zt_policy::{ActionPolicy, DefaultDecision, PolicyEngine, PolicyRequest, Rule};

/// Strings over a small alphabet: valid action names, their upper-case variants, and names
/// outside the grammar.
fn name(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just('a'),
            3 => Just('b'),
            1 => Just('A'),
            4 => Just('.'),
            1 => Just('*'),
            1 => Just('"'),
            1 => Just('\\'),
        ],
        0..=max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Valid rule patterns: 1 to 3 segments of `a`/`b`, then nothing, `*` or `.*` (or just `*`).
fn pattern() -> impl Strategy<Value = String> {
    let segments = proptest::collection::vec("[ab]{1,2}", 1..=3).prop_map(|s| s.join("."));
    prop_oneof![
        1 => Just("*".to_string()),
        8 => (segments, 0..3u8).prop_map(|(body, end)| match end {
            0 => body,
            1 => format!("{body}*"),
            _ => format!("{body}.*"),
        }),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    let reason = prop_oneof![
        Just(String::new()),
        Just("  ".to_string()),
        "[a-z \"\\\\*é\n]{1,8}",
    ];
    (pattern(), reason).prop_map(|(action, reason)| Rule { action, reason })
}

fn policy() -> impl Strategy<Value = ActionPolicy> {
    (
        proptest::collection::vec(rule(), 0..6),
        proptest::collection::vec(rule(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(allow, deny, default_allow)| ActionPolicy {
            default_decision: if default_allow {
                DefaultDecision::Allow
            } else {
                DefaultDecision::Deny
            },
            allow,
            deny,
        })
}

/// The id the compiler gives the rule the reference says decided.
fn expected_id(policy: &ActionPolicy, action: &str) -> Option<String> {
    // An action outside the grammar is denied before any rule; the rest are folded.
    let action = zt_contract::names::ActionName::parse(action).ok()?;
    let action = action.as_str();
    if let Some(i) = policy.deny.iter().position(|r| r.matches(action)) {
        return Some(format!("deny-{}", i + 1));
    }
    if let Some(i) = policy.allow.iter().position(|r| r.matches(action)) {
        return Some(format!("allow-{}", i + 1));
    }
    (policy.default_decision == DefaultDecision::Allow).then(|| "default-allow".to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compiled_engine_agrees_with_the_reference(
        policy in policy(),
        actions in proptest::collection::vec(name(6), 1..12),
    ) {
        let engine = PolicyEngine::from_action_policy(&policy).unwrap();
        let mut actions = actions;
        // Every rule's own pattern, and with a suffix, is asked too.
        for rule in policy.allow.iter().chain(&policy.deny) {
            actions.push(rule.action.clone());
            actions.push(format!("{}.a", rule.action.trim_end_matches('*')));
        }
        for action in &actions {
            let expected = policy.evaluate(action);
            let got = engine.decide(&PolicyRequest::new("agent", action, "resource"));
            prop_assert_eq!(got.allowed, expected.allowed, "action {:?}", action);
            prop_assert_eq!(&got.reason, &expected.reason, "action {:?}", action);
            prop_assert!(got.errors.is_empty(), "{:?}", got.errors);
            prop_assert_eq!(
                got.determining_policies.first().cloned(),
                expected_id(&policy, action),
                "action {:?}", action
            );
        }
        // The compiled set round-trips through its canonical source.
        let reloaded = PolicyEngine::from_cedar(engine.source()).unwrap();
        prop_assert_eq!(reloaded.version(), engine.version());
    }
}

#[test]
fn prefixes_that_do_not_end_at_a_dot() {
    let policy = ActionPolicy::from_json(
        r#"{"allow":[{"action":"mcp.git*","reason":"git tools"},{"action":"aws*","reason":"aws-ish"}],
            "deny":[{"action":"mcp.github.delete_repo","reason":"never"}]}"#,
    )
    .unwrap();
    let engine = PolicyEngine::from_action_policy(&policy).unwrap();
    for action in [
        "mcp.github.create_pull_request",
        "mcp.gitlab.x",
        "mcp.git",
        "mcp.gi",
        "mcp.github.delete_repo",
        "aws",
        "awsome.thing",
        "aw",
        "x.aws",
    ] {
        let expected = policy.evaluate(action);
        let got = engine.decide(&PolicyRequest::new("agent", action, ""));
        assert_eq!(
            (got.allowed, got.reason.as_str()),
            (expected.allowed, expected.reason.as_str()),
            "{action}"
        );
    }
}
