//! What `zt audit verify` says about execution receipts (see `zt_contract::receipts`): how
//! many were checked, and the broker decisions left without one (orphans: a broker that died,
//! or one still running), which `zt audit orphans` lists.

use serde_json::{json, Value};
use zt_contract::receipts::{Orphan, ReceiptChecker, ReceiptProblem};
use zt_contract::{VerifyCheck, VerifyError};

/// Receipts checked and decisions still without one, at the end of a valid log.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReceiptSummary {
    /// Receipt records checked.
    pub receipts: u64,
    /// Broker allow decisions without a receipt, oldest first.
    pub orphans: Vec<Orphan>,
}

impl ReceiptSummary {
    /// The summary of a finished checker.
    pub(crate) fn of(checker: &ReceiptChecker) -> Self {
        Self {
            receipts: checker.receipts(),
            orphans: checker.orphans(),
        }
    }

    /// The `--json` form.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "receipts": self.receipts,
            "orphans": self.orphans.iter().map(orphan_json).collect::<Vec<_>>(),
        })
    }

    /// A warning line for the text report, when there are orphans.
    pub(crate) fn warning(&self) -> Option<String> {
        let seqs: Vec<String> = self
            .orphans
            .iter()
            .take(10)
            .map(|o| o.seq.to_string())
            .collect();
        match self.orphans.len() {
            0 => None,
            n => Some(format!(
                "warning: {n} broker allow decision(s) have no execution receipt (seq {}{}); \
                 `zt audit orphans` lists them",
                seqs.join(", "),
                if n > seqs.len() { ", ..." } else { "" }
            )),
        }
    }
}

/// One orphan as JSON.
pub(crate) fn orphan_json(orphan: &Orphan) -> Value {
    json!({
        "seq": orphan.seq,
        "actor": orphan.actor,
        "action": orphan.action,
        "timestamp": orphan.timestamp,
    })
}

/// The verification error for a bad receipt at record `index` (a log read from genesis, so
/// its `seq` is its index).
pub(crate) fn receipt_error(index: u64, problem: ReceiptProblem) -> VerifyError {
    VerifyError {
        index,
        seq: Some(index),
        check: VerifyCheck::Receipt,
        expected: problem.expected,
        found: problem.found,
        position: format!("seq {index}"),
    }
}
