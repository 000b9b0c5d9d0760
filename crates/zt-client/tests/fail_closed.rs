//! The SDK fails closed: protected work runs only on a complete, consistent `allow`.
//! Each case puts a real socket behind the client that answers one canned HTTP response.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zt_client::{ClientError, ControlPlane, Guarded, SkipCause};
use zt_contract::{Decision, DecisionRequest, Digest32, RecordBody, RecordKind, GENESIS_HASH};

/// Serves `status` + `body` to every connection; `None` accepts and never answers.
async fn fake_server(answer: Option<(u16, String)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                match answer {
                    Some((status, body)) => {
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    url
}

/// A decision response whose evidence hashes correctly.
fn answer(decision: Decision) -> Value {
    let body = RecordBody {
        action: "hello-world.say_hello".into(),
        actor: "agent".into(),
        authenticated: false,
        claimed_actor: None,
        context_sha256: None,
        counts: None,
        policies: None,
        decision,
        execution: None,
        kind: RecordKind::Decision,
        policy_version: Some("sha256:00".into()),
        previous_hash: GENESIS_HASH.into(),
        reason: "because".into(),
        request_id: None,
        resource: "r".into(),
        sandbox: None,
        seq: 0,
        timestamp: "2026-11-25T00:00:00.000Z".into(),
    };
    let hash = Digest32::sha256(&serde_json::to_vec(&body).unwrap()).to_hex();
    json!({
        "ok": decision == Decision::Allow, "actor": "agent", "action": "hello-world.say_hello", "resource": "r",
        "decision": decision.as_str(), "reason": "because",
        "audit": {"timestamp": body.timestamp, "previous_hash": GENESIS_HASH, "current_hash": hash,
                  "kms_signature": {"algorithm": "ECDSA_SHA_256", "key_id": "k", "signature": "AA=="}},
        "evidence": {"kind": "decision", "seq": 0, "authenticated": false, "policy_version": "sha256:00"}
    })
}

async fn guarded(url: &str) -> (Guarded<&'static str>, bool) {
    let cp = ControlPlane::with_timeout(url, Duration::from_millis(500)).unwrap();
    let request = DecisionRequest {
        actor: "agent".into(),
        action: "hello-world.say_hello".into(),
        resource: "r".into(),
        ..DecisionRequest::default()
    };
    let ran = AtomicBool::new(false);
    let outcome = cp
        .guarded_call(&request, || async {
            ran.store(true, Ordering::SeqCst);
            "done"
        })
        .await;
    (outcome, ran.load(Ordering::SeqCst))
}

fn skipped_with_error(outcome: &Guarded<&str>, ran: bool) -> String {
    assert!(!ran, "protected work must not run");
    assert!(outcome.execution_skipped());
    match outcome {
        Guarded::Skipped {
            decision: None,
            cause: SkipCause::Error(e),
        } => e.to_string(),
        other => panic!("expected a fail-closed skip, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_allow_runs_the_work() {
    let url = fake_server(Some((200, answer(Decision::Allow).to_string()))).await;
    let (outcome, ran) = guarded(&url).await;
    assert!(ran);
    assert!(matches!(outcome, Guarded::Executed { result: "done", .. }));
}

#[tokio::test]
async fn a_deny_skips_the_work_and_keeps_the_decision() {
    let url = fake_server(Some((403, answer(Decision::Deny).to_string()))).await;
    let (outcome, ran) = guarded(&url).await;
    assert!(!ran);
    assert!(matches!(
        outcome,
        Guarded::Skipped {
            decision: Some(_),
            cause: SkipCause::Denied
        }
    ));
}

#[tokio::test]
async fn every_broken_answer_skips_the_work() {
    let mut forged = answer(Decision::Allow);
    forged["resource"] = json!("another-resource");
    let mut no_audit = answer(Decision::Allow);
    no_audit.as_object_mut().unwrap().remove("audit");
    let mut mismatched = answer(Decision::Allow);
    mismatched["ok"] = json!(false);
    let mut empty_reason = answer(Decision::Allow);
    empty_reason["reason"] = json!(" ");
    let cases = [
        (
            500,
            json!({"ok": false, "error": "boom"}).to_string(),
            "500",
        ),
        (200, "not json".to_string(), "malformed"),
        (200, forged.to_string(), "evidence"),
        (200, no_audit.to_string(), "malformed"),
        (200, mismatched.to_string(), "malformed"),
        (200, empty_reason.to_string(), "empty reason"),
        (403, answer(Decision::Allow).to_string(), "malformed"),
        (200, answer(Decision::Deny).to_string(), "malformed"),
        (
            503,
            json!({"ok": false, "error": "overloaded"}).to_string(),
            "503",
        ),
    ];
    for (status, body, expected) in cases {
        let url = fake_server(Some((status, body))).await;
        let (outcome, ran) = guarded(&url).await;
        let error = skipped_with_error(&outcome, ran);
        assert!(
            error.contains(expected),
            "status {status}: `{error}` should mention `{expected}`"
        );
    }
}

#[tokio::test]
async fn unreachable_and_silent_control_planes_skip_the_work() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (outcome, ran) = guarded(&closed).await;
    assert!(skipped_with_error(&outcome, ran).contains("unreachable"));

    let silent = fake_server(None).await;
    let (outcome, ran) = guarded(&silent).await;
    let error = skipped_with_error(&outcome, ran);
    assert!(error.contains("did not answer"), "{error}");
}

#[test]
fn only_http_base_urls_are_accepted() {
    for bad in ["ftp://x", "not a url", "http://"] {
        assert!(
            matches!(ControlPlane::new(bad), Err(ClientError::BadUrl(_))),
            "{bad}"
        );
    }
}
