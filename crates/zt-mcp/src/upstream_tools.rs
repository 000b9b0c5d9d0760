//! Reads the upstream server's `tools/list` over Streamable HTTP, as the client's session, and
//! keeps one list per session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde_json::Value;

use crate::stdio::MAX_MESSAGE_BYTES;
use crate::tools::{list_request, own_id, result_of, ListTools, ToolCache};

/// Sessions whose tool lists are kept; past it the least recently used is forgotten.
const MAX_SESSIONS: usize = 1024;

/// The client's headers the gateway's own request carries, so that the server answers it in
/// the client's session, under the client's credentials and protocol version.
const SESSION_HEADERS: [&str; 3] = ["mcp-session-id", "mcp-protocol-version", "authorization"];

/// Asks the upstream for `tools/list` as the client whose request carried `headers`.
pub(crate) struct UpstreamLister {
    pub(crate) client: Client<HttpConnector, Body>,
    /// The upstream's MCP endpoint.
    pub(crate) endpoint: String,
    pub(crate) headers: HeaderMap,
}

impl ListTools for UpstreamLister {
    async fn list_page(&self, id: String, cursor: Option<String>) -> Result<Value, String> {
        let body = list_request(&id, cursor.as_deref()).to_string();
        let mut request = Request::post(&self.endpoint)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Body::from(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        for name in SESSION_HEADERS {
            if let Some(value) = self.headers.get(name) {
                request
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value.clone());
            }
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("the server is unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("the server answered {}", response.status()));
        }
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let mut body = response.into_body();
        let mut events = Events::default();
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the answer broke off: {e}"))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            if received.len() + data.len() > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "the answer is larger than {MAX_MESSAGE_BYTES} bytes"
                ));
            }
            received.extend_from_slice(data);
            if is_stream {
                // The server may keep the stream open after the answer: read up to it only.
                while let Some(event) = events.next(&received) {
                    if let Some(answer) = answer_to(event.as_bytes(), &id) {
                        return result_of(answer);
                    }
                }
            }
        }
        if is_stream {
            return Err("the event stream ended without the answer".into());
        }
        answer_to(&received, &id)
            .ok_or_else(|| "the server's answer is not the answer to the request".to_string())
            .and_then(result_of)
    }
}

/// `message` if it is the JSON-RPC answer to the gateway's request `id`.
fn answer_to(message: &[u8], id: &str) -> Option<Value> {
    let message = zt_contract::strict_json::parse_value(message).ok()?;
    let answers = message.get("method").is_none() && own_id(&message) == Some(id);
    answers.then_some(message)
}

/// Server-sent events read from a growing buffer: each complete event's `data`.
#[derive(Debug, Default)]
struct Events {
    /// Bytes of the buffer already read as whole events.
    consumed: usize,
}

impl Events {
    /// The next complete event's data lines, joined by `\n`, if the buffer holds one.
    fn next(&mut self, buffer: &[u8]) -> Option<String> {
        let rest = buffer.get(self.consumed..)?;
        let mut data: Option<String> = None;
        let mut at = 0;
        while let Some(end) = memchr::memchr(b'\n', rest.get(at..)?) {
            let line = rest.get(at..at + end)?;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            at += end + 1;
            if line.is_empty() {
                self.consumed += at;
                match data {
                    Some(data) => return Some(data),
                    // An event without data (a comment, an id): dispatches nothing.
                    None => continue,
                }
            }
            if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let value = String::from_utf8_lossy(value);
                match data.as_mut() {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => data = Some(value.into_owned()),
                }
            }
        }
        None
    }
}

/// A session's tool list and when it was last used.
type KeptList = (Arc<ToolCache>, Instant);

/// One tool list per client session (`Mcp-Session-Id`; one for clients without).
#[derive(Debug, Default)]
pub(crate) struct SessionTools {
    sessions: Mutex<HashMap<Vec<u8>, KeptList>>,
}

impl SessionTools {
    /// The tool list of the session `headers` name.
    pub(crate) fn of(&self, headers: &HeaderMap) -> Arc<ToolCache> {
        let session = headers
            .get("mcp-session-id")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let Ok(mut sessions) = self.sessions.lock() else {
            // Never poisoned (nothing panics under it); a fresh list is only slower.
            return Arc::default();
        };
        if let Some((tools, used)) = sessions.get_mut(&session) {
            *used = Instant::now();
            return tools.clone();
        }
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(session, _)| session.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        let tools = Arc::<ToolCache>::default();
        sessions.insert(session, (tools.clone(), Instant::now()));
        tools
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    #[test]
    fn events_are_read_whole_as_they_arrive() {
        let mut events = Events::default();
        let mut buffer = b"event: message\r\nid: 1\r\ndata: {\"a\":\r\n".to_vec();
        assert_eq!(events.next(&buffer), None, "no blank line yet");
        buffer.extend_from_slice(b"data: 1}\r\n\r\n: comment\n\ndata:{\"b\":2}\n");
        assert_eq!(events.next(&buffer).as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(events.next(&buffer), None, "the comment dispatches nothing");
        buffer.extend_from_slice(b"\n");
        assert_eq!(events.next(&buffer).as_deref(), Some("{\"b\":2}"));
        assert_eq!(events.next(&buffer), None);
    }

    #[test]
    fn only_the_answer_to_the_request_is_taken() {
        let id = "zt-gateway/tools-list/3";
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"tools": []}}).to_string();
        assert!(answer_to(answer.as_bytes(), id).is_some());
        for other in [
            json!({"jsonrpc": "2.0", "id": "zt-gateway/tools-list/4", "result": {}}),
            json!({"jsonrpc": "2.0", "id": id, "method": "x"}),
            json!({"jsonrpc": "2.0", "method": "notifications/message"}),
        ] {
            assert!(
                answer_to(other.to_string().as_bytes(), id).is_none(),
                "{other}"
            );
        }
        assert!(answer_to(b"{\"id\":1,\"id\":2}", id).is_none());
    }

    #[test]
    fn each_session_has_its_own_list_and_the_oldest_is_forgotten() {
        let tools = SessionTools::default();
        let headers = |session: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("mcp-session-id", HeaderValue::from_str(session).unwrap());
            headers
        };
        let first = tools.of(&headers("s0"));
        assert!(Arc::ptr_eq(&first, &tools.of(&headers("s0"))));
        assert!(!Arc::ptr_eq(&first, &tools.of(&headers("s1"))));
        assert!(!Arc::ptr_eq(&first, &tools.of(&HeaderMap::new())));
        for n in 0..MAX_SESSIONS {
            tools.of(&headers(&format!("n{n}")));
        }
        assert_eq!(tools.sessions.lock().unwrap().len(), MAX_SESSIONS);
        assert!(!Arc::ptr_eq(&first, &tools.of(&headers("s0"))), "forgotten");
    }
}
