//! Ledgers of several servers on one shared PostgreSQL store, each with its own key, appending
//! at the same time: one verified chain, every key published, and every ledger's Merkle tree
//! covering the records the others appended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use zt_contract::merkle::{audit_leaf_hash, root};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, Decision, PublicKeySet, RecordKind};
use zt_ledger::committer::LedgerConfig;
use zt_ledger::{AuditStore, Ledger, LocalKeySigner, PostgresStore, RecordDraft, Signer};

use zt_ledger::PostgresLocation;
use zt_test_support::pg_schema;

fn draft(replica: usize, i: usize) -> RecordDraft {
    RecordDraft {
        kind: RecordKind::Decision,
        actor: format!("replica-{replica}"),
        action: "test.action".into(),
        resource: format!("r{i}"),
        decision: Decision::Allow,
        reason: "because".into(),
        ..RecordDraft::default()
    }
}

/// One ledger per data directory on the store at `url`, each with its own key.
struct Replicas {
    ledgers: Vec<Ledger>,
    workers: Vec<zt_ledger::LedgerWorker>,
    /// Their keys' ids.
    kids: Vec<String>,
}

fn start(url: &str, dirs: &[tempfile::TempDir]) -> Replicas {
    let mut replicas = Replicas {
        ledgers: Vec::new(),
        workers: Vec::new(),
        kids: Vec::new(),
    };
    for dir in dirs {
        let signer = LocalKeySigner::load_or_create(dir.path()).unwrap();
        replicas.kids.push(signer.key_id().to_string());
        let (store, readers) = zt_ledger::open_store(Some(url), dir.path()).unwrap();
        let (ledger, worker) = Ledger::start(
            store,
            readers,
            Arc::new(signer) as Arc<dyn Signer>,
            LedgerConfig {
                queue_capacity: 4096,
                request_id_window: Duration::from_secs(300),
            },
            None,
        )
        .unwrap();
        replicas.ledgers.push(ledger);
        replicas.workers.push(worker);
    }
    replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_of_one_store_write_one_chain_and_see_each_other() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let url = schema.url();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let Replicas {
        ledgers,
        workers,
        kids,
    } = start(&url, &dirs);

    // 3 replicas x 16 callers x 25 records, all at once.
    let mut tasks = Vec::new();
    for (replica, ledger) in ledgers.iter().enumerate() {
        for caller in 0..16 {
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..25 {
                    let record = ledger
                        .append(draft(replica, caller * 100 + i))
                        .await
                        .unwrap();
                    acked.push((record.body.seq, record.current_hash));
                }
                acked
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked.sort_unstable_by_key(|(seq, _)| *seq);
    let total = 3 * 16 * 25;
    assert_eq!(
        acked.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (0..total).collect::<Vec<u64>>(),
        "contiguous sequence numbers across replicas, none given twice"
    );

    // Every replica publishes every key, read from the store.
    for ledger in &ledgers {
        let ledger = ledger.clone();
        let published = tokio::task::spawn_blocking(move || ledger.keys().unwrap())
            .await
            .unwrap();
        let mut published: Vec<_> = published.keys.into_iter().map(|k| k.kid).collect();
        published.sort();
        let mut expected = kids.clone();
        expected.sort();
        assert_eq!(published, expected);
    }

    // The stored chain verifies with the published keys, and each acknowledged hash is there.
    let mut reader =
        PostgresStore::open_read_only(&PostgresLocation::parse(&schema.url()).unwrap()).unwrap();
    let keys = zt_contract::Jwks {
        keys: reader.keys().unwrap(),
    };
    let keys = PublicKeySet::from_jwks(&keys).unwrap();
    let mut verifier = ChainVerifier::new(SignaturePolicy::Require(&keys));
    let lines = reader.read(0, 10_000).unwrap();
    for line in &lines {
        verifier.check_line(line).unwrap();
    }
    assert_eq!(verifier.checked(), total);
    let hashes = reader.hashes(0, 10_000).unwrap();
    for (seq, hash) in &acked {
        assert_eq!(hashes[*seq as usize], *hash, "record {seq}");
    }
    let actors: std::collections::BTreeSet<_> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["actor"].to_string())
        .collect();
    assert_eq!(actors.len(), 3, "every replica wrote: {actors:?}");

    // Every replica's tree comes to cover the whole chain (idle replicas catch up).
    let leaves: Vec<_> = hashes.iter().map(audit_leaf_hash).collect();
    let expected_root = root(&leaves);
    let deadline = Instant::now() + Duration::from_secs(10);
    for ledger in &ledgers {
        while ledger.tree_size() < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(ledger.tree_size(), total);
        assert_eq!(ledger.tree().root(), expected_root);
        assert_eq!(
            ledger.head().unwrap().current_hash,
            hashes[hashes.len() - 1]
        );
    }
    drop(ledgers);
    for worker in workers {
        worker.join();
    }
}

/// Two ledgers on one store given the same request ids at the same time: each id is committed
/// once, and the other ledger hands its draft back as `RequestIdSpent`, uncommitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_commit_each_request_id_once() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let url = schema.url();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let Replicas {
        ledgers, workers, ..
    } = start(&url, &dirs);
    let with_id = |i: usize| RecordDraft {
        request_id: Some(format!("id-{i}")),
        ..draft(0, i)
    };
    let ids = 200;
    let mut tasks = Vec::new();
    for ledger in &ledgers {
        for i in 0..ids {
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(
                async move { (i, ledger.append(with_id(i)).await) },
            ));
        }
    }
    let mut committed = vec![0; ids];
    for task in tasks {
        let (i, appended) = task.await.unwrap();
        match appended {
            Ok(record) => {
                assert_eq!(record.body.request_id, Some(format!("id-{i}")));
                committed[i] += 1;
            }
            Err(zt_ledger::LedgerError::RequestIdSpent(draft)) => assert_eq!(*draft, with_id(i)),
            Err(e) => panic!("id-{i}: {e}"),
        }
    }
    assert!(committed.iter().all(|n| *n == 1), "{committed:?}");
    drop(ledgers);
    for worker in workers {
        worker.join();
    }
    let mut reader =
        PostgresStore::open_read_only(&PostgresLocation::parse(&url).unwrap()).unwrap();
    assert_eq!(reader.read(0, 10_000).unwrap().len(), ids);
}
