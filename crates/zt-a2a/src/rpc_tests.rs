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
fn message_text_names_its_words_not_its_line_breaks() {
    let resource =
        send(json!({"parts": [{"text": "Summarise:\n\tthe  report"}, {"text": " now "}]}))
            .resource()
            .to_string();
    assert_eq!(resource, "Summarise: the report now");
}

#[test]
fn message_text_is_cut_at_120_characters() {
    let text = "é".repeat(200);
    let resource = send(json!({"parts": [{"text": text}]}))
        .resource()
        .to_string();
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
    assert_eq!((list.resource(), &list.id), ("", &serde_json::Value::Null));
}

#[test]
fn a_task_method_is_decided_on_the_task_the_agent_reads() {
    let resource = |method: &str, params: serde_json::Value| {
        call(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .resource()
            .to_string()
    };
    // Task methods name their task by `id`, in both generations.
    for method in [
        "GetTask",
        "CancelTask",
        "SubscribeToTask",
        "tasks/get",
        "tasks/cancel",
    ] {
        assert_eq!(
            resource(method, json!({"id": "t1", "historyLength": 2})),
            "t1"
        );
    }
    // 0.3's push-notification methods too, beside the config's own id...
    assert_eq!(
        resource(
            "tasks/pushNotificationConfig/get",
            json!({"id": "t3", "pushNotificationConfigId": "cfg"})
        ),
        "t3"
    );
    // ...while 0.3's `set` and 1.0's push-notification methods name it by `taskId` (their `id`
    // is the config's).
    assert_eq!(
        resource(
            "tasks/pushNotificationConfig/set",
            json!({"taskId": "t4", "pushNotificationConfig": {"url": "https://hook"}})
        ),
        "t4"
    );
    assert_eq!(
        resource(
            "DeleteTaskPushNotificationConfig",
            json!({"taskId": "t5", "id": "cfg"})
        ),
        "t5"
    );
    assert_eq!(resource("ListTasks", json!({"contextId": "c1"})), "c1");
    assert_eq!(resource("GetExtendedAgentCard", json!({})), "");
}

#[test]
fn params_another_reader_could_take_for_another_task_are_refused() {
    let refusal = |method: &str, params: serde_json::Value| {
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params});
        let refused = RpcCall::parse(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(refused.id, json!(9), "the answer names the call");
        assert_eq!(refused.error.status_and_code().1, -32602, "{body}");
        refused.error.to_string()
    };
    // Decided on `scratch` while the agent cancels `prod-task` (the proxy read `taskId` first).
    let why = refusal(
        "tasks/cancel",
        json!({"id": "prod-task", "taskId": "scratch"}),
    );
    assert!(
        why.contains("`taskId` is not a parameter of tasks/cancel"),
        "{why}"
    );
    refusal(
        "CancelTask",
        json!({"id": "prod-task", "taskId": "scratch"}),
    );
    refusal("ListTasks", json!({"contextId": "c1", "id": "t"}));
    // Proto field names, which protobuf's JSON reader takes as well as the JSON names.
    let why = refusal(
        "GetTaskPushNotificationConfig",
        json!({"task_id": "t", "id": "cfg"}),
    );
    assert!(
        why.contains("`task_id` is not accepted; name it `taskId`"),
        "{why}"
    );
    refusal("ListTasks", json!({"context_id": "c"}));
    refusal(
        "SendMessage",
        json!({"message": {"task_id": "prod-task", "parts": [{"text": "hi"}]}}),
    );
    // A subject that is not a string would be decided on as "" (nothing).
    let why = refusal("GetTask", json!({"id": 7}));
    assert!(why.contains("`id` must be a string"), "{why}");
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
