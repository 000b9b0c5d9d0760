//! A lying server: proofs presented for the wrong index or size, for a leaf that is not in the
//! log, for a rewritten history, or padded, truncated and reordered. Trees of 1..=64 leaves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::merkle_ref;
use zt_contract::merkle::{
    audit_leaf_hash, consistency_proof, inclusion_proof, leaf_hash, node_hash, root,
    verify_consistency, verify_inclusion, ProofError,
};
use zt_contract::Digest32;

const MAX: usize = 64;

fn log(n: usize) -> Vec<Digest32> {
    (0..n)
        .map(|seq| audit_leaf_hash(&Digest32::sha256(format!("record {seq}").as_bytes())))
        .collect()
}

fn roots(all: &[Digest32]) -> Vec<Digest32> {
    (0..=all.len()).map(|n| root(&all[..n])).collect()
}

#[test]
fn an_inclusion_proof_fails_for_every_other_index_and_for_every_other_size() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in 1..=MAX {
        for i in 0..n {
            let proof = inclusion_proof(&all[..n], i as u64).unwrap();
            let (i64_, n64) = (i as u64, n as u64);
            // Another index, same tree and root.
            for j in (0..=MAX as u64 + 1).filter(|j| *j != i64_) {
                assert!(verify_inclusion(&all[i], j, n64, &proof, &roots[n]).is_err());
            }
            // Another size, with that size's own root.
            for m in (i + 1..=MAX).filter(|m| *m != n) {
                assert!(verify_inclusion(&all[i], i64_, m as u64, &proof, &roots[m]).is_err());
            }
            // The classic probes of the CT and Trillian suites, with the original root.
            for (j, m) in [
                (i64_.wrapping_sub(1), n64),
                (i64_ + 1, n64),
                (i64_ ^ 2, n64),
            ]
            .into_iter()
            .chain([
                (i64_, n64 * 2),
                (i64_, n64 / 2),
                (i64_, 0),
                (i64_, u64::MAX),
            ]) {
                assert!(verify_inclusion(&all[i], j, m, &proof, &roots[n]).is_err());
            }
        }
    }
}

#[test]
fn index_at_or_past_the_size_is_rejected_before_hashing() {
    let h = leaf_hash(b"x");
    for (i, n) in [(0, 0), (1, 0), (1, 1), (2, 1), (u64::MAX, u64::MAX)] {
        assert_eq!(
            verify_inclusion(&h, i, n, &[], &h),
            Err(ProofError::IndexOutOfRange { index: i, size: n })
        );
    }
    // Huge sizes do not overflow: a path of 64 hashes is the most a u64 size can need.
    let proof = vec![h; 64];
    assert!(verify_inclusion(&h, u64::MAX - 1, u64::MAX, &proof, &h).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &h, &h, &proof).is_err());
}

#[test]
fn a_forged_server_cannot_prove_a_leaf_that_is_not_in_the_log() {
    let all = log(MAX);
    let roots = roots(&all);
    let forged = audit_leaf_hash(&Digest32::sha256(b"a record the log never committed"));
    for n in 1..=MAX {
        // The real leaf's path, or a path from a tree with the forged leaf swapped in: neither
        // leads to the checkpointed root.
        for i in 0..n {
            let real = inclusion_proof(&all[..n], i as u64).unwrap();
            let mut fake_log = all[..n].to_vec();
            fake_log[i] = forged;
            let fake = inclusion_proof(&fake_log, i as u64).unwrap();
            for proof in [real, fake] {
                assert_eq!(
                    verify_inclusion(&forged, i as u64, n as u64, &proof, &roots[n]),
                    Err(ProofError::RootMismatch)
                );
            }
        }
        // Appending the leaf past the checkpoint: out of range for the checkpointed size.
        let mut longer = all[..n].to_vec();
        longer.push(forged);
        let proof = inclusion_proof(&longer, n as u64).unwrap();
        assert!(verify_inclusion(&forged, n as u64, n as u64, &proof, &roots[n]).is_err());
    }
}

#[test]
fn an_interior_node_cannot_pass_as_a_leaf() {
    // The second-preimage attack domain separation stops: present the data of node (0, 1) as
    // a leaf of the tree of level-1 nodes. Without the 0x00/0x01 prefixes its hash would
    // equal the node and the proof would verify.
    let all = log(8);
    let r = root(&all);
    let level1: Vec<Digest32> = all.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    let proof = merkle_ref::inclusion(&level1.iter().map(|d| d.0).collect::<Vec<_>>(), 0);
    let proof: Vec<Digest32> = proof.into_iter().map(Digest32).collect();
    let data = [all[0].0, all[1].0].concat();
    assert_eq!(
        verify_inclusion(&leaf_hash(&data), 0, 4, &proof, &r),
        Err(ProofError::RootMismatch)
    );
    // The verifier trusts the leaf hash it is given: callers compute it from the record.
    assert_eq!(verify_inclusion(&level1[0], 0, 4, &proof, &r), Ok(()));
}

#[test]
fn a_rewritten_history_fails_consistency() {
    let all = log(32);
    for n in 2..=all.len() {
        for m in 1..n {
            let old_root = root(&all[..m]);
            for changed in 0..m {
                let mut rewritten = all[..n].to_vec();
                rewritten[changed] = leaf_hash(b"rewritten");
                let proof = consistency_proof(&rewritten, m as u64).unwrap();
                let new_root = root(&rewritten);
                assert!(
                    verify_consistency(m as u64, n as u64, &old_root, &new_root, &proof).is_err(),
                    "{m} to {n}, leaf {changed} rewritten"
                );
            }
        }
    }
}

#[test]
fn a_consistency_proof_verifies_only_for_the_sizes_it_was_made_for() {
    // Every proof for 0 < m < n <= 24, against every other claim (m2, n2) with that claim's
    // true roots: it verifies only where it is also the proof of that claim.
    const N: usize = 24;
    let all = log(N);
    let roots = roots(&all);
    let proofs: Vec<(usize, usize, Vec<Digest32>)> = (2..=N)
        .flat_map(|n| (1..n).map(move |m| (m, n)))
        .map(|(m, n)| (m, n, consistency_proof(&all[..n], m as u64).unwrap()))
        .collect();
    for (m, n, proof) in &proofs {
        for (m2, n2, other) in &proofs {
            let ok = verify_consistency(*m2 as u64, *n2 as u64, &roots[*m2], &roots[*n2], proof);
            assert_eq!(ok.is_ok(), proof == other, "proof {m}->{n} as {m2}->{n2}");
        }
    }
}

#[test]
fn padded_truncated_reordered_and_swapped_consistency_proofs_fail() {
    let all = log(MAX);
    let roots = roots(&all);
    for n in 2..=MAX {
        for m in 1..n {
            let (m64, n64) = (m as u64, n as u64);
            let (r1, r2) = (roots[m], roots[n]);
            let proof = consistency_proof(&all[..n], m64).unwrap();
            let mut bad: Vec<Vec<Digest32>> = vec![
                vec![],
                proof[..proof.len() - 1].to_vec(),
                proof[1..].to_vec(),
                [&proof[..], &[r1]].concat(),
                [&proof[..], &[r2]].concat(),
                [&[r1], &proof[..]].concat(),
                [&[r2], &proof[..]].concat(),
                [&proof[..1], &proof[..]].concat(),
            ];
            if proof.len() > 1 {
                let mut reversed = proof.clone();
                reversed.reverse();
                bad.push(reversed);
            }
            for p in &bad {
                assert!(
                    verify_consistency(m64, n64, &r1, &r2, p).is_err(),
                    "{m}->{n}"
                );
            }
            assert!(
                verify_consistency(m64, n64, &r2, &r1, &proof).is_err(),
                "swapped"
            );
            assert!(
                verify_consistency(n64, m64, &r2, &r1, &proof).is_err(),
                "reversed"
            );
            // The CT and Trillian probes, with the original roots. (Not every other size
            // fails with the original roots: the proof for 1 -> 3 also walks to root(3) when
            // read as 1 -> 4. A size means something only signed together with its root, in a
            // checkpoint; with each size's true root every other claim fails, tested above.)
            for (m2, n2) in [(m64 - 1, n64), (m64 + 1, n64), (m64 ^ 2, n64)]
                .into_iter()
                .chain([(m64, n64 * 2), (m64, n64 / 2), (0, n64)])
            {
                assert!(
                    verify_consistency(m2, n2, &r1, &r2, &proof).is_err(),
                    "{m}->{n} claimed as {m2}->{n2}"
                );
            }
        }
    }
}
