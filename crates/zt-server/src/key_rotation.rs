//! Rotation of the custody key, as a record in the chain. At start the key that signed the
//! newest record (for a session key: the custody key that certified it) is compared with the
//! custody key now configured; when they differ, the first record the server writes says so,
//! with the outgoing key's endorsement of the new key when the outgoing key is at hand (the
//! retiring local key after `zt keys rotate`, or `--previous-signer`; see
//! `zt_contract::key_rotation`). Retired public keys stay in the store, so `GET /audit/keys`
//! keeps publishing them and old records keep verifying.

use zt_contract::{AdminAction, Decision, Jwk, KeyRotation, RecordKind};
use zt_custody::Outgoing;
use zt_ledger::{AuditStore, RecordDraft, Signer, StoreError};

use crate::server::ServerError;

/// The record to write first if the custody key changed since the newest record of `store`
/// (`keys`: every key published in it), endorsed by the key `open_outgoing` gives when it is
/// the key of the newest records. The outgoing key is opened only when a rotation is due, so a
/// `--previous-signer` left in place after its rotation (its key since deleted, its token
/// gone) does not refuse later starts. An explicit `--previous-signer` that is not that key
/// refuses the start.
pub(crate) fn rotation_record(
    store: &mut dyn AuditStore,
    keys: &[Jwk],
    custody: &dyn Signer,
    open_outgoing: impl FnOnce() -> Result<Option<Outgoing>, ServerError>,
    origin: &str,
) -> Result<Option<RecordDraft>, ServerError> {
    let Some(previous) =
        newest_custody_key(store, keys)?.filter(|previous| previous != custody.key_id())
    else {
        return Ok(None);
    };
    let mut rotation = KeyRotation::new(&previous, custody.public_jwk(), origin);
    match open_outgoing()?.as_ref() {
        Some(out) if out.signer.key_id() == previous => {
            let endorsement = out
                .signer
                .sign_digest(&rotation.statement_digest())
                .map_err(|e| {
                    ServerError::Rotation(format!(
                        "the outgoing key `{previous}` endorsing the new key: {e}"
                    ))
                })?;
            rotation.endorsement = Some(endorsement.signature);
        }
        Some(out) if out.explicit => {
            return Err(ServerError::Rotation(format!(
                "--previous-signer is `{}`, but the newest records are signed by `{previous}`",
                out.signer.key_id()
            )));
        }
        _ => tracing::warn!(
            previous = %previous,
            current = custody.key_id(),
            "the audit custody key changed without the outgoing key at hand: the rotation is recorded unendorsed (give --previous-signer to have the outgoing key endorse the new one)"
        ),
    }
    let endorsed = if rotation.endorsement.is_some() {
        "endorsed by the outgoing key"
    } else {
        "NOT endorsed by the outgoing key"
    };
    Ok(Some(RecordDraft {
        kind: RecordKind::Admin,
        actor: "zt-server".into(),
        action: AdminAction::AuditKeyRotate.as_str().into(),
        resource: custody.key_id().into(),
        decision: Decision::Allow,
        reason: format!(
            "audit signing key rotated from `{previous}` to `{}`, {endorsed}",
            custody.key_id()
        ),
        authenticated: true,
        key_rotation: Some(rotation),
        ..RecordDraft::default()
    }))
}

/// The custody key behind the newest record of `store`, given every key published in it;
/// `None` on an empty log.
fn newest_custody_key(
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
