//! The Streamable HTTP gateway: the same relay over HTTP. A `POST` to the MCP endpoint is read
//! (bounded) and sorted like a stdio line; a denied or refused message is answered here, all
//! else (the allowed `POST`s, and without a body the `GET` event stream, the session's `DELETE`
//! and a CORS preflight; any other method is refused) is forwarded to
//! the upstream server with its headers (`Mcp-Session-Id` included) and its answer, JSON or an
//! SSE stream, is streamed back untouched, read on its way for the notice that the session's
//! tools changed ([`crate::change_watch`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutBody;
use zt_listener::{AllowedOrigins, BodyTimeout, Limits, PageGuard};

use crate::change_watch::WatchedBody;
use crate::gate::{Gate, Verdict};
use crate::intercept::{
    answer, classify, invalid_request, no_message, oversized, refusal, upstream_failure, Inbound,
};
use crate::stdio::MAX_MESSAGE_BYTES;
use crate::upstream_tools::{SessionLists, SessionTools, UpstreamLister};
use crate::GatewayError;

/// How long connecting to the upstream server may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the upstream may take to start answering a forwarded request, by default (504
/// beyond): a tool call answered as JSON answers only when the tool is done.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest pause inside an answer being relayed, by default (between two chunks of a body, two
/// events of a stream): past it the relay ends and the connection closes, so an upstream that
/// stalls cannot hold a client's connection, and its place under the connection cap, for ever.
/// A client reopens a quiet `GET` event stream, as behind any proxy with a read timeout.
pub const RELAY_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How the Streamable HTTP gateway treats its clients and its upstream.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Connections, header and body time (see [`zt_listener`]).
    pub limits: Limits,
    /// Web pages allowed to call besides this machine's own (see [`AllowedOrigins`]).
    pub allowed_origins: AllowedOrigins,
    /// See [`UPSTREAM_TIMEOUT`].
    pub upstream_timeout: Duration,
    /// See [`RELAY_IDLE_TIMEOUT`].
    pub relay_idle_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            allowed_origins: AllowedOrigins::default(),
            upstream_timeout: UPSTREAM_TIMEOUT,
            relay_idle_timeout: RELAY_IDLE_TIMEOUT,
        }
    }
}

/// `POST`s read or decided at once (each may hold up to [`MAX_MESSAGE_BYTES`] and its parsed
/// tree up to [`zt_contract::strict_json::MAX_TREE_BYTES`]); past it 503. A `POST` being
/// relayed no longer counts: the connection cap bounds those.
pub const MAX_POSTS_IN_FLIGHT: usize = 64;

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

struct Relay {
    gate: Gate,
    /// `http://host:port` of the upstream server.
    origin: String,
    /// The MCP endpoint's path, the same here and upstream.
    path: String,
    client: Client<HttpConnector, Body>,
    /// What each session's tools declare, read from the upstream; shared with the relayed
    /// answers, which may say that they changed.
    tools: Arc<SessionTools>,
    posts: Arc<Semaphore>,
    /// Which web pages may call (DNS rebinding).
    pages: PageGuard,
    upstream_timeout: Duration,
    relay_idle_timeout: Duration,
}

/// The upstream MCP endpoint: an `http://` URL with a host.
fn parse_upstream(url: &str) -> Result<(String, String), GatewayError> {
    let bad = || GatewayError::Upstream(url.to_string());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?;
    Ok((format!("http://{authority}"), uri.path().to_string()))
}

/// Serves the MCP endpoint of `upstream` (e.g. `http://127.0.0.1:3001/mcp`) on `listener`, at
/// the same path, deciding every tool call with `gate`, under `options`. Past the connection
/// cap a request gets a 503 with a JSON-RPC error. Runs until dropped; fails only for an
/// unusable `upstream`.
pub async fn serve_http(
    gate: Gate,
    listener: TcpListener,
    upstream: &str,
    options: HttpOptions,
) -> Result<(), GatewayError> {
    let (origin, path) = parse_upstream(upstream)?;
    let local = listener.local_addr().map_err(GatewayError::Listener)?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let relay = Arc::new(Relay {
        gate,
        origin,
        path,
        client,
        tools: Arc::default(),
        posts: Arc::new(Semaphore::new(MAX_POSTS_IN_FLIGHT)),
        pages: PageGuard::new(local, options.allowed_origins),
        upstream_timeout: options.upstream_timeout,
        relay_idle_timeout: options.relay_idle_timeout,
    });
    let apps = zt_listener::Apps {
        regular: axum::Router::new().fallback(handle).with_state(relay),
        overflow: axum::Router::new().fallback(|| async {
            let busy = upstream_failure("gateway busy: too many connections; retry later");
            json(StatusCode::SERVICE_UNAVAILABLE, busy)
        }),
    };
    let forever = std::future::pending();
    zt_listener::serve_connections(
        listener,
        zt_listener::PLAIN_HTTP,
        apps,
        options.limits,
        None,
        forever,
    )
    .await;
    Ok(())
}

async fn handle(State(relay): State<Arc<Relay>>, request: Request) -> Response {
    if request.uri().path() != relay.path {
        return json(
            StatusCode::NOT_FOUND,
            upstream_failure("no MCP endpoint at this path"),
        );
    }
    let (parts, body) = request.into_parts();
    if let Some(why) = relay.pages.refusal(&parts.headers) {
        let refused = upstream_failure(&why.to_string());
        return json(StatusCode::FORBIDDEN, refused);
    }
    let body = if parts.method == Method::POST {
        // The one method that carries messages, so the one whose body is read and decided.
        // Decided on as UTF-8 JSON, so relayed only as that (see `is_utf8_json`).
        if !zt_listener::is_utf8_json(&parts.headers) {
            let refused = upstream_failure(zt_listener::NOT_UTF8_JSON);
            return json(StatusCode::UNSUPPORTED_MEDIA_TYPE, refused);
        }
        let Ok(permit) = relay.posts.clone().try_acquire_owned() else {
            let busy = upstream_failure("gateway busy: too many requests in flight");
            return json(StatusCode::SERVICE_UNAVAILABLE, busy);
        };
        let deadline = BodyTimeout::of(&parts.extensions);
        let reading = Limited::new(body, MAX_MESSAGE_BYTES).collect();
        let bytes = match tokio::time::timeout(deadline, reading).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(error)) if error.is::<LengthLimitError>() => {
                return json(StatusCode::PAYLOAD_TOO_LARGE, oversized(MAX_MESSAGE_BYTES))
            }
            Ok(Err(_)) => {
                let broken = upstream_failure("request body could not be read");
                return json(StatusCode::BAD_REQUEST, broken);
            }
            Err(_) => {
                let slow = upstream_failure("request body not received in time");
                return json(StatusCode::REQUEST_TIMEOUT, slow);
            }
        };
        match classify(&bytes) {
            Inbound::Relay(_) => {}
            Inbound::ToolCall { id, call } => {
                let mut headers = parts.headers.clone();
                for_the_upstream(&mut headers);
                let endpoint = upstream_target(&relay, &parts.uri);
                // Kept for what the list is read with, so it covers only calls made so.
                let tools = relay.tools.of(&endpoint, &headers);
                let lister = UpstreamLister {
                    client: relay.client.clone(),
                    endpoint,
                    headers,
                    lists: SessionLists::new(relay.tools.clone(), &parts.headers),
                };
                match relay.gate.screen(*call, &tools, &lister).await {
                    Verdict::Allow => {}
                    Verdict::Deny(result) => return json(StatusCode::OK, answer(id, *result)),
                    // 200, as a server answers a request it read: an SDK client then raises
                    // the JSON-RPC error to its caller instead of failing the transport.
                    Verdict::Refuse { code, message } => {
                        return json(StatusCode::OK, refusal(id, code, message))
                    }
                }
            }
            Inbound::Refuse(Some(error)) => return json(StatusCode::BAD_REQUEST, error),
            // A notification that is not relayed: accepted, as the transport answers any.
            Inbound::Refuse(None) => return empty(StatusCode::ACCEPTED),
            // The transport's `POST` carries one message; none is not a notification.
            Inbound::Blank => return json(StatusCode::BAD_REQUEST, no_message()),
        }
        // Decided: the parsed message is gone; the relay holds only the body's bytes.
        drop(permit);
        Body::from(bytes)
    } else if BODILESS.contains(&parts.method) {
        // Relayed unread, so only without a body: a server may read a body under any method
        // (`PUT`, a lowercase `post`, which hyper takes as a method of its own) as a message.
        if carries_body(&parts.headers) {
            let refused = invalid_request(&format!(
                "a `{}` carries no body here: messages go in a `POST`",
                parts.method
            ));
            return json(StatusCode::BAD_REQUEST, refused);
        }
        Body::empty()
    } else {
        let refused = invalid_request(&format!(
            "method `{}` is not allowed: the MCP endpoint takes {ALLOWED_METHODS}",
            parts.method
        ));
        let mut response = json(StatusCode::METHOD_NOT_ALLOWED, refused);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        return response;
    };
    forward(&relay, parts, body).await
}

/// The methods relayed without a body: Streamable HTTP's event stream (`GET`) and end of a
/// session (`DELETE`), and a browser's CORS preflight (`OPTIONS`) for the pages
/// `--allow-origin` admits, which the upstream answers.
const BODILESS: [Method; 3] = [Method::GET, Method::DELETE, Method::OPTIONS];
/// The `Allow` header of a 405: `POST` and [`BODILESS`].
const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// Whether a request's headers announce a body: any `Transfer-Encoding`, or a
/// `Content-Length` other than 0.
fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| !length.to_str().is_ok_and(|length| length.trim() == "0"))
}

/// Where a request to `uri` goes upstream: the same path and query at the upstream's origin.
fn upstream_target(relay: &Relay, uri: &Uri) -> String {
    match uri.path_and_query() {
        Some(path) => format!("{}{path}", relay.origin),
        None => format!("{}{}", relay.origin, relay.path),
    }
}

async fn forward(relay: &Relay, mut parts: axum::http::request::Parts, body: Body) -> Response {
    let target = upstream_target(relay, &parts.uri);
    let Ok(uri) = target.parse::<Uri>() else {
        return json(
            StatusCode::BAD_REQUEST,
            upstream_failure("bad request target"),
        );
    };
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    let lists = SessionLists::new(relay.tools.clone(), &parts.headers);
    for_the_upstream(&mut parts.headers);
    // Answers are read as they pass for the notice that the tools changed: a compressed one
    // could not be (the client gets it uncompressed; any client must accept that).
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let answering = relay.client.request(Request::from_parts(parts, body));
    match tokio::time::timeout(relay.upstream_timeout, answering).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let body = WatchedBody::new(body, &parts.headers, lists);
            let body = TimeoutBody::new(relay.relay_idle_timeout, body);
            Response::from_parts(parts, Body::new(body))
        }
        Err(_) => {
            let waited = relay.upstream_timeout.as_secs();
            tracing::warn!(waited, "upstream MCP server did not answer in time");
            json(
                StatusCode::GATEWAY_TIMEOUT,
                upstream_failure(&format!(
                    "upstream MCP server did not start answering within {waited} s"
                )),
            )
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "upstream MCP server unreachable");
            json(
                StatusCode::BAD_GATEWAY,
                upstream_failure(&format!("upstream MCP server unreachable: {error}")),
            )
        }
    }
}

/// A client request's headers as the upstream gets them, in the relayed request and in the
/// gateway's own `tools/list` alike (so that the list is read with the client's credentials):
/// without hop-by-hop headers and without `Host`.
fn for_the_upstream(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn json(status: StatusCode, mut line: Vec<u8>) -> Response {
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    let mut response = Response::new(Body::from(line));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::broadcast;

    /// One HTTP/1.1 request: its head and its body (by `content-length`).
    async fn read_request(socket: &mut TcpStream) -> (String, Vec<u8>) {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = memchr::memmem::find(&raw, b"\r\n\r\n") {
                break at + 4;
            }
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request broke off");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse().unwrap());
        while raw.len() < head_end + length {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the body broke off");
            raw.extend_from_slice(&buf[..n]);
        }
        (head, raw[head_end..head_end + length].to_vec())
    }

    /// An upstream MCP endpoint with the one tool `t`, whose schema's `properties` are
    /// `properties`: it answers `tools/list` (counted in `listed`) and any other `POST` with
    /// JSON, and holds each `GET` open as an event stream that carries
    /// `notifications/tools/list_changed`, cut in two writes, whenever `changed` is sent.
    struct Upstream {
        port: u16,
        properties: Arc<std::sync::Mutex<Value>>,
        changed: broadcast::Sender<()>,
        listed: Arc<AtomicUsize>,
        /// Every request received.
        requests: Arc<AtomicUsize>,
        /// Other views: a `tools/list` whose request head (lowercase) holds the first string
        /// lists the tool with the second's properties instead.
        views: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    }

    impl Upstream {
        async fn start(properties: Value) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let upstream = Self {
                port: listener.local_addr().unwrap().port(),
                properties: Arc::new(std::sync::Mutex::new(properties)),
                changed: broadcast::channel(4).0,
                listed: Arc::default(),
                requests: Arc::default(),
                views: Arc::default(),
            };
            let served = Served {
                properties: upstream.properties.clone(),
                changed: upstream.changed.clone(),
                listed: upstream.listed.clone(),
                requests: upstream.requests.clone(),
                views: upstream.views.clone(),
            };
            tokio::spawn(async move {
                loop {
                    let (socket, _) = listener.accept().await.unwrap();
                    let served = served.clone();
                    tokio::spawn(async move { Self::answer(socket, &served).await });
                }
            });
            upstream
        }

        async fn answer(mut socket: TcpStream, served: &Served) {
            let Served {
                properties,
                changed,
                listed,
                requests,
                views,
            } = served;
            let (head, body) = read_request(&mut socket).await;
            requests.fetch_add(1, Ordering::SeqCst);
            if head.starts_with("delete") {
                let ended = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                socket.write_all(ended.as_bytes()).await.unwrap();
                return;
            }
            if head.starts_with("get") {
                let mut changes = changed.subscribe();
                let open = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            connection: close\r\n\r\n: open\n\n";
                socket.write_all(open.as_bytes()).await.unwrap();
                while changes.recv().await.is_ok() {
                    socket
                        .write_all(b"event: message\ndata: {\"jsonrpc\":\"2.0\",")
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    socket
                        .write_all(b"\"method\":\"notifications/tools/list_changed\"}\n\n")
                        .await
                        .unwrap();
                }
                return;
            }
            let message: Value = serde_json::from_slice(&body).unwrap();
            let result = if message["method"] == "tools/list" {
                listed.fetch_add(1, Ordering::SeqCst);
                let view = views
                    .lock()
                    .unwrap()
                    .iter()
                    .find_map(|(marker, properties)| {
                        head.contains(marker.as_str()).then(|| properties.clone())
                    });
                let properties = view.unwrap_or_else(|| properties.lock().unwrap().clone());
                json!({"tools": [{"name": "t",
                    "inputSchema": {"type": "object", "properties": properties}}]})
            } else {
                json!({})
            };
            let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
            let (content_type, mut answer) = if message["method"] == "ping" {
                // An event stream that first says the tools changed.
                let notice = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
                let stream = format!("data: {notice}\n\ndata: {answer}\n\n");
                ("text/event-stream", stream.into_bytes())
            } else {
                ("application/json", answer.to_string().into_bytes())
            };
            // Compressed when the request allows it, as many servers do.
            let mut coding = "";
            if head.contains("accept-encoding: gzip") {
                answer = gzip(&answer);
                coding = "content-encoding: gzip\r\n";
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{coding}\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.write_all(&answer).await.unwrap();
        }
    }

    /// A gateway in front of `upstream`, deciding with a control plane that is down (port 9):
    /// a call its tool's list covers is denied, undecided. Returns its port.
    async fn gateway(upstream: &Upstream) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let plane =
            zt_client::ControlPlane::with_timeout("http://127.0.0.1:9", Duration::from_secs(1))
                .unwrap();
        let gate = Gate::new(plane, "agent", "srv");
        let endpoint = format!("http://127.0.0.1:{}/mcp", upstream.port);
        tokio::spawn(
            async move { serve_http(gate, listener, &endpoint, HttpOptions::default()).await },
        );
        port
    }

    /// Sends `request` (raw HTTP/1.1, `connection: close`) to the gateway; returns the status,
    /// the head (lowercase) and the body of its answer.
    async fn exchange(port: u16, request: &str) -> (u16, String, String) {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        socket.read_to_end(&mut raw).await.unwrap();
        // Lossy: a compressed body must fail the test's assertions, not this.
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    /// A request of `method` with `body`, as a client in session `s1` sends it.
    fn request(method: &str, body: &str) -> String {
        request_with(method, "", body)
    }

    /// A request of `method` with `body` and the `extra` header lines, in session `s1`.
    fn request_with(method: &str, extra: &str, body: &str) -> String {
        format!(
            "{method} /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\nmcp-session-id: s1\r\n{extra}\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn only_a_post_carries_a_message_and_other_methods_never_reach_the_upstream() {
        let upstream = Upstream::start(json!({"a": {}})).await;
        let port = gateway(&upstream).await;
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {"a": 1}}})
        .to_string();
        // A server whose framework reads `post` as `POST` (ASP.NET's `IsPost` does), or reads a
        // body under any method, would run the call undecided.
        for method in ["post", "PUT", "PATCH", "Post"] {
            let (status, head, body) = exchange(port, &request(method, &call)).await;
            assert_eq!(status, 405, "{method}: {head}{body}");
            assert!(head.contains("allow: get, post, delete, options"), "{head}");
            let error: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert_eq!(error["error"]["code"], -32600, "{body}");
        }
        // (The answer to a `HEAD` has no body.)
        let (status, _, _) = exchange(port, &request("HEAD", &call)).await;
        assert_eq!(status, 405);
        // `GET`, `DELETE` and `OPTIONS` are relayed only without a body.
        for method in ["GET", "DELETE", "OPTIONS"] {
            let (status, _, body) = exchange(port, &request(method, &call)).await;
            assert_eq!(status, 400, "{method}: {body}");
            let chunked = format!(
                "{method} /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\
                 connection: close\r\n\r\n{:x}\r\n{call}\r\n0\r\n\r\n",
                call.len()
            );
            let (status, _, body) = exchange(port, &chunked).await;
            assert_eq!(status, 400, "{method} chunked: {body}");
        }
        // An empty body is no message (nor a notification to accept).
        for blank in ["", " \r\n"] {
            let (status, _, body) = exchange(port, &request("POST", blank)).await;
            assert_eq!(status, 400, "{blank:?}: {body}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"]["code"], -32700, "{body}");
        }
        assert_eq!(upstream.requests.load(Ordering::SeqCst), 0);
        // Without a body, the session's end goes upstream as before.
        let (status, _, body) = exchange(port, &request("DELETE", "")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(upstream.requests.load(Ordering::SeqCst), 1);
    }

    /// `data` in gzip: one deflate block of fixed Huffman codes, literals only (RFC 1951,
    /// 3.2.6; RFC 1952), so that no byte of `data` shows in it as it was.
    fn gzip(data: &[u8]) -> Vec<u8> {
        struct Bits {
            out: Vec<u8>,
            byte: u8,
            used: u8,
        }
        impl Bits {
            fn bit(&mut self, bit: u32) {
                self.byte |= u8::from(bit & 1 == 1) << self.used;
                self.used += 1;
                if self.used == 8 {
                    self.out.push(self.byte);
                    (self.byte, self.used) = (0, 0);
                }
            }
            /// A Huffman code goes most significant bit first.
            fn code(&mut self, code: u32, len: u32) {
                for n in (0..len).rev() {
                    self.bit(code >> n);
                }
            }
        }
        let mut bits = Bits {
            out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
            byte: 0,
            used: 0,
        };
        // BFINAL, then BTYPE 01 (fixed codes) least significant bit first.
        for bit in [1, 1, 0] {
            bits.bit(bit);
        }
        for &byte in data {
            match u32::from(byte) {
                literal @ 0..=143 => bits.code(0x30 + literal, 8),
                literal => bits.code(0x190 + literal - 144, 9),
            }
        }
        bits.code(0, 7);
        if bits.used > 0 {
            bits.out.push(bits.byte);
        }
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(crc & 1));
            }
        }
        bits.out.extend_from_slice(&(!crc).to_le_bytes());
        bits.out
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        bits.out
    }

    /// What a request handler of [`Upstream`] shares with the test.
    #[derive(Clone)]
    struct Served {
        properties: Arc<std::sync::Mutex<Value>>,
        changed: broadcast::Sender<()>,
        listed: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        views: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    }

    /// The gateway's JSON answer to one `POST` of `message` in `session`.
    async fn post(port: u16, session: &str, message: &Value) -> Value {
        post_to(port, "/mcp", "", session, message).await
    }

    /// The gateway's JSON answer to one `POST` of `message` to `target` in `session`, with
    /// the `extra` header lines.
    async fn post_to(
        port: u16,
        target: &str,
        extra: &str,
        session: &str,
        message: &Value,
    ) -> Value {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let body = message.to_string();
        let request = format!(
            "POST {target} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\nmcp-session-id: {session}\r\n{extra}\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        socket.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (_, body) = raw.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {raw}"))
    }

    /// Reads `stream` until what it sent holds `text`.
    async fn read_until(stream: &mut TcpStream, text: &str) {
        let mut raw = Vec::new();
        let mut buf = [0u8; 1024];
        while memchr::memmem::find(&raw, text.as_bytes()).is_none() {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn a_tools_change_announced_on_the_event_stream_is_seen_by_the_next_call() {
        let upstream = Upstream::start(json!({"a": {}, "b": {}})).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Nothing answers on port 9: a call its tool's list covers is denied, undecided.
        let plane =
            zt_client::ControlPlane::with_timeout("http://127.0.0.1:9", Duration::from_secs(1))
                .unwrap();
        let gate = Gate::new(plane, "agent", "srv");
        let endpoint = format!("http://127.0.0.1:{}/mcp", upstream.port);
        tokio::spawn(
            async move { serve_http(gate, listener, &endpoint, HttpOptions::default()).await },
        );

        let mut events = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let open = format!(
            "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: text/event-stream\r\n\
             mcp-session-id: s1\r\n\r\n"
        );
        events.write_all(open.as_bytes()).await.unwrap();
        read_until(&mut events, ": open").await;

        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {"a": 1}}});
        let covered = post(port, "s1", &call).await;
        let reason = covered["result"]["content"][0]["text"].as_str();
        assert!(
            reason.is_some_and(|r| r.starts_with("control plane unavailable")),
            "{covered}"
        );
        assert_eq!(upstream.listed.load(Ordering::SeqCst), 1);

        // `a` is gone; the server says so on the session's event stream, which the client
        // reads through the gateway untouched.
        *upstream.properties.lock().unwrap() = json!({"b": {}});
        upstream.changed.send(()).unwrap();
        read_until(
            &mut events,
            r#""method":"notifications/tools/list_changed"}"#,
        )
        .await;

        // Within the second after the last reading, which the notice does not wait out.
        let refused = post(port, "s1", &call).await;
        assert_eq!(
            refused["error"],
            json!({"code": -32602, "message": "argument `a` is not declared by tool `t`"}),
            "{refused}"
        );
        assert_eq!(upstream.listed.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_list_read_under_one_query_or_header_does_not_cover_a_call_under_another() {
        // Under `?v=2`, or with `x-toolset: safe`, the server's `t` takes `b` only.
        let upstream = Upstream::start(json!({"a": {}, "b": {}})).await;
        upstream.views.lock().unwrap().extend([
            ("?v=2 ".to_string(), json!({"b": {}})),
            ("x-toolset: safe".to_string(), json!({"b": {}})),
        ]);
        let port = gateway(&upstream).await;
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {"a": 1}}});
        let undeclared =
            json!({"code": -32602, "message": "argument `a` is not declared by tool `t`"});
        let covered = post_to(port, "/mcp?v=1", "", "s1", &call).await;
        let reason = covered["result"]["content"][0]["text"].as_str();
        assert!(
            reason.is_some_and(|r| r.starts_with("control plane unavailable")),
            "{covered}"
        );
        let refused = post_to(port, "/mcp?v=2", "", "s1", &call).await;
        assert_eq!(refused["error"], undeclared, "{refused}");
        // The same by a header the server reads.
        let covered = post_to(port, "/mcp?v=1", "x-toolset: all\r\n", "s1", &call).await;
        assert!(covered["result"].is_object(), "{covered}");
        let refused = post_to(port, "/mcp?v=1", "x-toolset: safe\r\n", "s1", &call).await;
        assert_eq!(refused["error"], undeclared, "{refused}");
        assert_eq!(upstream.listed.load(Ordering::SeqCst), 4);
        // A list is still kept for calls made as it was read.
        let again = post_to(port, "/mcp?v=1", "", "s1", &call).await;
        assert!(again["result"].is_object(), "{again}");
        assert_eq!(upstream.listed.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn the_upstream_is_asked_for_answers_the_gateway_can_read() {
        // The upstream gzips for a client that accepts it; the gateway decodes nothing.
        let upstream = Upstream::start(json!({"a": {}, "b": {}})).await;
        let port = gateway(&upstream).await;
        let gzip = "accept-encoding: gzip, deflate\r\n";
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {"a": 1}}})
        .to_string();
        // The gateway's own `tools/list` is readable.
        let (status, _, body) = exchange(port, &request_with("POST", gzip, &call)).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("control plane unavailable"),
            "the list was not read: {body}"
        );
        // `a` is gone, and the answer to a relayed `ping` says so before it answers.
        *upstream.properties.lock().unwrap() = json!({"b": {}});
        let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
        let (status, head, body) = exchange(port, &request_with("POST", gzip, ping)).await;
        assert_eq!(status, 200, "{head}{body}");
        assert!(!head.contains("content-encoding"), "{head}");
        assert!(body.contains("notifications/tools/list_changed"), "{body}");
        let (status, _, body) = exchange(port, &request_with("POST", gzip, &call)).await;
        assert_eq!(status, 200, "{body}");
        let refused: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            refused["error"],
            json!({"code": -32602, "message": "argument `a` is not declared by tool `t`"}),
            "{refused}"
        );
        assert_eq!(upstream.listed.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_test_upstreams_gzip_is_gzip() {
        // Decompressed by Python's `gzip.decompress` (header, codes, CRC and length checked).
        assert_eq!(
            gzip(b"data: x\n\n"),
            [
                0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x4b, 0x49, 0x2c, 0x49, 0xb4, 0x52, 0xa8,
                0xe0, 0xe2, 0x02, 0x00, 0x81, 0x7b, 0x33, 0x2b, 9, 0, 0, 0
            ]
        );
    }

    #[test]
    fn the_upstream_is_an_http_url_with_a_host() {
        assert_eq!(
            parse_upstream("http://127.0.0.1:3001/mcp").unwrap(),
            ("http://127.0.0.1:3001".to_string(), "/mcp".to_string())
        );
        assert_eq!(
            parse_upstream("http://localhost:9").unwrap().1,
            "/",
            "no path is the root"
        );
        for bad in ["https://x/mcp", "/mcp", "ftp://x", "not a url"] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }
}
