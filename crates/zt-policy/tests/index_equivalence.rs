//! The indexed engine answers exactly as plain Cedar over the whole set: random policy sets
//! (permits and forbids; principal scopes on agents, groups and types; action scopes exact, on
//! groups, lists and wildcards; resource scopes; conditions on context, attributes and group
//! membership, some of which fail to evaluate) and random requests, compared with
//! `cedar_policy::Authorizer` over every policy. The decision, the reason, the deciding policy
//! ids and the evaluation errors must all be equal.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap or index is a failed test"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, Policy, PolicyId, PolicySet, Request,
    RestrictedExpression,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use zt_policy::{PolicyDecision, PolicyEngine, PolicyRequest, Scoped};

const AGENTS: [&str; 3] = ["a0", "a1", "a2"];
const GROUPS: [&str; 3] = ["g0", "g1", "g2"];
const RESOURCES: [&str; 3] = ["r0", "r1", ""];
const ACTIONS: [&str; 4] = ["x.y", "x.z", "x.y.w", "v"];

fn principal() -> impl Strategy<Value = String> {
    let agent = prop::sample::select(&AGENTS[..]);
    let group = prop::sample::select(&GROUPS[..]);
    prop_oneof![
        3 => Just("principal".to_string()),
        1 => Just("principal is Agent".to_string()),
        4 => agent.clone().prop_map(|a| format!("principal == Agent::\"{a}\"")),
        1 => agent.prop_map(|a| format!("principal in Agent::\"{a}\"")),
        3 => group.clone().prop_map(|g| format!("principal in Group::\"{g}\"")),
        1 => group.prop_map(|g| format!("principal is Agent in Group::\"{g}\"")),
    ]
}

fn action() -> impl Strategy<Value = String> {
    let named = prop::sample::select(vec!["x.y", "x.z", "x.y.w", "v", "x.*", "x.y.*", "*"]);
    prop_oneof![
        2 => Just("action".to_string()),
        3 => named.clone().prop_map(|a| format!("action == Action::\"{a}\"")),
        3 => named.clone().prop_map(|a| format!("action in Action::\"{a}\"")),
        1 => (named.clone(), named).prop_map(|(a, b)| {
            format!("action in [Action::\"{a}\", Action::\"{b}\"]")
        }),
    ]
}

fn resource() -> impl Strategy<Value = String> {
    let named = prop::sample::select(&RESOURCES[..]);
    prop_oneof![
        4 => Just("resource".to_string()),
        1 => Just("resource is Resource".to_string()),
        3 => named.clone().prop_map(|r| format!("resource == Resource::\"{r}\"")),
        1 => named.clone().prop_map(|r| format!("resource in Resource::\"{r}\"")),
        1 => named.prop_map(|r| format!("resource is Resource in Resource::\"{r}\"")),
    ]
}

/// Conditions, some of which error (a missing attribute or context key).
fn condition() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "",
        "",
        r#"when { context has environment && context.environment == "prod" }"#,
        r#"unless { context has source }"#,
        r#"when { context.environment == "prod" }"#,
        r#"when { principal.trust_level == "high" }"#,
        r#"when { principal in Group::"g1" }"#,
        r#"unless { resource.type == "db" }"#,
        r#"when { context.action like "x.*" }"#,
    ])
    .prop_map(str::to_string)
}

#[derive(Debug, Clone)]
struct Generated {
    forbid: bool,
    scope: (String, String, String),
    condition: String,
}

impl Generated {
    fn text(&self) -> String {
        let effect = if self.forbid { "forbid" } else { "permit" };
        let (p, a, r) = &self.scope;
        format!("{effect}({p}, {a}, {r}) {};", self.condition)
    }
}

fn policy() -> impl Strategy<Value = Generated> {
    (
        prop::bool::weighted(0.3),
        principal(),
        action(),
        resource(),
        condition(),
    )
        .prop_map(|(forbid, p, a, r, condition)| Generated {
            forbid,
            scope: (p, a, r),
            condition,
        })
}

#[derive(Debug, Clone)]
struct Asked {
    actor: String,
    groups: Vec<String>,
    action: String,
    resource: String,
    trust_level: Option<String>,
    resource_type: Option<String>,
    context: Map<String, Value>,
}

fn asked() -> impl Strategy<Value = Asked> {
    let context = prop::sample::select(vec![
        json!({}),
        json!({"environment": "prod"}),
        json!({"environment": "dev", "source": "trusted"}),
        json!({"source": "x"}),
    ]);
    (
        prop::sample::select(&AGENTS[..]),
        prop::sample::subsequence(&GROUPS[..], 0..=2),
        prop::sample::select(&ACTIONS[..]),
        prop::sample::select(&RESOURCES[..]),
        prop::option::of(Just("high")),
        prop::option::of(Just("db")),
        context,
    )
        .prop_map(
            |(actor, groups, action, resource, trust, ty, context)| Asked {
                actor: actor.into(),
                groups: groups.into_iter().map(str::to_string).collect(),
                action: action.into(),
                resource: resource.into(),
                trust_level: trust.map(str::to_string),
                resource_type: ty.map(str::to_string),
                context: context.as_object().unwrap().clone(),
            },
        )
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_str(&format!("{ty}::{id:?}")).unwrap()
}

/// Every wildcard group of `action` (`x.y.w` is in `x.y.*`, `x.*` and `*`).
fn action_groups(action: &str) -> HashSet<EntityUid> {
    let mut groups: HashSet<EntityUid> = action
        .match_indices('.')
        .map(|(i, _)| uid("Action", &format!("{}*", &action[..=i])))
        .collect();
    groups.insert(uid("Action", "*"));
    groups
}

fn string_attrs(pairs: &[(&str, &Option<String>)]) -> HashMap<String, RestrictedExpression> {
    pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| (k.to_string(), RestrictedExpression::new_string(v.clone())))
        })
        .collect()
}

/// Plain Cedar over the whole set, explained by the engine's documented rules (fail closed,
/// then the first matching forbid, then the first matching permit, in policy order).
fn oracle(policies: &[Generated], asked: &Asked, time: i64) -> PolicyDecision {
    let mut set = PolicySet::new();
    for (i, p) in policies.iter().enumerate() {
        set.add(Policy::parse(Some(PolicyId::new(format!("p{i}"))), p.text()).unwrap())
            .unwrap();
    }
    let principal = uid("Agent", &asked.actor);
    let action = uid("Action", &asked.action);
    let resource = uid("Resource", &asked.resource);
    let entities = Entities::from_entities(
        [
            Entity::new(
                principal.clone(),
                string_attrs(&[("trust_level", &asked.trust_level)]),
                asked.groups.iter().map(|g| uid("Group", g)).collect(),
            )
            .unwrap(),
            Entity::new(
                resource.clone(),
                string_attrs(&[("type", &asked.resource_type)]),
                HashSet::new(),
            )
            .unwrap(),
            Entity::new_no_attrs(action.clone(), action_groups(&asked.action)),
        ],
        None,
    )
    .unwrap();
    let mut context = asked.context.clone();
    context.insert("action".into(), asked.action.clone().into());
    context.insert("request_time".into(), time.into());
    let context = Context::from_json_value(Value::Object(context), None).unwrap();
    let request = Request::new(principal, action, resource, context, None).unwrap();
    let response = Authorizer::new().is_authorized(&request, &set, &entities);
    let position = |id: &str| id.trim_start_matches('p').parse::<usize>().unwrap();
    let name = |position: usize| format!("p{position}");
    let mut errors: Vec<(usize, String)> = response
        .diagnostics()
        .errors()
        .map(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(failed) = e;
            (position(failed.policy_id().as_ref()), e.to_string())
        })
        .collect();
    if !errors.is_empty() {
        errors.sort();
        let mut failed: Vec<usize> = errors.iter().map(|(p, _)| *p).collect();
        failed.dedup();
        return PolicyDecision {
            allowed: false,
            reason: format!(
                "policy `p{}` failed to evaluate, so the request is denied (fail closed)",
                failed[0]
            ),
            determining_policies: failed.into_iter().map(name).collect(),
            errors: errors.into_iter().map(|(_, e)| e).collect(),
        };
    }
    let mut satisfied: Vec<usize> = response
        .diagnostics()
        .reason()
        .map(|id| position(id.as_ref()))
        .collect();
    satisfied.sort_unstable();
    let forbids: Vec<usize> = satisfied
        .iter()
        .copied()
        .filter(|&p| policies[p].forbid)
        .collect();
    let (allowed, deciding) = if forbids.is_empty() {
        (true, satisfied)
    } else {
        (false, forbids)
    };
    let Some(&first) = deciding.first() else {
        return PolicyDecision {
            allowed: false,
            reason: "action is not in the allow list".into(),
            determining_policies: Vec::new(),
            errors: Vec::new(),
        };
    };
    PolicyDecision {
        allowed,
        reason: format!(
            "{} by policy `p{first}`",
            if allowed { "allowed" } else { "denied" }
        ),
        determining_policies: deciding.into_iter().map(name).collect(),
        errors: Vec::new(),
    }
}

fn engine(policies: &[Generated]) -> PolicyEngine {
    // Unvalidated: conditions that fail to evaluate are the point, and the validator would
    // refuse them.
    let text: String = policies
        .iter()
        .enumerate()
        .map(|(i, p)| format!("@id(\"p{i}\") @unvalidated(\"generated\")\n{}\n", p.text()))
        .collect();
    PolicyEngine::from_cedar(&text).unwrap()
}

/// How the engine decides one request: directly, and through a scope made owned (the server's
/// path to its blocking pool), with the number of policies the scope evaluates.
struct Decided {
    direct: PolicyDecision,
    owned: PolicyDecision,
    in_scope: usize,
}

fn decide(engine: &PolicyEngine, asked: &Asked, time: SystemTime) -> Decided {
    let actor: BTreeMap<String, String> = asked
        .trust_level
        .iter()
        .map(|t| ("trust_level".to_string(), t.clone()))
        .collect();
    let resource: BTreeMap<String, String> = asked
        .resource_type
        .iter()
        .map(|t| ("type".to_string(), t.clone()))
        .collect();
    let request = PolicyRequest::new(&asked.actor, &asked.action, &asked.resource)
        .with_actor_attributes(&actor)
        .with_actor_groups(&asked.groups)
        .with_resource_attributes(&resource)
        .with_context(&asked.context)
        .at(time);
    let scoped = Scoped::new(engine, &request);
    let in_scope = scoped.len();
    Decided {
        direct: engine.decide(&request),
        owned: scoped.into_owned().decide(),
        in_scope,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_index_decides_as_cedar_over_the_whole_set(
        policies in proptest::collection::vec(policy(), 0..14),
        requests in proptest::collection::vec(asked(), 1..6),
    ) {
        let engine = engine(&policies);
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for asked in &requests {
            let expected = oracle(&policies, asked, 1_700_000_000);
            let got = decide(&engine, asked, time);
            prop_assert_eq!(&got.direct, &expected, "request {:?}\npolicies:\n{}", asked,
                policies.iter().map(Generated::text).collect::<Vec<_>>().join("\n"));
            // A scope made owned, to move to another thread, decides the same.
            prop_assert_eq!(&got.owned, &expected);
            // What the scope reports it evaluates covers every policy that decided.
            prop_assert!(got.in_scope >= got.direct.determining_policies.len());
        }
    }
}

/// The generator reaches what the index must get right: group scopes that match, resource
/// scopes that match, errors, and forbids that decide (a sanity check on the strategies, so a
/// generator that never exercises a case cannot pass silently).
#[test]
fn the_generated_cases_cover_groups_resources_errors_and_forbids() {
    let on = |p: &str, a: &str, r: &str, c: &str, forbid: bool| Generated {
        forbid,
        scope: (p.into(), a.into(), r.into()),
        condition: c.into(),
    };
    let policies = [
        on(
            r#"principal in Group::"g0""#,
            r#"action in Action::"x.*""#,
            "resource",
            "",
            false,
        ),
        on(
            "principal",
            "action",
            r#"resource == Resource::"r1""#,
            "",
            true,
        ),
        on(
            r#"principal == Agent::"a2""#,
            "action",
            "resource",
            r#"when { principal.trust_level == "high" }"#,
            false,
        ),
    ];
    let engine = engine(&policies);
    let time = UNIX_EPOCH;
    let ask = |actor: &str, groups: &[&str], resource: &str| Asked {
        actor: actor.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        action: "x.y".into(),
        resource: resource.into(),
        trust_level: None,
        resource_type: None,
        context: Map::new(),
    };
    for (asked, allowed, deciding) in [
        (ask("a0", &["g0"], "r0"), true, vec!["p0"]),
        (ask("a0", &["g1"], "r0"), false, vec![]),
        (ask("a0", &["g0"], "r1"), false, vec!["p1"]),
        (ask("a2", &["g0"], "r0"), false, vec!["p2"]),
    ] {
        let got = decide(&engine, &asked, time).direct;
        assert_eq!(got, oracle(&policies, &asked, 0), "{asked:?}");
        assert_eq!(got.allowed, allowed, "{asked:?}");
        assert_eq!(got.determining_policies, deciding, "{asked:?}");
    }
}
