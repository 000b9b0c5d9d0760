//! Where calls may go: the paths of the agent's JSON-RPC interfaces, as its card lists them.
//! A call to any other path is refused, so a body decided as one JSON-RPC method can never be
//! delivered to another endpoint of the agent (say its HTTP+JSON binding) that reads it as
//! something else.

use std::time::{Duration, Instant};

use axum::http::Uri;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::card::JSONRPC;
use crate::upstream::{CardError, Upstream};

/// How long the interface paths read from the card are trusted before the card is read again.
pub const INTERFACE_PATHS_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct InterfacePaths {
    cached: Mutex<Option<(Instant, Vec<String>)>>,
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
        let fresh = cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < INTERFACE_PATHS_TTL)
            .map(|(_, paths)| paths.clone());
        let paths = match fresh {
            Some(paths) => paths,
            None => {
                let paths = jsonrpc_paths(&upstream.card().await?);
                *cached = Some((Instant::now(), paths.clone()));
                paths
            }
        };
        Ok(paths
            .into_iter()
            .find(|p| p.split('?').next() == Some(path)))
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
    use serde_json::json;

    use super::jsonrpc_paths;

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
