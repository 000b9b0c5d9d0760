//! The Rust SDK of ZT-Infra: ask the control plane before protected work, and fail closed.
//!
//! [`ControlPlane::decide`] returns a decision only when the answer is complete: a 200 or 403
//! status, a well-formed body whose `ok` agrees with `decision`, and audit evidence whose
//! `current_hash` recomputes from the answer's own fields. Anything else is an error, and
//! [`ControlPlane::guarded_call`] never runs the protected work on an error.

mod guarded;
mod http;
pub mod names;

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zt_contract::{
    AllowRuleRequest, AllowRuleResponse, AuditHead, DecisionRequest, DecisionResponse, Jwks,
    RegisterAgentRequest, RegisterAgentResponse, TokenResponse,
};

pub use guarded::{Guarded, SkipCause};
use http::HttpClient;

/// Why no decision could be obtained. Every variant means: do not run the protected work.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an `http://host:port` base URL.
    #[error("invalid control plane URL `{0}`")]
    BadUrl(String),
    /// No connection, or the connection broke.
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    /// No answer within the timeout.
    #[error("control plane did not answer within {0:?}")]
    Timeout(Duration),
    /// A status the contract does not allow for this call.
    #[error("control plane answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body, for diagnosis.
        body: String,
    },
    /// The body is not what the contract says.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The decision's audit evidence does not hold together.
    #[error("audit evidence missing or inconsistent: {0}")]
    Evidence(String),
}

/// A connection to one control plane.
#[derive(Clone)]
pub struct ControlPlane {
    http: HttpClient,
}

impl ControlPlane {
    /// A client for `base_url` (e.g. `http://127.0.0.1:3000`) with a 5 s timeout.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_timeout(base_url, Duration::from_secs(5))
    }

    /// A client with an explicit per-request timeout.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            http: HttpClient::new(base_url, timeout)?,
        })
    }

    /// This client, presenting `token` (an agent token for `decide`, an admin token for the
    /// admin and audit-record calls) as `Authorization: Bearer`.
    pub fn with_bearer(mut self, token: &str) -> Result<Self, ClientError> {
        self.http.set_bearer(token)?;
        Ok(self)
    }

    /// Asks whether `request.actor` may take `request.action` on `request.resource`.
    /// A deny is a decision (`Ok`), not an error.
    pub async fn decide(&self, request: &DecisionRequest) -> Result<DecisionResponse, ClientError> {
        let (status, body) = self
            .http
            .send("POST", "/actions", Some(to_json(request)?))
            .await?;
        if status != 200 && status != 403 {
            return Err(status_error(status, &body));
        }
        let decision: DecisionResponse = parse(&body)?;
        let allowed = decision.decision == zt_contract::Decision::Allow;
        if decision.ok != allowed || (status == 200) != allowed {
            return Err(ClientError::Malformed(format!(
                "status {status}, ok {}, decision {}",
                decision.ok,
                decision.decision.as_str()
            )));
        }
        if decision.reason.trim().is_empty() {
            return Err(ClientError::Malformed("empty reason".into()));
        }
        if !decision.hash_matches() {
            return Err(ClientError::Evidence(
                "current_hash does not match the answer".into(),
            ));
        }
        Ok(decision)
    }

    /// Registers an agent (admin). The response carries the agent's token when the agent is
    /// new.
    pub async fn register_agent(&self, actor: &str) -> Result<RegisterAgentResponse, ClientError> {
        let body = to_json(&RegisterAgentRequest {
            actor: actor.into(),
            ..RegisterAgentRequest::default()
        })?;
        self.expect("POST", "/agents", Some(body), &[200, 201])
            .await
    }

    /// Issues a new token for an agent, revoking the old one (admin).
    pub async fn rotate_token(&self, actor: &str) -> Result<TokenResponse, ClientError> {
        let path = format!("/agents/{actor}/token");
        self.expect("POST", &path, None, &[200]).await
    }

    /// Registers `actor` if needed and returns a working token for it: the one issued at
    /// registration, or a fresh one (rotating) if the agent already existed (admin).
    pub async fn agent_token(&self, actor: &str) -> Result<String, ClientError> {
        match self.register_agent(actor).await?.token {
            Some(token) => Ok(token),
            None => Ok(self.rotate_token(actor).await?.token),
        }
    }

    /// Approves a pending policy proposal (admin; a different admin than its proposer).
    pub async fn approve_proposal(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!("/policies/proposals/{id}/approve");
        self.expect("POST", &path, None, &[200]).await
    }

    /// Proposes allowing `action`: active at once with a single admin (201), otherwise a
    /// pending proposal awaiting a second admin (202) (admin).
    pub async fn propose_allow(
        &self,
        action: &str,
        reason: &str,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let body = to_json(&AllowRuleRequest {
            action: action.into(),
            reason: reason.into(),
        })?;
        let (status, answer) = self
            .http
            .send("POST", "/policies/allow", Some(body))
            .await?;
        if status != 201 && status != 202 {
            return Err(status_error(status, &answer));
        }
        Ok((status, parse(&answer)?))
    }

    /// Adds an allow rule to the active policy (admin).
    pub async fn allow_action(
        &self,
        action: &str,
        reason: &str,
    ) -> Result<AllowRuleResponse, ClientError> {
        let body = to_json(&AllowRuleRequest {
            action: action.into(),
            reason: reason.into(),
        })?;
        self.expect("POST", "/policies/allow", Some(body), &[200, 201])
            .await
    }

    /// The published verification keys.
    pub async fn audit_keys(&self) -> Result<Jwks, ClientError> {
        self.expect("GET", "/audit/keys", None, &[200]).await
    }

    /// The newest record.
    pub async fn audit_head(&self) -> Result<AuditHead, ClientError> {
        self.expect("GET", "/audit/head", None, &[200]).await
    }

    /// Up to `limit` stored record lines from `from`.
    pub async fn audit_records(&self, from: u64, limit: usize) -> Result<Vec<String>, ClientError> {
        let path = format!("/audit/records?from={from}&limit={limit}");
        let (status, body) = self.http.send("GET", &path, None).await?;
        if status != 200 {
            return Err(status_error(status, &body));
        }
        let text = std::str::from_utf8(&body).map_err(|e| ClientError::Malformed(e.to_string()))?;
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        ok: &[u16],
    ) -> Result<T, ClientError> {
        let (status, answer) = self.http.send(method, path, body).await?;
        if !ok.contains(&status) {
            return Err(status_error(status, &answer));
        }
        parse(&answer)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes, ClientError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ClientError::Malformed(e.to_string()))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Malformed(e.to_string()))
}

fn status_error(status: u16, body: &[u8]) -> ClientError {
    ClientError::Status {
        status,
        body: String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}
