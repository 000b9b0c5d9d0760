use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::*;

/// 70 broad permits on `reports.read`, each with its own condition (more than run inline), and
/// a per-agent permit on `docs.read`.
fn engine() -> Arc<PolicyEngine> {
    let mut text = String::from(
        "@id(\"a-docs\")\npermit(principal == Agent::\"a\", action == Action::\"docs.read\", resource);\n",
    );
    for i in 0..70 {
        text.push_str(&format!(
            "@id(\"source-{i}\")\npermit(principal, action == Action::\"reports.read\", resource)\n\
             when {{ context has source && context.source == \"s{i}\" }};\n"
        ));
    }
    Arc::new(PolicyEngine::from_cedar(&text).unwrap())
}

fn context(source: &str) -> Map<String, Value> {
    json!({ "source": source }).as_object().unwrap().clone()
}

/// Inline, on the blocking pool, and refused before either: each decides as the engine does.
#[tokio::test]
async fn inline_and_blocking_decisions_are_the_engines() {
    let engine = engine();
    let groups = vec!["g".to_string()];
    let attributes = BTreeMap::from([("trust_level".to_string(), "high".to_string())]);
    let (s7, s99) = (context("s7"), context("s99"));
    let cases = [
        // 70 policies in scope: the blocking pool.
        ("a", "reports.read", Some(&s7), 70, true),
        ("a", "REPORTS.read", Some(&s99), 70, false),
        // One in scope: inline.
        ("a", "docs.read", None, 1, true),
        ("b", "docs.read", None, 0, false),
        // Not a valid action name: refused, nothing evaluated.
        ("a", "reports..read", Some(&s7), 0, false),
    ];
    for (actor, action, context, in_scope, allowed) in cases {
        let mut request = PolicyRequest::new(actor, action, "r")
            .with_actor_groups(&groups)
            .with_actor_attributes(&attributes);
        if let Some(context) = context {
            request = request.with_context(context);
        }
        assert_eq!(engine.scope(&request).len(), in_scope, "{actor} {action}");
        let decided = decide(&engine, &request).await;
        assert_eq!(decided, engine.decide(&request), "{actor} {action}");
        assert_eq!(decided.allowed, allowed, "{actor} {action}: {decided:?}");
    }
}
