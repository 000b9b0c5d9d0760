//! Agent groups and the policy index, end to end with the real binary: `PUT
//! /agents/{actor}/groups` sets an agent's groups (audited, persisted across a restart),
//! `principal in Group::"..."` policies decide by them, bad group lists are refused, and a
//! large set of per-agent permits plus broad conditional policies (evaluated on the blocking
//! pool) decides exactly.

use crate::common;

use common::{parse, Server};
use serde_json::{json, Value};

/// Per-agent permits on `docs.read`, group permits, and 70 broad permits with a condition
/// each (more than the server evaluates inline).
fn policy_text() -> String {
    let mut text = String::from(
        "@id(\"billing-reads-invoices\")\n\
         permit(principal in Group::\"billing\", action == Action::\"invoices.read\", resource);\n\
         @id(\"no-invoices-for-interns\") @reason(\"interns may not read invoices\")\n\
         forbid(principal in Group::\"interns\", action == Action::\"invoices.read\", resource);\n",
    );
    for i in 0..200 {
        text.push_str(&format!(
            "@id(\"agent-{i}-docs\")\npermit(principal == Agent::\"agent-{i}\", action == Action::\"docs.read\", resource);\n"
        ));
    }
    for i in 0..70 {
        text.push_str(&format!(
            "@id(\"source-{i}\")\npermit(principal, action == Action::\"reports.read\", resource)\n\
             when {{ context has source && context.source == \"s{i}\" }};\n"
        ));
    }
    text
}

fn decide(server: &Server, actor: &str, action: &str, context: Value) -> (u16, Value) {
    server.json(
        "POST",
        "/actions",
        Some(json!({"actor": actor, "action": action, "resource": "r", "context": context})),
    )
}

fn set_groups(server: &Server, actor: &str, groups: Value) -> (u16, Value) {
    server.json(
        "PUT",
        &format!("/agents/{actor}/groups"),
        Some(json!({ "groups": groups })),
    )
}

fn register(server: &Server, actor: &str) {
    let (status, body) = server.json("POST", "/agents", Some(json!({ "actor": actor })));
    assert_eq!(status, 201, "{body}");
}

#[test]
fn groups_steer_policy_and_are_audited_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.cedar");
    std::fs::write(&policy, policy_text()).unwrap();
    let data = dir.path().join("data");
    let args = ["--policy", policy.to_str().unwrap()];
    let server = Server::start(&data, &args);
    register(&server, "bill");
    register(&server, "agent-123");

    let (status, body) = decide(&server, "bill", "invoices.read", json!({}));
    assert_eq!(status, 403, "not yet in the group: {body}");

    let (status, body) = set_groups(&server, "bill", json!(["billing", "ops", "billing"]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["groups"], json!(["billing", "ops"]));
    let (status, body) = decide(&server, "bill", "invoices.read", json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["evidence"]["policies"],
        json!(["billing-reads-invoices"])
    );

    // A forbid on another group the agent joins wins.
    let (status, _) = set_groups(&server, "bill", json!(["billing", "interns"]));
    assert_eq!(status, 200);
    let (status, body) = decide(&server, "bill", "invoices.read", json!({}));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "interns may not read invoices");

    // Refused: a name outside the grammar, too many groups, an unknown agent.
    let (status, body) = set_groups(&server, "bill", json!(["has space"]));
    assert_eq!(status, 400, "{body}");
    let many: Vec<String> = (0..65).map(|i| format!("g{i}")).collect();
    let (status, _) = set_groups(&server, "bill", json!(many));
    assert_eq!(status, 400);
    let (status, _) = set_groups(&server, "nobody", json!(["billing"]));
    assert_eq!(status, 404);

    // Per-agent permits: only the agent's own applies.
    let (status, body) = decide(&server, "agent-123", "docs.read", json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["evidence"]["policies"], json!(["agent-123-docs"]));
    let (status, _) = decide(&server, "bill", "docs.read", json!({}));
    assert_eq!(status, 403);

    // Broad conditional permits (more than are evaluated inline): exact all the same.
    let (status, body) = decide(&server, "bill", "reports.read", json!({"source": "s42"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["evidence"]["policies"], json!(["source-42"]));
    let (status, _) = decide(&server, "bill", "reports.read", json!({"source": "s70"}));
    assert_eq!(status, 403);

    let (status, body) = server.json("GET", "/agents", None);
    assert_eq!(status, 200);
    let bill = body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["actor"] == "bill")
        .unwrap()
        .clone();
    assert_eq!(bill["attributes"]["groups"], json!(["billing", "interns"]));

    let changes: Vec<Value> = server
        .records()
        .iter()
        .map(|line| parse(line))
        .filter(|r| r["action"] == "zt.admin.agents.set_groups")
        .collect();
    assert_eq!(changes.len(), 2, "only the applied changes are recorded");
    assert_eq!(changes[0]["resource"], "bill");
    assert_eq!(
        changes[1]["reason"],
        "groups of agent `bill` set to [billing, interns]"
    );

    // Kept across a restart; emptied, the group permit no longer applies.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(&data, &args);
    let (status, _) = decide(&server, "bill", "invoices.read", json!({}));
    assert_eq!(status, 403, "still an intern");
    let (status, _) = set_groups(&server, "bill", json!(["billing"]));
    assert_eq!(status, 200);
    let (status, _) = decide(&server, "bill", "invoices.read", json!({}));
    assert_eq!(status, 200);
    let (status, _) = set_groups(&server, "bill", json!([]));
    assert_eq!(status, 200);
    let (status, _) = decide(&server, "bill", "invoices.read", json!({}));
    assert_eq!(status, 403);
}
