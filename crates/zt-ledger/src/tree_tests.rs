use proptest::prelude::*;
use zt_contract::merkle::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion,
};

use super::*;

/// The stored `current_hash` of record `i`.
fn stored(i: u64) -> Digest32 {
    Digest32::sha256(&i.to_be_bytes())
}

/// A log of `len` records: its stored hashes, its leaves, and its tree with chunks of
/// `2^bits` leaves.
struct Log {
    hashes: Vec<Digest32>,
    leaves: Vec<Digest32>,
    tree: LogTree,
}

impl Log {
    fn new(bits: u32, len: u64) -> Self {
        let hashes: Vec<_> = (0..len).map(stored).collect();
        let leaves: Vec<_> = hashes.iter().map(audit_leaf_hash).collect();
        let mut tree = LogTree::with_chunk_bits(bits);
        leaves.iter().for_each(|leaf| tree.append(*leaf));
        Self {
            hashes,
            leaves,
            tree,
        }
    }
}

/// The store reads one proof made: `(from, count)` of each.
#[derive(Default)]
struct Reads(Vec<(u64, usize)>);

impl Reads {
    /// Serves `hashes` and records each read.
    fn from<'a>(
        &'a mut self,
        hashes: &'a [Digest32],
    ) -> impl FnMut(u64, usize) -> Result<Vec<Digest32>, StoreError> + 'a {
        move |from, count| {
            self.0.push((from, count));
            let start = (from as usize).min(hashes.len());
            let end = start.saturating_add(count).min(hashes.len());
            Ok(hashes[start..end].to_vec())
        }
    }

    /// At most two reads, each inside one chunk of `2^bits` leaves.
    fn assert_bounded(&self, bits: u32) {
        assert!(self.0.len() <= 2, "{:?}", self.0);
        for (from, count) in &self.0 {
            assert_eq!(from % (1 << bits), 0, "{:?}", self.0);
            assert!(*count as u64 <= 1 << bits, "{:?}", self.0);
        }
    }
}

/// Checks the inclusion proof of `index` in `size` against the reference, the verifier and
/// the read bound.
fn check_inclusion(log: &Log, snapshot: &TreeSnapshot, bits: u32, index: u64, size: u64) {
    let mut reads = Reads::default();
    let got = snapshot
        .inclusion_proof(index, size, &mut reads.from(&log.hashes))
        .unwrap();
    let prefix = &log.leaves[..size as usize];
    assert_eq!(
        got.proof,
        inclusion_proof(prefix, index).unwrap(),
        "{index} in {size}"
    );
    assert_eq!(got.leaf_hash, log.leaves[index as usize]);
    verify_inclusion(&got.leaf_hash, index, size, &got.proof, &root(prefix)).unwrap();
    reads.assert_bounded(bits);
}

/// Checks the consistency proof from `from` to `to` likewise.
fn check_consistency(log: &Log, snapshot: &TreeSnapshot, bits: u32, from: u64, to: u64) {
    let mut reads = Reads::default();
    let got = snapshot
        .consistency_proof(from, to, &mut reads.from(&log.hashes))
        .unwrap();
    let new = &log.leaves[..to as usize];
    assert_eq!(got, consistency_proof(new, from).unwrap(), "{from} to {to}");
    let old_root = root(&log.leaves[..from as usize]);
    verify_consistency(from, to, &old_root, &root(new), &got).unwrap();
    reads.assert_bounded(bits);
}

proptest! {
    #[test]
    fn proofs_equal_the_reference_and_verify(
        bits in 0u32..=4,
        len in 1u64..=160,
        picks in (any::<u64>(), any::<u64>(), any::<u64>()),
    ) {
        let log = Log::new(bits, len);
        let snapshot = log.tree.snapshot();
        let size = 1 + picks.0 % len;
        check_inclusion(&log, &snapshot, bits, picks.1 % size, size);
        let from = picks.2 % (size + 1);
        check_consistency(&log, &snapshot, bits, from, size);
    }
}

#[test]
fn every_proof_of_a_small_log_matches_at_every_chunk_size() {
    for bits in 0..=3 {
        let log = Log::new(bits, 37);
        let snapshot = log.tree.snapshot();
        for size in 1..=37 {
            for index in 0..size {
                check_inclusion(&log, &snapshot, bits, index, size);
            }
            for from in 0..=size {
                check_consistency(&log, &snapshot, bits, from, size);
            }
        }
    }
}

#[test]
fn production_chunks_around_their_boundaries() {
    let log = Log::new(CHUNK_BITS, 5 * CHUNK + 3);
    let snapshot = log.tree.snapshot();
    let around = |x: u64| [x.saturating_sub(1), x, x + 1];
    let sizes: Vec<u64> = [CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK, 5 * CHUNK]
        .into_iter()
        .flat_map(around)
        .chain([1, 2, 5 * CHUNK + 3])
        .collect();
    for &size in &sizes {
        for index in [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 17, size / 2, size - 1] {
            if index < size {
                check_inclusion(&log, &snapshot, CHUNK_BITS, index, size);
            }
        }
        for &from in sizes.iter().filter(|from| **from <= size) {
            check_consistency(&log, &snapshot, CHUNK_BITS, from, size);
        }
    }
}

#[test]
fn the_tree_has_the_compact_range_root_and_keeps_every_chunk() {
    for bits in [0, 2, CHUNK_BITS] {
        let log = Log::new(bits, 3 * 1024 + 5);
        let mut compact = CompactRange::new();
        log.leaves.iter().for_each(|leaf| compact.append(*leaf));
        assert_eq!(log.tree.compact(), compact);
        assert_eq!(log.tree.snapshot().compact(), compact);
        assert_eq!(log.tree.root(), root(&log.leaves));
        assert_eq!(log.tree.size(), log.leaves.len() as u64);
        let snapshot = log.tree.snapshot();
        let chunk = 1usize << bits;
        for (i, leaves) in log.leaves.chunks_exact(chunk).enumerate() {
            assert_eq!(
                snapshot.subtree(0, i as u64),
                Some(root(leaves)),
                "{bits} {i}"
            );
        }
        assert_eq!(snapshot.subtree(0, (log.leaves.len() / chunk) as u64), None);
    }
}

#[test]
fn a_snapshot_stays_valid_while_the_tree_grows() {
    let bits = 2;
    let mut log = Log::new(bits, 21);
    let early = log.tree.snapshot();
    for i in 21..100 {
        log.hashes.push(stored(i));
        log.leaves.push(audit_leaf_hash(&stored(i)));
        log.tree.append(audit_leaf_hash(&stored(i)));
    }
    assert_eq!(early.size(), 21);
    assert_eq!(early.compact().root(), root(&log.leaves[..21]));
    for size in 1..=21 {
        check_inclusion(&log, &early, bits, size / 3, size);
        check_consistency(&log, &early, bits, size / 2, size);
    }
    let err = early
        .inclusion_proof(0, 22, &mut Reads::default().from(&log.hashes))
        .unwrap_err();
    assert!(
        matches!(
            err,
            TreeError::SizeBeyondTree {
                size: 22,
                committed: 21
            }
        ),
        "{err}"
    );
}

#[test]
fn impossible_requests_are_refused_before_any_read() {
    let log = Log::new(2, 10);
    let snapshot = log.tree.snapshot();
    let mut reads = Reads::default();
    let mut read = reads.from(&log.hashes);
    let err = snapshot.inclusion_proof(10, 10, &mut read).unwrap_err();
    assert!(
        matches!(err, TreeError::Proof(ProofError::IndexOutOfRange { .. })),
        "{err}"
    );
    let err = snapshot.consistency_proof(5, 4, &mut read).unwrap_err();
    assert!(
        matches!(err, TreeError::Proof(ProofError::OldSizeTooLarge { .. })),
        "{err}"
    );
    let err = snapshot.consistency_proof(1, 11, &mut read).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tree size 11 is beyond the log's 10 records"
    );
    assert!(snapshot
        .consistency_proof(0, 10, &mut read)
        .unwrap()
        .is_empty());
    assert!(snapshot
        .consistency_proof(10, 10, &mut read)
        .unwrap()
        .is_empty());
    drop(read);
    assert!(reads.0.is_empty());
}

#[test]
fn a_store_that_lost_or_changed_records_or_fails_gives_no_proof() {
    let log = Log::new(2, 10);
    let snapshot = log.tree.snapshot();

    let short = &log.hashes[..9];
    let err = snapshot
        .inclusion_proof(0, 10, &mut Reads::default().from(short))
        .unwrap_err();
    assert!(
        matches!(err, TreeError::Store(StoreError::Corrupt(_))),
        "{err}"
    );

    let mut changed = log.hashes.clone();
    changed[5] = stored(99);
    let err = snapshot
        .inclusion_proof(4, 10, &mut Reads::default().from(&changed))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("records 4..8 are not the ones committed"),
        "{err}"
    );

    let mut failing = |_: u64, _: usize| Err(StoreError::Backend("disk on fire".into()));
    let err = snapshot.consistency_proof(3, 10, &mut failing).unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
}

#[test]
fn a_store_that_pages_its_answers_is_read_to_the_end() {
    let log = Log::new(3, 20);
    let snapshot = log.tree.snapshot();
    let mut calls = 0;
    let mut paged = |from: u64, count: usize| {
        calls += 1;
        let end = (from as usize + count.min(3)).min(log.hashes.len());
        Ok(log.hashes[from as usize..end].to_vec())
    };
    let got = snapshot.inclusion_proof(9, 20, &mut paged).unwrap();
    assert_eq!(got.proof, inclusion_proof(&log.leaves, 9).unwrap());
    assert!(calls > 2);
}
