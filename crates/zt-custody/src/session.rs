//! Session keys: records signed at local speed by an in-memory P-256 key that the custody key
//! certified (see `zt_contract::session_cert`). The session key is made at start and again
//! before its validity period ends; its private half lives only in this process's memory.
//! Checkpoints stay signed by the custody key itself, so every record is bound to the custody
//! key within one checkpoint interval.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zt_contract::session_cert::{session_statement_digest, SessionCertificate};
use zt_contract::{Digest32, Jwk, KmsSignature, ALGORITHM_ECDSA_SHA_256};
use zt_ledger::clock::{parse_wire, wire_time};
use zt_ledger::{SignError, Signer, SignerStatus};

/// One certified session key.
struct SessionKey {
    pair: EcdsaKeyPair,
    jwk: Jwk,
    /// The end of the certified validity period (at millisecond precision, as certified).
    not_after: SystemTime,
}

/// Signs records with session keys certified by a custody signer.
pub struct SessionSigner {
    custody: Arc<dyn Signer>,
    origin: String,
    ttl: Duration,
    current: RwLock<Arc<SessionKey>>,
}

impl std::fmt::Debug for SessionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The session's private key stays out of every log.
        f.debug_struct("SessionSigner")
            .field("origin", &self.origin)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The shortest validity period: a session key must outlive at least a few batches.
pub const MIN_SESSION_TTL: Duration = Duration::from_secs(10);

impl SessionSigner {
    /// Makes the first session key and has `custody` certify it for the log `origin`.
    pub fn start(
        custody: Arc<dyn Signer>,
        origin: String,
        ttl: Duration,
    ) -> Result<Self, SignError> {
        let ttl = ttl.max(MIN_SESSION_TTL);
        let first = certify(custody.as_ref(), &origin, ttl)?;
        tracing::info!(session_key = %first.jwk.kid, custody_key = custody.key_id(), ttl_s = ttl.as_secs(), "audit session key certified");
        Ok(Self {
            custody,
            origin,
            ttl,
            current: RwLock::new(Arc::new(first)),
        })
    }

    fn current(&self) -> Arc<SessionKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Makes a session key valid from now for `ttl` and has `custody` sign its certificate.
fn certify(custody: &dyn Signer, origin: &str, ttl: Duration) -> Result<SessionKey, SignError> {
    let pair =
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|_| SignError::Sign)?;
    let point = pair.public_key().as_ref();
    let fingerprint = Digest32::sha256(point).to_hex();
    let kid = format!("zt-session-{}", fingerprint.get(..16).unwrap_or_default());
    let mut jwk = Jwk::from_uncompressed_p256(&kid, point).map_err(|_| SignError::Sign)?;
    let now = SystemTime::now();
    let not_before = wire_time(now);
    let not_after = wire_time(now + ttl);
    let end = parse_wire(&not_after).ok_or(SignError::Sign)?;
    let mut cert = SessionCertificate {
        custody_key_id: custody.key_id().to_string(),
        origin: origin.to_string(),
        not_before,
        not_after,
        signature: String::new(),
    };
    cert.signature = custody
        .sign_digest(&session_statement_digest(&jwk, &cert))?
        .signature;
    jwk.zt_session = Some(cert);
    Ok(SessionKey {
        pair,
        jwk,
        not_after: end,
    })
}

impl Signer for SessionSigner {
    /// The custody key: the signer's identity, and the key checkpoints are signed with.
    fn key_id(&self) -> &str {
        self.custody.key_id()
    }

    fn public_jwk(&self) -> &Jwk {
        self.custody.public_jwk()
    }

    fn sign_digest(&self, digest: &Digest32) -> Result<KmsSignature, SignError> {
        let key = self.current();
        // Never sign past the certified period: the record's timestamp, taken before this
        // call, is then inside it too.
        if SystemTime::now() > key.not_after {
            return Err(SignError::Unavailable(
                "the session key expired and the custody key could not certify a new one".into(),
            ));
        }
        let prehashed =
            Digest::import_less_safe(&digest.0, &SHA256).map_err(|_| SignError::Sign)?;
        let signature = key
            .pair
            .sign_digest(&prehashed)
            .map_err(|_| SignError::Sign)?;
        Ok(KmsSignature {
            algorithm: ALGORITHM_ECDSA_SHA_256.to_string(),
            key_id: key.jwk.kid.clone(),
            signature: STANDARD.encode(signature.as_ref()),
        })
    }

    fn published_keys(&self) -> Vec<Jwk> {
        vec![
            self.custody.public_jwk().clone(),
            self.current().jwk.clone(),
        ]
    }

    /// Certifies the next session key once less than a quarter of the period is left. A
    /// failure is logged and retried on the next batch while the current key is still valid;
    /// past its end, batches are refused until the custody key answers.
    fn rollover(&self) -> Result<Vec<Jwk>, SignError> {
        let key = self.current();
        let left = key
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if left > self.ttl / 4 {
            return Ok(Vec::new());
        }
        match certify(self.custody.as_ref(), &self.origin, self.ttl) {
            Ok(next) => {
                tracing::info!(session_key = %next.jwk.kid, previous = %key.jwk.kid, "audit session key renewed");
                let jwk = next.jwk.clone();
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
                Ok(vec![jwk])
            }
            Err(e) if left > Duration::ZERO => {
                tracing::warn!(error = %e, "audit session key not renewed yet; the current one stays valid");
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    fn status(&self) -> SignerStatus {
        let mut status = self.custody.status();
        status.mode = "session-keys";
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_contract::{Jwks, PublicKeySet};
    use zt_ledger::LocalKeySigner;

    #[test]
    fn records_signed_by_a_session_key_verify_through_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let custody: Arc<dyn Signer> =
            Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
        let signer = SessionSigner::start(
            custody.clone(),
            "zt-infra/test".into(),
            Duration::from_secs(3600),
        )
        .unwrap();
        assert!(signer.rollover().unwrap().is_empty());
        let digest = Digest32::sha256(b"record");
        let now = zt_ledger::clock::wire_now();
        let sig = signer.sign_digest(&digest).unwrap();
        let keys = PublicKeySet::from_jwks(&Jwks {
            keys: signer.published_keys(),
        })
        .unwrap();
        assert!(keys.is_session_key(&sig.key_id));
        assert!(keys.valid_at(&sig.key_id, &now));
        let der = STANDARD.decode(&sig.signature).unwrap();
        assert!(keys.verify_digest(&sig.key_id, &digest, &der));
        // The custody key alone does not make a session key valid for another log's keys.
        assert!(PublicKeySet::from_jwks(&Jwks {
            keys: vec![signer.current().jwk.clone()],
        })
        .is_err());
    }
}
