//! `zt audit orphans`: the broker's allow decisions without an execution receipt, found by a
//! full verification (so a list from a log that does not verify is never printed as if true).

use crate::connection;
use crate::exit::Exit;
use crate::receipt_report::orphan_json;

use super::checkpoint::Outcome;
use super::VerifyArgs;

/// Prints the orphans of a verified log.
pub(super) fn run(args: &VerifyArgs, verified: anyhow::Result<Outcome>) -> Exit {
    let outcome = match verified {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {}", connection::message(&e));
            return connection::exit_code(&e);
        }
    };
    let Some(summary) = outcome.report().receipts().filter(|_| outcome.is_valid()) else {
        eprintln!("{}", outcome.to_text());
        return Exit::Failure;
    };
    if args.json {
        let orphans: Vec<_> = summary.orphans.iter().map(orphan_json).collect();
        println!(
            "{}",
            serde_json::json!({"orphans": orphans, "receipts": summary.receipts})
        );
    } else if summary.orphans.is_empty() {
        println!("no orphans: every broker allow decision has its execution receipt");
    } else {
        for o in &summary.orphans {
            println!("seq {} {} {} {}", o.seq, o.timestamp, o.actor, o.action);
        }
    }
    if summary.orphans.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    }
}
