//! Why the proxy answers a call itself without a decision, and the one mapping of each cause to
//! its HTTP status and JSON-RPC error.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::limits::{MAX_REQUEST_BYTES, UPSTREAM_TIMEOUT};

/// A call refused or failed before or outside a decision.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("request body larger than {} bytes", MAX_REQUEST_BYTES)]
    TooLarge,
    #[error("cannot read the request body")]
    BodyUnreadable,
    #[error("request body not received within {} s", .0.as_secs())]
    BodyTimeout(std::time::Duration),
    #[error("too many connections; retry later")]
    TooManyConnections,
    #[error("too many calls in flight; retry later")]
    TooManyCalls,
    #[error("method `{0}` not allowed: JSON-RPC calls are POST requests")]
    MethodNotAllowed(axum::http::Method),
    #[error("no JSON-RPC interface of the agent at `{0}`")]
    NoInterface(String),
    #[error("the agent's card is unavailable")]
    CardUnavailable,
    #[error("{}", zt_listener::NOT_UTF8_JSON)]
    UnsupportedContentType,
    #[error("{0}")]
    ForeignPage(zt_listener::ForeignPage),
    #[error("invalid JSON: {0}")]
    Parse(String),
    #[error("batch requests are not supported")]
    Batch,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("unknown method `{0}`")]
    UnknownMethod(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    #[error("the agent is unavailable")]
    UpstreamUnavailable,
    #[error("the agent did not answer within {:?}", UPSTREAM_TIMEOUT)]
    UpstreamTimeout,
}

impl ProxyError {
    /// The HTTP status and JSON-RPC error code of this cause.
    pub(crate) fn status_and_code(&self) -> (StatusCode, i64) {
        match self {
            ProxyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, -32600),
            ProxyError::BodyUnreadable => (StatusCode::BAD_REQUEST, -32600),
            ProxyError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, -32600),
            ProxyError::TooManyConnections => (StatusCode::SERVICE_UNAVAILABLE, -32603),
            ProxyError::TooManyCalls => (StatusCode::SERVICE_UNAVAILABLE, -32603),
            ProxyError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, -32600),
            ProxyError::NoInterface(_) => (StatusCode::NOT_FOUND, -32600),
            ProxyError::CardUnavailable => (StatusCode::BAD_GATEWAY, -32603),
            ProxyError::UnsupportedContentType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, -32600),
            ProxyError::ForeignPage(_) => (StatusCode::FORBIDDEN, -32600),
            ProxyError::Parse(_) => (StatusCode::BAD_REQUEST, -32700),
            ProxyError::Batch => (StatusCode::BAD_REQUEST, -32600),
            ProxyError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, -32600),
            ProxyError::UnknownMethod(_) => (StatusCode::BAD_REQUEST, -32601),
            ProxyError::InvalidParams(_) => (StatusCode::BAD_REQUEST, -32602),
            ProxyError::UpstreamUnavailable => (StatusCode::BAD_GATEWAY, -32603),
            ProxyError::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, -32603),
        }
    }

    /// This error as the answer to the call with `id`.
    pub(crate) fn with_id(self, id: Value) -> RpcRefusal {
        RpcRefusal { id, error: self }
    }
}

/// A [`ProxyError`] answering a call with a known id.
#[derive(Debug)]
pub(crate) struct RpcRefusal {
    pub(crate) id: Value,
    pub(crate) error: ProxyError,
}

impl From<ProxyError> for RpcRefusal {
    fn from(error: ProxyError) -> Self {
        error.with_id(Value::Null)
    }
}

impl fmt::Display for RpcRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl IntoResponse for RpcRefusal {
    fn into_response(self) -> Response {
        let (status, code) = self.error.status_and_code();
        let body = json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": code, "message": self.error.to_string()},
        });
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self.error, ProxyError::MethodNotAllowed(_)) {
            // RFC 9110: a 405 says which methods the resource takes.
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// A refusal of a plain HTTP request (not JSON-RPC): `{"ok": false, "error": "..."}`.
pub(crate) fn plain_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({"ok": false, "error": error}))).into_response()
}
