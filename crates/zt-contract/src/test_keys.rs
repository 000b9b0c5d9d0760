//! Test keys: a fresh P-256 pair with its JWK, and a digest signed as custody keys sign.

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::{Digest32, Jwk};

/// A new key pair and its public JWK named `kid`.
pub(crate) fn key(kid: &str) -> (EcdsaKeyPair, Jwk) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let jwk = Jwk::from_uncompressed_p256(kid, pair.public_key().as_ref()).unwrap();
    (pair, jwk)
}

/// `pair`'s base64 DER signature of `digest`.
pub(crate) fn sign(pair: &EcdsaKeyPair, digest: &Digest32) -> String {
    let digest = Digest::import_less_safe(&digest.0, &SHA256).unwrap();
    STANDARD.encode(pair.sign_digest(&digest).unwrap().as_ref())
}
