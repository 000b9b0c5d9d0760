//! Signing of record hashes.
//!
//! A [`Signer`] signs the 32 bytes of `current_hash` as a SHA-256 digest, exactly as AWS KMS
//! `Sign` does with `MessageType: DIGEST` and `SigningAlgorithm: ECDSA_SHA_256`, and returns a
//! DER signature. To keep the key in a KMS or HSM, implement [`Signer`] with a client that calls
//! the KMS (`key_id` = the KMS key ARN, `public_jwk` from `GetPublicKey`) and hand it to the
//! committer instead of [`LocalKeySigner`]. The committer calls `sign_digest` once per record
//! on its own thread, so a remote signer should batch or pipeline to keep throughput.

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
        let mode = fs::metadata(&path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(SignError::Permissions(path));
        }
        let der = fs::read(&path).map_err(io)?;
        Self::from_pkcs8(&der).ok_or(SignError::BadKey(path))
    }

    /// A signer from PKCS#8 DER bytes.
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).ok()?;
        let point = key.public_key().as_ref().to_vec();
        let fingerprint = Digest32::sha256(&point).to_hex();
        let key_id = format!("zt-p256-{}", fingerprint.get(..16)?);
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
