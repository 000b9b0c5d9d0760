//! Route-level tests of the proxy (in process): bad input is refused before any decision and
//! never forwarded, and with no control plane every call fails closed. The agent is a counting
//! stub, so "never forwarded" is observed, not assumed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use zt_client::ControlPlane;

/// A stub agent with a JSON-RPC interface at `/` (and an HTTP+JSON one at `/v1`) counting the
/// calls that reach it; returns its URL and the counter.
async fn counting_agent() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let card = json!({"name": "stub", "supportedInterfaces": [
        {"url": format!("{url}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        {"url": format!("{url}/v1"), "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
    ]});
    let app = Router::new()
        .route(
            "/.well-known/agent-card.json",
            axum::routing::get(move || async move { axum::Json(card) }),
        )
        .fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {}}))
            }
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

/// A URL nothing listens on.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

async fn proxy() -> (Router, Arc<AtomicUsize>) {
    proxy_deciding_at(&dead_url().await).await
}

/// The proxy of a counting agent, asking the control plane at `control_plane`.
async fn proxy_deciding_at(control_plane: &str) -> (Router, Arc<AtomicUsize>) {
    let (agent, hits) = counting_agent().await;
    let control_plane = ControlPlane::new(control_plane).unwrap();
    let config = zt_a2a::ProxyConfig::new(
        &agent,
        "Echo Agent!",
        "http://127.0.0.1:1",
        "caller",
        control_plane,
    )
    .unwrap();
    assert_eq!(config.action_prefix(), "a2a.Echo_Agent.");
    (
        zt_a2a::router(config, zt_listener::PageGuard::default()),
        hits,
    )
}

async fn post(router: &Router, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    post_to(router, "/", content_type, body).await
}

async fn post_to(
    router: &Router,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn bad_input_is_refused_and_never_forwarded() {
    let (router, hits) = proxy().await;
    let send = |extra: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{{"message":{{}}}}{extra}}}"#)
            .into_bytes()
    };
    let mut huge = br#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', zt_a2a::MAX_REQUEST_BYTES));
    huge.extend(br#""}}"#);
    let cases: Vec<(&str, Vec<u8>, StatusCode, i64)> = vec![
        (
            "application/json",
            huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
        ),
        (
            "text/plain",
            send(""),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32600,
        ),
        (
            "application/json",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        (
            "application/json",
            send(r#","method":"GetTask""#),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        (
            "application/json",
            format!("[{}]", String::from_utf8(send("")).unwrap()).into_bytes(),
            StatusCode::BAD_REQUEST,
            -32600,
        ),
        (
            "application/json",
            br#"{"jsonrpc":"2.0","id":3,"method":"tasks/delete"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32601,
        ),
        (
            "application/json",
            br#"{"jsonrpc":"2.0","id":3,"method":"GetTask","params":"t"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32600,
        ),
    ];
    for (content_type, body, status, code) in cases {
        let (got, answer) = post(&router, content_type, body).await;
        assert_eq!(got, status, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (got, answer) = post(
        &router,
        "application/json",
        br#"{"jsonrpc":"2.0","id":"k","method":"Nope"}"#.to_vec(),
    )
    .await;
    assert_eq!((got, &answer["id"]), (StatusCode::BAD_REQUEST, &json!("k")));
    assert_eq!(answer["error"]["message"], "unknown method `Nope`");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_a_control_plane_every_call_fails_closed() {
    let (router, hits) = proxy().await;
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
        "params": {"message": {"parts": [{"text": "hi"}]}}});
    let (status, answer) = post(
        &router,
        "application/json; charset=utf-8",
        message.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["result"]["task"]["status"]["state"],
        "TASK_STATE_REJECTED"
    );
    assert_eq!(
        answer["result"]["task"]["metadata"]["zt"]["action"],
        "a2a.Echo_Agent.send_message"
    );
    assert_eq!(answer["result"]["task"]["metadata"]["zt"]["resource"], "hi");

    let cancel =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {"id": "t9"}});
    let (status, answer) = post(&router, "application/json", cancel.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["error"]["code"],
        zt_a2a::CONTROL_PLANE_UNAVAILABLE_CODE
    );
    assert_eq!(
        answer["error"]["data"]["zt"]["action"],
        "a2a.Echo_Agent.cancel_task"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn only_post_calls_and_the_card_are_served() {
    let (router, hits) = proxy().await;
    // Another method at the JSON-RPC interface: 405, saying which one it takes; elsewhere 404.
    // Either way a JSON-RPC error, as every answer of the proxy's but the card.
    for (method, path, status) in [
        ("GET", "/", StatusCode::METHOD_NOT_ALLOWED),
        ("DELETE", "/", StatusCode::METHOD_NOT_ALLOWED),
        ("PUT", "/", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/anything", StatusCode::NOT_FOUND),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        let allow = response.headers().get("allow").cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["jsonrpc"], "2.0", "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], -32600, "{answer}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(allow.unwrap(), "POST");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("`{method}` not allowed")),
                "{message}"
            );
        } else {
            assert!(allow.is_none());
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let request = Request::get("/.well-known/agent-card.json")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let card: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        card["supportedInterfaces"],
        json!([{"url": "http://127.0.0.1:1/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}])
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// A control plane that takes connections and never answers: a decision waits for it until
/// the client's decision timeout.
async fn silent_control_plane() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

fn task_call(id: u64) -> Request<Body> {
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tasks/get", "params": {"id": "t"}});
    Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(call.to_string()))
        .unwrap()
}

/// Calls being decided are bounded (each holds its parsed tree and waits for the control
/// plane): the call past the bound is refused at once with a JSON-RPC error, and a place is
/// taken again once a call is done. Clients still sending their bodies take no place, so a
/// few slow clients cannot shut every other caller out.
#[tokio::test]
async fn calls_past_the_bound_in_flight_are_refused() {
    // Bodies trickling in, more than the bound: a whole call beside them is still decided (no
    // control plane here, so refused as unavailable, not as too many).
    let (router, hits) = proxy().await;
    let trickling: Vec<_> = (0..=zt_a2a::MAX_CALLS_IN_FLIGHT)
        .map(|_| {
            let trickle = futures_util::stream::once(async {
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"jsonrpc\":"))
            })
            .chain(futures_util::stream::pending());
            let request = Request::post("/")
                .header("content-type", "application/json")
                .body(Body::from_stream(trickle))
                .unwrap();
            tokio::spawn(router.clone().oneshot(request))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/get", "params": {"id": "t"}});
    let (status, answer) = post(&router, "application/json", call.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["error"]["code"],
        zt_a2a::CONTROL_PLANE_UNAVAILABLE_CODE
    );
    for call in &trickling {
        call.abort();
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Calls waiting for a control plane that does not answer hold every place: one too many
    // is refused at once, long before their decisions time out.
    let (router, _) = proxy_deciding_at(&silent_control_plane().await).await;
    let held: Vec<_> = (0..=zt_a2a::MAX_CALLS_IN_FLIGHT)
        .map(|id| tokio::spawn(router.clone().oneshot(task_call(id as u64))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !held.iter().any(|call| call.is_finished()) {
        assert!(Instant::now() < deadline, "every call was taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (answered, waiting): (Vec<_>, Vec<_>) =
        held.into_iter().partition(|call| call.is_finished());
    assert_eq!(answered.len(), 1);
    for call in answered {
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["jsonrpc"], "2.0");
        assert_eq!(answer["error"]["code"], -32603);
        assert_eq!(
            answer["error"]["message"],
            "too many calls in flight; retry later"
        );
    }
    // Their places are free again once they are done (the decisions time out, failing closed).
    for call in waiting {
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = router.clone().oneshot(task_call(99)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A body decided as one JSON-RPC method must not reach another endpoint of the agent that
/// would read it differently (here its HTTP+JSON binding at `/v1`).
#[tokio::test]
async fn calls_go_only_to_the_agents_json_rpc_interfaces() {
    let (router, hits) = proxy().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t"},
        "message": {"parts": [{"text": "smuggled"}]}});
    for path in ["/v1", "/v1/message:send", "/other", "//"] {
        let (status, answer) = post_to(
            &router,
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no JSON-RPC interface"));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn bad_settings_are_refused() {
    let cp = || ControlPlane::new("http://127.0.0.1:3000").unwrap();
    for (upstream, public, actor) in [
        ("https://agent", "http://p", "a"),
        ("agent:9999", "http://p", "a"),
        ("http://agent", "/relative", "a"),
        ("http://agent", "ftp://p", "a"),
        ("http://agent", "http://p", " "),
    ] {
        assert!(
            zt_a2a::ProxyConfig::new(upstream, "x", public, actor, cp()).is_err(),
            "{upstream} {public} {actor:?}"
        );
    }
}
