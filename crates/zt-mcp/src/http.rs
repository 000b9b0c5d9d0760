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
#[path = "http_tests.rs"]
mod tests;
