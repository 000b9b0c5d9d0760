//! Building proofs from the full list of leaf hashes: RFC 9162 §2.1.3.1 (`PATH`) and §2.1.4.1
//! (`PROOF` / `SUBPROOF`), written as the RFC writes them. Cost: O(n) hashing per proof.

use super::{root, split, ProofError};
use crate::Digest32;

/// The inclusion proof (audit path) of leaf `index` in the tree of `leaves`, from the leaf's
/// sibling up to the child of the root.
pub fn inclusion_proof(leaves: &[Digest32], index: u64) -> Result<Vec<Digest32>, ProofError> {
    let size = leaves.len() as u64;
    let position = usize::try_from(index)
        .ok()
        .filter(|i| *i < leaves.len())
        .ok_or(ProofError::IndexOutOfRange { index, size })?;
    let mut out = Vec::new();
    path(position, leaves, &mut out);
    Ok(out)
}

/// The consistency proof between the tree of the first `old_size` leaves and the tree of all
/// `leaves`. Empty when there is nothing to prove (`old_size` is 0 or the whole list).
pub fn consistency_proof(leaves: &[Digest32], old_size: u64) -> Result<Vec<Digest32>, ProofError> {
    let new_size = leaves.len() as u64;
    let old = usize::try_from(old_size)
        .ok()
        .filter(|m| *m <= leaves.len())
        .ok_or(ProofError::OldSizeTooLarge { old_size, new_size })?;
    let mut out = Vec::new();
    if old > 0 {
        subproof(old, leaves, true, &mut out);
    }
    Ok(out)
}

/// `PATH(m, D[n])`: for `n > 1`, recurse into the half holding leaf `m`, then add the other
/// half's hash.
fn path(m: usize, leaves: &[Digest32], out: &mut Vec<Digest32>) {
    if let Some((left, right)) = split(leaves) {
        let k = left.len();
        if m < k {
            path(m, left, out);
            out.push(root(right));
        } else {
            path(m - k, right, out);
            out.push(root(left));
        }
    }
}

/// `SUBPROOF(m, D[n], b)`: `b` is true while the subtree is still the old tree's own root,
/// whose hash the verifier already has.
fn subproof(m: usize, leaves: &[Digest32], complete: bool, out: &mut Vec<Digest32>) {
    if m == leaves.len() {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    if let Some((left, right)) = split(leaves) {
        let k = left.len();
        if m <= k {
            subproof(m, left, complete, out);
            out.push(root(right));
        } else {
            subproof(m - k, right, false, out);
            out.push(root(left));
        }
    }
}
