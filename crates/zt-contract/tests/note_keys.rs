//! Note verifier keys: every way to name a key gives the same key and key ID, and malformed or
//! foreign keys are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::signer::TestSigner;
use zt_contract::note::{note_key_id, NoteError, NoteKey, SIGNATURE_TYPE_ECDSA};
use zt_contract::Jwk;

const REKOR: &str = "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=";

#[test]
fn jwk_point_spki_and_vkey_name_the_same_key() {
    let s = TestSigner::new("zt.example/audit");
    let point = s.key.spki_der()[26..].to_vec();
    let jwk = Jwk::from_uncompressed_p256("kid-1", &point).unwrap();
    let from_jwk = NoteKey::from_jwk("zt.example/audit", &jwk).unwrap();
    let from_spki = NoteKey::from_spki_der("zt.example/audit", s.key.spki_der()).unwrap();
    let from_vkey = NoteKey::from_vkey(&s.key.vkey()).unwrap();
    for k in [&from_jwk, &from_spki, &from_vkey] {
        assert_eq!(k.vkey(), s.key.vkey());
        assert_eq!(k.key_id(), note_key_id(s.key.spki_der()));
        assert_eq!(k.name(), "zt.example/audit");
    }
    assert_eq!(SIGNATURE_TYPE_ECDSA, 0x02);
    assert_eq!(format!("{:?}", s.key), s.key.vkey());
}

#[test]
fn malformed_verifier_keys_are_refused() {
    let (name, rest) = REKOR.split_once('+').unwrap();
    let (_, b64) = rest.split_once('+').unwrap();
    let malformed = [
        format!("{name}+c0d23d6b+{b64}"),  // key ID of another key
        format!("{name}+C0D23D6A+{b64}"),  // upper-case hex
        format!("{name}+c0d23d6+{b64}"),   // 7 digits
        format!("{name}+0c0d23d6a+{b64}"), // 9 digits
        format!("{name}+c0d23d6a+{b64}x"), // bad base64
        format!("{name}+c0d23d6a"),        // two parts
        name.to_string(),                  // one part
        format!("{name}+c0d23d6a+"),       // no key
    ];
    for vkey in malformed {
        assert!(
            matches!(
                NoteKey::from_vkey(&vkey),
                Err(NoteError::MalformedVerifierKey(_) | NoteError::UnsupportedKey(_))
            ),
            "{vkey}"
        );
    }
    // Other signature types: Ed25519 (0x01, Go's sumdb example key) and RFC 6962 STH (0x05).
    for vkey in [
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "ct.googleapis.com/logs/us1/argon2024+7deb49d0+BTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABB25bKnLaZTFXOa2pgO70rjcVEMXKJkMBgFQHZ1kwFlGK9zIAx0FtC2oCfeZQe0E++VXuiYE9hFSzhRlOy92K8A=",
    ] {
        assert!(matches!(NoteKey::from_vkey(vkey), Err(NoteError::UnsupportedKey(_))), "{vkey}");
    }
    // A name with a space cannot be a key name (the rest still parses).
    assert!(matches!(
        NoteKey::from_vkey(&format!("rekor sigstore+c0d23d6a+{b64}")),
        Err(NoteError::InvalidKeyName(_))
    ));
}

#[test]
fn keys_that_are_not_uncompressed_p256_points_are_refused() {
    let s = TestSigner::new("k");
    let point = s.key.spki_der()[26..].to_vec();
    let mut off_curve = point.clone();
    off_curve[64] ^= 1;
    let mut compressed = vec![2 + (point[64] & 1)];
    compressed.extend_from_slice(&point[1..33]);
    assert!(matches!(
        NoteKey::from_uncompressed_p256("k", &off_curve),
        Err(NoteError::MalformedKey(_))
    ));
    for bad in [&compressed[..], &point[..64], &[4u8; 65][..], &[]] {
        assert!(
            NoteKey::from_uncompressed_p256("k", bad).is_err(),
            "{}",
            hex::encode(bad)
        );
    }
    assert!(matches!(
        NoteKey::from_uncompressed_p256("", &point),
        Err(NoteError::InvalidKeyName(_))
    ));
    // A P-384 SubjectPublicKeyInfo prefix, and a truncated P-256 one.
    let p384 = hex::decode("3076301006072a8648ce3d020106052b81040022036200").unwrap();
    assert!(matches!(
        NoteKey::from_spki_der("k", &[&p384[..], &[4u8; 97][..]].concat()),
        Err(NoteError::UnsupportedKey(_))
    ));
    assert!(NoteKey::from_spki_der("k", &s.key.spki_der()[..90]).is_err());
    // A JWK on another curve.
    let mut jwk = Jwk::from_uncompressed_p256("kid", &point).unwrap();
    jwk.crv = "P-384".into();
    assert!(matches!(
        NoteKey::from_jwk("k", &jwk),
        Err(NoteError::UnsupportedKey(_))
    ));
}
