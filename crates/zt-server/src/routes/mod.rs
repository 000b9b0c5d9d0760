//! The HTTP surface: one router per area (decisions, agents, policies, AuthZEN, audit records,
//! proofs, the record stream, operations), merged into one application. Authentication is not
//! a layer here: each handler takes the caller it needs as an extractor (`AgentCaller`,
//! `AdminCaller`, or none for the public reads). The layers apply to every route: paths that do
//! not decode refused, refusals counted, a panic answered as an internal error. A connection
//! past the connection cap gets [`overflow_router`] instead.

pub(crate) mod actions;
pub(crate) mod admin;
pub(crate) mod admin_groups;
pub(crate) mod audit;
pub(crate) mod authzen;
pub(crate) mod executions;
pub(crate) mod ops;
pub(crate) mod policies;
pub(crate) mod proofs;
pub(crate) mod stream;

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;

use tower_http::catch_panic::CatchPanicLayer;
use zt_listener::PageGuard;

use crate::error::ApiError;
use crate::rejections::RejectionCause;
use crate::state::SharedState;

/// The whole application, refusing requests `pages` says may come from web pages of other
/// hosts.
pub(crate) fn router(state: SharedState, pages: PageGuard) -> Router {
    Router::new()
        .merge(actions::router())
        .merge(executions::router())
        .merge(admin::router())
        .merge(policies::router())
        .merge(authzen::router())
        .merge(audit::router())
        .merge(proofs::router())
        .merge(stream::router())
        .merge(ops::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(refuse_undecodable_paths))
        .layer(middleware::from_fn_with_state(
            Arc::new(pages),
            refuse_foreign_pages,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_rejections,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal.into_response()
        }))
        .with_state(state)
}

/// Refuses a request that may come from a web page DNS rebinding made same-origin with the
/// control plane: under `--auth none` such a page could register agents and allow actions.
async fn refuse_foreign_pages(
    State(pages): State<Arc<PageGuard>>,
    request: Request,
    next: Next,
) -> Response {
    match pages.refusal(request.headers()) {
        Some(why) => ApiError::ForeignPage(why).into_response(),
        None => next.run(request).await,
    }
}

/// What a connection past the connection cap may ask: `GET /health` and `GET /metrics`, and
/// nothing else (503 `too many connections`); see [`zt_listener`].
pub(crate) fn overflow_router(state: SharedState) -> Router {
    Router::new()
        .route("/health", axum::routing::get(ops::health))
        // So that monitoring sees the cap while it is reached.
        .route("/metrics", axum::routing::get(ops::metrics))
        .fallback(too_many_connections)
        .method_not_allowed_fallback(too_many_connections)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_rejections,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal.into_response()
        }))
        .with_state(state)
}

async fn too_many_connections() -> ApiError {
    ApiError::TooManyConnections
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().chars().take(200).collect())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Refuses a path that does not percent-decode to UTF-8 (`/agents/%ff`) before routing, with
/// the project's JSON error: axum's path extractor would answer it in plain text.
async fn refuse_undecodable_paths(request: Request, next: Next) -> Response {
    let decodable = percent_encoding::percent_decode_str(request.uri().path())
        .decode_utf8()
        .is_ok();
    if !decodable {
        return ApiError::InvalidRequest("the path is not valid utf-8 once percent-decoded".into())
            .into_response();
    }
    next.run(request).await
}

/// Counts every refused request, whatever route produced it (see [`crate::rejections`]).
async fn count_rejections(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(cause) = response.extensions().get::<RejectionCause>() {
        state.metrics.rejected(*cause);
        state.rejections.count(*cause);
    }
    response
}
