//! `zt policy`: check a policy file before it is deployed. `validate` loads it as the server
//! would, `test` runs expected decisions against it (like OPA's policy tests), and `diff` shows
//! what changes between two versions, in text and, replaying an audit log, in decisions.

mod diff;
mod replay;
mod test;
mod validate;

use std::path::Path;

use clap::Subcommand;
use serde_json::{json, Value};
use zt_policy::{Location, PolicyEngine, PolicyError};

use crate::exit::Exit;

/// `zt policy` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// Parse and validate a policy file (`.cedar` against the shipped schema, or the reference
    /// `.json` format); print its size and version, or the error with its line and column.
    /// Exit 0 valid, 1 invalid or unreadable, 2 usage.
    Validate(validate::ValidateArgs),
    /// Run a cases file against a policy file: each case is a request and the decision (and
    /// optionally reason and deciding policies) it must get. Prints each failing case and
    /// `N passed, M failed`. Exit 0 all passed, 1 a case failed or a file would not load,
    /// 2 usage.
    Test(test::TestArgs),
    /// Diff two policy files (their canonical Cedar text) and, with `--against`, replay the
    /// decision records of an audit log under both and list every request decided differently.
    /// Exit 0 (also when they differ), 1 a file would not load, 2 usage.
    Diff(diff::DiffArgs),
}

/// Runs a policy subcommand.
pub(crate) fn run(command: PolicyCommand) -> Exit {
    match command {
        PolicyCommand::Validate(args) => validate::run(&args),
        PolicyCommand::Test(args) => test::run(&args),
        PolicyCommand::Diff(args) => diff::run(&args),
    }
}

/// Loads a policy file as `zt serve --policy` does.
fn load(path: &Path) -> Result<PolicyEngine, PolicyError> {
    PolicyEngine::from_file(path)
}

/// Where in the policy text a load error points, if it does.
fn location(error: &PolicyError) -> Option<Location> {
    match error {
        PolicyError::Syntax { location, .. }
        | PolicyError::Invalid { location, .. }
        | PolicyError::DuplicateId { location, .. } => Some(*location),
        PolicyError::File { source, .. } => location(source),
        PolicyError::Parse(e) if e.line() > 0 => Some(Location {
            line: e.line(),
            column: e.column().max(1),
        }),
        _ => None,
    }
}

/// An error and its causes on one line, each cause once (a policy error already quotes the
/// error it wraps).
fn message(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The `--json` form of an error that stopped a command: its message and, for a file that
/// would not parse, where (line and column, from 1).
fn error_json(error: &anyhow::Error) -> Value {
    let at = error
        .downcast_ref::<PolicyError>()
        .and_then(location)
        .or_else(|| {
            let e = error.downcast_ref::<serde_json::Error>()?;
            (e.line() > 0).then(|| Location {
                line: e.line(),
                column: e.column().max(1),
            })
        });
    json!({
        "message": message(error),
        "line": at.map(|l| l.line),
        "column": at.map(|l| l.column),
    })
}

/// Reports an error that stopped a command and returns [`Exit::Failure`].
fn fail(error: &anyhow::Error, json: bool) -> Exit {
    if json {
        println!("{}", json!({"ok": false, "error": error_json(error)}));
    } else {
        eprintln!("error: {}", message(error));
    }
    Exit::Failure
}
