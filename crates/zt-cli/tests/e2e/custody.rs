//! Audit key custody against real implementations: AWS KMS (moto's server on loopback, with
//! and without the `DIGEST` fix) and PKCS#11 (a SoftHSM2 token made by the test), each in
//! per-record and session-key mode. Every log must pass `zt audit verify`; a KMS cut off or a
//! token that fails makes decisions fail with 503 (in session-key mode once the session key
//! expires) until it is back; rotation keeps old records verifiable.

use crate::common;
use crate::custody_support as custody;

use std::io::Write;
use std::path::Path;

use common::{sample, zt, Server};
use custody::{Moto, Relay, SoftHsm};
use serde_json::{json, Map, Value};

/// Run by the SoftHSM helper in a child process to make key pairs on a token; a no-op
/// otherwise.
#[test]
fn custody_make_keys() {
    custody::make_keys_in_child();
}

fn register(server: &Server) {
    let (status, body) = server.json("POST", "/agents", Some(json!({"actor": "agent-1"})));
    assert_eq!(status, 201, "{body}");
}

/// `zt serve --auth none` signing every record with moto's first key through a relay that can
/// cut KMS off (signer deadline 1 s), `agent-1` registered: the relay, the data directory and
/// the server.
fn kms_per_record_behind_a_relay(moto: &Moto) -> (Relay, tempfile::TempDir, Server) {
    let relay = Relay::start(moto.port);
    let dir = tempfile::tempdir().unwrap();
    let signer = format!("aws-kms:{}", moto.arns[0]);
    let server = Server::start_with_env(
        dir.path(),
        "none",
        &["--signer", &signer, "--signer-timeout-ms", "1000"],
        &Moto::env(relay.port),
    );
    register(&server);
    (relay, dir, server)
}

/// `n` decisions from `n` threads at once; their statuses.
fn decide_many(server: &Server, n: usize) -> Vec<u16> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                scope.spawn(move || {
                    let (status, _) = server.json(
                        "POST",
                        "/actions",
                        Some(json!({"actor": "agent-1", "action": "read", "resource": format!("doc-{i}")})),
                    );
                    status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn key_ids(server: &Server) -> Vec<String> {
    server
        .records()
        .iter()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["kms_signature"]["key_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn jwks(server: &Server) -> Vec<Value> {
    let (status, body) = server.json("GET", "/audit/keys", None);
    assert_eq!(status, 200);
    body["keys"].as_array().unwrap().clone()
}

/// `zt audit verify --url` reports the server's log valid, every rotation held to its place.
fn verify_url(server: &Server) {
    let report =
        common::verify_report(&["audit", "verify", "--url", &server.url()], "verify --url");
    assert_rotations_bound(&report);
}

/// `zt audit verify --data-dir` reports the stopped server's log valid, every rotation held
/// to its place.
fn verify_offline(data_dir: &Path) {
    let report = common::verify_report(
        &["audit", "verify", "--data-dir", data_dir.to_str().unwrap()],
        "verify --data-dir",
    );
    assert_rotations_bound(&report);
}

fn assert_rotations_bound(report: &Value) {
    for rotation in report["key_rotations"].as_array().unwrap() {
        assert_eq!(rotation["bound_to_position"], true, "{report}");
    }
}

/// The log verifies online, then the server stops and it verifies offline.
fn stop_and_verify(server: Server, data_dir: &Path) {
    verify_url(&server);
    server.terminate();
    verify_offline(data_dir);
}

/// `zt serve` on `data_dir` with `signer` and `env`, expected to refuse to start; its stderr.
fn refused_start(data_dir: &Path, signer: &str, env: &[(&str, String)]) -> String {
    let port = common::free_port();
    let out = std::process::Command::new(common::zt_bin())
        .args([
            "serve",
            "--auth",
            "none",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--signer", signer])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The rotation record names `previous` and `incoming`, the record it follows, and carries an
/// endorsement (checked by `zt audit verify`, which every test runs after a rotation).
fn assert_endorsed(rotation: &Value, previous: &str, incoming: &str) {
    let endorsement = &rotation["key_rotation"];
    assert_bound(rotation);
    assert_eq!(endorsement["previous_key_id"], previous, "{rotation}");
    assert_eq!(endorsement["key_id"], incoming, "{rotation}");
    assert!(endorsement["endorsement"].is_string(), "{rotation}");
    assert!(rotation["reason"]
        .as_str()
        .unwrap()
        .contains("endorsed by the outgoing key"));
}

/// The rotation is bound to the record right before it, the outgoing key's last.
fn assert_bound(rotation: &Value) {
    assert!(
        rotation["previous_hash"].as_str().unwrap().len() == 64,
        "{rotation}"
    );
    assert_eq!(
        rotation["key_rotation"]["previous_hash"], rotation["previous_hash"],
        "{rotation}"
    );
}

/// A decision was answered, so its record was signed and stored: no policy is loaded, so the
/// answer is a deny (403).
fn signed(status: u16) -> bool {
    status == 403
}

/// Decides until one is answered, at most `tries` times, 100 ms apart (the signer's state
/// changes between batches, so a decision in flight may still see the old one, and a refusal
/// may come at once: a session key renewal still waiting for the custody key refuses batches
/// without asking it again).
fn decide_until_signed(server: &Server, tries: usize) -> bool {
    (0..tries).any(|i| {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        decide_many(server, 1).iter().all(|s| signed(*s))
    })
}

#[test]
fn kms_per_record_past_its_quota_answers_every_decision_and_keeps_one_chain() {
    // KMS answering 40 `Sign` calls a second: 128 decisions at once are far past it.
    let Some(moto) = Moto::start_throttled(40) else {
        return;
    };
    let arn = moto.arns[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let signer = format!("aws-kms:{arn}");
    let server = Server::start_with_env(
        dir.path(),
        "none",
        &["--signer", &signer, "--signer-timeout-ms", "2000"],
        &Moto::env(moto.port),
    );
    register(&server);
    let before = server.records().len();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.extend(decide_many(&server, 32));
    }
    let committed = statuses.iter().filter(|s| signed(**s)).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(committed + refused, statuses.len(), "{statuses:?}");
    assert!(committed > 0, "{statuses:?}");
    // Every answered decision is a record and nothing else is: a batch signed in part stored
    // its signed prefix only, and the chain has no gap (verified below).
    assert_eq!(server.records().len(), before + committed);
    stop_and_verify(server, dir.path());
}

#[test]
fn a_request_id_whose_record_was_refused_after_its_client_left_is_not_spent() {
    let Some(moto) = Moto::start(false, 1) else {
        return;
    };
    let (relay, dir, server) = kms_per_record_behind_a_relay(&moto);
    // KMS cut off: the record will be refused after the 1 s signer deadline; the client sends
    // a request id and goes away before that.
    relay.set_cut(true);
    let body = json!({"actor": "agent-1", "action": "read", "request_id": "once"}).to_string();
    let mut client = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        client,
        "POST /actions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(client);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    relay.set_cut(false);
    assert!(decide_until_signed(&server, 30), "the signer is back");
    // No record holds the id, so it is not spent: decided, not refused as a replay.
    let (status, answer) = server.json(
        "POST",
        "/actions",
        Some(serde_json::from_str(&body).unwrap()),
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["evidence"]["request_id"], json!("once"), "{answer}");
    assert!(
        !answer["reason"].as_str().unwrap().contains("replay"),
        "{answer}"
    );
    stop_and_verify(server, dir.path());
}

#[test]
fn kms_per_record_signs_every_record_fails_closed_when_cut_off_and_recovers() {
    let Some(moto) = Moto::start(false, 1) else {
        return;
    };
    let (relay, dir, server) = kms_per_record_behind_a_relay(&moto);
    let arn = moto.arns[0].clone();
    assert!(decide_many(&server, 24).iter().all(|s| signed(*s)));
    // Every record is signed by the KMS key, named by its ARN, published at /audit/keys.
    assert!(key_ids(&server).iter().all(|k| *k == arn));
    assert!(jwks(&server).iter().any(|k| k["kid"] == arn.as_str()));
    let (_, health) = server.json("GET", "/health", None);
    assert_eq!(health["audit"]["signer"]["kind"], "aws-kms");
    assert_eq!(health["audit"]["signer"]["mode"], "per-record");
    assert_eq!(health["audit"]["signer"]["up"], true);
    verify_url(&server);

    // KMS unreachable: decisions are refused (503), nothing unsigned is stored, /health says so.
    let before = server.records().len();
    relay.set_cut(true);
    assert!(decide_many(&server, 4).iter().all(|s| *s == 503));
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["audit"]["signer"]["up"], false);
    assert!(health["audit"]["signer"]["last_error"].is_string());
    assert_eq!(server.records().len(), before);
    let metrics = server.metrics();
    assert!(metrics.contains("zt_audit_signer_up 0"), "{metrics}");
    assert!(sample(&metrics, "zt_audit_signer_failures_total") >= 1.0);

    // Back: the control plane recovers by itself.
    relay.set_cut(false);
    assert!(decide_until_signed(&server, 20));
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 200, "{health}");
    stop_and_verify(server, dir.path());
}

#[test]
fn kms_session_keys_are_certified_by_the_kms_key_and_rotation_keeps_old_records_valid() {
    let Some(moto) = Moto::start(false, 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = format!("aws-kms:{}", moto.arns[0]);
    let server = Server::start_with_env(
        dir.path(),
        "none",
        &["--signer", &first, "--session-key-ttl", "1h"],
        &Moto::env(moto.port),
    );
    register(&server);
    assert!(decide_many(&server, 16).iter().all(|s| signed(*s)));
    let keys = jwks(&server);
    let sessions: Vec<&Value> = keys
        .iter()
        .filter(|k| k["zt_session"].is_object())
        .collect();
    assert_eq!(sessions.len(), 1, "{keys:?}");
    let session = sessions[0];
    assert_eq!(
        session["zt_session"]["custody_key_id"],
        moto.arns[0].as_str()
    );
    assert!(key_ids(&server)
        .iter()
        .all(|k| k == session["kid"].as_str().unwrap()));
    let (_, health) = server.json("GET", "/health", None);
    assert_eq!(health["audit"]["signer"]["mode"], "session-keys");
    verify_url(&server);

    // A verifier given a key set whose certificate was altered refuses the log.
    let mut forged = keys.clone();
    for key in &mut forged {
        if key["zt_session"].is_object() {
            key["zt_session"]["not_after"] = json!("2099-01-01T00:00:00.000Z");
        }
    }
    let keys_file = dir.path().join("forged-keys.json");
    std::fs::write(&keys_file, json!({"keys": forged}).to_string()).unwrap();
    let records_file = dir.path().join("records.jsonl");
    std::fs::write(&records_file, server.records().join("\n") + "\n").unwrap();
    let out = zt(&[
        "audit",
        "verify",
        records_file.to_str().unwrap(),
        "--keys",
        keys_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    server.terminate();

    // Rotation to a second KMS key: a rotation record, new records by the new key's
    // session, and the old key and session still published.
    let second = format!("aws-kms:{}", moto.arns[1]);
    // A --previous-signer that did not sign the newest records cannot endorse: refused.
    let stderr = refused_start(
        dir.path(),
        &second,
        &[
            Moto::env(moto.port),
            vec![("ZT_PREVIOUS_SIGNER", second.clone())],
        ]
        .concat(),
    );
    assert!(stderr.contains("newest records are signed by"), "{stderr}");
    let server = Server::start_with_env(
        dir.path(),
        "none",
        &[
            "--signer",
            &second,
            "--previous-signer",
            &first,
            "--session-key-ttl",
            "1h",
        ],
        &Moto::env(moto.port),
    );
    assert!(decide_many(&server, 4).iter().all(|s| signed(*s)));
    let rotations = common::rotation_records(&server);
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["resource"], moto.arns[1].as_str());
    assert_endorsed(&rotations[0], &moto.arns[0], &moto.arns[1]);
    let kids: Vec<String> = jwks(&server)
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert!(kids.contains(&moto.arns[0]) && kids.contains(&moto.arns[1]));
    assert_eq!(
        kids.iter().filter(|k| k.starts_with("zt-session-")).count(),
        2
    );
    stop_and_verify(server, dir.path());
}

#[test]
fn unpatched_moto_digest_signatures_are_caught_by_verify_after_sign() {
    // moto 5.2 hashes a DIGEST message again: its signatures do not verify over the digest.
    let Some(moto) = Moto::start(true, 1) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The first checkpoint is signed at start: the wrong signature stops the server before
    // it answers anything.
    let signer = format!("aws-kms:{}", moto.arns[0]);
    let stderr = refused_start(dir.path(), &signer, &Moto::env(moto.port));
    assert!(
        stderr.contains("does not verify with its public key"),
        "{stderr}"
    );
}

#[test]
fn pkcs11_per_record_then_session_keys_with_rotation_verify() {
    let Some(hsm) = SoftHsm::create(&["audit-1", "audit-2"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = hsm.signer("audit-1");
    let server = Server::start_with_env(dir.path(), "none", &["--signer", &first], &hsm.env());
    register(&server);
    assert!(decide_many(&server, 16).iter().all(|s| signed(*s)));
    let (_, health) = server.json("GET", "/health", None);
    assert_eq!(health["audit"]["signer"]["kind"], "pkcs11");
    let custody = health["audit"]["signer"]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(custody.starts_with("zt-pkcs11-"));
    assert!(key_ids(&server).iter().all(|k| *k == custody));
    verify_url(&server);
    server.terminate();

    // A wrong PIN is refused at start.
    let mut wrong_pin = hsm.env();
    wrong_pin.push(("ZT_PKCS11_PIN", "0000".into()));
    assert!(refused_start(dir.path(), &first, &wrong_pin).contains("logging in"));

    // Session keys certified by a second token key: the rotation is recorded.
    let second = hsm.signer("audit-2");
    let server = Server::start_with_env(
        dir.path(),
        "none",
        &[
            "--signer",
            &second,
            "--previous-signer",
            &first,
            "--session-key-ttl",
            "10s",
        ],
        &hsm.env(),
    );
    assert!(decide_many(&server, 16).iter().all(|s| signed(*s)));
    let rotations = common::rotation_records(&server);
    assert_eq!(rotations.len(), 1);
    assert!(rotations[0]["reason"].as_str().unwrap().contains(&custody));
    let (_, health) = server.json("GET", "/health", None);
    let incoming = health["audit"]["signer"]["key_id"].as_str().unwrap();
    assert_endorsed(&rotations[0], &custody, incoming);
    let last = key_ids(&server).pop().unwrap();
    assert!(last.starts_with("zt-session-"));
    // A session key is renewed (a new one certified and published before it signs) once a
    // quarter of its 10 s is left; records keep flowing across the renewal.
    let renewed = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(decide_many(&server, 1).iter().all(|s| signed(*s)));
        jwks(&server)
            .iter()
            .filter(|k| k["zt_session"].is_object())
            .count()
            >= 2
    });
    assert!(renewed);
    assert_ne!(key_ids(&server).pop().unwrap(), last);
    stop_and_verify(server, dir.path());
}

#[test]
fn local_key_rotation_is_recorded_and_old_records_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    register(&server);
    assert!(decide_many(&server, 4).iter().all(|s| signed(*s)));
    let old = key_ids(&server).pop().unwrap();
    // Refused while the server runs (it holds the data directory).
    let out = zt(&["keys", "rotate", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    server.terminate();

    let out = zt(&["keys", "rotate", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("endorsed by {old},")), "{said}");
    let server = Server::start(dir.path(), &[]);
    assert!(decide_many(&server, 4).iter().all(|s| signed(*s)));
    let rotations = common::rotation_records(&server);
    assert_eq!(rotations.len(), 1);
    let new = key_ids(&server).pop().unwrap();
    assert_ne!(new, old);
    assert_eq!(rotations[0]["resource"], new.as_str());
    assert_endorsed(&rotations[0], &old, &new);
    // Once the endorsement is recorded the outgoing private key is destroyed.
    let keys_dir = dir.path().join("keys");
    assert!(!keys_dir.join("audit-signing-key.retiring.p8").exists());
    assert!(keys_dir.join("audit-signing-key.p8").exists());
    let kids: Vec<Value> = jwks(&server).iter().map(|k| k["kid"].clone()).collect();
    assert!(kids.contains(&json!(old)) && kids.contains(&json!(new)));
    stop_and_verify(server, dir.path());
}

/// A decision refused because the audit signer is down: 503 with the JSON error.
fn refused_for_audit(server: &Server) -> bool {
    let (status, body) = server.json(
        "POST",
        "/actions",
        Some(json!({"actor": "agent-1", "action": "read", "resource": "doc"})),
    );
    if status != 503 {
        assert!(signed(status), "{status} {body}");
        return false;
    }
    assert_eq!(body["ok"], false, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("audit log unavailable"),
        "{body}"
    );
    true
}

/// A server on a SoftHSM2 token's key `audit-1` (backed up first), signing per record, or with
/// session keys when started with `--session-key-ttl`.
/// Fields drop in order: the server stops before its token and data directory go.
struct TokenServer {
    server: Server,
    dir: tempfile::TempDir,
    hsm: SoftHsm,
}

/// Starts a [`TokenServer`] with `--signer-timeout-ms timeout_ms` and the `extra` flags and
/// checks that 8 decisions are signed; `None` (skip) without SoftHSM2 or `pkcs11-tool`.
fn token_server(timeout_ms: &str, extra: &[&str]) -> Option<TokenServer> {
    let hsm = SoftHsm::create(&["audit-1"])?;
    if !custody::pkcs11_tool_or_skip() {
        return None;
    }
    hsm.back_up();
    let dir = tempfile::tempdir().unwrap();
    let signer = hsm.signer("audit-1");
    let args = [
        &["--signer", &signer, "--signer-timeout-ms", timeout_ms][..],
        extra,
    ]
    .concat();
    let server = Server::start_with_env(dir.path(), "none", &args, &hsm.env());
    register(&server);
    assert!(decide_many(&server, 8).iter().all(|s| signed(*s)));
    Some(TokenServer { server, dir, hsm })
}

/// `/health`'s `last_error` for the signer, once it is down.
fn down_with(server: &Server) -> String {
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["audit"]["signer"]["can_sign"], false, "{health}");
    health["audit"]["signer"]["last_error"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Decisions (100 ms apart, all refused) until `/health`'s error contains `what`, at most
/// `tries`; the error.
fn refused_until(server: &Server, what: &str, tries: usize) -> String {
    for _ in 0..tries {
        assert!(refused_for_audit(server));
        let error = down_with(server);
        if error.contains(what) {
            return error;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("/health never said `{what}`: {}", down_with(server));
}

#[test]
fn pkcs11_per_record_fails_closed_when_the_token_loses_its_key_and_recovers() {
    let Some(TokenServer { server, dir, hsm }) = token_server("1000", &[]) else {
        return;
    };
    let before = server.metrics();
    let calls = sample(&before, "zt_audit_signer_calls_total");
    assert!(calls >= 1.0, "{before}");
    assert_eq!(sample(&before, "zt_audit_signer_failures_total"), 0.0);
    assert!(sample(&before, "zt_audit_signer_call_duration_seconds_count") >= calls);

    // The key is destroyed on the token by another process: every decision is refused with
    // 503, nothing is stored, /health and /metrics say the signer is down.
    let stored = server.records().len();
    hsm.destroy_private_key("audit-1");
    assert!((0..4).all(|_| refused_for_audit(&server)));
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["audit"]["signer"]["up"], false);
    assert_eq!(health["audit"]["signer"]["can_sign"], false);
    assert!(
        health["audit"]["signer"]["last_error"].is_string(),
        "{health}"
    );
    assert_eq!(server.records().len(), stored);
    let down = server.metrics();
    assert_eq!(sample(&down, "zt_audit_signer_up"), 0.0, "{down}");
    assert_eq!(sample(&down, "zt_audit_signer_can_sign"), 0.0);
    assert!(
        sample(&down, "zt_audit_signer_failures_total") >= 4.0,
        "{down}"
    );
    assert!(sample(&down, "zt_audit_signer_calls_total") > calls);

    // Restored from backup: the server reconnects to the token by itself and signs again,
    // with the same key.
    hsm.restore();
    assert!(decide_until_signed(&server, 20));
    assert!(decide_many(&server, 4).iter().all(|s| signed(*s)));
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 200, "{health}");
    let key_id = health["audit"]["signer"]["key_id"].as_str().unwrap();
    assert!(key_ids(&server).iter().all(|k| k == key_id));
    let after = server.metrics();
    assert_eq!(sample(&after, "zt_audit_signer_up"), 1.0);
    // Counters only grow.
    assert!(
        sample(&after, "zt_audit_signer_failures_total")
            >= sample(&down, "zt_audit_signer_failures_total")
    );
    stop_and_verify(server, dir.path());
}

/// A token that stops answering mid-call (SoftHSM2 blocked inside `C_Sign` and on every
/// reconnection, as a network HSM that hangs) refuses decisions with 503 instead of stalling
/// the committer; the server signs again by itself once the token answers, with the same key.
#[test]
fn pkcs11_a_token_that_hangs_refuses_decisions_then_recovers() {
    let Some(TokenServer { server, dir, hsm }) = token_server("500", &[]) else {
        return;
    };
    let stored = server.records().len();
    let Some(hang) = hsm.hang() else {
        return;
    };
    // Every decision is answered (the HTTP client gives up after 30 s), and refused; more
    // than the outstanding-call cap, so the cap refuses some without calling the token.
    for _ in 0..12 {
        assert!(refused_for_audit(&server));
    }
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["audit"]["signer"]["can_sign"], false);
    let error = health["audit"]["signer"]["last_error"].as_str().unwrap();
    assert!(
        ["no answer within", "have not returned", "has not returned"]
            .iter()
            .any(|why| error.contains(why)),
        "{health}"
    );
    assert_eq!(server.records().len(), stored);

    hang.release();
    assert!(decide_until_signed(&server, 40));
    assert!(decide_many(&server, 8).iter().all(|s| signed(*s)));
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 200, "{health}");
    let key_id = health["audit"]["signer"]["key_id"].as_str().unwrap();
    assert!(key_ids(&server).iter().all(|k| k == key_id));
    stop_and_verify(server, dir.path());
}

/// The session keys published at /audit/keys: those with a `zt_session` certificate.
fn session_keys(server: &Server) -> Vec<Value> {
    jwks(server)
        .into_iter()
        .filter(|k| k["zt_session"].is_object())
        .collect()
}

/// The one session key the server has made so far: certified by its custody key, and the
/// only key its records are signed with.
fn only_session_key(server: &Server) -> Value {
    let sessions = session_keys(server);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = sessions[0].clone();
    let (_, health) = server.json("GET", "/health", None);
    assert_eq!(health["audit"]["signer"]["mode"], "session-keys");
    assert_eq!(
        session["zt_session"]["custody_key_id"],
        health["audit"]["signer"]["key_id"]
    );
    assert!(key_ids(server).iter().all(|k| *k == session["kid"]));
    session
}

/// The custody key has just gone away: `session` keeps signing decisions (its renewal fails
/// in the background) until its certified period ends, and not a moment longer; from then on
/// every decision is refused with 503, nothing is stored, and /health and /metrics say that
/// no record can be signed.
fn session_key_signs_until_it_expires_then_refuses(server: &Server, session: &Value) {
    let not_after = session["zt_session"]["not_after"].as_str().unwrap();
    let not_after = zt_ledger::clock::parse_wire(not_after).unwrap();
    let before = server.records().len();
    let mut answered_during_outage = 0;
    // Polled for at most 15 s: the key is certified for 10 s.
    let refused = (0..150).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if refused_for_audit(server) {
            return true;
        }
        answered_during_outage += 1;
        false
    });
    assert!(
        refused,
        "decisions were still signed 15 s after the custody key went"
    );
    assert!(std::time::SystemTime::now() > not_after);
    assert!(answered_during_outage > 0);
    // Those decisions were stored, all signed by the session key the custody key certified
    // before it went.
    let ids = key_ids(server);
    assert_eq!(ids.len(), before + answered_during_outage);
    assert!(
        ids[before..].iter().all(|k| *k == session["kid"]),
        "{ids:?}"
    );

    let stored = server.records().len();
    assert!((0..3).all(|_| refused_for_audit(server)));
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["audit"]["signer"]["mode"], "session-keys");
    assert_eq!(health["audit"]["signer"]["up"], false);
    assert_eq!(health["audit"]["signer"]["can_sign"], false);
    assert!(
        health["audit"]["signer"]["last_error"].is_string(),
        "{health}"
    );
    assert_eq!(sample(&server.metrics(), "zt_audit_signer_can_sign"), 0.0);
    assert_eq!(server.records().len(), stored);
}

/// The custody key is back: without a restart, the next batches certify a new session key,
/// publish it with its certificate from the custody key and sign with it; the expired key
/// stays published, and the whole log verifies, online and offline.
fn session_key_renewed_after_the_outage(server: Server, data_dir: &Path, expired: &Value) {
    assert!(decide_until_signed(&server, 20));
    assert!(decide_many(&server, 4).iter().all(|s| signed(*s)));
    let (status, health) = server.json("GET", "/health", None);
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["audit"]["signer"]["up"], true);
    assert_eq!(health["audit"]["signer"]["can_sign"], true);
    let newest = key_ids(&server).pop().unwrap();
    assert_ne!(newest, expired["kid"], "no new session key after recovery");
    let sessions = session_keys(&server);
    let renewed = sessions
        .iter()
        .find(|k| k["kid"] == newest.as_str())
        .unwrap_or_else(|| panic!("{newest} is not published: {sessions:?}"));
    assert_eq!(
        renewed["zt_session"]["custody_key_id"],
        health["audit"]["signer"]["key_id"]
    );
    assert!(sessions.iter().any(|k| k["kid"] == expired["kid"]));
    stop_and_verify(server, data_dir);
}

/// The user PIN is changed on the token while the server runs, then the token loses the key:
/// the reconnection logs in with the old PIN once, the token refuses it, and the server never
/// logs in again (an HSM locks the PIN after a few wrong tries) — it refuses decisions and
/// /health says a restart with the right PIN is needed, even once the old PIN would work.
#[test]
fn pkcs11_a_refused_pin_is_not_tried_again() {
    let Some(TokenServer { server, dir, hsm }) = token_server("1000", &[]) else {
        return;
    };
    let stored = server.records().len();
    let new_pin = "8765";
    hsm.change_pin(custody::PIN, new_pin);
    hsm.destroy_key(new_pin, "audit-1", "privkey");
    let error = refused_until(&server, "refused the PIN", 40);
    assert!(
        error.contains("restart the server with the right PIN"),
        "{error}"
    );
    // The wrong PIN did not lock the token: the new PIN logs in, the old one does not.
    let (ok, stderr) = hsm.pkcs11_tool(new_pin, &["--list-objects"]);
    assert!(ok, "the new PIN no longer logs in: {stderr}");
    assert!(!hsm.pkcs11_tool(custody::PIN, &["--list-objects"]).0);

    // The token is restored with the key and the PIN the server holds: it still does not log
    // in, across several reconnection intervals.
    hsm.restore();
    for _ in 0..25 {
        assert!(refused_for_audit(&server));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(down_with(&server).contains("refused the PIN"));
    assert_eq!(server.records().len(), stored);
    stop_and_verify(server, dir.path());
}

/// Another key pair is made under the key's label after the key was destroyed: the server
/// reconnects, finds it, sees that its public key is not the one it started with, and refuses
/// every decision; no record is signed by the impostor.
#[test]
fn pkcs11_a_different_key_under_the_same_label_is_refused() {
    let Some(TokenServer { server, dir, hsm }) = token_server("1000", &[]) else {
        return;
    };
    let stored = server.records().len();
    let (_, health) = server.json("GET", "/health", None);
    let key_id = health["audit"]["signer"]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    hsm.destroy_key(custody::PIN, "audit-1", "privkey");
    hsm.destroy_key(custody::PIN, "audit-1", "pubkey");
    hsm.generate_key(custody::PIN, "audit-1");
    let error = refused_until(&server, "is no longer the key", 40);
    assert!(error.contains(&key_id), "{error}");
    // From then on, every reconnection finds the impostor and refuses it.
    for _ in 0..15 {
        assert!(refused_for_audit(&server));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(down_with(&server).contains("is no longer the key"));
    assert_eq!(server.records().len(), stored);
    assert!(key_ids(&server).iter().all(|k| *k == key_id));
    stop_and_verify(server, dir.path());
}

#[test]
fn pkcs11_session_key_outlives_a_token_outage_until_it_expires_then_fails_closed() {
    let Some(TokenServer { server, dir, hsm }) =
        token_server("1000", &["--session-key-ttl", "10s"])
    else {
        return;
    };
    let session = only_session_key(&server);

    // The custody key is gone from the token.
    hsm.destroy_private_key("audit-1");
    session_key_signs_until_it_expires_then_refuses(&server, &session);

    // Restored from backup.
    hsm.restore();
    session_key_renewed_after_the_outage(server, dir.path(), &session);
}

#[test]
fn kms_session_key_outlives_a_kms_outage_until_it_expires_then_fails_closed_and_recovers() {
    let Some(moto) = Moto::start(false, 1) else {
        return;
    };
    let arn = moto.arns[0].clone();
    let relay = Relay::start(moto.port);
    let dir = tempfile::tempdir().unwrap();
    let signer = format!("aws-kms:{arn}");
    let server = Server::start_with_env(
        dir.path(),
        "none",
        &[
            "--signer",
            &signer,
            "--session-key-ttl",
            "10s",
            "--signer-timeout-ms",
            "1000",
        ],
        &Moto::env(relay.port),
    );
    register(&server);
    assert!(decide_many(&server, 4).iter().all(|s| signed(*s)));
    let (_, health) = server.json("GET", "/health", None);
    assert_eq!(health["audit"]["signer"]["kind"], "aws-kms");
    assert_eq!(health["audit"]["signer"]["key_id"], arn.as_str());
    let session = only_session_key(&server);

    // KMS unreachable.
    relay.set_cut(true);
    session_key_signs_until_it_expires_then_refuses(&server, &session);

    // Back.
    relay.set_cut(false);
    session_key_renewed_after_the_outage(server, dir.path(), &session);
}

#[test]
fn a_rotation_whose_outgoing_key_is_lost_is_recorded_unendorsed_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    register(&server);
    assert!(decide_many(&server, 2).iter().all(|s| signed(*s)));
    let old = key_ids(&server).pop().unwrap();
    server.terminate();
    let out = zt(&["keys", "rotate", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    // The outgoing private key is lost before the next start.
    std::fs::remove_file(dir.path().join("keys/audit-signing-key.retiring.p8")).unwrap();
    let server = Server::start(dir.path(), &[]);
    let rotations = common::rotation_records(&server);
    assert_eq!(rotations.len(), 1);
    let rotation = &rotations[0];
    assert_eq!(rotation["key_rotation"]["previous_key_id"], old.as_str());
    assert_bound(rotation);
    assert!(
        rotation["key_rotation"]["endorsement"].is_null(),
        "{rotation}"
    );
    assert!(rotation["reason"]
        .as_str()
        .unwrap()
        .contains("NOT endorsed by the outgoing key"));
    assert!(decide_many(&server, 2).iter().all(|s| signed(*s)));
    stop_and_verify(server, dir.path());
}

#[test]
fn a_move_from_the_local_key_to_a_pkcs11_key_is_endorsed_by_the_local_key() {
    let Some(hsm) = SoftHsm::create(&["audit-1"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    register(&server);
    assert!(decide_many(&server, 4).iter().all(|s| signed(*s)));
    let old = key_ids(&server).pop().unwrap();
    assert!(old.starts_with("zt-p256-"), "{old}");
    server.terminate();

    let hsm_key = hsm.signer("audit-1");
    let args = ["--signer", hsm_key.as_str(), "--previous-signer", "local"];
    let server = Server::start_with_env(dir.path(), "none", &args, &hsm.env());
    assert!(decide_many(&server, 4).iter().all(|s| signed(*s)));
    let (_, health) = server.json("GET", "/health", None);
    assert_eq!(health["audit"]["signer"]["kind"], "pkcs11");
    let incoming = health["audit"]["signer"]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(incoming.starts_with("zt-pkcs11-"), "{incoming}");
    let rotations = common::rotation_records(&server);
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["resource"], incoming.as_str());
    assert_endorsed(&rotations[0], &old, &incoming);
    // Records before the move are the local key's, the rotation record and every one after
    // it the token key's.
    let ids = key_ids(&server);
    let at = server
        .records()
        .iter()
        .position(|l| l.contains("zt.audit.key.rotate"))
        .unwrap();
    assert!(ids[..at].iter().all(|k| *k == old), "{ids:?}");
    assert!(ids[at..].iter().all(|k| *k == incoming), "{ids:?}");
    let kids: Vec<Value> = jwks(&server).iter().map(|k| k["kid"].clone()).collect();
    assert!(kids.contains(&json!(old)), "{kids:?}");
    assert!(kids.contains(&json!(incoming)), "{kids:?}");
    stop_and_verify(server, dir.path());

    // The next start with the token key alone records no second rotation.
    let server = Server::start_with_env(dir.path(), "none", &args[..2], &hsm.env());
    assert!(decide_many(&server, 2).iter().all(|s| signed(*s)));
    assert_eq!(common::rotation_records(&server).len(), 1);
    assert!(jwks(&server).iter().any(|k| k["kid"] == old.as_str()));
    stop_and_verify(server, dir.path());
}

/// `zt audit verify --file FILE --keys KEYS --json` on `lines`: exit code and report.
fn verify_file(dir: &Path, records: &[Map<String, Value>], keys: &Value) -> (i32, Value, String) {
    let file = dir.join("log.jsonl");
    let text: String = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    let keys_file = dir.join("keys.json");
    std::fs::write(&keys_file, keys.to_string()).unwrap();
    let args = [
        "audit",
        "verify",
        "--file",
        file.to_str().unwrap(),
        "--keys",
        keys_file.to_str().unwrap(),
    ];
    let json_out = zt(&[&args[..], &["--json"]].concat());
    let report: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    let human = zt(&args);
    assert_eq!(human.status.code(), json_out.status.code());
    (
        json_out.status.code().unwrap(),
        report,
        String::from_utf8_lossy(&human.stdout).into_owned(),
    )
}

/// The holder of a new key (say, a server whose operator made a key of their own) cannot
/// claim that the outgoing key handed custody over: an endorsement it made itself, in a log
/// re-chained and re-signed with the new key so every other check passes, fails
/// `zt audit verify` at the rotation record, naming the endorsement.
#[test]
fn a_forged_endorsement_fails_zt_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir, &[]);
    register(&server);
    assert!(decide_many(&server, 2).iter().all(|s| signed(*s)));
    let old = key_ids(&server).pop().unwrap();
    server.terminate();
    let out = zt(&["keys", "rotate", "--data-dir", data_dir.to_str().unwrap()]);
    assert!(out.status.success());
    let server = Server::start(&data_dir, &[]);
    assert!(decide_many(&server, 2).iter().all(|s| signed(*s)));
    let records: Vec<Map<String, Value>> = server
        .records()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys = json!({"keys": jwks(&server)});
    server.terminate();
    let new_key = zt_ledger::LocalKeySigner::load_or_create(&data_dir).unwrap();
    let at = records
        .iter()
        .position(|r| r["action"] == "zt.audit.key.rotate")
        .unwrap();
    assert!(at > 0 && at + 1 < records.len());
    let seq = records[at]["seq"].clone();

    // The untouched log verifies, and so does one re-chained by the new key alone: the
    // re-chaining below is not what fails.
    let (code, report, _) = verify_file(dir.path(), &records, &keys);
    assert_eq!(code, 0, "{report}");
    let mut rechained = records.clone();
    common::relink(&mut rechained, at, Some(&new_key));
    let (code, report, _) = verify_file(dir.path(), &rechained, &keys);
    assert_eq!(code, 0, "{report}");

    let rotation: zt_contract::KeyRotation =
        serde_json::from_value(records[at]["key_rotation"].clone()).unwrap();
    assert_eq!(rotation.previous_key_id, old);
    use zt_ledger::Signer as _;
    let self_endorsed = new_key
        .sign_digest(&rotation.statement_digest())
        .unwrap()
        .signature;
    let genuine = rotation.endorsement.clone().unwrap();
    // The outgoing key's genuine endorsement with one bit flipped in its last byte.
    let mut flipped =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &genuine).unwrap();
    *flipped.last_mut().unwrap() ^= 1;
    let flipped = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, flipped);
    for (what, forged) in [("self-endorsed", self_endorsed), ("bit-flipped", flipped)] {
        assert_ne!(forged, genuine);
        let mut forged_log = records.clone();
        forged_log[at]["key_rotation"]["endorsement"] = json!(forged);
        common::relink(&mut forged_log, at, Some(&new_key));
        let (code, report, human) = verify_file(dir.path(), &forged_log, &keys);
        assert_eq!(code, 1, "{what}: {report}");
        assert_eq!(report["valid"], false, "{what}: {report}");
        assert_eq!(report["error"]["check"], "signature", "{what}: {report}");
        assert_eq!(report["error"]["seq"], seq, "{what}: {report}");
        assert!(
            report
                .to_string()
                .contains(&format!("the endorsement does not verify with `{old}`")),
            "{what}: {report}"
        );
        assert!(human.contains("INVALID"), "{what}: {human}");
        assert!(human.contains("endorsement"), "{what}: {human}");
    }
}
