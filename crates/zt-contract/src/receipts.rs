//! Receipt checking for `zt audit verify`: fed the log record by record (after the chain
//! checks), it remembers each broker's allow decision (an allow that carries a `sandbox`) by
//! `seq`, and checks each `execution` record against it: the decision exists earlier in the
//! log, is an allow of the same actor with the hash the receipt names, has no receipt yet, and
//! granted at least the profile the command ran under. Decisions left without a receipt at the
//! end are the orphans: a broker that died (or is still running).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::execution::ExecutionReceipt;
use crate::sandbox::SandboxProfile;

/// A broker's allow decision that has no receipt (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The decision's `seq`.
    pub seq: u64,
    /// Its actor.
    pub actor: String,
    /// Its action.
    pub action: String,
    /// When it was decided.
    pub timestamp: String,
}

/// What a bad receipt was expected to have, and what it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptProblem {
    /// What a valid receipt has.
    pub expected: String,
    /// What this one has.
    pub found: String,
}

struct Granted {
    orphan: Orphan,
    hash: String,
    sandbox: SandboxProfile,
}

/// The state machine (see the module doc). Memory: one entry per open broker decision, one
/// number per receipt seen.
#[derive(Default)]
pub struct ReceiptChecker {
    open: HashMap<u64, Granted>,
    closed: HashSet<u64>,
    receipts: u64,
}

impl std::fmt::Debug for ReceiptChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptChecker")
            .field("receipts", &self.receipts)
            .finish_non_exhaustive()
    }
}

impl ReceiptChecker {
    /// A checker for a log read from genesis.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one stored record line already known to parse and to chain. Lines that can
    /// concern no receipt (no `sandbox` or `execution` string) are skipped without parsing.
    pub fn check_line(&mut self, line: &str) -> Result<(), ReceiptProblem> {
        if !line.contains("\"sandbox\"") && !line.contains("\"execution\"") {
            return Ok(());
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(record)) => self.check_record(&record),
            _ => Ok(()),
        }
    }

    /// Checks one stored record.
    pub fn check_record(&mut self, record: &Map<String, Value>) -> Result<(), ReceiptProblem> {
        let text = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or_default();
        let sandbox = record
            .get("sandbox")
            .map(|v| serde_json::from_value::<SandboxProfile>(v.clone()));
        let problem = |expected: &str, found: String| ReceiptProblem {
            expected: expected.into(),
            found,
        };
        match text("kind") {
            "decision" => {
                let (Some(seq), Some(Ok(sandbox))) =
                    (record.get("seq").and_then(Value::as_u64), sandbox)
                else {
                    return Ok(());
                };
                if text("decision") == "allow" {
                    let orphan = Orphan {
                        seq,
                        actor: text("actor").into(),
                        action: text("action").into(),
                        timestamp: text("timestamp").into(),
                    };
                    let hash = text("current_hash").into();
                    self.open.insert(
                        seq,
                        Granted {
                            orphan,
                            hash,
                            sandbox,
                        },
                    );
                }
                Ok(())
            }
            "execution" => {
                self.receipts += 1;
                let receipt = record
                    .get("execution")
                    .map(|v| serde_json::from_value::<ExecutionReceipt>(v.clone()));
                let Some(Ok(receipt)) = receipt else {
                    return Err(problem("an `execution` object", "none or malformed".into()));
                };
                let Some(Ok(ran_under)) = sandbox else {
                    return Err(problem("a `sandbox` profile", "none or malformed".into()));
                };
                let seq = receipt.decision_seq;
                if self.closed.contains(&seq) {
                    return Err(problem(
                        "one receipt per decision",
                        format!("a second receipt for decision seq {seq}"),
                    ));
                }
                let Some(granted) = self.open.remove(&seq) else {
                    return Err(problem(
                        "a receipt for an earlier broker allow decision",
                        format!("decision seq {seq}, which is not one"),
                    ));
                };
                self.closed.insert(seq);
                if granted.orphan.actor != text("actor") {
                    return Err(problem(
                        &format!("actor `{}` (the decision's)", granted.orphan.actor),
                        format!("actor `{}`", text("actor")),
                    ));
                }
                if granted.hash != receipt.decision_hash {
                    return Err(problem(&granted.hash, receipt.decision_hash));
                }
                if let Err(e) = ran_under.check_within(&granted.sandbox) {
                    return Err(problem("a profile within the granted one", e.to_string()));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Receipts checked.
    pub fn receipts(&self) -> u64 {
        self.receipts
    }

    /// Broker allow decisions without a receipt, oldest first.
    pub fn orphans(&self) -> Vec<Orphan> {
        let mut orphans: Vec<Orphan> = self.open.values().map(|g| g.orphan.clone()).collect();
        orphans.sort_by_key(|o| o.seq);
        orphans
    }
}

#[cfg(test)]
#[path = "receipts_tests.rs"]
mod tests;
