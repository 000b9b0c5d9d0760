//! Public proof routes: the latest signed checkpoint, the key it verifies with, and RFC 9162
//! inclusion and consistency proofs, so that anyone can check that a record is in the log and
//! that the log only grew. See `docs/PROOFS.md`; the answers' types are in
//! `zt_contract::proof_wire`.
//!
//! Proofs are built from the committed tree's subtree hashes and at most two store reads of at
//! most 1,024 hashes (`zt_ledger::tree`), off the async threads, at most two at a time.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use zt_contract::{CheckpointKeyBody, ConsistencyBody, InclusionBody};
use zt_ledger::tree::TreeError;
use zt_ledger::Ledger;

use crate::checkpoints::issue_on_demand;
use crate::error::ApiError;
use crate::state::SharedState;

/// The proof router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/audit/checkpoint", get(checkpoint))
        .route("/audit/checkpoint/key", get(checkpoint_key))
        .route("/audit/proof/inclusion", get(inclusion))
        .route("/audit/proof/consistency", get(consistency))
}

async fn checkpoint(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref(), &["fresh"])?;
    let latest = if params.flag("fresh")? {
        issue_on_demand(&state.ledger, &state.checkpoints)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "issuing a checkpoint on demand failed");
                ApiError::Internal
            })?
    } else {
        state.checkpoints.latest()
    };
    let mut response = latest.note.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn checkpoint_key(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<CheckpointKeyBody>, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let checkpoints = &state.checkpoints;
    Ok(Json(CheckpointKeyBody {
        ok: true,
        origin: checkpoints.origin().into(),
        kid: checkpoints.key_id().into(),
        note_key_id: format!("{:08x}", checkpoints.key().key_id()),
        vkey: checkpoints.key().vkey(),
    }))
}

async fn inclusion(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<InclusionBody>, ApiError> {
    let params = Params::parse(query.as_deref(), &["seq", "size"])?;
    let seq = params.required("seq")?;
    let size = params.required("size")?;
    within_tree(&state, size)?;
    if seq >= size {
        return Err(ApiError::InvalidRequest(format!(
            "`seq` {seq} is not below `size` {size}"
        )));
    }
    let found = prove(&state, move |ledger| ledger.inclusion_proof(seq, size)).await?;
    Ok(Json(InclusionBody::new(
        seq,
        size,
        &found.leaf_hash,
        &found.proof,
    )))
}

async fn consistency(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ConsistencyBody>, ApiError> {
    let params = Params::parse(query.as_deref(), &["from", "to"])?;
    let from = params.required("from")?;
    let to = params.required("to")?;
    if from > to {
        return Err(ApiError::InvalidRequest(format!(
            "`from` {from} is larger than `to` {to}"
        )));
    }
    within_tree(&state, to)?;
    let proof = if from == 0 || from == to {
        Vec::new() // nothing to prove: no need to read the log
    } else {
        prove(&state, move |ledger| ledger.consistency_proof(from, to)).await?
    };
    Ok(Json(ConsistencyBody::new(from, to, &proof)))
}

/// A tree size no larger than the committed log.
fn within_tree(state: &SharedState, size: u64) -> Result<(), ApiError> {
    let current = state.ledger.tree_size();
    if size > current {
        return Err(ApiError::InvalidRequest(format!(
            "tree size {size} is beyond the log's current size {current}"
        )));
    }
    Ok(())
}

/// Runs `build` on a blocking thread, holding one of the proof slots. The sizes were checked
/// against the tree, which only grows, so the ledger cannot refuse them (if it did, that would
/// still be a 400); a failure to read the log is internal.
async fn prove<T: Send + 'static>(
    state: &SharedState,
    build: impl FnOnce(&Ledger) -> Result<T, TreeError> + Send + 'static,
) -> Result<T, ApiError> {
    let _slot = state
        .checkpoints
        .proof_slots
        .acquire()
        .await
        .map_err(|_| ApiError::Internal)?;
    let ledger = state.ledger.clone();
    let built = tokio::task::spawn_blocking(move || build(&ledger))
        .await
        .map_err(|_| ApiError::Internal)?;
    built.map_err(|e| match e {
        TreeError::SizeBeyondTree { .. } | TreeError::Proof(_) => {
            ApiError::InvalidRequest(e.to_string())
        }
        TreeError::Store(_) | TreeError::Missing { .. } => {
            tracing::error!(error = %e, "building a proof failed");
            ApiError::Internal
        }
    })
}

/// A strictly parsed query string: only the named keys, each at most once, values as given.
struct Params<'q> {
    pairs: Vec<(&'q str, &'q str)>,
}

impl<'q> Params<'q> {
    fn parse(query: Option<&'q str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !allowed.contains(&key) {
                return Err(ApiError::InvalidRequest(format!(
                    "unknown query parameter `{}`",
                    key.chars().take(64).collect::<String>()
                )));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(ApiError::InvalidRequest(format!(
                    "query parameter `{key}` is given twice"
                )));
            }
            pairs.push((key, value));
        }
        Ok(Self { pairs })
    }

    fn get(&self, key: &str) -> Option<&'q str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A required non-negative decimal integer (digits only, fits 64 bits).
    fn required(&self, key: &str) -> Result<u64, ApiError> {
        let value = self
            .get(key)
            .ok_or_else(|| ApiError::InvalidRequest(format!("`{key}` is required")))?;
        let bad = || ApiError::InvalidRequest(format!("`{key}` must be a non-negative integer"));
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        value.parse().map_err(|_| bad())
    }

    /// An optional boolean: `1`/`true` or `0`/`false`; absent is false.
    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("0" | "false") => Ok(false),
            Some("1" | "true") => Ok(true),
            Some(_) => Err(ApiError::InvalidRequest(format!(
                "`{key}` must be 1, true, 0 or false"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_strict() {
        let p = Params::parse(Some("seq=3&size=10"), &["seq", "size"]).unwrap();
        assert_eq!(p.required("seq").unwrap(), 3);
        assert_eq!(p.required("size").unwrap(), 10);
        assert!(Params::parse(Some("seq=1&seq=2"), &["seq"]).is_err());
        assert!(Params::parse(Some("evil=1"), &["seq"]).is_err());
        assert!(Params::parse(Some("fresh=1"), &[]).is_err());
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "x",
            "0x10",
            "18446744073709551616",
            " 1",
        ] {
            let query = format!("seq={bad}");
            let p = Params::parse(Some(&query), &["seq"]).unwrap();
            assert!(p.required("seq").is_err(), "{bad:?}");
        }
        let p = Params::parse(Some("seq"), &["seq", "size"]).unwrap();
        assert!(p.required("seq").is_err());
        assert!(p.required("size").is_err());
        let p = Params::parse(Some("seq=18446744073709551615"), &["seq"]).unwrap();
        assert_eq!(p.required("seq").unwrap(), u64::MAX);
    }

    #[test]
    fn flags_are_strict() {
        let flag = |q: &str| Params::parse(Some(q), &["fresh"]).unwrap().flag("fresh");
        assert!(!Params::parse(None, &["fresh"])
            .unwrap()
            .flag("fresh")
            .unwrap());
        assert!(flag("fresh=1").unwrap());
        assert!(flag("fresh=true").unwrap());
        assert!(!flag("fresh=0").unwrap());
        assert!(!flag("fresh=false").unwrap());
        assert!(flag("fresh=yes").is_err());
        assert!(flag("fresh").is_err());
    }
}
