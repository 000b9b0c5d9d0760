//! The JSON-RPC envelope of one A2A call, and what the decision is taken on: the action name
//! and the resource.

use serde_json::{Map, Value};

use crate::error::{ProxyError, RpcRefusal};
use crate::method::{A2aMethod, Shape};
use zt_contract::strict_json;

/// How many characters of the message text stand for the resource when the message names none
/// (as the reference proxy does).
pub(crate) const RESOURCE_TEXT_CHARS: usize = 120;

/// Metadata keys naming the resource, in order of precedence.
const RESOURCE_METADATA_KEYS: [&str; 4] = ["resource", "target", "taskId", "contextId"];

/// One parsed call.
#[derive(Debug)]
pub(crate) struct RpcCall {
    /// The request id, echoed in any answer the proxy makes itself (`null` for a notification).
    pub(crate) id: Value,
    /// The method as sent.
    pub(crate) method_name: String,
    pub(crate) method: A2aMethod,
    params: Map<String, Value>,
}

impl RpcCall {
    /// Parses a request body: strict JSON, one JSON-RPC 2.0 request (no batch), a known A2A
    /// method, object params.
    pub(crate) fn parse(body: &[u8]) -> Result<RpcCall, RpcRefusal> {
        let value = strict_json::parse_value(body).map_err(|e| ProxyError::Parse(e.to_string()))?;
        let Value::Object(mut envelope) = value else {
            return Err(match value {
                Value::Array(_) => ProxyError::Batch,
                _ => ProxyError::InvalidRequest("the request is not a JSON object".into()),
            }
            .into());
        };
        if envelope.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(ProxyError::InvalidRequest("`jsonrpc` must be \"2.0\"".into()).into());
        }
        let id = match envelope.remove("id") {
            None => Value::Null,
            Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => id,
            Some(_) => {
                return Err(ProxyError::InvalidRequest(
                    "`id` must be a string, a number or null".into(),
                )
                .into())
            }
        };
        let Some(Value::String(method_name)) = envelope.remove("method") else {
            return Err(ProxyError::InvalidRequest("`method` must be a string".into()).with_id(id));
        };
        let Some(method) = A2aMethod::lookup(&method_name) else {
            return Err(ProxyError::UnknownMethod(method_name).with_id(id));
        };
        let params = match envelope.remove("params") {
            None => Map::new(),
            Some(Value::Object(params)) => params,
            Some(_) => {
                return Err(
                    ProxyError::InvalidRequest("`params` must be an object".into()).with_id(id),
                )
            }
        };
        Ok(RpcCall {
            id,
            method_name,
            method,
            params,
        })
    }

    /// The message a message method carries (`params.message`), if any.
    pub(crate) fn message(&self) -> Option<&Map<String, Value>> {
        self.params.get("message").and_then(Value::as_object)
    }

    /// The resource of the decision. For a message: its metadata's `resource`, `target`,
    /// `taskId` or `contextId`, then its own `taskId` or `contextId`, else the first
    /// [`RESOURCE_TEXT_CHARS`] characters of its text. For other methods: the task or context
    /// the call names. `""` when nothing names one.
    pub(crate) fn resource(&self) -> String {
        match self.method.shape {
            Shape::Message | Shape::StreamingMessage => self.message_resource(),
            Shape::Other => first_string(&self.params, &["taskId", "id", "contextId"])
                .unwrap_or_default()
                .to_string(),
        }
    }

    fn message_resource(&self) -> String {
        let Some(message) = self.message() else {
            return String::new();
        };
        let metadata = message.get("metadata").and_then(Value::as_object);
        if let Some(found) = metadata.and_then(|m| first_string(m, &RESOURCE_METADATA_KEYS)) {
            return found.to_string();
        }
        if let Some(found) = first_string(message, &["taskId", "contextId"]) {
            return found.to_string();
        }
        message_text(message)
            .chars()
            .take(RESOURCE_TEXT_CHARS)
            .collect()
    }
}

/// The first of `keys` whose value is a non-empty string.
fn first_string<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .filter_map(|key| object.get(*key).and_then(Value::as_str))
        .find(|s| !s.is_empty())
}

/// The text parts of a message joined by spaces (1.0 parts are `{"text": ...}`, 0.3 parts
/// `{"kind": "text", "text": ...}`).
fn message_text(message: &Map<String, Value>) -> String {
    let Some(parts) = message.get("parts").and_then(Value::as_array) else {
        return String::new();
    };
    parts
        .iter()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[path = "rpc_tests.rs"]
mod tests;
