//! Verification of a log as the CLI runs it: one pass, a progress bar on large logs, and one
//! report shape for humans and for `--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, VerifyCheck, VerifyError};

use crate::text::count;

/// Feeds lines to a [`ChainVerifier`], stopping at the first bad record.
pub struct Verification<'k> {
    verifier: ChainVerifier<'k>,
    progress: ProgressBar,
    failure: Option<VerifyError>,
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
        }
    }

    /// Checks one line; returns false once a record has failed (stop feeding).
    pub fn feed(&mut self, line: &str) -> bool {
        if self.failure.is_some() {
            return false;
        }
        match self.verifier.check_line(line) {
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
            },
        }
    }
}

impl Report {
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
            } => {
                json!({"valid": true, "records": records, "head_hash": head_hash, "signatures_checked": signatures_checked})
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
            } => {
                let sigs = if *signatures_checked {
                    "every hash, link, sequence number and signature checks out"
                } else {
                    "every hash, link and sequence number checks out; SIGNATURES WERE NOT CHECKED"
                };
                let records = count(*records, "record", "records");
                format!("valid: {records}, head {head_hash}: {sigs}")
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
