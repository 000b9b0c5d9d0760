//! Operations routes: `/health` and `/metrics`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::config::AuthMode;
use crate::state::SharedState;

/// The operations router.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

pub(crate) async fn health(State(state): State<SharedState>) -> Response {
    let head = state.ledger.head();
    let audit_ok = !state.ledger.is_failed();
    let warning = (state.auth == AuthMode::DangerousNone).then_some(
        "authentication is off (--auth none): any caller may claim any registered actor",
    );
    let body = json!({
        "ok": audit_ok,
        "service": "zt-infra",
        "version": env!("CARGO_PKG_VERSION"),
        "auth": state.auth.as_str(),
        "audit": {
            "ok": audit_ok,
            "records": head.map_or(0, |h| h.seq + 1),
        },
        "policy_version": state.policy.current().version(),
        "warning": warning,
    });
    let status = if audit_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<SharedState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
