use serde_json::json;

use super::*;
use crate::method::Generation;

fn call(body: serde_json::Value) -> RpcCall {
    RpcCall::parse(body.to_string().as_bytes()).unwrap()
}

fn send(message: serde_json::Value) -> RpcCall {
    call(
        json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}),
    )
}

#[test]
fn message_resource_follows_the_precedence() {
    let cases = [
        (
            json!({"metadata": {"resource": "r", "target": "t"}, "parts": [{"text": "x"}]}),
            "r",
        ),
        (json!({"metadata": {"target": "t", "taskId": "k"}}), "t"),
        (json!({"metadata": {"taskId": "k", "contextId": "c"}}), "k"),
        (
            json!({"metadata": {"contextId": "c"}, "taskId": "own"}),
            "c",
        ),
        (
            json!({"metadata": {"resource": ""}, "taskId": "own", "contextId": "ctx"}),
            "own",
        ),
        (
            json!({"metadata": {"resource": 7}, "contextId": "ctx"}),
            "ctx",
        ),
        (
            json!({"parts": [{"text": "hello"}, {"data": {}}, {"kind": "text", "text": "world"}]}),
            "hello world",
        ),
        (json!({"parts": []}), ""),
        (json!({}), ""),
    ];
    for (message, expected) in cases {
        assert_eq!(send(message.clone()).resource(), expected, "{message}");
    }
}

#[test]
fn message_text_is_cut_at_120_characters() {
    let text = "é".repeat(200);
    let resource = send(json!({"parts": [{"text": text}]})).resource();
    assert_eq!(resource.chars().count(), RESOURCE_TEXT_CHARS);
}

#[test]
fn other_methods_take_the_task_they_name() {
    let get =
        call(json!({"jsonrpc": "2.0", "id": "a", "method": "tasks/get", "params": {"id": "t1"}}));
    assert_eq!(get.resource(), "t1");
    assert_eq!(get.method.generation, Generation::V0_3);
    let push = call(
        json!({"jsonrpc": "2.0", "id": 2, "method": "GetTaskPushNotificationConfig", "params": {"taskId": "t2", "id": "cfg"}}),
    );
    assert_eq!(push.resource(), "t2");
    let list = call(json!({"jsonrpc": "2.0", "method": "ListTasks"}));
    assert_eq!(
        (list.resource(), list.id),
        (String::new(), serde_json::Value::Null)
    );
}

#[test]
fn malformed_envelopes_are_refused() {
    let cases = [
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"SendMessage"}]"#,
            "batch",
        ),
        (r#"{"id":1,"method":"SendMessage"}"#, "`jsonrpc`"),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"SendMessage"}"#,
            "`jsonrpc`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"SendMessage"}"#,
            "`id`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":{},"method":"SendMessage"}"#,
            "`id`",
        ),
        (r#"{"jsonrpc":"2.0","id":1}"#, "`method`"),
        (r#"{"jsonrpc":"2.0","id":1,"method":"Nope"}"#, "`Nope`"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":[]}"#,
            "`params`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","method":"SendMessage"}"#,
            "duplicate",
        ),
        (r#"{"jsonrpc":"2.0","#, "EOF"),
        ("7", "not a JSON object"),
    ];
    for (body, needle) in cases {
        let error = RpcCall::parse(body.as_bytes()).unwrap_err().to_string();
        assert!(error.contains(needle), "{body}: {error}");
    }
}
