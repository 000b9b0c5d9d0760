//! The JSON-RPC envelope of one A2A call, and what the decision is taken on: the action name
//! and the resource.

use serde_json::{Map, Value};

use crate::error::{ProxyError, RpcRefusal};
use crate::method::{A2aMethod, Shape, Subject};
use zt_contract::names::ResourceName;
use zt_contract::strict_json;

/// How many characters of the message text stand for the resource when the message names none
/// (as the reference proxy does).
pub(crate) const RESOURCE_TEXT_CHARS: usize = 120;

/// Metadata keys naming the resource, in order of precedence.
const RESOURCE_METADATA_KEYS: [&str; 4] = ["resource", "target", "taskId", "contextId"];

/// The proto names of the fields that name a task or a context, each with its JSON name.
/// Protobuf's JSON reader (the 1.0 SDK's) takes either, so `task_id` could name to the agent a
/// task the proxy never decided on; official clients send the JSON names.
const PROTO_NAMES: [(&str, &str); 2] = [("task_id", "taskId"), ("context_id", "contextId")];

/// One parsed call, reduced to what the decision and a refusal need: the parsed tree (which
/// may take some 60 times the body's bytes) is gone before the call is decided or forwarded,
/// which forwards the body's bytes.
#[derive(Debug)]
pub(crate) struct RpcCall {
    /// The request id, echoed in any answer the proxy makes itself (`null` for a notification).
    pub(crate) id: Value,
    /// The method as sent.
    pub(crate) method_name: String,
    pub(crate) method: A2aMethod,
    /// See [`RpcCall::resource`].
    resource: String,
    /// The message's `contextId`, when a non-empty string.
    context_id: Option<String>,
}

impl RpcCall {
    /// Parses a request body: strict JSON, one JSON-RPC 2.0 request (no batch), a known A2A
    /// method, object params.
    pub(crate) fn parse(body: &[u8]) -> Result<RpcCall, RpcRefusal> {
        let (id, method_name, method, params) = parse_envelope(body)?;
        let call = Params {
            method,
            params: &params,
        };
        Ok(RpcCall {
            resource: call.resource(),
            context_id: call
                .message()
                .and_then(|m| m.get("contextId"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            id,
            method_name,
            method,
        })
    }

    /// The resource of the decision. For a message: its metadata's `resource`, `target`,
    /// `taskId` or `contextId`, then its own `taskId` or `contextId`, else the first
    /// [`RESOURCE_TEXT_CHARS`] characters of its text ([`ResourceName::from_free_text`]). For
    /// other methods: the task or context named by the parameter the agent reads for that
    /// method ([`Subject`]). `""` when nothing names one.
    pub(crate) fn resource(&self) -> &str {
        &self.resource
    }

    /// The `contextId` of the message a message method carries, if any.
    pub(crate) fn context_id(&self) -> Option<&str> {
        self.context_id.as_deref()
    }
}

/// A parsed envelope: the id, the method as sent and known, the params.
type Envelope = (Value, String, A2aMethod, Map<String, Value>);

/// The envelope of a request body, its params checked (see [`check_subject`]).
fn parse_envelope(body: &[u8]) -> Result<Envelope, RpcRefusal> {
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
            return Err(ProxyError::InvalidRequest("`params` must be an object".into()).with_id(id))
        }
    };
    if let Err(why) = check_subject(&method_name, method.subject, &params) {
        return Err(ProxyError::InvalidParams(why).with_id(id));
    }
    Ok((id, method_name, method, params))
}

/// A call's method and params, while they are read.
struct Params<'a> {
    method: A2aMethod,
    params: &'a Map<String, Value>,
}

impl Params<'_> {
    /// The message a message method carries (`params.message`), if any.
    fn message(&self) -> Option<&Map<String, Value>> {
        self.params.get("message").and_then(Value::as_object)
    }

    /// See [`RpcCall::resource`].
    fn resource(&self) -> String {
        match self.method.shape {
            Shape::Message | Shape::StreamingMessage => self.message_resource(),
            Shape::Other => self
                .method
                .subject
                .key()
                .and_then(|key| self.params.get(key))
                .and_then(Value::as_str)
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
        // Free text: runs of whitespace become one space and hidden characters go, so that an
        // ordinary multi-line message names a resource the control plane accepts.
        ResourceName::from_free_text(&message_text(message), RESOURCE_TEXT_CHARS)
    }
}

/// Refuses params in which another reader could take another task or context than the one
/// decided on: a proto field name (`task_id`) beside or instead of its JSON name, in the params
/// or the message; `taskId` on a method whose task is `params.id` (the 1.0 SDK ignores it, the
/// proxy once decided on it); `id` or `taskId` on a listing of a context; and a subject that is
/// not a string.
fn check_subject(
    method_name: &str,
    subject: Subject,
    params: &Map<String, Value>,
) -> Result<(), String> {
    let message = params.get("message").and_then(Value::as_object);
    for object in std::iter::once(params).chain(message) {
        if let Some((proto, json)) = PROTO_NAMES
            .iter()
            .find(|(proto, _)| object.contains_key(*proto))
        {
            return Err(format!("`{proto}` is not accepted; name it `{json}`"));
        }
    }
    let foreign: &[&str] = match subject {
        Subject::Id => &["taskId"],
        Subject::ContextId => &["id", "taskId"],
        Subject::Message | Subject::TaskId | Subject::Nothing => &[],
    };
    if let (Some(key), Some(other)) = (
        subject.key(),
        foreign.iter().find(|k| params.contains_key(**k)),
    ) {
        return Err(format!(
            "`{other}` is not a parameter of {method_name}, which names its subject by `{key}`"
        ));
    }
    match subject
        .key()
        .and_then(|key| params.get(key).map(|v| (key, v)))
    {
        Some((key, value)) if !value.is_string() => Err(format!("`{key}` must be a string")),
        _ => Ok(()),
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
