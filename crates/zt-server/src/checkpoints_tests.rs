//! The checkpoint issuer in process: what it signs, when it signs, and that a signer that does
//! not match its published key yields no checkpoint at all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{default_origin, CheckpointIssueError, CheckpointSetupError, Checkpoints};
use zt_contract::merkle::{audit_leaf_hash, root};
use zt_contract::{verify_checkpoint, Digest32, Jwk, KmsSignature, NoteKey, RecordKind};
use zt_ledger::committer::LedgerConfig;
use zt_ledger::{
    AuditStore, Ledger, LedgerWorker, LocalKeySigner, RecordDraft, SignError, Signer, SqliteStore,
};

/// A signer that counts signatures, and can sign with one key while publishing another, or
/// return garbage.
struct TestSigner {
    key: LocalKeySigner,
    published: Jwk,
    garbage: bool,
    signed: AtomicUsize,
}

impl Signer for TestSigner {
    fn key_id(&self) -> &str {
        self.key.key_id()
    }
    fn public_jwk(&self) -> &Jwk {
        &self.published
    }
    fn sign_digest(&self, digest: &Digest32) -> Result<KmsSignature, SignError> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        let mut signature = self.key.sign_digest(digest)?;
        if self.garbage {
            signature.signature = "not base64!".into();
        }
        Ok(signature)
    }
}

fn signer(dir: &Path, publishes: Option<&Path>, garbage: bool) -> Arc<TestSigner> {
    let key = LocalKeySigner::load_or_create(dir).unwrap();
    let published = match publishes {
        Some(other) => LocalKeySigner::load_or_create(other)
            .unwrap()
            .public_jwk()
            .clone(),
        None => key.public_jwk().clone(),
    };
    Arc::new(TestSigner {
        key,
        published,
        garbage,
        signed: AtomicUsize::new(0),
    })
}

fn ledger(dir: &Path) -> (Ledger, LedgerWorker) {
    let path = dir.join("audit.db");
    let store = SqliteStore::open(&path).unwrap();
    Ledger::start(
        Box::new(store),
        Box::new(move || Ok(Box::new(SqliteStore::open_read_only(&path)?) as Box<dyn AuditStore>)),
        Arc::new(LocalKeySigner::load_or_create(dir).unwrap()),
        LedgerConfig {
            queue_capacity: 64,
            request_id_window: std::time::Duration::from_secs(300),
        },
        None,
    )
    .unwrap()
}

fn draft(i: usize) -> RecordDraft {
    RecordDraft {
        kind: RecordKind::Decision,
        actor: "a".into(),
        action: "x".into(),
        resource: format!("r{i}"),
        reason: "because".into(),
        ..RecordDraft::default()
    }
}

#[test]
fn checkpoints_sign_the_committed_tree_once_per_size_and_only_forward() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, worker) = ledger(dir.path());
    let signer = signer(dir.path(), None, false);
    let origin = default_origin(signer.key_id());
    let checkpoints = Checkpoints::new(origin.clone(), signer.clone(), &ledger).unwrap();
    let key = NoteKey::from_jwk(&origin, signer.public_jwk()).unwrap();
    assert_eq!(checkpoints.key().vkey(), key.vkey());

    // The first checkpoint, signed at start: the empty tree.
    let first = checkpoints.latest();
    assert_eq!((first.size, first.root), (0, root(&[])));
    let verified = verify_checkpoint(&first.note, &origin, std::slice::from_ref(&key)).unwrap();
    assert_eq!(verified.size, 0);
    assert_eq!(signer.signed.load(Ordering::SeqCst), 1);

    // Nothing new: no new signature, the same checkpoint.
    let again = checkpoints.issue(&ledger).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(signer.signed.load(Ordering::SeqCst), 1);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut leaves = Vec::new();
    for i in 0..5 {
        let record = rt.block_on(ledger.append(draft(i))).unwrap();
        leaves.push(audit_leaf_hash(&record.current_hash));
    }
    let next = checkpoints.issue(&ledger).unwrap();
    assert_eq!((next.size, next.root), (5, root(&leaves)));
    let verified = verify_checkpoint(&next.note, &origin, std::slice::from_ref(&key)).unwrap();
    assert_eq!((verified.size, verified.root), (5, root(&leaves)));
    assert!(Arc::ptr_eq(&checkpoints.latest(), &next));
    assert_eq!(signer.signed.load(Ordering::SeqCst), 2);
    assert!(Arc::ptr_eq(&checkpoints.issue(&ledger).unwrap(), &next));
    assert_eq!(signer.signed.load(Ordering::SeqCst), 2);

    // Concurrent issuers after growth: one signature, everyone gets the same checkpoint.
    rt.block_on(ledger.append(draft(9))).unwrap();
    let checkpoints = Arc::new(checkpoints);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (checkpoints, ledger) = (checkpoints.clone(), ledger.clone());
            std::thread::spawn(move || checkpoints.issue(&ledger).unwrap())
        })
        .collect();
    let issued: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(issued
        .iter()
        .all(|c| c.size == 6 && Arc::ptr_eq(c, &issued[0])));
    assert_eq!(signer.signed.load(Ordering::SeqCst), 3);

    drop(checkpoints);
    drop(ledger);
    worker.join();
}

#[test]
fn a_signer_that_does_not_match_its_published_key_issues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let (ledger, worker) = ledger(dir.path());
    let lying = signer(dir.path(), Some(other.path()), false);
    let err = Checkpoints::new(default_origin(lying.key_id()), lying, &ledger)
        .expect_err("a checkpoint that does not verify must not be served");
    assert!(
        matches!(
            err,
            CheckpointSetupError::Issue(CheckpointIssueError::SelfCheck(_))
        ),
        "{err}"
    );

    let garbage = signer(dir.path(), None, true);
    let err = Checkpoints::new(default_origin(garbage.key_id()), garbage, &ledger)
        .expect_err("a signature that is not base64 must not be served");
    assert!(
        matches!(
            err,
            CheckpointSetupError::Issue(CheckpointIssueError::Encoding)
        ),
        "{err}"
    );
    drop(ledger);
    worker.join();
}

#[test]
fn origins_that_would_not_round_trip_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, worker) = ledger(dir.path());
    let good = signer(dir.path(), None, false);
    for origin in ["", "two words", "a+b", "line\nbreak", "tab\there"] {
        let err = Checkpoints::new(origin.into(), good.clone(), &ledger)
            .err()
            .unwrap_or_else(|| panic!("origin {origin:?} must be refused"));
        assert!(
            matches!(err, CheckpointSetupError::InvalidOrigin(_)),
            "{origin:?}: {err}"
        );
    }
    assert!(Checkpoints::new("example.org/audit".into(), good, &ledger).is_ok());
    drop(ledger);
    worker.join();
}

#[test]
fn checkpoints_asked_for_on_demand_are_shared_and_paced() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, worker) = ledger(dir.path());
    let signer = signer(dir.path(), None, false);
    let origin = default_origin(signer.key_id());
    let checkpoints = Arc::new(Checkpoints::new(origin, signer.clone(), &ledger).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = std::time::Instant::now();
    let asked: Vec<(u64, tokio::task::JoinHandle<_>)> = rt.block_on(async {
        let mut asked = Vec::new();
        // The log grows while fresh checkpoints are asked for, 40 times.
        for i in 0..40 {
            ledger.append(draft(i)).await.unwrap();
            let (ledger, checkpoints) = (ledger.clone(), checkpoints.clone());
            let wanted = ledger.tree_size();
            let handle = tokio::spawn(async move {
                super::issue_on_demand(&ledger, &checkpoints).await.unwrap()
            });
            asked.push((wanted, handle));
        }
        asked
    });
    for (wanted, handle) in asked {
        let checkpoint = rt.block_on(handle).unwrap();
        assert!(
            checkpoint.size >= wanted,
            "fresh means at least the size asked at"
        );
    }
    // One signed at start; since then at most one per 250 ms (and one at once).
    let paced = 2 + started.elapsed().as_millis() / 250;
    let signed = signer.signed.load(Ordering::SeqCst) as u128;
    assert!(
        signed <= paced,
        "{signed} signatures in {:?}",
        started.elapsed()
    );
    drop(ledger);
    worker.join();
}
