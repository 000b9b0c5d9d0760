//! Session keys: records signed at local speed by an in-memory P-256 key that the custody key
//! certified (see `zt_contract::session_cert`). The session key is made at start and again
//! before its validity period ends; its private half lives only in this process's memory.
//! Checkpoints stay signed by the custody key itself, so every record is bound to the custody
//! key within one checkpoint interval.
//!
//! Renewal runs on a thread of its own while the current key is valid, so no batch waits for
//! the custody key (a KMS round trip, or a timeout while it is away); a failed renewal is
//! retried after [`RENEWAL_RETRY`]. Only once the key has expired does a batch wait for the
//! renewal, since it could not be signed anyway.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
    /// The start of the certified validity period (at millisecond precision, as certified).
    not_before: SystemTime,
    /// The end of the certified validity period (at millisecond precision, as certified).
    not_after: SystemTime,
}

/// Signs records with session keys certified by a custody signer.
pub struct SessionSigner {
    custody: Arc<dyn Signer>,
    origin: String,
    ttl: Duration,
    current: RwLock<Arc<SessionKey>>,
    renewal: Arc<Mutex<Renewal>>,
}

/// The background renewal of the session key.
#[derive(Default)]
struct Renewal {
    /// A renewal thread is running.
    in_flight: bool,
    /// What the last renewal thread made, not yet installed.
    done: Option<Result<SessionKey, SignError>>,
    /// No new attempt before this (after a failure).
    not_before: Option<Instant>,
}

/// The wait after a failed renewal before the next attempt.
pub const RENEWAL_RETRY: Duration = Duration::from_secs(1);

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
        Self::start_unclamped(custody, origin, ttl.max(MIN_SESSION_TTL))
    }

    fn start_unclamped(
        custody: Arc<dyn Signer>,
        origin: String,
        ttl: Duration,
    ) -> Result<Self, SignError> {
        let first = certify(custody.as_ref(), &origin, ttl)?;
        tracing::info!(session_key = %first.jwk.kid, custody_key = custody.key_id(), ttl_s = ttl.as_secs(), "audit session key certified");
        Ok(Self {
            custody,
            origin,
            ttl,
            current: RwLock::new(Arc::new(first)),
            renewal: Arc::default(),
        })
    }

    /// Makes `next` the current key; its JWK, to publish.
    fn install(&self, next: SessionKey, previous: &SessionKey) -> Vec<Jwk> {
        tracing::info!(session_key = %next.jwk.kid, previous = %previous.jwk.kid, "audit session key renewed");
        let jwk = next.jwk.clone();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        vec![jwk]
    }

    /// Starts a renewal thread unless one runs or a failure is too recent.
    fn renew_in_background(&self, renewal: &mut Renewal) {
        if renewal.in_flight || renewal.not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let (custody, origin, ttl) = (self.custody.clone(), self.origin.clone(), self.ttl);
        let shared = self.renewal.clone();
        let spawned = std::thread::Builder::new()
            .name("zt-session-renew".into())
            .spawn(move || {
                let made = certify(custody.as_ref(), &origin, ttl);
                let mut renewal = shared.lock().unwrap_or_else(PoisonError::into_inner);
                renewal.in_flight = false;
                renewal.done = Some(made);
            });
        match spawned {
            Ok(_) => renewal.in_flight = true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the session key renewal; retrying on a later batch")
            }
        }
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
    let kid = zt_ledger::fingerprint_kid("zt-session-", point);
    let mut jwk = Jwk::from_uncompressed_p256(&kid, point).map_err(|_| SignError::Sign)?;
    let now = SystemTime::now();
    let not_before = wire_time(now);
    let not_after = wire_time(now + ttl);
    let start = parse_wire(&not_before).ok_or(SignError::Sign)?;
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
        not_before: start,
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
        let now = SystemTime::now();
        if now > key.not_after {
            return Err(SignError::Unavailable(
                "the session key expired and the custody key could not certify a new one".into(),
            ));
        }
        // The wall clock went back past the certificate's start: a record timestamped now
        // would fall outside the period and fail verification as if forged.
        if now < key.not_before {
            return Err(SignError::Unavailable(
                "the clock is before the session key's certified period".into(),
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

    /// Certifies the next session key once less than a quarter of the period is left, on a
    /// thread of its own; a batch picks the new key up (and publishes it) once it is made. A
    /// failure is logged and retried after [`RENEWAL_RETRY`] while the current key is still
    /// valid; past its end, the batch itself asks the custody key, and is refused if it fails.
    fn rollover(&self) -> Result<Vec<Jwk>, SignError> {
        let key = self.current();
        let left = key
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if left > self.ttl / 4 {
            return Ok(Vec::new());
        }
        let mut renewal = self.renewal.lock().unwrap_or_else(PoisonError::into_inner);
        match renewal.done.take() {
            // A key renewed long ago (no batch since) may itself have expired: installing it
            // would refuse this batch, so it is dropped and a fresh one certified below.
            Some(Ok(next)) if SystemTime::now() < next.not_after => {
                renewal.not_before = None;
                return Ok(self.install(next, &key));
            }
            Some(Ok(stale)) => {
                tracing::info!(session_key = %stale.jwk.kid, "a renewed audit session key expired before any batch used it; certifying another");
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "audit session key not renewed yet; the current one stays valid until it expires");
                renewal.not_before = Some(Instant::now() + RENEWAL_RETRY);
            }
            None => {}
        }
        if left > Duration::ZERO {
            self.renew_in_background(&mut renewal);
            return Ok(Vec::new());
        }
        // Expired: nothing can be signed until a new key is certified, so this batch waits
        // for it (unless a renewal thread is already asking).
        if renewal.in_flight {
            return Err(SignError::Unavailable(
                "the session key expired; a new one is being certified".into(),
            ));
        }
        let next = certify(self.custody.as_ref(), &self.origin, self.ttl)?;
        Ok(self.install(next, &key))
    }

    /// The custody key's calls and state; records can be signed while the session key is
    /// inside its certified period, whether or not the custody key answers.
    fn status(&self) -> SignerStatus {
        let mut status = self.custody.status();
        status.mode = "session-keys";
        status.can_sign = SystemTime::now() <= self.current().not_after;
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_contract::{Jwks, PublicKeySet};
    use zt_ledger::test_util::SwitchableSigner;
    use zt_ledger::LocalKeySigner;

    /// Calls `rollover` until it returns a key (at most `tries` times, 20 ms apart).
    fn renewed(signer: &SessionSigner, tries: usize) -> Option<Vec<Jwk>> {
        (0..tries).find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            signer.rollover().ok().filter(|keys| !keys.is_empty())
        })
    }

    #[test]
    fn renewal_runs_off_the_batch_and_a_down_custody_key_fails_closed_at_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let custody = Arc::new(SwitchableSigner::new(
            LocalKeySigner::load_or_create(dir.path()).unwrap(),
        ));
        let ttl = Duration::from_millis(800);
        let signer =
            SessionSigner::start_unclamped(custody.clone(), "zt-infra/test".into(), ttl).unwrap();
        let first = signer.current().jwk.kid.clone();
        // Inside the last quarter a renewal starts in the background; a later batch installs it.
        std::thread::sleep(ttl * 3 / 4);
        let keys = renewed(&signer, 50).expect("renewed");
        assert_eq!(keys.len(), 1);
        assert_ne!(keys[0].kid, first);

        // The custody key goes away: batches keep being signed and never wait for it...
        custody.switch_off();
        std::thread::sleep(ttl * 3 / 4);
        // (Asking the absent custody key on the batch would have failed it: `Ok` shows the
        // renewal was left to the background, whatever the machine's speed.)
        assert!(signer.rollover().unwrap().is_empty());
        assert!(signer.sign_digest(&Digest32::sha256(b"r")).is_ok());
        // ...until the key expires: then nothing is signed and the status says so.
        std::thread::sleep(ttl / 2);
        assert!(signer.sign_digest(&Digest32::sha256(b"r")).is_err());
        assert!(signer.rollover().is_err());
        assert!(!signer.status().can_sign);

        // Back: the next batch certifies a new key and signing resumes.
        custody.switch_on();
        let keys = renewed(&signer, 100).expect("renewed after recovery");
        assert_eq!(keys.len(), 1);
        assert!(signer.status().can_sign);
        assert!(signer.sign_digest(&Digest32::sha256(b"r")).is_ok());
    }

    #[test]
    fn a_renewed_key_that_expired_unused_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let custody: Arc<dyn Signer> =
            Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
        // Long enough that a loaded machine's late wake-up still lands in the last quarter.
        let ttl = Duration::from_secs(2);
        let signer = SessionSigner::start_unclamped(custody, "zt-infra/test".into(), ttl).unwrap();
        // In the last quarter a batch starts the renewal in the background...
        std::thread::sleep(ttl * 3 / 4 + Duration::from_millis(50));
        assert!(signer.rollover().unwrap().is_empty());
        while signer.renewal.lock().unwrap().in_flight {
            std::thread::sleep(Duration::from_millis(5));
        }
        // ...then no batch comes until the renewed key's own period is over.
        std::thread::sleep(ttl + Duration::from_millis(20));
        let keys = signer.rollover().unwrap();
        assert_eq!(keys.len(), 1);
        assert!(signer.status().can_sign);
        assert!(signer.sign_digest(&Digest32::sha256(b"r")).is_ok());
    }

    #[test]
    fn a_clock_before_the_certified_period_signs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let custody: Arc<dyn Signer> =
            Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
        let signer = SessionSigner::start_unclamped(
            custody,
            "zt-infra/test".into(),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(signer.sign_digest(&Digest32::sha256(b"r")).is_ok());
        // As if the wall clock stepped back a second after the key was certified: a record
        // timestamped now would precede its certificate and fail verification.
        let current = signer.current();
        let ahead = SessionKey {
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap(),
            jwk: current.jwk.clone(),
            not_before: SystemTime::now() + Duration::from_secs(1),
            not_after: current.not_after,
        };
        *signer.current.write().unwrap() = Arc::new(ahead);
        let refused = signer.sign_digest(&Digest32::sha256(b"r")).unwrap_err();
        assert!(
            refused.to_string().contains("before the session key"),
            "{refused}"
        );
    }

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
