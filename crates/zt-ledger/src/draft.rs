//! What a caller hands the ledger: a record without its place in the chain.

use std::collections::BTreeMap;

use zt_contract::{Decision, RecordBody, RecordKind};

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
    /// Counts, on rejection summaries.
    pub counts: Option<BTreeMap<String, u64>>,
    /// The sandbox profile: granted (broker decisions) or run under (receipts).
    pub sandbox: Option<zt_contract::SandboxProfile>,
    /// The receipt, on execution records.
    pub execution: Option<zt_contract::ExecutionReceipt>,
}

impl RecordDraft {
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
            kind: self.kind,
            policies: self.policies,
            policy_version: self.policy_version,
            previous_hash,
            reason: self.reason,
            request_id: self.request_id,
            resource: self.resource,
            sandbox: self.sandbox,
            seq,
            timestamp,
        }
    }
}
