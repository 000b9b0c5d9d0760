//! `zt policy validate FILE`: load a policy file exactly as the server would.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use zt_policy::PolicyError;

use super::{error_json, load, message};
use crate::exit::Exit;
use crate::text::count;

/// `zt policy validate` arguments.
#[derive(Args, Debug)]
pub(crate) struct ValidateArgs {
    /// The policy file: `.cedar`, or `.json` in the reference format.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Validates one file: `valid: N policies, version sha256:...` (exit 0), or the error with
/// its line and column (exit 1).
pub(super) fn run(args: &ValidateArgs) -> Exit {
    let file = args.file.display().to_string();
    match load(&args.file) {
        Ok(engine) => {
            if args.json {
                println!(
                    "{}",
                    json!({
                        "valid": true,
                        "file": file,
                        "policies": engine.policy_count(),
                        "version": engine.version(),
                        "warnings": engine.warnings(),
                    })
                );
            } else {
                for warning in engine.warnings() {
                    eprintln!("warning: {warning}");
                }
                println!(
                    "valid: {}, version {}",
                    count(engine.policy_count() as u64, "policy", "policies"),
                    engine.version()
                );
            }
            Exit::Success
        }
        Err(error) => {
            let unreadable = matches!(error, PolicyError::Io { .. });
            let error = anyhow::Error::new(error);
            if args.json {
                println!(
                    "{}",
                    json!({"valid": false, "file": file, "error": error_json(&error)})
                );
            } else if unreadable {
                eprintln!("error: {}", message(&error));
            } else {
                println!("invalid: {}", message(&error));
            }
            Exit::Failure
        }
    }
}
