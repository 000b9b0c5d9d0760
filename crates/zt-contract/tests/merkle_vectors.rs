//! Published RFC 6962 / 9162 Merkle vectors (tests/vectors/merkle_rfc6962.json), each value
//! checked three ways: against the production code, against the independent reference in
//! `common/merkle_ref.rs`, and by verifying the published proofs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::{digest, digests, merkle_ref};
use serde_json::Value;
use zt_contract::merkle::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, root, verify_consistency,
    verify_inclusion, CompactRange, ProofError,
};
use zt_contract::Digest32;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/merkle_rfc6962.json")).unwrap()
}

/// The leaf hashes of the reference tree, by the production code and by the reference.
fn leaves(v: &Value) -> Vec<Digest32> {
    v["leaf_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hex_input| {
            let data = hex::decode(hex_input.as_str().unwrap()).unwrap();
            let ours = leaf_hash(&data);
            assert_eq!(ours.0, merkle_ref::leaf(&data), "leaf hash of {hex_input}");
            ours
        })
        .collect()
}

fn raw(ds: &[Digest32]) -> Vec<merkle_ref::Hash> {
    ds.iter().map(|d| d.0).collect()
}

/// Root of the first `n` leaves as published.
fn published_root(v: &Value, n: u64) -> Digest32 {
    let entry = v["roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tree_size"] == n)
        .unwrap();
    digest(&entry["root"])
}

#[test]
fn vector_file_names_its_source() {
    let v = vectors();
    assert!(!v["source"].as_array().unwrap().is_empty());
    assert_eq!(v["leaf_inputs"].as_array().unwrap().len(), 8);
    assert_eq!(v["roots"].as_array().unwrap().len(), 8);
}

#[test]
fn empty_root_matches() {
    let v = vectors();
    assert_eq!(empty_root(), digest(&v["empty_root"]));
    assert_eq!(root(&[]), digest(&v["empty_root"]));
    assert_eq!(merkle_ref::root(&[]), digest(&v["empty_root"]).0);
}

#[test]
fn roots_match_for_sizes_1_to_8() {
    let v = vectors();
    let all = leaves(&v);
    let mut range = CompactRange::new();
    for entry in v["roots"].as_array().unwrap() {
        let n = entry["tree_size"].as_u64().unwrap() as usize;
        let want = digest(&entry["root"]);
        assert_eq!(root(&all[..n]), want, "production root, size {n}");
        assert_eq!(
            merkle_ref::root(&raw(&all[..n])),
            want.0,
            "reference, size {n}"
        );
        while range.size() < n as u64 {
            range.append(all[range.size() as usize]);
        }
        assert_eq!(range.root(), want, "compact range, size {n}");
    }
}

#[test]
fn inclusion_proofs_match_and_verify() {
    let v = vectors();
    let all = leaves(&v);
    for case in v["inclusion"].as_array().unwrap() {
        let index = case["leaf_index"].as_u64().unwrap();
        let n = case["tree_size"].as_u64().unwrap();
        let want = digests(&case["proof"]);
        let tree = &all[..n as usize];
        assert_eq!(inclusion_proof(tree, index).unwrap(), want, "{case}");
        assert_eq!(
            merkle_ref::inclusion(&raw(tree), index as usize),
            raw(&want),
            "reference: {case}"
        );
        let leaf = all[index as usize];
        let r = published_root(&v, n);
        verify_inclusion(&leaf, index, n, &want, &r).unwrap();
        for (desc, i, size) in [
            ("index - 1", index.wrapping_sub(1), n),
            ("index + 1", index + 1, n),
            ("index ^ 2", index ^ 2, n),
            ("size * 2", index, n * 2),
            ("size / 2", index, n / 2),
        ] {
            assert!(
                verify_inclusion(&leaf, i, size, &want, &r).is_err(),
                "{desc}: {case}"
            );
        }
        assert!(verify_inclusion(&leaf_hash(b"WrongLeaf"), index, n, &want, &r).is_err());
        assert!(verify_inclusion(&leaf, index, n, &want, &empty_root()).is_err());
        let mut longer = want.clone();
        longer.push(r);
        assert_eq!(
            verify_inclusion(&leaf, index, n, &longer, &r),
            Err(ProofError::ProofTooLong)
        );
        let preceded: Vec<Digest32> = std::iter::once(r).chain(want.iter().copied()).collect();
        assert!(verify_inclusion(&leaf, index, n, &preceded, &r).is_err());
        if !want.is_empty() {
            assert_eq!(
                verify_inclusion(&leaf, index, n, &want[..want.len() - 1], &r),
                Err(ProofError::ProofTooShort)
            );
        }
    }
}

#[test]
fn rejected_inclusion_cases_fail() {
    let v = vectors();
    for case in v["inclusion_rejected"].as_array().unwrap() {
        let index = case["leaf_index"].as_u64().unwrap();
        let n = case["tree_size"].as_u64().unwrap();
        let proof = digests(&case["proof"]);
        for r in [empty_root(), leaf_hash(b"")] {
            assert_eq!(
                verify_inclusion(&leaf_hash(b""), index, n, &proof, &r),
                Err(ProofError::IndexOutOfRange { index, size: n }),
                "{case}"
            );
        }
    }
}

#[test]
fn consistency_proofs_match_and_verify() {
    let v = vectors();
    let all = leaves(&v);
    for case in v["consistency"].as_array().unwrap() {
        let m = case["old_size"].as_u64().unwrap();
        let n = case["new_size"].as_u64().unwrap();
        let want = digests(&case["proof"]);
        let tree = &all[..n as usize];
        assert_eq!(consistency_proof(tree, m).unwrap(), want, "{case}");
        assert_eq!(
            merkle_ref::consistency(&raw(tree), m as usize),
            raw(&want),
            "reference: {case}"
        );
        let (r1, r2) = (published_root(&v, m), published_root(&v, n));
        verify_consistency(m, n, &r1, &r2, &want).unwrap();
        if want.is_empty() {
            continue; // as CT and Trillian: probe only the non-trivial proofs
        }
        let wrong = leaf_hash(b"WrongRoot");
        for (desc, m2, n2, a, b, p) in [
            ("old - 1", m - 1, n, r1, r2, want.clone()),
            ("old + 1", m + 1, n, r1, r2, want.clone()),
            ("old ^ 2", m ^ 2, n, r1, r2, want.clone()),
            ("new * 2", m, n * 2, r1, r2, want.clone()),
            ("new / 2", m, n / 2, r1, r2, want.clone()),
            ("wrong old root", m, n, wrong, r2, want.clone()),
            ("wrong new root", m, n, r1, wrong, want.clone()),
            ("swapped roots", m, n, r2, r1, want.clone()),
            ("empty proof", m, n, r1, r2, vec![]),
            (
                "trailing old root",
                m,
                n,
                r1,
                r2,
                [&want[..], &[r1]].concat(),
            ),
            (
                "trailing new root",
                m,
                n,
                r1,
                r2,
                [&want[..], &[r2]].concat(),
            ),
            (
                "preceding old root",
                m,
                n,
                r1,
                r2,
                [&[r1], &want[..]].concat(),
            ),
            (
                "preceding new root",
                m,
                n,
                r1,
                r2,
                [&[r2], &want[..]].concat(),
            ),
            (
                "preceding proof[0]",
                m,
                n,
                r1,
                r2,
                [&want[..1], &want[..]].concat(),
            ),
            ("truncated", m, n, r1, r2, want[..want.len() - 1].to_vec()),
        ] {
            assert!(
                verify_consistency(m2, n2, &a, &b, &p).is_err(),
                "{desc}: {case}"
            );
        }
    }
}

#[test]
fn trivial_consistency_cases_follow_the_reference_verifiers() {
    let e = empty_root();
    let (r1, r2) = (leaf_hash(b"1"), leaf_hash(b"2"));
    // Always consistent: nothing to prove.
    assert_eq!(verify_consistency(0, 0, &e, &e, &[]), Ok(()));
    assert_eq!(verify_consistency(0, 1, &e, &r2, &[]), Ok(()));
    assert_eq!(verify_consistency(1, 1, &r2, &r2, &[]), Ok(()));
    // Stricter than CT/Trillian: a size-0 tree must have the empty root.
    assert_eq!(
        verify_consistency(0, 1, &r1, &r2, &[]),
        Err(ProofError::OldRootMismatch)
    );
    // Time travel to the past.
    for (m, n) in [(1, 0), (2, 1)] {
        assert_eq!(
            verify_consistency(m, n, &r1, &r2, &[]),
            Err(ProofError::OldSizeTooLarge {
                old_size: m,
                new_size: n
            })
        );
    }
    // An empty proof where one is needed.
    assert_eq!(
        verify_consistency(1, 2, &r1, &r2, &[]),
        Err(ProofError::EmptyProof)
    );
    // Roots that differ for equal sizes.
    assert_eq!(
        verify_consistency(1, 1, &r1, &r2, &[]),
        Err(ProofError::RootMismatch)
    );
    assert!(verify_consistency(0, 0, &e, &r2, &[]).is_err());
    // Roots that match, but a proof where none is allowed.
    for (m, n) in [(0, 0), (0, 1), (1, 1)] {
        assert_eq!(
            verify_consistency(m, n, &e, &e, &[e]),
            Err(ProofError::UnexpectedProof)
        );
    }
}
