//! Replaying an audit log's decision records under two policies. A record carries the actor,
//! the action and the resource, but not the actor's registry attributes, the resource's
//! attributes or the request's context (only its hash): those are replayed as absent.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;
use zt_policy::{Compared, Outcome, PolicyEngine, PolicyRequest};

/// What the output says about the limits of a replay.
pub(super) const NOTE: &str = "audit records carry actor, action and resource only: no actor or \
resource attributes and no context are replayed, so policies that read them decide as if none \
were sent; each record is replayed at its own timestamp";

/// A request (actor, action, resource) decided differently, and how many records asked it so.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ChangedRequest {
    /// The actor.
    pub actor: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// Records that asked this request and were decided this way under both policies.
    pub records: u64,
    /// `seq` of the first of them.
    pub first_seq: Option<u64>,
    /// Under the old policy.
    pub old: Outcome,
    /// Under the new policy.
    pub new: Outcome,
}

/// The replay of a whole file.
#[derive(Debug, Default, Serialize)]
pub(super) struct Replay {
    /// Decision records replayed.
    pub replayed: u64,
    /// Records of other kinds (`admin`, `rejections`), skipped.
    pub skipped: u64,
    /// Replayed records whose decision or reason changes.
    pub changed: u64,
    /// Of those, allowed before and denied now.
    pub allow_to_deny: u64,
    /// Of those, denied before and allowed now.
    pub deny_to_allow: u64,
    /// Of those, same decision with another reason.
    pub reason_only: u64,
    /// Replayed records the old policy decides as the record says (same decision and reason).
    pub old_matches_record: u64,
    /// The changed requests, grouped, in order of first appearance.
    pub changes: Vec<ChangedRequest>,
}

/// Replays every `kind == "decision"` record of a JSON-lines audit file under both policies.
pub(super) fn replay(
    old: &PolicyEngine,
    new: &PolicyEngine,
    path: &Path,
) -> anyhow::Result<Replay> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open records `{}`", path.display()))?;
    let mut replay = Replay::default();
    let mut index: HashMap<(String, String, String, Outcome, Outcome), usize> = HashMap::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read records `{}`", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("records `{}` line {}", path.display(), n + 1);
        let record: Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not JSON", at()))?;
        let Some(kind) = record.get("kind").and_then(Value::as_str) else {
            bail!("{}: not an audit record (no `kind`)", at());
        };
        if kind != "decision" {
            replay.skipped += 1;
            continue;
        }
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        let (Some(actor), Some(action)) = (field("actor"), field("action")) else {
            bail!("{}: a decision record without `actor` or `action`", at());
        };
        let resource = field("resource").unwrap_or("");
        let when = field("timestamp")
            .and_then(wire_time)
            .unwrap_or_else(SystemTime::now);
        let request = PolicyRequest::new(actor, action, resource).at(when);
        let compared = Compared::of(old, new, &request);
        replay.replayed += 1;
        if field("decision") == Some(compared.before.decision)
            && field("reason") == Some(&compared.before.reason)
        {
            replay.old_matches_record += 1;
        }
        if !compared.changed() {
            continue;
        }
        let Compared { before, after } = compared;
        replay.changed += 1;
        match (before.decision, after.decision) {
            ("allow", "deny") => replay.allow_to_deny += 1,
            ("deny", "allow") => replay.deny_to_allow += 1,
            _ => replay.reason_only += 1,
        }
        let key = (
            actor.to_string(),
            action.to_string(),
            resource.to_string(),
            before,
            after,
        );
        match index.get(&key) {
            Some(&i) => {
                if let Some(change) = replay.changes.get_mut(i) {
                    change.records += 1;
                }
            }
            None => {
                index.insert(key.clone(), replay.changes.len());
                let (actor, action, resource, old, new) = key;
                replay.changes.push(ChangedRequest {
                    actor,
                    action,
                    resource,
                    records: 1,
                    first_seq: record.get("seq").and_then(Value::as_u64),
                    old,
                    new,
                });
            }
        }
    }
    Ok(replay)
}

/// A wire timestamp (`2026-05-01T00:00:00.000Z`) as a time; `None` if it is not one.
fn wire_time(s: &str) -> Option<SystemTime> {
    let millis = u64::try_from(zt_contract::timestamp::wire_timestamp_millis(s)?).ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(s: &str) -> Option<u64> {
        wire_time(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn wire_timestamps_become_times() {
        assert_eq!(seconds("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(seconds("2000-03-01T00:00:00.000Z"), Some(951_868_800));
        assert_eq!(seconds("2026-11-25T18:31:18.714Z"), Some(1_795_631_478));
        assert_eq!(seconds("2024-02-29T23:59:59.999Z"), Some(1_709_251_199));
        assert_eq!(seconds("2026-11-25T18:31:18Z"), None);
        assert_eq!(seconds("2026-13-25T18:31:18.000Z"), None);
        let t = wire_time("1970-01-01T00:00:01.500Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1500)
        );
    }
}
