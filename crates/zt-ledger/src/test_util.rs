//! Helpers for the tests of this crate and of the crates built on it (feature `test-util`,
//! as tokio names its own); nothing here is compiled into a release build.

use std::sync::atomic::{AtomicBool, Ordering};

use zt_contract::{Digest32, Jwk, KmsSignature};

use crate::signer::{LocalKeySigner, SignError, Signer};

/// A local key that can be switched off: while off, every signature fails as a remote signer
/// cut off would (`SignError::Unavailable`), so a test can show what fails closed and what
/// resumes once it is back.
#[derive(Debug)]
pub struct SwitchableSigner {
    key: LocalKeySigner,
    off: AtomicBool,
}

impl SwitchableSigner {
    /// Signs with `key`, switched on.
    pub fn new(key: LocalKeySigner) -> Self {
        Self {
            key,
            off: AtomicBool::new(false),
        }
    }

    /// From now on every signature fails.
    pub fn switch_off(&self) {
        self.off.store(true, Ordering::SeqCst);
    }

    /// From now on it signs again.
    pub fn switch_on(&self) {
        self.off.store(false, Ordering::SeqCst);
    }
}

impl Signer for SwitchableSigner {
    fn key_id(&self) -> &str {
        self.key.key_id()
    }

    fn public_jwk(&self) -> &Jwk {
        self.key.public_jwk()
    }

    fn sign_digest(&self, digest: &Digest32) -> Result<KmsSignature, SignError> {
        if self.off.load(Ordering::SeqCst) {
            return Err(SignError::Unavailable("switched off".into()));
        }
        self.key.sign_digest(digest)
    }
}
