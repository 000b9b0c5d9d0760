//! Adversarial Merkle tests over every tree of 1..=64 leaves: every proof verifies and matches
//! the independent reference, and every single-bit flip of every proof element fails. Wrong
//! sizes, indices and forged servers are in `merkle_forgery.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::{flip_bit, merkle_ref};
use zt_contract::merkle::{
    audit_leaf_hash, consistency_proof, inclusion_proof, root, verify_consistency,
    verify_inclusion, ProofError,
};
use zt_contract::Digest32;

const MAX: usize = 64;

/// Leaves as the audit log makes them: the leaf hash of each record's `current_hash`.
fn log(n: usize) -> Vec<Digest32> {
    (0..n)
        .map(|seq| audit_leaf_hash(&Digest32::sha256(format!("record {seq}").as_bytes())))
        .collect()
}

fn raw(ds: &[Digest32]) -> Vec<merkle_ref::Hash> {
    ds.iter().map(|d| d.0).collect()
}

/// Every root of the first `n` leaves, for n in 0..=MAX.
fn roots(all: &[Digest32]) -> Vec<Digest32> {
    (0..=all.len()).map(|n| root(&all[..n])).collect()
}

#[test]
fn every_inclusion_proof_verifies_and_matches_the_reference() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in 1..=MAX {
        let tree = &all[..n];
        assert_eq!(roots[n].0, merkle_ref::root(&raw(tree)), "root of {n}");
        for (i, leaf) in tree.iter().enumerate() {
            let proof = inclusion_proof(tree, i as u64).unwrap();
            assert_eq!(
                raw(&proof),
                merkle_ref::inclusion(&raw(tree), i),
                "{i} in {n}"
            );
            verify_inclusion(leaf, i as u64, n as u64, &proof, &roots[n]).unwrap();
        }
    }
}

#[test]
fn every_consistency_proof_verifies_and_matches_the_reference() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in 1..=MAX {
        let tree = &all[..n];
        for m in 0..=n {
            let proof = consistency_proof(tree, m as u64).unwrap();
            assert_eq!(
                raw(&proof),
                merkle_ref::consistency(&raw(tree), m),
                "{m} to {n}"
            );
            verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &proof).unwrap();
        }
    }
}

/// Flips every bit of every element of the inclusion proof of leaf `i` in the first `n`.
fn flip_every_bit_of_inclusion(all: &[Digest32], roots: &[Digest32], n: usize, i: usize) {
    let proof = inclusion_proof(&all[..n], i as u64).unwrap();
    let mut bad = proof.clone();
    for e in 0..proof.len() {
        for bit in 0..256 {
            bad[e] = flip_bit(&proof[e], bit);
            assert_eq!(
                verify_inclusion(&all[i], i as u64, n as u64, &bad, &roots[n]),
                Err(ProofError::RootMismatch),
                "{i} in {n}, element {e}, bit {bit}"
            );
        }
        bad[e] = proof[e];
    }
}

/// Flips every bit of every element of the consistency proof from `m` to `n`.
fn flip_every_bit_of_consistency(all: &[Digest32], roots: &[Digest32], n: usize, m: usize) {
    let proof = consistency_proof(&all[..n], m as u64).unwrap();
    let mut bad = proof.clone();
    for e in 0..proof.len() {
        for bit in 0..256 {
            bad[e] = flip_bit(&proof[e], bit);
            assert!(
                verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &bad).is_err(),
                "{m} to {n}, element {e}, bit {bit}"
            );
        }
        bad[e] = proof[e];
    }
}

/// Which positions to flip exhaustively: all of them up to `FULL` leaves; beyond, the edges
/// and the middle (the debug build's unoptimized SHA-256 makes all 64 sizes take ~20 s; the
/// ignored `..._up_to_64` tests do everything).
const FULL: usize = 32;

fn positions(n: usize, lo: usize) -> Vec<usize> {
    if n <= FULL {
        return (lo..n).collect();
    }
    let mut p = vec![lo, lo + 1, n / 2, n - 2, n - 1];
    p.dedup();
    p
}

#[test]
fn every_bit_flip_of_every_inclusion_proof_element_fails() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in 1..=MAX {
        for i in positions(n, 0) {
            flip_every_bit_of_inclusion(&all, &roots, n, i);
        }
    }
}

#[test]
fn every_bit_flip_of_every_consistency_proof_element_fails() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in 2..=MAX {
        for m in positions(n, 1) {
            flip_every_bit_of_consistency(&all, &roots, n, m);
        }
    }
}

#[test]
#[ignore = "about 10 s in a debug build; run with --ignored (or in --release)"]
fn every_bit_flip_of_every_inclusion_proof_up_to_64() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in 1..=MAX {
        for i in 0..n {
            flip_every_bit_of_inclusion(&all, &roots, n, i);
        }
    }
}

#[test]
#[ignore = "about 10 s in a debug build; run with --ignored (or in --release)"]
fn every_bit_flip_of_every_consistency_proof_up_to_64() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in 2..=MAX {
        for m in 1..n {
            flip_every_bit_of_consistency(&all, &roots, n, m);
        }
    }
}

#[test]
fn flipping_any_bit_of_the_leaf_or_the_roots_fails() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in [1, 2, 3, 7, 8, 9, 31, 32, 33, MAX] {
        for i in 0..n {
            let proof = inclusion_proof(&all[..n], i as u64).unwrap();
            for bit in 0..256 {
                let (leaf, r) = (flip_bit(&all[i], bit), flip_bit(&roots[n], bit));
                assert!(verify_inclusion(&leaf, i as u64, n as u64, &proof, &roots[n]).is_err());
                assert!(verify_inclusion(&all[i], i as u64, n as u64, &proof, &r).is_err());
            }
        }
        for m in 1..n {
            let proof = consistency_proof(&all[..n], m as u64).unwrap();
            for bit in 0..256 {
                let (old, new) = (flip_bit(&roots[m], bit), flip_bit(&roots[n], bit));
                let (m, n2) = (m as u64, n as u64);
                assert!(verify_consistency(m, n2, &old, &roots[n], &proof).is_err());
                assert!(verify_consistency(m, n2, &roots[m as usize], &new, &proof).is_err());
            }
        }
    }
}
