//! Execution receipts (`POST /executions`): a broker reports how the command an allow decision
//! let it run ended, and the receipt joins the chain as a record of kind `execution`. A receipt
//! is accepted only from the actor the decision was made for, only for a broker's allow (an
//! allow that carries a sandbox profile), only with the decision's own hash, only for a profile
//! within the granted one, and only once per decision (docs/BROKER.md).
//!
//! Once per decision: receipts committed since start are kept in memory (one number each);
//! for a decision made before the server started, the records between it and the start are
//! searched once (a receipt found there is remembered, so repeating the request costs nothing). Replicas sharing one store each keep their own memory, so two replicas could
//! each accept one receipt for the same decision; `zt audit verify` refuses such a log.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;
use serde_json::{Map, Value};
use zt_contract::{Decision, ExecutionReceipt, ReceiptRequest, RecordKind, SandboxProfile};
use zt_ledger::{Ledger, RecordDraft, SealedRecord, StoreError};

use crate::auth::{Agent, AgentCaller};
use crate::error::ApiError;
use crate::state::AppState;

/// Records read per page while searching for an earlier receipt.
const SEARCH_PAGE: usize = 1000;

/// Why a receipt is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptRefusal {
    /// The receipt itself is malformed.
    #[error("invalid receipt: {0}")]
    Invalid(String),
    /// No record has that `seq`.
    #[error("no decision has seq {0}")]
    NoSuchDecision(u64),
    /// The record is not a broker's allow decision.
    #[error("record seq {0} is not an allow decision that granted a sandbox")]
    NotBrokerAllow(u64),
    /// `decision_hash` is not the decision's `current_hash`.
    #[error("decision seq {0} does not have the hash the receipt names")]
    HashMismatch(u64),
    /// Another actor's decision.
    #[error("decision seq {seq} was made for another actor than `{actor}`")]
    WrongActor {
        /// The decision.
        seq: u64,
        /// Who sent the receipt.
        actor: String,
    },
    /// The command ran under more than was granted.
    #[error("the receipt's sandbox is wider than decision seq {0} granted")]
    Wider(u64),
    /// The decision already has its receipt.
    #[error("decision seq {0} already has a receipt")]
    AlreadyReceipted(u64),
}

impl ReceiptRefusal {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ReceiptRefusal::Invalid(_) => StatusCode::BAD_REQUEST,
            ReceiptRefusal::NoSuchDecision(_) => StatusCode::NOT_FOUND,
            ReceiptRefusal::WrongActor { .. } => StatusCode::FORBIDDEN,
            ReceiptRefusal::NotBrokerAllow(_)
            | ReceiptRefusal::HashMismatch(_)
            | ReceiptRefusal::Wider(_)
            | ReceiptRefusal::AlreadyReceipted(_) => StatusCode::CONFLICT,
        }
    }
}

/// Which decisions have their receipt (see the module doc).
pub(crate) struct ReceiptBook {
    /// `seq` of the first record written after start.
    first_live_seq: u64,
    receipted: Mutex<HashSet<u64>>,
}

impl std::fmt::Debug for ReceiptBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptBook")
            .field("first_live_seq", &self.first_live_seq)
            .finish_non_exhaustive()
    }
}

impl ReceiptBook {
    /// A book for a server whose log currently ends at `ledger`'s head.
    pub(crate) fn new(ledger: &Ledger) -> Self {
        Self {
            first_live_seq: ledger.head().map_or(0, |h| h.seq + 1),
            receipted: Mutex::new(HashSet::new()),
        }
    }

    fn reserve(&self, seq: u64) -> bool {
        self.receipted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(seq)
    }

    fn release(&self, seq: u64) {
        self.receipted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&seq);
    }

    fn is_receipted(&self, seq: u64) -> bool {
        self.receipted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&seq)
    }
}

/// Whether a record in `from..to` is a receipt for `seq`. Runs on a blocking thread; once per
/// decision at most, as a receipt found is remembered.
fn receipted_between(
    ledger: &Ledger,
    seq: u64,
    mut from: u64,
    to: u64,
) -> Result<bool, StoreError> {
    while from < to {
        let limit = usize::try_from(to - from)
            .unwrap_or(SEARCH_PAGE)
            .min(SEARCH_PAGE);
        let lines = ledger.read(from, limit)?;
        if lines.is_empty() {
            break;
        }
        if lines
            .iter()
            .any(|line| line.contains("\"execution\"") && receipt_for(line) == Some(seq))
        {
            return Ok(true);
        }
        from += lines.len() as u64;
    }
    Ok(false)
}

fn receipt_for(line: &str) -> Option<u64> {
    let record: Value = serde_json::from_str(line).ok()?;
    if record.get("kind")?.as_str()? != "execution" {
        return None;
    }
    record.get("execution")?.get("decision_seq")?.as_u64()
}

/// Checks a receipt against its decision and commits it; returns the committed record.
pub(crate) async fn append_receipt(
    state: &AppState,
    caller: AgentCaller,
    request: ReceiptRequest,
) -> Result<SealedRecord, ApiError> {
    let (actor, credential) = match caller {
        AgentCaller::Authenticated(Agent { actor, credential }) => {
            if !request.actor.is_empty() && request.actor != actor {
                return Err(refused(ReceiptRefusal::WrongActor {
                    seq: request.execution.decision_seq,
                    actor,
                }));
            }
            (actor, Some(credential))
        }
        AgentCaller::Unauthenticated if request.actor.is_empty() => {
            return Err(ApiError::ActorRequired)
        }
        AgentCaller::Unauthenticated => (request.actor.clone(), None),
    };
    let authenticated = credential.is_some();
    // A receipt rests on the credential alone (an agent token is confirmed when the receipt
    // is queued), not on the registration: the generation of other credentials is moot.
    let generation = credential
        .as_ref()
        .and_then(crate::auth::Credential::token_generation)
        .unwrap_or_default();
    request
        .execution
        .validate()
        .map_err(|e| refused(ReceiptRefusal::Invalid(e.to_string())))?;
    // A receipt costs store reads (and, for a decision older than this start, a scan): it
    // counts against the actor's rate like a decision.
    if let Some(limiter) = &state.limiter {
        limiter.admit(&actor)?;
    }
    let seq = request.execution.decision_seq;
    // Past the log's end there is nothing to read (and past 2^63 the store cannot be asked).
    if seq >= state.ledger.tree_size() {
        return Err(refused(ReceiptRefusal::NoSuchDecision(seq)));
    }
    if state.receipts.is_receipted(seq) {
        return Err(refused(ReceiptRefusal::AlreadyReceipted(seq)));
    }
    let ledger = state.ledger.clone();
    let line = blocking(move || ledger.read(seq, 1))
        .await?
        .into_iter()
        .next()
        .ok_or(refused(ReceiptRefusal::NoSuchDecision(seq)))?;
    let decision: Map<String, Value> =
        serde_json::from_str(&line).map_err(|_| ApiError::Internal)?;
    let granted = check_decision(&decision, seq, &actor, &request)?;
    request
        .sandbox
        .check_within(&granted)
        .map_err(|_| refused(ReceiptRefusal::Wider(seq)))?;
    let first_live = state.receipts.first_live_seq;
    if seq < first_live {
        let ledger = state.ledger.clone();
        if blocking(move || receipted_between(&ledger, seq, seq + 1, first_live)).await? {
            state.receipts.reserve(seq);
            return Err(refused(ReceiptRefusal::AlreadyReceipted(seq)));
        }
    }
    if !state.receipts.reserve(seq) {
        return Err(refused(ReceiptRefusal::AlreadyReceipted(seq)));
    }
    let draft = receipt_draft(&decision, actor, authenticated, request);
    // Queued only if the credential still stands, after any revocation's record otherwise.
    let queued =
        crate::decision::queue_confirmed(state, credential.as_ref(), generation, draft, |d| d);
    let committed = match queued {
        Ok(queued) => queued.committed().await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    if committed.is_err() {
        state.receipts.release(seq);
    }
    committed
}

/// The decision must be a broker's allow for `actor` with the hash the receipt names; returns
/// the profile it granted.
fn check_decision(
    decision: &Map<String, Value>,
    seq: u64,
    actor: &str,
    request: &ReceiptRequest,
) -> Result<SandboxProfile, ApiError> {
    let text = |k: &str| decision.get(k).and_then(Value::as_str).unwrap_or_default();
    // Whose record it is comes first: of another actor's record, an agent learns nothing more
    // (not whether it is a broker's allow).
    if text("actor") != actor {
        return Err(refused(ReceiptRefusal::WrongActor {
            seq,
            actor: actor.into(),
        }));
    }
    let granted = decision
        .get("sandbox")
        .and_then(|v| serde_json::from_value::<SandboxProfile>(v.clone()).ok());
    let Some(granted) =
        granted.filter(|_| text("kind") == "decision" && text("decision") == "allow")
    else {
        return Err(refused(ReceiptRefusal::NotBrokerAllow(seq)));
    };
    if text("current_hash") != request.execution.decision_hash {
        return Err(refused(ReceiptRefusal::HashMismatch(seq)));
    }
    Ok(granted)
}

/// Runs a store read on a blocking thread.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|_| ApiError::AuditUnavailable)
}

fn refused(refusal: ReceiptRefusal) -> ApiError {
    tracing::warn!(%refusal, "execution receipt refused");
    ApiError::Receipt(refusal)
}

/// The receipt record: the decision's actor, action and resource, its outcome, how the
/// command ended (the reason says it in words), and the profile it ran under.
pub(crate) fn receipt_draft(
    decision: &Map<String, Value>,
    actor: String,
    authenticated: bool,
    request: ReceiptRequest,
) -> RecordDraft {
    let text = |k: &str| {
        decision
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let receipt: ExecutionReceipt = request.execution;
    RecordDraft {
        kind: RecordKind::Execution,
        actor,
        action: text("action"),
        resource: text("resource"),
        decision: Decision::Allow,
        reason: receipt.summary(),
        authenticated,
        sandbox: Some(request.sandbox),
        execution: Some(receipt),
        ..RecordDraft::default()
    }
}
