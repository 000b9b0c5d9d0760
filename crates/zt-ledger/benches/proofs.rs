//! Merkle proofs of a 1,000,000-record log: from the tree's chunk hashes plus at most two
//! chunk reads (`LogTree`), against the former way, the RFC recursion over every leaf hash.
//! Reads come from memory, so these are the proofs' own costs; a real store adds two indexed
//! range reads of at most 1,024 hashes each (the former way read all 1,000,000). And what
//! keeping the chunk hashes adds to appending (the writer's work, and the rebuild at start).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use zt_contract::merkle::{audit_leaf_hash, inclusion_proof};
use zt_contract::{CompactRange, Digest32};
use zt_ledger::tree::LogTree;
use zt_ledger::StoreError;

const RECORDS: u64 = 1_000_000;

/// Spreads the proofs over the log: a multiplicative step coprime to most sizes.
fn pick(i: u64, below: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % below
}

fn benches(c: &mut Criterion) {
    let stored: Vec<Digest32> = (0..RECORDS)
        .map(|i| Digest32::sha256(&i.to_be_bytes()))
        .collect();
    let leaves: Vec<Digest32> = stored.iter().map(audit_leaf_hash).collect();
    let mut tree = LogTree::new();
    leaves.iter().for_each(|leaf| tree.append(*leaf));
    let snapshot = tree.snapshot();
    let mut read = |from: u64, count: usize| -> Result<Vec<Digest32>, StoreError> {
        let start = from as usize;
        Ok(stored[start..(start + count).min(stored.len())].to_vec())
    };

    let mut group = c.benchmark_group("proofs at 1M records");
    let mut i = 0u64;
    group.bench_function("inclusion (tree)", |b| {
        b.iter(|| {
            i += 1;
            black_box(snapshot.inclusion_proof(pick(i, RECORDS), RECORDS, &mut read)).unwrap()
        })
    });
    group.bench_function("consistency (tree)", |b| {
        b.iter(|| {
            i += 1;
            black_box(snapshot.consistency_proof(1 + pick(i, RECORDS - 1), RECORDS, &mut read))
                .unwrap()
        })
    });
    group.sample_size(10);
    group.bench_function("inclusion (every leaf, before)", |b| {
        b.iter(|| {
            i += 1;
            black_box(inclusion_proof(&leaves, pick(i, RECORDS))).unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("append 1M leaves");
    group.sample_size(10);
    group.bench_function("LogTree", |b| {
        b.iter(|| {
            let mut tree = LogTree::new();
            leaves.iter().for_each(|leaf| tree.append(*leaf));
            black_box(tree.root())
        })
    });
    group.bench_function("CompactRange (before)", |b| {
        b.iter(|| {
            let mut tree = CompactRange::new();
            leaves.iter().for_each(|leaf| tree.append(*leaf));
            black_box(tree.root())
        })
    });
    group.finish();
}

criterion_group!(proofs, benches);
criterion_main!(proofs);
