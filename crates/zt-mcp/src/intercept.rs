//! Sorts the client's messages: a `tools/call` request is held for a decision, anything
//! unreadable is refused (a message the gateway cannot read might still be a tool call to a
//! more lenient server), everything else is relayed as it came.

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ErrorCode, ErrorData, JsonRpcMessage, RequestId,
};
use serde_json::Value;

use crate::tools::{own_id, OWN_ID_PREFIX};

/// The one method the gateway intercepts.
pub(crate) const TOOLS_CALL: &str = "tools/call";

/// A client message of the session's initialization, which the stdio gateway follows: it
/// sends requests of its own only once the session is initialized.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Initialization {
    /// The `initialize` request, with its id (the server's answer carries it).
    Request { id: Value },
    /// `notifications/initialized`: the client is done initializing.
    Finished,
}

/// What to do with one client message.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Not a tool call: relay it unchanged (and whether it initializes the session).
    Relay(Option<Initialization>),
    /// A tool call: relay it only if the control plane allows it.
    ToolCall {
        /// The request's id, for the answer to a refused call.
        id: RequestId,
        /// The call, parsed with the SDK's type.
        call: Box<CallToolRequestParams>,
    },
    /// Never relayed; the client gets this JSON-RPC message, if any.
    Refuse(Option<Vec<u8>>),
    /// Nothing but whitespace: no message at all (a blank stdio line is dropped, an HTTP body
    /// refused).
    Blank,
}

/// Sorts one message (one line, without its line ending).
pub(crate) fn classify(message: &[u8]) -> Inbound {
    if message.iter().all(u8::is_ascii_whitespace) {
        return Inbound::Blank;
    }
    // Strict: a duplicate key could make the gateway decide on one copy and the server act
    // on the other.
    let value: Value = match zt_contract::strict_json::parse_value(message) {
        Ok(value) => value,
        Err(e) => {
            return refuse(
                None,
                ErrorCode::PARSE_ERROR,
                format!("message is not valid JSON, or is ambiguous ({e}); the gateway relays only what it can read"),
            )
        }
    };
    let requests = match &value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    if requests.into_iter().any(takes_the_gateways_id) {
        return refuse(
            None,
            ErrorCode::INVALID_REQUEST,
            format!("request ids starting `{OWN_ID_PREFIX}` are the gateway's own"),
        );
    }
    match value {
        Value::Array(items) if items.iter().any(is_tool_call) => refuse(
            None,
            ErrorCode::INVALID_REQUEST,
            "a batch holding `tools/call` is not relayed: send each tool call alone",
        ),
        Value::Object(mut object) if is_tool_call_object(&object) => {
            let Some(id) = object.get("id") else {
                // A notification named `tools/call`: nobody to answer, nothing relayed.
                tracing::warn!("dropped a `tools/call` without an id");
                return Inbound::Refuse(None);
            };
            let Ok(id) = serde_json::from_value::<RequestId>(id.clone()) else {
                return refuse(
                    None,
                    ErrorCode::INVALID_REQUEST,
                    "`tools/call` id must be a string or an integer",
                );
            };
            // An object, read strictly: JSON-RPC also allows positional params, which the
            // gateway would read in one field order and the server perhaps in another.
            let Some(Value::Object(mut params)) = object.remove("params") else {
                return refuse(
                    Some(id),
                    ErrorCode::INVALID_PARAMS,
                    "`tools/call` params must be an object",
                );
            };
            // Moved out of the tree, not copied: they may be most of a 16 MiB message.
            let arguments = match params.remove("arguments") {
                None | Some(Value::Null) => None,
                Some(Value::Object(arguments)) => Some(arguments),
                Some(_) => {
                    return refuse(
                        Some(id),
                        ErrorCode::INVALID_PARAMS,
                        "invalid `tools/call` params: `arguments` must be an object",
                    )
                }
            };
            match zt_contract::strict_json::from_document::<CallToolRequestParams>(&params) {
                Ok(mut call) => {
                    call.arguments = arguments;
                    Inbound::ToolCall {
                        id,
                        call: Box::new(call),
                    }
                }
                Err(error) => refuse(
                    Some(id),
                    ErrorCode::INVALID_PARAMS,
                    format!("invalid `tools/call` params: {error}"),
                ),
            }
        }
        value => Inbound::Relay(initialization(&value)),
    }
}

/// Whether `value` is one of the client's initialization messages (never a batch: the
/// protocol forbids `initialize` in one).
fn initialization(value: &Value) -> Option<Initialization> {
    let id = value.get("id");
    match (value.get("method")?.as_str()?, id) {
        ("initialize", Some(id)) => Some(Initialization::Request { id: id.clone() }),
        ("notifications/initialized", None) => Some(Initialization::Finished),
        _ => None,
    }
}

/// A request whose answer could pass for the answer to one of the gateway's own requests.
fn takes_the_gateways_id(value: &Value) -> bool {
    value.get("method").is_some() && own_id(value).is_some()
}

fn is_tool_call(value: &Value) -> bool {
    value.get("method").and_then(Value::as_str) == Some(TOOLS_CALL)
}

fn is_tool_call_object(object: &serde_json::Map<String, Value>) -> bool {
    object.get("method").and_then(Value::as_str) == Some(TOOLS_CALL)
}

fn refuse(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Inbound {
    Inbound::Refuse(Some(error_line(id, code, message)))
}

/// The one JSON-RPC error every refusal and failure below is written as.
fn error_line(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Vec<u8> {
    let error = ErrorData::new(code, message.into(), None);
    encode(&JsonRpcMessage::<Value, Value, Value>::error(error, id))
}

/// A JSON-RPC error (no id) for a request the gateway refuses before reading any message
/// from it (a method or framing of HTTP that carries none it would decide on).
pub(crate) fn invalid_request(message: &str) -> Vec<u8> {
    error_line(None, ErrorCode::INVALID_REQUEST, message)
}

/// The answer to an HTTP body holding no message (empty, or whitespace only).
pub(crate) fn no_message() -> Vec<u8> {
    error_line(
        None,
        ErrorCode::PARSE_ERROR,
        "the body holds no JSON-RPC message",
    )
}

/// The answer to a message longer than `max` bytes (read past, never relayed).
pub(crate) fn oversized(max: usize) -> Vec<u8> {
    error_line(
        None,
        ErrorCode::INVALID_REQUEST,
        format!("message is larger than {max} bytes"),
    )
}

/// The answer to a stdio line holding a `\r` before its end (never relayed: a server reading
/// with universal newlines would see more lines in it than the gateway decided on).
pub(crate) fn stray_carriage_return() -> Vec<u8> {
    error_line(
        None,
        ErrorCode::PARSE_ERROR,
        r"message holds a carriage return before its end: a line ends in `\n` or `\r\n` and holds no other raw `\r`",
    )
}

/// A JSON-RPC error (no id) for a failure of the gateway's own transport, e.g. an unreachable
/// upstream.
pub(crate) fn upstream_failure(message: &str) -> Vec<u8> {
    error_line(None, ErrorCode::INTERNAL_ERROR, message)
}

/// The answer to a tool call whose decision could not be completed: an internal error with
/// the call's id (the call is not relayed).
pub(crate) fn decision_failed(id: RequestId) -> Vec<u8> {
    refusal(
        id,
        ErrorCode::INTERNAL_ERROR,
        "the decision could not be completed: the call was not relayed".to_string(),
    )
}

/// The JSON-RPC error answering a call refused undecided.
pub(crate) fn refusal(id: RequestId, code: ErrorCode, message: String) -> Vec<u8> {
    error_line(Some(id), code, message)
}

/// The JSON-RPC answer carrying a refused call's result.
pub(crate) fn answer(id: RequestId, result: CallToolResult) -> Vec<u8> {
    encode(&JsonRpcMessage::<Value, CallToolResult, Value>::response(
        result, id,
    ))
}

fn encode<Req: serde::Serialize, Resp: serde::Serialize, Not: serde::Serialize>(
    message: &JsonRpcMessage<Req, Resp, Not>,
) -> Vec<u8> {
    // Serialising these types cannot fail (string keys, no maps with non-string keys); the
    // fallback keeps the answer a JSON-RPC error all the same.
    let mut line = serde_json::to_vec(message).unwrap_or_else(|_| {
        br#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"internal error"}}"#.to_vec()
    });
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(message: &str) -> Value {
        match classify(message.as_bytes()) {
            Inbound::Refuse(Some(line)) => serde_json::from_slice(&line).unwrap(),
            other => panic!("expected a refusal with an answer, got {other:?}"),
        }
    }

    #[test]
    fn a_tool_call_is_held_with_its_id_and_params() {
        let message = r#"{"jsonrpc":"2.0","id":"a1","method":"tools/call",
            "params":{"name":"echo","arguments":{"message":"hi"},"_meta":{"progressToken":3}}}"#;
        let Inbound::ToolCall { id, call } = classify(message.replace('\n', "").as_bytes()) else {
            panic!("not held");
        };
        assert_eq!(id.into_json_value(), json!("a1"));
        assert_eq!(call.name, "echo");
        assert_eq!(call.arguments.unwrap()["message"], json!("hi"));
    }

    #[test]
    fn everything_else_is_relayed() {
        for message in [
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":9,"result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x/unknown","params":{"method":"tools/call"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        ] {
            assert!(
                matches!(classify(message.as_bytes()), Inbound::Relay(_)),
                "{message}"
            );
        }
    }

    #[test]
    fn the_initialization_messages_are_told_apart() {
        let step = |message: &str| match classify(message.as_bytes()) {
            Inbound::Relay(step) => step,
            other => panic!("not relayed: {other:?}"),
        };
        assert_eq!(
            step(r#"{"jsonrpc":"2.0","id":"i","method":"initialize","params":{}}"#),
            Some(Initialization::Request { id: json!("i") })
        );
        assert_eq!(
            step(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Some(Initialization::Finished)
        );
        for other in [
            r#"{"jsonrpc":"2.0","method":"initialize"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"notifications/initialized"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"method":"initialize"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        ] {
            assert_eq!(step(other), None, "{other}");
        }
    }

    #[test]
    fn what_the_gateway_cannot_read_is_refused() {
        // Python's json module reads `NaN`; serde_json does not: never relay it.
        let answer = refused(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":NaN}}}"#,
        );
        assert_eq!(answer["error"]["code"], json!(-32700));
        assert!(answer.get("id").is_none());
        assert_eq!(refused("{} {}")["error"]["code"], json!(-32700));
    }

    #[test]
    fn a_message_with_a_duplicate_key_is_refused_never_relayed() {
        // The gateway would decide on one `name`, a first-wins server would act on the other.
        let answer = refused(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"write_file"}}"#,
        );
        assert_eq!(answer["error"]["code"], json!(-32700));
        let answer =
            refused(r#"{"jsonrpc":"2.0","method":"tools/list","method":"tools/call","id":2}"#);
        assert_eq!(answer["error"]["code"], json!(-32700));
    }

    #[test]
    fn a_request_may_not_take_an_id_of_the_gateways_own() {
        for message in [
            r#"{"jsonrpc":"2.0","id":"zt-gateway/tools-list/0","method":"tools/list"}"#,
            r#"[{"jsonrpc":"2.0","id":"zt-gateway/x","method":"ping"}]"#,
        ] {
            assert_eq!(
                refused(message)["error"]["code"],
                json!(-32600),
                "{message}"
            );
        }
        // An answer to the server's own request carries the server's id: relayed.
        let answer = r#"{"jsonrpc":"2.0","id":"zt-gateway/1","result":{}}"#;
        assert!(matches!(classify(answer.as_bytes()), Inbound::Relay(None)));
    }

    #[test]
    fn a_batched_tool_call_is_refused() {
        let answer = refused(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}]"#,
        );
        assert_eq!(answer["error"]["code"], json!(-32600));
    }

    #[test]
    fn malformed_tool_calls_are_refused_with_their_id() {
        let answer = refused(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{}}"#);
        assert_eq!(answer["id"], json!(4));
        assert_eq!(answer["error"]["code"], json!(-32602));
        let answer = refused(
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
        );
        assert_eq!(answer["error"]["code"], json!(-32602));
        let answer = refused(
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"x"}}"#,
        );
        assert_eq!(answer["error"]["code"], json!(-32600));
        let answer = refused(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call"}"#);
        assert_eq!(answer["error"]["code"], json!(-32602));
    }

    #[test]
    fn positional_params_are_refused_never_decided_on() {
        // serde_json alone reads `[_meta, name, arguments, ...]` as the params struct: the
        // gateway would decide on `echo` and relay an array a server may read in another order.
        let message = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":[null,"echo",{"message":"hi"},null,null]}"#;
        let lenient: Value = serde_json::from_str(message).unwrap();
        assert_eq!(
            serde_json::from_value::<CallToolRequestParams>(lenient["params"].clone())
                .unwrap()
                .name,
            "echo"
        );
        let answer = refused(message);
        assert_eq!(answer["id"], json!(7));
        assert_eq!(answer["error"]["code"], json!(-32602));
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must be an object"));
    }

    #[test]
    fn a_tool_call_notification_is_dropped_and_blank_lines_are_no_message() {
        let notification = r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#;
        assert!(matches!(
            classify(notification.as_bytes()),
            Inbound::Refuse(None)
        ));
        for message in ["", " \r", "\t \n"] {
            assert!(
                matches!(classify(message.as_bytes()), Inbound::Blank),
                "{message:?}"
            );
        }
    }

    #[test]
    fn the_answer_is_a_response_to_the_call() {
        let line = answer(RequestId::Number(7), CallToolResult::error(vec![]));
        assert_eq!(line.last(), Some(&b'\n'));
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["jsonrpc"], json!("2.0"));
        assert_eq!(value["id"], json!(7));
        assert_eq!(value["result"]["isError"], json!(true));
    }
}
