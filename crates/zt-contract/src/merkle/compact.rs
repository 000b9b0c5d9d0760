//! The right frontier of the tree: enough to append leaves and compute the current root in
//! O(log n) memory and time, without the leaves themselves.

use super::{empty_root, node_hash};
use crate::Digest32;

/// The compact range `[0, size)`: the roots of the perfect subtrees the tree of `size` leaves
/// decomposes into, one per set bit of `size`, largest (leftmost) first.
///
/// A server keeps one in memory, appends each committed record's leaf hash, and signs a
/// checkpoint of [`CompactRange::root`] at any size without re-reading the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Invariant: `hashes.len() == size.count_ones()`.
    hashes: Vec<Digest32>,
}

/// Why a frontier could not be restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a frontier for tree size {size} has {expected} hashes, not {found}")]
#[non_exhaustive]
pub struct FrontierError {
    /// The tree size.
    pub size: u64,
    /// The number of hashes a frontier of that size has (set bits of `size`).
    pub expected: u32,
    /// The number given.
    pub found: usize,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a frontier saved from [`CompactRange::size`] and [`CompactRange::frontier`].
    /// The hashes cannot be checked here; compare [`CompactRange::root`] with a trusted root.
    pub fn from_frontier(size: u64, hashes: Vec<Digest32>) -> Result<Self, FrontierError> {
        let expected = size.count_ones();
        if hashes.len() != expected as usize {
            return Err(FrontierError {
                size,
                expected,
                found: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest (leftmost) first.
    pub fn frontier(&self) -> &[Digest32] {
        &self.hashes
    }

    /// Appends one leaf hash (see [`super::audit_leaf_hash`]).
    pub fn append(&mut self, leaf_hash: Digest32) {
        // Each trailing one bit of the old size is a perfect subtree as large as the node being
        // carried: merge them, right to left, like a binary increment.
        let mut node = leaf_hash;
        for _ in 0..self.size.trailing_ones() {
            // The invariant guarantees one hash per set bit, so this never runs dry.
            let Some(left) = self.hashes.pop() else { break };
            node = node_hash(&left, &node);
        }
        self.hashes.push(node);
        self.size += 1;
    }

    /// The root of the tree of [`CompactRange::size`] leaves.
    pub fn root(&self) -> Digest32 {
        // MTH splits off the largest perfect subtree on the left, so the root folds the
        // frontier from the right.
        let mut rest = self.hashes.iter().rev();
        match rest.next() {
            None => empty_root(),
            Some(last) => rest.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}
