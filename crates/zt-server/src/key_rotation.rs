//! Rotation of the custody key, as a record in the chain. At start the key that signed the
//! newest record (for a session key: the custody key that certified it) is compared with the
//! custody key now configured; when they differ, the first record the server writes says so.
//! Retired public keys stay in the store, so `GET /audit/keys` keeps publishing them and old
//! records keep verifying.

use zt_contract::{Decision, Jwk, RecordKind};
use zt_ledger::{AuditStore, RecordDraft, StoreError};

/// The action of a rotation record.
pub(crate) const ROTATION_ACTION: &str = "zt.audit.key.rotate";

/// The record of a move from the custody key `previous` to `current`.
pub(crate) fn rotation_draft(previous: &str, current: &str) -> RecordDraft {
    RecordDraft {
        kind: RecordKind::Admin,
        actor: "zt-server".into(),
        action: ROTATION_ACTION.into(),
        resource: current.into(),
        decision: Decision::Allow,
        reason: format!("audit signing key rotated from `{previous}` to `{current}`"),
        authenticated: true,
        ..RecordDraft::default()
    }
}

/// The custody key behind the newest record of `store`, given every key published in it;
/// `None` on an empty log.
pub(crate) fn newest_custody_key(
    store: &mut dyn AuditStore,
    keys: &[Jwk],
) -> Result<Option<String>, StoreError> {
    let Some(head) = store.head()? else {
        return Ok(None);
    };
    let line = store
        .read(head.seq, 1)?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("head record unreadable".into()))?;
    let record: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let signer = record
        .pointer("/kms_signature/key_id")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    let certified_by = keys
        .iter()
        .find(|k| k.kid == signer)
        .and_then(|k| k.zt_session.as_ref())
        .map(|cert| cert.custody_key_id.clone());
    Ok(Some(certified_by.unwrap_or_else(|| signer.to_string())))
}
