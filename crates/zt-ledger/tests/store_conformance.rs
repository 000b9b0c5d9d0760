//! The conformance suite every [`AuditStore`] implementation must pass, and the committer's
//! chain guarantees on top of it. Each backend gets one `conformance_*` entry point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, Decision, Jwk, PublicKeySet, RecordKind};
use zt_ledger::committer::LedgerConfig;
use zt_ledger::{
    AuditStore, BatchAtHead, Ledger, LocalKeySigner, PostgresStore, RecordDraft, SealedRecord,
    Signer, SqliteStore, StoreError,
};

use zt_ledger::PostgresLocation;
use zt_test_support::pg_schema;

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
        claimed_actor: None,
        policy_version: Some("sha256:00".into()),
        request_id: None,
        context_sha256: None,
        resource_attributes_sha256: i.is_multiple_of(3).then(|| "ab".repeat(32)),
        counts: None,
        sandbox: None,
        execution: None,
        key_rotation: None,
        policies: None,
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

/// A batch of `n` records to chain onto whatever head the store reads.
fn seal_after(signer: Arc<dyn Signer>, n: usize) -> BatchAtHead {
    batch_of((0..n).map(draft).collect(), signer)
}

/// A batch of `drafts`, sealed onto whatever head the store reads.
fn batch_of(drafts: Vec<RecordDraft>, signer: Arc<dyn Signer>) -> BatchAtHead {
    BatchAtHead {
        drafts,
        request_id_window: WINDOW,
        seal: Box::new(move |head, drafts| {
            let (mut seq, mut previous) = head
                .map_or((0, zt_contract::GENESIS_HASH.to_string()), |h| {
                    (h.seq + 1, h.current_hash.to_hex())
                });
            let mut sealed = Vec::new();
            for draft in drafts {
                let body = draft.into_body(seq, "2026-01-01T00:00:00.000Z".into(), previous);
                let record = SealedRecord::seal(body, signer.as_ref()).unwrap();
                (seq, previous) = (seq + 1, record.current_hash.to_hex());
                sealed.push(record);
            }
            Ok(sealed)
        }),
    }
}

/// The replay window the tests' batches give the store.
const WINDOW: Duration = Duration::from_secs(300);

/// The store contract: empty head, append order, head, reads of lines and of hashes by range,
/// duplicate seq refused atomically, keys published once.
fn store_conformance(mut store: Box<dyn AuditStore>, seal_signer: Arc<dyn Signer>) {
    let signer = seal_signer.as_ref();
    assert_eq!(store.head().unwrap(), None);
    assert!(store.read(0, 10).unwrap().is_empty());
    assert!(store.hashes(0, 10).unwrap().is_empty());

    let batch = sealed_chain(signer, 5, 0, zt_contract::GENESIS_HASH);
    store.append(&batch).unwrap();
    let head = store.head().unwrap().unwrap();
    assert_eq!(head.seq, 4);
    assert_eq!(head.current_hash, batch[4].current_hash);

    let lines = store.read(1, 2).unwrap();
    assert_eq!(lines, vec![batch[1].line.clone(), batch[2].line.clone()]);
    assert_eq!(store.read(3, 100).unwrap().len(), 2);
    assert!(store.read(5, 100).unwrap().is_empty());

    // Hashes: the current_hash of each record, in seq order, by the same ranges as lines.
    let hashes: Vec<_> = batch.iter().map(|r| r.current_hash).collect();
    assert_eq!(store.hashes(0, 100).unwrap(), hashes);
    assert_eq!(store.hashes(0, 5).unwrap(), hashes);
    assert_eq!(store.hashes(1, 2).unwrap(), hashes[1..3]);
    assert_eq!(store.hashes(4, 100).unwrap(), hashes[4..]);
    assert!(store.hashes(5, 100).unwrap().is_empty());
    assert!(store.hashes(2, 0).unwrap().is_empty());
    assert!(store.hashes(u64::MAX >> 1, 10).unwrap().is_empty());

    // A batch that reuses a stored seq fails as a whole: nothing of it is kept.
    let mut clash = sealed_chain(signer, 2, 5, &batch[4].current_hash.to_hex());
    clash.push(batch[0].clone());
    assert!(store.append(&clash).is_err());
    assert_eq!(store.head().unwrap().unwrap().seq, 4);
    assert_eq!(
        store.hashes(0, 100).unwrap(),
        hashes,
        "a failed append adds no hash"
    );

    // Pages of hashes line up across a second batch.
    let more = sealed_chain(signer, 3, 5, &batch[4].current_hash.to_hex());
    store.append(&more).unwrap();
    let all: Vec<_> = batch.iter().chain(&more).map(|r| r.current_hash).collect();
    let mut paged = Vec::new();
    while paged.len() < all.len() {
        paged.extend(store.hashes(paged.len() as u64, 3).unwrap());
    }
    assert_eq!(paged, all);

    assert_eq!(store.head().unwrap().unwrap().seq, 7);

    // Sealing at the head: `seal` sees the stored head and what it returns is stored.
    let sealed = store
        .append_at_head(seal_after(seal_signer.clone(), 2))
        .unwrap()
        .records;
    assert_eq!(sealed[0].body.seq, 8);
    assert_eq!(sealed[0].body.previous_hash, all[7].to_hex());
    assert_eq!(store.head().unwrap().unwrap(), sealed[1].head());
    assert_eq!(
        store.read(8, 10).unwrap(),
        vec![sealed[0].line.clone(), sealed[1].line.clone()]
    );
    // Past seq 9, so a head ordered as text ("9" > "10") would show.
    for expected in [10, 12] {
        let sealed = store
            .append_at_head(seal_after(seal_signer.clone(), 2))
            .unwrap()
            .records;
        assert_eq!(sealed[0].body.seq, expected);
    }
    assert_eq!(store.head().unwrap().unwrap().seq, 13);
    // A seal that fails stores nothing.
    let failed = store.append_at_head(BatchAtHead {
        seal: Box::new(|_, _| Err(StoreError::Backend("no".into()))),
        ..seal_after(seal_signer.clone(), 1)
    });
    assert!(failed.is_err());
    assert_eq!(store.head().unwrap().unwrap().seq, 13);
    // Nor does one that returns fewer records than it was given drafts.
    let short = seal_after(seal_signer.clone(), 2);
    let seal = short.seal;
    let failed = store.append_at_head(BatchAtHead {
        seal: Box::new(move |head, drafts| {
            seal(head, drafts).map(|mut records| {
                records.pop();
                records
            })
        }),
        ..short
    });
    assert!(failed.is_err());
    assert_eq!(store.head().unwrap().unwrap().seq, 13);

    store.publish_key(signer.public_jwk()).unwrap();
    store.publish_key(signer.public_jwk()).unwrap();
    assert_eq!(store.keys().unwrap(), vec![signer.public_jwk().clone()]);

    // Another point under a published id (written into the store by someone who cannot use
    // the real key) is refused to the one who publishes the real key, and nothing changes.
    let other_dir = tempfile::tempdir().unwrap();
    let other = LocalKeySigner::load_or_create(other_dir.path()).unwrap();
    let impostor = Jwk {
        kid: "kms-key-1".into(),
        ..other.public_jwk().clone()
    };
    let real = Jwk {
        kid: "kms-key-1".into(),
        ..signer.public_jwk().clone()
    };
    store.publish_key(&impostor).unwrap();
    let refused = store.publish_key(&real).unwrap_err();
    assert!(
        matches!(&refused, StoreError::Corrupt(m) if m.contains("another public key")),
        "{refused:?}"
    );
    assert_eq!(
        store.keys().unwrap(),
        vec![signer.public_jwk().clone(), impostor]
    );
}

#[test]
fn conformance_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
    let store = SqliteStore::open(&dir.path().join("audit.db")).unwrap();
    store_conformance(Box::new(store), signer);
}

/// The same suite on PostgreSQL, in a fresh schema dropped afterwards; then what only a
/// shared store adds: several writers on one chain, readers beside them.
#[test]
fn conformance_postgres() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
    let store = PostgresStore::open(&PostgresLocation::parse(&schema.url()).unwrap()).unwrap();
    assert!(store.is_shared());
    let mut second_writer =
        PostgresStore::open(&PostgresLocation::parse(&schema.url()).unwrap()).unwrap();
    store_conformance(Box::new(store), signer.clone());
    let mut reader =
        PostgresStore::open_read_only(&PostgresLocation::parse(&schema.url()).unwrap()).unwrap();
    assert_eq!(reader.head().unwrap(), second_writer.head().unwrap());
    // The suite's own key first, then the impostor it planted under another id.
    assert_eq!(reader.keys().unwrap()[0], signer.public_jwk().clone());
    assert!(reader.append(&[]).is_ok(), "an empty batch is a no-op");
    let head = second_writer.head().unwrap().unwrap();
    let next = sealed_chain(
        signer.as_ref(),
        1,
        head.seq + 1,
        &head.current_hash.to_hex(),
    );
    assert!(reader.append(&next).is_err(), "readers are read-only");
    second_writer.append(&next).unwrap();
    assert_eq!(reader.head().unwrap().unwrap().seq, head.seq + 1);
}

/// A draft that spends `id` for `actor`.
fn spending(actor: &str, id: &str) -> RecordDraft {
    RecordDraft {
        actor: actor.into(),
        request_id: Some(id.into()),
        ..draft(0)
    }
}

/// Writers of one shared store spend a request id once per actor within the window: a draft
/// whose id another writer's record (or an earlier draft of its batch) spent is handed back,
/// not committed; a replay's denial spends nothing; a failed batch spends nothing; an id
/// spent longer ago than the window is spent again.
#[test]
fn a_request_id_is_spent_once_across_the_writers_of_a_shared_store() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
    let location = PostgresLocation::parse(&schema.url()).unwrap();
    let (mut one, mut other) = (
        PostgresStore::open(&location).unwrap(),
        PostgresStore::open(&location).unwrap(),
    );
    let first = one
        .append_at_head(batch_of(vec![spending("a", "n1")], signer.clone()))
        .unwrap();
    assert_eq!((first.records.len(), first.spent_before.len()), (1, 0));

    let replay_denial = RecordDraft {
        decision: Decision::Deny,
        reason: zt_contract::DenyReason::Replayed {
            request_id: "n1".into(),
        }
        .text(),
        ..spending("a", "n1")
    };
    let batch = vec![
        spending("a", "n1"),
        spending("b", "n1"),
        spending("a", "n2"),
        spending("a", "n2"),
        replay_denial.clone(),
        draft(7),
    ];
    let appended = other
        .append_at_head(batch_of(batch.clone(), signer.clone()))
        .unwrap();
    let handed_back: Vec<usize> = appended.spent_before.iter().map(|(at, _)| *at).collect();
    assert_eq!(handed_back, [0, 3]);
    assert_eq!(appended.spent_before[0].1, batch[0]);
    let committed: Vec<_> = appended
        .records
        .iter()
        .map(|r| (r.body.actor.as_str(), r.body.request_id.as_deref()))
        .collect();
    assert_eq!(
        committed,
        [
            ("b", Some("n1")),
            ("a", Some("n2")),
            ("a", Some("n1")),
            ("agent-1", None)
        ]
    );
    assert_eq!(appended.records[2].body.reason, replay_denial.reason);

    // A batch that fails spends none of its ids.
    let failed = one.append_at_head(BatchAtHead {
        seal: Box::new(|_, _| Err(StoreError::Backend("no".into()))),
        ..batch_of(vec![spending("a", "n3")], signer.clone())
    });
    assert!(failed.is_err());
    let retried = other
        .append_at_head(batch_of(vec![spending("a", "n3")], signer.clone()))
        .unwrap();
    assert_eq!((retried.records.len(), retried.spent_before.len()), (1, 0));

    // Any bytes an agent puts in its id, a NUL included, are spent like any other.
    let nul = |s: &mut PostgresStore| {
        s.append_at_head(batch_of(vec![spending("a", "x\0y")], signer.clone()))
            .unwrap()
    };
    assert_eq!(nul(&mut one).records.len(), 1);
    assert_eq!(nul(&mut other).spent_before.len(), 1);

    // Once expired (the rows aged by an hour, as the database's clock would), an id is spent
    // again; an id spent for a longer window stays spent for it, whichever writer asks.
    let long = BatchAtHead {
        request_id_window: Duration::from_secs(7200),
        ..batch_of(vec![spending("c", "n5")], signer.clone())
    };
    assert_eq!(other.append_at_head(long).unwrap().records.len(), 1);
    schema.execute("UPDATE request_ids SET expires_at = expires_at - interval '1 hour'");
    let again = one
        .append_at_head(batch_of(
            vec![spending("c", "n5"), spending("a", "n1")],
            signer.clone(),
        ))
        .unwrap();
    let handed_back: Vec<usize> = again.spent_before.iter().map(|(at, _)| *at).collect();
    assert_eq!((again.records.len(), handed_back), (1, vec![0]));
}

/// Writers on one shared store, each sealing at the head under the chain's lock, at the same
/// time: one unforked chain with contiguous sequence numbers, and no batch lost.
#[test]
fn concurrent_writers_of_a_shared_store_make_one_chain() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
    let (writers, batches, per_batch) = (4, 25, 3);
    std::thread::scope(|scope| {
        for _ in 0..writers {
            let signer = signer.clone();
            let location = PostgresLocation::parse(&schema.url()).unwrap();
            scope.spawn(move || {
                let mut store = PostgresStore::open(&location).unwrap();
                for _ in 0..batches {
                    let sealed = store
                        .append_at_head(seal_after(signer.clone(), per_batch))
                        .unwrap()
                        .records;
                    assert_eq!(sealed.len(), per_batch);
                }
            });
        }
    });
    let mut reader =
        PostgresStore::open_read_only(&PostgresLocation::parse(&schema.url()).unwrap()).unwrap();
    let keys = zt_contract::Jwks {
        keys: vec![signer.public_jwk().clone()],
    };
    let keys = PublicKeySet::from_jwks(&keys).unwrap();
    let mut verifier = ChainVerifier::new(SignaturePolicy::Require(&keys));
    for line in reader.read(0, 10_000).unwrap() {
        verifier.check_line(&line).unwrap();
    }
    assert_eq!(verifier.checked(), (writers * batches * per_batch) as u64);
}

#[test]
fn postgres_store_urls() {
    use zt_ledger::PostgresLocation;
    let at = PostgresLocation::parse("postgres://u@h/db?schema=zt_a&connect_timeout=3").unwrap();
    assert_eq!(at.schema(), "zt_a");
    let default = PostgresLocation::parse("postgresql://u@h/db").unwrap();
    assert_eq!(default.schema(), zt_ledger::postgres::DEFAULT_SCHEMA);
    for bad in [
        "sqlite:///tmp/x",
        "postgres://u@h/db?schema=Bad",
        "postgres://u@h/db?schema=a;drop",
        "postgres://u@h/db?schema=",
        "postgres://u@h/db?nonsense=1",
    ] {
        assert!(PostgresLocation::parse(bad).is_err(), "{bad}");
    }
    let shown = format!(
        "{:?}",
        PostgresLocation::parse("postgres://u:hunter2@h/db").unwrap()
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

fn start_ledger(dir: &Path) -> (Ledger, zt_ledger::LedgerWorker) {
    start_ledger_on(dir, None)
}

/// A ledger on the store `--store` would pick: SQLite in `dir` or the PostgreSQL `store_url`.
fn start_ledger_on(dir: &Path, store_url: Option<&str>) -> (Ledger, zt_ledger::LedgerWorker) {
    let signer: Arc<dyn Signer> = Arc::new(LocalKeySigner::load_or_create(dir).unwrap());
    let (store, readers) = zt_ledger::open_store(store_url, dir).unwrap();
    Ledger::start(
        store,
        readers,
        signer,
        LedgerConfig {
            queue_capacity: 4096,
            request_id_window: std::time::Duration::from_secs(300),
        },
        None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_form_one_verified_chain_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    concurrent_appends_across_restarts(dir.path(), None, || {
        Box::new(SqliteStore::open_read_only(&path).unwrap())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_form_one_verified_chain_across_restarts_on_postgres() {
    let Some(schema) = pg_schema::TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    concurrent_appends_across_restarts(dir.path(), Some(&schema.url()), || {
        Box::new(
            PostgresStore::open_read_only(&PostgresLocation::parse(&schema.url()).unwrap())
                .unwrap(),
        )
    })
    .await;
}

/// Two rounds of 64 concurrent callers through [`Ledger`], restarting in between: contiguous
/// sequence numbers, and the whole stored log verifies as one signed chain.
async fn concurrent_appends_across_restarts(
    dir: &Path,
    store_url: Option<&str>,
    open_reader: impl Fn() -> Box<dyn AuditStore>,
) {
    for round in 0..2 {
        let (ledger, worker) = start_ledger_on(dir, store_url);
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
    let mut store = open_reader();
    let keys = zt_contract::Jwks {
        keys: store.keys().unwrap(),
    };
    let keys = PublicKeySet::from_jwks(&keys).unwrap();
    let mut verifier = ChainVerifier::new(SignaturePolicy::Require(&keys));
    loop {
        let lines = store.read(verifier.checked(), 1000).unwrap();
        if lines.is_empty() {
            break;
        }
        for line in &lines {
            verifier.check_line(line).unwrap();
        }
    }
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
        LedgerConfig {
            queue_capacity: 16,
            request_id_window: std::time::Duration::from_secs(300),
        },
        None,
    );
    let err = started.expect_err("a corrupt tail must refuse to start");
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
