//! Many clients at once against the real binary: every answer is a committed, correctly placed
//! record, and concurrent commits leave exactly one unforked, contiguous chain.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{assert_one_chain, verify_report, Server};
use serde_json::{json, Value};

/// Client threads.
const CLIENTS: usize = 64;
/// Decisions each client sends.
const DECISIONS_PER_CLIENT: usize = 30;
/// No client may run longer than this (the whole test must stay well under ~20 s).
const CLIENT_BUDGET: Duration = Duration::from_secs(15);

/// What one client asked and what it was answered.
struct Answer {
    actor: String,
    action: String,
    resource: String,
    expect_allow: bool,
    status: u16,
    body: Value,
}

/// One client: registers its own actor, then sends a fixed mix of allowed, policy-denied and
/// unregistered-actor decisions, each on its own connection.
fn client(server: &Server, id: usize) -> Vec<Answer> {
    let actor = format!("conc-agent-{id:02}");
    let (status, body) = server.json("POST", "/agents", Some(json!({ "actor": actor })));
    assert_eq!(status, 201, "client {id}: registering {actor}: {body}");
    assert_eq!(body["registered"], true, "{body}");

    let started = Instant::now();
    let mut answers = Vec::with_capacity(DECISIONS_PER_CLIENT);
    for n in 0..DECISIONS_PER_CLIENT {
        assert!(
            started.elapsed() < CLIENT_BUDGET,
            "client {id} ran out of time after {n} decisions"
        );
        // Thirds: allowed by policy, denied by policy, denied because the actor is unknown.
        let (who, action, expect_allow) = match (n + id) % 3 {
            0 => (actor.clone(), format!("conc.read.item{n}"), true),
            1 => (actor.clone(), format!("conc.write.item{n}"), false),
            _ => (
                format!("conc-ghost-{id:02}"),
                format!("conc.read.item{n}"),
                false,
            ),
        };
        let resource = format!("res-{id}-{n}");
        let (status, body) = server.decide(&who, &action, &resource);
        answers.push(Answer {
            actor: who,
            action,
            resource,
            expect_allow,
            status,
            body,
        });
    }
    answers
}

#[test]
fn concurrent_clients_get_one_unforked_chain() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir, &[]);

    // Setup: one policy change; every client then registers its own actor (one admin record each).
    let (status, body) = server.json(
        "POST",
        "/policies/allow",
        Some(json!({"action": "conc.read.*", "reason": "reads are fine"})),
    );
    assert_eq!(status, 201, "{body}");
    // The allow shortcut writes three records (proposal, approval, activation).
    let setup_records = 3 + CLIENTS;

    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let server = &server;
        let handles: Vec<_> = (0..CLIENTS)
            .map(|id| scope.spawn(move || client(server, id)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread panicked"))
            .collect()
    });
    let load_time = test_started.elapsed();
    assert_eq!(answers.len(), CLIENTS * DECISIONS_PER_CLIENT);

    // Every answer is a decision: 200 for allow, 403 for deny, and the one expected.
    for a in &answers {
        assert!(
            a.status == 200 || a.status == 403,
            "{} {}: status {} {}",
            a.actor,
            a.action,
            a.status,
            a.body
        );
        let expected = if a.expect_allow { 200 } else { 403 };
        assert_eq!(a.status, expected, "{} {}: {}", a.actor, a.action, a.body);
        assert_eq!(
            a.body["decision"],
            if a.expect_allow { "allow" } else { "deny" },
            "{}",
            a.body
        );
        assert_eq!(a.body["actor"], a.actor.as_str());
        assert_eq!(a.body["action"], a.action.as_str());
        assert_eq!(a.body["resource"], a.resource.as_str());
    }

    let lines = server.records();
    let records = assert_one_chain(&lines, "after the load");
    assert_eq!(
        records.len(),
        answers.len() + setup_records,
        "the log holds exactly the answered decisions plus the setup records"
    );
    let admin = records.iter().filter(|r| r["kind"] == "admin").count();
    assert_eq!(admin, setup_records, "admin records");
    let decisions = records.iter().filter(|r| r["kind"] == "decision").count();
    assert_eq!(decisions, answers.len(), "decision records");

    // Index the log by hash; every hash must be unique.
    let mut by_hash: HashMap<&str, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let previous = by_hash.insert(r["current_hash"].as_str().unwrap(), i);
        assert!(
            previous.is_none(),
            "current_hash of record {i} appears twice in the log"
        );
    }

    // Every answer names exactly one stored record, at the seq its evidence says, linked to
    // the record before it, holding the fields the answer echoed.
    let mut answered_seqs = std::collections::HashSet::new();
    for a in &answers {
        let hash = a.body["audit"]["current_hash"].as_str().unwrap();
        let seq = a.body["evidence"]["seq"].as_u64().unwrap() as usize;
        assert!(answered_seqs.insert(seq), "two answers claim seq {seq}");
        let found = records.iter().filter(|r| r["current_hash"] == hash).count();
        assert_eq!(
            found, 1,
            "answered hash {hash} must appear exactly once in the log"
        );
        assert_eq!(
            by_hash.get(hash),
            Some(&seq),
            "answered hash {hash} is not at seq {seq}"
        );
        let stored = &records[seq];
        assert_eq!(stored["kind"], "decision");
        assert_eq!(
            stored["previous_hash"], a.body["audit"]["previous_hash"],
            "seq {seq}"
        );
        assert_eq!(stored["actor"], a.body["actor"], "seq {seq}");
        assert_eq!(stored["action"], a.body["action"], "seq {seq}");
        assert_eq!(stored["resource"], a.body["resource"], "seq {seq}");
        assert_eq!(stored["decision"], a.body["decision"], "seq {seq}");
        assert_eq!(stored["reason"], a.body["reason"], "seq {seq}");
        assert_eq!(
            stored["timestamp"], a.body["audit"]["timestamp"],
            "seq {seq}"
        );
        assert_eq!(
            stored["kms_signature"], a.body["audit"]["kms_signature"],
            "seq {seq}"
        );
        if seq > 0 {
            assert_eq!(stored["previous_hash"], records[seq - 1]["current_hash"]);
        }
    }

    let (s, head) = server.json("GET", "/audit/head", None);
    assert_eq!(s, 200);
    assert_eq!(head["records"], records.len());
    assert_eq!(
        head["current_hash"],
        records.last().unwrap()["current_hash"]
    );

    // Online verification over HTTP.
    let url = server.url();
    let report = verify_report(&["audit", "verify", "--url", &url], "verify --url");
    assert_eq!(report["records"], records.len(), "{report}");

    // Orderly shutdown drains and exits 0; the log on disk then verifies offline.
    let head_hash = records.last().unwrap()["current_hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(server.terminate(), Some(0), "SIGTERM shutdown must exit 0");
    let dir_arg = data_dir.to_str().unwrap();
    let report = verify_report(
        &["audit", "verify", "--data-dir", dir_arg],
        "verify --data-dir",
    );
    assert_eq!(
        report["records"],
        records.len(),
        "no record may appear or vanish at shutdown\n{report}"
    );
    assert_eq!(report["head_hash"], head_hash.as_str(), "{report}");
    let out = common::zt(&["audit", "verify", "--data-dir", dir_arg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    eprintln!(
        "e2e_concurrency: {} decisions from {CLIENTS} clients in {load_time:?}, {} records, total {:?}",
        answers.len(),
        records.len(),
        test_started.elapsed()
    );
}
