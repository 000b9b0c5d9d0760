//! Where calls may go: the paths of the agent's JSON-RPC interfaces, as its card lists them.
//! A call to any other path is refused, so a body decided as one JSON-RPC method can never be
//! delivered to another endpoint of the agent (say its HTTP+JSON binding) that reads it as
//! something else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Uri;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::card::JSONRPC;
use crate::upstream::{CardError, Upstream};

/// How long the interface paths read from the card are trusted before the card is read again.
pub const INTERFACE_PATHS_TTL: Duration = Duration::from_secs(30);

/// How long a failure to read the card is remembered: the calls that queued behind the read
/// that failed (it may have taken the whole upstream timeout) fail at once instead of each
/// reading the card again in turn.
pub const CARD_FAILURE_TTL: Duration = Duration::from_secs(5);

/// The last reading of the card: when, and its interface paths or why there are none.
type Reading = (Instant, Result<Arc<[String]>, CardError>);

/// The agent's JSON-RPC paths, read from its card once for every call within the TTL: the
/// lock makes one read at a time, and the calls waiting behind it take its outcome.
#[derive(Default)]
pub(crate) struct InterfacePaths {
    cached: Mutex<Option<Reading>>,
}

impl InterfacePaths {
    /// The agent's path for a call the client sent to `path`: the same path when the card has a
    /// JSON-RPC interface there (with that interface's own query, if any), else `None`.
    pub(crate) async fn resolve(
        &self,
        upstream: &Upstream,
        path: &str,
    ) -> Result<Option<String>, CardError> {
        let mut cached = self.cached.lock().await;
        let fresh = cached.as_ref().filter(|(at, outcome)| {
            let ttl = if outcome.is_ok() {
                INTERFACE_PATHS_TTL
            } else {
                CARD_FAILURE_TTL
            };
            at.elapsed() < ttl
        });
        let paths = match fresh {
            Some((_, outcome)) => outcome.clone()?,
            None => {
                let outcome = upstream
                    .card()
                    .await
                    .map(|card| Arc::from(jsonrpc_paths(&card)));
                *cached = Some((Instant::now(), outcome.clone()));
                outcome?
            }
        };
        Ok(paths
            .iter()
            .find(|p| p.split('?').next() == Some(path))
            .cloned())
    }
}

/// The path (and query) of every JSON-RPC interface of `card`: 1.0 `supportedInterfaces`, 0.3
/// `additionalInterfaces`, and the 0.3 top-level `url` when its transport is JSON-RPC.
pub(crate) fn jsonrpc_paths(card: &Value) -> Vec<String> {
    let mut urls: Vec<&str> = Vec::new();
    for (list, binding_key) in [
        ("supportedInterfaces", "protocolBinding"),
        ("additionalInterfaces", "transport"),
    ] {
        for interface in card
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if interface.get(binding_key).and_then(Value::as_str) == Some(JSONRPC) {
                urls.extend(interface.get("url").and_then(Value::as_str));
            }
        }
    }
    let preferred = card.get("preferredTransport").and_then(Value::as_str);
    if preferred.is_none_or(|t| t == JSONRPC) {
        urls.extend(card.get("url").and_then(Value::as_str));
    }
    let mut paths: Vec<String> = urls
        .into_iter()
        .filter_map(|url| url.parse::<Uri>().ok())
        .filter(|uri| uri.authority().is_some())
        .map(|uri| uri.path_and_query().map_or("/", |p| p.as_str()).to_string())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An agent whose card endpoint answers `status` (a card with one JSON-RPC path at `/`
    /// when 200) after `delay`, counting the requests.
    async fn agent(status: u16, delay: Duration) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let card = json!({"url": format!("{url}/"), "preferredTransport": "JSONRPC"}).to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let card = card.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    tokio::time::sleep(delay).await;
                    let body = if status == 200 { card } else { String::new() };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, asked)
    }

    #[tokio::test]
    async fn calls_queued_behind_a_failed_card_read_share_its_failure() {
        let (url, asked) = agent(503, Duration::from_millis(300)).await;
        let upstream = Upstream::new(&url).unwrap();
        let paths = InterfacePaths::default();
        let calls = (0..8).map(|_| paths.resolve(&upstream, "/"));
        let outcomes = futures_util::future::join_all(calls).await;
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Err(CardError::Status(503)))));
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "one read for all eight calls"
        );
    }

    #[tokio::test]
    async fn a_card_read_serves_every_call_within_the_ttl() {
        let (url, asked) = agent(200, Duration::ZERO).await;
        let upstream = Upstream::new(&url).unwrap();
        let paths = InterfacePaths::default();
        for _ in 0..3 {
            assert_eq!(
                paths.resolve(&upstream, "/").await.unwrap().as_deref(),
                Some("/")
            );
            assert_eq!(paths.resolve(&upstream, "/other").await.unwrap(), None);
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn only_json_rpc_interfaces_give_paths() {
        let card = json!({
            "url": "http://a:1/legacy",
            "preferredTransport": "JSONRPC",
            "supportedInterfaces": [
                {"url": "http://a:1/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": "http://a:1/", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
                {"url": "http://a:1/v1", "protocolBinding": "HTTP+JSON"},
                {"url": "/relative", "protocolBinding": "JSONRPC"},
            ],
            "additionalInterfaces": [
                {"url": "http://a:1/rpc?t=1", "transport": "JSONRPC"},
                {"url": "http://a:1/grpc", "transport": "GRPC"},
            ],
        });
        assert_eq!(jsonrpc_paths(&card), ["/", "/legacy", "/rpc?t=1"]);
        let rest_first = json!({"url": "http://a:1/v1", "preferredTransport": "HTTP+JSON"});
        assert!(jsonrpc_paths(&rest_first).is_empty());
    }
}
