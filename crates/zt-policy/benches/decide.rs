//! One decision against policy sets of 10, 100, 1,000 and 10,000 policies, each policy on its
//! own action group (`svc{i}.*`), so only one can apply: with slicing the cost should not grow
//! with the set. `cedar_unsliced` is plain Cedar over the whole set, for comparison.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code: a failed unwrap is a failed bench"
)]

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

use cedar_policy::{Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Map, Value};
use zt_policy::{PolicyEngine, PolicyRequest};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

fn policy_text(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "@id(\"svc{i}\") @reason(\"svc{i} in staging\")\n\
                 permit(principal, action in Action::\"svc{i}.*\", resource)\n\
                 when {{ context has environment && context.environment == \"staging\" }};\n"
            )
        })
        .collect()
}

fn context() -> Map<String, Value> {
    json!({"environment": "staging", "approval_id": "chg-42"})
        .as_object()
        .unwrap()
        .clone()
}

fn sliced(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    let attributes: BTreeMap<String, String> =
        [("trust_level".to_string(), "high".to_string())].into();
    let context = context();
    for n in SIZES {
        let started = Instant::now();
        let engine = PolicyEngine::from_cedar(&policy_text(n)).unwrap();
        eprintln!("loading {n} policies took {:?}", started.elapsed());
        let action = format!("svc{}.read", n / 2);
        let request = PolicyRequest::new("bench-agent", &action, "res-1")
            .with_actor_attributes(&attributes)
            .with_context(&context);
        let d = engine.decide(&request);
        assert!(d.allowed, "{d:?}");
        group.bench_with_input(BenchmarkId::new("sliced", n), &n, |b, _| {
            b.iter(|| black_box(engine.decide(black_box(&request))))
        });
    }
    group.finish();
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_str(&format!("{ty}::{id:?}")).unwrap()
}

fn unsliced(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for n in [10, 100, 1_000] {
        let set = PolicySet::from_str(&policy_text(n)).unwrap();
        let action = uid("Action", &format!("svc{}.read", n / 2));
        let parents: HashSet<EntityUid> = [
            uid("Action", &format!("svc{}.*", n / 2)),
            uid("Action", "*"),
        ]
        .into();
        let authorizer = Authorizer::new();
        group.bench_with_input(BenchmarkId::new("cedar_unsliced", n), &n, |b, _| {
            b.iter(|| {
                let entities = Entities::from_entities(
                    [Entity::new_no_attrs(action.clone(), parents.clone())],
                    None,
                )
                .unwrap();
                let context =
                    Context::from_json_value(json!({"environment": "staging"}), None).unwrap();
                let request = Request::new(
                    uid("Agent", "bench-agent"),
                    action.clone(),
                    uid("Resource", "res-1"),
                    context,
                    None,
                )
                .unwrap();
                black_box(authorizer.is_authorized(&request, &set, &entities))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sliced, unsliced);
criterion_main!(benches);
