//! Reads the upstream server's `tools/list` over Streamable HTTP, as the client's session, and
//! keeps one list per session (read again once the upstream says the session's tools changed:
//! in an answer the relay passes on, see [`crate::change_watch`], or in the answer stream of
//! the gateway's own `tools/list`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde_json::Value;

use zt_contract::Digest32;

use crate::sse::{Event, EventReader};
use crate::stdio::MAX_MESSAGE_BYTES;
use crate::tools::{
    announces_tools_changed, list_request, own_id, result_of, ListTools, ToolCache,
};

/// Sessions whose tool lists are kept; past it the least recently used is forgotten.
const MAX_SESSIONS: usize = 1024;

/// The forwarded headers that do not tell one view of the server from another: framing and
/// what the gateway sets on its own `tools/list`, and tracing, which changes with every
/// request. Every other header (credentials, API keys, a toolset chosen by header, the
/// protocol version, ...) may select the tools a server lists, so it is part of the list's key.
const NOT_A_VIEW: [&str; 25] = [
    "content-length",
    "transfer-encoding",
    "content-type",
    "accept",
    "accept-encoding",
    "expect",
    "mcp-session-id",
    // Tracing: W3C, B3, Jaeger, Datadog, Sentry, AWS X-Ray, Google Cloud, and request ids.
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "uber-trace-id",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "x-datadog-origin",
    "sentry-trace",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
    "x-request-id",
];

/// Asks the upstream for `tools/list` as the client whose request it is deciding.
pub(crate) struct UpstreamLister {
    pub(crate) client: Client<HttpConnector, Body>,
    /// The upstream's MCP endpoint, with the client's query.
    pub(crate) endpoint: String,
    /// The client's request headers as the relay forwards them (session, protocol version,
    /// credentials of any kind), less those of the body.
    pub(crate) headers: HeaderMap,
    /// The client session's tool lists, for a notice in the answer that they changed.
    pub(crate) lists: SessionLists,
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
        // Not the client's: the gateway reads the answer, and decodes nothing.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("the server is unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("the server answered {}", response.status()));
        }
        if let Some(coding) = encoded(response.headers()) {
            return Err(format!(
                "the answer is encoded (`{coding}`) though the gateway asked for none"
            ));
        }
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let mut body = response.into_body();
        // An event stream is read event by event, holding only the event being read; a JSON
        // answer is held whole. Either way at most MAX_MESSAGE_BYTES are received.
        let mut events = is_stream.then(|| EventReader::new(MAX_MESSAGE_BYTES));
        let mut json = Vec::new();
        let mut received = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the answer broke off: {e}"))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            received += data.len();
            if received > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "the answer is larger than {MAX_MESSAGE_BYTES} bytes"
                ));
            }
            let Some(events) = events.as_mut() else {
                json.extend_from_slice(data);
                continue;
            };
            // The server may keep the stream open after the answer: read up to it only.
            let mut rest: &[u8] = data;
            while let Some(event) = events.next_event(&mut rest) {
                // Never more data than was received: the bound above refuses it first.
                let Event::Data(message) = event else {
                    return Err(format!("an event is larger than {MAX_MESSAGE_BYTES} bytes"));
                };
                match Received::of(message.as_bytes(), &id) {
                    Received::Answer(answer) => return result_of(answer),
                    // Sent before the answer, maybe about the very list being read: the
                    // session's lists are read again before their next use, as for the
                    // notices the relay passes on.
                    Received::ToolsChanged => self.lists.tools_changed(),
                    Received::Other => {}
                }
            }
        }
        if is_stream {
            return Err("the event stream ended without the answer".into());
        }
        match Received::of(&json, &id) {
            Received::Answer(answer) => result_of(answer),
            _ => Err("the server's answer is not the answer to the request".into()),
        }
    }
}

/// The answer's content coding, unless it is none (`identity`): the gateway reads bodies as
/// they are sent, so it asks every upstream answer to be so (`Accept-Encoding: identity`).
pub(crate) fn encoded(headers: &HeaderMap) -> Option<String> {
    let codings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .collect();
    (!codings.is_empty()).then(|| codings.join(", "))
}

/// One message the upstream sent in answer to the gateway's request, as the gateway reads it.
#[derive(Debug)]
enum Received {
    /// The JSON-RPC answer to the request.
    Answer(Value),
    /// The notice that the session's tools changed.
    ToolsChanged,
    /// Anything else, unreadable messages included.
    Other,
}

impl Received {
    /// What `message` is to the gateway's request `id`.
    fn of(message: &[u8], id: &str) -> Self {
        let Ok(message) = zt_contract::strict_json::parse_value(message) else {
            return Self::Other;
        };
        if message.get("method").is_none() && own_id(&message) == Some(id) {
            Self::Answer(message)
        } else if announces_tools_changed(&message) {
            Self::ToolsChanged
        } else {
            Self::Other
        }
    }
}

/// The tool lists kept for one client session: the upstream's notice that the session's tools
/// changed, in an answer the relay passes on ([`crate::change_watch`]) or in the answer to
/// the gateway's own `tools/list`, has them read again.
#[derive(Debug, Clone)]
pub(crate) struct SessionLists {
    tools: Arc<SessionTools>,
    /// The `Mcp-Session-Id`, empty without one.
    session: Vec<u8>,
}

impl SessionLists {
    /// The lists of `tools` kept for the session of a request with `headers`.
    pub(crate) fn new(tools: Arc<SessionTools>, headers: &HeaderMap) -> Self {
        Self {
            tools,
            session: session_of(headers),
        }
    }

    /// The upstream said that the session's tools changed.
    pub(crate) fn tools_changed(&self) {
        tracing::debug!("the upstream's tools changed: the session's list is read again");
        self.tools.tools_changed(&self.session);
    }
}

/// A session's tool list and when it was last used.
type KeptList = (Arc<ToolCache>, Instant);

/// Whose tool list: the client's session, and the SHA-256 of what else the list was read
/// with (never a credential itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ListKey {
    /// `Mcp-Session-Id`, empty without one.
    session: Vec<u8>,
    /// The request's target (path and query) and its headers but [`NOT_A_VIEW`].
    view: Digest32,
}

/// One tool list per client session (`Mcp-Session-Id`) and view of the server: the target
/// (path and query) and headers it is read with, so that a list read under `?v=1`, or one
/// token, never covers a call under `?v=2`, or another; clients without a session but with
/// other credentials do not share one either.
#[derive(Debug, Default)]
pub(crate) struct SessionTools {
    sessions: Mutex<HashMap<ListKey, KeptList>>,
}

impl SessionTools {
    /// The tool list read at `endpoint` (the upstream URL with the client's path and query)
    /// with `headers` (the client's, as forwarded).
    pub(crate) fn of(&self, endpoint: &str, headers: &HeaderMap) -> Arc<ToolCache> {
        let session = key_of(endpoint, headers);
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
    fn tools_changed(&self, session: &[u8]) {
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
fn session_of(headers: &HeaderMap) -> Vec<u8> {
    headers
        .get("mcp-session-id")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default()
}

fn key_of(endpoint: &str, headers: &HeaderMap) -> ListKey {
    // Length-prefixed fields, names in byte order (their order on the wire means nothing),
    // values in the order sent (a server may read the first or the last).
    let mut view = Vec::new();
    let mut field = |bytes: &[u8]| {
        view.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        view.extend_from_slice(bytes);
    };
    field(endpoint.as_bytes());
    let mut names: Vec<&header::HeaderName> = headers
        .keys()
        .filter(|name| !NOT_A_VIEW.contains(&name.as_str()))
        .collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    for name in names {
        field(name.as_str().as_bytes());
        let values = headers.get_all(name);
        field(&(values.iter().count() as u64).to_be_bytes());
        for value in values {
            field(value.as_bytes());
        }
    }
    ListKey {
        session: session_of(headers),
        view: Digest32::sha256(&view),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Where the lists of these tests are read.
    const ENDPOINT: &str = "http://127.0.0.1:3001/mcp";

    /// The endpoint of an upstream that answers each `POST` with the event stream
    /// `stream(id)`, `id` being the request's.
    async fn upstream_streaming(stream: fn(&str) -> String) -> String {
        let answer = move |request: axum::body::Bytes| async move {
            let request: Value = serde_json::from_slice(&request).unwrap();
            let stream = stream(request["id"].as_str().unwrap());
            ([(header::CONTENT_TYPE, "text/event-stream")], stream)
        };
        let app = axum::Router::new().route("/mcp", axum::routing::post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        endpoint
    }

    fn lister(endpoint: String, lists: SessionLists) -> UpstreamLister {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        UpstreamLister {
            client,
            endpoint,
            headers: HeaderMap::new(),
            lists,
        }
    }

    fn list_answer(id: &str) -> String {
        json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [{"name": "t", "inputSchema": {}}]}})
            .to_string()
    }

    #[tokio::test]
    async fn the_answer_stream_may_end_lines_in_a_bare_cr_and_start_with_a_byte_order_mark() {
        let streams: [fn(&str) -> String; 3] = [
            |id| {
                format!(
                    ": open\r\revent: message\rid: 1\rdata: {}\r\r",
                    list_answer(id)
                )
            },
            |id| format!("\u{feff}data: {}\n\n", list_answer(id)),
            |id| format!("\u{feff}data: {}\r\r", list_answer(id)),
        ];
        for stream in streams {
            let endpoint = upstream_streaming(stream).await;
            let lister = lister(
                endpoint,
                SessionLists::new(Arc::default(), &HeaderMap::new()),
            );
            let result = lister
                .list_page("zt-gateway/tools-list/0".into(), None)
                .await;
            assert_eq!(
                result,
                Ok(json!({"tools": [{"name": "t", "inputSchema": {}}]})),
                "{:?}",
                stream("zt-gateway/tools-list/0")
            );
        }
    }

    #[tokio::test]
    async fn a_notice_before_the_answer_has_the_sessions_lists_read_again() {
        let notice = |id: &str| {
            let notice = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
            format!("data: {notice}\n\ndata: {}\n\n", list_answer(id))
        };
        let no_notice = |id: &str| format!("data: {}\n\n", list_answer(id));
        for (stream, readings) in [(notice as fn(&str) -> String, 2), (no_notice, 1)] {
            let tools = Arc::new(SessionTools::default());
            let mut headers = HeaderMap::new();
            headers.insert("mcp-session-id", HeaderValue::from_static("s1"));
            let server = Counting::default();
            tools
                .of(ENDPOINT, &headers)
                .declared(&server, "t", None)
                .await
                .unwrap();
            let endpoint = upstream_streaming(stream).await;
            let lister = lister(endpoint, SessionLists::new(tools.clone(), &headers));
            let id = "zt-gateway/tools-list/0".to_string();
            assert!(lister.list_page(id, None).await.is_ok());
            tools
                .of(ENDPOINT, &headers)
                .declared(&server, "t", None)
                .await
                .unwrap();
            let read = server.0.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(read, readings, "{:?}", stream("x"));
        }
    }

    #[test]
    fn only_the_answer_to_the_request_is_taken() {
        let id = "zt-gateway/tools-list/3";
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"tools": []}}).to_string();
        assert!(matches!(
            Received::of(answer.as_bytes(), id),
            Received::Answer(_)
        ));
        for other in [
            json!({"jsonrpc": "2.0", "id": "zt-gateway/tools-list/4", "result": {}}),
            json!({"jsonrpc": "2.0", "id": id, "method": "x"}),
            json!({"jsonrpc": "2.0", "method": "notifications/message"}),
        ] {
            assert!(
                matches!(
                    Received::of(other.to_string().as_bytes(), id),
                    Received::Other
                ),
                "{other}"
            );
        }
        assert!(matches!(
            Received::of(b"{\"id\":1,\"id\":2}", id),
            Received::Other
        ));
        let notice = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        assert!(matches!(
            Received::of(notice.to_string().as_bytes(), id),
            Received::ToolsChanged
        ));
    }

    #[test]
    fn clients_with_other_credentials_do_not_share_a_list() {
        let tools = SessionTools::default();
        let with = |name: header::HeaderName, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
            headers
        };
        let alice = tools.of(ENDPOINT, &with(header::AUTHORIZATION, "Bearer alice"));
        assert!(Arc::ptr_eq(
            &alice,
            &tools.of(ENDPOINT, &with(header::AUTHORIZATION, "Bearer alice"))
        ));
        assert!(!Arc::ptr_eq(
            &alice,
            &tools.of(ENDPOINT, &with(header::AUTHORIZATION, "Bearer bob"))
        ));
        assert!(!Arc::ptr_eq(
            &alice,
            &tools.of(ENDPOINT, &with(header::COOKIE, "Bearer alice"))
        ));
        assert!(!Arc::ptr_eq(&alice, &tools.of(ENDPOINT, &HeaderMap::new())));
    }

    #[test]
    fn lists_read_with_another_target_or_header_are_not_shared() {
        let tools = SessionTools::default();
        let with = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            headers.insert("mcp-session-id", HeaderValue::from_static("s1"));
            for (name, value) in pairs {
                headers.append(
                    header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            headers
        };
        let list = |endpoint: &str, pairs: &[(&str, &str)]| tools.of(endpoint, &with(pairs));
        let first = list("/mcp?v=1", &[("x-toolset", "a"), ("x-api-key", "k")]);
        let same = |other: &Arc<ToolCache>| Arc::ptr_eq(&first, other);
        // What the server may show another view under: the query, any other header's value
        // or absence, the order of one header's values.
        assert!(!same(&list(
            "/mcp?v=2",
            &[("x-toolset", "a"), ("x-api-key", "k")]
        )));
        assert!(!same(&list(
            "/mcp",
            &[("x-toolset", "a"), ("x-api-key", "k")]
        )));
        assert!(!same(&list(
            "/mcp?v=1",
            &[("x-toolset", "b"), ("x-api-key", "k")]
        )));
        assert!(!same(&list("/mcp?v=1", &[("x-api-key", "k")])));
        assert!(!same(&list(
            "/mcp?v=1",
            &[("x-toolset", "a"), ("x-api-key", "k"), ("x-toolset", "b")]
        )));
        let twice = list("/mcp?v=1", &[("x-toolset", "a"), ("x-toolset", "b")]);
        let swapped = list("/mcp?v=1", &[("x-toolset", "b"), ("x-toolset", "a")]);
        assert!(!Arc::ptr_eq(&twice, &swapped));
        // Not a view: the headers' order, framing, tracing.
        assert!(same(&list(
            "/mcp?v=1",
            &[
                ("x-api-key", "k"),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                ),
                ("accept-encoding", "gzip"),
                ("content-length", "120"),
                ("x-toolset", "a"),
            ]
        )));
        // Every request's own trace headers, as common tracers send them.
        assert!(same(&list(
            "/mcp?v=1",
            &[
                ("x-toolset", "a"),
                ("x-api-key", "k"),
                ("x-datadog-trace-id", "1234"),
                ("x-datadog-parent-id", "5678"),
                ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                (
                    "sentry-trace",
                    "771a43a4192642f0b136d5159a501700-b7ad6b7169203331-1"
                ),
                (
                    "x-amzn-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793"
                ),
                (
                    "x-cloud-trace-context",
                    "105445aa7843bc8bf206b12000100000/1;o=1"
                ),
                ("uber-trace-id", "5e3b:5e3b:0:1"),
            ]
        )));
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
                tools
                    .of(ENDPOINT, headers)
                    .declared(server, "t", None)
                    .await
                    .unwrap();
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
        let first = tools.of(ENDPOINT, &headers("s0"));
        assert!(Arc::ptr_eq(&first, &tools.of(ENDPOINT, &headers("s0"))));
        assert!(!Arc::ptr_eq(&first, &tools.of(ENDPOINT, &headers("s1"))));
        assert!(!Arc::ptr_eq(&first, &tools.of(ENDPOINT, &HeaderMap::new())));
        for n in 0..MAX_SESSIONS {
            tools.of(ENDPOINT, &headers(&format!("n{n}")));
        }
        assert_eq!(tools.sessions.lock().unwrap().len(), MAX_SESSIONS);
        assert!(
            !Arc::ptr_eq(&first, &tools.of(ENDPOINT, &headers("s0"))),
            "forgotten"
        );
    }
}
