use super::*;

/// A small deterministic generator (xorshift64*), so property tests need no extra crate and
/// every failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn leaves(n: usize) -> Vec<Digest32> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(
        root(&[]).to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(CompactRange::new().root(), root(&[]));
}

#[test]
fn leaf_and_node_hashes_are_domain_separated() {
    let a = leaf_hash(b"a");
    let b = leaf_hash(b"b");
    let mut concat = Vec::new();
    concat.extend_from_slice(&a.0);
    concat.extend_from_slice(&b.0);
    // A leaf whose data is two hashes is not the node over them.
    assert_ne!(leaf_hash(&concat), node_hash(&a, &b));
    let mut prefixed = vec![1u8];
    prefixed.extend_from_slice(&concat);
    assert_eq!(Digest32::sha256(&prefixed), node_hash(&a, &b));
}

#[test]
fn audit_leaf_is_the_leaf_hash_of_the_raw_current_hash() {
    let current = Digest32::sha256(b"record body");
    let mut data = vec![0u8];
    data.extend_from_slice(&current.0);
    assert_eq!(audit_leaf_hash(&current), Digest32::sha256(&data));
}

#[test]
fn split_point_is_the_largest_power_of_two_below_n() {
    let cases = [
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 4),
        (8, 4),
        (9, 8),
        (1 << 20, 1 << 19),
    ];
    for (n, k) in cases {
        assert_eq!(largest_power_of_two_below(n), k, "n = {n}");
    }
    assert_eq!(
        largest_power_of_two_below(usize::MAX),
        1 << (usize::BITS - 1)
    );
}

#[test]
fn compact_range_root_equals_root_at_every_size_up_to_300() {
    let all = leaves(300);
    let mut range = CompactRange::new();
    for (i, leaf) in all.iter().enumerate() {
        range.append(*leaf);
        assert_eq!(range.size(), i as u64 + 1);
        assert_eq!(range.frontier().len() as u32, range.size().count_ones());
        assert_eq!(range.root(), root(&all[..=i]), "size {}", i + 1);
    }
}

#[test]
fn compact_range_root_equals_root_for_random_sizes() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for _ in 0..40 {
        let n = rng.below(5000) as usize;
        let all: Vec<Digest32> = (0..n)
            .map(|_| leaf_hash(&rng.next().to_le_bytes()))
            .collect();
        let mut range = CompactRange::new();
        for leaf in &all {
            range.append(*leaf);
        }
        assert_eq!(range.root(), root(&all), "size {n}");
    }
}

#[test]
fn compact_range_restores_from_its_frontier() {
    let all = leaves(77);
    let mut range = CompactRange::new();
    for leaf in &all[..50] {
        range.append(*leaf);
    }
    let mut restored =
        CompactRange::from_frontier(range.size(), range.frontier().to_vec()).unwrap();
    assert_eq!(restored, range);
    for leaf in &all[50..] {
        restored.append(*leaf);
    }
    assert_eq!(restored.root(), root(&all));
}

#[test]
fn compact_range_rejects_a_frontier_of_the_wrong_length() {
    let err = CompactRange::from_frontier(5, vec![leaf_hash(b"x")]).unwrap_err();
    assert_eq!(
        err,
        FrontierError {
            size: 5,
            expected: 2,
            found: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "a frontier for tree size 5 has 2 hashes, not 1"
    );
    assert!(CompactRange::from_frontier(0, vec![leaf_hash(b"x")]).is_err());
    assert!(CompactRange::from_frontier(0, vec![]).is_ok());
}

#[test]
fn proofs_for_random_trees_verify_against_compact_range_roots() {
    let mut rng = Rng(42);
    for _ in 0..50 {
        let n = 1 + rng.below(2000) as usize;
        let all = leaves(n);
        let mut range = CompactRange::new();
        all.iter().for_each(|l| range.append(*l));
        let new_root = range.root();

        let index = rng.below(n as u64);
        let proof = inclusion_proof(&all, index).unwrap();
        verify_inclusion(&all[index as usize], index, n as u64, &proof, &new_root).unwrap();

        let old = rng.below(n as u64 + 1);
        let proof = consistency_proof(&all, old).unwrap();
        let old_root = root(&all[..old as usize]);
        verify_consistency(old, n as u64, &old_root, &new_root, &proof).unwrap();
    }
}

#[test]
fn proof_generation_rejects_out_of_range_arguments() {
    let all = leaves(5);
    assert_eq!(
        inclusion_proof(&all, 5),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        inclusion_proof(&all, u64::MAX),
        Err(ProofError::IndexOutOfRange {
            index: u64::MAX,
            size: 5
        })
    );
    assert_eq!(
        consistency_proof(&all, 6),
        Err(ProofError::OldSizeTooLarge {
            old_size: 6,
            new_size: 5
        })
    );
    assert_eq!(consistency_proof(&all, 0), Ok(vec![]));
    assert_eq!(consistency_proof(&all, 5), Ok(vec![]));
    assert_eq!(inclusion_proof(&all[..1], 0), Ok(vec![]));
}

#[test]
fn error_messages_are_lowercase_sentences() {
    let errors = [
        ProofError::IndexOutOfRange { index: 3, size: 2 },
        ProofError::OldSizeTooLarge {
            old_size: 3,
            new_size: 2,
        },
        ProofError::EmptyProof,
        ProofError::UnexpectedProof,
        ProofError::ProofTooLong,
        ProofError::ProofTooShort,
        ProofError::RootMismatch,
        ProofError::OldRootMismatch,
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(msg.starts_with(|c: char| c.is_ascii_lowercase()), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
}
