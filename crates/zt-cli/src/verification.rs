//! Verification of a log as the CLI runs it: one pass, a progress bar on large logs, and one
//! report shape for humans and for `--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use zt_contract::receipts::ReceiptChecker;
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, VerifyCheck, VerifyError};

use crate::receipt_report::{receipt_error, ReceiptSummary};
use crate::text::count;

/// Feeds lines to a [`ChainVerifier`], stopping at the first bad record.
pub struct Verification<'k> {
    verifier: ChainVerifier<'k>,
    progress: ProgressBar,
    failure: Option<VerifyError>,
    receipts: ReceiptChecker,
}

/// The end of a verification.
pub enum Report {
    /// Every record checked out.
    Valid {
        /// Records checked.
        records: u64,
        /// Hash of the last record.
        head_hash: String,
        /// Whether signatures were checked.
        signatures_checked: bool,
        /// Execution receipts checked, and decisions without one.
        receipts: ReceiptSummary,
    },
    /// The first bad record.
    Invalid {
        /// Records that checked out before it.
        records_checked: u64,
        /// What was wrong.
        error: VerifyError,
    },
}

impl<'k> Verification<'k> {
    /// Starts a verification; `total` sizes the progress bar (hidden when `quiet` or when
    /// stderr is not a terminal).
    pub fn new(signatures: SignaturePolicy<'k>, total: Option<u64>, quiet: bool) -> Self {
        let progress = match (quiet, total) {
            (false, Some(n)) if n >= 10_000 => {
                ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr())
            }
            _ => ProgressBar::hidden(),
        };
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} eta {eta}")
        {
            progress.set_style(style);
        }
        Self {
            verifier: ChainVerifier::new(signatures),
            progress,
            failure: None,
            receipts: ReceiptChecker::new(),
        }
    }

    /// Checks one line; returns false once a record has failed (stop feeding).
    pub fn feed(&mut self, line: &str) -> bool {
        if self.failure.is_some() {
            return false;
        }
        let checked = self.verifier.check_line(line).and_then(|()| {
            let index = self.verifier.checked().saturating_sub(1);
            self.receipts
                .check_line(line)
                .map_err(|problem| receipt_error(index, problem))
        });
        match checked {
            Ok(()) => {
                if self.verifier.checked().is_multiple_of(4096) {
                    self.progress.set_position(self.verifier.checked());
                }
                true
            }
            Err(e) => {
                self.failure = Some(e);
                false
            }
        }
    }

    /// Ends the run; `expected_head` is a trusted head hash the log must end at.
    pub fn finish(self, expected_head: Option<&str>, signatures_checked: bool) -> Report {
        self.progress.finish_and_clear();
        let error = self
            .failure
            .or_else(|| self.verifier.finish(expected_head).err());
        match error {
            Some(error) => Report::Invalid {
                records_checked: self.verifier.checked(),
                error,
            },
            None => Report::Valid {
                records: self.verifier.checked(),
                head_hash: self.verifier.head_hash().to_string(),
                signatures_checked,
                receipts: ReceiptSummary::of(&self.receipts),
            },
        }
    }
}

impl Report {
    /// The receipts summary of a valid log.
    pub fn receipts(&self) -> Option<&ReceiptSummary> {
        match self {
            Report::Valid { receipts, .. } => Some(receipts),
            Report::Invalid { .. } => None,
        }
    }

    /// True when the log verified.
    pub fn is_valid(&self) -> bool {
        matches!(self, Report::Valid { .. })
    }

    /// The `--json` form.
    pub fn to_json(&self) -> Value {
        match self {
            Report::Valid {
                records,
                head_hash,
                signatures_checked,
                receipts,
            } => {
                json!({"valid": true, "records": records, "head_hash": head_hash, "signatures_checked": signatures_checked, "execution": receipts.to_json()})
            }
            Report::Invalid {
                records_checked,
                error,
            } => json!({
                "valid": false,
                "records_checked": records_checked,
                "error": {
                    "index": error.index,
                    "seq": error.seq,
                    "check": error.check.as_str(),
                    "expected": error.expected,
                    "found": error.found,
                    "message": error.to_string(),
                }
            }),
        }
    }

    /// The human form.
    pub fn to_text(&self) -> String {
        match self {
            Report::Valid {
                records,
                head_hash,
                signatures_checked,
                receipts,
            } => {
                let sigs = if *signatures_checked {
                    "every hash, link, sequence number and signature checks out"
                } else {
                    "every hash, link and sequence number checks out; SIGNATURES WERE NOT CHECKED"
                };
                let records = count(*records, "record", "records");
                match receipts.warning() {
                    Some(warning) => {
                        format!("valid: {records}, head {head_hash}: {sigs}\n{warning}")
                    }
                    None => format!("valid: {records}, head {head_hash}: {sigs}"),
                }
            }
            Report::Invalid {
                records_checked,
                error,
            } if error.check == VerifyCheck::Head => {
                let records = count(*records_checked, "record", "records");
                format!("INVALID: {error} (the {records} read are consistent, but end elsewhere)")
            }
            Report::Invalid {
                records_checked,
                error,
            } => {
                let records = count(*records_checked, "record", "records");
                format!("INVALID: {error} ({records} before it are valid)")
            }
        }
    }
}
