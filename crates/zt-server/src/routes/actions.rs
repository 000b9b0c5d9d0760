//! `POST /actions`: the contract's decision route.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use zt_contract::DecisionRequest;

use crate::auth::AgentCaller;
use crate::decision::{check_request, decide};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::SharedState;

/// The agent-facing router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new().route("/actions", post(actions))
}

async fn actions(
    State(state): State<SharedState>,
    caller: AgentCaller,
    JsonBody(request): JsonBody<DecisionRequest>,
) -> Result<Response, ApiError> {
    let request = check_request(&caller, request)?;
    let (status, response) = decide(&state, caller, request).await?;
    Ok(json_answer(status, &response))
}

/// A decision's answer is about 750 bytes: serialized into one buffer of that order, where
/// `axum::Json` starts at 128 bytes, grows it several times and writes through `BufMut`
/// (about a sixth of a worker's instructions per decision went there; docs/PERFORMANCE.md).
const ANSWER_CAPACITY: usize = 1024;

/// `(status, Json(value)).into_response()`, byte for byte the same answer
/// (`content-type: application/json`), but cheaper. Should serialization fail (a body of
/// string keys cannot), the answer is axum's own, built by axum.
fn json_answer(status: StatusCode, value: &impl Serialize) -> Response {
    let mut body = Vec::with_capacity(ANSWER_CAPACITY);
    if serde_json::to_writer(&mut body, value).is_err() {
        return (status, Json(value)).into_response();
    }
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    async fn parts(response: Response) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    #[tokio::test]
    async fn the_answer_is_byte_for_byte_what_axum_json_sends() {
        let long = "x".repeat(5000);
        for (status, value) in [
            (
                StatusCode::OK,
                json!({"ok": true, "reason": "allowed \"quoted\" \u{e9}\n"}),
            ),
            (
                StatusCode::FORBIDDEN,
                json!({"ok": false, "long": long, "n": [1, 2.5, null]}),
            ),
            (StatusCode::CONFLICT, json!([])),
        ] {
            let ours = parts(json_answer(status, &value)).await;
            let axum = parts((status, Json(&value)).into_response()).await;
            assert_eq!(ours, axum);
            assert_eq!(ours.1[header::CONTENT_TYPE], "application/json");
        }
    }

    #[tokio::test]
    async fn a_value_that_cannot_be_serialized_is_answered_as_axum_answers_it() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        let ours = parts(json_answer(StatusCode::OK, &map)).await;
        let axum = parts((StatusCode::OK, Json(&map)).into_response()).await;
        assert_eq!(ours, axum);
        assert_eq!(ours.1[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    }
}
