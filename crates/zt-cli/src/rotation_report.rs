//! What `zt audit verify` says about custody key rotations (see `zt_contract::key_rotation`).
//! The verifier fails a rotation whose endorsement does not hold, but a rotation recorded
//! without one (the outgoing key was lost, or a record written before endorsements existed)
//! is valid: custody then passed on the server's word alone, which the report says instead of
//! letting "valid" suggest otherwise. So does it for an endorsement that names no place in the
//! log (a replica's rotation on a shared store, or one recorded before rotations named their
//! place), which holds wherever the rotation record stands.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use zt_contract::{AdminAction, KeyRotation};

/// One rotation record of a verified log.
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    /// Its `seq`.
    pub seq: u64,
    /// The outgoing custody key, when the record names it.
    pub previous_key_id: Option<String>,
    /// The incoming custody key.
    pub key_id: String,
    /// The outgoing key endorsed the incoming one.
    pub endorsed: bool,
    /// The rotation names the record it follows (and the verifier held it there).
    pub bound: bool,
}

/// The rotation records of a log, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct RotationSummary {
    rotations: Vec<Rotation>,
}

impl RotationSummary {
    /// Notes `record` if it is a rotation record. Call only for records the verifier accepted,
    /// so an endorsement present is one that verified (when signatures are checked).
    pub(crate) fn observe(&mut self, index: u64, record: &Map<String, Value>) {
        let is_rotation = record.get("action").and_then(Value::as_str)
            == Some(AdminAction::AuditKeyRotate.as_str());
        let member = record.get("key_rotation");
        if !is_rotation && member.is_none() {
            return;
        }
        let seq = record.get("seq").and_then(Value::as_u64).unwrap_or(index);
        let parsed = member.and_then(|m| KeyRotation::deserialize(m).ok());
        self.rotations.push(match parsed {
            Some(rotation) => Rotation {
                seq,
                endorsed: rotation.endorsement.is_some(),
                bound: rotation.previous_hash.is_some(),
                previous_key_id: Some(rotation.previous_key_id),
                key_id: rotation.key_id,
            },
            None => Rotation {
                seq,
                previous_key_id: None,
                key_id: record
                    .get("resource")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                endorsed: false,
                bound: false,
            },
        });
    }

    /// The `--json` form: every rotation, oldest first.
    pub(crate) fn to_json(&self) -> Value {
        Value::Array(
            self.rotations
                .iter()
                .map(|r| {
                    json!({
                        "seq": r.seq,
                        "previous_key_id": r.previous_key_id,
                        "key_id": r.key_id,
                        "endorsed": r.endorsed,
                        "bound_to_position": r.bound,
                    })
                })
                .collect(),
        )
    }

    /// Lines for the text report: each rotation, an unendorsed one as a warning.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.rotations
            .iter()
            .map(|r| {
                let from = r.previous_key_id.as_deref().unwrap_or("an unnamed key");
                if r.endorsed && r.bound {
                    format!(
                        "custody key rotation at seq {}: `{from}` to `{}`, endorsed by the outgoing key",
                        r.seq, r.key_id
                    )
                } else if r.endorsed {
                    format!(
                        "custody key rotation at seq {}: `{from}` to `{}`, endorsed by the outgoing key, bound to no place in the log",
                        r.seq, r.key_id
                    )
                } else {
                    format!(
                        "warning: custody key rotation at seq {}: `{from}` to `{}` is NOT endorsed by the outgoing key; custody passed on the server's word alone",
                        r.seq, r.key_id
                    )
                }
            })
            .collect()
    }
}
