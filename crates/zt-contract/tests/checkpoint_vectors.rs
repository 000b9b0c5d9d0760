//! Signed checkpoints from other implementations (tests/vectors/signed_note_ecdsa.json: Rekor
//! and the Pixel 6 log, signature type 0x02) and zt-infra's own golden checkpoint
//! (tests/vectors/checkpoint_zt.json), verified byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use zt_contract::checkpoint::{checkpoint_signing_input, parse_signed_note, verify_checkpoint};
use zt_contract::merkle::{leaf_hash, root};
use zt_contract::note::{note_key_id, NoteError, NoteKey};
use zt_contract::{Checkpoint, CheckpointError, Digest32, Jwk};

fn published() -> Value {
    serde_json::from_str(include_str!("vectors/signed_note_ecdsa.json")).unwrap()
}

fn ours() -> Value {
    serde_json::from_str(include_str!("vectors/checkpoint_zt.json")).unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn published_key_ids_are_sha256_of_the_spki() {
    let v = published();
    let spki = STANDARD.decode(s(&v["rekor_spki_base64"])).unwrap();
    // Rekor's log ID is the full SHA-256 of its key; the note key ID is its first 4 bytes.
    assert_eq!(Digest32::sha256(&spki).to_hex(), s(&v["rekor_log_id"]));
    assert_eq!(note_key_id(&spki), 0xc0d2_3d6a);
    let rekor = NoteKey::from_spki_der("rekor.sigstore.dev", &spki).unwrap();
    let from_vkey = NoteKey::from_vkey(s(&v["valid"][0]["vkey"])).unwrap();
    assert_eq!(rekor.spki_der(), from_vkey.spki_der());
    assert_eq!(rekor.vkey(), s(&v["valid"][0]["vkey"]));
    for case in v["valid"].as_array().unwrap() {
        let key = NoteKey::from_vkey(s(&case["vkey"])).unwrap();
        assert_eq!(key.vkey(), s(&case["vkey"]), "vkey round trip");
    }
}

#[test]
fn published_checkpoints_verify() {
    let v = published();
    for case in v["valid"].as_array().unwrap() {
        let key = NoteKey::from_vkey(s(&case["vkey"])).unwrap();
        let note = s(&case["note"]);
        let cp = verify_checkpoint(note, s(&case["origin"]), &[key]).unwrap();
        assert_eq!(cp.size, case["size"].as_u64().unwrap(), "{}", case["desc"]);
        assert_eq!(STANDARD.encode(cp.root.0), s(&case["root_base64"]));
        let ext: Vec<String> = serde_json::from_value(case["extensions"].clone()).unwrap();
        assert_eq!(cp.extensions, ext);
        // The body we would write is the body they signed.
        let (parsed, sigs) = parse_signed_note(note).unwrap();
        assert_eq!(parsed, cp);
        assert_eq!(sigs.len(), 1);
        assert!(note.starts_with(&cp.body()));
        assert_eq!(note.len(), cp.body().len() + 1 + sigs[0].line().len());
    }
}

#[test]
fn published_rejections_are_rejected_for_the_published_reason() {
    let v = published();
    for case in v["rejected"].as_array().unwrap() {
        let key = NoteKey::from_vkey(s(&case["vkey"])).unwrap();
        let err = verify_checkpoint(s(&case["note"]), s(&case["origin"]), &[key]).unwrap_err();
        let kind = match err {
            CheckpointError::Note(NoteError::NoKnownSignature) => "no_known_signature",
            CheckpointError::Note(NoteError::BadSignature { .. }) => "bad_signature",
            CheckpointError::Note(_) => "malformed",
            CheckpointError::WrongOrigin { .. } => "wrong_origin",
            _ => "malformed",
        };
        assert_eq!(kind, s(&case["error"]), "{}: {err}", case["desc"]);
    }
}

#[test]
fn a_tampered_published_checkpoint_fails_its_signature() {
    let v = published();
    let case = &v["valid"][2];
    let key = NoteKey::from_vkey(s(&case["vkey"])).unwrap();
    let note = s(&case["note"]);
    let origin = s(&case["origin"]);
    for (from, to) in [
        ("21428036", "21428037"),
        ("rxnoKy", "rxnoKz"),
        ("Timestamp: 1688", "Timestamp: 1689"),
    ] {
        let tampered = note.replacen(from, to, 1);
        assert!(matches!(
            verify_checkpoint(&tampered, origin, std::slice::from_ref(&key)),
            Err(CheckpointError::Note(NoteError::BadSignature { .. }))
        ));
    }
    // The right key under another log's origin.
    assert_eq!(
        verify_checkpoint(note, "rekor.sigstore.dev", &[key]),
        Err(CheckpointError::WrongOrigin {
            expected: "rekor.sigstore.dev".into(),
            found: origin.into()
        })
    );
}

#[test]
fn zt_golden_checkpoint_is_byte_for_byte_our_format() {
    let z = ours();
    let merkle: Value = serde_json::from_str(include_str!("vectors/merkle_rfc6962.json")).unwrap();
    let leaves: Vec<Digest32> = merkle["leaf_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| leaf_hash(&hex::decode(s(h)).unwrap()))
        .collect();
    let r = root(&leaves);
    assert_eq!(r.to_hex(), s(&z["root"]));

    let cp = Checkpoint::new(s(&z["origin"]), z["size"].as_u64().unwrap(), r);
    assert_eq!(cp.body(), s(&z["body"]));
    assert_eq!(
        checkpoint_signing_input(&cp.body()).to_hex(),
        s(&z["signing_input"])
    );

    let jwk: Jwk = serde_json::from_value(z["jwk"].clone()).unwrap();
    let key = NoteKey::from_jwk(s(&z["key_name"]), &jwk).unwrap();
    assert_eq!(key.vkey(), s(&z["vkey"]));
    assert_eq!(
        verify_checkpoint(s(&z["note"]), s(&z["origin"]), &[key]),
        Ok(cp)
    );

    // The test key in the file is the key of the JWK.
    let pkcs8 = hex::decode(s(&z["test_private_key_pkcs8_hex"])).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8).unwrap();
    let from_pair = Jwk::from_uncompressed_p256("zt-p256-test", pair.public_key().as_ref());
    assert_eq!(from_pair.unwrap(), jwk);
}
