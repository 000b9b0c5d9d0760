//! Route-level tests of a started server: the axum router called in process
//! (`tower::ServiceExt::oneshot`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::start;
use crate::config::ServerConfig;
use crate::routes::router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, String, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn errors_are_json_with_the_mapped_status() {
    let dir = tempfile::tempdir().unwrap();
    let started = start(&ServerConfig::dangerous_unauthenticated(
        dir.path().to_path_buf(),
    ))
    .unwrap();
    let app = router(started.state.clone(), zt_listener::PageGuard::default());

    // (method, path, body, expected status, text the error must contain)
    type Case = (
        &'static str,
        &'static str,
        Option<Vec<u8>>,
        StatusCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/actions",
            Some(b"{".to_vec()),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "POST",
            "/actions",
            Some(br#"{"actor":"a","action":["x"]}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid request",
        ),
        (
            "POST",
            "/actions",
            Some(br#"[1]"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid request",
        ),
        (
            "POST",
            "/actions",
            Some(br#"{"action":"x"}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "actor is required",
        ),
        (
            "POST",
            "/actions",
            Some(br#"{"actor":"a","action":""}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "action is required",
        ),
        (
            "POST",
            "/actions",
            Some(vec![b' '; 16 * 1024 + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        (
            "GET",
            "/actions",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
        ("GET", "/nope", None, StatusCode::NOT_FOUND, "no route"),
        (
            "DELETE",
            "/agents/ghost",
            None,
            StatusCode::NOT_FOUND,
            "not registered",
        ),
        (
            "GET",
            "/audit/records?from=x",
            None,
            StatusCode::BAD_REQUEST,
            "non-negative integer",
        ),
    ];
    for (method, path, body, status, text) in cases {
        let (got, content_type, body) = call(&app, method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type}"
        );
        assert_eq!(body["ok"], false);
        assert!(
            body["error"].as_str().unwrap().contains(text),
            "{method} {path}: {body}"
        );
    }
    assert_eq!(
        started.state.ledger.head(),
        None,
        "refused requests add no record"
    );
}

#[tokio::test]
async fn a_decision_is_committed_before_it_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let started = start(&ServerConfig::dangerous_unauthenticated(
        dir.path().to_path_buf(),
    ))
    .unwrap();
    let app = router(started.state.clone(), zt_listener::PageGuard::default());
    let (status, _, _) = call(
        &app,
        "POST",
        "/agents",
        Some(json!({"actor": "a"}).to_string().into_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = call(
        &app,
        "POST",
        "/actions",
        Some(
            json!({"actor": "a", "action": "aws.ec2.terminate_instances"})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let head = started.state.ledger.head().unwrap();
    assert_eq!(head.seq, body["evidence"]["seq"].as_u64().unwrap());
    assert_eq!(
        head.current_hash.to_hex(),
        body["audit"]["current_hash"].as_str().unwrap()
    );
    let lines = started.state.ledger.read(head.seq, 1).unwrap();
    assert!(lines[0].contains(body["audit"]["current_hash"].as_str().unwrap()));
}

#[tokio::test]
async fn a_second_start_on_one_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::dangerous_unauthenticated(dir.path().to_path_buf());
    let _first = start(&config).unwrap();
    let second = start(&config).expect_err("the lock is held");
    assert!(second.to_string().contains("in use"), "{second}");
}

/// A `--previous-signer` is opened only when a rotation is due: one that cannot be opened any
/// more (its key deleted, its token gone) does not stop a server whose key has not changed,
/// and still refuses a start that has a rotation to endorse.
#[tokio::test]
async fn a_previous_signer_is_opened_only_when_a_rotation_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::dangerous_unauthenticated(dir.path().to_path_buf());
    let started = start(&config).unwrap();
    started
        .state
        .ledger
        .append(zt_ledger::RecordDraft::default())
        .await
        .unwrap();
    let stop = |started: super::Started| {
        drop(started.state);
        started.worker.join();
        drop(started.lock);
    };
    stop(started);

    let gone =
        zt_custody::Pkcs11Uri::parse("module=/nonexistent/libgone.so;token=t;key=k").unwrap();
    config.custody.previous = Some(zt_custody::SignerSpec::Pkcs11(gone));
    let started = start(&config).unwrap();
    assert!(started.rotation.is_none());
    stop(started);

    zt_ledger::LocalKeySigner::rotate(dir.path()).unwrap();
    let refused = start(&config).map(|_| ()).unwrap_err();
    assert!(
        matches!(refused, super::ServerError::Custody(_)),
        "{refused}"
    );
}

/// An agent credential on an admin route is recorded with the path it asked for, cut to 200
/// characters: a path of tens of kilobytes never makes a record whose `resource` breaks the
/// 1024-byte rule (before, the whole path was recorded).
#[tokio::test]
async fn a_refused_admin_access_records_a_bounded_path() {
    let dir = tempfile::tempdir().unwrap();
    let started = start(&ServerConfig::new(dir.path().to_path_buf())).unwrap();
    let app = router(started.state.clone(), zt_listener::PageGuard::default());
    let file = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let admin = file.split_whitespace().nth(1).unwrap();
    let send = |method: &str, path: String, token: &str, body: Value| {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        app.clone().oneshot(request)
    };
    let registered = send("POST", "/agents".into(), admin, json!({"actor": "courier"}))
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let bytes = registered.into_body().collect().await.unwrap().to_bytes();
    let token: Value = serde_json::from_slice(&bytes).unwrap();
    let token = token["token"].as_str().unwrap();

    let path = format!("/agents/{}", "x".repeat(30_000));
    let refused = send("DELETE", path, token, json!({})).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let head = started.state.ledger.head().unwrap();
    let line = started.state.ledger.read(head.seq, 1).unwrap().remove(0);
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["action"], "zt.admin.access");
    let resource = record["resource"].as_str().unwrap();
    assert!(resource.len() <= 1024, "{} bytes", resource.len());
    assert_eq!(
        resource,
        format!("DELETE /agents/{}…", "x".repeat(200 - "/agents/".len()))
    );
}

/// A rotation or removal whose save fails is refused unrecorded, and the old token keeps
/// working, as the log says, here and after a restart. Before, the revocation was recorded
/// first; its failed save left the log saying revoked while the stored registry, read at the
/// next start and by the other replicas, still held the token.
#[tokio::test]
async fn a_revocation_that_cannot_be_saved_is_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let started = start(&ServerConfig::new(dir.path().to_path_buf())).unwrap();
    let app = router(started.state.clone(), zt_listener::PageGuard::default());
    let file = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let admin = file.split_whitespace().nth(1).unwrap();
    let send = |method: &str, path: &str, token: &str, body: Value| {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        app.clone().oneshot(request)
    };
    let registered = send("POST", "/agents", admin, json!({"actor": "courier"}))
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let bytes = registered.into_body().collect().await.unwrap().to_bytes();
    let token: Value = serde_json::from_slice(&bytes).unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    // The registry can no longer be saved: its file is a directory now.
    let agents = dir.path().join("agents.json");
    let kept = dir.path().join("agents.json.kept");
    std::fs::rename(&agents, &kept).unwrap();
    std::fs::create_dir(&agents).unwrap();
    std::fs::write(agents.join("in-the-way"), "").unwrap();
    let before = started.state.ledger.head();
    for (method, path) in [
        ("POST", "/agents/courier/token"),
        ("DELETE", "/agents/courier"),
    ] {
        let refused = send(method, path, admin, json!({})).await.unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {path}"
        );
        assert_eq!(
            started.state.ledger.head(),
            before,
            "{method} {path}: not recorded"
        );
    }
    let decided = send("POST", "/actions", &token, json!({"action": "files.read"}))
        .await
        .unwrap();
    assert_eq!(
        decided.status(),
        StatusCode::FORBIDDEN,
        "still the agent's token"
    );

    // A restart reads what the log says: the token works.
    std::fs::remove_dir_all(&agents).unwrap();
    std::fs::rename(&kept, &agents).unwrap();
    let docs = std::sync::Arc::new(crate::state_docs::Documents::open(None, dir.path()).unwrap());
    let restarted = crate::registry::Registry::load(docs, dir.path()).unwrap();
    let hash = crate::auth::tokens::token_hash(&token);
    assert_eq!(
        restarted.agent_for_token(&hash).map(|holder| holder.actor),
        Some("courier".to_string())
    );
}
