//! `zt serve --store postgres://…`: the real binary on a PostgreSQL audit store. Decisions are
//! logged there, a restart continues the same chain, and `zt audit verify --store` checks it
//! (several servers on one store: `e2e_replicas.rs`). Needs PostgreSQL on 127.0.0.1:5432 (`.ci/run`
//! starts it; `ZT_TEST_POSTGRES_URL` overrides); skips (prints `SKIPPED: …`) without it unless
//! `ZT_REQUIRE_SERVICES=1`.

use crate::common;
// The same fresh-schema helper as the ledger's conformance suite.
use crate::pg_schema;

use common::{parse, zt, Server};
use serde_json::json;

/// Sends `n` decisions; returns each answer's audit envelope (seq, current and previous hash).
fn decide_n(server: &Server, n: usize, tag: &str) -> Vec<(u64, String, String)> {
    (0..n)
        .map(|i| {
            let (status, v) = server.decide("pg-agent", "files.read", &format!("{tag}-{i}"));
            assert!(status == 200 || status == 403, "{status}: {v}");
            let audit = &v["audit"];
            (
                v["evidence"]["seq"].as_u64().unwrap(),
                audit["current_hash"].as_str().unwrap().to_string(),
                audit["previous_hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_postgres_store_keeps_one_chain_across_restarts() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let store = schema.url();
    let dir = tempfile::tempdir().unwrap();

    let first = Server::start(dir.path(), &["--store", &store]);
    assert_eq!(
        first
            .json("POST", "/agents", Some(json!({"actor": "pg-agent"})))
            .0,
        201
    );
    let before = decide_n(&first, 20, "before");
    assert!(
        !dir.path().join("audit.db").exists(),
        "the log lives in postgres, not in the data directory"
    );

    let stored_before = first.records();
    assert_eq!(first.terminate(), Some(0));

    // Restart: the chain continues from the stored head, never from genesis.
    let second = Server::start(dir.path(), &["--store", &store]);
    let after = decide_n(&second, 5, "after");
    let head_before = stored_before.last().map(|l| parse(l));
    let head_before = head_before.as_ref().unwrap();
    assert_eq!(after[0].0, head_before["seq"].as_u64().unwrap() + 1);
    assert_eq!(after[0].2, head_before["current_hash"].as_str().unwrap());
    let records = second.records();
    let chain = common::assert_one_chain(&records, "after the restart");
    for (seq, hash, _) in before.iter().chain(&after) {
        let r = &chain[usize::try_from(*seq).unwrap()];
        assert_eq!(
            r["current_hash"].as_str().unwrap(),
            hash,
            "answer {seq} is stored"
        );
    }

    // Offline verification straight from the store, beside the running server.
    let out = zt(&["audit", "verify", "--json", "--store", &store]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["valid"],
        true
    );
    assert_eq!(second.terminate(), Some(0));
}

/// The database drops the server's sessions (a restart, a network cut): decisions caught in
/// the cut fail closed with an error, never an answer without a record; the next ones go
/// through on new sessions, and the chain is whole.
#[test]
fn a_lost_database_connection_fails_closed_then_recovers() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let store = schema.url();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--store", &store]);
    server.json("POST", "/agents", Some(json!({"actor": "pg-agent"})));
    let before = decide_n(&server, 5, "before");
    assert!(schema.terminate_sessions() >= 1, "the server had sessions");

    let mut refused = 0;
    let mut answered = Vec::new();
    for i in 0..20 {
        let (status, v) = server.decide("pg-agent", "files.read", &format!("after-{i}"));
        match status {
            200 | 403 => answered.push(v["evidence"]["seq"].as_u64().unwrap()),
            503 => {
                assert!(answered.is_empty(), "refusals come before recovery: {v}");
                assert!(v["error"].is_string(), "a JSON error: {v}");
                refused += 1;
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert!(
        refused <= 2,
        "recovers on the next batch: {refused} refused"
    );
    assert!(answered.len() >= 18);
    assert_eq!(
        answered[0],
        before.last().unwrap().0 + 1,
        "the chain goes on"
    );
    let out = zt(&["audit", "verify", "--json", "--store", &store]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
