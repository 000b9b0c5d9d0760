//! The committed log's Merkle tree as the writer keeps it, and proofs built from it with at
//! most two small store reads, whatever the size of the log.
//!
//! [`LogTree`] wraps the [`CompactRange`] (size and root) and also keeps the hash of every
//! complete aligned subtree of [`CHUNK`] leaves or more: level 0 holds the root of each
//! complete chunk of 1,024 leaves, level `j` the root of each aligned run of `2^j` chunks.
//! That is about 64 bytes per 1,024 records (64 MB per billion). They are append-only: a
//! stored hash never changes, so a [`TreeSnapshot`] (the compact range plus a shared handle on
//! those hashes) stays valid for its size while the writer goes on appending.
//!
//! A proof follows RFC 9162 (§2.1.3.1 `PATH`, §2.1.4.1 `SUBPROOF`) over ranges of leaves,
//! with one way to get the hash of each subtree it needs: a perfect aligned subtree of one
//! chunk or more is a lookup; a range inside one chunk is hashed from that chunk's leaves,
//! read from the store once per proof; any other range the recursion meets is a right edge,
//! split as the RFC splits it. The ranges inside one chunk that a proof needs lie in at most
//! two chunks (an inclusion proof: the leaf's and the tree's last; a consistency proof: the old
//! tree's last and the new tree's last), so a proof reads at most `2 * CHUNK` hashes and does
//! O(`CHUNK` + log n) hashing.

use std::sync::{Arc, PoisonError, RwLock};

use zt_contract::merkle::{audit_leaf_hash, node_hash, root, ProofError};
use zt_contract::{CompactRange, Digest32};

use crate::store::StoreError;

/// log2 of [`CHUNK`].
const CHUNK_BITS: u32 = 10;

/// Leaves per chunk: the smallest subtree whose hash the tree keeps, and the most leaves one
/// store read of a proof asks for.
pub const CHUNK: u64 = 1 << CHUNK_BITS;

/// Reads the stored `current_hash` of the records from `from` on, in order, at most `count`
/// (what [`crate::AuditStore::hashes`] does).
pub type ReadHashes<'a> = dyn FnMut(u64, usize) -> Result<Vec<Digest32>, StoreError> + 'a;

/// Why a proof could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A tree size the log has not reached.
    #[error("tree size {size} is beyond the log's {committed} records")]
    SizeBeyondTree {
        /// The size asked for.
        size: u64,
        /// The records committed when the proof was asked for.
        committed: u64,
    },
    /// No proof exists for these sizes or this index.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Reading the log failed, or its stored hashes are not the ones committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tree lacks a hash it should hold (a bug, not a state of the log).
    #[error("the tree holds no hash of leaves {from}..{to}")]
    Missing {
        /// The first leaf of the range.
        from: u64,
        /// The end of the range (exclusive).
        to: u64,
    },
}

/// A leaf's hash and its audit path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// The leaf hash, [`audit_leaf_hash`] of the record's `current_hash`.
    pub leaf_hash: Digest32,
    /// The audit path, the leaf's sibling first (RFC 9162 §2.1.3.1).
    pub proof: Vec<Digest32>,
}

/// The hashes of complete aligned subtrees: `levels[j][i]` is the root of leaves
/// `[i << (bits + j), (i + 1) << (bits + j))`, with `bits` the tree's chunk bits.
#[derive(Debug, Default)]
struct Subtrees {
    levels: Vec<Vec<Digest32>>,
}

impl Subtrees {
    /// Adds the root of the next chunk, and of every larger subtree it completes.
    fn push_chunk(&mut self, hash: Digest32) {
        let mut carry = Some(hash);
        let mut level = 0;
        while let Some(hash) = carry.take() {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                break;
            };
            row.push(hash);
            if row.len() % 2 == 0 {
                if let [.., left, right] = row.as_slice() {
                    carry = Some(node_hash(left, right));
                }
            }
            level += 1;
        }
    }

    fn get(&self, level: u32, index: u64) -> Option<Digest32> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(index).ok()?).copied()
    }
}

/// The tree the writer appends to. Only one `LogTree` appends to its subtree hashes; readers
/// get a [`TreeSnapshot`].
#[derive(Debug)]
pub struct LogTree {
    compact: CompactRange,
    subtrees: Arc<RwLock<Subtrees>>,
    chunk_bits: u32,
}

impl Default for LogTree {
    fn default() -> Self {
        Self::new()
    }
}

impl LogTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::with_chunk_bits(CHUNK_BITS)
    }

    /// The empty tree with chunks of `2^chunk_bits` leaves (small ones in tests).
    fn with_chunk_bits(chunk_bits: u32) -> Self {
        Self {
            compact: CompactRange::new(),
            subtrees: Arc::default(),
            chunk_bits,
        }
    }

    /// Appends one leaf hash ([`audit_leaf_hash`] of a committed record's `current_hash`).
    pub fn append(&mut self, leaf: Digest32) {
        let chunk = 1u64 << self.chunk_bits;
        if self.compact.size() % chunk == chunk - 1 {
            // The leaf completes a chunk. The chunk's other leaves are the last `chunk_bits`
            // perfect subtrees of the frontier (one per bit of `size % chunk`, all set), so
            // its root folds them onto the leaf from the right.
            let frontier = self.compact.frontier();
            let own = frontier.len().saturating_sub(self.chunk_bits as usize);
            let hash = frontier
                .get(own..)
                .unwrap_or_default()
                .iter()
                .rev()
                .fold(leaf, |right, left| node_hash(left, &right));
            self.subtrees
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .push_chunk(hash);
        }
        self.compact.append(leaf);
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.compact.size()
    }

    /// The root of the tree.
    pub fn root(&self) -> Digest32 {
        self.compact.root()
    }

    /// The tree's compact range (a copy of at most 64 hashes).
    pub fn compact(&self) -> CompactRange {
        self.compact.clone()
    }

    /// A read-only view of the tree at its current size, for proofs. Cheap: a copy of the
    /// compact range and a shared handle on the subtree hashes.
    pub fn snapshot(&self) -> TreeSnapshot {
        TreeSnapshot {
            compact: self.compact.clone(),
            subtrees: self.subtrees.clone(),
            chunk_bits: self.chunk_bits,
        }
    }
}

/// The tree at one size: proofs for any size up to it.
#[derive(Debug, Clone)]
pub struct TreeSnapshot {
    compact: CompactRange,
    subtrees: Arc<RwLock<Subtrees>>,
    chunk_bits: u32,
}

impl TreeSnapshot {
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.compact.size()
    }

    /// The compact range at this size (a copy of at most 64 hashes).
    pub fn compact(&self) -> CompactRange {
        self.compact.clone()
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves, and the
    /// leaf's hash. `read` gets at most two ranges of at most [`CHUNK`] records.
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
        read: &mut ReadHashes<'_>,
    ) -> Result<Inclusion, TreeError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size }.into());
        }
        let mut prover = Prover::new(self, size, read);
        let mut proof = Vec::new();
        prover.path(index, 0, size, &mut proof)?;
        let leaf_hash = prover.hash(index, index + 1)?;
        Ok(Inclusion { leaf_hash, proof })
    }

    /// The consistency proof from the tree of the first `from` leaves to the tree of the first
    /// `to`; empty when `from` is 0 or `to`. `read` gets at most two ranges of at most
    /// [`CHUNK`] records.
    pub fn consistency_proof(
        &self,
        from: u64,
        to: u64,
        read: &mut ReadHashes<'_>,
    ) -> Result<Vec<Digest32>, TreeError> {
        self.check_size(to)?;
        if from > to {
            return Err(ProofError::OldSizeTooLarge {
                old_size: from,
                new_size: to,
            }
            .into());
        }
        let mut proof = Vec::new();
        if from > 0 && from < to {
            Prover::new(self, to, read).subproof(from, 0, to, true, &mut proof)?;
        }
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), TreeError> {
        let committed = self.size();
        if size > committed {
            return Err(TreeError::SizeBeyondTree { size, committed });
        }
        Ok(())
    }

    fn subtree(&self, level: u32, index: u64) -> Option<Digest32> {
        let subtrees = self.subtrees.read().unwrap_or_else(PoisonError::into_inner);
        subtrees.get(level, index)
    }
}

/// One proof's work: the RFC recursion over leaf ranges of the tree of `size` leaves, and the
/// chunks of leaves read for it.
struct Prover<'t, 'r, 'f> {
    tree: &'t TreeSnapshot,
    size: u64,
    read: &'r mut ReadHashes<'f>,
    /// Leaf hashes of the chunks read so far (at most two), by chunk index.
    chunks: Vec<(u64, Vec<Digest32>)>,
}

impl<'t, 'r, 'f> Prover<'t, 'r, 'f> {
    fn new(tree: &'t TreeSnapshot, size: u64, read: &'r mut ReadHashes<'f>) -> Self {
        Self {
            tree,
            size,
            read,
            chunks: Vec::new(),
        }
    }

    /// `PATH(m, D[from:to])`, with `m` counted from the start of the log.
    fn path(
        &mut self,
        m: u64,
        from: u64,
        to: u64,
        out: &mut Vec<Digest32>,
    ) -> Result<(), TreeError> {
        let n = to - from;
        if n < 2 {
            return Ok(());
        }
        let k = from + largest_power_of_two_below(n);
        if m < k {
            self.path(m, from, k, out)?;
            out.push(self.hash(k, to)?);
        } else {
            self.path(m, k, to, out)?;
            out.push(self.hash(from, k)?);
        }
        Ok(())
    }

    /// `SUBPROOF(m, D[from:to], complete)`, with `m` counted from the start of the log.
    fn subproof(
        &mut self,
        m: u64,
        from: u64,
        to: u64,
        complete: bool,
        out: &mut Vec<Digest32>,
    ) -> Result<(), TreeError> {
        if m == to {
            if !complete {
                out.push(self.hash(from, to)?);
            }
            return Ok(());
        }
        let n = to - from;
        if n < 2 {
            return Ok(());
        }
        let k = from + largest_power_of_two_below(n);
        if m <= k {
            self.subproof(m, from, k, complete, out)?;
            out.push(self.hash(k, to)?);
        } else {
            self.subproof(m, k, to, false, out)?;
            out.push(self.hash(from, k)?);
        }
        Ok(())
    }

    /// `MTH(D[from:to])` for a non-empty range the recursion meets.
    fn hash(&mut self, from: u64, to: u64) -> Result<Digest32, TreeError> {
        let bits = self.tree.chunk_bits;
        let len = to - from;
        if len >> bits != 0 && len.is_power_of_two() && from.is_multiple_of(len) {
            let level = (len >> bits).trailing_zeros();
            return self
                .tree
                .subtree(level, from / len)
                .ok_or(TreeError::Missing { from, to });
        }
        if from >> bits == (to - 1) >> bits {
            return self.within_chunk(from, to);
        }
        let k = from + largest_power_of_two_below(len);
        let left = self.hash(from, k)?;
        let right = self.hash(k, to)?;
        Ok(node_hash(&left, &right))
    }

    /// `MTH(D[from:to])` of a range inside one chunk, from the chunk's leaves.
    fn within_chunk(&mut self, from: u64, to: u64) -> Result<Digest32, TreeError> {
        let chunk = from >> self.tree.chunk_bits;
        let cached = match self.chunks.iter().position(|(c, _)| *c == chunk) {
            Some(i) => i,
            None => {
                let leaves = self.read_chunk(chunk)?;
                self.chunks.push((chunk, leaves));
                self.chunks.len() - 1
            }
        };
        let start = chunk << self.tree.chunk_bits;
        let range = usize::try_from(from - start)
            .ok()
            .zip(usize::try_from(to - start).ok());
        self.chunks
            .get(cached)
            .zip(range)
            .and_then(|((_, leaves), (a, b))| leaves.get(a..b))
            .map(root)
            .ok_or(TreeError::Missing { from, to })
    }

    /// The leaf hashes of a chunk (its first `size` leaves at most), read from the store and
    /// checked against the chunk's root when the tree holds it.
    fn read_chunk(&mut self, chunk: u64) -> Result<Vec<Digest32>, TreeError> {
        let from = chunk << self.tree.chunk_bits;
        let to = (from + (1 << self.tree.chunk_bits)).min(self.size);
        let mut leaves: Vec<Digest32> = Vec::new();
        let mut next = from;
        while next < to {
            let want = usize::try_from(to - next).unwrap_or(usize::MAX);
            let page = (self.read)(next, want)?;
            if page.is_empty() {
                return Err(
                    StoreError::Corrupt(format!("the log holds {next} records, not {to}")).into(),
                );
            }
            leaves.extend(page.iter().take(want).map(audit_leaf_hash));
            next = from + leaves.len() as u64;
        }
        // A complete chunk must hash to the root committed for it; otherwise the store changed
        // since, and a proof built from it would not verify.
        if to - from == 1 << self.tree.chunk_bits
            && self.tree.subtree(0, chunk) != Some(root(&leaves))
        {
            return Err(StoreError::Corrupt(format!(
                "the stored hashes of records {from}..{to} are not the ones committed"
            ))
            .into());
        }
        Ok(leaves)
    }
}

/// The largest power of two strictly smaller than `n`, for `n >= 2`.
fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (u64::BITS - 1 - n.saturating_sub(1).max(1).leading_zeros())
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
