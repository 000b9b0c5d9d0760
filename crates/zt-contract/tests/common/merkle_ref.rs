//! An independent reference Merkle tree, written apart from `zt_contract::merkle` and on purpose
//! by a different method: the tree is built bottom-up as a list of levels (pair nodes left to
//! right, carry an odd last node up unchanged), and proofs are read off the levels by sibling
//! index. RFC 9162 trees are exactly these trees, so both must agree on every hash.

use aws_lc_rs::digest::{digest, SHA256};

pub(crate) type Hash = [u8; 32];

fn sha256(bytes: &[u8]) -> Hash {
    digest(&SHA256, bytes).as_ref().try_into().unwrap()
}

/// `SHA-256(0x00 || data)`.
pub(crate) fn leaf(data: &[u8]) -> Hash {
    sha256(&[&[0u8][..], data].concat())
}

/// `SHA-256(0x01 || left || right)`.
pub(crate) fn node(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[1u8][..], left, right].concat())
}

/// Level 0 is the leaf hashes; each next level pairs the one below, carrying an odd last node.
pub(crate) fn levels(leaves: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = vec![leaves.to_vec()];
    while out.last().unwrap().len() > 1 {
        let below = out.last().unwrap();
        let above = below
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node(l, r),
                [carried] => *carried,
                _ => unreachable!(),
            })
            .collect();
        out.push(above);
    }
    out
}

/// The root; `SHA-256("")` for no leaves.
pub(crate) fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return sha256(b"");
    }
    levels(leaves).last().unwrap()[0]
}

/// The siblings of node `index` at `level`, bottom-up, skipping levels where it is carried.
fn siblings(levels: &[Vec<Hash>], mut level: usize, mut index: usize) -> Vec<Hash> {
    let mut out = Vec::new();
    while level + 1 < levels.len() {
        if let Some(s) = levels[level].get(index ^ 1) {
            out.push(*s);
        }
        index >>= 1;
        level += 1;
    }
    out
}

/// The inclusion proof of leaf `index`.
pub(crate) fn inclusion(leaves: &[Hash], index: usize) -> Vec<Hash> {
    assert!(index < leaves.len());
    siblings(&levels(leaves), 0, index)
}

/// The consistency proof from the first `m` leaves to all of them: the root of the largest
/// perfect subtree ending at `m` (unless it is the whole old tree), then its siblings.
pub(crate) fn consistency(leaves: &[Hash], m: usize) -> Vec<Hash> {
    assert!(m <= leaves.len());
    if m == 0 || m == leaves.len() {
        return Vec::new();
    }
    let lv = levels(leaves);
    let level = m.trailing_zeros() as usize;
    let index = (m >> level) - 1;
    let mut out = Vec::new();
    if !m.is_power_of_two() {
        out.push(lv[level][index]);
    }
    out.extend(siblings(&lv, level, index));
    out
}
