//! The wire contract, end to end against the real binary: statuses, every field, reasons, the
//! audit envelope, evidence that recomputes, signatures that verify against `/audit/keys`.

use crate::common;

use base64::Engine;
use common::{parse, Server};
use serde_json::{json, Value};
use zt_contract::{record_hash, DecisionResponse, Jwks, PublicKeySet};

fn keys(server: &Server) -> PublicKeySet {
    let (status, body) = server.json("GET", "/audit/keys", None);
    assert_eq!(status, 200);
    let jwks: Jwks = serde_json::from_value(body).unwrap();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].kty, "EC");
    assert_eq!(jwks.keys[0].crv, "P-256");
    PublicKeySet::from_jwks(&jwks).unwrap()
}

fn assert_decision_shape(
    status: u16,
    body: &Value,
    allowed: bool,
    reason: &str,
) -> DecisionResponse {
    assert_eq!(status, if allowed { 200 } else { 403 }, "{body}");
    assert_eq!(body["ok"], allowed);
    assert_eq!(body["decision"], if allowed { "allow" } else { "deny" });
    assert_eq!(body["reason"], reason);
    let audit = body["audit"].as_object().unwrap();
    let mut keys: Vec<&str> = audit.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "current_hash",
            "kms_signature",
            "previous_hash",
            "timestamp"
        ]
    );
    assert!(zt_contract::timestamp::is_wire_timestamp(
        audit["timestamp"].as_str().unwrap()
    ));
    assert_eq!(audit["kms_signature"]["algorithm"], "ECDSA_SHA_256");
    let decision: DecisionResponse = serde_json::from_value(body.clone()).unwrap();
    assert!(
        decision.hash_matches(),
        "current_hash must recompute from the answer alone"
    );
    decision
}

#[test]
fn contract_statuses_fields_reasons_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let keys = keys(&server);

    let (s, b) = server.json(
        "POST",
        "/agents",
        Some(json!({"actor": "hello-world-agent"})),
    );
    assert_eq!(s, 201);
    assert_eq!(
        (&b["ok"], &b["actor"], &b["registered"]),
        (&json!(true), &json!("hello-world-agent"), &json!(true))
    );
    // Exactly the contract's three keys: under `--auth none` no token is issued (nobody
    // would check it).
    assert!(b.get("token").is_none(), "{b}");
    assert_eq!(b.as_object().unwrap().len(), 3);
    let (s, b) = server.json("POST", "/agents", Some(json!({"actor": ""})));
    assert_eq!(
        (s, &b),
        (400, &json!({"ok": false, "error": "actor is required"}))
    );

    let (s, b) = server.decide("hello-world-agent", "aws.ec2.terminate_instances", "i-demo");
    let ec2 = assert_decision_shape(
        s,
        &b,
        false,
        "Terminating EC2 instances is denied by the default policy.",
    );
    assert_eq!(ec2.audit.previous_hash, {
        // The registration above is record 0; this decision links to it.
        let head0 = parse(&server.records()[0]);
        head0["current_hash"].as_str().unwrap().to_string()
    });
    let (s, b) = server.decide("ghost-agent", "hello-world.say_hello", "r");
    assert_decision_shape(s, &b, false, "agent is not registered");
    let (s, b) = server.decide("hello-world-agent", "hello-world.say_hello", "r");
    let unlisted = assert_decision_shape(s, &b, false, "action is not in the allow list");

    let (s, b) = server.json(
        "POST",
        "/policies/allow",
        Some(json!({"action": "hello-world.say_hello", "reason": "Hello is harmless."})),
    );
    assert_eq!(s, 201);
    assert_eq!(b["ok"], true);
    assert_eq!(b["decision"], "allow");
    assert_ne!(b["policy_version"], json!(unlisted.evidence.policy_version));

    // Resource absent means "" and is echoed as such.
    let (s, b) = server.json(
        "POST",
        "/actions",
        Some(json!({"actor": "hello-world-agent", "action": "hello-world.say_hello"})),
    );
    let allowed = assert_decision_shape(s, &b, true, "Hello is harmless.");
    assert_eq!(allowed.resource, "");
    assert_eq!(
        allowed.evidence.policy_version.as_deref(),
        b["evidence"]["policy_version"].as_str()
    );
    assert!(
        !allowed.evidence.authenticated,
        "--auth none records say unauthenticated"
    );

    // Context and request id are hashed into the record and echoed.
    let (s, b) = server.json(
        "POST",
        "/actions",
        Some(json!({"actor": "hello-world-agent", "action": "hello-world.say_hello", "resource": "x",
                    "context": {"environment": "staging", "approval_id": "A-1"}, "request_id": "nonce-1"})),
    );
    let with_context = assert_decision_shape(s, &b, true, "Hello is harmless.");
    assert_eq!(with_context.evidence.request_id.as_deref(), Some("nonce-1"));
    assert_eq!(
        with_context
            .evidence
            .context_sha256
            .as_ref()
            .map(String::len),
        Some(64)
    );

    // Every answer is in the log, byte for byte the fields it was given, signed.
    let records: Vec<Value> = server.records().iter().map(|l| parse(l)).collect();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64);
        let map = r.as_object().unwrap();
        assert_eq!(
            record_hash(map).to_hex(),
            r["current_hash"].as_str().unwrap()
        );
        let sig = &r["kms_signature"];
        let der = base64::engine::general_purpose::STANDARD
            .decode(sig["signature"].as_str().unwrap())
            .unwrap();
        let digest = zt_contract::Digest32::from_hex(r["current_hash"].as_str().unwrap()).unwrap();
        assert!(keys.verify_digest(sig["key_id"].as_str().unwrap(), &digest, &der));
        if i > 0 {
            assert_eq!(r["previous_hash"], records[i - 1]["current_hash"]);
        }
    }
    for d in [&ec2, &unlisted, &allowed, &with_context] {
        let stored = &records[d.evidence.seq as usize];
        assert_eq!(stored["current_hash"], d.audit.current_hash);
        let body = serde_json::to_value(d.record_body()).unwrap();
        for (k, v) in body.as_object().unwrap() {
            assert_eq!(&stored[k], v, "field {k}");
        }
    }
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        // The allow shortcut is a proposal, its approval and its activation.
        [
            "admin", "decision", "decision", "decision", "admin", "admin", "admin", "decision",
            "decision"
        ]
    );

    let (s, head) = server.json("GET", "/audit/head", None);
    assert_eq!(s, 200);
    assert_eq!(head["records"], records.len());
    assert_eq!(head["seq"], records.len() - 1);
    assert_eq!(
        head["current_hash"],
        records.last().unwrap()["current_hash"]
    );
}

#[test]
fn registry_routes_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.json("POST", "/agents", Some(json!({"actor": "a1"})));
    server.json("POST", "/agents", Some(json!({"actor": "a2"})));
    let (s, b) = server.json("GET", "/agents", None);
    assert_eq!(s, 200);
    let names: Vec<&str> = b["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["actor"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1", "a2"]);

    let (s, b) = server.json("DELETE", "/agents/a1", None);
    assert_eq!((s, b["registered"].clone()), (200, json!(false)));
    let (s, b) = server.decide("a1", "anything", "");
    assert_eq!(
        (s, b["reason"].as_str()),
        (403, Some("agent is not registered"))
    );
    let (s, b) = server.json("DELETE", "/agents/a1", None);
    assert_eq!(s, 404);
    assert_eq!(b["ok"], false);
    let actions: Vec<String> = server
        .records()
        .iter()
        .map(|l| parse(l)["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "zt.admin.agents.register",
            "zt.admin.agents.register",
            "zt.admin.agents.remove",
            "anything"
        ]
    );
}

#[test]
fn state_survives_restart_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.json("POST", "/agents", Some(json!({"actor": "keeper"})));
    server.json(
        "POST",
        "/policies/allow",
        Some(json!({"action": "keep.*", "reason": "kept"})),
    );
    let (s, first) = server.decide("keeper", "keep.going", "r");
    assert_eq!(s, 200);
    assert_eq!(server.terminate(), Some(0));

    let server = Server::start(dir.path(), &[]);
    let (s, second) = server.decide("keeper", "keep.going", "r");
    assert_eq!(s, 200, "registry and policy persisted: {second}");
    assert_eq!(
        second["audit"]["previous_hash"],
        first["audit"]["current_hash"]
    );
    assert_eq!(
        second["evidence"]["seq"],
        first["evidence"]["seq"].as_u64().unwrap() + 1
    );
}

#[test]
fn policy_file_at_start_uses_the_reference_format() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"defaultDecision":"deny","allow":[{"action":"mcp.github.*","reason":"GitHub tools allowed"}],
            "deny":[{"action":"mcp.github.delete_repo","reason":"never delete repos"}]}"#,
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--policy", policy.to_str().unwrap()],
    );
    server.json("POST", "/agents", Some(json!({"actor": "gh"})));
    let (s, b) = server.decide("gh", "mcp.github.create_pull_request", "repo");
    assert_eq!(
        (s, b["reason"].as_str()),
        (200, Some("GitHub tools allowed"))
    );
    let (s, b) = server.decide("gh", "mcp.github.delete_repo", "repo");
    assert_eq!((s, b["reason"].as_str()), (403, Some("never delete repos")));
    let (s, b) = server.decide("gh", "aws.ec2.terminate_instances", "i");
    assert_eq!(
        (s, b["reason"].as_str()),
        (403, Some("action is not in the allow list"))
    );
}

#[test]
fn health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (s, h) = server.json("GET", "/health", None);
    assert_eq!(s, 200);
    assert_eq!(h["ok"], true);
    assert_eq!(h["auth"], "none");
    assert!(h["warning"]
        .as_str()
        .unwrap()
        .contains("authentication is off"));
    server.json("POST", "/agents", Some(json!({"actor": "m"})));
    server.decide("m", "x", "");
    let text = server.metrics();
    for needle in [
        "zt_decisions_total{decision=\"deny\"} 1",
        "zt_decision_duration_seconds_count 1",
        "zt_audit_commit_duration_seconds_count",
        "zt_audit_commit_stage_duration_seconds_count{stage=\"queue\"}",
        "zt_audit_commit_stage_duration_seconds_count{stage=\"seal\"}",
        "zt_audit_commit_stage_duration_seconds_count{stage=\"handoff\"}",
        "zt_audit_commit_stage_duration_seconds_count{stage=\"store\"}",
        "zt_audit_chain_length 2",
    ] {
        assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
    }
}
