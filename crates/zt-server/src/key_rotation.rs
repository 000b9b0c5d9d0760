//! Rotation of the custody key, as a record in the chain. At start the key that signed the
//! newest record (for a session key: the custody key that certified it) is compared with the
//! custody key now configured; when they differ, the first record the server writes says so,
//! with the outgoing key's endorsement of the new key when the outgoing key is at hand (the
//! retiring local key after `zt keys rotate`, or `--previous-signer`; see
//! `zt_contract::key_rotation`). The endorsement names the newest record, so the rotation
//! record must be the one right after it: the server writes it before anything else can write
//! (see [`Rotation::check_place`]). A replica of a shared store cannot read its rotation off
//! the newest record, which may be another replica's: it records one when its outgoing key is
//! at hand ([`replica_rotation_record`]). Retired public keys stay in the store, so `GET
//! /audit/keys` keeps publishing them and old records keep verifying.

use zt_contract::{AdminAction, Decision, Jwk, KeyRotation, RecordKind};
use zt_custody::Outgoing;
use zt_ledger::{AuditStore, Head, RecordDraft, SealedRecord, Signer, StoreError};

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
) -> Result<Option<Rotation>, ServerError> {
    let Some((head, previous)) = newest_custody_key(store, keys)? else {
        return Ok(None);
    };
    if previous == custody.key_id() {
        return Ok(None);
    }
    refuse_a_retired_key(keys, custody.key_id(), &previous)?;
    let mut rotation =
        KeyRotation::new(&previous, custody.public_jwk(), origin, &head.current_hash);
    match open_outgoing()?.as_ref() {
        Some(out) if out.signer.key_id() == previous => endorse(&mut rotation, out)?,
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
    Ok(Some(Rotation {
        draft: rotation_draft(rotation, custody),
        after: Some(head),
    }))
}

/// Refuses to rotate back to `returning`, a custody key published in this log before
/// `current`, the custody key of its newest records: on a log with one writer the key was
/// rotated out by a rotation bound to its place (or published by a start that never signed),
/// and `zt audit verify` refuses any record a retired key signs after its rotation. Writing
/// one would leave a log that fails verification, and the next start's own tail check.
fn refuse_a_retired_key(keys: &[Jwk], returning: &str, current: &str) -> Result<(), ServerError> {
    let published_at = |kid: &str| {
        keys.iter()
            .position(|k| k.kid == kid && k.zt_session.is_none())
    };
    match (published_at(returning), published_at(current)) {
        (Some(before), Some(newest)) if before < newest => Err(ServerError::Rotation(format!(
            "the audit custody key `{returning}` was rotated out of this log before `{current}`, which signed its newest records: a retired key never signs again; rotate to a new key instead (docs/SIGNING.md)"
        ))),
        _ => Ok(()),
    }
}

/// The record to write first on a replica of a store shared with other replicas, whose
/// newest record tells nothing of this replica's key. A rotation is recorded when the
/// outgoing key is at hand and is a custody key published in the store (`keys`): the retiring
/// local key after `zt keys rotate`, which is destroyed once its rotation is recorded (so a
/// start that failed to record it tries again), or `--previous-signer` (`previous_named`) at
/// the first start with a custody key not yet published. It is endorsed but names no place in
/// the log, since the other replicas' records come between this replica's last record and the
/// rotation (docs/SIGNING.md). Without the outgoing key a new key is indistinguishable from a
/// new replica's, and nothing is recorded. An explicit `--previous-signer` that is no custody
/// key of the store refuses the start.
pub(crate) fn replica_rotation_record(
    keys: &[Jwk],
    custody: &dyn Signer,
    previous_named: bool,
    open_outgoing: impl FnOnce() -> Result<Option<Outgoing>, ServerError>,
    origin: &str,
) -> Result<Option<Rotation>, ServerError> {
    // A `--previous-signer` left in place after its rotation is not opened again (its key
    // may be gone); the retiring local key is opened whenever it is there.
    let first_start = !keys.iter().any(|k| k.kid == custody.key_id());
    if previous_named && !first_start {
        return Ok(None);
    }
    let Some(out) = open_outgoing()? else {
        return Ok(None);
    };
    let previous = out.signer.key_id();
    let published = keys
        .iter()
        .any(|k| k.kid == previous && k.zt_session.is_none());
    if !published || previous == custody.key_id() {
        if out.explicit {
            return Err(ServerError::Rotation(format!(
                "--previous-signer is `{previous}`, which is not a custody key of this store"
            )));
        }
        tracing::warn!(retiring = %previous, "the retiring local key is not a custody key of this store: no rotation to record");
        return Ok(None);
    }
    let mut rotation = KeyRotation::unplaced(previous, custody.public_jwk(), origin);
    endorse(&mut rotation, &out)?;
    Ok(Some(Rotation {
        draft: rotation_draft(rotation, custody),
        after: None,
    }))
}

/// Has the outgoing key sign `rotation`'s statement.
fn endorse(rotation: &mut KeyRotation, out: &Outgoing) -> Result<(), ServerError> {
    let endorsement = out
        .signer
        .sign_digest(&rotation.statement_digest())
        .map_err(|e| {
            ServerError::Rotation(format!(
                "the outgoing key `{}` endorsing the new key: {e}",
                out.signer.key_id()
            ))
        })?;
    rotation.endorsement = Some(endorsement.signature);
    Ok(())
}

/// The rotation record: an admin record by the server, naming both keys.
fn rotation_draft(rotation: KeyRotation, custody: &dyn Signer) -> RecordDraft {
    let endorsed = if rotation.endorsement.is_some() {
        "endorsed by the outgoing key"
    } else {
        "NOT endorsed by the outgoing key"
    };
    RecordDraft {
        kind: RecordKind::Admin,
        actor: "zt-server".into(),
        action: AdminAction::AuditKeyRotate.as_str().into(),
        resource: custody.key_id().into(),
        decision: Decision::Allow,
        reason: format!(
            "audit signing key rotated from `{}` to `{}`, {endorsed}",
            rotation.previous_key_id,
            custody.key_id()
        ),
        authenticated: true,
        key_rotation: Some(rotation),
        ..RecordDraft::default()
    }
}

/// A rotation record to write, and the record it must follow.
#[derive(Debug)]
pub(crate) struct Rotation {
    /// The record to append.
    pub(crate) draft: RecordDraft,
    /// The newest record when the rotation was endorsed; `None` for a replica's rotation,
    /// which names no place.
    pub(crate) after: Option<Head>,
}

impl Rotation {
    /// Checks that the appended rotation record landed right after the record it was endorsed
    /// after. The server appends it before it accepts a request or starts a task, so nothing
    /// can come between; if something did, the log would hold a rotation that does not
    /// verify, and the start is refused rather than served on.
    pub(crate) fn check_place(&self, sealed: &SealedRecord) -> Result<(), ServerError> {
        let Some(after) = &self.after else {
            return Ok(());
        };
        let expected = after.current_hash.to_hex();
        if sealed.body.seq == after.seq + 1 && sealed.body.previous_hash == expected {
            Ok(())
        } else {
            Err(ServerError::Rotation(format!(
                "the rotation record landed at seq {} after `{}`, not right after seq {} (`{expected}`), where it was endorsed; `zt audit verify` will refuse it",
                sealed.body.seq, sealed.body.previous_hash, after.seq
            )))
        }
    }
}

/// The newest record of `store` and the custody key behind it, given every key published in
/// it; `None` on an empty log.
fn newest_custody_key(
    store: &mut dyn AuditStore,
    keys: &[Jwk],
) -> Result<Option<(Head, String)>, StoreError> {
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
    Ok(Some((
        head,
        certified_by.unwrap_or_else(|| signer.to_string()),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_contract::Digest32;
    use zt_ledger::LocalKeySigner;

    fn sealed_at(seq: u64, previous: &Digest32, signer: &LocalKeySigner) -> SealedRecord {
        let body = RecordDraft {
            action: "read".into(),
            ..RecordDraft::default()
        }
        .into_body(seq, "2026-01-02T03:04:05.678Z".into(), previous.to_hex());
        SealedRecord::seal(body, signer).unwrap()
    }

    fn local_key() -> (tempfile::TempDir, std::sync::Arc<LocalKeySigner>) {
        let dir = tempfile::tempdir().unwrap();
        let key = LocalKeySigner::load_or_create(dir.path()).unwrap();
        (dir, std::sync::Arc::new(key))
    }

    fn outgoing(key: &std::sync::Arc<LocalKeySigner>, explicit: bool) -> Option<Outgoing> {
        Some(Outgoing {
            signer: key.clone(),
            explicit,
        })
    }

    #[test]
    fn a_replica_records_its_rotation_once_when_its_outgoing_key_is_of_the_store() {
        let ((_a, old), (_b, new), (_c, stranger)) = (local_key(), local_key(), local_key());
        let published = vec![old.public_jwk().clone()];

        let rotation = replica_rotation_record(
            &published,
            new.as_ref(),
            false,
            || Ok(outgoing(&old, false)),
            "zt-infra/t",
        )
        .unwrap()
        .unwrap();
        assert!(rotation.after.is_none());
        let member = rotation.draft.key_rotation.clone().unwrap();
        assert_eq!(member.previous_key_id, old.key_id());
        assert_eq!(member.previous_hash, None);
        let keys = zt_contract::PublicKeySet::from_jwks(&zt_contract::Jwks {
            keys: vec![old.public_jwk().clone(), new.public_jwk().clone()],
        })
        .unwrap();
        assert_eq!(
            member.check(&keys),
            Ok(true),
            "endorsed by the outgoing key"
        );

        // The new key already published (a later start): a --previous-signer left in place
        // is not even opened, and without a retiring key there is nothing to record.
        let both = vec![old.public_jwk().clone(), new.public_jwk().clone()];
        let later = replica_rotation_record(
            &both,
            new.as_ref(),
            true,
            || panic!("opened the outgoing key"),
            "zt-infra/t",
        );
        assert!(later.unwrap().is_none());
        let later = replica_rotation_record(&both, new.as_ref(), false, || Ok(None), "zt-infra/t");
        assert!(later.unwrap().is_none());
        // But a retiring key still there (the start that published the new key failed to
        // record the rotation) is recorded then.
        let retried = replica_rotation_record(
            &both,
            new.as_ref(),
            false,
            || Ok(outgoing(&old, false)),
            "zt-infra/t",
        );
        assert!(retried.unwrap().is_some());
        // No outgoing key at hand: a new replica's key looks the same; nothing is recorded.
        let none =
            replica_rotation_record(&published, new.as_ref(), false, || Ok(None), "zt-infra/t");
        assert!(none.unwrap().is_none());
        // An outgoing key that never was this store's: refused when named, else left alone.
        let named = replica_rotation_record(
            &published,
            new.as_ref(),
            true,
            || Ok(outgoing(&stranger, true)),
            "zt-infra/t",
        )
        .unwrap_err();
        assert!(
            named
                .to_string()
                .contains("not a custody key of this store"),
            "{named}"
        );
        let retiring = replica_rotation_record(
            &published,
            new.as_ref(),
            false,
            || Ok(outgoing(&stranger, false)),
            "zt-infra/t",
        );
        assert!(retiring.unwrap().is_none());
    }

    #[test]
    fn a_start_never_rotates_back_to_a_key_rotated_out_of_the_log() {
        let ((dir, first), (_b, second)) = (local_key(), local_key());
        let mut store = zt_ledger::SqliteStore::open(&dir.path().join("audit.db")).unwrap();
        let record = sealed_at(0, &Digest32([0; 32]), second.as_ref());
        store.append(std::slice::from_ref(&record)).unwrap();
        // `first` signed before `second` took over, whose records are the newest.
        let keys = vec![first.public_jwk().clone(), second.public_jwk().clone()];
        let refused = rotation_record(&mut store, &keys, first.as_ref(), || Ok(None), "zt-infra/t")
            .err()
            .unwrap();
        assert!(
            refused.to_string().contains("rotated out of this log"),
            "{refused}"
        );

        // A key published after the newest records' key and never used (a start that failed
        // before its rotation was recorded) is not retired: its rotation is recorded now.
        let keys = vec![second.public_jwk().clone(), first.public_jwk().clone()];
        let rotation =
            rotation_record(&mut store, &keys, first.as_ref(), || Ok(None), "zt-infra/t").unwrap();
        assert!(rotation.is_some());
    }

    #[test]
    fn the_rotation_record_must_land_right_after_the_record_it_was_endorsed_after() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LocalKeySigner::load_or_create(dir.path()).unwrap();
        let head = Head {
            seq: 4,
            current_hash: Digest32::sha256(b"record 4"),
        };
        let rotation = Rotation {
            draft: RecordDraft::default(),
            after: Some(head),
        };
        assert!(rotation
            .check_place(&sealed_at(5, &head.current_hash, &signer))
            .is_ok());
        // Another record came between, or the chain moved on elsewhere: the start is refused.
        let between = rotation
            .check_place(&sealed_at(6, &Digest32::sha256(b"record 5"), &signer))
            .unwrap_err();
        assert!(
            between.to_string().contains("not right after seq 4"),
            "{between}"
        );
        assert!(rotation
            .check_place(&sealed_at(5, &Digest32::sha256(b"another 4"), &signer))
            .is_err());
    }
}
