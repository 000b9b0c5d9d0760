//! Signed checkpoints of the audit log (c2sp.org/tlog-checkpoint): the log's origin, its tree
//! size and the base64 of its RFC 9162 Merkle root, signed as a C2SP signed note (signature
//! type `0x02`, ECDSA P-256) with the audit signing key.
//!
//! A checkpoint is issued at start, then at most once a second while the log grows (see
//! [`run`]), and on demand (`GET /audit/checkpoint?fresh=1`). Issuing is serialized, never
//! signs the same size twice, and only ever moves forward, so the latest checkpoint is always
//! the largest. Every checkpoint is verified with the published key before it is served: a
//! signer that does not match its published key yields no checkpoint rather than a bad one.
//!
//! The note key is the audit signer's public key under the name of the log's origin; its key
//! ID is the signed-note one (`SHA-256(SPKI)[:4]`), not the JWK `kid`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zt_contract::note::{format_note, NoteKey, NoteSignature};
use zt_contract::{
    checkpoint_signing_input, verify_checkpoint, Checkpoint, CheckpointError, Digest32, NoteError,
};
use zt_ledger::{Ledger, SignError, Signer};

/// How often the log is checked for growth.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The origin (log name) when none is configured: `zt-infra/<key_id>`.
pub(crate) fn default_origin(key_id: &str) -> String {
    format!("zt-infra/{key_id}")
}

/// Why checkpoints cannot be issued at all: the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointSetupError {
    /// The origin would not survive a round trip through a checkpoint body.
    #[error(
        "log origin `{0}` must be one non-empty line without spaces, `+` or control characters"
    )]
    InvalidOrigin(String),
    /// The audit key cannot sign notes (not an EC P-256 key).
    #[error("the audit signing key cannot sign checkpoints: {0}")]
    Key(#[from] NoteError),
    /// The first checkpoint failed.
    #[error(transparent)]
    Issue(#[from] CheckpointIssueError),
}

/// Why one checkpoint could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointIssueError {
    /// The signer failed.
    #[error("signing a checkpoint failed: {0}")]
    Sign(#[from] SignError),
    /// The signer's signature is not base64.
    #[error("the signer returned a signature that is not base64")]
    Encoding,
    /// The signed note does not verify with the published key.
    #[error("a signed checkpoint does not verify with the published key: {0}")]
    SelfCheck(#[from] CheckpointError),
    /// The signing task did not finish (it panicked or the runtime is shutting down).
    #[error("checkpoint signing was interrupted")]
    Interrupted,
}

/// One signed checkpoint, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedCheckpoint {
    /// Records covered: `0..size`.
    pub size: u64,
    /// The Merkle root of those records.
    pub root: Digest32,
    /// The signed note, ready to serve.
    pub note: String,
}

/// The checkpoint issuer and the latest checkpoint.
pub(crate) struct Checkpoints {
    origin: String,
    key: NoteKey,
    signer: Arc<dyn Signer>,
    latest: Mutex<Arc<SignedCheckpoint>>,
    /// Held while issuing, so checkpoints are signed one at a time and in size order.
    issuing: Mutex<()>,
    /// Bounds concurrent proof builds (each reads the log's hashes); see `routes::proofs`.
    pub proof_slots: tokio::sync::Semaphore,
    /// When the last checkpoint asked for on demand was signed; held while one is.
    on_demand: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Proofs built at the same time at most.
const PROOF_SLOTS: usize = 2;

impl Checkpoints {
    /// Sets up checkpoints of the log `origin` signed by `signer`, and signs the first one at
    /// the current size. Blocking (it signs).
    pub(crate) fn new(
        origin: String,
        signer: Arc<dyn Signer>,
        ledger: &Ledger,
    ) -> Result<Self, CheckpointSetupError> {
        let probe = Checkpoint::new(origin.clone(), 0, Digest32([0; 32]));
        if Checkpoint::parse_body(&probe.body()).ok().as_ref() != Some(&probe)
            || !zt_contract::note::is_valid_key_name(&origin)
        {
            return Err(CheckpointSetupError::InvalidOrigin(origin));
        }
        let key = NoteKey::from_jwk(&origin, signer.public_jwk())?;
        let tree = ledger.tree();
        let first = sign(&origin, &key, signer.as_ref(), tree.size(), tree.root())?;
        tracing::info!(
            origin = %origin,
            vkey = %key.vkey(),
            size = first.size,
            "audit checkpoints signed with the audit key"
        );
        Ok(Self {
            origin,
            key,
            signer,
            latest: Mutex::new(Arc::new(first)),
            issuing: Mutex::new(()),
            proof_slots: tokio::sync::Semaphore::new(PROOF_SLOTS),
            on_demand: tokio::sync::Mutex::new(None),
        })
    }

    /// The log's origin: the first line of every checkpoint and the note key's name.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The key checkpoints verify with.
    pub(crate) fn key(&self) -> &NoteKey {
        &self.key
    }

    /// The `kid` of the audit key in `GET /audit/keys` that signs checkpoints.
    pub(crate) fn key_id(&self) -> &str {
        self.signer.key_id()
    }

    /// The latest checkpoint.
    pub(crate) fn latest(&self) -> Arc<SignedCheckpoint> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Signs a checkpoint at the ledger's current size, unless the latest one already has that
    /// size; returns the latest checkpoint either way. Blocking (it signs): call from a
    /// blocking context.
    pub(crate) fn issue(
        &self,
        ledger: &Ledger,
    ) -> Result<Arc<SignedCheckpoint>, CheckpointIssueError> {
        let _one_at_a_time = self.issuing.lock().unwrap_or_else(PoisonError::into_inner);
        // Read the tree under the issuing lock: a later issue never sees a smaller tree.
        let tree = ledger.tree();
        let latest = self.latest();
        if tree.size() <= latest.size {
            return Ok(latest);
        }
        let next = Arc::new(sign(
            &self.origin,
            &self.key,
            self.signer.as_ref(),
            tree.size(),
            tree.root(),
        )?);
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = next.clone();
        Ok(next)
    }
}

/// Signs the checkpoint of `size` and `root` and checks the note against `key`.
fn sign(
    origin: &str,
    key: &NoteKey,
    signer: &dyn Signer,
    size: u64,
    root: Digest32,
) -> Result<SignedCheckpoint, CheckpointIssueError> {
    let body = Checkpoint::new(origin, size, root).body();
    let signature = signer.sign_digest(&checkpoint_signing_input(&body))?;
    let der = STANDARD
        .decode(&signature.signature)
        .map_err(|_| CheckpointIssueError::Encoding)?;
    let line = NoteSignature {
        name: key.name().into(),
        key_id: key.key_id(),
        signature: der,
    };
    let note = format_note(&body, &[line]);
    verify_checkpoint(&note, origin, std::slice::from_ref(key))?;
    Ok(SignedCheckpoint { size, root, note })
}

/// Signs a checkpoint of `ledger` at its current size now (`?fresh=1`), off the async
/// threads.
pub(crate) async fn issue_now(
    ledger: &Ledger,
    checkpoints: &Arc<Checkpoints>,
) -> Result<Arc<SignedCheckpoint>, CheckpointIssueError> {
    let (ledger, checkpoints) = (ledger.clone(), checkpoints.clone());
    match tokio::task::spawn_blocking(move || checkpoints.issue(&ledger)).await {
        Ok(issued) => issued,
        // The latest checkpoint still stands.
        Err(_) => Err(CheckpointIssueError::Interrupted),
    }
}

/// Least time between two checkpoints signed on demand.
pub(crate) const ON_DEMAND_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// A checkpoint of at least the size `ledger` has now (`GET /audit/checkpoint?fresh=1`, which
/// anyone may ask): callers wait in turn without holding a thread, one signed since they
/// asked serves them all, and at most one is signed per [`ON_DEMAND_EVERY`]. Before, each
/// request signed one while the log grew: on a remote key (KMS, HSM), a public request could
/// spend the quota the records' own signatures need.
pub(crate) async fn issue_on_demand(
    ledger: &Ledger,
    checkpoints: &Arc<Checkpoints>,
) -> Result<Arc<SignedCheckpoint>, CheckpointIssueError> {
    let wanted = ledger.tree_size();
    let mut last = checkpoints.on_demand.lock().await;
    let latest = checkpoints.latest();
    if latest.size >= wanted {
        return Ok(latest);
    }
    if let Some(at) = *last {
        tokio::time::sleep_until((at + ON_DEMAND_EVERY).into()).await;
    }
    let issued = issue_now(ledger, checkpoints).await;
    *last = Some(std::time::Instant::now());
    issued
}

/// Issues a checkpoint of `ledger` every [`CHECKPOINT_INTERVAL`] in which it grew. Runs until
/// aborted.
pub(crate) async fn run(ledger: Ledger, checkpoints: Arc<Checkpoints>) {
    let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if ledger.tree_size() <= checkpoints.latest().size {
            continue;
        }
        if let Err(e) = issue_now(&ledger, &checkpoints).await {
            tracing::error!(error = %e, "audit checkpoint not issued; keeping the previous one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_origin_is_a_valid_key_name() {
        let origin = default_origin("zt-p256-0123456789abcdef");
        assert_eq!(origin, "zt-infra/zt-p256-0123456789abcdef");
        assert!(zt_contract::note::is_valid_key_name(&origin));
    }
}

#[cfg(test)]
#[path = "checkpoints_tests.rs"]
mod issuer_tests;
