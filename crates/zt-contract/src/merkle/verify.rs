//! Checking proofs: RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), step by step.
//! Variable names follow the RFC: `fn_` is its `fn` (a Rust keyword), `sn`, `r`, `fr`, `sr`.

use super::{empty_root, node_hash, ProofError};
use crate::Digest32;

/// Checks that `leaf_hash` is leaf `index` of the tree of `tree_size` leaves whose root is
/// `root`, given its inclusion proof (RFC 9162 §2.1.3.2).
///
/// Two things the proof cannot check, so the caller must: compute `leaf_hash` itself from the
/// record (see [`super::audit_leaf_hash`]), never take it from the prover, or an interior node
/// could pose as a leaf; and take `tree_size` and `root` together from one verified checkpoint,
/// because a proof can also walk to the same root under another size of the same shape.
pub fn verify_inclusion(
    leaf_hash: &Digest32,
    index: u64,
    tree_size: u64,
    proof: &[Digest32],
    root: &Digest32,
) -> Result<(), ProofError> {
    // 1. leaf_index >= tree_size fails.
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    // 2.-3.
    let mut fn_ = index;
    let mut sn = tree_size - 1;
    let mut r = *leaf_hash;
    // 4.
    for p in proof {
        if sn == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    if sn != 0 {
        return Err(ProofError::ProofTooShort);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
///
/// For `0 < old_size < new_size` this is the RFC's algorithm exactly. The RFC defines no proof
/// outside that range; here, as in the CT and Trillian verifiers, the proof must then be empty,
/// and additionally (fail closed) the roots must be what the sizes imply: equal roots for equal
/// sizes, and `SHA-256("")` for a tree of size 0.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Digest32,
    new_root: &Digest32,
    proof: &[Digest32],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeTooLarge { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return verify_trivial(old_size, new_size, old_root, new_root, proof);
    }
    // 1. An empty consistency_path fails.
    if proof.is_empty() {
        return Err(ProofError::EmptyProof);
    }
    // 2. If first is an exact power of 2, prepend first_hash.
    let prefix = old_size.is_power_of_two().then_some(old_root);
    let mut path = prefix.into_iter().chain(proof);
    // 3.-4.
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    let Some(first) = path.next() else {
        return Err(ProofError::EmptyProof);
    };
    let mut fr = *first;
    let mut sr = *first;
    // 6.
    for c in path {
        if sn == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7.
    if sn != 0 {
        return Err(ProofError::ProofTooShort);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Sizes with nothing to prove: `old_size == 0` or `old_size == new_size`.
fn verify_trivial(
    old_size: u64,
    new_size: u64,
    old_root: &Digest32,
    new_root: &Digest32,
    proof: &[Digest32],
) -> Result<(), ProofError> {
    if !proof.is_empty() {
        return Err(ProofError::UnexpectedProof);
    }
    if old_size == 0 && *old_root != empty_root() {
        return Err(ProofError::OldRootMismatch);
    }
    if old_size == new_size && old_root != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
