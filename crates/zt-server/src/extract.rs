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
        .map_err(unreadable)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Why a body could not be read: past the size limit (413), or not received whole (400: a
/// chunk that is not valid HTTP chunked encoding, a connection cut before the body's end),
/// which is the client's fault but not a size.
fn unreadable(error: axum::Error) -> ApiError {
    if error
        .into_inner()
        .downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        ApiError::BodyTooLarge
    } else {
        ApiError::BodyUnreadable
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

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "test code: a failed unwrap is a failed test"
    )]
    /// A body that is not valid HTTP chunked encoding is the client's malformed request (400, the
    /// JSON error), not a body too large (413, as before).
    #[tokio::test]
    async fn a_body_with_a_bad_chunk_line_is_a_400_not_a_413() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let config =
            crate::config::ServerConfig::dangerous_unauthenticated(dir.path().to_path_buf());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        // (what follows the headers, the status, text the error must contain)
        let cases = [
            (
                "zz\r\n{}\r\n0\r\n\r\n",
                400,
                "not valid http chunked encoding",
            ),
            (
                "10\r\n{}",
                400,
                "not valid http chunked encoding, or it ended early",
            ),
            ("2\r\n{}\r\n0\r\n\r\n", 400, "actor is required"),
        ];
        for (chunks, status, text) in cases {
            let mut stream = loop {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => break stream,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            };
            let request = format!(
                "POST /actions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            // The body cut short: the client stops sending.
            stream.shutdown().await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status} ")),
                "{chunks:?}: {answer}"
            );
            assert!(
                head.to_ascii_lowercase().contains("application/json"),
                "{answer}"
            );
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["ok"], false);
            assert!(
                body["error"].as_str().unwrap().contains(text),
                "{chunks:?}: {body}"
            );
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
