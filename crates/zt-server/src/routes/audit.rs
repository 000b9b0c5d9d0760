//! Public read routes of the audit log: head, records as JSON lines, and the signing keys.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use zt_contract::{AuditHead, Jwks, GENESIS_HASH};

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::state::SharedState;

/// Records per page when `limit` is not given.
const DEFAULT_PAGE: usize = 1000;
/// Most records per page.
const MAX_PAGE: usize = 10_000;
/// Largest `from` accepted: sequence numbers are stored as signed 64-bit integers, so a
/// larger one cannot name a record (and is refused as out of range, never passed to the store).
const MAX_FROM: u64 = i64::MAX as u64;

/// The audit read router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/audit/head", get(head))
        .route("/audit/records", get(records))
        .route("/audit/keys", get(keys))
}

async fn head(State(state): State<SharedState>) -> Json<AuditHead> {
    let head = state.ledger.head();
    Json(AuditHead {
        ok: true,
        seq: head.map(|h| h.seq),
        current_hash: head.map_or_else(|| GENESIS_HASH.to_string(), |h| h.current_hash.to_hex()),
        records: head.map_or(0, |h| h.seq + 1),
    })
}

/// Every server sharing the store publishes its key there, so the keys are read from the
/// store, not from memory.
async fn keys(State(state): State<SharedState>) -> Result<Json<Jwks>, ApiError> {
    let ledger = state.ledger.clone();
    let keys = tokio::task::spawn_blocking(move || ledger.keys())
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "reading the published audit keys failed");
            ApiError::Internal
        })?;
    Ok(Json(keys))
}

/// Parses `from=SEQ&limit=N`; anything else in the query is an error, not ignored.
fn page_params(query: Option<&str>) -> Result<(u64, usize), ApiError> {
    let (mut from, mut limit) = (0u64, DEFAULT_PAGE);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || ApiError::InvalidRequest(format!("`{key}` must be a non-negative integer"));
        match key {
            "from" => {
                from = value.parse().map_err(|_| bad())?;
                if from > MAX_FROM {
                    return Err(ApiError::InvalidRequest(format!(
                        "`from` must be at most {MAX_FROM}"
                    )));
                }
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .map_err(|_| bad())?
                    .clamp(1, MAX_PAGE)
            }
            other => {
                return Err(ApiError::InvalidRequest(format!(
                    "unknown query parameter `{other}`"
                )))
            }
        }
    }
    Ok((from, limit))
}

async fn records(
    State(state): State<SharedState>,
    _caller: AdminCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (from, limit) = page_params(query.as_deref())?;
    let ledger = state.ledger.clone();
    let lines = tokio::task::spawn_blocking(move || ledger.read(from, limit))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "reading audit records failed");
            ApiError::Internal
        })?;
    let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        body.push_str(&line);
        body.push('\n');
    }
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_params_are_strict() {
        assert_eq!(page_params(None).unwrap(), (0, DEFAULT_PAGE));
        assert_eq!(page_params(Some("from=5&limit=20")).unwrap(), (5, 20));
        assert_eq!(page_params(Some("limit=999999")).unwrap(), (0, MAX_PAGE));
        assert!(page_params(Some("from=-1")).is_err());
        assert!(page_params(Some("from=x")).is_err());
        assert!(page_params(Some("evil=1")).is_err());
        assert_eq!(
            page_params(Some("from=9223372036854775807")).unwrap().0,
            MAX_FROM
        );
        for out_of_range in [
            "9223372036854775808",
            "18446744073709551615",
            "99999999999999999999",
        ] {
            let refused = page_params(Some(&format!("from={out_of_range}"))).unwrap_err();
            assert_eq!(refused.status(), axum::http::StatusCode::BAD_REQUEST);
        }
    }
}
