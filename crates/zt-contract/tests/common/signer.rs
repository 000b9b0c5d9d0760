//! A test-only signer: aws-lc-rs ECDSA P-256 keys signing checkpoints the way a server's
//! digest signer does (DER signature over `checkpoint_signing_input(body)`).

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use zt_contract::checkpoint::checkpoint_signing_input;
use zt_contract::note::{format_note, NoteKey, NoteSignature};

pub(crate) struct TestSigner {
    pub pair: EcdsaKeyPair,
    pub key: NoteKey,
}

impl TestSigner {
    pub(crate) fn new(name: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let key = NoteKey::from_uncompressed_p256(name, pair.public_key().as_ref()).unwrap();
        Self { pair, key }
    }

    /// Signs the 32-byte digest, as the server's `Signer::sign_digest` would.
    pub(crate) fn sign_digest(&self, body: &str) -> NoteSignature {
        let d = checkpoint_signing_input(body);
        let digest = Digest::import_less_safe(&d.0, &SHA256).unwrap();
        self.signature(self.pair.sign_digest(&digest).unwrap().as_ref().to_vec())
    }

    /// Signs the body itself (ECDSA with SHA-256 inside), as Go's and Rekor's signers do.
    pub(crate) fn sign_message(&self, body: &str) -> NoteSignature {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), body.as_bytes())
            .unwrap();
        self.signature(sig.as_ref().to_vec())
    }

    pub(crate) fn signature(&self, der: Vec<u8>) -> NoteSignature {
        NoteSignature {
            name: self.key.name().into(),
            key_id: self.key.key_id(),
            signature: der,
        }
    }

    /// This signer's key as a one-key trust set.
    pub(crate) fn keys(&self) -> &[NoteKey] {
        std::slice::from_ref(&self.key)
    }

    pub(crate) fn note(&self, body: &str) -> String {
        format_note(body, &[self.sign_digest(body)])
    }
}
