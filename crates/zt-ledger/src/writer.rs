//! The writer of the single-writer pipeline: it takes everything the sealer ([`crate::sealer`])
//! sealed since its last commit, stores it durably (one transaction, one `fsync`), extends the
//! Merkle tree, publishes the new head, and only then answers the batch's callers.
//!
//! A failed store is final: the sealer has already chained later records onto the batch, and
//! the store may or may not hold it, so the ledger refuses everything until a restart re-reads
//! the head from the store and verifies the tail ([`crate::startup`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        // How long the store's upkeep after the last commit took, reported with the next batch.
        let mut upkeep = Duration::ZERO;
        while let Some(mut batch) = from_sealer.take() {
            if self.shared.failed.load(Ordering::Acquire) {
                refuse_all(batch.replies, "an earlier commit failed");
                continue;
            }
            let count = batch.records.len();
            let storing = Instant::now();
            batch.stages.handoff = storing.saturating_duration_since(batch.sealed);
            batch.stages.upkeep = std::mem::take(&mut upkeep);
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
                    let started = Instant::now();
                    if self.store.between_commits() {
                        upkeep = started.elapsed();
                    }
                }
                Err(e) => refuse_all(batch.replies, &e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use zt_contract::{Digest32, Jwk};

    use crate::committer::{CommitStats, LedgerConfig};
    use crate::store::{AuditStore, Head, SealedRecord, StoreError};
    use crate::{Ledger, LocalKeySigner, RecordDraft, SqliteStore};

    /// SQLite whose upkeep, once armed, takes `UPKEEP` and reports that it ran.
    struct SlowUpkeep {
        store: SqliteStore,
        armed: bool,
    }

    const UPKEEP: Duration = Duration::from_millis(30);

    impl AuditStore for SlowUpkeep {
        fn head(&mut self) -> Result<Option<Head>, StoreError> {
            self.store.head()
        }
        fn append(&mut self, records: &[SealedRecord]) -> Result<(), StoreError> {
            self.store.append(records)
        }
        fn read(&mut self, from: u64, limit: usize) -> Result<Vec<String>, StoreError> {
            self.store.read(from, limit)
        }
        fn hashes(&mut self, from: u64, limit: usize) -> Result<Vec<Digest32>, StoreError> {
            self.store.hashes(from, limit)
        }
        fn between_commits(&mut self) -> bool {
            if !std::mem::take(&mut self.armed) {
                return false;
            }
            std::thread::sleep(UPKEEP);
            true
        }
        fn publish_key(&mut self, jwk: &Jwk) -> Result<(), StoreError> {
            self.store.publish_key(jwk)
        }
        fn keys(&mut self) -> Result<Vec<Jwk>, StoreError> {
            self.store.keys()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writers_upkeep_is_reported_with_the_batch_after_it_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = SqliteStore::path_in(dir.path());
        let store = SlowUpkeep {
            store: SqliteStore::open(&path).unwrap(),
            armed: true,
        };
        let readers = path.clone();
        let (stats, observed) = mpsc::channel::<CommitStats>();
        let (ledger, worker) = Ledger::start(
            Box::new(store),
            Box::new(move || {
                Ok(Box::new(SqliteStore::open_read_only(&readers)?) as Box<dyn AuditStore>)
            }),
            std::sync::Arc::new(LocalKeySigner::load_or_create(dir.path()).unwrap()),
            LedgerConfig {
                queue_capacity: 16,
                request_id_window: std::time::Duration::from_secs(300),
            },
            Some(Box::new(move |s| {
                let _ = stats.send(s);
            })),
        )
        .unwrap();
        for _ in 0..3 {
            ledger.append(RecordDraft::default()).await.unwrap();
        }
        drop(ledger);
        worker.join();
        let upkeep: Vec<Duration> = observed
            .try_iter()
            .map(|s| s.stages.unwrap().upkeep)
            .collect();
        assert_eq!(upkeep.len(), 3, "one batch per awaited append");
        assert_eq!(
            upkeep[0],
            Duration::ZERO,
            "nothing ran before the first batch"
        );
        assert!(
            upkeep[1] >= UPKEEP,
            "the upkeep after the first batch: {upkeep:?}"
        );
        assert_eq!(
            upkeep[2],
            Duration::ZERO,
            "the store reported no more upkeep"
        );
    }
}
