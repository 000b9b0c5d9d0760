//! Per-record costs of the audit path: sealing (canonical JSON, SHA-256, ECDSA P-256 sign),
//! verifying a stored line, and a durable batch append to the embedded store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, Decision, Jwks, PublicKeySet, RecordKind, GENESIS_HASH};
use zt_ledger::{AuditStore, LocalKeySigner, RecordDraft, SealedRecord, Signer, SqliteStore};

fn draft() -> RecordDraft {
    RecordDraft {
        kind: RecordKind::Decision,
        actor: "bench-agent".into(),
        action: "aws.ec2.terminate_instances".into(),
        resource: "i-0123456789abcdef0".into(),
        decision: Decision::Deny,
        reason: "Terminating EC2 instances is denied by the default policy.".into(),
        authenticated: false,
        claimed_actor: None,
        policy_version: Some(format!("sha256:{}", "ab".repeat(32))),
        request_id: None,
        context_sha256: None,
        resource_attributes_sha256: None,
        counts: None,
        sandbox: None,
        execution: None,
        key_rotation: None,
        policies: None,
    }
}

fn seal_n(signer: &dyn Signer, first: u64, previous: &str, n: usize) -> Vec<SealedRecord> {
    let mut prev = previous.to_string();
    (0..n)
        .map(|i| {
            let body = draft().into_body(
                first + i as u64,
                "2026-11-25T17:08:38.634Z".into(),
                prev.clone(),
            );
            let r = SealedRecord::seal(body, signer).unwrap();
            prev = r.current_hash.to_hex();
            r
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let signer = LocalKeySigner::load_or_create(dir.path()).unwrap();

    c.bench_function("seal_record (hash + sign)", |b| {
        b.iter(|| {
            let body = draft().into_body(7, "2026-11-25T17:08:38.634Z".into(), GENESIS_HASH.into());
            black_box(SealedRecord::seal(body, &signer).unwrap())
        })
    });

    let keys = PublicKeySet::from_jwks(&Jwks {
        keys: vec![signer.public_jwk().clone()],
    })
    .unwrap();
    let record = seal_n(&signer, 0, GENESIS_HASH, 1).remove(0);
    c.bench_function("verify_line (parse + hash + signature)", |b| {
        b.iter(|| {
            let mut v = ChainVerifier::new(SignaturePolicy::Require(&keys));
            v.check_line(black_box(&record.line)).unwrap();
        })
    });

    // Reading a stored line, the first step of the in-order pass: strictly, as the verifier
    // does (a duplicate key refused), and with serde_json alone, for comparison.
    let reader = ChainVerifier::new(SignaturePolicy::Require(&keys));
    c.bench_function("parse_line (strict)", |b| {
        b.iter(|| black_box(reader.parse_line(black_box(&record.line)).unwrap()))
    });
    c.bench_function("parse_line (serde_json alone, for comparison)", |b| {
        b.iter(|| {
            black_box(serde_json::from_str::<serde_json::Value>(black_box(&record.line)).unwrap())
        })
    });

    // The rest of the in-order pass (sequence, link, hash, signature form, key rotation
    // place), which `zt audit verify` runs on one thread while other cores verify signatures.
    let parsed = reader.parse_line(&record.line).unwrap();
    c.bench_function("check_record_deferred (in-order checks)", |b| {
        b.iter(|| {
            let mut v = ChainVerifier::new(SignaturePolicy::Require(&keys));
            black_box(v.check_record_deferred(black_box(&parsed)).unwrap())
        })
    });

    let mut store = SqliteStore::open(&dir.path().join("audit.db")).unwrap();
    let mut next = 0u64;
    let mut prev = GENESIS_HASH.to_string();
    c.bench_function("sqlite_append_batch_of_32 (durable)", |b| {
        b.iter_batched(
            || {
                let batch = seal_n(&signer, next, &prev, 32);
                next += 32;
                prev = batch.last().unwrap().current_hash.to_hex();
                batch
            },
            |batch| store.append(&batch).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(ledger, benches);
criterion_main!(ledger);
