//! The example policy sets in `examples/policies/` load (parse and validate), and decide as the
//! golden vectors in `tests/vectors/example_decisions.json` say.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use zt_policy::{OwnedPolicyRequest, PolicyEngine};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies")
}

/// One vector: the example it runs against, the request, and the expected answer.
struct Vector {
    policy: String,
    request: OwnedPolicyRequest,
    allowed: bool,
    reason: String,
    determining: Vec<String>,
}

/// The keys of a vector that are not the request's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    policy: String,
    allowed: bool,
    reason: String,
    determining: Vec<String>,
}

/// Each vector's keys, split into the expectation and the request (each read strictly).
fn vectors() -> Vec<Vector> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/example_decisions.json");
    let all: Vec<Map<String, Value>> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all.into_iter()
        .map(|mut fields| {
            let expected: Map<String, Value> = ["policy", "allowed", "reason", "determining"]
                .into_iter()
                .filter_map(|k| Some((k.to_string(), fields.remove(k)?)))
                .collect();
            let e: Expected = serde_json::from_value(Value::Object(expected)).unwrap();
            Vector {
                policy: e.policy,
                request: serde_json::from_value(Value::Object(fields)).unwrap(),
                allowed: e.allowed,
                reason: e.reason,
                determining: e.determining,
            }
        })
        .collect()
}

#[test]
fn every_example_loads_and_has_vectors() {
    let covered: BTreeSet<String> = vectors().into_iter().map(|v| v.policy).collect();
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".cases.json") {
            continue; // `zt policy test` cases, run by zt-cli's e2e suite (policy_cli)
        }
        assert!(name.ends_with(".cedar"), "unexpected file {name}");
        let engine = PolicyEngine::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(engine.policy_count() > 0, "{name}");
        assert!(
            engine.warnings().is_empty(),
            "{name}: {:?}",
            engine.warnings()
        );
        found.insert(name);
    }
    assert_eq!(
        found, covered,
        "each example has vectors, each vector an example"
    );
}

#[test]
fn examples_decide_as_the_vectors_say() {
    let mut engines: BTreeMap<String, PolicyEngine> = BTreeMap::new();
    for (i, v) in vectors().iter().enumerate() {
        let engine = engines
            .entry(v.policy.clone())
            .or_insert_with(|| PolicyEngine::from_file(&examples_dir().join(&v.policy)).unwrap());
        let d = v.request.decide(engine);
        let what = format!(
            "vector {i} ({} {} on {})",
            v.policy, v.request.action, v.request.actor
        );
        assert_eq!(d.allowed, v.allowed, "{what}: {d:?}");
        assert_eq!(d.reason, v.reason, "{what}");
        assert_eq!(d.determining_policies, v.determining, "{what}");
        assert!(d.errors.is_empty(), "{what}: {:?}", d.errors);
    }
}
