//! `zt policy diff OLD NEW [--against RECORDS]`: what changes between two policy files, as
//! text and, replaying an audit log, as decisions.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use zt_policy::PolicyEngine;

use super::replay::{self, Replay, NOTE};
use super::{fail, load};
use crate::exit::Exit;
use crate::text::count;

/// `zt policy diff` arguments.
#[derive(Args, Debug)]
pub(crate) struct DiffArgs {
    /// The policy file in force (`.cedar` or reference `.json`).
    pub old: PathBuf,
    /// The policy file proposed.
    pub new: PathBuf,
    /// A JSON-lines audit log (as `GET /audit/records` serves it): replay its decision records
    /// under both policies and list the requests decided differently. Records carry actor,
    /// action and resource only: attributes and context are replayed as absent.
    #[arg(long, value_name = "RECORDS")]
    pub against: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Prints the diff (and the replay); exit 0 whether or not anything changed.
pub(super) fn run(args: &DiffArgs) -> Exit {
    let loaded = load(&args.old).and_then(|old| Ok((old, load(&args.new)?)));
    let (old, new) = match loaded {
        Ok(both) => both,
        Err(e) => return fail(&e.into(), args.json),
    };
    let replayed = match &args.against {
        Some(records) => match replay::replay(&old, &new, records) {
            Ok(replayed) => Some(replayed),
            Err(e) => return fail(&e, args.json),
        },
        None => None,
    };
    let old_name = args.old.display().to_string();
    let new_name = args.new.display().to_string();
    let diff = zt_policy::text_diff(old.source(), new.source(), &old_name, &new_name);
    if args.json {
        let side = |file: &str, engine: &PolicyEngine| json!({"file": file, "policies": engine.policy_count(), "version": engine.version()});
        let replay = replayed.as_ref().map(|r| {
            let mut value = json!(r);
            if let Some(object) = value.as_object_mut() {
                object.insert("note".into(), NOTE.into());
                object.insert(
                    "records".into(),
                    args.against
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .into(),
                );
            }
            value
        });
        println!(
            "{}",
            json!({
                "ok": true,
                "old": side(&old_name, &old),
                "new": side(&new_name, &new),
                "text_changed": old.source() != new.source(),
                "diff": diff,
                "replay": replay,
            })
        );
        return Exit::Success;
    }
    let policies = |n: usize| count(n as u64, "policy", "policies");
    println!(
        "old: {old_name}, {}, version {}",
        policies(old.policy_count()),
        old.version()
    );
    println!(
        "new: {new_name}, {}, version {}",
        policies(new.policy_count()),
        new.version()
    );
    if diff.is_empty() {
        println!("the policy text is the same");
    } else {
        print!("{diff}");
    }
    if let Some(replayed) = &replayed {
        print_replay(replayed);
    }
    Exit::Success
}

fn print_replay(r: &Replay) {
    println!();
    println!("note: {NOTE}");
    for c in &r.changes {
        let resource = if c.resource.is_empty() {
            String::new()
        } else {
            format!(" on {}", c.resource)
        };
        let seq = c
            .first_seq
            .map_or(String::new(), |s| format!(", first seq {s}"));
        println!(
            "changed: {} {}{resource} ({} records{seq}): {} {:?} -> {} {:?}",
            c.actor,
            c.action,
            c.records,
            c.old.decision,
            c.old.reason,
            c.new.decision,
            c.new.reason
        );
    }
    println!(
        "{} decision records replayed ({} other records skipped); the old policy reproduces {} of \
         them as recorded",
        r.replayed, r.skipped, r.old_matches_record
    );
    println!(
        "{} changed ({} distinct requests): {} allow -> deny, {} deny -> allow, {} reason only",
        r.changed,
        r.changes.len(),
        r.allow_to_deny,
        r.deny_to_allow,
        r.reason_only
    );
}
