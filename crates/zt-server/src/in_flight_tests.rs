//! Requests in flight while their credential is revoked: a body held back past a token's
//! rotation or an agent's removal gets no decision recorded after the record that revoked it;
//! an admin removed from the token file while its request waited for its turn acts no more.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tower::ServiceExt;

use super::{start, Started};
use crate::config::ServerConfig;
use crate::routes::router;

/// A server with credentials, its router, and its admin token.
struct Server {
    started: Started,
    app: axum::Router,
    admin: String,
    dir: tempfile::TempDir,
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let started = start(&ServerConfig::new(dir.path().to_path_buf())).unwrap();
    let app = router(started.state.clone(), zt_listener::PageGuard::default());
    let file = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let admin = file.split_whitespace().nth(1).unwrap().to_string();
    Server {
        started,
        app,
        admin,
        dir,
    }
}

async fn answer(response: axum::response::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    answer(app.clone().oneshot(request).await.unwrap()).await
}

impl Server {
    /// Registers `courier` and returns its token.
    async fn courier(&self) -> String {
        let registration = json!({"actor": "courier"});
        let (status, body) = call(&self.app, "POST", "/agents", &self.admin, registration).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    fn head(&self) -> u64 {
        self.started.state.ledger.head().unwrap().seq
    }

    fn record(&self, seq: u64) -> Value {
        let line = self.started.state.ledger.read(seq, 1).unwrap().remove(0);
        serde_json::from_str(&line).unwrap()
    }
}

/// Sends `body` to `path` with `token`, holding the body back: returns once the request was
/// authenticated and its body is being read, with the gate that releases the body and the
/// request's answer to come.
async fn held_back(
    app: &axum::Router,
    path: &str,
    token: &str,
    body: Value,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<(StatusCode, Value)>,
) {
    let (reading, read) = oneshot::channel::<()>();
    let (release, released) = oneshot::channel::<()>();
    let bytes = bytes::Bytes::from(body.to_string());
    // The body is polled only after the credential was checked (extractors run in order).
    let stream = futures_util::stream::once(async move {
        let _ = reading.send(());
        let _ = released.await;
        Ok::<_, std::io::Error>(bytes)
    });
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap();
    let app = app.clone();
    let task = tokio::spawn(async move { answer(app.oneshot(request).await.unwrap()).await });
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the body is read once the request is authenticated")
        .unwrap();
    (release, task)
}

/// The agent routes that record what a request asks, each with a body, and a revocation.
#[tokio::test]
async fn a_credential_revoked_while_the_body_is_held_back_gets_no_record_after_the_revocation() {
    let decision = json!({"action": "files.read", "resource": "r1"});
    let evaluation = json!({
        "subject": {"type": "agent", "id": "courier"},
        "action": {"name": "files.read"},
        "resource": {"type": "file", "id": "r1"},
    });
    let batch = json!({
        "subject": {"type": "agent", "id": "courier"},
        "evaluations": [{"action": {"name": "files.read"}, "resource": {"type": "file", "id": "r1"}}],
    });
    let cases = [
        (
            "/actions",
            decision.clone(),
            "POST",
            "/agents/courier/token",
        ),
        ("/actions", decision, "DELETE", "/agents/courier"),
        (
            "/access/v1/evaluation",
            evaluation.clone(),
            "POST",
            "/agents/courier/token",
        ),
        (
            "/access/v1/evaluation",
            evaluation,
            "DELETE",
            "/agents/courier",
        ),
        (
            "/access/v1/evaluations",
            batch,
            "POST",
            "/agents/courier/token",
        ),
    ];
    for (path, body, method, revoke) in cases {
        let server = server();
        let token = server.courier().await;
        let (release, answered) = held_back(&server.app, path, &token, body).await;
        let (status, revoked) = call(&server.app, method, revoke, &server.admin, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{method} {revoke}: {revoked}");
        let revocation = server.head();
        assert_eq!(
            server.record(revocation)["action"].as_str().unwrap(),
            if method == "POST" {
                "zt.admin.agents.rotate_token"
            } else {
                "zt.admin.agents.remove"
            }
        );
        release.send(()).unwrap();
        let (status, body) = answered.await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} after {method} {revoke}: {body}"
        );
        assert_eq!(body["ok"], false);
        assert!(
            body["error"].as_str().unwrap().contains("revoked"),
            "{body}"
        );
        assert_eq!(
            server.head(),
            revocation,
            "{path} after {method} {revoke}: nothing recorded after the revocation"
        );
    }
}

/// A receipt (`POST /executions`) is recorded on the same condition.
#[tokio::test]
async fn a_receipt_held_back_past_its_token_s_rotation_is_refused() {
    let server = server();
    let token = server.courier().await;
    // A broker's allow for `courier`, as the decision path records one.
    let allow = zt_ledger::RecordDraft::decision(
        "courier".into(),
        true,
        "exec.run".into(),
        "r1".into(),
        zt_contract::Decision::Allow,
        "allowed".into(),
    )
    .with_sandbox(Some(zt_contract::SandboxProfile::default()));
    let allow = server.started.state.ledger.append(allow).await.unwrap();
    let receipt = json!({
        "sandbox": {"connect": [], "exec": [], "read": [], "write": []},
        "execution": {
            "decision_seq": allow.body.seq,
            "decision_hash": allow.current_hash.to_hex(),
            "duration_ms": 1,
            "exit_code": 0,
            "outcome": "exited",
            "stderr_bytes": 0,
            "stderr_sha256": "0".repeat(64),
            "stdout_bytes": 0,
            "stdout_sha256": "0".repeat(64),
        },
    });
    let (release, answered) = held_back(&server.app, "/executions", &token, receipt).await;
    let rotate = "/agents/courier/token";
    let (status, _) = call(&server.app, "POST", rotate, &server.admin, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let revocation = server.head();
    release.send(()).unwrap();
    let (status, body) = answered.await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(server.head(), revocation);
}

/// Without a revocation the held-back request is decided as usual (the test above is not
/// refusing every slow body).
#[tokio::test]
async fn a_held_back_body_is_decided_when_nothing_was_revoked() {
    let server = server();
    let token = server.courier().await;
    let (release, answered) = held_back(
        &server.app,
        "/actions",
        &token,
        json!({"action": "files.read", "resource": "r1"}),
    )
    .await;
    // Another agent registered meanwhile: the registry moved on, the token still stands.
    let other = json!({"actor": "other"});
    let (status, _) = call(&server.app, "POST", "/agents", &server.admin, other).await;
    assert_eq!(status, StatusCode::CREATED);
    let before = server.head();
    release.send(()).unwrap();
    let (status, body) = answered.await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["decision"], "deny");
    assert_eq!(server.head(), before + 1);
}

/// An admin removed from the admin token file after its request was authenticated, while the
/// request waited (for its body, then for the admin lock), changes nothing.
#[tokio::test]
async fn an_admin_removed_while_its_request_waits_changes_nothing() {
    use crate::reloadable::ReloadedSetting;
    let server = server();
    let state = &server.started.state;
    let file = server.dir.path().join("admin-token");
    let first = std::fs::read_to_string(&file).unwrap();
    let bob = crate::auth::tokens::new_token(crate::auth::tokens::ADMIN_TOKEN_PREFIX).unwrap();
    std::fs::write(&file, format!("{first}bob {bob}\n")).unwrap();
    let admins = state.admin_tokens.as_ref().unwrap();
    admins.reload("test");
    assert!(admins.names().contains("bob"));

    let turn = state.admin_lock.lock().await;
    let (release, answered) =
        held_back(&server.app, "/agents", &bob, json!({"actor": "courier"})).await;
    std::fs::write(&file, &first).unwrap();
    admins.reload("test");
    assert!(!admins.names().contains("bob"));
    let before = state.ledger.head();
    release.send(()).unwrap();
    drop(turn);
    let (status, body) = answered.await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    assert_eq!(state.ledger.head(), before, "nothing recorded");
    assert!(!state.registry.contains("courier"));
}
