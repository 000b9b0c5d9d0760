//! Three `zt serve` replicas on one PostgreSQL store, each with its own data directory and
//! audit key, under concurrent load; one is killed with `kill -9` mid-load. Every decision any
//! replica acknowledged is in the one shared chain, the chain verifies, every replica
//! publishes every replica's key, and the killed replica rejoins. A replica's key rotation is
//! recorded in the shared log. Needs PostgreSQL on
//! 127.0.0.1:5432 (`.ci/run` starts it); skips (prints `SKIPPED: …`) without it unless
//! `ZT_REQUIRE_SERVICES=1`.

use crate::common;
use crate::pg_schema;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http, zt, Server};
use serde_json::{json, Value};

const REPLICAS: usize = 3;
const THREADS_PER_REPLICA: usize = 6;
const AGENT: &str = "replica-agent";

/// A decision a replica answered: where it says its record is.
#[derive(Debug, Clone)]
struct Ack {
    replica: usize,
    seq: u64,
    current_hash: String,
    resource: String,
}

/// Sends decisions to one replica until told to stop or until the replica goes away.
fn load(port: u16, replica: usize, thread: usize, stop: &AtomicBool, acks: &Mutex<Vec<Ack>>) {
    for n in 0.. {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let resource = format!("r{replica}-{thread}-{n}");
        let body = json!({"actor": AGENT, "action": "files.read", "resource": resource});
        let Ok((status, raw)) = http(port, "POST", "/actions", Some(body.to_string().as_bytes()))
        else {
            return; // the replica died
        };
        // Only a complete decision answer is an acknowledgement.
        let Ok(v) = serde_json::from_slice::<Value>(&raw) else {
            return;
        };
        let (Some(seq), Some(hash)) = (
            v["evidence"]["seq"].as_u64(),
            v["audit"]["current_hash"].as_str(),
        ) else {
            assert!(
                status >= 500,
                "a non-decision answer must be an error: {status} {v}"
            );
            continue;
        };
        assert!(status == 200 || status == 403, "{status}: {v}");
        acks.lock().unwrap().push(Ack {
            replica,
            seq,
            current_hash: hash.to_string(),
            resource,
        });
    }
}

fn start_replica(dir: &std::path::Path, store: &str) -> Server {
    let server = Server::start(dir, &["--store", store]);
    let (status, v) = server.json("POST", "/agents", Some(json!({"actor": AGENT})));
    assert!(status == 201 || status == 409, "{status}: {v}");
    server
}

#[test]
fn three_replicas_share_one_chain_through_a_kill_9() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let store = schema.url();
    let dirs: Vec<_> = (0..REPLICAS)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut replicas: Vec<Option<Server>> = dirs
        .iter()
        .map(|d| Some(start_replica(d.path(), &store)))
        .collect();
    let ports: Vec<u16> = replicas.iter().flatten().map(|s| s.port).collect();

    let acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (replica, port) in ports.iter().copied().enumerate() {
        for thread in 0..THREADS_PER_REPLICA {
            let (acks, stop) = (acks.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                load(port, replica, thread, &stop, &acks)
            }));
        }
    }
    std::thread::sleep(Duration::from_millis(1200));
    let killed = 1;
    let acked_by_killed_before = acks
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.replica == killed)
        .count();
    replicas[killed].take().unwrap().kill9();
    std::thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    assert!(
        acked_by_killed_before > 0,
        "the killed replica answered before its death"
    );
    for replica in 0..REPLICAS {
        assert!(
            acks.iter().any(|a| a.replica == replica),
            "replica {replica} acknowledged nothing"
        );
    }

    // The killed replica rejoins on its own data directory: the chain goes on past the others.
    replicas[killed] = Some(start_replica(dirs[killed].path(), &store));
    let (status, v) =
        replicas[killed]
            .as_ref()
            .unwrap()
            .decide(AGENT, "files.read", "after-restart");
    assert!(status == 200 || status == 403, "{status}: {v}");
    let rejoined_seq = v["evidence"]["seq"].as_u64().unwrap();

    // One chain: contiguous, linked, and holding every acknowledged decision as answered.
    let records = replicas[0].as_ref().unwrap().records();
    assert!(records.len() as u64 > rejoined_seq);
    let chain = common::assert_one_chain(&records, "after the replica rejoined");
    for ack in &acks {
        let r = &chain[ack.seq as usize];
        assert_eq!(
            r["current_hash"].as_str().unwrap(),
            ack.current_hash,
            "{ack:?}"
        );
        assert_eq!(r["resource"].as_str().unwrap(), ack.resource, "{ack:?}");
    }

    // Every replica publishes all three keys, and checkpoints name one log.
    let mut origins = Vec::new();
    for server in replicas.iter().flatten() {
        let (status, keys) = server.json("GET", "/audit/keys", None);
        assert_eq!(status, 200);
        assert_eq!(keys["keys"].as_array().unwrap().len(), REPLICAS, "{keys}");
        let (status, note) = http(server.port, "GET", "/audit/checkpoint", None).unwrap();
        assert_eq!(status, 200);
        origins.push(
            String::from_utf8(note)
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string(),
        );
    }
    origins.dedup();
    assert_eq!(origins.len(), 1, "{origins:?}");

    // The whole store verifies, with every replica's signatures.
    let out = zt(&["audit", "verify", "--json", "--store", &store]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    // And through a replica's HTTP surface, as an outside verifier does.
    let url = replicas[2].as_ref().unwrap().url();
    let out = zt(&["audit", "verify", "--url", &url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn an_explicit_log_origin_names_every_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--log-origin", "audit.example.com/zt"]);
    let (status, note) = http(server.port, "GET", "/audit/checkpoint", None).unwrap();
    assert_eq!(status, 200);
    let note = String::from_utf8(note).unwrap();
    assert_eq!(note.lines().next(), Some("audit.example.com/zt"), "{note}");
    let (status, key) = server.json("GET", "/audit/checkpoint/key", None);
    assert_eq!(status, 200);
    assert_eq!(key["origin"], "audit.example.com/zt");
    drop(server);
    // An origin a checkpoint cannot carry is refused at start.
    let out = zt(&[
        "serve",
        "--auth",
        "none",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--log-origin",
        "two words",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("log origin"),
        "{out:?}"
    );
}

/// One decision answered by `server`; the key id that signed its record.
fn decide_signed_by(server: &Server, resource: &str) -> String {
    let body = json!({"actor": AGENT, "action": "files.read", "resource": resource});
    let (status, v) = server.json("POST", "/actions", Some(body));
    assert!(status == 200 || status == 403, "{status}: {v}");
    v["audit"]["kms_signature"]["key_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no signature: {v}"))
        .to_string()
}

/// `zt keys rotate` on one replica of a shared store: at its next start the rotation is
/// recorded in the shared log, endorsed by its outgoing key, although the other replica's
/// records came between; it names no place in the log, and a later start records nothing more.
#[test]
fn a_replicas_key_rotation_is_recorded_endorsed_in_the_shared_log() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let store = schema.url();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = start_replica(one.path(), &store);
    let second = start_replica(two.path(), &store);
    let old = decide_signed_by(&first, "before-1");
    let other = decide_signed_by(&second, "before-2");
    assert_ne!(old, other);
    first.terminate();
    decide_signed_by(&second, "while-1-is-down");

    let out = zt(&["keys", "rotate", "--data-dir", one.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let first = start_replica(one.path(), &store);
    let new = decide_signed_by(&first, "after-1");
    assert!(new != old && new != other, "{new}");
    assert_eq!(decide_signed_by(&second, "after-2"), other);

    let rotations = common::rotation_records(&second);
    assert_eq!(rotations.len(), 1, "{rotations:?}");
    let rotation = &rotations[0];
    assert_eq!(
        rotation["kms_signature"]["key_id"],
        new.as_str(),
        "{rotation}"
    );
    let member = &rotation["key_rotation"];
    assert_eq!(member["previous_key_id"], old.as_str(), "{rotation}");
    assert_eq!(member["key_id"], new.as_str(), "{rotation}");
    assert!(member["endorsement"].is_string(), "{rotation}");
    assert!(member.get("previous_hash").is_none(), "{rotation}");
    assert!(
        !std::fs::exists(one.path().join("keys/audit-signing-key.retiring.p8")).unwrap(),
        "the retired key is destroyed once it endorsed"
    );

    let report = common::verify_report(&["audit", "verify", "--url", &second.url()], "verify");
    let rotations = report["key_rotations"].as_array().unwrap();
    assert_eq!(rotations.len(), 1, "{report}");
    assert_eq!(rotations[0]["endorsed"], true, "{report}");
    assert_eq!(rotations[0]["bound_to_position"], false, "{report}");

    // Started again with the same key: nothing more to record.
    first.terminate();
    let first = start_replica(one.path(), &store);
    decide_signed_by(&first, "again");
    assert_eq!(common::rotation_records(&first).len(), 1);
    common::verify_report(&["audit", "verify", "--url", &first.url()], "verify again");
}
