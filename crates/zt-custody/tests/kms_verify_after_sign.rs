//! The KMS signer against a local KMS (moto's server, see `zt_test_support::moto`): with the
//! `DIGEST` fix its signatures verify and are used; as released, moto 5.2 hashes the digest again, and verify-after-sign turns every such signature into a
//! signer failure, never a signature.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::Duration;

use zt_contract::{Digest32, Jwks, PublicKeySet};
use zt_custody::kms::KmsKey;
use zt_custody::Custodian;
use zt_ledger::{SignError, Signer};
use zt_test_support::moto::Moto;

fn signer(port: u16, arn: &str) -> Custodian<KmsKey> {
    // The only test of this binary: the environment is this test's own.
    for (k, v) in Moto::env(port) {
        std::env::set_var(k, v);
    }
    let timeout = Duration::from_secs(5);
    Custodian::new(
        KmsKey::open(arn, timeout, 8).unwrap(),
        timeout,
        "per-record",
    )
    .unwrap()
}

#[test]
fn digest_signatures_are_used_only_when_they_verify() {
    let digests: Vec<Digest32> = (0..12u32)
        .map(|i| Digest32::sha256(&i.to_be_bytes()))
        .collect();

    let Some(fixed) = Moto::start(false, 1) else {
        return;
    };
    let arn = fixed.arns[0].clone();
    let kms = signer(fixed.port, &arn);
    assert_eq!(kms.key_id(), arn);
    let signatures = kms.sign_batch(&digests).unwrap();
    let keys = PublicKeySet::from_jwks(&Jwks {
        keys: vec![kms.public_jwk().clone()],
    })
    .unwrap();
    for (digest, sig) in digests.iter().zip(&signatures) {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(&sig.signature)
            .unwrap();
        assert_eq!(sig.key_id, arn);
        assert!(keys.verify_digest(&arn, digest, &der));
    }
    let status = kms.status();
    assert!(status.up && status.calls == 1 && status.failures == 0);
    drop(fixed);

    let released = Moto::start(true, 1).unwrap();
    let kms = signer(released.port, &released.arns[0]);
    assert!(matches!(
        kms.sign_batch(&digests),
        Err(SignError::BadSignature)
    ));
    assert!(matches!(
        kms.sign_digest(&digests[0]),
        Err(SignError::BadSignature)
    ));
    let status = kms.status();
    assert!(!status.up);
    assert_eq!(status.failures, 2);
}
