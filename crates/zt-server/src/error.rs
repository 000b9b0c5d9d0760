//! Every failure a request can meet, and its one mapping to an HTTP status and JSON body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use zt_contract::{ErrorBody, ERROR_ACTION_REQUIRED, ERROR_ACTOR_REQUIRED};
use zt_ledger::LedgerError;

use crate::rejections::RejectionCause;

/// A request that got no decision.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// JSON of the wrong shape (wrong types, not an object).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `actor` missing or empty.
    #[error("{}", ERROR_ACTOR_REQUIRED)]
    ActorRequired,
    /// `action` missing or empty.
    #[error("{}", ERROR_ACTION_REQUIRED)]
    ActionRequired,
    /// An actor, action or resource outside its grammar (`zt_contract::names`).
    #[error("invalid request: {0}")]
    InvalidName(#[from] zt_contract::names::NameError),
    /// Over [`crate::config::MAX_BODY_BYTES`].
    #[error("request body is larger than {} bytes", crate::config::MAX_BODY_BYTES)]
    BodyTooLarge,
    /// The body could not be read whole: invalid chunked encoding, or cut short.
    #[error(
        "request body could not be read: it is not valid http chunked encoding, or it ended early"
    )]
    BodyUnreadable,
    /// No such route.
    #[error("no route for `{0}`")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No such agent.
    #[error("agent `{0}` is not registered")]
    AgentNotFound(String),
    /// No credential, or one that is not valid.
    #[error("authentication failed: {0}")]
    Unauthenticated(&'static str),
    /// A bearer token shaped like a JWT that is not a valid JWT-SVID.
    #[error("authentication failed: {0}")]
    InvalidJwtSvid(#[from] crate::auth::jwt_svid::JwtSvidError),
    /// An agent credential on an admin route (audited before this answer).
    #[error("agent credentials cannot use admin routes (authenticated as `{0}`)")]
    AgentOnAdminRoute(String),
    /// A policy that does not parse or validate (the message carries line and column).
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    /// No such policy proposal.
    #[error("no policy proposal `{0}`")]
    ProposalNotFound(String),
    /// The proposal was already approved.
    #[error("policy proposal `{0}` is not pending")]
    ProposalClosed(String),
    /// The active policy changed after the proposal was made.
    #[error("the active policy changed since proposal `{0}` was made; propose again")]
    ProposalStale(String),
    /// The proposer tried to approve their own proposal.
    #[error("a policy proposal must be approved by a different admin")]
    SelfApproval,
    /// `--policy FILE` owns the policy: the API cannot change it.
    #[error(
        "the policy is managed by the file `{0}`; change the file (it is reloaded on change and on SIGHUP)"
    )]
    PolicyManagedByFile(String),
    /// `POST /policies/allow` for an action whose `allow:` policy exists with another rule or
    /// reason.
    #[error(
        "policy `{0}` already exists with a different rule or reason; change it with a proposal"
    )]
    PolicyIdTaken(String),
    /// Every kept proposal is still pending.
    #[error(
        "{} policy proposals are pending; approve some before filing more",
        crate::proposals::MAX_PROPOSALS_KEPT
    )]
    TooManyProposals,
    /// Registering an agent again with other attributes.
    #[error(
        "agent `{actor}` is already registered with attributes {attributes}; remove it and register it again to change them"
    )]
    AgentExists {
        /// The actor.
        actor: String,
        /// Its stored attributes, as JSON.
        attributes: String,
    },
    /// The actor's rate limit is exhausted.
    #[error("rate limit exceeded; retry in {0} s")]
    RateLimited(u64),
    /// The body did not arrive in time.
    #[error("request body not received within {0} s")]
    BodyTimeout(u64),
    /// The replay guard keeps as many ids as its memory budget allows.
    #[error("too many request ids in use; retry later")]
    ReplayMemoryFull,
    /// A request that may come from a web page of another host (DNS rebinding).
    #[error("{0}")]
    ForeignPage(zt_listener::ForeignPage),
    /// A connection over the connection cap asked for more than `/health`.
    #[error("too many connections; retry later")]
    TooManyConnections,
    /// The audit commit queue is full.
    #[error("control plane is overloaded; retry later")]
    Overloaded,
    /// The audit log cannot commit: no decision can be given.
    #[error("audit log unavailable; no decision was made")]
    AuditUnavailable,
    /// An execution receipt refused (docs/BROKER.md).
    #[error(transparent)]
    Receipt(#[from] crate::receipts::ReceiptRefusal),
    /// Something else failed on our side.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidRequest(_)
            | ApiError::ActorRequired
            | ApiError::ActionRequired
            | ApiError::InvalidName(_)
            | ApiError::BodyUnreadable => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) | ApiError::AgentNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated(_) | ApiError::InvalidJwtSvid(_) => StatusCode::UNAUTHORIZED,
            ApiError::InvalidPolicy(_) => StatusCode::BAD_REQUEST,
            ApiError::ProposalNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::ProposalClosed(_)
            | ApiError::ProposalStale(_)
            | ApiError::PolicyManagedByFile(_)
            | ApiError::PolicyIdTaken(_)
            | ApiError::TooManyProposals
            | ApiError::AgentExists { .. } => StatusCode::CONFLICT,
            ApiError::SelfApproval => StatusCode::FORBIDDEN,
            ApiError::AgentOnAdminRoute(_) | ApiError::ForeignPage(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded
            | ApiError::ReplayMemoryFull
            | ApiError::TooManyConnections
            | ApiError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Receipt(refusal) => refusal.status(),
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The counter a rejected request is summarized under, if it is one (see
    /// [`crate::rejections`]); `None` for errors that are not the caller's doing.
    pub fn rejection_cause(&self) -> Option<RejectionCause> {
        match self {
            // A body that is not even valid HTTP is malformed too.
            ApiError::MalformedJson(_) | ApiError::BodyUnreadable => {
                Some(RejectionCause::MalformedJson)
            }
            ApiError::InvalidRequest(_) | ApiError::InvalidName(_) => {
                Some(RejectionCause::InvalidRequest)
            }
            ApiError::ActorRequired | ApiError::ActionRequired => {
                Some(RejectionCause::MissingField)
            }
            ApiError::BodyTooLarge => Some(RejectionCause::BodyTooLarge),
            ApiError::NotFound(_) | ApiError::MethodNotAllowed => {
                Some(RejectionCause::UnknownRoute)
            }
            ApiError::Overloaded => Some(RejectionCause::Overloaded),
            ApiError::Unauthenticated(_) | ApiError::InvalidJwtSvid(_) => {
                Some(RejectionCause::Unauthenticated)
            }
            ApiError::RateLimited(_) => Some(RejectionCause::RateLimited),
            ApiError::BodyTimeout(_) => Some(RejectionCause::BodyTimeout),
            ApiError::ReplayMemoryFull => Some(RejectionCause::ReplayMemoryFull),
            ApiError::TooManyConnections => Some(RejectionCause::TooManyConnections),
            ApiError::ForeignPage(_) => Some(RejectionCause::ForeignPage),
            // Audited one by one, or not the caller's doing.
            ApiError::AgentOnAdminRoute(_)
            | ApiError::AgentNotFound(_)
            | ApiError::InvalidPolicy(_)
            | ApiError::ProposalNotFound(_)
            | ApiError::ProposalClosed(_)
            | ApiError::ProposalStale(_)
            | ApiError::SelfApproval
            | ApiError::PolicyManagedByFile(_)
            | ApiError::PolicyIdTaken(_)
            | ApiError::TooManyProposals
            | ApiError::AgentExists { .. }
            | ApiError::AuditUnavailable
            | ApiError::Receipt(_)
            | ApiError::Internal => None,
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Overloaded => ApiError::Overloaded,
            // Only a decision's record carries a request id, and `decision::decide` records
            // that replay itself; anywhere else the record was not committed: fail closed.
            LedgerError::Unavailable(_) | LedgerError::Closed | LedgerError::RequestIdSpent(_) => {
                ApiError::AuditUnavailable
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            ok: false,
            error: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Overloaded | ApiError::ReplayMemoryFull => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::TooManyConnections => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::BodyTimeout(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::RateLimited(seconds) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            ApiError::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::InvalidJwtSvid(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        if let Some(cause) = self.rejection_cause() {
            // The rejection counter reads this marker in a middleware, so every path that
            // produces an error is counted the same way.
            response.extensions_mut().insert(cause);
        }
        response
    }
}
