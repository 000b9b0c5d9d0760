//! Verification of a log as the CLI runs it: one pass, a progress bar on large logs, and one
//! report shape for humans and for `--json`. Records are checked in order on the caller's
//! thread; their signatures, with more than one job, on every core (`signatures`).

mod signatures;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use zt_contract::receipts::ReceiptChecker;
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, PublicKeySet, VerifyCheck, VerifyError};

use crate::receipt_report::{receipt_error, ReceiptSummary};
use crate::rotation_report::RotationSummary;
use crate::text::count;
use signatures::SignaturePool;

/// Feeds lines to a [`ChainVerifier`], stopping at the first bad record.
pub(crate) struct Verification<'k> {
    verifier: ChainVerifier<'k>,
    /// The keys signatures are verified with (none when they are skipped).
    keys: Option<&'k PublicKeySet>,
    /// With more than one job: the threads verifying signatures.
    pool: Option<SignaturePool>,
    progress: ProgressBar,
    failure: Option<VerifyError>,
    receipts: ReceiptChecker,
    rotations: RotationSummary,
}

/// The end of a verification.
pub(crate) enum Report {
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
        /// Custody key rotations, endorsed or not.
        rotations: RotationSummary,
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
    pub(crate) fn new(signatures: SignaturePolicy<'k>, total: Option<u64>, quiet: bool) -> Self {
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
        let keys = match signatures {
            SignaturePolicy::Require(keys) => Some(keys),
            SignaturePolicy::DangerousSkip => None,
        };
        Self {
            verifier: ChainVerifier::new(signatures),
            keys,
            pool: None,
            progress,
            failure: None,
            receipts: ReceiptChecker::new(),
            rotations: RotationSummary::default(),
        }
    }

    /// Verifies signatures on up to `jobs` threads (this one included); one job verifies each
    /// signature in turn, on this thread. The report is the same either way.
    pub(crate) fn jobs(mut self, jobs: usize) -> Self {
        self.pool = match self.keys {
            Some(keys) if jobs > 1 => Some(SignaturePool::new(keys, jobs)),
            _ => None,
        };
        self
    }

    /// Checks one line; returns false once a record has failed (stop feeding).
    pub(crate) fn feed(&mut self, line: &str) -> bool {
        if self.failure.is_some() || self.pool.as_ref().is_some_and(SignaturePool::has_failed) {
            return false;
        }
        match self.check(line) {
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

    /// Every check of one record, in log order: the one place where each record is examined.
    /// Its signature is verified here or, with a pool, on another thread.
    fn check(&mut self, line: &str) -> Result<(), VerifyError> {
        let record = self.verifier.parse_line(line)?;
        let signature = self.verifier.check_record_deferred(&record)?;
        let index = self.verifier.checked().saturating_sub(1);
        self.receipts
            .check_record(&record)
            .map_err(|problem| receipt_error(index, problem))?;
        self.rotations.observe(index, &record);
        match (signature, &mut self.pool, self.keys) {
            (Some(signature), Some(pool), _) => pool.submit(signature),
            (Some(signature), None, Some(keys)) => signature.verify(keys)?,
            _ => {}
        }
        Ok(())
    }

    /// `current_hash` of the last record checked in order.
    pub(crate) fn head_hash(&self) -> &str {
        self.verifier.head_hash()
    }

    /// Ends the run; `expected_head` is a trusted head hash the log must end at.
    pub(crate) fn finish(
        mut self,
        expected_head: Option<&str>,
        signatures_checked: bool,
    ) -> Report {
        self.progress.finish_and_clear();
        let late = self.pool.take().and_then(SignaturePool::finish);
        // The lowest bad record, whichever check found it.
        let failure = match (self.failure, late) {
            (Some(a), Some(b)) => Some(if b.index < a.index { b } else { a }),
            (a, b) => a.or(b),
        };
        let error = failure.or_else(|| self.verifier.finish(expected_head).err());
        match error {
            Some(error) => Report::Invalid {
                // The records before the bad one; all of them for a log that ends elsewhere.
                records_checked: if error.check == VerifyCheck::Head {
                    self.verifier.checked()
                } else {
                    error.index
                },
                error,
            },
            None => Report::Valid {
                records: self.verifier.checked(),
                head_hash: self.verifier.head_hash().to_string(),
                signatures_checked,
                receipts: ReceiptSummary::of(&self.receipts),
                rotations: self.rotations,
            },
        }
    }
}

impl Report {
    /// The receipts summary of a valid log.
    pub(crate) fn receipts(&self) -> Option<&ReceiptSummary> {
        match self {
            Report::Valid { receipts, .. } => Some(receipts),
            Report::Invalid { .. } => None,
        }
    }

    /// True when the log verified.
    pub(crate) fn is_valid(&self) -> bool {
        matches!(self, Report::Valid { .. })
    }

    /// The `--json` form.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Report::Valid {
                records,
                head_hash,
                signatures_checked,
                receipts,
                rotations,
            } => {
                json!({"valid": true, "records": records, "head_hash": head_hash, "signatures_checked": signatures_checked, "execution": receipts.to_json(), "key_rotations": rotations.to_json()})
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
    pub(crate) fn to_text(&self) -> String {
        match self {
            Report::Valid {
                records,
                head_hash,
                signatures_checked,
                receipts,
                rotations,
            } => {
                let sigs = if *signatures_checked {
                    "every hash, link, sequence number and signature checks out"
                } else {
                    "every hash, link and sequence number checks out; SIGNATURES WERE NOT CHECKED"
                };
                let records = count(*records, "record", "records");
                let mut text = format!("valid: {records}, head {head_hash}: {sigs}");
                for line in rotations.lines().into_iter().chain(receipts.warning()) {
                    text.push('\n');
                    text.push_str(&line);
                }
                text
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

#[cfg(test)]
mod tests;
