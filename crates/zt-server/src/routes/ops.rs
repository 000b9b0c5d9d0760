//! Operations routes: `/` (where to go from here), `/health` and `/metrics`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::config::AuthMode;
use crate::reloadable::ReloadedSetting;
use crate::state::SharedState;

/// The operations router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

/// `GET /`: what this server is and where to look, instead of a bare 404.
async fn index(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(json!({
        "ok": true,
        "service": "zt-infra",
        "version": env!("CARGO_PKG_VERSION"),
        "auth": state.auth.as_str(),
        "health": "/health",
        "routes": {
            "decide": "POST /actions",
            "health": "GET /health",
            "metrics": "GET /metrics",
            "audit_head": "GET /audit/head",
            "audit_keys": "GET /audit/keys",
            "agents": "GET|POST /agents (admin)",
            "policies": "GET /policies, POST /policies/proposals, POST /policies/allow (admin)",
        },
        "docs": "README.md and docs/ of the zt-infra sources; `zt --help`",
    }))
}

/// What `/health` says of a failure to anyone but an admin: that it failed. Its text names
/// files, admins, and a remote signer's account and key; admins (and the log) get it.
const DETAILS_FOR_ADMINS: &str = "failed; the reason is shown to admins and in the server log";

/// `reason` to an admin, else [`DETAILS_FOR_ADMINS`].
fn shown(details: bool, reason: String) -> String {
    if details {
        reason
    } else {
        DETAILS_FOR_ADMINS.into()
    }
}

/// Why the last reload of each reloadable file was refused, if it was (cleared by the next
/// successful reload), in full or as [`DETAILS_FOR_ADMINS`].
fn reload_errors(state: &SharedState, details: bool) -> serde_json::Map<String, serde_json::Value> {
    let shown = |e| shown(details, e);
    let mut errors = serde_json::Map::new();
    if let Some(e) = state.policy.file_error() {
        errors.insert("policy_file".into(), shown(e).into());
    }
    if let Some(e) = state.admin_tokens.as_ref().and_then(|a| a.last_error()) {
        errors.insert("admin_token_file".into(), shown(e).into());
    }
    if let Some(e) = state.tls.as_ref().and_then(|tls| tls.last_error()) {
        errors.insert("tls".into(), shown(e).into());
    }
    for (name, bundle) in state.workload.jwt_bundles() {
        if let Some(e) = bundle.last_error() {
            // Which federated domains there are is for admins too.
            let name = if details {
                name
            } else {
                "jwt_svid_jwks".into()
            };
            errors.insert(name, shown(e).into());
        }
    }
    errors
}

pub(crate) async fn health(State(state): State<SharedState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let details = crate::auth::is_admin_request(&parts, &state);
    let head = state.ledger.head();
    let signer = state.signer.status();
    // With session keys, records are signed while the custody key is away, until the session
    // key expires.
    let audit_ok = !state.ledger.is_failed() && signer.can_sign;
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
            "signer": {
                "kind": signer.kind,
                "mode": signer.mode,
                "key_id": state.checkpoints.key_id(),
                "up": signer.up,
                "can_sign": signer.can_sign,
                "calls": signer.calls,
                "failures": signer.failures,
                "last_latency_ms": signer.last_latency_seconds * 1000.0,
                "last_error": signer.last_error.map(|e| shown(details, e)),
            },
        },
        "policy_version": state.policy.current().version(),
        "policy_file": state.policy.source_file().map(|p| p.display().to_string()),
        "reload_errors": reload_errors(&state, details),
        "warning": warning,
    });
    let status = if audit_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn metrics(State(state): State<SharedState>) -> Response {
    state.metrics.signer(&state.signer.status());
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
