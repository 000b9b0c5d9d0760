//! `POST /actions`: the contract's decision route.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use zt_contract::DecisionRequest;

use crate::auth::AgentCaller;
use crate::decision::decide;
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
    let (status, response) = decide(&state, caller, request).await?;
    Ok((status, Json(response)).into_response())
}
