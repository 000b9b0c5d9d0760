//! The writer of the single-writer pipeline: it takes everything the sealer ([`crate::sealer`])
//! sealed since its last commit, stores it durably (one transaction, one `fsync`), extends the
//! Merkle tree, publishes the new head, and only then answers the batch's callers.
//!
//! A failed store is final: the sealer has already chained later records onto the batch, and
//! the store may or may not hold it, so the ledger refuses everything until a restart re-reads
//! the head from the store and verifies the tail ([`crate::startup`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use zt_contract::merkle::audit_leaf_hash;

use crate::committer::{CommitObserver, Shared};
use crate::handoff::{Handoff, WriterGuard};
use crate::queue::refuse_all;
use crate::store::AuditStore;
use crate::tree::LogTree;

/// Stores sealed batches durably, extends the Merkle tree, then answers their callers.
pub(crate) struct Writer {
    pub(crate) store: Box<dyn AuditStore>,
    /// The tree of every committed record; only the writer changes it.
    pub(crate) tree: LogTree,
    pub(crate) shared: Arc<Shared>,
    pub(crate) observer: Option<CommitObserver>,
}

impl Writer {
    pub(crate) fn run(mut self, from_sealer: Arc<Handoff>) {
        let _gone = WriterGuard(&from_sealer);
        while let Some(mut batch) = from_sealer.take() {
            if self.shared.failed.load(Ordering::Acquire) {
                refuse_all(batch.replies, "an earlier commit failed");
                continue;
            }
            let count = batch.records.len();
            let storing = Instant::now();
            batch.stages.handoff = storing.saturating_duration_since(batch.sealed);
            let committed = batch
                .keys
                .iter()
                .try_for_each(|jwk| self.store.publish_key(jwk))
                .and_then(|()| self.store.append(&batch.records));
            batch.stages.store = storing.elapsed();
            match &committed {
                Ok(()) => {
                    // In commit order, before any caller hears of its record.
                    for r in &batch.records {
                        self.tree.append(audit_leaf_hash(&r.current_hash));
                    }
                    if let Some(last) = batch.records.last() {
                        self.shared.publish(last.head(), &self.tree);
                    }
                }
                Err(e) => {
                    // The sealer has already chained later records onto this batch, and the
                    // store may or may not hold it: stop for good rather than risk a fork.
                    // A restart re-reads the head from the store and verifies the tail.
                    tracing::error!(error = %e, records = count, "audit commit failed; refusing every decision until restart");
                    self.shared.failed.store(true, Ordering::Release);
                }
            }
            // Metrics count the batch before any caller hears of it.
            self.shared.observe(
                self.observer.as_ref(),
                count,
                batch.started,
                Some(batch.stages),
            );
            match committed {
                Ok(()) => {
                    for (reply, record) in batch.replies.into_iter().zip(batch.records) {
                        let _ = reply.send(Ok(record));
                    }
                    // The store's upkeep waits for no one already answered; the sealer goes
                    // on sealing the next batch meanwhile.
                    self.store.between_commits();
                }
                Err(e) => refuse_all(batch.replies, &e.to_string()),
            }
        }
    }
}
