//! One decision against the policy shapes least privilege produces, at 10 to 100,000 policies:
//! a permit per agent on one action, a permit per resource, a permit per agent and resource,
//! and a realistic mix (per-agent permits with context conditions, per-group permits on
//! resources, per-agent forbids, trust-gated permits, and a few general forbids every decision
//! evaluates). The index should keep the cost flat as the set grows. Loading time and the
//! resident memory the loaded engine adds are printed for each set.
//!
//! `ZT_BENCH_MAX_POLICIES` caps the sizes run (default 100,000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code: a failed unwrap is a failed bench"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Map, Value};
use zt_policy::{PolicyEngine, PolicyRequest};

const SIZES: [usize; 5] = [10, 100, 1_000, 10_000, 100_000];

fn per_agent(i: usize) -> String {
    format!(
        "@id(\"p{i}\")\npermit(principal == Agent::\"agent-{i}\", action == Action::\"docs.read\", resource);\n"
    )
}

fn per_resource(i: usize) -> String {
    format!(
        "@id(\"p{i}\")\npermit(principal, action == Action::\"docs.read\", resource == Resource::\"doc-{i}\");\n"
    )
}

fn per_agent_and_resource(i: usize) -> String {
    format!(
        "@id(\"p{i}\")\npermit(principal == Agent::\"agent-{i}\", action == Action::\"docs.read\", resource == Resource::\"doc-{i}\");\n"
    )
}

/// A mix: 60% per-agent permits on a group of actions with a context condition, 20% per-group
/// permits on one resource, 10% per-agent forbids unless approved, 10% trust-gated permits on
/// their own action; plus three general forbids on context that every decision evaluates.
fn mixed(i: usize) -> String {
    let general = if i == 0 {
        "@id(\"no-prod-without-approval\") @reason(\"production needs an approval\")\n\
         forbid(principal, action, resource)\n\
         when { context has environment && context.environment == \"prod\" }\n\
         unless { context has approval_id };\n\
         @id(\"no-untrusted-source\")\n\
         forbid(principal, action in Action::\"docs.*\", resource)\n\
         when { context has source && context.source == \"untrusted\" };\n\
         @id(\"no-low-trust-deletes\")\n\
         forbid(principal, action == Action::\"docs.delete\", resource)\n\
         when { principal has trust_level && principal.trust_level == \"low\" };\n"
    } else {
        ""
    };
    let one = match i % 10 {
        0..=5 => format!(
            "@id(\"p{i}\")\npermit(principal == Agent::\"agent-{i}\", action in Action::\"docs.*\", resource)\n\
             when {{ context has environment && context.environment == \"staging\" }};\n"
        ),
        6 | 7 => format!(
            "@id(\"p{i}\")\npermit(principal in Group::\"team-{i}\", action == Action::\"docs.read\", resource == Resource::\"doc-{i}\");\n"
        ),
        8 => format!(
            "@id(\"p{i}\") @reason(\"deletes need an approval\")\n\
             forbid(principal == Agent::\"agent-{i}\", action == Action::\"docs.delete\", resource)\n\
             unless {{ context has approval_id }};\n"
        ),
        _ => format!(
            "@id(\"p{i}\")\npermit(principal, action == Action::\"svc{i}.read\", resource == Resource::\"doc-{i}\")\n\
             when {{ principal has trust_level && principal.trust_level == \"high\" }};\n"
        ),
    };
    format!("{general}{one}")
}

/// Resident set size in bytes (Linux), for a rough memory figure.
fn resident() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn max_policies() -> usize {
    std::env::var("ZT_BENCH_MAX_POLICIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

type Shape = (&'static str, fn(usize) -> String);

fn shapes(c: &mut Criterion) {
    let all: [Shape; 4] = [
        ("per_agent", per_agent),
        ("per_resource", per_resource),
        ("per_agent_and_resource", per_agent_and_resource),
        ("mixed", mixed),
    ];
    let attributes: BTreeMap<String, String> =
        [("trust_level".to_string(), "high".to_string())].into();
    let context: Map<String, Value> = json!({"environment": "staging"})
        .as_object()
        .unwrap()
        .clone();
    for (shape, policy) in all {
        let mut group = c.benchmark_group(format!("shape/{shape}"));
        group
            .sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for n in SIZES.into_iter().filter(|&n| n <= max_policies()) {
            let text: String = (0..n).map(policy).collect();
            let before = resident();
            let started = Instant::now();
            let engine = PolicyEngine::from_cedar(&text).unwrap();
            let took = started.elapsed();
            let added = resident()
                .zip(before)
                .map(|(after, before)| after.saturating_sub(before) / (1024 * 1024));
            eprintln!(
                "{shape} {n}: loaded in {took:.2?}, resident memory +{} MiB",
                added.map_or("?".to_string(), |m| m.to_string())
            );
            drop(text);
            // The agent, group and resource in the middle of the set: one policy (plus the
            // general ones) can apply.
            let i = (n / 2 / 10) * 10 + 6;
            let actor = format!("agent-{}", if shape == "mixed" { i - 6 } else { n / 2 });
            let resource = format!("doc-{}", if shape == "mixed" { i } else { n / 2 });
            let groups = vec![format!("team-{i}")];
            let request = PolicyRequest::new(&actor, "docs.read", &resource)
                .with_actor_attributes(&attributes)
                .with_actor_groups(&groups)
                .with_context(&context);
            let d = engine.decide(&request);
            assert!(d.allowed, "{shape} {n}: {d:?}");
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| black_box(engine.decide(black_box(&request))))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, shapes);
criterion_main!(benches);
