//! Wire types of the decision API and the audit record, as existing ZT-Infra clients speak them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `kms_signature.algorithm` for a real ECDSA P-256 signature over the record's SHA-256 digest.
pub const ALGORITHM_ECDSA_SHA_256: &str = "ECDSA_SHA_256";
/// `kms_signature.algorithm` that marks a fake signature (never accepted by the verifier).
pub const ALGORITHM_MOCK: &str = "MOCK_ECDSA_SHA_256";
/// `kms_signature.algorithm` that marks no signature (never accepted by the verifier).
pub const ALGORITHM_NONE: &str = "none";

/// The largest request body the control plane reads, in bytes (a larger one is refused with
/// 413, unread); a gateway denies a call whose decision request would be larger without asking.
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024;

/// Error given when `actor` is missing or empty.
pub const ERROR_ACTOR_REQUIRED: &str = "actor is required";
/// Error given when `action` is missing or empty.
pub const ERROR_ACTION_REQUIRED: &str = "action is required";

/// `POST /actions` request body. Missing strings read as empty; wrong types are rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionRequest {
    /// Who asks (an agent registered with the control plane).
    #[serde(default)]
    pub actor: String,
    /// The dotted action name, e.g. `aws.ec2.terminate_instances`.
    #[serde(default)]
    pub action: String,
    /// The resource acted on; absent means `""`.
    #[serde(default)]
    pub resource: String,
    /// Extension: attributes of the resource (`type`, `environment`) for policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<std::collections::BTreeMap<String, String>>,
    /// Extension: request context (environment, approval id, tool arguments, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// Extension: client nonce for replay protection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Extension: the caller is an execution broker; an allow then carries the sandbox profile
    /// the deciding permit grants (docs/BROKER.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sandbox: bool,
}

impl DecisionRequest {
    /// The digest of its context as its decision record carries it (`context_sha256`): the
    /// SHA-256 of the context's canonical JSON, lowercase hex. The control plane writes it;
    /// a client checks the answer against it.
    pub fn context_sha256(&self) -> Option<String> {
        self.context.as_ref().map(|context| {
            crate::Digest32::sha256(crate::canonical::canonical_object(context).as_bytes()).to_hex()
        })
    }

    /// The digest of its resource attributes as its decision record carries it
    /// (`resource_attributes_sha256`): the SHA-256 of their canonical JSON object, lowercase
    /// hex; none when it sent none (an empty object decides as none).
    pub fn resource_attributes_sha256(&self) -> Option<String> {
        let attributes = self
            .resource_attributes
            .as_ref()
            .filter(|a| !a.is_empty())?;
        let object: serde_json::Map<String, serde_json::Value> = attributes
            .iter()
            .map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone())))
            .collect();
        Some(
            crate::Digest32::sha256(crate::canonical::canonical_object(&object).as_bytes())
                .to_hex(),
        )
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The protected work may run.
    Allow,
    /// The protected work must not run (the default: fail closed).
    #[default]
    Deny,
}

impl Decision {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// What kind of event an audit record is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An answer to `POST /actions`.
    #[default]
    Decision,
    /// A change made through the admin API (registry, policy).
    Admin,
    /// A periodic count of requests refused before any decision (malformed, too large, ...).
    Rejections,
    /// A broker's receipt for the command an allow decision let it run (docs/BROKER.md).
    Execution,
}

/// The signature envelope of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsSignature {
    /// `ECDSA_SHA_256` for real signatures.
    pub algorithm: String,
    /// Names the key in `GET /audit/keys`.
    pub key_id: String,
    /// Base64 of the DER-encoded ECDSA signature over the 32-byte `current_hash`.
    pub signature: String,
}

/// The `audit` object of a decision response: exactly these four keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEnvelope {
    /// When the record was sequenced (RFC 3339 UTC, milliseconds, `Z`).
    pub timestamp: String,
    /// `current_hash` of the record before this one (64 zeros for the first).
    pub previous_hash: String,
    /// SHA-256 of the canonical JSON of this record's body.
    pub current_hash: String,
    /// Signature over `current_hash`.
    pub kms_signature: KmsSignature,
}

/// The hashed body of an audit record. Fields are declared in sorted order so that serde_json
/// writes canonical JSON directly; a test holds this equal to [`crate::canonical::canonical_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    /// The action asked for (or the admin operation).
    pub action: String,
    /// Who asked.
    pub actor: String,
    /// Whether the server authenticated `actor` (false under `--auth none`).
    pub authenticated: bool,
    /// The actor the request body claimed, when it differs from the authenticated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_actor: Option<String>,
    /// SHA-256 of the canonical JSON of the request's `context`, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_sha256: Option<String>,
    /// Counts by rejection cause, on [`RecordKind::Rejections`] records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<std::collections::BTreeMap<String, u64>>,
    /// `allow` or `deny`.
    pub decision: Decision,
    /// The receipt, on [`RecordKind::Execution`] records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<crate::execution::ExecutionReceipt>,
    /// On a custody key rotation record: the outgoing key's endorsement of the incoming one
    /// (see [`crate::key_rotation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rotation: Option<crate::key_rotation::KeyRotation>,
    /// What kind of event this is.
    pub kind: RecordKind,
    /// Ids of the policies that decided (empty when no policy matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Hash of the policy set that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// `current_hash` of the previous record.
    pub previous_hash: String,
    /// Human reason for the decision; never empty.
    pub reason: String,
    /// Client nonce, when the request sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The resource acted on.
    pub resource: String,
    /// SHA-256 of the canonical JSON of the request's resource attributes, when it sent any:
    /// they decide as the context does, so the record binds them as it binds the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_attributes_sha256: Option<String>,
    /// The sandbox profile: granted, on a broker's allow decision; run under, on a receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::SandboxProfile>,
    /// Position in the chain, from 0, contiguous.
    pub seq: u64,
    /// When the record was sequenced.
    pub timestamp: String,
}

/// The extension object of a decision response: every hashed record field that is not a
/// top-level contract field, so a client can recompute `current_hash` on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Always `decision` on a decision response.
    pub kind: RecordKind,
    /// The record's position in the chain.
    pub seq: u64,
    /// Whether the actor was authenticated.
    pub authenticated: bool,
    /// The actor the request claimed, when it differs from the authenticated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_actor: Option<String>,
    /// Ids of the policies that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Hash of the policy set that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// Echo of the request's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Digest of the request's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_sha256: Option<String>,
    /// Digest of the request's resource attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_attributes_sha256: Option<String>,
    /// The sandbox profile granted to a broker (allow decisions that asked for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::SandboxProfile>,
}

/// `POST /actions` response body (200 on allow, 403 on deny).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionResponse {
    /// `decision == allow`.
    pub ok: bool,
    /// Echo of the request.
    pub actor: String,
    /// Echo of the request.
    pub action: String,
    /// Echo of the request (`""` when absent).
    pub resource: String,
    /// `allow` or `deny`.
    pub decision: Decision,
    /// Why; never empty.
    pub reason: String,
    /// Proof that the decision was logged.
    pub audit: AuditEnvelope,
    /// Extension fields of the hashed record.
    pub evidence: Evidence,
}

impl DecisionResponse {
    /// Rebuilds the hashed record body from the response, so a client can check
    /// `audit.current_hash` without asking the server.
    pub fn record_body(&self) -> RecordBody {
        RecordBody {
            action: self.action.clone(),
            actor: self.actor.clone(),
            authenticated: self.evidence.authenticated,
            claimed_actor: self.evidence.claimed_actor.clone(),
            context_sha256: self.evidence.context_sha256.clone(),
            counts: None,
            decision: self.decision,
            execution: None,
            key_rotation: None,
            kind: self.evidence.kind,
            policies: self.evidence.policies.clone(),
            policy_version: self.evidence.policy_version.clone(),
            previous_hash: self.audit.previous_hash.clone(),
            reason: self.reason.clone(),
            request_id: self.evidence.request_id.clone(),
            resource: self.resource.clone(),
            resource_attributes_sha256: self.evidence.resource_attributes_sha256.clone(),
            sandbox: self.evidence.sandbox.clone(),
            seq: self.evidence.seq,
            timestamp: self.audit.timestamp.clone(),
        }
    }

    /// The answer to a committed decision record, the inverse of
    /// [`DecisionResponse::record_body`]: every hashed field is echoed, the four envelope keys
    /// in `audit`, the extensions in `evidence`.
    pub fn from_record(
        body: RecordBody,
        current_hash: &crate::Digest32,
        kms_signature: KmsSignature,
    ) -> Self {
        DecisionResponse {
            ok: body.decision == Decision::Allow,
            actor: body.actor,
            action: body.action,
            resource: body.resource,
            decision: body.decision,
            reason: body.reason,
            audit: AuditEnvelope {
                timestamp: body.timestamp,
                previous_hash: body.previous_hash,
                current_hash: current_hash.to_hex(),
                kms_signature,
            },
            evidence: Evidence {
                kind: body.kind,
                seq: body.seq,
                authenticated: body.authenticated,
                claimed_actor: body.claimed_actor,
                policies: body.policies,
                policy_version: body.policy_version,
                request_id: body.request_id,
                context_sha256: body.context_sha256,
                resource_attributes_sha256: body.resource_attributes_sha256,
                sandbox: body.sandbox,
            },
        }
    }

    /// True when `audit.current_hash` is the hash of the record this response describes.
    pub fn hash_matches(&self) -> bool {
        self.record_body()
            .hash()
            .is_ok_and(|hash| hash.to_hex() == self.audit.current_hash)
    }
}

/// Every error body: `{"ok": false, "error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Always false.
    pub ok: bool,
    /// What went wrong, for a human.
    pub error: String,
}

/// `POST /agents` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterAgentRequest {
    /// The actor name to register.
    #[serde(default)]
    pub actor: String,
    /// Optional attribute for policy: what kind of agent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// Optional attribute for policy: its workspace or team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Optional attribute for policy: how far it is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_level: Option<String>,
}

/// `POST /agents` response (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterAgentResponse {
    /// True.
    pub ok: bool,
    /// The registered actor.
    pub actor: String,
    /// True.
    pub registered: bool,
    /// The agent's bearer token, shown only when the agent is first registered (only its hash
    /// is stored); rotate it with `POST /agents/{actor}/token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /agents/{actor}/token` response: the new token; the old one no longer works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// True.
    pub ok: bool,
    /// The agent.
    pub actor: String,
    /// The new bearer token, shown once.
    pub token: String,
}

/// `POST /policies/allow` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowRuleRequest {
    /// Exact action or trailing-`*` prefix.
    #[serde(default)]
    pub action: String,
    /// Reason returned when the rule allows; a default is used when empty.
    #[serde(default)]
    pub reason: String,
}

/// `POST /policies/allow` response (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowRuleResponse {
    /// True.
    pub ok: bool,
    /// The action pattern now allowed.
    pub action: String,
    /// `allow`.
    pub decision: Decision,
    /// The policy version after the change (extension).
    pub policy_version: String,
}

/// `GET /audit/head` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// True.
    pub ok: bool,
    /// Sequence number of the newest record (absent on an empty log).
    pub seq: Option<u64>,
    /// Hash of the newest record (64 zeros on an empty log).
    pub current_hash: String,
    /// Number of records in the log.
    pub records: u64,
}
