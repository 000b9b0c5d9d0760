//! The audit log's handle, [`Ledger`], and the committer behind it.
//!
//! Group commit in a two-stage pipeline. Requests queue up (`queue.rs`); the sealer
//! thread (`sealer.rs`) takes everything queued as one batch, sequences, hashes and signs
//! it, and hands it (`handoff.rs`) to the writer thread (`writer.rs`), which stores
//! it durably and only then answers its callers. Durability costs each request one `fsync` of
//! latency, but the log pays one `fsync` per batch, not per record, and the sealer signs the
//! next batch while the writer waits on the disk.
//!
//! Sequencing happens on the sealer alone, in order, which is what makes the chain impossible
//! to fork: there is exactly one place where `previous_hash` is chosen.
//!
//! That pipeline is for a store with one writer. A store that several servers write at once
//! (PostgreSQL replicas) is committed by [`crate::replicated`] instead, which seals each batch
//! inside the store's transaction onto the head read there.
//!
//! Before either starts, the tail of the stored chain is re-verified and the Merkle tree
//! rebuilt (`startup.rs`). The writer keeps the log's Merkle tree (RFC 9162, leaf data =
//! each record's 32-byte `current_hash`) as a [`crate::tree::LogTree`], extended with each
//! batch after its commit and before its callers are answered, so the tree holds exactly the
//! committed records and a caller who has its answer can already get a proof for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zt_contract::{CompactRange, Jwks};

use crate::draft::RecordDraft;
use crate::handoff::Handoff;
use crate::queue::{bounded, Submitter};
use crate::reader_pool::{ReaderPool, MAX_READERS};
use crate::replicated::SharedCommitter;
use crate::sealer::Sealer;
use crate::signer::Signer;
use crate::startup::{check_tail, rebuild_tree};
use crate::store::{AuditStore, Head, SealedRecord, StoreError};
use crate::tree::{LogTree, TreeSnapshot};
use crate::writer::Writer;

/// Why a record was not committed. Every variant means: the decision must not be given.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LedgerError {
    /// The commit queue is full: shed load now rather than queue without bound.
    #[error("audit log is overloaded")]
    Overloaded,
    /// The store failed; nothing more is committed until restart.
    #[error("audit log is unavailable: {0}")]
    Unavailable(String),
    /// The ledger is shutting down.
    #[error("audit log is closed")]
    Closed,
    /// Not committed: another server sharing the store committed a record spending the same
    /// request id for the same actor within the window (see [`crate::AppendedAtHead`]). The
    /// draft comes back, for the caller to record the replay instead.
    #[error("the request id was already used on another server within the replay window")]
    RequestIdSpent(Box<RecordDraft>),
}

/// What one batch commit did, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    /// Records in the batch.
    pub records: usize,
    /// Time to sequence, sign and durably store the batch.
    pub duration: Duration,
    /// The head after the batch.
    pub head_seq: Option<u64>,
    /// Where the time went, in the single-writer pipeline (none for a shared store).
    pub stages: Option<Stages>,
}

/// The stages of one batch in the single-writer pipeline, to find where latency comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stages {
    /// How long the batch's oldest record waited in the queue before the sealer took it.
    pub queue_wait: Duration,
    /// Sequencing, hashing and signing the batch.
    pub seal: Duration,
    /// From sealed to the writer taking it (the writer was storing the previous batch).
    pub handoff: Duration,
    /// The durable write (`fsync` included).
    pub store: Duration,
    /// The store's upkeep the writer ran after answering the previous batch (SQLite: its own
    /// WAL copy, `sqlite/wal.rs`), zero when there was none. Whatever part of it this batch
    /// waited through is already counted in its `handoff`.
    pub upkeep: Duration,
}

/// Called after every batch commit.
pub type CommitObserver = Box<dyn Fn(CommitStats) + Send>;

/// Opens a store for reading; used to serve reads beside the writer.
pub type ReaderFactory = Box<dyn Fn() -> Result<Box<dyn AuditStore>, StoreError> + Send + Sync>;

/// What has been committed: the newest record and the Merkle tree of all records, always
/// updated together (`tree.size() == head.seq + 1`).
pub(crate) struct Committed {
    pub(crate) head: Option<Head>,
    pub(crate) tree: TreeSnapshot,
}

/// What the committer threads and every [`Ledger`] handle share.
pub(crate) struct Shared {
    committed: Mutex<Committed>,
    readers: ReaderPool,
    /// Set once a commit failed: everything is refused until restart.
    pub(crate) failed: AtomicBool,
}

/// A cheap, clonable handle to the audit log.
#[derive(Clone)]
pub struct Ledger {
    queue: Submitter,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

/// A record [`Ledger::queue`]d: it is committed (or refused) whether or not this is awaited.
#[derive(Debug)]
pub struct Queued(tokio::sync::oneshot::Receiver<Result<SealedRecord, LedgerError>>);

impl Queued {
    /// Resolves once the record is durably committed, or refused.
    pub async fn committed(self) -> Result<SealedRecord, LedgerError> {
        self.0.await.map_err(|_| LedgerError::Closed)?
    }
}

/// The committer threads; join them after every [`Ledger`] handle is dropped.
#[derive(Debug)]
pub struct LedgerWorker {
    threads: Vec<JoinHandle<()>>,
}

impl LedgerWorker {
    /// Waits until every queued record is committed and the threads have exited.
    pub fn join(self) {
        // The first thread exits when the queue closes; its exit stops the next one.
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("audit committer thread panicked");
            }
        }
    }
}

/// Settings of the committer.
#[derive(Debug)]
pub struct LedgerConfig {
    /// Requests that may wait for a commit before new ones are refused as overload.
    pub queue_capacity: usize,
    /// How long a request id stays spent for its actor across the servers sharing a store
    /// (the server's replay window); a store with one writer leaves it to the server.
    pub request_id_window: Duration,
}

impl Ledger {
    /// Checks the tail of the stored chain, publishes the signer's key and starts the committer.
    pub fn start(
        mut store: Box<dyn AuditStore>,
        open_reader: ReaderFactory,
        signer: Arc<dyn Signer>,
        config: LedgerConfig,
        observer: Option<CommitObserver>,
    ) -> Result<(Ledger, LedgerWorker), StoreError> {
        for jwk in signer.published_keys() {
            store.publish_key(&jwk)?;
        }
        let keys = store.keys()?;
        let head = store.head()?;
        check_tail(store.as_mut(), head, &keys)?;
        let tree = rebuild_tree(store.as_mut(), head)?;
        let shared = Arc::new(Shared {
            committed: Mutex::new(Committed {
                head,
                tree: tree.snapshot(),
            }),
            readers: ReaderPool::new(open_reader, MAX_READERS),
            failed: AtomicBool::new(false),
        });
        let (queue, batches) = bounded(config.queue_capacity);
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| StoreError::Backend(format!("cannot start audit threads: {e}")))
        };
        let threads = if store.is_shared() {
            let committer = SharedCommitter {
                queue: batches,
                signer,
                unpublished: Vec::new(),
                request_id_window: config.request_id_window,
                store,
                tree,
                shared: shared.clone(),
                observer,
            };
            vec![spawn("zt-audit-commit", Box::new(move || committer.run()))?]
        } else {
            // Records sealed while the writer stores a batch wait there for the next one.
            let handoff = Arc::new(Handoff::default());
            let (to_writer, from_sealer) = (handoff.clone(), handoff);
            let sealer = Sealer {
                queue: batches,
                signer,
                head,
                shared: shared.clone(),
            };
            let writer = Writer {
                store,
                tree,
                shared: shared.clone(),
                observer,
            };
            let writer = spawn("zt-audit-write", Box::new(move || writer.run(from_sealer)))?;
            let sealer = spawn("zt-audit-seal", Box::new(move || sealer.run(to_writer)))?;
            vec![sealer, writer]
        };
        Ok((Ledger { queue, shared }, LedgerWorker { threads }))
    }

    /// Sequences, signs and durably commits a record; resolves only once it is on disk.
    pub async fn append(&self, draft: RecordDraft) -> Result<SealedRecord, LedgerError> {
        self.queue(draft)?.committed().await
    }

    /// Queues a record without waiting: records queued one after the other are sequenced in
    /// that order. A caller that must order its record against another's (a decision against
    /// the revocation of its credential) queues it under its own lock, then awaits
    /// [`Queued::committed`] outside it.
    pub fn queue(&self, draft: RecordDraft) -> Result<Queued, LedgerError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(LedgerError::Unavailable("an earlier commit failed".into()));
        }
        self.queue.submit(draft).map(Queued)
    }

    /// The newest committed record.
    pub fn head(&self) -> Option<Head> {
        self.shared.committed().head
    }

    /// The Merkle tree of every committed record, as a compact range: its
    /// [`CompactRange::size`] is the number of records and its [`CompactRange::root`] the
    /// root a checkpoint signs. A copy of at most 64 hashes; the root is computed by the
    /// caller.
    pub fn tree(&self) -> CompactRange {
        self.shared.committed().tree.compact()
    }

    /// The committed tree, for proofs (see [`crate::tree`]).
    pub(crate) fn tree_snapshot(&self) -> TreeSnapshot {
        self.shared.committed().tree.clone()
    }

    /// The number of leaves of [`Ledger::tree`]: the records committed.
    pub fn tree_size(&self) -> u64 {
        self.shared.committed().tree.size()
    }

    /// Every public key this log's records may be signed with, as published in the store:
    /// read afresh each time, since other servers sharing the store publish theirs when they
    /// start. Blocking: call from a blocking context.
    pub fn keys(&self) -> Result<Jwks, StoreError> {
        self.with_reader(|reader| reader.keys().map(|keys| Jwks { keys }))
    }

    /// True once a commit has failed: the ledger refuses everything until restart.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Stored lines from `from`, at most `limit`. Blocking: call from a blocking context.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.with_reader(|reader| reader.read(from, limit))
    }

    /// Runs `read` on a pooled reader (see [`crate::reader_pool`]): at most
    /// [`MAX_READERS`] are open, and a read past them waits for one.
    pub(crate) fn with_reader<T>(
        &self,
        read: impl FnOnce(&mut dyn AuditStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.shared.readers.with_reader(read)
    }
}

impl Shared {
    /// Makes `head` and `tree` (which ends with it) what readers see as committed.
    pub(crate) fn publish(&self, head: Head, tree: &LogTree) {
        let snapshot = tree.snapshot();
        let mut committed = self.committed();
        committed.head = Some(head);
        committed.tree = snapshot;
    }

    /// Reports a batch to the observer, if there is one.
    pub(crate) fn observe(
        &self,
        observer: Option<&CommitObserver>,
        records: usize,
        started: Instant,
        stages: Option<Stages>,
    ) {
        if let Some(observe) = observer {
            observe(CommitStats {
                records,
                duration: started.elapsed(),
                head_seq: self.committed().head.map(|h| h.seq),
                stages,
            });
        }
    }

    pub(crate) fn committed(&self) -> std::sync::MutexGuard<'_, Committed> {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
