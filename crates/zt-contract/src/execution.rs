//! The execution receipt: what a broker reports after running (or refusing to run) the command
//! an allow decision let it run. The control plane appends it as a record of kind `execution`
//! that names the decision by `seq` and `current_hash` (docs/BROKER.md).

use serde::{Deserialize, Serialize};

use crate::sandbox::SandboxProfile;
use crate::{KmsSignature, RecordBody};

/// Longest `detail` of a receipt, in bytes.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Most entries in `degraded`.
pub const MAX_DEGRADED: usize = 16;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionOutcome {
    /// It exited on its own, with `exit_code`.
    Exited,
    /// A signal ended it (`signal`): forwarded by the broker, or sent by someone else.
    Signaled,
    /// It never started: the broker refused (a wider profile asked for, a sandbox the kernel
    /// cannot enforce) or could not start it; `detail` says why.
    NotStarted,
}

/// The receipt's part of the hashed record. Fields in sorted order (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionReceipt {
    /// `current_hash` of the allow decision this execution ran under.
    pub decision_hash: String,
    /// `seq` of that decision.
    pub decision_seq: u64,
    /// What the kernel could not enforce, when the operator ran it anyway (`--allow-degraded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Vec<String>>,
    /// Why it did not start, or what else the broker has to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Wall-clock milliseconds from start to end.
    pub duration_ms: u64,
    /// The exit status, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How it ended.
    pub outcome: ExecutionOutcome,
    /// The signal that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Bytes the command wrote to stderr.
    pub stderr_bytes: u64,
    /// SHA-256 of those bytes.
    pub stderr_sha256: String,
    /// Bytes the command wrote to stdout.
    pub stdout_bytes: u64,
    /// SHA-256 of those bytes.
    pub stdout_sha256: String,
}

/// Why a receipt is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// `exit_code`, `signal` and `detail` do not match `outcome`.
    #[error("`outcome` {0} does not match `exit_code`, `signal` and `detail`")]
    Inconsistent(&'static str),
    /// A digest that is not 64 lowercase hex characters.
    #[error("`{0}` is not a sha-256 digest")]
    BadDigest(&'static str),
    /// `detail` or `degraded` too long or holding control characters.
    #[error("`{0}` is too long or holds control characters")]
    BadText(&'static str),
}

impl ExecutionReceipt {
    /// Checks the receipt's own consistency (not its decision: that needs the log).
    pub fn validate(&self) -> Result<(), ReceiptError> {
        let consistent = match self.outcome {
            ExecutionOutcome::Exited => self.exit_code.is_some() && self.signal.is_none(),
            ExecutionOutcome::Signaled => self.exit_code.is_none() && self.signal.is_some(),
            ExecutionOutcome::NotStarted => {
                self.exit_code.is_none() && self.signal.is_none() && self.detail.is_some()
            }
        };
        if !consistent {
            return Err(ReceiptError::Inconsistent(self.outcome.as_str()));
        }
        for (name, digest) in [
            ("decision_hash", &self.decision_hash),
            ("stdout_sha256", &self.stdout_sha256),
            ("stderr_sha256", &self.stderr_sha256),
        ] {
            if crate::Digest32::from_hex(digest).is_none() {
                return Err(ReceiptError::BadDigest(name));
            }
        }
        let bad_text = |s: &str| s.len() > MAX_DETAIL_BYTES || s.chars().any(char::is_control);
        if self.detail.as_deref().is_some_and(bad_text) {
            return Err(ReceiptError::BadText("detail"));
        }
        if let Some(degraded) = &self.degraded {
            if degraded.len() > MAX_DEGRADED || degraded.iter().any(|d| bad_text(d)) {
                return Err(ReceiptError::BadText("degraded"));
            }
        }
        Ok(())
    }

    /// The record's `reason`: how it ended, in words.
    pub fn summary(&self) -> String {
        match (self.outcome, self.exit_code, self.signal, &self.detail) {
            (ExecutionOutcome::Exited, Some(code), _, _) => format!("exited with status {code}"),
            (ExecutionOutcome::Signaled, _, Some(signal), _) => {
                format!("ended by signal {signal}")
            }
            (_, _, _, Some(detail)) => format!("not started: {detail}"),
            _ => "not started".into(),
        }
    }
}

impl ExecutionOutcome {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionOutcome::Exited => "exited",
            ExecutionOutcome::Signaled => "signaled",
            ExecutionOutcome::NotStarted => "not_started",
        }
    }
}

/// `POST /executions` request: a broker's receipt for one allow decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRequest {
    /// The actor the decision was made for (required under `--auth none`; otherwise, when
    /// given, it must be the credential's).
    #[serde(default)]
    pub actor: String,
    /// The profile the command ran under (the granted one, or narrower).
    pub sandbox: SandboxProfile,
    /// What happened.
    pub execution: ExecutionReceipt,
}

/// `POST /executions` response (201): the committed receipt record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptResponse {
    /// True.
    pub ok: bool,
    /// The hashed body of the receipt record.
    pub record: RecordBody,
    /// Its hash.
    pub current_hash: String,
    /// Its signature.
    pub kms_signature: KmsSignature,
}

impl ReceiptResponse {
    /// True when `current_hash` is the hash of `record`.
    pub fn hash_matches(&self) -> bool {
        match serde_json::to_vec(&self.record) {
            Ok(bytes) => crate::Digest32::sha256(&bytes).to_hex() == self.current_hash,
            Err(_) => false,
        }
    }
}
