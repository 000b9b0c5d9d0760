//! The Rust SDK of ZT-Infra: ask the control plane before protected work, and fail closed.
//!
//! [`ControlPlane::decide`] returns a decision only when the answer is complete: a 200 or 403
//! status, a well-formed body whose `ok` agrees with `decision`, audit evidence whose
//! `current_hash` recomputes from the answer's own fields and that echoes the request's
//! `request_id` (a random 128-bit one is sent when the caller gives none), and, with
//! [`PinnedKeys`], a `kms_signature` that verifies with a pinned key. Anything else is an error.
//!
//! Protected work runs through [`ControlPlane::guarded`]: it receives an [`Allowed`] proof,
//! which only an allow decision produces, so deny and error paths cannot reach it.
//!
//! [`ControlPlane::from_env`] reads `ZT_CONTROL_PLANE_URL`, `ZT_ACTOR` and `ZT_TOKEN`;
//! [`ControlPlaneBuilder`] sets the same explicitly.
//!
//! ```no_run
//! # async fn run() -> Result<(), zt_client::ClientError> {
//! use zt_client::{ControlPlane, Guarded};
//! let plane = ControlPlane::from_env()?;
//! let request = plane.request("github.create_issue", "octo/repo");
//! match plane.guarded(&request, |allowed| async move { allowed.decision().evidence.seq }).await {
//!     Guarded::Executed { result, .. } => println!("ran, recorded at seq {result}"),
//!     Guarded::Skipped { cause, .. } => println!("not run: {cause:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! This is the one HTTP client of the project: the CLI's audit, bench and demo commands use it
//! too, so the answer cap, the timeout, TLS and the encoding of `/agents/{actor}` paths are
//! decided here once.

mod binding;
mod builder;
mod guarded;
mod http;
pub mod names;
mod path;
mod pinned;
mod request_id;
mod tls;
mod token_file;
mod url;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zt_contract::{
    AllowRuleRequest, AllowRuleResponse, AuditHead, CheckpointKeyBody, ConsistencyBody,
    DecisionRequest, DecisionResponse, InclusionBody, Jwks, ReceiptRequest, ReceiptResponse,
    RegisterAgentRequest, RegisterAgentResponse, TokenResponse,
};

pub use builder::{ControlPlaneBuilder, DEFAULT_URL, ENV_ACTOR, ENV_CONTROL_PLANE_URL, ENV_TOKEN};
pub use guarded::{Allowed, Authorization, Guarded, SkipCause};
use http::HttpClient;
pub use pinned::{read_jwks_file, PinnedKeys, PinnedKeysError};
pub use request_id::new_request_id;
pub use tls::{TlsError, TlsOptions};
pub use token_file::{read_admin_token, TokenFileError};
pub use url::{BaseUrl, UrlError};

/// Most bytes read from one answer (16 MiB): a page of 10,000 audit records fits.
pub const DEFAULT_MAX_ANSWER: usize = 16 << 20;
/// Time allowed for one request by default, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no decision could be obtained. Every variant means: do not run the protected work.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an `http(s)://host:port` base URL.
    #[error("invalid control plane url: {0}")]
    BadUrl(#[from] UrlError),
    /// The TLS options could not be used.
    #[error(transparent)]
    TlsConfig(#[from] TlsError),
    /// The TLS handshake failed (untrusted certificate, wrong name, refused client certificate).
    #[error("tls handshake with {0}")]
    Tls(String),
    /// No connection, or the connection broke.
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    /// No answer within the timeout.
    #[error("control plane did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer is larger than the cap.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
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

impl ClientError {
    /// The HTTP status of a refused call, if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How a client connects: timeout, answer cap, TLS.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed for one request, connecting included.
    pub timeout: Duration,
    /// Most bytes read from one answer.
    pub max_answer: usize,
    /// Trust and client certificate for `https://` URLs.
    pub tls: TlsOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_answer: DEFAULT_MAX_ANSWER,
            tls: TlsOptions::default(),
        }
    }
}

/// A connection to one control plane.
#[derive(Clone)]
pub struct ControlPlane {
    http: HttpClient,
    /// Asked for when a request's `actor` is empty.
    actor: Option<String>,
    /// When set, every decision's signature must verify with one of these keys.
    pinned: Option<Arc<PinnedKeys>>,
    /// Whether a random `request_id` is sent when a request has none.
    send_request_id: bool,
}

// Leaves out the HTTP client, which holds the bearer token.
impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("actor", &self.actor)
            .field("send_request_id", &self.send_request_id)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A client for `base_url` (e.g. `http://127.0.0.1:3000`) with a 5 s timeout.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// A client with an explicit per-request timeout.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let options = ClientOptions {
            timeout,
            ..ClientOptions::default()
        };
        Self::connect(&base_url.parse()?, &options)
    }

    /// A client for `base_url` with these options. TLS options need an `https://` URL, and an
    /// `https://` URL needs a trust file (`options.tls.ca`).
    pub fn connect(base_url: &BaseUrl, options: &ClientOptions) -> Result<Self, ClientError> {
        let tls = match (base_url.is_tls(), options.tls.is_empty()) {
            (false, true) => None,
            (false, false) => return Err(TlsError::NotHttps.into()),
            (true, _) => Some(options.tls.client_config()?),
        };
        Ok(Self {
            http: HttpClient::new(base_url.clone(), options.timeout, options.max_answer, tls)?,
            actor: None,
            pinned: None,
            send_request_id: true,
        })
    }

    /// A client configured from `ZT_CONTROL_PLANE_URL` (default `http://127.0.0.1:3000`),
    /// `ZT_ACTOR` and `ZT_TOKEN`; [`ControlPlaneBuilder::from_env`] to change more.
    pub fn from_env() -> Result<Self, ClientError> {
        ControlPlaneBuilder::from_env().build()
    }

    /// Explicit settings, starting from none.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// This client, checking every decision's signature against `keys`.
    pub fn with_pinned_keys(mut self, keys: PinnedKeys) -> Self {
        self.pinned = Some(Arc::new(keys));
        self
    }

    /// The agent requests with an empty `actor` are asked for (`ZT_ACTOR`).
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// A decision request for `action` on `resource` as this client's agent.
    pub fn request(&self, action: &str, resource: &str) -> DecisionRequest {
        DecisionRequest {
            actor: self.actor.clone().unwrap_or_default(),
            action: action.to_string(),
            resource: resource.to_string(),
            ..DecisionRequest::default()
        }
    }

    /// This client, presenting `token` (an agent token for `decide`, an admin token for the
    /// admin and audit-record calls) as `Authorization: Bearer`.
    pub fn with_bearer(mut self, token: &str) -> Result<Self, ClientError> {
        self.http.set_bearer(token)?;
        Ok(self)
    }

    /// Asks whether `request.actor` may take `request.action` on `request.resource`.
    /// A deny is a decision (`Ok`), not an error. An empty `actor` is the client's own
    /// (`ZT_ACTOR`), when it has one; a missing `request_id` is a fresh random one.
    pub async fn decide(&self, request: &DecisionRequest) -> Result<DecisionResponse, ClientError> {
        let request = self.complete(request)?;
        let (status, body) = self
            .http
            .send("POST", "/actions", Some(to_json(&*request)?))
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
        binding::answers(&request, &decision)?;
        if let Some(keys) = &self.pinned {
            keys.verify(&decision)?;
        }
        Ok(decision)
    }

    /// Appends an execution broker's receipt for one of its allow decisions
    /// (`POST /executions`, agent credentials); the answer's hash is checked.
    pub async fn submit_receipt(
        &self,
        request: &ReceiptRequest,
    ) -> Result<ReceiptResponse, ClientError> {
        let answer: ReceiptResponse = self
            .expect("POST", "/executions", Some(to_json(request)?), &[201])
            .await?;
        if !answer.hash_matches() || !answer.ok {
            return Err(ClientError::Evidence(
                "the receipt's current_hash does not match its record".into(),
            ));
        }
        Ok(answer)
    }

    /// `request` with the client's defaults filled in: its actor, a fresh request id.
    fn complete<'r>(
        &self,
        request: &'r DecisionRequest,
    ) -> Result<Cow<'r, DecisionRequest>, ClientError> {
        let default_actor = self.actor.as_ref().filter(|_| request.actor.is_empty());
        let new_id = self.send_request_id && request.request_id.is_none();
        if default_actor.is_none() && !new_id {
            return Ok(Cow::Borrowed(request));
        }
        let mut owned = request.clone();
        if let Some(actor) = default_actor {
            owned.actor.clone_from(actor);
        }
        if new_id {
            owned.request_id = Some(new_request_id()?);
        }
        Ok(Cow::Owned(owned))
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
        let path = format!("/agents/{}/token", path::segment(actor));
        self.expect("POST", &path, None, &[200]).await
    }

    /// Removes an agent and revokes its token (admin).
    pub async fn remove_agent(&self, actor: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!("/agents/{}", path::segment(actor));
        self.expect("DELETE", &path, None, &[200]).await
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
        let path = format!("/policies/proposals/{}/approve", path::segment(id));
        self.expect("POST", &path, None, &[200]).await
    }

    /// Withdraws a pending policy proposal (admin; its proposer or any other admin).
    pub async fn withdraw_proposal(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!("/policies/proposals/{}", path::segment(id));
        self.expect("DELETE", &path, None, &[200]).await
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

    /// The active policy set: `{"policy_version", "policies", "cedar"}` (admin).
    pub async fn active_policy(&self) -> Result<serde_json::Value, ClientError> {
        self.expect("GET", "/policies", None, &[200]).await
    }

    /// Files a whole Cedar policy set as a proposal; returns the proposal (admin).
    pub async fn propose_cedar(&self, cedar: &str) -> Result<serde_json::Value, ClientError> {
        let body = to_json(&serde_json::json!({ "cedar": cedar }))?;
        self.expect("POST", "/policies/proposals", Some(body), &[201])
            .await
    }

    /// `GET /health`, whatever its status (a failed audit log answers 503 with the same shape).
    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        let (status, body) = self.http.send("GET", "/health", None).await?;
        if status != 200 && status != 503 {
            return Err(status_error(status, &body));
        }
        parse(&body)
    }

    /// Sends one decision request body as it is and returns only the status, without the
    /// checks of [`ControlPlane::decide`]: for load generation, never to gate work.
    pub async fn post_action_status(&self, body: Bytes) -> Result<u16, ClientError> {
        let (status, _) = self.http.send("POST", "/actions", Some(body)).await?;
        Ok(status)
    }

    /// The published verification keys.
    pub async fn audit_keys(&self) -> Result<Jwks, ClientError> {
        self.expect("GET", "/audit/keys", None, &[200]).await
    }

    /// The newest record.
    pub async fn audit_head(&self) -> Result<AuditHead, ClientError> {
        self.expect("GET", "/audit/head", None, &[200]).await
    }

    /// Up to `limit` stored record lines from `from` (admin, unless the server runs with
    /// `--auth none`).
    pub async fn audit_records(&self, from: u64, limit: usize) -> Result<Vec<String>, ClientError> {
        let text = self
            .text(&format!("/audit/records?from={from}&limit={limit}"))
            .await?;
        Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect())
    }

    /// The log's signed checkpoint, a C2SP signed note (`fresh`: signed at the current size).
    pub async fn audit_checkpoint(&self, fresh: bool) -> Result<String, ClientError> {
        let path = if fresh {
            "/audit/checkpoint?fresh=1"
        } else {
            "/audit/checkpoint"
        };
        self.text(path).await
    }

    /// The log's origin and checkpoint verification key.
    pub async fn checkpoint_key(&self) -> Result<CheckpointKeyBody, ClientError> {
        self.expect("GET", "/audit/checkpoint/key", None, &[200])
            .await
    }

    /// The proof that the tree of `from` records is a prefix of the tree of `to`.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyBody, ClientError> {
        let path = format!("/audit/proof/consistency?from={from}&to={to}");
        self.expect("GET", &path, None, &[200]).await
    }

    /// The proof that record `seq` is in the tree of `size` records.
    pub async fn inclusion_proof(&self, seq: u64, size: u64) -> Result<InclusionBody, ClientError> {
        let path = format!("/audit/proof/inclusion?seq={seq}&size={size}");
        self.expect("GET", &path, None, &[200]).await
    }

    /// `GET path` as UTF-8 text; any status but 200 is an error.
    async fn text(&self, path: &str) -> Result<String, ClientError> {
        let (status, body) = self.http.send("GET", path, None).await?;
        if status != 200 {
            return Err(status_error(status, &body));
        }
        String::from_utf8(body.to_vec())
            .map_err(|_| ClientError::Malformed(format!("`{path}` is not UTF-8 text")))
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

/// Reads an answer strictly (`zt_contract::strict_json`): an object at the top, no key twice
/// at any depth, and a struct only ever from an object. serde_json alone would read a decision
/// from a bare array of its values in field order, and a guarded call would run its work on
/// it; an answer that can be read two ways is malformed, so the call fails closed.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    let document = zt_contract::strict_json::parse_document(body)
        .map_err(|e| ClientError::Malformed(e.to_string()))?;
    zt_contract::strict_json::from_document(&document)
        .map_err(|e| ClientError::Malformed(e.to_string()))
}

fn status_error(status: u16, body: &[u8]) -> ClientError {
    ClientError::Status {
        status,
        body: String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}
