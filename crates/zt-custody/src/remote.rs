//! A custody key behind a slow, fallible interface (AWS KMS, a PKCS#11 token) made into an
//! audit [`Signer`]: every signature is verified with the key's published public key before
//! it is used (a wrong signature is a signer failure, never a record), every call is timed
//! and its outcome kept for `/health` and `/metrics`.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_ASN1};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zt_contract::{Digest32, Jwk, KmsSignature, ALGORITHM_ECDSA_SHA_256};
use zt_ledger::{SignError, SignedPrefix, Signer, SignerStatus};

/// What a remote key is known by: its kind, the `key_id` records carry and its public key,
/// read from the custody service when the key was opened.
#[derive(Debug, Clone)]
pub struct RemoteIdentity {
    /// `aws-kms` or `pkcs11`.
    pub kind: &'static str,
    /// The public key; its `kid` is the `key_id` records carry.
    pub jwk: Jwk,
}

impl RemoteIdentity {
    /// The identity of the P-256 key whose uncompressed public point is `point`, named
    /// `key_id`.
    pub fn p256(kind: &'static str, key_id: String, point: &[u8]) -> Result<Self, String> {
        let jwk = Jwk::from_uncompressed_p256(&key_id, point).map_err(|e| e.to_string())?;
        Ok(Self { kind, jwk })
    }

    /// The identity of a key that has no name of its own: `prefix` and the first 16 hex digits
    /// of the SHA-256 of its public point, so the name changes only with the key.
    pub fn fingerprinted(kind: &'static str, prefix: &str, point: &[u8]) -> Result<Self, String> {
        Self::p256(kind, zt_ledger::fingerprint_kid(prefix, point), point)
    }
}

/// A key that signs digests somewhere else.
pub trait RemoteKey: Send + Sync {
    /// Its kind, `key_id` and public key.
    fn identity(&self) -> &RemoteIdentity;
    /// DER ECDSA signatures of `digests`, in order, all within `deadline`.
    fn sign_digests(
        &self,
        digests: &[Digest32],
        deadline: Duration,
    ) -> Result<Vec<Vec<u8>>, SignError>;
    /// The signatures of `digests` as they came back within `deadline`, each with its own
    /// outcome (at most one per digest; a missing one is unsigned), so a caller keeps the
    /// ones before the first failure. A key whose calls fail one at a time (a KMS past its
    /// request quota) overrides it; the default is [`RemoteKey::sign_digests`], all or nothing.
    fn sign_each(
        &self,
        digests: &[Digest32],
        deadline: Duration,
    ) -> Vec<Result<Vec<u8>, SignError>> {
        match self.sign_digests(digests, deadline) {
            Ok(signatures) => signatures.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        }
    }
    /// Its answer failed verify-after-sign (or was the wrong length): a key that keeps a
    /// connection starts it over on the next call, finding and checking the key again.
    fn distrust(&self) {}
}

/// A [`RemoteKey`] as an audit signer, with verify-after-sign and a status.
pub struct Custodian<K> {
    key: K,
    public: ParsedPublicKey,
    timeout: Duration,
    mode: &'static str,
    status: Mutex<Observed>,
}

/// The signer's status, and when the call whose outcome it shows started.
struct Observed {
    status: SignerStatus,
    /// Calls overlap (a batch, a checkpoint, a session key's renewal): an older call that
    /// ends late, say a timeout from before an outage ended, is counted but does not overturn
    /// the outcome of a call that started after it, unless its signature failed verification.
    shown_since: Option<Instant>,
}

impl<K> std::fmt::Debug for Custodian<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custodian")
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<K: RemoteKey> Custodian<K> {
    /// Wraps `key`; each call must finish within `timeout`. `mode` is what `/health` calls
    /// the way records are signed (`per-record` or `session-keys`).
    pub fn new(key: K, timeout: Duration, mode: &'static str) -> Result<Self, SignError> {
        let point = key
            .identity()
            .jwk
            .uncompressed_point()
            .map_err(|e| SignError::Unavailable(e.to_string()))?;
        let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .map_err(|_| SignError::Unavailable("the custody public key is malformed".into()))?;
        let status = SignerStatus {
            kind: key.identity().kind,
            mode,
            ..SignerStatus::local()
        };
        Ok(Self {
            key,
            public,
            timeout,
            mode,
            status: Mutex::new(Observed {
                status,
                shown_since: None,
            }),
        })
    }

    /// Signs `digests` and checks every answer against the published key; a wrong count or a
    /// signature that fails verification distrusts the key.
    fn verified(&self, digests: &[Digest32]) -> Result<Vec<KmsSignature>, SignError> {
        let signatures = self.key.sign_digests(digests, self.timeout)?;
        if signatures.len() != digests.len() {
            self.key.distrust();
            return Err(SignError::Unavailable(format!(
                "asked for {} signatures, got {}",
                digests.len(),
                signatures.len()
            )));
        }
        digests
            .iter()
            .zip(signatures)
            .map(|(digest, der)| self.checked(digest, der))
            .collect()
    }

    /// The signatures of the longest prefix of `digests` that was signed and verifies, and why
    /// it stopped there.
    fn verified_prefix(&self, digests: &[Digest32]) -> SignedPrefix {
        let answers = self.key.sign_each(digests, self.timeout);
        if answers.len() > digests.len() {
            self.key.distrust();
            return SignedPrefix {
                signatures: Vec::new(),
                stopped: Some(SignError::Unavailable(format!(
                    "asked for {} signatures, got {}",
                    digests.len(),
                    answers.len()
                ))),
            };
        }
        let mut answers = answers.into_iter();
        let mut signatures = Vec::with_capacity(digests.len());
        for digest in digests {
            let checked = match answers.next() {
                Some(answer) => answer.and_then(|der| self.checked(digest, der)),
                None => Err(SignError::Unavailable(format!(
                    "asked for {} signatures, got {}",
                    digests.len(),
                    signatures.len()
                ))),
            };
            match checked {
                Ok(signature) => signatures.push(signature),
                Err(e) => {
                    return SignedPrefix {
                        signatures,
                        stopped: Some(e),
                    }
                }
            }
        }
        SignedPrefix {
            signatures,
            stopped: None,
        }
    }

    /// `der` as a record's signature, if it verifies as the custody key's signature of
    /// `digest`; one that does not distrusts the key.
    fn checked(&self, digest: &Digest32, der: Vec<u8>) -> Result<KmsSignature, SignError> {
        let prehashed =
            Digest::import_less_safe(&digest.0, &SHA256).map_err(|_| SignError::Sign)?;
        self.public
            .verify_digest_sig(&prehashed, &der)
            .map_err(|_| {
                self.key.distrust();
                SignError::BadSignature
            })?;
        Ok(KmsSignature {
            algorithm: ALGORITHM_ECDSA_SHA_256.to_string(),
            key_id: self.key.identity().jwk.kid.clone(),
            signature: STANDARD.encode(der),
        })
    }

    fn record(&self, started: Instant, outcome: Result<(), &SignError>) {
        let mut observed = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let took = started.elapsed().as_secs_f64();
        // A signature that failed verification says the key is wrong, whenever it was asked.
        let superseded = observed.shown_since.is_some_and(|shown| started < shown)
            && !matches!(outcome, Err(SignError::BadSignature));
        let status = &mut observed.status;
        status.calls += 1;
        status.last_latency_seconds = took;
        status.latency.observe(took);
        if outcome.is_err() {
            status.failures += 1;
        }
        if superseded {
            return;
        }
        match outcome {
            Ok(()) => {
                if !status.up {
                    tracing::info!(signer = status.kind, "audit signer is back");
                }
                status.up = true;
                status.can_sign = true;
                status.last_error = None;
            }
            Err(e) => {
                if status.up {
                    tracing::error!(signer = status.kind, error = %e, "audit signer failed; decisions are refused until it answers");
                }
                status.up = false;
                status.can_sign = false;
                status.last_error = Some(e.to_string());
            }
        }
        // Never back: a wrong signature from an older call shows, yet calls that started
        // before the newest shown one stay superseded.
        observed.shown_since = Some(
            observed
                .shown_since
                .map_or(started, |shown| shown.max(started)),
        );
    }
}

impl<K: RemoteKey> Signer for Custodian<K> {
    fn key_id(&self) -> &str {
        &self.key.identity().jwk.kid
    }

    fn public_jwk(&self) -> &Jwk {
        &self.key.identity().jwk
    }

    fn sign_digest(&self, digest: &Digest32) -> Result<KmsSignature, SignError> {
        self.sign_batch(std::slice::from_ref(digest))?
            .pop()
            .ok_or(SignError::Sign)
    }

    fn sign_batch(&self, digests: &[Digest32]) -> Result<Vec<KmsSignature>, SignError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let outcome = self.verified(digests);
        self.record(started, outcome.as_ref().map(|_| ()));
        outcome
    }

    fn sign_prefix(&self, digests: &[Digest32]) -> SignedPrefix {
        if digests.is_empty() {
            return SignedPrefix::default();
        }
        let started = Instant::now();
        let signed = self.verified_prefix(digests);
        // A prefix short of the batch is a failure of the signer, though some records commit.
        self.record(started, signed.stopped.as_ref().map_or(Ok(()), Err));
        signed
    }

    fn status(&self) -> SignerStatus {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
            .clone();
        status.mode = self.mode;
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A key whose answers are `answer`; counts the times it was distrusted.
    struct Fake {
        identity: RemoteIdentity,
        answer: fn(usize) -> Vec<Vec<u8>>,
        distrusted: AtomicUsize,
    }

    impl RemoteKey for Fake {
        fn identity(&self) -> &RemoteIdentity {
            &self.identity
        }
        fn sign_digests(
            &self,
            digests: &[Digest32],
            _: Duration,
        ) -> Result<Vec<Vec<u8>>, SignError> {
            Ok((self.answer)(digests.len()))
        }
        fn distrust(&self) {
            self.distrusted.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn custodian(answer: fn(usize) -> Vec<Vec<u8>>) -> Custodian<Fake> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let identity =
            RemoteIdentity::fingerprinted("pkcs11", "zt-test-", pair.public_key().as_ref())
                .unwrap();
        let key = Fake {
            identity,
            answer,
            distrusted: AtomicUsize::new(0),
        };
        Custodian::new(key, Duration::from_secs(1), "per-record").unwrap()
    }

    #[test]
    fn a_signature_that_fails_verification_distrusts_the_key_and_fails_closed() {
        // A signature by another P-256 key: well formed, but not by the published key.
        let custodian = custodian(|n| {
            let other = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
            let rng = SystemRandom::new();
            (0..n)
                .map(|_| other.sign(&rng, b"x").unwrap().as_ref().to_vec())
                .collect()
        });
        let digest = Digest32::sha256(b"record");
        assert!(matches!(
            custodian.sign_batch(&[digest]),
            Err(SignError::BadSignature)
        ));
        assert_eq!(custodian.key.distrusted.load(Ordering::SeqCst), 1);
        let status = custodian.status();
        assert!(!status.can_sign);
        assert!(status.last_error.is_some());
    }

    /// Signs with `pair`, except the digests at `fails`, which come back as throttling.
    struct Throttled {
        identity: RemoteIdentity,
        pair: EcdsaKeyPair,
        fails: &'static [usize],
    }

    impl RemoteKey for Throttled {
        fn identity(&self) -> &RemoteIdentity {
            &self.identity
        }
        fn sign_digests(&self, _: &[Digest32], _: Duration) -> Result<Vec<Vec<u8>>, SignError> {
            unreachable!("a batch is signed one digest at a time")
        }
        fn sign_each(&self, digests: &[Digest32], _: Duration) -> Vec<Result<Vec<u8>, SignError>> {
            digests
                .iter()
                .enumerate()
                .map(|(i, digest)| {
                    if self.fails.contains(&i) {
                        return Err(SignError::Unavailable("ThrottlingException".into()));
                    }
                    Ok(sign_prehashed(&self.pair, digest))
                })
                .collect()
        }
    }

    /// The DER signature of a SHA-256 digest, as KMS makes it with `MessageType: DIGEST`.
    fn sign_prehashed(pair: &EcdsaKeyPair, digest: &Digest32) -> Vec<u8> {
        let prehashed = Digest::import_less_safe(&digest.0, &SHA256).unwrap();
        pair.sign_digest(&prehashed).unwrap().as_ref().to_vec()
    }

    fn throttled(fails: &'static [usize]) -> Custodian<Throttled> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let identity =
            RemoteIdentity::fingerprinted("aws-kms", "zt-test-", pair.public_key().as_ref())
                .unwrap();
        Custodian::new(
            Throttled {
                identity,
                pair,
                fails,
            },
            Duration::from_secs(1),
            "per-record",
        )
        .unwrap()
    }

    #[test]
    fn a_batch_keeps_the_signatures_before_its_first_throttled_call() {
        let digests: Vec<Digest32> = (0..6u8).map(|i| Digest32::sha256(&[i])).collect();
        let signed = throttled(&[2, 4]).sign_prefix(&digests);
        assert_eq!(
            signed.signatures.len(),
            2,
            "digest 3 signed, but after the gap"
        );
        assert!(
            matches!(signed.stopped, Some(SignError::Unavailable(ref why)) if why.contains("Throttling"))
        );
        let all = throttled(&[]).sign_prefix(&digests);
        assert_eq!((all.signatures.len(), all.stopped.is_none()), (6, true));
        let custodian = throttled(&[0]);
        let none = custodian.sign_prefix(&digests);
        assert!(none.signatures.is_empty() && none.stopped.is_some());
        assert!(
            !custodian.status().up,
            "a short prefix is a failure of the signer"
        );
    }

    /// Its first call hangs until `release` and then fails with `first` (a timeout, as for a
    /// call made just before an outage ended, or a wrong signature); its second call signs,
    /// and every later one fails.
    struct LateFirstCall {
        identity: RemoteIdentity,
        pair: EcdsaKeyPair,
        first: fn() -> Result<Vec<Vec<u8>>, SignError>,
        calls: AtomicUsize,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl RemoteKey for LateFirstCall {
        fn identity(&self) -> &RemoteIdentity {
            &self.identity
        }
        fn sign_digests(
            &self,
            digests: &[Digest32],
            _: Duration,
        ) -> Result<Vec<Vec<u8>>, SignError> {
            match self.calls.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    let _ = self.release.lock().unwrap().recv();
                    return (self.first)();
                }
                1 => {}
                _ => return Err(SignError::Unavailable("gone again".into())),
            }
            Ok(digests
                .iter()
                .map(|d| sign_prehashed(&self.pair, d))
                .collect())
        }
    }

    /// A custodian whose first call (answering `first`) ends after its second one succeeded;
    /// the first call's outcome.
    fn first_call_ending_late(
        first: fn() -> Result<Vec<Vec<u8>>, SignError>,
    ) -> (
        std::sync::Arc<Custodian<LateFirstCall>>,
        Result<Vec<KmsSignature>, SignError>,
    ) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let identity =
            RemoteIdentity::fingerprinted("aws-kms", "zt-test-", pair.public_key().as_ref())
                .unwrap();
        let (release, wait) = std::sync::mpsc::channel();
        let key = LateFirstCall {
            identity,
            pair,
            first,
            calls: AtomicUsize::new(0),
            release: Mutex::new(wait),
        };
        let custodian =
            std::sync::Arc::new(Custodian::new(key, Duration::from_secs(1), "per-record").unwrap());
        let early = std::thread::spawn({
            let custodian = custodian.clone();
            move || custodian.sign_batch(&[Digest32::sha256(b"checkpoint")])
        });
        while custodian.key.calls.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(custodian
            .sign_batch(&[Digest32::sha256(b"session key")])
            .is_ok());
        release.send(()).unwrap();
        let first = early.join().unwrap();
        (custodian, first)
    }

    #[test]
    fn a_call_that_fails_after_a_later_one_succeeded_does_not_mark_the_signer_down() {
        let (custodian, first) =
            first_call_ending_late(|| Err(SignError::Unavailable("timed out".into())));
        assert!(first.is_err());
        let status = custodian.status();
        assert!(
            status.up && status.can_sign && status.last_error.is_none(),
            "{status:?}"
        );
        assert_eq!((status.calls, status.failures), (2, 1));
        // A failure that starts after the success does mark it down.
        assert!(custodian
            .sign_batch(&[Digest32::sha256(b"record")])
            .is_err());
        let status = custodian.status();
        assert!(
            !status.up
                && status.last_error.as_deref()
                    == Some("the audit signer is unavailable: gone again"),
            "{status:?}"
        );
    }

    #[test]
    fn a_wrong_signature_marks_the_signer_down_however_late_it_comes() {
        // Well formed, but by another key.
        let (custodian, first) = first_call_ending_late(|| {
            let other = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
            let rng = SystemRandom::new();
            Ok(vec![other.sign(&rng, b"x").unwrap().as_ref().to_vec()])
        });
        assert!(matches!(first, Err(SignError::BadSignature)));
        let status = custodian.status();
        assert!(!status.up && !status.can_sign, "{status:?}");
    }

    #[test]
    fn a_late_wrong_signature_is_not_overturned_by_an_older_success_ending_after_it() {
        let custodian = custodian(|n| vec![Vec::new(); n]);
        let start = Instant::now();
        let (first, second, third) = (
            start,
            start + Duration::from_millis(1),
            start + Duration::from_millis(2),
        );
        // The third call to start ends first, then the first (a wrong signature), then the
        // second.
        custodian.record(third, Ok(()));
        custodian.record(first, Err(&SignError::BadSignature));
        assert!(!custodian.status().up);
        custodian.record(second, Ok(()));
        let status = custodian.status();
        assert!(!status.up && status.last_error.is_some(), "{status:?}");
        assert_eq!((status.calls, status.failures), (3, 1));
    }

    #[test]
    fn too_few_signatures_distrust_the_key() {
        let custodian = custodian(|_| Vec::new());
        let digest = Digest32::sha256(b"record");
        assert!(matches!(
            custodian.sign_batch(&[digest]),
            Err(SignError::Unavailable(_))
        ));
        assert_eq!(custodian.key.distrusted.load(Ordering::SeqCst), 1);
    }
}
