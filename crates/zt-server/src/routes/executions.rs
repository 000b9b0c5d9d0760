//! `POST /executions`: an execution broker's receipt for the command an allow decision let it
//! run (see [`crate::receipts`]). Agent credentials, as `/actions`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use zt_contract::{ReceiptRequest, ReceiptResponse};

use crate::auth::AgentCaller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::SharedState;

/// The receipt router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new().route("/executions", post(executions))
}

async fn executions(
    State(state): State<SharedState>,
    caller: AgentCaller,
    JsonBody(request): JsonBody<ReceiptRequest>,
) -> Result<Response, ApiError> {
    let record = crate::receipts::append_receipt(&state, caller, request).await?;
    let response = ReceiptResponse {
        ok: true,
        record: record.body,
        current_hash: record.current_hash.to_hex(),
        kms_signature: record.signature,
    };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}
