//! The parallel signature checks give the sequential verifier's report, on logs long enough to
//! span many batches, with faults placed so that a later batch, a worker or the reader could
//! find its fault first.

use serde_json::{Map, Value};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{Jwks, PublicKeySet};
use zt_ledger::{LocalKeySigner, RecordDraft, SealedRecord, Signer};

use super::{Report, Verification};

/// Records in the test log: eleven batches and a partial one.
const RECORDS: usize = 2_900;

/// A real signed chain of `RECORDS` records and the keys that verify it.
fn signed_log() -> (Vec<String>, PublicKeySet) {
    let dir = tempfile::tempdir().unwrap();
    let signer = LocalKeySigner::load_or_create(dir.path()).unwrap();
    let mut previous = zt_contract::GENESIS_HASH.to_string();
    let mut lines = Vec::with_capacity(RECORDS);
    for seq in 0..RECORDS as u64 {
        let draft = RecordDraft {
            actor: "agent".into(),
            action: "read".into(),
            resource: format!("doc-{seq}"),
            reason: "test".into(),
            ..RecordDraft::default()
        };
        let body = draft.into_body(seq, "2026-01-02T03:04:05.678Z".into(), previous);
        let record = SealedRecord::seal(body, &signer).unwrap();
        previous = record.current_hash.to_hex();
        lines.push(record.line);
    }
    let jwks = Jwks {
        keys: vec![signer.public_jwk().clone()],
    };
    (lines, PublicKeySet::from_jwks(&jwks).unwrap())
}

fn verify(lines: &[String], keys: &PublicKeySet, jobs: usize) -> Report {
    let mut run = Verification::new(SignaturePolicy::Require(keys), None, true).jobs(jobs);
    for line in lines {
        if !run.feed(line) {
            break;
        }
    }
    run.finish(None, true)
}

fn edit(lines: &mut [String], index: usize, change: impl FnOnce(&mut Map<String, Value>)) {
    let mut record: Map<String, Value> = serde_json::from_str(&lines[index]).unwrap();
    change(&mut record);
    lines[index] = serde_json::to_string(&record).unwrap();
}

/// Gives record `index` the signature of record `from`: well formed, by a known key, but not
/// over this record.
fn foreign_signature(lines: &mut [String], index: usize, from: usize) {
    let other: Map<String, Value> = serde_json::from_str(&lines[from]).unwrap();
    edit(lines, index, |r| {
        r.insert("kms_signature".into(), other["kms_signature"].clone());
    });
}

fn break_link(lines: &mut [String], index: usize) {
    edit(lines, index, |r| {
        r.insert("previous_hash".into(), Value::String("0".repeat(64)));
    });
}

#[test]
fn every_number_of_jobs_reports_what_the_sequential_verifier_reports() {
    let (log, keys) = signed_log();
    type Tamper = fn(&mut Vec<String>);
    /// The first bad record's index and check, when there is one.
    type Expected = Option<(u64, &'static str)>;
    let cases: [(&str, Tamper, Expected); 8] = [
        ("untouched", |_| {}, None),
        (
            "one bad signature",
            |l| foreign_signature(l, 1_300, 7),
            Some((1_300, "signature")),
        ),
        (
            "a bad signature before a broken link",
            |l| {
                foreign_signature(l, 1_300, 7);
                break_link(l, 1_700);
            },
            Some((1_300, "signature")),
        ),
        (
            "a broken link before a bad signature",
            |l| {
                break_link(l, 700);
                foreign_signature(l, 1_300, 7);
            },
            Some((700, "link")),
        ),
        (
            "two bad signatures far apart",
            |l| {
                foreign_signature(l, 2_600, 7);
                foreign_signature(l, 300, 7);
            },
            Some((300, "signature")),
        ),
        (
            "a bad signature just before a broken link in the same batch",
            |l| {
                foreign_signature(l, 1_025, 7);
                break_link(l, 1_026);
            },
            Some((1_025, "signature")),
        ),
        (
            "the last record's signature",
            |l| foreign_signature(l, RECORDS - 1, 7),
            Some((RECORDS as u64 - 1, "signature")),
        ),
        (
            "the first record's signature",
            |l| foreign_signature(l, 0, 7),
            Some((0, "signature")),
        ),
    ];
    for (name, tamper, expected) in cases {
        let mut lines = log.clone();
        tamper(&mut lines);
        let sequential = verify(&lines, &keys, 1).to_json();
        match expected {
            None => {
                assert_eq!(sequential["valid"], true, "{name}: {sequential}");
                assert_eq!(sequential["records"], RECORDS as u64, "{name}");
            }
            Some((index, check)) => {
                assert_eq!(sequential["valid"], false, "{name}: {sequential}");
                assert_eq!(sequential["error"]["index"], index, "{name}: {sequential}");
                assert_eq!(sequential["error"]["check"], check, "{name}: {sequential}");
                assert_eq!(sequential["records_checked"], index, "{name}: {sequential}");
            }
        }
        for jobs in [2, 3, 8] {
            let parallel = verify(&lines, &keys, jobs).to_json();
            assert_eq!(parallel, sequential, "{name} with {jobs} jobs");
        }
    }
}

#[test]
fn a_log_shorter_than_a_batch_and_an_expected_head_give_the_same_reports() {
    let (log, keys) = signed_log();
    let short = &log[..40];
    let mut bad = short.to_vec();
    foreign_signature(&mut bad, 39, 3);
    for lines in [short, &bad[..]] {
        let sequential = verify(lines, &keys, 1).to_json();
        assert_eq!(
            verify(lines, &keys, 4).to_json(),
            sequential,
            "{sequential}"
        );
    }
    // A log that ends elsewhere than the trusted head counts every record it read.
    let head = {
        let last: Map<String, Value> = serde_json::from_str(&log[RECORDS - 1]).unwrap();
        last["current_hash"].as_str().unwrap().to_string()
    };
    for jobs in [1, 3] {
        let mut run = Verification::new(SignaturePolicy::Require(&keys), None, true).jobs(jobs);
        for line in &log[..RECORDS - 5] {
            assert!(run.feed(line));
        }
        let report = run.finish(Some(&head), true).to_json();
        assert_eq!(report["error"]["check"], "head", "{report}");
        assert_eq!(report["records_checked"], RECORDS as u64 - 5, "{report}");
    }
}

/// The body of a plain record of the rotated test log.
fn plain_body(seq: u64, previous: String) -> zt_contract::RecordBody {
    RecordDraft {
        actor: "agent".into(),
        action: "read".into(),
        ..RecordDraft::default()
    }
    .into_body(seq, "2026-01-02T03:04:05.678Z".into(), previous)
}

/// The hash of seq 1 of the rotated test log, the outgoing key's last record: the place its
/// rotations are bound to.
fn outgoing_head() -> zt_contract::Digest32 {
    let first = plain_body(0, zt_contract::GENESIS_HASH.into())
        .hash()
        .unwrap();
    plain_body(1, first.to_hex()).hash().unwrap()
}

/// A log whose custody passes from `old` to `new` at seq 2 with `rotation` as the rotation
/// record's `key_rotation` (that record signed by `rotation_signer`, the record before it by
/// `last_outgoing`), and the keys that verify it.
fn rotated_log(
    (old, new): (&LocalKeySigner, &LocalKeySigner),
    rotation: zt_contract::KeyRotation,
    rotation_signer: &LocalKeySigner,
    last_outgoing: &LocalKeySigner,
) -> (Vec<String>, PublicKeySet) {
    let mut previous = zt_contract::GENESIS_HASH.to_string();
    let mut lines = Vec::new();
    for seq in 0..4u64 {
        let body = if seq == 2 {
            RecordDraft {
                actor: "zt-server".into(),
                action: zt_contract::AdminAction::AuditKeyRotate.as_str().into(),
                resource: new.key_id().into(),
                key_rotation: Some(rotation.clone()),
                ..RecordDraft::default()
            }
            .into_body(seq, "2026-01-02T03:04:05.678Z".into(), previous)
        } else {
            plain_body(seq, previous)
        };
        let signer = match seq {
            0 => old,
            1 => last_outgoing,
            2 => rotation_signer,
            _ => new,
        };
        let record = SealedRecord::seal(body, signer).unwrap();
        previous = record.current_hash.to_hex();
        lines.push(record.line);
    }
    assert_eq!(
        serde_json::from_str::<Value>(&lines[1]).unwrap()["current_hash"],
        outgoing_head().to_hex()
    );
    let jwks = Jwks {
        keys: vec![old.public_jwk().clone(), new.public_jwk().clone()],
    };
    (lines, PublicKeySet::from_jwks(&jwks).unwrap())
}

#[test]
fn rotations_are_reported_and_an_unendorsed_one_is_a_warning_not_silence() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = LocalKeySigner::load_or_create(a.path()).unwrap();
    let new = LocalKeySigner::load_or_create(b.path()).unwrap();
    let unendorsed = zt_contract::KeyRotation::new(
        old.key_id(),
        new.public_jwk(),
        "zt-infra/t",
        &outgoing_head(),
    );
    let mut endorsed = unendorsed.clone();
    endorsed.endorsement = Some(
        old.sign_digest(&endorsed.statement_digest())
            .unwrap()
            .signature,
    );

    let (lines, keys) = rotated_log((&old, &new), endorsed.clone(), &new, &old);
    let report = verify(&lines, &keys, 1);
    let json = report.to_json();
    assert_eq!(json["valid"], true, "{json}");
    assert_eq!(json["key_rotations"][0]["seq"], 2, "{json}");
    assert_eq!(json["key_rotations"][0]["endorsed"], true, "{json}");
    assert_eq!(json["key_rotations"][0]["previous_key_id"], old.key_id());
    assert_eq!(
        json["key_rotations"][0]["bound_to_position"], true,
        "{json}"
    );
    assert!(report.to_text().contains("endorsed by the outgoing key"));
    assert!(!report.to_text().contains("NOT endorsed"));
    assert!(!report.to_text().contains("no place"));

    let (lines, keys) = rotated_log((&old, &new), unendorsed.clone(), &new, &old);
    let report = verify(&lines, &keys, 1);
    let json = report.to_json();
    assert_eq!(json["valid"], true, "{json}");
    assert_eq!(json["key_rotations"][0]["endorsed"], false, "{json}");
    assert!(
        report
            .to_text()
            .contains("warning: custody key rotation at seq 2")
            && report.to_text().contains("is NOT endorsed"),
        "{}",
        report.to_text()
    );

    // An endorsement made by the incoming key itself, or a rotation from a key to itself, is
    // no endorsement: the log does not verify.
    let mut self_signed = unendorsed.clone();
    self_signed.endorsement = Some(
        new.sign_digest(&self_signed.statement_digest())
            .unwrap()
            .signature,
    );
    let mut to_itself = zt_contract::KeyRotation::new(
        new.key_id(),
        new.public_jwk(),
        "zt-infra/t",
        &outgoing_head(),
    );
    to_itself.endorsement = Some(
        new.sign_digest(&to_itself.statement_digest())
            .unwrap()
            .signature,
    );
    // Nor is a genuine endorsement in a record the incoming key did not sign.
    let cases = [
        ("self-signed", self_signed, &new),
        ("to itself", to_itself, &new),
        ("signed by the outgoing key", endorsed, &old),
    ];
    for (name, bad, signer) in cases {
        let (lines, keys) = rotated_log((&old, &new), bad, signer, &old);
        let json = verify(&lines, &keys, 1).to_json();
        assert_eq!(json["valid"], false, "{name}: {json}");
        assert_eq!(json["error"]["index"], 2, "{name}: {json}");
        assert_eq!(json["error"]["check"], "signature", "{name}: {json}");
    }
}

/// `lines` with one more record, signed by `signer`.
fn extended(mut lines: Vec<String>, signer: &LocalKeySigner) -> Vec<String> {
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let seq = u64::try_from(lines.len()).unwrap();
    let previous = last["current_hash"].as_str().unwrap().to_string();
    lines.push(
        SealedRecord::seal(plain_body(seq, previous), signer)
            .unwrap()
            .line,
    );
    lines
}

#[test]
fn a_key_handed_over_by_a_bound_rotation_signs_nothing_after_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = LocalKeySigner::load_or_create(a.path()).unwrap();
    let new = LocalKeySigner::load_or_create(b.path()).unwrap();
    let bound = zt_contract::KeyRotation::new(
        old.key_id(),
        new.public_jwk(),
        "zt-infra/t",
        &outgoing_head(),
    );
    // Endorsed or not (the outgoing key lost or compromised), custody has passed: whoever
    // still holds the old key cannot append under it.
    for rotation in [endorsed_by(&old, bound.clone()), bound] {
        let (lines, keys) = rotated_log((&old, &new), rotation, &new, &old);
        for jobs in [1, 2] {
            let json = verify(&extended(lines.clone(), &new), &keys, jobs).to_json();
            assert_eq!(json["valid"], true, "{json}");
            let json = verify(&extended(lines.clone(), &old), &keys, jobs).to_json();
            assert_eq!(json["valid"], false, "{json}");
            assert_eq!(json["error"]["index"], 4, "{json}");
            assert_eq!(json["error"]["check"], "signature", "{json}");
            assert!(
                json["error"]["found"]
                    .as_str()
                    .unwrap()
                    .contains("retired by an earlier rotation"),
                "{json}"
            );
        }
    }

    // A rotation that names no place is one replica's among several that share the log; the
    // others may still sign with the outgoing key.
    let unbound = endorsed_by(
        &old,
        zt_contract::KeyRotation::unplaced(old.key_id(), new.public_jwk(), "zt-infra/t"),
    );
    let (lines, keys) = rotated_log((&old, &new), unbound, &new, &old);
    let json = verify(&extended(lines, &old), &keys, 1).to_json();
    assert_eq!(json["valid"], true, "{json}");
}

/// `rotation`, endorsed by `by`.
fn endorsed_by(
    by: &LocalKeySigner,
    mut rotation: zt_contract::KeyRotation,
) -> zt_contract::KeyRotation {
    rotation.endorsement = Some(
        by.sign_digest(&rotation.statement_digest())
            .unwrap()
            .signature,
    );
    rotation
}

#[test]
fn a_rotation_holds_only_right_after_the_outgoing_keys_last_record() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = LocalKeySigner::load_or_create(a.path()).unwrap();
    let new = LocalKeySigner::load_or_create(b.path()).unwrap();
    let rotation = |after: &zt_contract::Digest32| {
        zt_contract::KeyRotation::new(old.key_id(), new.public_jwk(), "zt-infra/t", after)
    };

    // A genuine endorsement for another place: a fork handing custody over elsewhere.
    let elsewhere = endorsed_by(&old, rotation(&zt_contract::Digest32::sha256(b"elsewhere")));
    let (lines, keys) = rotated_log((&old, &new), elsewhere, &new, &old);
    let json = verify(&lines, &keys, 1).to_json();
    assert_eq!(json["valid"], false, "{json}");
    assert_eq!(json["error"]["index"], 2, "{json}");
    assert_eq!(json["error"]["check"], "signature", "{json}");
    assert!(
        json["error"]["found"]
            .as_str()
            .unwrap()
            .contains("endorsed after the record"),
        "{json}"
    );

    // The right place, but the record before was already signed by the incoming key: custody
    // did not pass there.
    let bound = endorsed_by(&old, rotation(&outgoing_head()));
    for jobs in [1, 2] {
        let (lines, keys) = rotated_log((&old, &new), bound.clone(), &new, &new);
        let json = verify(&lines, &keys, jobs).to_json();
        assert_eq!(json["valid"], false, "{json}");
        assert_eq!(json["error"]["index"], 2, "{json}");
        assert!(
            json["error"]["found"]
                .as_str()
                .unwrap()
                .contains("after a record signed under"),
            "{json}"
        );
    }

    // A rotation that names no place (recorded before the binding existed, or by a replica)
    // still verifies, wherever it stands, and the report says so.
    let unbound = endorsed_by(
        &old,
        zt_contract::KeyRotation::unplaced(old.key_id(), new.public_jwk(), "zt-infra/t"),
    );
    let (lines, keys) = rotated_log((&old, &new), unbound, &new, &new);
    let report = verify(&lines, &keys, 2);
    let json = report.to_json();
    assert_eq!(json["valid"], true, "{json}");
    assert_eq!(json["key_rotations"][0]["endorsed"], true, "{json}");
    assert_eq!(
        json["key_rotations"][0]["bound_to_position"], false,
        "{json}"
    );
    assert!(
        report.to_text().contains("bound to no place in the log"),
        "{}",
        report.to_text()
    );
}
