//! The conformance suite every [`AuditStore`] implementation must pass, and the committer's
//! chain guarantees on top of it. Each backend gets one `conformance_*` entry point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::sync::Arc;

use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, Decision, PublicKeySet, RecordKind};
use zt_ledger::committer::LedgerConfig;
use zt_ledger::{
    AuditStore, Ledger, LocalKeySigner, RecordDraft, SealedRecord, Signer, SqliteStore,
};

fn draft(i: usize) -> RecordDraft {
    RecordDraft {
        kind: RecordKind::Decision,
        actor: format!("agent-{}", i % 3),
        action: "test.action".into(),
        resource: format!("r{i}"),
        decision: if i.is_multiple_of(2) {
            Decision::Allow
        } else {
            Decision::Deny
        },
        reason: "because".into(),
        authenticated: false,
        policy_version: Some("sha256:00".into()),
        request_id: None,
        context_sha256: None,
        counts: None,
    }
}

fn sealed_chain(
    signer: &dyn Signer,
    n: usize,
    first_seq: u64,
    previous: &str,
) -> Vec<SealedRecord> {
    let mut out = Vec::new();
    let mut prev = previous.to_string();
    for i in 0..n {
        let body = draft(i).into_body(
            first_seq + i as u64,
            "2026-01-01T00:00:00.000Z".into(),
            prev.clone(),
        );
        let r = SealedRecord::seal(body, signer).unwrap();
        prev = r.current_hash.to_hex();
        out.push(r);
    }
    out
}

/// The store contract: empty head, append order, head, reads by range, duplicate seq refused
/// atomically, keys published once.
fn store_conformance(mut store: Box<dyn AuditStore>, signer: &dyn Signer) {
    assert_eq!(store.head().unwrap(), None);
    assert!(store.read(0, 10).unwrap().is_empty());

    let batch = sealed_chain(signer, 5, 0, zt_contract::GENESIS_HASH);
    store.append(&batch).unwrap();
    let head = store.head().unwrap().unwrap();
    assert_eq!(head.seq, 4);
    assert_eq!(head.current_hash, batch[4].current_hash);

    let lines = store.read(1, 2).unwrap();
    assert_eq!(lines, vec![batch[1].line.clone(), batch[2].line.clone()]);
    assert_eq!(store.read(3, 100).unwrap().len(), 2);
    assert!(store.read(5, 100).unwrap().is_empty());

    // A batch that reuses a stored seq fails as a whole: nothing of it is kept.
    let mut clash = sealed_chain(signer, 2, 5, &batch[4].current_hash.to_hex());
    clash.push(batch[0].clone());
    assert!(store.append(&clash).is_err());
    assert_eq!(store.head().unwrap().unwrap().seq, 4);

    store.publish_key(signer.public_jwk()).unwrap();
    store.publish_key(signer.public_jwk()).unwrap();
    assert_eq!(store.keys().unwrap(), vec![signer.public_jwk().clone()]);
}

#[test]
fn conformance_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let signer = LocalKeySigner::load_or_create(dir.path()).unwrap();
    let store = SqliteStore::open(&dir.path().join("audit.db")).unwrap();
    store_conformance(Box::new(store), &signer);
}

fn start_ledger(dir: &Path) -> (Ledger, zt_ledger::LedgerWorker) {
    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(dir).unwrap());
    let path = dir.join("audit.db");
    let store = SqliteStore::open(&path).unwrap();
    let reader_path = path.clone();
    Ledger::start(
        Box::new(store),
        Box::new(move || {
            Ok(Box::new(SqliteStore::open_read_only(&reader_path)?) as Box<dyn AuditStore>)
        }),
        signer,
        LedgerConfig {
            queue_capacity: 4096,
        },
        None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_form_one_verified_chain_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let (ledger, worker) = start_ledger(dir.path());
        let mut tasks = Vec::new();
        for i in 0..64 {
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for j in 0..20 {
                    seqs.push(ledger.append(draft(i * 100 + j)).await.unwrap().body.seq);
                }
                seqs
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.extend(t.await.unwrap());
        }
        seqs.sort_unstable();
        let base = round * 1280;
        assert_eq!(
            seqs,
            (base..base + 1280).collect::<Vec<u64>>(),
            "contiguous, no duplicates"
        );
        assert_eq!(ledger.head().unwrap().seq, base + 1279);
        drop(ledger);
        worker.join();
    }
    let keys = {
        let mut store = SqliteStore::open_read_only(&dir.path().join("audit.db")).unwrap();
        let keys = zt_contract::Jwks {
            keys: store.keys().unwrap(),
        };
        PublicKeySet::from_jwks(&keys).unwrap()
    };
    let mut store = SqliteStore::open_read_only(&dir.path().join("audit.db")).unwrap();
    let mut verifier = ChainVerifier::new(SignaturePolicy::Require(&keys));
    store
        .for_each_line(0, |line| {
            verifier.check_line(line).unwrap();
            true
        })
        .unwrap();
    assert_eq!(verifier.checked(), 2560);
}

#[test]
fn a_tampered_tail_stops_the_ledger_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ledger, worker) = start_ledger(dir.path());
    for i in 0..3 {
        rt.block_on(ledger.append(draft(i))).unwrap();
    }
    drop(ledger);
    worker.join();
    let conn = rusqlite_edit(&dir.path().join("audit.db"));
    drop(conn);
    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
    let store = SqliteStore::open(&dir.path().join("audit.db")).unwrap();
    let started = Ledger::start(
        Box::new(store),
        Box::new(|| Err(zt_ledger::StoreError::Backend("unused".into()))),
        signer,
        LedgerConfig { queue_capacity: 16 },
        None,
    );
    let err = started.err().expect("a corrupt tail must refuse to start");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

/// Flips the decision of record 1 behind the ledger's back.
fn rusqlite_edit(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "UPDATE records SET line = replace(line, '\"decision\":\"deny\"', '\"decision\":\"allow\"') WHERE seq = 1",
        [],
    )
    .unwrap();
    conn
}
