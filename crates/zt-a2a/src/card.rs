//! The upstream's agent card as the proxy serves it: every interface URL points at the proxy.
//! Only JSON-RPC interfaces are kept (the proxy decides JSON-RPC calls only), and card
//! signatures are dropped (they no longer match the rewritten card).

use axum::http::Uri;
use serde_json::Value;

/// The JSON-RPC protocol binding name, in 1.0 (`protocolBinding`) and 0.3 (`transport`).
pub(crate) const JSONRPC: &str = "JSONRPC";

/// Rewrites `card` in place so that every interface URL has `public`'s scheme and authority
/// (keeping its own path).
pub(crate) fn rewrite(card: &mut Value, public: &Uri) {
    let Some(card) = card.as_object_mut() else {
        return;
    };
    card.remove("signatures");
    if let Some(url) = card.get_mut("url") {
        *url = Value::String(rewrite_url(url.as_str().unwrap_or_default(), public));
        if card.contains_key("preferredTransport") {
            card.insert("preferredTransport".into(), Value::String(JSONRPC.into()));
        }
    }
    for (list, binding_key) in [
        ("supportedInterfaces", "protocolBinding"),
        ("additionalInterfaces", "transport"),
    ] {
        if let Some(Value::Array(interfaces)) = card.get_mut(list) {
            interfaces.retain(|i| i.get(binding_key).and_then(Value::as_str) == Some(JSONRPC));
            for interface in interfaces.iter_mut() {
                if let Some(url) = interface.get_mut("url") {
                    *url = Value::String(rewrite_url(url.as_str().unwrap_or_default(), public));
                }
            }
        }
    }
}

/// `url` with `public`'s scheme and authority; `public` itself when `url` is not absolute.
fn rewrite_url(url: &str, public: &Uri) -> String {
    let path = url
        .parse::<Uri>()
        .ok()
        .filter(|u| u.authority().is_some())
        .and_then(|u| u.path_and_query().map(|p| p.as_str().to_string()))
        .unwrap_or_else(|| "/".to_string());
    let scheme = public.scheme_str().unwrap_or("http");
    let authority = public.authority().map_or("", |a| a.as_str());
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_interface_points_at_the_proxy_and_others_are_dropped() {
        let mut card = json!({
            "name": "a",
            "url": "http://10.0.0.5:9999/rpc",
            "preferredTransport": "GRPC",
            "supportedInterfaces": [
                {"url": "http://10.0.0.5:9999/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": "http://10.0.0.5:9999/v1", "protocolBinding": "HTTP+JSON"},
                {"url": "10.0.0.5:50051", "protocolBinding": "GRPC"},
            ],
            "additionalInterfaces": [
                {"url": "https://agent.example/a2a?x=1", "transport": "JSONRPC"},
                {"url": "http://10.0.0.5:9999/v1", "transport": "HTTP+JSON"},
            ],
            "signatures": [{"protected": "x", "signature": "y"}],
        });
        let public: Uri = "http://127.0.0.1:8080".parse().unwrap();
        rewrite(&mut card, &public);
        assert_eq!(
            card,
            json!({
                "name": "a",
                "url": "http://127.0.0.1:8080/rpc",
                "preferredTransport": "JSONRPC",
                "supportedInterfaces": [
                    {"url": "http://127.0.0.1:8080/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                ],
                "additionalInterfaces": [
                    {"url": "http://127.0.0.1:8080/a2a?x=1", "transport": "JSONRPC"},
                ],
            })
        );
    }

    #[test]
    fn a_relative_or_missing_url_becomes_the_proxy_root() {
        let mut card =
            json!({"url": 7, "supportedInterfaces": [{"protocolBinding": "JSONRPC", "url": "/x"}]});
        rewrite(&mut card, &"https://proxy.example".parse().unwrap());
        assert_eq!(card["url"], "https://proxy.example/");
        assert_eq!(
            card["supportedInterfaces"][0]["url"],
            "https://proxy.example/"
        );
    }
}
