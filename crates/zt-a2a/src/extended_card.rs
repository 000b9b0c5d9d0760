//! The extended agent card (`GetExtendedAgentCard`, 0.3 `agent/getAuthenticatedExtendedCard`)
//! is a card too: its interface URLs are rewritten to the proxy as the public card's are, so a
//! client that switches to the extended card keeps going through the proxy.

use axum::body::Body;
use axum::http::{header, HeaderValue, Uri};
use axum::response::Response;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use zt_contract::strict_json;

use crate::card;
use crate::error::ProxyError;
use crate::limits::{MAX_CARD_BYTES, UPSTREAM_TIMEOUT};

/// The action segment of both extended-card methods.
pub(crate) const EXTENDED_CARD_ACTION: &str = "get_extended_agent_card";

/// Rewrites the card in a JSON-RPC answer (`result`) in place; false when `answer` carries
/// no card (an error answer), which then passes unchanged.
pub(crate) fn rewrite_answer(answer: &mut Value, public: &Uri) -> bool {
    match answer.get_mut("result") {
        Some(result @ Value::Object(_)) => {
            card::rewrite(result, public);
            true
        }
        _ => false,
    }
}

/// The agent's answer to an extended-card call with the card rewritten. An answer that cannot
/// be read as JSON within the card size limit is not relayed (it could carry the agent's own
/// URLs past the proxy): the call fails as if the agent were unavailable.
pub(crate) async fn rewrite_response(
    response: Response,
    public: &Uri,
) -> Result<Response, ProxyError> {
    let (mut parts, body) = response.into_parts();
    let bytes = tokio::time::timeout(
        UPSTREAM_TIMEOUT,
        Limited::new(body, MAX_CARD_BYTES).collect(),
    )
    .await
    .map_err(|_| ProxyError::UpstreamTimeout)?
    .map_err(|_| ProxyError::UpstreamUnavailable)?
    .to_bytes();
    let mut answer = match strict_json::parse_value(&bytes) {
        Ok(answer @ Value::Object(_)) => answer,
        _ => return Err(ProxyError::UpstreamUnavailable),
    };
    if !rewrite_answer(&mut answer, public) {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    let rewritten = serde_json::to_vec(&answer).map_err(|_| ProxyError::UpstreamUnavailable)?;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(Response::from_parts(parts, Body::from(rewritten)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_extended_card_in_a_result_points_at_the_proxy() {
        let mut answer = json!({"jsonrpc": "2.0", "id": 3, "result": {
            "name": "a",
            "url": "http://10.0.0.5:9999/rpc",
            "supportedInterfaces": [
                {"url": "http://10.0.0.5:9999/rpc", "protocolBinding": "JSONRPC"},
                {"url": "http://10.0.0.5:9999/v1", "protocolBinding": "HTTP+JSON"},
            ],
            "signatures": [{"protected": "x", "signature": "y"}],
        }});
        let public: Uri = "https://proxy.example:8443".parse().unwrap();
        assert!(rewrite_answer(&mut answer, &public));
        assert_eq!(
            answer,
            json!({"jsonrpc": "2.0", "id": 3, "result": {
                "name": "a",
                "url": "https://proxy.example:8443/rpc",
                "supportedInterfaces": [
                    {"url": "https://proxy.example:8443/rpc", "protocolBinding": "JSONRPC"},
                ],
            }})
        );
    }

    #[test]
    fn an_error_answer_passes_unchanged() {
        let error = json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32007, "message": "no"}});
        let mut answer = error.clone();
        assert!(!rewrite_answer(&mut answer, &"http://p:1".parse().unwrap()));
        assert_eq!(answer, error);
    }
}
