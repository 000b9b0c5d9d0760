//! Reads the upstream server's `tools/list` over Streamable HTTP, as the client's session, and
//! keeps one list per session (read again once the upstream says the session's tools changed,
//! see [`crate::change_watch`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde_json::Value;

use crate::stdio::MAX_MESSAGE_BYTES;
use crate::tools::{list_request, own_id, result_of, ListTools, ToolCache};

/// Sessions whose tool lists are kept; past it the least recently used is forgotten.
const MAX_SESSIONS: usize = 1024;

/// The client's headers that tell one client's list from another's besides its session: its
/// credentials, under which the server may list other tools.
const CREDENTIAL_HEADERS: [header::HeaderName; 2] = [header::AUTHORIZATION, header::COOKIE];

/// Asks the upstream for `tools/list` as the client whose request it is deciding.
pub(crate) struct UpstreamLister {
    pub(crate) client: Client<HttpConnector, Body>,
    /// The upstream's MCP endpoint, with the client's query.
    pub(crate) endpoint: String,
    /// The client's request headers as the relay forwards them (session, protocol version,
    /// credentials of any kind), less those of the body.
    pub(crate) headers: HeaderMap,
}

impl ListTools for UpstreamLister {
    async fn list_page(&self, id: String, cursor: Option<String>) -> Result<Value, String> {
        let body = list_request(&id, cursor.as_deref()).to_string();
        let mut request = Request::post(&self.endpoint)
            .body(Body::from(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let headers = request.headers_mut();
        headers.extend(self.headers.clone());
        for name in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING] {
            headers.remove(name);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
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

/// Server-sent events read from a growing buffer: each complete event's `data`. Each line is
/// read once, however many frames the buffer grows by.
#[derive(Debug, Default)]
struct Events {
    /// Bytes of the buffer already read, line by line.
    scanned: usize,
    /// The data lines of the event being read, joined by `\n`.
    data: Option<String>,
}

impl Events {
    /// The next complete event's data, if the buffer holds one.
    fn next(&mut self, buffer: &[u8]) -> Option<String> {
        loop {
            let rest = buffer.get(self.scanned..)?;
            let end = memchr::memchr(b'\n', rest)?;
            let line = rest.get(..end)?;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.scanned += end + 1;
            if line.is_empty() {
                // An event without data (a comment, an id) dispatches nothing.
                match self.data.take() {
                    Some(data) => return Some(data),
                    None => continue,
                }
            }
            if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let value = String::from_utf8_lossy(value);
                match self.data.as_mut() {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
        }
    }
}

/// A session's tool list and when it was last used.
type KeptList = (Arc<ToolCache>, Instant);

/// Whose tool list: the client's session and the SHA-256 of each of its credential headers
/// (never the credential itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ListKey {
    /// `Mcp-Session-Id`, empty without one.
    session: Vec<u8>,
    credentials: Vec<u8>,
}

/// One tool list per client session (`Mcp-Session-Id`) and credentials (`Authorization`,
/// `Cookie`): clients without a session but with other credentials do not share one.
#[derive(Debug, Default)]
pub(crate) struct SessionTools {
    sessions: Mutex<HashMap<ListKey, KeptList>>,
}

impl SessionTools {
    /// The tool list of the session and credentials of `headers`.
    pub(crate) fn of(&self, headers: &HeaderMap) -> Arc<ToolCache> {
        let session = key_of(headers);
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

    /// The upstream said that the tools of `session` (an `Mcp-Session-Id`, empty for clients
    /// without one) changed: each list kept for it, under any credentials, is read again
    /// before its next use. A client's event stream and its calls may carry other
    /// credentials (a token renewed in between); a list read again needlessly costs one
    /// `tools/list`.
    pub(crate) fn tools_changed(&self, session: &[u8]) {
        let Ok(sessions) = self.sessions.lock() else {
            return;
        };
        sessions
            .iter()
            .filter(|(key, _)| key.session == session)
            .for_each(|(_, (tools, _))| tools.forget());
    }
}

/// The `Mcp-Session-Id` of a request, empty without one.
pub(crate) fn session_of(headers: &HeaderMap) -> Vec<u8> {
    headers
        .get("mcp-session-id")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default()
}

fn key_of(headers: &HeaderMap) -> ListKey {
    let mut credentials = Vec::new();
    for name in CREDENTIAL_HEADERS {
        credentials.push(0);
        for value in headers.get_all(name) {
            credentials
                .extend_from_slice(zt_contract::Digest32::sha256(value.as_bytes()).0.as_slice());
        }
    }
    ListKey {
        session: session_of(headers),
        credentials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn clients_with_other_credentials_do_not_share_a_list() {
        let tools = SessionTools::default();
        let with = |name: header::HeaderName, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
            headers
        };
        let alice = tools.of(&with(header::AUTHORIZATION, "Bearer alice"));
        assert!(Arc::ptr_eq(
            &alice,
            &tools.of(&with(header::AUTHORIZATION, "Bearer alice"))
        ));
        assert!(!Arc::ptr_eq(
            &alice,
            &tools.of(&with(header::AUTHORIZATION, "Bearer bob"))
        ));
        assert!(!Arc::ptr_eq(
            &alice,
            &tools.of(&with(header::COOKIE, "Bearer alice"))
        ));
        assert!(!Arc::ptr_eq(&alice, &tools.of(&HeaderMap::new())));
    }

    /// Counts the lists it is asked for.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl ListTools for Counting {
        async fn list_page(&self, _: String, _: Option<String>) -> Result<Value, String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(json!({"tools": [{"name": "t", "inputSchema": {}}]}))
        }
    }

    #[tokio::test]
    async fn a_change_is_read_again_in_every_list_of_its_session_only() {
        let tools = SessionTools::default();
        let headers = |session: Option<&str>, token: &str| {
            let mut headers = HeaderMap::new();
            if let Some(session) = session {
                headers.insert("mcp-session-id", HeaderValue::from_str(session).unwrap());
            }
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(token).unwrap());
            headers
        };
        let lists = [
            headers(Some("s1"), "Bearer old"),
            headers(Some("s1"), "Bearer renewed"),
            headers(Some("s2"), "Bearer old"),
            headers(None, "Bearer old"),
        ];
        let servers: Vec<Counting> = lists.iter().map(|_| Counting::default()).collect();
        let read_all = || async {
            for (headers, server) in lists.iter().zip(&servers) {
                tools.of(headers).declared(server, "t", None).await.unwrap();
            }
        };
        read_all().await;
        tools.tools_changed(b"s1");
        read_all().await;
        let readings: Vec<usize> = servers
            .iter()
            .map(|server| server.0.load(std::sync::atomic::Ordering::SeqCst))
            .collect();
        assert_eq!(readings, [2, 2, 1, 1]);
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
