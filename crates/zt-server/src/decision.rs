//! The decision path shared by `POST /actions` and the AuthZEN API: check the request
//! ([`check_request`]), then ([`decide`]) bind the actor, limit, reserve the request id
//! (released if the record does not commit), decide, confirm the credential still stands and
//! queue the audit record under the registry's revocation lock ([`queue_confirmed`]), wait
//! for its commit, and answer.

use std::time::Instant;

use axum::http::StatusCode;
use zt_contract::names::{ActionName, ActorName, ResourceName};
use zt_contract::{Decision, DecisionRequest, DecisionResponse, DenyReason, RecordDraft};
use zt_ledger::LedgerError;
use zt_policy::{OwnedPolicyRequest, PolicyRequest};

use crate::auth::{Agent, AgentCaller, Credential, REVOKED_IN_FLIGHT};
use crate::error::ApiError;
use crate::replay::{ReplayRefusal, Reservation, MAX_REQUEST_ID_BYTES};
use crate::state::{AppState, SharedState};

/// A decision before it is logged: outcome, reason, deciding policies, and the status it is
/// answered with.
struct Verdict {
    decision: Decision,
    reason: String,
    policies: Vec<String>,
    status: StatusCode,
}

impl Verdict {
    /// A deny the server decides itself, answered with the status its reason maps to.
    fn deny(reason: &DenyReason) -> Self {
        let status = match reason {
            DenyReason::Replayed { .. } => StatusCode::CONFLICT,
            DenyReason::ClaimedActor { .. }
            | DenyReason::Unregistered
            | DenyReason::SandboxGrantInvalid { .. } => StatusCode::FORBIDDEN,
        };
        Self {
            decision: Decision::Deny,
            reason: reason.text(),
            policies: Vec::new(),
            status,
        }
    }
}

/// Checks the request's names against their grammar (`zt_contract::names`) and puts them in
/// canonical form: the action folded to lower case, the resource normalized to NFC, the actor
/// (when given) as it is. A name outside its grammar is refused (400) before any other work.
fn canonical_names(request: &mut DecisionRequest) -> Result<(), ApiError> {
    if !request.actor.is_empty() {
        ActorName::parse(&request.actor)?;
    }
    request.action = ActionName::parse(&request.action)?.into_string();
    request.resource = ResourceName::parse(&request.resource)?.into_string();
    Ok(())
}

/// A request that passed [`check_request`]: the only input [`decide`] takes, so that every
/// decision is checked, and checked once (an AuthZEN batch checks all its items before it
/// decides any).
#[derive(Debug)]
pub(crate) struct CheckedRequest(DecisionRequest);

/// What a request must be before anything is decided or spent: an actor (when the caller is
/// not authenticated), an action, names in their grammar (canonicalised), a `request_id`
/// within its length.
pub(crate) fn check_request(
    caller: &AgentCaller,
    mut request: DecisionRequest,
) -> Result<CheckedRequest, ApiError> {
    if matches!(caller, AgentCaller::Unauthenticated) && request.actor.is_empty() {
        return Err(ApiError::ActorRequired);
    }
    if request.action.is_empty() {
        return Err(ApiError::ActionRequired);
    }
    canonical_names(&mut request)?;
    if request
        .request_id
        .as_ref()
        .is_some_and(|id| id.len() > MAX_REQUEST_ID_BYTES)
    {
        return Err(ApiError::InvalidRequest(format!(
            "`request_id` is longer than {MAX_REQUEST_ID_BYTES} bytes"
        )));
    }
    Ok(CheckedRequest(request))
}

/// Decides `request` for `caller` (the caller it was checked for), commits the record, and
/// returns the status to answer with (200 allow, 403 deny, 409 replay) and the contract's
/// response.
pub(crate) async fn decide(
    state: &SharedState,
    caller: AgentCaller,
    CheckedRequest(request): CheckedRequest,
) -> Result<(StatusCode, DecisionResponse), ApiError> {
    let started = Instant::now();
    let (actor, credential, claimed_actor) = match caller {
        AgentCaller::Authenticated(Agent { actor, credential }) => {
            let claimed = (!request.actor.is_empty() && request.actor != actor)
                .then(|| request.actor.clone());
            (actor, Some(credential), claimed)
        }
        AgentCaller::Unauthenticated if request.actor.is_empty() => {
            return Err(ApiError::ActorRequired)
        }
        AgentCaller::Unauthenticated => (request.actor.clone(), None, None),
    };
    let authenticated = credential.is_some();
    // Read before the registry is: the record is queued only if nothing the decision read
    // was revoked since (see `queue_confirmed`).
    let generation = registry_generation(state, credential.as_ref());
    if let Some(limiter) = &state.limiter {
        limiter.admit(&actor)?;
    }
    // The id is reserved for the actor the record names, whatever the verdict, so the live
    // guard spends exactly what reloading the log spends.
    let (replayed, reservation) = match request.request_id.as_deref() {
        None => (false, None),
        Some(id) => match state.replay.reserve(&actor, id) {
            Ok(reservation) => (false, Some(reservation)),
            Err(ReplayRefusal::AlreadyUsed) => (true, None),
            Err(ReplayRefusal::Full) => return Err(ApiError::ReplayMemoryFull),
        },
    };
    let engine = state.policy.current();
    let wants_sandbox = request.sandbox;
    let resource_attributes = request.resource_attributes.clone().unwrap_or_default();
    let mut on_registration = false;
    let verdict = if let Some(id) = request.request_id.as_deref().filter(|_| replayed) {
        Verdict::deny(&DenyReason::Replayed {
            request_id: id.to_string(),
        })
    } else if let Some(claimed) = &claimed_actor {
        Verdict::deny(&DenyReason::ClaimedActor {
            claimed: claimed.clone(),
            authenticated: actor.clone(),
        })
    } else if let Some(attributes) = state.registry.attributes(&actor) {
        on_registration = true;
        let actor_attributes = attributes.to_map();
        let mut asked = PolicyRequest::new(&actor, &request.action, &request.resource)
            .with_actor_attributes(&actor_attributes)
            .with_actor_groups(&attributes.groups)
            .with_resource_attributes(&resource_attributes);
        if let Some(context) = &request.context {
            asked = asked.with_context(context);
        }
        let decided = crate::evaluation::decide(&engine, &asked).await;
        state.recent.push(OwnedPolicyRequest {
            actor: actor.clone(),
            action: request.action.clone(),
            resource: request.resource.clone(),
            resource_attributes,
            context: request.context.clone(),
            ..OwnedPolicyRequest::default()
        });
        Verdict {
            decision: if decided.allowed {
                Decision::Allow
            } else {
                Decision::Deny
            },
            status: if decided.allowed {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            },
            reason: decided.reason,
            policies: decided.determining_policies,
        }
    } else {
        Verdict::deny(&DenyReason::Unregistered)
    };
    let (verdict, sandbox) = with_sandbox(verdict, wants_sandbox, &engine);
    let context_sha256 = request.context_sha256();
    let resource_attributes_sha256 = request.resource_attributes_sha256();
    let draft = RecordDraft::decision(
        actor,
        authenticated,
        request.action,
        request.resource,
        verdict.decision,
        verdict.reason,
    )
    .with_claimed_actor(claimed_actor)
    .with_policies(verdict.policies)
    .with_policy_version(Some(engine.version().to_string()))
    .with_request_id(request.request_id)
    .with_context_sha256(context_sha256)
    .with_resource_attributes_sha256(resource_attributes_sha256)
    .with_sandbox(sandbox);
    let mut status = verdict.status;
    let queued = queue_confirmed(state, credential.as_ref(), generation, draft, |draft| {
        if !on_registration {
            return draft;
        }
        // Removed while it was decided: the log already says it is not registered.
        let (draft, denied) = unregistered_denial(draft);
        status = denied;
        draft
    });
    // Queued or refused without an await since: from here the id stays reserved even if the
    // request is abandoned, as its record may commit; a refusal (dropping the reservation)
    // gives it back.
    let queued = queued?;
    let reserved = reservation.and_then(Reservation::queued);
    let (record, status) = match reserved {
        None => (queued.committed().await.map_err(ApiError::from), status),
        Some((actor, id)) => {
            // A record refused (503) spends no id, so the retry it invites is not a replay. The
            // wait and the release run in a task of their own: a client that goes away while
            // its record is refused still gets its id back, never spent without a record.
            let state = state.clone();
            tokio::spawn(async move {
                let appended = match queued.committed().await {
                    // Another server sharing the store spent the id first: this one stays
                    // reserved here for the window, and the replay is recorded instead, if
                    // the credential still stands.
                    Err(LedgerError::RequestIdSpent(draft)) => {
                        let (denial, status) = replay_denial(*draft, id.clone());
                        let denied =
                            queue_confirmed(&state, credential.as_ref(), generation, denial, |d| d);
                        return match denied {
                            Ok(queued) => {
                                (queued.committed().await.map_err(ApiError::from), status)
                            }
                            Err(e) => (Err(e), status),
                        };
                    }
                    appended => appended,
                };
                if appended.is_err() {
                    state.replay.release(&actor, &id);
                }
                (appended.map_err(ApiError::from), status)
            })
            .await
            .unwrap_or((
                Err(ApiError::AuditUnavailable),
                StatusCode::SERVICE_UNAVAILABLE,
            ))
        }
    };
    let record = record?;
    let allowed = record.body.decision == Decision::Allow;
    state.metrics.decision(allowed, started.elapsed());
    let answer = DecisionResponse::from_record(record.body, &record.current_hash, record.signature);
    Ok((status, answer))
}

/// The registry generation a decision by a caller with `credential` is confirmed against: the
/// one its agent token was checked at, else the current one.
fn registry_generation(state: &AppState, credential: Option<&Credential>) -> u64 {
    credential
        .and_then(Credential::token_generation)
        .unwrap_or_else(|| state.registry.generation())
}

/// Queues `draft`, the record of a request by a caller with `credential` (`None` under
/// `--auth none`), if that credential still proves the record's actor; `removed` rewrites the
/// draft if the actor was removed since `generation` (when its request was decided).
///
/// The agent token is confirmed, and the record queued, under the registry's revocation lock,
/// which a rotation or removal takes before its own record is queued: so no record of a
/// credential follows the record that revoked it. A credential revoked meanwhile is refused
/// (401) and nothing is recorded.
pub(crate) fn queue_confirmed(
    state: &AppState,
    credential: Option<&Credential>,
    generation: u64,
    draft: RecordDraft,
    removed: impl FnOnce(RecordDraft) -> RecordDraft,
) -> Result<zt_ledger::Queued, ApiError> {
    if credential.is_some_and(|c| !c.still_proves(&draft.actor, state)) {
        return Err(REVOKED_IN_FLIGHT);
    }
    let token = credential.and_then(Credential::token_sha256);
    let confirmed = state
        .registry
        .confirm(generation, &draft.actor, token)
        .map_err(|_| REVOKED_IN_FLIGHT)?;
    let draft = if confirmed.removed {
        removed(draft)
    } else {
        draft
    };
    let queued = state.ledger.queue(draft);
    drop(confirmed);
    queued.map_err(ApiError::from)
}

/// `draft`, a decision made on its actor's registration, turned into the denial of an actor
/// that is not registered, and the status it is answered with.
fn unregistered_denial(draft: RecordDraft) -> (RecordDraft, StatusCode) {
    let denied = Verdict::deny(&DenyReason::Unregistered);
    let draft = RecordDraft {
        decision: denied.decision,
        reason: denied.reason,
        policies: None,
        sandbox: None,
        ..draft
    };
    (draft, denied.status)
}

/// The record of `draft`'s request refused as a replay of `request_id`, as this server
/// records it when its own guard finds the id used, and the status it is answered with.
fn replay_denial(draft: RecordDraft, request_id: String) -> (RecordDraft, StatusCode) {
    let replayed = Verdict::deny(&DenyReason::Replayed { request_id });
    let draft = RecordDraft {
        decision: replayed.decision,
        reason: replayed.reason,
        policies: None,
        sandbox: None,
        ..draft
    };
    (draft, replayed.status)
}

/// A broker's allow carries the profile its deciding permits grant; a grant that cannot be
/// read turns the allow into a deny (fail closed).
fn with_sandbox(
    verdict: Verdict,
    wanted: bool,
    engine: &zt_policy::PolicyEngine,
) -> (Verdict, Option<zt_contract::SandboxProfile>) {
    if !wanted || verdict.decision != Decision::Allow {
        return (verdict, None);
    }
    match crate::sandbox_grant::grant(engine, &verdict.policies) {
        Ok(profile) => (verdict, Some(profile)),
        Err(e) => {
            let mut deny = Verdict::deny(&DenyReason::SandboxGrantInvalid {
                error: e.to_string(),
            });
            deny.policies = verdict.policies;
            (deny, None)
        }
    }
}
