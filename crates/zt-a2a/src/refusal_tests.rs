use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::*;

fn unavailable() -> Refusal {
    Refusal::ControlPlaneUnavailable {
        action: "a2a.echo.send_message".into(),
        resource: "r".into(),
    }
}

async fn answer(method: &str, params: Value) -> (String, String) {
    let body = json!({"jsonrpc": "2.0", "id": "req-1", "method": method, "params": params});
    let call = RpcCall::parse(body.to_string().as_bytes()).unwrap();
    let response = unavailable().answer(&call);
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn a_refused_1_0_message_is_a_rejected_task() {
    let params = json!({"message": {"contextId": "ctx-1", "parts": [{"text": "hi"}]}});
    let (content_type, body) = answer("SendMessage", params).await;
    assert_eq!(content_type, "application/json");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["id"], "req-1");
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_REJECTED");
    assert_eq!(task["contextId"], "ctx-1");
    assert_eq!(task["status"]["message"]["role"], "ROLE_AGENT");
    let reason = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(reason.contains("control plane unavailable"), "{reason}");
    assert_eq!(task["metadata"]["zt"]["decision"], "deny");
    assert_eq!(task["id"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn a_refused_0_3_message_is_a_rejected_task_of_that_generation() {
    let (_, body) = answer("message/send", json!({"message": {"parts": []}})).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    let task = &body["result"];
    assert_eq!(task["kind"], "task");
    assert_eq!(task["status"]["state"], "rejected");
    assert_eq!(task["status"]["message"]["role"], "agent");
    assert_eq!(task["status"]["message"]["parts"][0]["kind"], "text");
    assert_eq!(task["metadata"]["zt"]["action"], "a2a.echo.send_message");
}

#[tokio::test]
async fn a_refused_stream_is_one_event_with_the_rejected_task() {
    let (content_type, body) = answer("SendStreamingMessage", json!({"message": {}})).await;
    assert_eq!(content_type, "text/event-stream");
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 1, "{body}");
    let data: Value = serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        data["result"]["task"]["status"]["state"],
        "TASK_STATE_REJECTED"
    );
}

#[tokio::test]
async fn other_refused_methods_are_json_rpc_errors_carrying_the_decision() {
    for method in ["GetTask", "tasks/get", "SubscribeToTask"] {
        let (_, body) = answer(method, json!({"id": "t1"})).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body["error"]["code"], CONTROL_PLANE_UNAVAILABLE_CODE,
            "{method}"
        );
        assert_eq!(body["error"]["data"]["zt"]["resource"], "r");
        assert!(body.get("result").is_none());
    }
}

#[test]
fn ids_are_distinct_version_4_uuids() {
    let (a, b) = (new_id(), new_id());
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    assert_eq!(a.as_bytes()[14], b'4');
}
