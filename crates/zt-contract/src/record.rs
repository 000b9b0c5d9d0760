//! An audit record's construction and hashing, in one place: the draft a caller hands the
//! ledger (a record without its place in the chain) with one constructor per kind of event,
//! the body it becomes once sequenced, and that body's canonical JSON and hash.

use std::collections::BTreeMap;

use crate::vocabulary::{
    AdminAction, REASON_ADMIN_ACCESS_REFUSED, REJECTIONS_ACTION, SERVER_ACTOR,
};
use crate::{Decision, Digest32, RecordBody, RecordKind};

/// Room for a decision record's canonical JSON (about 600 bytes) without growing.
const CANONICAL_CAPACITY: usize = 1024;

/// A record before sequencing: the ledger adds `seq`, `timestamp` and `previous_hash`.
/// The default is a deny decision with nothing filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordDraft {
    /// What kind of event.
    pub kind: RecordKind,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub resource: String,
    /// The outcome.
    pub decision: Decision,
    /// Why; never empty.
    pub reason: String,
    /// Whether `actor` was authenticated.
    pub authenticated: bool,
    /// The actor the request claimed, when it differs from the authenticated one.
    pub claimed_actor: Option<String>,
    /// Ids of the policies that decided.
    pub policies: Option<Vec<String>>,
    /// The policy version that decided.
    pub policy_version: Option<String>,
    /// The client's nonce.
    pub request_id: Option<String>,
    /// Digest of the request context.
    pub context_sha256: Option<String>,
    /// Digest of the request's resource attributes.
    pub resource_attributes_sha256: Option<String>,
    /// Counts, on rejection summaries.
    pub counts: Option<BTreeMap<String, u64>>,
    /// The sandbox profile: granted (broker decisions) or run under (receipts).
    pub sandbox: Option<crate::SandboxProfile>,
    /// The receipt, on execution records.
    pub execution: Option<crate::ExecutionReceipt>,
    /// The endorsement, on custody key rotation records.
    pub key_rotation: Option<crate::KeyRotation>,
}

impl RecordDraft {
    /// The record of a decision (`POST /actions`, AuthZEN): `actor` asked for `action` on
    /// `resource`, and got `decision` for `reason`. The optional fields are set with the
    /// `with_*` methods.
    pub fn decision(
        actor: String,
        authenticated: bool,
        action: String,
        resource: String,
        decision: Decision,
        reason: String,
    ) -> Self {
        Self {
            kind: RecordKind::Decision,
            actor,
            action,
            resource,
            decision,
            reason,
            authenticated,
            ..Self::default()
        }
    }

    /// The record of an admin change by `actor` (an admin, or the control plane itself),
    /// committed before the change is applied.
    pub fn admin(
        actor: impl Into<String>,
        authenticated: bool,
        action: AdminAction,
        resource: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            kind: RecordKind::Admin,
            actor: actor.into(),
            action: action.as_str().to_string(),
            resource: resource.into(),
            decision: Decision::Allow,
            reason: reason.into(),
            authenticated,
            ..Self::default()
        }
    }

    /// The record of an authenticated agent's credential refused on an admin `route`
    /// (`METHOD /path`).
    pub fn admin_access_refused(actor: String, route: String) -> Self {
        Self {
            kind: RecordKind::Admin,
            actor,
            action: AdminAction::Access.as_str().to_string(),
            resource: route,
            decision: Decision::Deny,
            reason: REASON_ADMIN_ACCESS_REFUSED.to_string(),
            authenticated: true,
            ..Self::default()
        }
    }

    /// A summary of requests refused before any decision, counted by cause.
    pub fn rejections(counts: BTreeMap<String, u64>) -> Self {
        let total: u64 = counts.values().sum();
        Self {
            kind: RecordKind::Rejections,
            actor: SERVER_ACTOR.to_string(),
            action: REJECTIONS_ACTION.to_string(),
            resource: String::new(),
            decision: Decision::Deny,
            reason: format!("{total} requests were refused before any decision"),
            authenticated: true,
            counts: Some(counts),
            ..Self::default()
        }
    }

    /// With the version of the policy set that decided (or that a change concerns).
    pub fn with_policy_version(mut self, policy_version: Option<String>) -> Self {
        self.policy_version = policy_version;
        self
    }

    /// With the ids of the policies that decided (none: the field is left out).
    pub fn with_policies(mut self, policies: Vec<String>) -> Self {
        self.policies = (!policies.is_empty()).then_some(policies);
        self
    }

    /// With the actor the request claimed, when it differs from the authenticated one.
    pub fn with_claimed_actor(mut self, claimed_actor: Option<String>) -> Self {
        self.claimed_actor = claimed_actor;
        self
    }

    /// With the client's nonce.
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    /// The request id this record spends for its actor, if any (see
    /// [`crate::spends_request_id`]).
    pub fn spent_request_id(&self) -> Option<&str> {
        self.request_id
            .as_deref()
            .filter(|id| crate::spends_request_id(id, self.decision, &self.reason))
    }

    /// With the digest of the request's context.
    pub fn with_context_sha256(mut self, context_sha256: Option<String>) -> Self {
        self.context_sha256 = context_sha256;
        self
    }

    /// With the digest of the request's resource attributes.
    pub fn with_resource_attributes_sha256(mut self, digest: Option<String>) -> Self {
        self.resource_attributes_sha256 = digest;
        self
    }

    /// With the sandbox profile a broker decision grants (or a receipt ran under).
    pub fn with_sandbox(mut self, sandbox: Option<crate::SandboxProfile>) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// Places the draft in the chain.
    pub fn into_body(self, seq: u64, timestamp: String, previous_hash: String) -> RecordBody {
        RecordBody {
            action: self.action,
            actor: self.actor,
            authenticated: self.authenticated,
            claimed_actor: self.claimed_actor,
            context_sha256: self.context_sha256,
            counts: self.counts,
            decision: self.decision,
            execution: self.execution,
            key_rotation: self.key_rotation,
            kind: self.kind,
            policies: self.policies,
            policy_version: self.policy_version,
            previous_hash,
            reason: self.reason,
            request_id: self.request_id,
            resource: self.resource,
            resource_attributes_sha256: self.resource_attributes_sha256,
            sandbox: self.sandbox,
            seq,
            timestamp,
        }
    }
}

impl RecordBody {
    /// The canonical JSON of the body: the bytes whose SHA-256 is the record's
    /// `current_hash`. The fields are declared in sorted order, so serde writes canonical
    /// JSON directly (a test holds it equal to [`crate::canonical::canonical_json`]). A body
    /// has string keys only, so serializing cannot fail in practice; callers still treat an
    /// error as fatal to the record (fail closed) rather than assume it.
    pub fn canonical_json(&self) -> Result<String, serde_json::Error> {
        // Into a buffer of a record's size: `to_string` starts at 128 bytes and grows it
        // three times for every record the sealer hashes.
        let mut json = Vec::with_capacity(CANONICAL_CAPACITY);
        serde_json::to_writer(&mut json, self)?;
        String::from_utf8(json).map_err(serde::ser::Error::custom)
    }

    /// The record's `current_hash`: SHA-256 of [`RecordBody::canonical_json`]. The one
    /// definition for typed records; [`crate::record_hash`] is the same rule for a stored
    /// line of unknown shape (every key but `current_hash` and `kms_signature`).
    pub fn hash(&self) -> Result<Digest32, serde_json::Error> {
        self.canonical_json_and_hash().map(|(_, hash)| hash)
    }

    /// The canonical JSON and its hash, for a caller that stores the one and signs the other
    /// (the ledger's sealer).
    pub fn canonical_json_and_hash(&self) -> Result<(String, Digest32), serde_json::Error> {
        let json = self.canonical_json()?;
        let hash = Digest32::sha256(json.as_bytes());
        Ok((json, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_hash_is_the_hash_of_the_stored_line() {
        let draft = RecordDraft::decision(
            "a".into(),
            true,
            "x.y".into(),
            "r".into(),
            Decision::Allow,
            "ok".into(),
        )
        .with_policies(vec!["p".into()])
        .with_request_id(Some("n".into()))
        .with_context_sha256(Some("00".into()))
        .with_policy_version(Some("v".into()));
        let body = draft.into_body(3, "t".into(), crate::GENESIS_HASH.into());
        let json: serde_json::Value =
            serde_json::from_str(&body.canonical_json().unwrap()).unwrap();
        assert_eq!(
            body.canonical_json().unwrap(),
            crate::canonical::canonical_json(&json)
        );
        assert_eq!(
            body.hash().unwrap(),
            crate::record_hash(json.as_object().unwrap())
        );
    }

    #[test]
    fn a_rotation_record_serializes_canonically() {
        let incoming = crate::Jwk::from_uncompressed_p256("new", &[4; 65]).unwrap();
        let after = crate::Digest32::sha256(b"record");
        let bound = Some(after.to_hex());
        for (endorsement, previous_hash) in [
            (None, bound.clone()),
            (Some("c2ln".to_string()), bound),
            (Some("c2ln".to_string()), None),
        ] {
            let mut rotation = crate::KeyRotation::new("old", &incoming, "zt-infra/o", &after);
            rotation.endorsement = endorsement;
            rotation.previous_hash = previous_hash;
            let body = RecordDraft {
                kind: RecordKind::Admin,
                action: AdminAction::AuditKeyRotate.as_str().into(),
                key_rotation: Some(rotation),
                ..RecordDraft::default()
            }
            .into_body(1, "t".into(), crate::GENESIS_HASH.into());
            let json: serde_json::Value =
                serde_json::from_str(&body.canonical_json().unwrap()).unwrap();
            assert_eq!(
                body.canonical_json().unwrap(),
                crate::canonical::canonical_json(&json)
            );
        }
    }

    #[test]
    fn constructors_fill_their_kind() {
        let admin = RecordDraft::admin("alice", true, AdminAction::AgentsRemove, "bot", "gone");
        assert_eq!(
            (admin.kind, admin.action.as_str(), admin.decision),
            (RecordKind::Admin, "zt.admin.agents.remove", Decision::Allow)
        );
        let refused = RecordDraft::admin_access_refused("bot".into(), "GET /agents".into());
        assert_eq!(
            (refused.action.as_str(), refused.decision),
            ("zt.admin.access", Decision::Deny)
        );
        let summary = RecordDraft::rejections([("a".to_string(), 2), ("b".to_string(), 3)].into());
        assert_eq!(
            summary.reason,
            "5 requests were refused before any decision"
        );
        assert_eq!(summary.kind, RecordKind::Rejections);
        let none = RecordDraft::default().with_policies(Vec::new());
        assert_eq!(none.policies, None);
    }
}
