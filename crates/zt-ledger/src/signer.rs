//! Signing of record hashes.
//!
//! A [`Signer`] signs the 32 bytes of `current_hash` as a SHA-256 digest, exactly as AWS KMS
//! `Sign` does with `MessageType: DIGEST` and `SigningAlgorithm: ECDSA_SHA_256`, and returns a
//! DER signature. To keep the key in a KMS or HSM, implement [`Signer`] with a client that calls
//! the KMS (`key_id` = the KMS key ARN, `public_jwk` from `GetPublicKey`) and hand it to the
//! committer instead of [`LocalKeySigner`]. The committer hands each batch's digests to
//! [`Signer::sign_batch`] at once, so a remote signer can keep many calls in flight; the
//! signers of the `zt-custody` crate (AWS KMS, PKCS#11, session keys) do.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zt_contract::{Digest32, Jwk, KmsSignature, ALGORITHM_ECDSA_SHA_256};

/// Signs record digests.
pub trait Signer: Send + Sync {
    /// The id records carry in `kms_signature.key_id` and `GET /audit/keys` publishes as `kid`.
    fn key_id(&self) -> &str;
    /// The public key, for publication.
    fn public_jwk(&self) -> &Jwk;
    /// Signs a 32-byte SHA-256 digest.
    fn sign_digest(&self, digest: &Digest32) -> Result<KmsSignature, SignError>;
    /// Signs a batch of digests, one signature each, in order. All or nothing: an error
    /// refuses the whole batch. A remote signer overrides it to sign concurrently.
    fn sign_batch(&self, digests: &[Digest32]) -> Result<Vec<KmsSignature>, SignError> {
        digests.iter().map(|d| self.sign_digest(d)).collect()
    }
    /// Signs as much of a batch, in order, as it can: the signatures of the longest prefix
    /// that was signed, and why it stopped there. The committer stores that prefix and refuses
    /// only the rest, so a remote signer whose calls fail one at a time (a KMS past its
    /// request quota) still commits what came back. The default is [`Signer::sign_batch`]'s
    /// all or nothing.
    fn sign_prefix(&self, digests: &[Digest32]) -> SignedPrefix {
        match self.sign_batch(digests) {
            Ok(signatures) => SignedPrefix {
                signatures,
                stopped: None,
            },
            Err(e) => SignedPrefix {
                signatures: Vec::new(),
                stopped: Some(e),
            },
        }
    }
    /// Every key to publish at start, in order: records and checkpoints may name any of them.
    fn published_keys(&self) -> Vec<Jwk> {
        vec![self.public_jwk().clone()]
    }
    /// Called before each batch is signed: a signer that changes keys as it runs (session
    /// keys) makes its next key here and returns it, to be published before any record
    /// signed with it is stored.
    fn rollover(&self) -> Result<Vec<Jwk>, SignError> {
        Ok(Vec::new())
    }
    /// The signer's state, for `/health` and `/metrics`.
    fn status(&self) -> SignerStatus {
        SignerStatus::local()
    }
}

/// What [`Signer::sign_prefix`] signed: the signatures of the batch's first
/// `signatures.len()` digests, and, when that is not all of them, why it stopped.
#[derive(Debug, Default)]
pub struct SignedPrefix {
    /// One per digest, in order, from the first.
    pub signatures: Vec<KmsSignature>,
    /// Why the digest after the last signed one was not signed.
    pub stopped: Option<SignError>,
}

/// What `/health` and `/metrics` show about the signer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SignerStatus {
    /// `local`, `aws-kms` or `pkcs11`.
    pub kind: &'static str,
    /// `per-record` or `session-keys`.
    pub mode: &'static str,
    /// False while the custody key's latest call failed: of the calls that ended, the one that
    /// started last (an older call failing late does not overturn a newer success).
    pub up: bool,
    /// Whether a record can be signed now: the custody key is up (per-record), or the current
    /// session key is inside its certified period (session keys, even while the custody key
    /// is away).
    pub can_sign: bool,
    /// Calls to the custody key so far (a batch counts once); only ever grows.
    pub calls: u64,
    /// Failed calls so far; only ever grows.
    pub failures: u64,
    /// Duration of the last call, in seconds.
    pub last_latency_seconds: f64,
    /// Every call's duration, for the latency histogram.
    #[serde(skip)]
    pub latency: LatencyHistogram,
    /// Why the last failed call failed, while the signer is down.
    pub last_error: Option<String>,
}

impl SignerStatus {
    /// A key in this process, always up.
    pub fn local() -> Self {
        Self {
            kind: "local",
            mode: "per-record",
            up: true,
            can_sign: true,
            calls: 0,
            failures: 0,
            last_latency_seconds: 0.0,
            latency: LatencyHistogram::default(),
            last_error: None,
        }
    }
}

/// Upper bounds, in seconds, of the buckets of [`LatencyHistogram`] (a last bucket takes the
/// rest): from a local HSM's millisecond to a remote KMS's retries near the timeout.
pub const SIGNER_LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Durations of calls to the custody key: a count per bucket of [`SIGNER_LATENCY_BOUNDS`]
/// (not cumulative; the last counts the calls longer than every bound) and their sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Calls per bucket.
    pub counts: [u64; SIGNER_LATENCY_BOUNDS.len() + 1],
    /// Sum of every call's duration, in seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// Counts one call of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        let bucket = SIGNER_LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(SIGNER_LATENCY_BOUNDS.len());
        if let Some(count) = self.counts.get_mut(bucket) {
            *count += 1;
        }
        self.sum_seconds += seconds;
    }

    /// Calls counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Why a key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Reading or writing the key file failed.
    #[error("signing key file `{path}`: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file is readable by group or others.
    #[error("signing key file `{0}` is readable by other users; run `chmod 600` on it")]
    Permissions(PathBuf),
    /// The key file does not hold a P-256 PKCS#8 key.
    #[error("signing key file `{0}` does not hold an ECDSA P-256 PKCS#8 key")]
    BadKey(PathBuf),
    /// The crypto library refused to sign.
    #[error("signing failed")]
    Sign,
    /// A remote signer (KMS, HSM) failed, throttled or timed out.
    #[error("the audit signer is unavailable: {0}")]
    Unavailable(String),
    /// A remote signer returned a signature that does not verify with its published key.
    #[error("the audit signer returned a signature that does not verify with its public key")]
    BadSignature,
}

/// A key ID that changes only with the key: `prefix` and the first 16 hex digits of the
/// SHA-256 of its public point (the local key's `zt-p256-…`, a custody or session key's).
pub fn fingerprint_kid(prefix: &str, point: &[u8]) -> String {
    let fingerprint = Digest32::sha256(point).to_hex();
    format!("{prefix}{}", fingerprint.get(..16).unwrap_or_default())
}

/// An ECDSA P-256 key kept in a file (PKCS#8 DER, mode 0600) in the data directory.
pub struct LocalKeySigner {
    key: EcdsaKeyPair,
    key_id: String,
    jwk: Jwk,
}

// Names the key, never prints it.
impl std::fmt::Debug for LocalKeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeySigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The key file's name inside the data directory's `keys/` folder.
pub const KEY_FILE_NAME: &str = "audit-signing-key.p8";

/// The outgoing key after `zt keys rotate`, kept until the next start has it endorse the new
/// key in the rotation record, then destroyed.
pub const RETIRING_KEY_FILE_NAME: &str = "audit-signing-key.retiring.p8";

impl LocalKeySigner {
    /// Loads `DATA_DIR/keys/audit-signing-key.p8`, generating it on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SignError> {
        let dir = data_dir.join("keys");
        let path = dir.join(KEY_FILE_NAME);
        let io = |source| SignError::Io {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            fs::create_dir_all(&dir).map_err(io)?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
            let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
                .map_err(|_| SignError::Sign)?;
            let pkcs8 = key.to_pkcs8v1().map_err(|_| SignError::Sign)?;
            write_private_file(&path, pkcs8.as_ref()).map_err(io)?;
        }
        Self::load(path)
    }

    /// The key of the file at `path` (0600 or stricter).
    fn load(path: PathBuf) -> Result<Self, SignError> {
        let io = |source| SignError::Io {
            path: path.clone(),
            source,
        };
        let mode = fs::metadata(&path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(SignError::Permissions(path));
        }
        let der = fs::read(&path).map_err(io)?;
        Self::from_pkcs8(&der).ok_or(SignError::BadKey(path))
    }

    /// The key that signed `data_dir`'s newest local-key records: the retiring key after a
    /// `zt keys rotate`, else the current key file; `None` if there is neither.
    pub fn load_outgoing(data_dir: &Path) -> Result<Option<Self>, SignError> {
        let dir = data_dir.join("keys");
        [RETIRING_KEY_FILE_NAME, KEY_FILE_NAME]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|path| path.exists())
            .map(Self::load)
            .transpose()
    }

    /// The retiring key left by `zt keys rotate`, if there is one.
    pub fn load_retiring(data_dir: &Path) -> Result<Option<Self>, SignError> {
        let path = data_dir.join("keys").join(RETIRING_KEY_FILE_NAME);
        if path.exists() {
            Self::load(path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Destroys the retiring key, once the rotation it endorsed is recorded (or it has nothing
    /// left to endorse). Its public key stays published in the audit store.
    pub fn discard_retiring(data_dir: &Path) -> Result<(), SignError> {
        let path = data_dir.join("keys").join(RETIRING_KEY_FILE_NAME);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(SignError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Replaces the key of `data_dir` by a new one and says which keys are involved. The old
    /// private key is kept as the retiring key (`RETIRING_KEY_FILE_NAME`) until the next start
    /// has it endorse the new key in the rotation record; its public key stays published in the
    /// audit store, so the records it signed keep verifying. If a retiring key is already there
    /// (rotated twice without a start), the current key never signed a record and is simply
    /// replaced. Call with the data directory locked (server stopped).
    pub fn rotate(data_dir: &Path) -> Result<RotatedKeys, SignError> {
        let old = Self::load_or_create(data_dir)?;
        let path = data_dir.join("keys").join(KEY_FILE_NAME);
        let retiring = path.with_file_name(RETIRING_KEY_FILE_NAME);
        // A retiring key still waiting (rotated twice without a start) stays the endorser.
        let waiting = Self::load_retiring(data_dir)?.map(|key| key.key_id);
        let next = path.with_extension("p8.new");
        let io = |source| SignError::Io {
            path: next.clone(),
            source,
        };
        let key =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|_| SignError::Sign)?;
        let pkcs8 = key.to_pkcs8v1().map_err(|_| SignError::Sign)?;
        let new = Self::from_pkcs8(pkcs8.as_ref()).ok_or(SignError::Sign)?;
        // A leftover from an interrupted rotation was never used: replace it.
        match fs::remove_file(&next) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        write_private_file(&next, pkcs8.as_ref()).map_err(io)?;
        if waiting.is_none() {
            fs::rename(&path, &retiring).map_err(io)?;
        }
        fs::rename(&next, &path).map_err(io)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(RotatedKeys {
            endorser: waiting.unwrap_or_else(|| old.key_id.clone()),
            replaced: old.key_id,
            new: new.key_id,
        })
    }

    /// A signer from PKCS#8 DER bytes.
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).ok()?;
        let point = key.public_key().as_ref().to_vec();
        let key_id = fingerprint_kid("zt-p256-", &point);
        let jwk = Jwk::from_uncompressed_p256(&key_id, &point).ok()?;
        Some(Self { key, key_id, jwk })
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> Option<Vec<u8>> {
        self.key
            .public_key()
            .as_der()
            .ok()
            .map(|d| d.as_ref().to_vec())
    }
}

/// The key IDs a [`LocalKeySigner::rotate`] involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedKeys {
    /// The key that was current until now.
    pub replaced: String,
    /// The key that is current now.
    pub new: String,
    /// The key the next start has endorse `new`: the retiring key. That is `replaced`, unless
    /// an earlier rotation's retiring key still waits (rotated twice without a start); then
    /// `replaced` never signed a record and is simply gone.
    pub endorser: String,
}

fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Signer for LocalKeySigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    fn sign_digest(&self, digest: &Digest32) -> Result<KmsSignature, SignError> {
        let digest = Digest::import_less_safe(&digest.0, &SHA256).map_err(|_| SignError::Sign)?;
        let signature = self.key.sign_digest(&digest).map_err(|_| SignError::Sign)?;
        Ok(KmsSignature {
            algorithm: ALGORITHM_ECDSA_SHA_256.to_string(),
            key_id: self.key_id.clone(),
            signature: STANDARD.encode(signature.as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_contract::{Jwks, PublicKeySet};

    #[test]
    fn creates_a_0600_key_once_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LocalKeySigner::load_or_create(dir.path()).unwrap();
        let path = dir.path().join("keys").join(KEY_FILE_NAME);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = LocalKeySigner::load_or_create(dir.path()).unwrap();
        assert_eq!(signer.key_id(), again.key_id());

        let digest = Digest32::sha256(b"record");
        let sig = signer.sign_digest(&digest).unwrap();
        let keys = PublicKeySet::from_jwks(&Jwks {
            keys: vec![again.public_jwk().clone()],
        })
        .unwrap();
        let der = STANDARD.decode(&sig.signature).unwrap();
        assert!(keys.verify_digest(&sig.key_id, &digest, &der));
        assert!(!keys.verify_digest(&sig.key_id, &Digest32::sha256(b"other"), &der));
    }

    #[test]
    fn rotation_replaces_the_key_file_with_a_new_0600_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalKeySigner::load_or_create(dir.path()).unwrap();
        let RotatedKeys {
            replaced: old,
            new,
            endorser,
        } = LocalKeySigner::rotate(dir.path()).unwrap();
        assert_eq!(old, first.key_id());
        assert_eq!(endorser, old);
        assert_ne!(old, new);
        let loaded = LocalKeySigner::load_or_create(dir.path()).unwrap();
        assert_eq!(loaded.key_id(), new);
        let path = dir.path().join("keys").join(KEY_FILE_NAME);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!path.with_extension("p8.new").exists());
        // The outgoing key waits, 0600, to endorse the new one; then it is destroyed.
        let retiring = LocalKeySigner::load_retiring(dir.path()).unwrap().unwrap();
        assert_eq!(retiring.key_id(), old);
        assert_eq!(
            LocalKeySigner::load_outgoing(dir.path())
                .unwrap()
                .unwrap()
                .key_id(),
            old
        );
        // Rotating again before a start replaces the unused key and keeps the retiring one.
        let again = LocalKeySigner::rotate(dir.path()).unwrap();
        assert_eq!(again.replaced, new);
        assert_eq!(
            again.endorser, old,
            "the waiting retiring key still endorses"
        );
        let newest = again.new;
        assert_eq!(
            LocalKeySigner::load_retiring(dir.path())
                .unwrap()
                .unwrap()
                .key_id(),
            old
        );
        assert_eq!(
            LocalKeySigner::load_or_create(dir.path()).unwrap().key_id(),
            newest
        );
        LocalKeySigner::discard_retiring(dir.path()).unwrap();
        assert!(LocalKeySigner::load_retiring(dir.path()).unwrap().is_none());
        LocalKeySigner::discard_retiring(dir.path()).unwrap();
    }

    #[test]
    fn refuses_a_key_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        LocalKeySigner::load_or_create(dir.path()).unwrap();
        let path = dir.path().join("keys").join(KEY_FILE_NAME);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            LocalKeySigner::load_or_create(dir.path()),
            Err(SignError::Permissions(_))
        ));
    }
}
