//! The committer's Merkle tree: it holds exactly the committed records, in order, is rebuilt
//! from the stored hashes at start, gives the proofs the full leaf list gives, and a store
//! whose hash column disagrees with the log refuses to start or to give proofs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use zt_contract::merkle::{
    audit_leaf_hash, consistency_proof, inclusion_proof, root, verify_inclusion,
};
use zt_contract::{Decision, RecordKind, GENESIS_HASH};
use zt_ledger::committer::LedgerConfig;
use zt_ledger::tree::{TreeError, CHUNK};
use zt_ledger::{
    AuditStore, Ledger, LedgerWorker, LocalKeySigner, RecordDraft, SealedRecord, Signer,
    SqliteStore, StoreError,
};

fn draft(i: u64) -> RecordDraft {
    RecordDraft {
        kind: RecordKind::Decision,
        actor: "agent".into(),
        action: "tree.test".into(),
        resource: format!("r{i}"),
        decision: Decision::Deny,
        reason: "because".into(),
        ..RecordDraft::default()
    }
}

fn start(dir: &Path) -> Result<(Ledger, LedgerWorker), StoreError> {
    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(dir).unwrap());
    let path = dir.join("audit.db");
    let store = SqliteStore::open(&path)?;
    Ledger::start(
        Box::new(store),
        Box::new(move || Ok(Box::new(SqliteStore::open_read_only(&path)?) as Box<dyn AuditStore>)),
        signer,
        LedgerConfig {
            queue_capacity: 4096,
            request_id_window: std::time::Duration::from_secs(300),
        },
        None,
    )
}

/// Writes `n` sealed records straight into the store, in batches, as the committer would.
fn fill(dir: &Path, n: u64) {
    let signer = LocalKeySigner::load_or_create(dir).unwrap();
    let mut store = SqliteStore::open(&dir.join("audit.db")).unwrap();
    store.publish_key(signer.public_jwk()).unwrap();
    let mut previous = GENESIS_HASH.to_string();
    let mut seq = 0;
    while seq < n {
        let end = (seq + 10_000).min(n);
        let batch: Vec<SealedRecord> = (seq..end)
            .map(|i| {
                let body =
                    draft(i).into_body(i, "2026-01-01T00:00:00.000Z".into(), previous.clone());
                let r = SealedRecord::seal(body, &signer).unwrap();
                previous = r.current_hash.to_hex();
                r
            })
            .collect();
        store.append(&batch).unwrap();
        seq = end;
    }
}

fn sql(dir: &Path, statement: &str) {
    let conn = rusqlite::Connection::open(dir.join("audit.db")).unwrap();
    assert_eq!(conn.execute(statement, []).unwrap(), 1, "{statement}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tree_holds_every_committed_record_and_is_rebuilt_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, worker) = start(dir.path()).unwrap();
    assert_eq!(ledger.tree_size(), 0);
    assert_eq!(ledger.tree().root(), root(&[]));

    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for j in 0..13u64 {
                let record = ledger.append(draft(t * 100 + j)).await.unwrap();
                // Answered only once its leaf is in the tree: a proof can be asked for now.
                assert!(ledger.tree_size() > record.body.seq);
                out.push((record.body.seq, record.current_hash));
            }
            out
        }));
    }
    let mut committed = Vec::new();
    for t in tasks {
        committed.extend(t.await.unwrap());
    }
    committed.sort_unstable_by_key(|(seq, _)| *seq);
    let expected: Vec<_> = committed.iter().map(|(_, h)| audit_leaf_hash(h)).collect();

    let tree = ledger.tree();
    assert_eq!(tree.size(), 104);
    assert_eq!(ledger.head().unwrap().seq, 103);
    assert_eq!(tree.root(), root(&expected), "leaves in seq order");
    for (seq, size) in [(0, 1), (3, 7), (0, 104), (57, 104), (103, 104)] {
        let found = ledger.inclusion_proof(seq, size).unwrap();
        assert_eq!(found.leaf_hash, expected[seq as usize]);
        let prefix = &expected[..size as usize];
        assert_eq!(found.proof, inclusion_proof(prefix, seq).unwrap());
    }
    for from in [0, 1, 7, 64, 103, 104] {
        let proof = ledger.consistency_proof(from, 104).unwrap();
        assert_eq!(proof, consistency_proof(&expected, from).unwrap(), "{from}");
    }
    assert!(matches!(
        ledger.inclusion_proof(0, 105),
        Err(TreeError::SizeBeyondTree { .. })
    ));
    drop(ledger);
    worker.join();

    let (ledger, worker) = start(dir.path()).unwrap();
    assert_eq!(ledger.tree(), tree, "rebuilt from the stored hashes");
    let record = ledger.append(draft(999)).await.unwrap();
    let mut leaves = expected;
    leaves.push(audit_leaf_hash(&record.current_hash));
    assert_eq!(ledger.tree().root(), root(&leaves));
    drop(ledger);
    worker.join();
}

#[test]
fn a_hash_column_that_disagrees_with_the_lines_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3);
    sql(
        dir.path(),
        &format!(
            "UPDATE records SET current_hash = '{}' WHERE seq = 1",
            "ab".repeat(32)
        ),
    );
    let err = start(dir.path()).expect_err("must refuse to start");
    assert!(err.to_string().contains("stored hash of record 1"), "{err}");
}

#[test]
fn a_hash_changed_after_start_gives_no_proof() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2 * CHUNK + 5);
    let (ledger, worker) = start(dir.path()).unwrap();
    let size = ledger.tree_size();
    let found = ledger.inclusion_proof(5, size).unwrap();
    verify_inclusion(
        &found.leaf_hash,
        5,
        size,
        &found.proof,
        &ledger.tree().root(),
    )
    .unwrap();
    sql(
        dir.path(),
        &format!(
            "UPDATE records SET current_hash = '{}' WHERE seq = 6",
            "ab".repeat(32)
        ),
    );
    let err = ledger.inclusion_proof(5, size).unwrap_err();
    assert!(
        matches!(err, TreeError::Store(StoreError::Corrupt(_))),
        "{err}"
    );
    assert!(ledger.consistency_proof(7, size).is_err());
    drop(ledger);
    worker.join();
}

#[test]
fn a_gap_before_the_checked_tail_refuses_to_start() {
    // The tail check reads only the last 1,000 records; the tree rebuild reads them all.
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1_010);
    sql(dir.path(), "DELETE FROM records WHERE seq = 2");
    let err = start(dir.path()).expect_err("must refuse to start");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("record 2 is missing"), "{err}");
}

/// How long a start takes on a large log (tail check plus tree rebuild), and how long proofs
/// take on it. Ignored by default; run by hand:
/// `ZT_TREE_RECORDS=1000000 cargo test --release -p zt-ledger --test merkle_tree --
/// --ignored --nocapture`. With `ZT_TREE_DIR=DIR` the log is kept in `DIR` and reused.
#[test]
#[ignore = "builds a large log; run by hand to measure"]
fn start_time_on_a_large_log() {
    let n: u64 = std::env::var("ZT_TREE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("ZT_TREE_DIR").map_or_else(|| temp.path().to_path_buf(), Into::into);
    std::fs::create_dir_all(&dir).unwrap();
    let stored = SqliteStore::open(&dir.join("audit.db"))
        .unwrap()
        .head()
        .unwrap()
        .map_or(0, |h| h.seq + 1);
    if stored != n {
        assert_eq!(stored, 0, "{} holds another log", dir.display());
        let filled = Instant::now();
        fill(&dir, n);
        eprintln!("filled {n} records in {:?}", filled.elapsed());
    }
    for round in 0..3 {
        let started = Instant::now();
        let (ledger, worker) = start(&dir).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(ledger.tree_size(), n);
        eprintln!("start {round}: {elapsed:?} for {n} records");
        let root = ledger.tree().root();
        let (mut inclusion, mut consistency) = (Vec::new(), Vec::new());
        for i in 0..101 {
            let seq = (i * 7_919 * 1_009) % n;
            let proved = Instant::now();
            let found = ledger.inclusion_proof(seq, n).unwrap();
            inclusion.push(proved.elapsed());
            let proved = Instant::now();
            ledger.consistency_proof(1 + seq % (n - 1), n).unwrap();
            consistency.push(proved.elapsed());
            verify_inclusion(&found.leaf_hash, seq, n, &found.proof, &root).unwrap();
        }
        for (name, mut times) in [("inclusion", inclusion), ("consistency", consistency)] {
            times.sort_unstable();
            eprintln!(
                "{name} proof at {n}: median {:?}, max {:?}",
                times[times.len() / 2],
                times[times.len() - 1]
            );
        }
        drop(ledger);
        worker.join();
    }
}
