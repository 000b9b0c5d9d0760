//! Merkle proofs of the committed log (RFC 9162), built from the committed tree's subtree
//! hashes plus at most two store reads of at most [`crate::tree::CHUNK`] hashes each, on a
//! pooled reader (see [`crate::tree`]).

use zt_contract::Digest32;

use crate::committer::Ledger;
use crate::store::AuditStore;
use crate::tree::{Inclusion, TreeError};

impl Ledger {
    /// The inclusion proof of record `seq` in the tree of the first `size` records, and the
    /// record's leaf hash. Blocking: call from a blocking context. A `size` beyond the
    /// committed log is [`TreeError::SizeBeyondTree`], `seq >= size` a [`TreeError::Proof`].
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Inclusion, TreeError> {
        let tree = self.tree_snapshot();
        self.with_proof_reader(|store| {
            tree.inclusion_proof(seq, size, &mut |from, count| store.hashes(from, count))
        })
    }

    /// The consistency proof from the tree of the first `from` records to the tree of the
    /// first `to` (empty when `from` is 0 or `to`). Blocking: call from a blocking context. A
    /// `to` beyond the committed log is [`TreeError::SizeBeyondTree`], `from > to` a
    /// [`TreeError::Proof`].
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Digest32>, TreeError> {
        let tree = self.tree_snapshot();
        self.with_proof_reader(|store| {
            tree.consistency_proof(from, to, &mut |from, count| store.hashes(from, count))
        })
    }

    /// Builds a proof on a pooled reader. A store failure drops the reader, as every failed
    /// read does; a refused request returns it to the pool.
    fn with_proof_reader<T>(
        &self,
        build: impl FnOnce(&mut dyn AuditStore) -> Result<T, TreeError>,
    ) -> Result<T, TreeError> {
        self.with_reader(|store| match build(store) {
            Err(TreeError::Store(e)) => Err(e),
            built => Ok(built),
        })?
    }
}
