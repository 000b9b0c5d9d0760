//! The committer for a store that several servers write at once (PostgreSQL replicas; see
//! [`AuditStore::is_shared`]).
//!
//! No one server knows the head of a shared chain, so a batch cannot be sealed ahead of its
//! commit as the single-writer pipeline does. One thread takes everything queued as one batch
//! and has the store seal it inside its transaction, under the chain's lock, onto the head
//! read there ([`AuditStore::append_at_head`]). Each server still commits in batches, so the
//! chain's lock is taken once per batch, not per record.
//!
//! The Merkle tree and head this server serves must cover the records other servers append
//! too: after each commit, the hashes appended by others before this batch are read and added
//! first; while idle, new hashes are read every [`IDLE_CATCH_UP`].
//!
//! The store also spends the request ids the batch's records carry, in the same transaction
//! (see [`AuditStore::append_at_head`]): a draft whose id another server's record spent within
//! the window is not committed, and its caller gets it back as
//! [`LedgerError::RequestIdSpent`].
//!
//! A failed commit refuses its batch only: the next batch reads the head afresh, so a batch
//! that did reach the store despite the error (a lost commit acknowledgement) cannot fork the
//! chain, and the tree learns of it from the store.

use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zt_contract::merkle::audit_leaf_hash;

use crate::committer::{CommitObserver, Shared};
use crate::draft::RecordDraft;
use crate::queue::{refuse_all, Batches, Pending, MAX_BATCH};
use crate::sealer::seal_batch;
use crate::signer::Signer;
use crate::startup::HASH_PAGE;
use crate::store::{AppendedAtHead, AuditStore, BatchAtHead, Head, SealedRecord, StoreError};
use crate::tree::LogTree;
use crate::LedgerError;

/// How often an idle server reads what the other servers appended.
pub const IDLE_CATCH_UP: Duration = Duration::from_millis(250);

/// Commits batches onto a shared chain; see the module documentation.
pub(crate) struct SharedCommitter {
    pub(crate) queue: Batches,
    pub(crate) signer: Arc<dyn Signer>,
    /// Keys the signer rolled over to whose publication has not succeeded yet.
    pub(crate) unpublished: Vec<zt_contract::Jwk>,
    /// How long a request id stays spent across the servers (see [`BatchAtHead`]).
    pub(crate) request_id_window: Duration,
    pub(crate) store: Box<dyn AuditStore>,
    /// The tree of every record this server has seen committed; only this thread changes it.
    pub(crate) tree: LogTree,
    pub(crate) shared: Arc<Shared>,
    pub(crate) observer: Option<CommitObserver>,
}

impl SharedCommitter {
    pub(crate) fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            match self.queue.wait_for(&mut batch, IDLE_CATCH_UP) {
                Ok(()) => self.commit(&mut batch),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.catch_up(None) {
                        tracing::warn!(error = %e, "reading the shared audit chain failed");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<Pending>) {
        let started = Instant::now();
        let (drafts, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|p| (p.draft, p.reply)).unzip();
        let signer = self.signer.clone();
        // New signing keys are published before any record signed with them; a key whose
        // publication failed is tried again with the next batch.
        let published = match signer.rollover() {
            Ok(keys) => {
                self.unpublished.extend(keys);
                self.unpublished
                    .iter()
                    .try_for_each(|jwk| self.store.publish_key(jwk))
            }
            Err(e) => Err(StoreError::Backend(e.to_string())),
        };
        if let Err(e) = published {
            tracing::error!(error = %e, records = replies.len(), "audit signing key not ready; its decisions are refused");
            refuse_all(replies, &e.to_string());
            return;
        }
        self.unpublished.clear();
        let appended = self.store.append_at_head(BatchAtHead {
            drafts,
            request_id_window: self.request_id_window,
            seal: Box::new(move |mut head, drafts| {
                seal_batch(&mut head, drafts, signer.as_ref())
                    .map_err(|e| StoreError::Backend(e.to_string()))
            }),
        });
        let AppendedAtHead {
            records,
            spent_before,
        } = match appended {
            Ok(appended) => appended,
            Err(e) => {
                tracing::error!(error = %e, records = replies.len(), "audit commit failed; its decisions are refused");
                refuse_all(replies, &e.to_string());
                return;
            }
        };
        self.extend_tree(&records);
        // Metrics count the batch before any caller hears of it.
        self.shared
            .observe(self.observer.as_ref(), records.len(), started, None);
        if !fills_the_batch(&spent_before, records.len(), replies.len()) {
            // Each caller's record cannot be told apart: none is answered with another's.
            tracing::error!(
                records = records.len(),
                handed_back = spent_before.len(),
                "the store's answer does not match the batch; its decisions are refused"
            );
            refuse_all(replies, "the audit store's answer does not match the batch");
            return;
        }
        // The records follow the drafts' order, skipping those handed back.
        let mut spent_before = spent_before.into_iter().peekable();
        let mut records = records.into_iter();
        for (place, reply) in replies.into_iter().enumerate() {
            let answer = match spent_before.next_if(|(at, _)| *at == place) {
                Some((_, draft)) => Err(LedgerError::RequestIdSpent(Box::new(draft))),
                None => match records.next() {
                    Some(record) => Ok::<SealedRecord, LedgerError>(record),
                    None => continue,
                },
            };
            let _ = reply.send(answer);
        }
    }

    /// Adds a committed batch to the tree, after the records other servers committed before
    /// it. If those cannot be read now, the tree stays as it is and the next catch-up reads
    /// them and this batch from the store.
    fn extend_tree(&mut self, records: &[SealedRecord]) {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        if let Err(e) = self.catch_up(Some(first.body.seq)) {
            tracing::warn!(error = %e, "reading the shared audit chain failed; the tree catches up later");
            return;
        }
        if self.tree.size() != first.body.seq {
            return;
        }
        for r in records {
            self.tree.append(audit_leaf_hash(&r.current_hash));
        }
        self.shared.publish(last.head(), &self.tree);
    }

    /// Adds the stored hashes after the tree's end, up to record `until` (exclusive) or to the
    /// end of the chain.
    fn catch_up(&mut self, until: Option<u64>) -> Result<(), StoreError> {
        loop {
            let from = self.tree.size();
            let want = match until {
                Some(until) => until.saturating_sub(from).min(HASH_PAGE as u64) as usize,
                None => HASH_PAGE,
            };
            if want == 0 {
                return Ok(());
            }
            let mut page = self.store.hashes(from, want)?;
            page.truncate(want);
            let Some(last) = page.last().copied() else {
                return match until {
                    Some(until) => Err(StoreError::Corrupt(format!(
                        "records {from} to {until} are missing from the shared chain"
                    ))),
                    None => Ok(()),
                };
            };
            for hash in &page {
                self.tree.append(audit_leaf_hash(hash));
            }
            let head = Head {
                seq: self.tree.size() - 1,
                current_hash: last,
            };
            self.shared.publish(head, &self.tree);
            if until.is_none() && page.len() < want {
                return Ok(());
            }
        }
    }
}

/// Whether the drafts handed back (by place, strictly increasing, each inside the batch) and
/// the records committed account for every one of the batch's `replies` exactly once.
fn fills_the_batch(spent_before: &[(usize, RecordDraft)], records: usize, replies: usize) -> bool {
    let places_in_order = spent_before
        .iter()
        .map(|(at, _)| *at)
        .try_fold(None, |previous: Option<usize>, at| {
            (at < replies && previous.is_none_or(|p| p < at)).then_some(Some(at))
        })
        .is_some();
    places_in_order && spent_before.len() + records == replies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed_back(places: &[usize]) -> Vec<(usize, RecordDraft)> {
        places
            .iter()
            .map(|at| (*at, RecordDraft::default()))
            .collect()
    }

    #[test]
    fn only_an_answer_that_accounts_for_every_caller_once_is_delivered() {
        assert!(fills_the_batch(&handed_back(&[]), 3, 3));
        assert!(fills_the_batch(&handed_back(&[0, 2]), 1, 3));
        // Too few or too many records for the places left.
        assert!(!fills_the_batch(&handed_back(&[1]), 1, 3));
        assert!(!fills_the_batch(&handed_back(&[1]), 3, 3));
        // Places out of order, repeated, or past the batch.
        assert!(!fills_the_batch(&handed_back(&[2, 0]), 1, 3));
        assert!(!fills_the_batch(&handed_back(&[1, 1]), 1, 3));
        assert!(!fills_the_batch(&handed_back(&[3]), 2, 3));
    }
}
