//! The agent behind the proxy: calls are forwarded to its origin with their own path, and its
//! card is read from `<upstream>/.well-known/agent-card.json`.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, Uri};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_http::timeout::TimeoutBody;

use crate::error::ProxyError;
use crate::limits::{MAX_CARD_BYTES, RELAY_IDLE_TIMEOUT, UPSTREAM_TIMEOUT};
use crate::ConfigError;
use zt_contract::strict_json;

/// Where the agent card lives, relative to an agent's base URL.
pub(crate) const CARD_PATH: &str = "/.well-known/agent-card.json";

/// Headers that belong to one connection, never forwarded (RFC 9110 7.6.1), plus `host` and
/// `content-length`, which the forwarding connection sets itself.
const NOT_FORWARDED: [&str; 10] = [
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
    "keep-alive",
];

/// Why the card could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CardError {
    #[error("the agent is unavailable")]
    Unavailable,
    #[error("the agent did not answer within {:?}", UPSTREAM_TIMEOUT)]
    Timeout,
    #[error("the agent answered {0} for its card")]
    Status(u16),
    #[error(
        "the agent's card is not a JSON object of at most {} bytes",
        MAX_CARD_BYTES
    )]
    Malformed,
}

pub(crate) struct Upstream {
    base: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    /// [`RELAY_IDLE_TIMEOUT`] (shorter in tests).
    relay_idle: std::time::Duration,
}

impl Upstream {
    /// The upstream at `url`, an `http://host:port[/path]` base URL.
    pub(crate) fn new(url: &str) -> Result<Self, ConfigError> {
        let base: Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|_| ConfigError::Upstream(url.into()))?;
        if base.scheme_str() != Some("http") || base.authority().is_none() {
            return Err(ConfigError::Upstream(url.into()));
        }
        let mut connector = HttpConnector::new();
        // Small JSON-RPC exchanges: do not let Nagle's algorithm hold them back.
        connector.set_nodelay(true);
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
            relay_idle: RELAY_IDLE_TIMEOUT,
        })
    }

    fn origin_uri(&self, path_and_query: &str) -> Result<Uri, ProxyError> {
        let scheme = self.base.scheme_str().unwrap_or("http");
        let authority = self.base.authority().map_or("", |a| a.as_str());
        format!("{scheme}://{authority}{path_and_query}")
            .parse()
            .map_err(|_| ProxyError::InvalidRequest("unusable request path".into()))
    }

    /// Forwards a call (its original bytes and end-to-end headers) and relays the answer as it
    /// comes, so an event stream is relayed event by event.
    pub(crate) async fn forward(
        &self,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ProxyError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.origin_uri(path_and_query)?)
            .body(Full::new(body))
            .map_err(|_| ProxyError::InvalidRequest("unusable request".into()))?;
        let forwarded = request.headers_mut();
        for (name, value) in headers {
            if !NOT_FORWARDED.contains(&name.as_str()) {
                forwarded.append(name.clone(), value.clone());
            }
        }
        let response = tokio::time::timeout(UPSTREAM_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| ProxyError::UpstreamTimeout)?
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot reach the agent");
                ProxyError::UpstreamUnavailable
            })?;
        let idle = self.relay_idle;
        let mut response = response.map(|body| Body::new(TimeoutBody::new(idle, body)));
        for name in NOT_FORWARDED {
            if name != "content-length" {
                response.headers_mut().remove(name);
            }
        }
        Ok(response)
    }

    /// The agent's card, as served by the agent.
    pub(crate) async fn card(&self) -> Result<Value, CardError> {
        let path = format!("{}{CARD_PATH}", self.base.path().trim_end_matches('/'));
        let uri = self.origin_uri(&path).map_err(|_| CardError::Unavailable)?;
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| CardError::Unavailable)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                tracing::warn!(error = %e, "cannot reach the agent for its card");
                CardError::Unavailable
            })?;
            if response.status() != 200 {
                return Err(CardError::Status(response.status().as_u16()));
            }
            let bytes = Limited::new(response.into_body(), MAX_CARD_BYTES)
                .collect()
                .await
                .map_err(|_| CardError::Malformed)?
                .to_bytes();
            match strict_json::parse_value(&bytes) {
                Ok(card @ Value::Object(_)) => Ok(card),
                _ => Err(CardError::Malformed),
            }
        };
        tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
            .await
            .map_err(|_| CardError::Timeout)?
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn an_answer_that_stalls_midway_is_cut_off() {
        // An agent that starts its answer, sends one chunk, and then nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let start = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata:\n\r\n";
            socket.write_all(start.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let mut upstream = Upstream::new(&url).unwrap();
        upstream.relay_idle = Duration::from_millis(300);
        let response = upstream
            .forward("/", &HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"data:\n"));
        let started = Instant::now();
        assert!(
            body.frame().await.unwrap().is_err(),
            "the stalled relay ends in an error"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
