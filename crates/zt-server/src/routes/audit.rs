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
/// Most bytes of records per page: a page stops at the record that reaches it (at least one
/// record), so a page of large records cannot take 10,000 times their size in memory.
/// Readers page on from the last record they got, as `zt audit verify --url` and
/// `zt audit export --url` do.
const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Records read from the store at a time while a page is gathered.
const READ_CHUNK: usize = 256;
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
    let keys = read_store("reading the published audit keys failed", move || {
        ledger.keys()
    })
    .await?;
    Ok(Json(keys))
}

/// Runs a read of the audit store on a blocking thread; a failure is logged as `failed` and
/// answered 500.
async fn read_store<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    failed: &'static str,
    read: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "{failed}");
            ApiError::Internal
        })
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
    let body = read_store("reading audit records failed", move || {
        read_page(|from, n| ledger.read(from, n), from, limit, MAX_PAGE_BYTES)
    })
    .await?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// Up to `limit` record lines from `from`, each ending in a newline, read [`READ_CHUNK`] at a
/// time with `read`, stopping at the first record that brings the page to `max_bytes`.
fn read_page<E>(
    mut read: impl FnMut(u64, usize) -> Result<Vec<String>, E>,
    from: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<String, E> {
    let mut body = String::new();
    let mut taken = 0usize;
    while taken < limit && body.len() < max_bytes {
        let asked = READ_CHUNK.min(limit - taken);
        let lines = read(from + taken as u64, asked)?;
        let got = lines.len();
        for line in lines {
            if taken == limit || body.len() >= max_bytes {
                break;
            }
            body.push_str(&line);
            body.push('\n');
            taken += 1;
        }
        if got < asked {
            break;
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `n` records of `size` bytes each, `record-SEQ` padded.
    fn log(n: u64, size: usize) -> impl FnMut(u64, usize) -> Result<Vec<String>, ()> {
        move |from, count| {
            Ok((from..n.min(from + count as u64))
                .map(|seq| format!("{:<size$}", format!("record-{seq}")))
                .collect())
        }
    }

    #[test]
    fn a_page_stops_at_its_limit_its_byte_budget_or_the_log_s_end() {
        let lines = |body: String| body.lines().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            lines(read_page(log(1000, 10), 5, 600, usize::MAX).unwrap()).len(),
            600
        );
        let page = lines(read_page(log(1000, 10), 990, 600, usize::MAX).unwrap());
        assert_eq!((page.len(), page[0].trim()), (10, "record-990"));
        // 100-byte records (101 with the newline) under a 1,000-byte budget: the tenth reaches it.
        let page = lines(read_page(log(1000, 100), 0, 600, 1000).unwrap());
        assert_eq!(page.len(), 10);
        // One record larger than the budget still makes a page, so a reader always moves on.
        assert_eq!(
            lines(read_page(log(5, 5000), 2, 10, 1000).unwrap()).len(),
            1
        );
        assert!(read_page(log(5, 10), 5, 10, 1000).unwrap().is_empty());
    }

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
