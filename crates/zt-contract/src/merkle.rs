//! The audit log as a Merkle tree, hashed as RFC 9162 §2.1 (unchanged from RFC 6962 §2.1)
//! defines it, so that inclusion and consistency proofs work as in Certificate Transparency.
//!
//! - leaf hash: `SHA-256(0x00 || leaf data)`
//! - node hash: `SHA-256(0x01 || left || right)`
//! - the tree of `n > 1` leaves splits at `k`, the largest power of two smaller than `n`:
//!   `MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))`
//! - the empty tree's root is `SHA-256("")`
//!
//! # Leaf data
//!
//! The leaf at index `seq` is audit record `seq`, and its leaf data is the 32 raw bytes of the
//! record's `current_hash` (not the hex text, not the record JSON). `current_hash` already binds
//! every hashed field of the record and, through `previous_hash`, the chain before it; using it
//! as leaf data means the tree commits to whole records, and a server or verifier can build
//! roots and proofs from the stored hashes alone, without re-reading or re-canonicalizing
//! record bodies. [`audit_leaf_hash`] is that mapping.
//!
//! # What lives where
//!
//! - this file: hashing and roots;
//! - `merkle/proof.rs`: building proofs from a list of leaf hashes (RFC 9162 §2.1.3.1 PATH and
//!   §2.1.4.1 PROOF);
//! - `merkle/verify.rs`: checking them (RFC 9162 §2.1.3.2 and §2.1.4.2);
//! - `merkle/compact.rs`: [`CompactRange`], the O(log n) frontier a server appends to.

mod compact;
mod proof;
mod verify;

use aws_lc_rs::digest::{Context, SHA256};

use crate::Digest32;

pub use compact::{CompactRange, FrontierError};
pub use proof::{consistency_proof, inclusion_proof};
pub use verify::{verify_consistency, verify_inclusion};

/// Domain-separation prefix of a leaf hash.
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash.
const NODE_PREFIX: u8 = 0x01;

/// Why a proof could not be built or did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeTooLarge {
        /// The older (claimed smaller) tree size.
        old_size: u64,
        /// The newer tree size.
        new_size: u64,
    },
    /// An empty proof where the sizes need one.
    #[error("the proof is empty but these tree sizes need one")]
    EmptyProof,
    /// A non-empty proof where the sizes allow none.
    #[error("the proof must be empty for these tree sizes")]
    UnexpectedProof,
    /// More hashes than the sizes allow.
    #[error("the proof has more hashes than these tree sizes allow")]
    ProofTooLong,
    /// Fewer hashes than the sizes need.
    #[error("the proof has fewer hashes than these tree sizes need")]
    ProofTooShort,
    /// The proof does not lead to the (new) root.
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    /// The consistency proof does not lead to the old root.
    #[error("the proof does not lead to the expected old root")]
    OldRootMismatch,
}

/// `SHA-256(0x00 || data)`: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Digest32 {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(data);
    finish(ctx)
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Digest32, right: &Digest32) -> Digest32 {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[NODE_PREFIX]);
    ctx.update(&left.0);
    ctx.update(&right.0);
    finish(ctx)
}

/// The leaf hash of an audit record: [`leaf_hash`] of the 32 raw bytes of its `current_hash`.
pub fn audit_leaf_hash(current_hash: &Digest32) -> Digest32 {
    leaf_hash(&current_hash.0)
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Digest32 {
    Digest32::sha256(b"")
}

/// The Merkle tree hash of a list of leaf hashes (RFC 9162 §2.1.1 `MTH`).
pub fn root(leaves: &[Digest32]) -> Digest32 {
    match split(leaves) {
        Some((left, right)) => node_hash(&root(left), &root(right)),
        None => leaves.first().copied().unwrap_or_else(empty_root),
    }
}

/// The RFC split of a list of two or more leaves: the first `k` leaves and the rest, with `k`
/// the largest power of two smaller than the length. `None` for fewer than two leaves.
fn split(leaves: &[Digest32]) -> Option<(&[Digest32], &[Digest32])> {
    if leaves.len() < 2 {
        return None;
    }
    let k = largest_power_of_two_below(leaves.len());
    leaves.split_at_checked(k)
}

/// The largest power of two strictly smaller than `n`, for `n >= 2`.
fn largest_power_of_two_below(n: usize) -> usize {
    // For n >= 2, n - 1 >= 1, and the highest set bit of n - 1 is that power of two.
    let m = n.saturating_sub(1).max(1);
    1 << (usize::BITS - 1 - m.leading_zeros())
}

fn finish(ctx: Context) -> Digest32 {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Digest32(out)
}

#[cfg(test)]
#[path = "merkle/tests.rs"]
mod tests;
