//! Turns a `tools/call` into a decision, and a refusal into the tool result the client sees.

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ErrorCode};
use serde_json::{json, Map, Value};
use zt_client::{ClientError, ControlPlane};
use zt_contract::{Decision, DecisionRequest, DecisionResponse, MAX_REQUEST_BODY_BYTES};

use crate::resource::resource_of;
use crate::tools::{DeclaredArguments, ListTools, ToolCache, ToolsError};

/// What the gateway does with one tool call.
#[derive(Debug)]
pub enum Verdict {
    /// Relay the call to the server.
    Allow,
    /// Answer the client with this result; the call never reaches the server.
    Deny(Box<CallToolResult>),
    /// Not decided: the call does not match its tool's declaration (or the declaration could
    /// not be read). Answered with this JSON-RPC error; the call never reaches the server.
    Refuse {
        /// `-32602` for the call's fault, `-32603` for the gateway's.
        code: ErrorCode,
        /// Why.
        message: String,
    },
}

/// Why a call is refused: one mapping from cause to the result the client sees.
#[derive(Debug)]
enum Refusal {
    /// The control plane decided deny.
    Denied(Box<DecisionResponse>),
    /// No decision could be obtained (down, slow, garbage, or the request refused).
    Unavailable(ClientError),
    /// The decision request would be larger than the control plane reads: not sent.
    TooLarge,
}

impl Refusal {
    fn into_result(self) -> CallToolResult {
        let (reason, zt) = match self {
            Refusal::Denied(decision) => {
                // The whole answer of `POST /actions`, as every enforcement point passes it on:
                // one envelope, which verifies as the control plane signed it.
                let reason = decision.reason.clone();
                let zt = serde_json::to_value(&*decision)
                    .unwrap_or_else(|_| json!({"decision": Decision::Deny, "reason": reason}));
                (reason, zt)
            }
            Refusal::Unavailable(error) => {
                let reason = format!("control plane unavailable: {error}");
                let zt = json!({"decision": Decision::Deny, "reason": reason});
                (reason, zt)
            }
            // The deny the control plane's 413 would have caused, without sending the body.
            Refusal::TooLarge => {
                let reason = format!(
                    "control plane unavailable: the decision request would be larger than the \
                     {MAX_REQUEST_BODY_BYTES} bytes the control plane reads: not sent"
                );
                let zt = json!({"decision": Decision::Deny, "reason": reason});
                (reason, zt)
            }
        };
        let mut result = CallToolResult::error(vec![ContentBlock::text(reason)]);
        // A field of the newest protocol only; older clients must not see it.
        result.result_type = None;
        result.structured_content = Some(json!({ "zt": zt }));
        result
    }
}

/// Asks the control plane about every tool call of one MCP server on behalf of one actor.
#[derive(Clone)]
pub struct Gate {
    control_plane: ControlPlane,
    actor: String,
    server: String,
}

// Leaves out the control-plane client, which holds the bearer token.
impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("actor", &self.actor)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate for the server named `server` (the `<server>` of `mcp.<server>.<tool>`), asking
    /// `control_plane` (already carrying the agent's token) as `actor`.
    pub fn new(control_plane: ControlPlane, actor: &str, server: &str) -> Self {
        Self {
            control_plane,
            actor: actor.to_string(),
            server: server.to_string(),
        }
    }

    /// Checks one call against what its tool declares (read from the server with `lister`,
    /// kept in `tools`), then decides it. A call carrying an argument its tool does not declare,
    /// or naming a tool the server does not list, is refused undecided.
    pub(crate) async fn screen<L: ListTools>(
        &self,
        call: CallToolRequestParams,
        tools: &ToolCache,
        lister: &L,
    ) -> Verdict {
        let arguments = call.arguments.as_ref();
        let screened = match tools.declared(lister, &call.name, arguments).await {
            Ok(declared) => match declared.undeclared(arguments) {
                None => Ok(declared),
                Some(name) => Err((
                    ErrorCode::INVALID_PARAMS,
                    format!("argument `{name}` is not declared by tool `{}`", call.name),
                )),
            },
            Err(error @ ToolsError::NotListed(_)) => {
                Err((ErrorCode::INVALID_PARAMS, error.to_string()))
            }
            Err(error @ ToolsError::Unreadable(_)) => {
                Err((ErrorCode::INTERNAL_ERROR, error.to_string()))
            }
        };
        let (code, message) = match screened {
            Ok(declared) => return self.check(call, &declared).await,
            Err(refused) => refused,
        };
        // Not the names: they are the agent's text.
        tracing::info!(
            action = %zt_client::names::mcp_action(&self.server, &call.name),
            code = code.0,
            "tool call refused undecided"
        );
        Verdict::Refuse { code, message }
    }

    /// The decision request for one call: action `mcp.<server>.<tool>`, the resource read from
    /// the arguments the tool declares, and `{"mcp": {"server", "tool", "arguments"}}` as
    /// context. The arguments are moved into it, not copied.
    pub fn request_for(
        &self,
        call: CallToolRequestParams,
        declared: &DeclaredArguments,
    ) -> DecisionRequest {
        let resource = resource_of(call.arguments.as_ref(), declared);
        let action = zt_client::names::mcp_action(&self.server, &call.name);
        let mut mcp = Map::new();
        mcp.insert("server".into(), Value::String(self.server.clone()));
        mcp.insert("tool".into(), Value::String(call.name.into_owned()));
        let arguments = call.arguments.unwrap_or_default();
        mcp.insert("arguments".into(), Value::Object(arguments));
        let mut context = Map::new();
        context.insert("mcp".into(), Value::Object(mcp));
        DecisionRequest {
            actor: self.actor.clone(),
            action,
            resource,
            context: Some(context),
            ..DecisionRequest::default()
        }
    }

    /// Decides one call whose tool declares `declared`. Anything but a complete allow is a
    /// deny; so is a call whose decision request the control plane would refuse for its size,
    /// denied here without sending it.
    pub async fn check(
        &self,
        call: CallToolRequestParams,
        declared: &DeclaredArguments,
    ) -> Verdict {
        let request = self.request_for(call, declared);
        let refusal = if !fits_the_control_plane(&request) {
            Refusal::TooLarge
        } else {
            match self.control_plane.decide(&request).await {
                Ok(decision) if decision.decision == Decision::Allow => return Verdict::Allow,
                Ok(decision) => Refusal::Denied(Box::new(decision)),
                Err(error) => Refusal::Unavailable(error),
            }
        };
        match &refusal {
            // Not the resource: it is an argument's value (a path, a URL with its query), and
            // the audit record it names holds it.
            Refusal::Denied(decision) => tracing::info!(
                action = %request.action,
                seq = decision.evidence.seq,
                reason = %decision.reason,
                "tool call denied"
            ),
            Refusal::Unavailable(error) => tracing::warn!(
                action = %request.action,
                error = %error,
                "tool call denied: no decision"
            ),
            Refusal::TooLarge => tracing::warn!(
                action = %request.action,
                limit = MAX_REQUEST_BODY_BYTES,
                "tool call denied: its decision request is larger than the control plane reads"
            ),
        }
        Verdict::Deny(Box::new(refusal.into_result()))
    }
}

/// Whether `request` serialised (as the client sends it, less the request id it adds, whose
/// few bytes a 413 still catches) is at most [`MAX_REQUEST_BODY_BYTES`]. Counted, not written,
/// and the count stops past the limit: a 16 MiB call costs no copy and little time.
fn fits_the_control_plane(request: &DecisionRequest) -> bool {
    /// Bytes still allowed.
    struct Budget(usize);
    impl std::io::Write for Budget {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(bytes.len())
                .ok_or_else(|| std::io::Error::other("over the limit"))?;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(MAX_REQUEST_BODY_BYTES), request).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &'static str, arguments: Value) -> CallToolRequestParams {
        let mut call = CallToolRequestParams::new(name);
        call.arguments = arguments.as_object().cloned();
        call
    }

    fn gate(url: &str) -> Gate {
        let plane = ControlPlane::with_timeout(url, std::time::Duration::from_secs(2)).unwrap();
        Gate::new(plane, "coder", "file system")
    }

    #[test]
    fn the_request_names_the_action_resource_and_arguments() {
        let declared = DeclaredArguments::from_input_schema(
            &json!({"properties": {"path": {}, "content": {}}}),
        );
        let request = gate("http://127.0.0.1:9").request_for(
            call("write_file", json!({"path": "/tmp/a", "content": "x"})),
            &declared,
        );
        assert_eq!(request.actor, "coder");
        assert_eq!(request.action, "mcp.file_system.write_file");
        assert_eq!(request.resource, "/tmp/a");
        assert_eq!(
            Value::Object(request.context.unwrap()),
            json!({"mcp": {"server": "file system", "tool": "write_file",
                           "arguments": {"path": "/tmp/a", "content": "x"}}})
        );
    }

    #[test]
    fn a_call_without_arguments_has_an_empty_arguments_object() {
        let request = gate("http://127.0.0.1:9").request_for(
            CallToolRequestParams::new("t"),
            &DeclaredArguments::default(),
        );
        assert_eq!(request.resource, "");
        assert_eq!(
            request.context.unwrap()["mcp"]["arguments"],
            json!({}),
            "policies can test `context.mcp.arguments has k` on every call"
        );
    }

    #[tokio::test]
    async fn no_control_plane_is_a_deny_result_with_the_reason() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let verdict = gate("http://127.0.0.1:9")
            .check(
                call("echo", json!({"message": "hi"})),
                &DeclaredArguments::default(),
            )
            .await;
        let Verdict::Deny(result) = verdict else {
            panic!("expected a deny, got {verdict:?}");
        };
        let result = serde_json::to_value(&*result).unwrap();
        assert_eq!(result["isError"], json!(true));
        assert!(result.get("resultType").is_none());
        let reason = result["structuredContent"]["zt"]["reason"]
            .as_str()
            .unwrap();
        assert!(
            reason.starts_with("control plane unavailable: "),
            "{reason}"
        );
        assert_eq!(result["structuredContent"]["zt"]["decision"], json!("deny"));
        assert_eq!(result["content"][0]["type"], json!("text"));
        assert_eq!(result["content"][0]["text"], json!(reason));
    }

    /// A control plane that counts the bytes it receives and answers nothing useful.
    async fn counting_control_plane() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = received.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    // Until the request's end can have come; then a 413, as the real one.
                    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(
                        std::time::Duration::from_millis(200),
                        socket.read(&mut buf),
                    )
                    .await
                    {
                        counted.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 413 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        (url, received)
    }

    #[tokio::test]
    async fn a_call_too_large_for_the_control_plane_is_denied_without_sending_it() {
        let (url, received) = counting_control_plane().await;
        let gate = gate(&url);
        let declared = DeclaredArguments::from_input_schema(
            &json!({"properties": {"path": {}, "content": {}}}),
        );
        let big = call(
            "write_file",
            json!({"path": "/tmp/a", "content": "x".repeat(100 * 1024)}),
        );
        let Verdict::Deny(result) = gate.check(big, &declared).await else {
            panic!("not denied");
        };
        let result = serde_json::to_value(&*result).unwrap();
        let reason = result["structuredContent"]["zt"]["reason"]
            .as_str()
            .unwrap();
        assert_eq!(
            reason,
            "control plane unavailable: the decision request would be larger than the 16384 \
             bytes the control plane reads: not sent"
        );
        assert_eq!(result["content"][0]["text"], json!(reason));
        assert_eq!(result["structuredContent"]["zt"]["decision"], json!("deny"));
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0);
        // One that fits is asked (here answered 413).
        let small = call("write_file", json!({"path": "/tmp/a", "content": "x"}));
        let Verdict::Deny(result) = gate.check(small, &declared).await else {
            panic!("not denied");
        };
        let reason = &result.structured_content.unwrap()["zt"]["reason"];
        assert!(reason.as_str().unwrap().contains("413"), "{reason}");
        assert!(received.load(std::sync::atomic::Ordering::SeqCst) > 0);
    }

    #[test]
    fn the_size_is_the_serialised_requests_to_the_byte() {
        let gate = gate("http://127.0.0.1:9");
        let declared = DeclaredArguments::default();
        let sized = |content: usize| {
            gate.request_for(call("t", json!({"c": "x".repeat(content)})), &declared)
        };
        let empty = serde_json::to_vec(&sized(0)).unwrap().len();
        let limit = MAX_REQUEST_BODY_BYTES - empty;
        assert!(fits_the_control_plane(&sized(limit)));
        assert!(!fits_the_control_plane(&sized(limit + 1)));
    }
}
