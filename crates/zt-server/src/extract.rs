//! The JSON body extractor: bounded size, bounded time, strict types, errors as JSON.

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, Request};
use serde::de::DeserializeOwned;

use crate::config::MAX_BODY_BYTES;
use crate::error::ApiError;
use zt_contract::strict_json;

// Every request carries its body deadline, set by the listener from `--body-timeout`.
use zt_listener::BodyTimeout;

/// A JSON request body of at most [`MAX_BODY_BYTES`], received within its [`BodyTimeout`]
/// (else 408), parsed strictly (see [`zt_contract::strict_json`]) and without coercion: a string
/// field given an array is a 400, never stringified; a body that is not an object, repeats a
/// key anywhere, or nests too deep is a 400 too.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, ApiError> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(ApiError::BodyTooLarge);
        }
        let timeout = BodyTimeout::of(req.extensions());
        let bytes = tokio::time::timeout(
            timeout,
            axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES),
        )
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout.as_secs()))?
        .map_err(|_| ApiError::BodyTooLarge)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a request body strictly (an object, no duplicate key at any depth, bounded nesting),
/// telling syntax errors (400 malformed) from shape errors (400 invalid). Every body route goes
/// through here; the fuzz target `request_body` calls it too.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let document = strict_json::parse_document(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidRequest(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })?;
    strict_json::from_document(&document).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}
