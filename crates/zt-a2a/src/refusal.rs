//! A call that is not forwarded because of its decision, and the one mapping of that refusal
//! to an A2A-correct answer: a task in the rejected state for a message (one event, then the
//! end, for a stream), a JSON-RPC error for any other method. The decision rides along under
//! `metadata.zt` or `error.data.zt`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use zt_contract::DecisionResponse;

use crate::method::{Generation, Shape};
use crate::rpc::RpcCall;

/// JSON-RPC error code of a call the policy denied (implementation-defined server error range).
pub const DENIED_CODE: i64 = -32090;
/// JSON-RPC error code of a call refused because no valid decision could be obtained.
pub const CONTROL_PLANE_UNAVAILABLE_CODE: i64 = -32091;

/// Why a call was not forwarded.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The control plane denied it; the decision is logged and signed.
    Denied(Box<DecisionResponse>),
    /// No valid decision (unreachable, timeout, malformed answer): fail closed.
    ControlPlaneUnavailable { action: String, resource: String },
}

impl Refusal {
    /// The human-readable reason given to the caller.
    fn reason(&self) -> String {
        match self {
            Refusal::Denied(decision) => format!("denied by policy: {}", decision.reason),
            Refusal::ControlPlaneUnavailable { .. } => {
                "control plane unavailable: the call was not forwarded".to_string()
            }
        }
    }

    fn code(&self) -> i64 {
        match self {
            Refusal::Denied(_) => DENIED_CODE,
            Refusal::ControlPlaneUnavailable { .. } => CONTROL_PLANE_UNAVAILABLE_CODE,
        }
    }

    /// The decision as the caller sees it: the control plane's full answer (with its audit
    /// evidence), or a local deny when there was none.
    fn zt(&self) -> Value {
        match self {
            Refusal::Denied(decision) => {
                serde_json::to_value(decision).unwrap_or_else(|_| json!({"decision": "deny"}))
            }
            Refusal::ControlPlaneUnavailable { action, resource } => json!({
                "ok": false,
                "decision": "deny",
                "action": action,
                "resource": resource,
                "reason": "control plane unavailable",
            }),
        }
    }

    /// The answer to `call`.
    pub(crate) fn answer(&self, call: &RpcCall) -> Response {
        let generation = call.method.generation;
        match call.method.shape {
            Shape::Message => {
                let result = self.rejected_result(call, generation);
                axum::Json(rpc_result(&call.id, result)).into_response()
            }
            Shape::StreamingMessage => {
                // One event carrying the rejected task, then the stream ends.
                let event = rpc_result(&call.id, self.rejected_result(call, generation));
                let body = format!("data: {event}\n\n");
                (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "text/event-stream"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
                    .into_response()
            }
            Shape::Other => axum::Json(json!({
                "jsonrpc": "2.0",
                "id": call.id,
                "error": {
                    "code": self.code(),
                    "message": self.reason(),
                    "data": {"zt": self.zt()},
                },
            }))
            .into_response(),
        }
    }

    /// The `result` of a refused message: a new task in the rejected state, in the caller's
    /// protocol generation (1.0 wraps it as `{"task": ...}`; 0.3 sends the task itself).
    fn rejected_result(&self, call: &RpcCall, generation: Generation) -> Value {
        let context_id = call.context_id().map_or_else(new_id, str::to_string);
        let task = rejected_task(
            generation,
            &self.reason(),
            self.zt(),
            &new_id(),
            &context_id,
        );
        match generation {
            Generation::V1_0 => json!({"task": task}),
            Generation::V0_3 => task,
        }
    }
}

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A task in the rejected state whose status message says why.
fn rejected_task(
    generation: Generation,
    reason: &str,
    zt: Value,
    task_id: &str,
    context_id: &str,
) -> Value {
    let mut metadata = Map::new();
    metadata.insert("zt".into(), zt);
    let timestamp = now();
    match generation {
        Generation::V1_0 => json!({
            "id": task_id,
            "contextId": context_id,
            "status": {
                "state": "TASK_STATE_REJECTED",
                "message": {
                    "messageId": new_id(),
                    "contextId": context_id,
                    "taskId": task_id,
                    "role": "ROLE_AGENT",
                    "parts": [{"text": reason}],
                },
                "timestamp": timestamp,
            },
            "metadata": metadata,
        }),
        Generation::V0_3 => json!({
            "kind": "task",
            "id": task_id,
            "contextId": context_id,
            "status": {
                "state": "rejected",
                "message": {
                    "kind": "message",
                    "messageId": new_id(),
                    "contextId": context_id,
                    "taskId": task_id,
                    "role": "agent",
                    "parts": [{"kind": "text", "text": reason}],
                },
                "timestamp": timestamp,
            },
            "metadata": metadata,
        }),
    }
}

/// RFC 3339 UTC now, with milliseconds.
fn now() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_default()
}

/// A random (version 4) UUID for the ids of a rejected task and its message.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Uniqueness is all that matters here: fall back to time and a counter.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let count = u128::from(COUNTER.fetch_add(1, Ordering::Relaxed));
        bytes = (nanos ^ (count << 64)).to_be_bytes();
    }
    let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15] = bytes;
    let b6 = (b6 & 0x0f) | 0x40;
    let b8 = (b8 & 0x3f) | 0x80;
    format!(
        "{b0:02x}{b1:02x}{b2:02x}{b3:02x}-{b4:02x}{b5:02x}-{b6:02x}{b7:02x}-{b8:02x}{b9:02x}-{b10:02x}{b11:02x}{b12:02x}{b13:02x}{b14:02x}{b15:02x}"
    )
}

#[cfg(test)]
#[path = "refusal_tests.rs"]
mod tests;
