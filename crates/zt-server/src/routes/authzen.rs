//! OpenID AuthZEN Authorization API 1.0: `POST /access/v1/evaluation` and
//! `POST /access/v1/evaluations`, mapped onto the same decision path as `POST /actions` and
//! audited the same way (one record per evaluation). A deny is `decision: false` with 200.
//!
//! `context.request_id`, when present, is the replay nonce and must be a string (anything else
//! is a 400: a nonce silently ignored would let a request through twice). A batch is checked
//! whole before any evaluation is decided (shape, size, request ids); an evaluation that then
//! cannot be decided (rate limit, overload) answers the batch's error status only if no
//! evaluation before it was decided, and otherwise its own `decision: false` with
//! `context.error` (`status`, `message`), so an error never hides committed decisions.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use zt_contract::authzen::{
    EvaluationRequest, EvaluationResponse, EvaluationsRequest, EvaluationsResponse,
    EvaluationsSemantic,
};
use zt_contract::{Decision, DecisionRequest};

use crate::auth::AgentCaller;
use crate::decision::{check_request, decide, CheckedRequest};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::SharedState;

/// Most evaluations in one batch.
const MAX_BATCH: usize = 64;

/// The AuthZEN router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
}

fn to_decision_request(e: EvaluationRequest) -> Result<DecisionRequest, ApiError> {
    // Resource attributes are strings, as on `POST /actions`; another value is refused, not
    // left out (the decision would quietly be made without what the caller sent).
    let mut resource_attributes = BTreeMap::new();
    for (key, value) in e.resource.properties.unwrap_or_default() {
        let Value::String(text) = value else {
            return Err(ApiError::InvalidRequest(
                "every `resource.properties` value must be a string".into(),
            ));
        };
        resource_attributes.insert(key, text);
    }
    let request_id = match e.context.as_ref().and_then(|c| c.get("request_id")) {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "`context.request_id` must be a string".into(),
            ))
        }
    };
    Ok(DecisionRequest {
        actor: e.subject.id,
        action: e.action.name,
        resource: e.resource.id,
        resource_attributes: (!resource_attributes.is_empty()).then_some(resource_attributes),
        context: e.context,
        request_id,
        sandbox: false,
    })
}

async fn evaluate(
    state: &SharedState,
    caller: AgentCaller,
    request: CheckedRequest,
) -> Result<EvaluationResponse, ApiError> {
    let (_, answer) = decide(state, caller, request).await?;
    Ok(EvaluationResponse {
        decision: answer.decision == Decision::Allow,
        context: Some(json!({
            "reason_user": {"en": answer.reason},
            "policies": answer.evidence.policies,
            "audit": answer.audit,
            "evidence": answer.evidence,
        })),
    })
}

async fn evaluation(
    State(state): State<SharedState>,
    caller: AgentCaller,
    JsonBody(request): JsonBody<EvaluationRequest>,
) -> Result<Json<EvaluationResponse>, ApiError> {
    let request = check_request(&caller, to_decision_request(request)?)?;
    Ok(Json(evaluate(&state, caller, request).await?))
}

/// The answer for one evaluation of a batch that could not be decided after others were;
/// counted as a refusal like any other.
fn refused(state: &SharedState, error: &ApiError) -> EvaluationResponse {
    if let Some(cause) = error.rejection_cause() {
        state.metrics.rejected(cause);
        state.rejections.count(cause);
    }
    EvaluationResponse {
        decision: false,
        context: Some(json!({
            "error": {"status": error.status().as_u16(), "message": error.to_string()},
        })),
    }
}

async fn evaluations(
    State(state): State<SharedState>,
    caller: AgentCaller,
    JsonBody(request): JsonBody<EvaluationsRequest>,
) -> Result<Json<EvaluationsResponse>, ApiError> {
    let semantic = request
        .options
        .as_ref()
        .map(|o| o.evaluations_semantic)
        .unwrap_or_default();
    let Some(items) = request.expand(MAX_BATCH) else {
        return Err(ApiError::InvalidRequest(format!(
            "at most {MAX_BATCH} evaluations per batch"
        )));
    };
    // Any item that could not be decided (no action, no actor without authentication, a name
    // outside its grammar, a request id too long) refuses the whole batch before any of it is
    // decided.
    let mut requests = Vec::with_capacity(items.len());
    for item in items {
        requests.push(check_request(&caller, to_decision_request(item)?)?);
    }
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        let answer = match evaluate(&state, caller.clone(), request).await {
            Ok(answer) => answer,
            Err(e) if answers.is_empty() => return Err(e),
            Err(e) => refused(&state, &e),
        };
        let stop = match semantic {
            EvaluationsSemantic::ExecuteAll => false,
            EvaluationsSemantic::DenyOnFirstDeny => !answer.decision,
            EvaluationsSemantic::PermitOnFirstPermit => answer.decision,
        };
        answers.push(answer);
        if stop {
            break;
        }
    }
    Ok(Json(EvaluationsResponse {
        evaluations: answers,
    }))
}
