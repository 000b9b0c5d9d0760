//! The MCP gateway's sorting of a client's messages (`zt mcp`, stdio and HTTP): never a
//! panic; a tool call is never relayed undecided: a relayed message is strict JSON holding no
//! `tools/call` at its top or in a batch; a held call is the `tools/call` the message names;
//! the gateway's own answer to a refused message is a JSON-RPC error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use zt_contract::strict_json;
use zt_mcp::fuzzing::{sort, Sorted};

fn is_tool_call(value: &Value) -> bool {
    value.get("method").and_then(Value::as_str) == Some("tools/call")
}

fuzz_target!(|data: &[u8]| {
    match sort(data) {
        Sorted::Relay => {
            let value = strict_json::parse_value(data).expect("only what parses is relayed");
            let holds_call = match &value {
                Value::Array(items) => items.iter().any(is_tool_call),
                other => is_tool_call(other),
            };
            assert!(!holds_call, "a tool call relayed undecided");
        }
        Sorted::ToolCall { name } => {
            let value: Value = serde_json::from_slice(data).expect("a held call parses");
            assert!(is_tool_call(&value));
            assert_eq!(value["params"]["name"].as_str(), Some(name.as_str()));
        }
        Sorted::Refuse { answer: Some(answer) } => {
            let value: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
            assert_eq!(value["jsonrpc"], "2.0");
            assert!(value["error"]["code"].is_i64(), "{value}");
        }
        Sorted::Refuse { answer: None } => {}
    }
});
