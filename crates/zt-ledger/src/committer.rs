//! Group commit in a two-stage pipeline. Requests queue up; the sealer thread takes everything
//! queued as one batch, sequences, hashes and signs it, and hands it to the writer thread, which
//! stores it durably and only then answers its callers. Durability costs each request one
//! `fsync` of latency, but the log pays one `fsync` per batch, not per record, and the sealer
//! signs the next batch while the writer waits on the disk.
//!
//! Sequencing happens on the sealer alone, in order, which is what makes the chain impossible
//! to fork: there is exactly one place where `previous_hash` is chosen.
//!
//! That pipeline is for a store with one writer. A store that several servers write at once
//! (PostgreSQL replicas) is committed by [`crate::replicated`] instead, which seals each batch
//! inside the store's transaction onto the head read there.
//!
//! The writer also keeps the log's Merkle tree (RFC 9162, leaf data = each record's 32-byte
//! `current_hash`) as a [`crate::tree::LogTree`]: rebuilt from the stored hashes at start, then
//! extended with each batch after its commit and before its callers are answered, so the tree
//! holds exactly the committed records and a caller who has its answer can already get a
//! proof for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::mpsc;

use tokio::sync::oneshot;
use zt_contract::merkle::audit_leaf_hash;
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, CompactRange, Digest32, Jwk, Jwks, PublicKeySet, GENESIS_HASH};

use crate::clock::wire_now;
use crate::draft::RecordDraft;
use crate::handoff::{Handoff, SealedBatch, SealerGuard, WriterGuard};
use crate::signer::Signer;
use crate::store::{AuditStore, Head, SealedRecord, StoreError};
use crate::tree::{LogTree, TreeSnapshot};

/// The most records one batch commits.
pub(crate) const MAX_BATCH: usize = 2048;
/// How many records at the tail of the log are re-verified at start.
const TAIL_CHECK: u64 = 1000;
/// Hashes read per store call when rebuilding the tree or catching up with other writers.
pub(crate) const HASH_PAGE: usize = 65_536;

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
}

/// Called after every batch commit.
pub type CommitObserver = Box<dyn Fn(CommitStats) + Send>;

/// Where a caller hears whether its record was committed.
pub(crate) type Reply = oneshot::Sender<Result<SealedRecord, LedgerError>>;

/// A record waiting for its batch.
pub(crate) struct Pending {
    pub(crate) draft: RecordDraft,
    pub(crate) reply: Reply,
    /// When it was queued.
    pub(crate) enqueued: Instant,
}

/// Opens a store for reading; used to serve reads beside the writer.
pub type ReaderFactory = Box<dyn Fn() -> Result<Box<dyn AuditStore>, StoreError> + Send + Sync>;

/// What has been committed: the newest record and the Merkle tree of all records, always
/// updated together (`tree.size() == head.seq + 1`).
pub(crate) struct Committed {
    pub(crate) head: Option<Head>,
    pub(crate) tree: TreeSnapshot,
}

pub(crate) struct Shared {
    committed: Mutex<Committed>,
    readers: Mutex<Vec<Box<dyn AuditStore>>>,
    open_reader: ReaderFactory,
    failed: AtomicBool,
}

/// A cheap, clonable handle to the audit log.
#[derive(Clone)]
pub struct Ledger {
    queue: mpsc::SyncSender<Pending>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
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
            readers: Mutex::new(Vec::new()),
            open_reader,
            failed: AtomicBool::new(false),
        });
        let (queue, rx) = mpsc::sync_channel(config.queue_capacity.max(1));
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| StoreError::Backend(format!("cannot start audit threads: {e}")))
        };
        let threads = if store.is_shared() {
            let committer = crate::replicated::SharedCommitter {
                rx,
                signer,
                unpublished: Vec::new(),
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
                rx,
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
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(LedgerError::Unavailable("an earlier commit failed".into()));
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Pending {
                draft,
                reply,
                enqueued: Instant::now(),
            })
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => LedgerError::Overloaded,
                mpsc::TrySendError::Disconnected(_) => LedgerError::Closed,
            })?;
        answer.await.map_err(|_| LedgerError::Closed)?
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

    /// Runs `read` on a pooled reader (opened if the pool is empty); a reader that failed is
    /// dropped rather than returned to the pool.
    pub(crate) fn with_reader<T>(
        &self,
        read: impl FnOnce(&mut dyn AuditStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .shared
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut reader = match pooled {
            Some(reader) => reader,
            None => (self.shared.open_reader)()?,
        };
        let out = read(reader.as_mut())?;
        self.shared
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reader);
        Ok(out)
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

/// Calls `each` with the stored hash of every record `0..size`, in order. Past one page, the
/// store is read on a second thread while `each` (hashing, for its callers) runs on this one,
/// which takes a third off a large log's scan.
fn for_each_hash(
    store: &mut dyn AuditStore,
    size: u64,
    mut each: impl FnMut(&Digest32),
) -> Result<(), StoreError> {
    let mut consume = |page: Vec<Digest32>| {
        page.iter().for_each(&mut each);
        true
    };
    if size <= HASH_PAGE as u64 {
        return read_pages(store, size, &mut consume);
    }
    std::thread::scope(|scope| {
        // Two pages in flight at most: about 4 MiB.
        let (pages, arriving) = std::sync::mpsc::sync_channel::<Vec<Digest32>>(2);
        let reader = std::thread::Builder::new()
            .name("zt-audit-hashes".into())
            .spawn_scoped(scope, move || {
                read_pages(store, size, &mut |page| pages.send(page).is_ok())
            })
            .map_err(|e| StoreError::Backend(format!("cannot start a hash reader: {e}")))?;
        for page in arriving {
            consume(page);
        }
        reader
            .join()
            .unwrap_or_else(|_| Err(StoreError::Backend("the hash reader panicked".into())))
    })
}

/// Reads the hashes of records `0..size` a page at a time and hands each page to `deliver`,
/// until it returns false. Fewer stored records than `size` is [`StoreError::Corrupt`].
fn read_pages(
    store: &mut dyn AuditStore,
    size: u64,
    deliver: &mut dyn FnMut(Vec<Digest32>) -> bool,
) -> Result<(), StoreError> {
    let mut next = 0u64;
    while next < size {
        let want = usize::try_from(size - next)
            .unwrap_or(usize::MAX)
            .min(HASH_PAGE);
        let mut page = store.hashes(next, want)?;
        if page.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "the log holds {next} records, not {size}"
            )));
        }
        page.truncate(want);
        next += page.len() as u64;
        if !deliver(page) {
            break;
        }
    }
    Ok(())
}

/// Rebuilds the Merkle tree of the stored log from its hashes (not its lines): one ordered
/// scan of the hash column, about two SHA-256 per record.
pub(crate) fn rebuild_tree(
    store: &mut dyn AuditStore,
    head: Option<Head>,
) -> Result<LogTree, StoreError> {
    let started = Instant::now();
    let size = head.map_or(0, |h| h.seq + 1);
    let mut tree = LogTree::new();
    let mut last = None;
    for_each_hash(store, size, |hash| {
        tree.append(audit_leaf_hash(hash));
        last = Some(*hash);
    })?;
    if last != head.map(|h| h.current_hash) {
        return Err(StoreError::Corrupt(
            "the stored hashes do not end at the head record".into(),
        ));
    }
    tracing::info!(
        records = size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "audit merkle tree rebuilt"
    );
    Ok(tree)
}

/// Re-verifies the last records at start: a store that lost or altered committed records
/// must not be extended, since every new record would vouch for it.
fn check_tail(
    store: &mut dyn AuditStore,
    head: Option<Head>,
    keys: &[Jwk],
) -> Result<(), StoreError> {
    let Some(head) = head else {
        return Ok(());
    };
    let from = head.seq.saturating_sub(TAIL_CHECK);
    let lines = store.read(from, usize::try_from(TAIL_CHECK + 1).unwrap_or(usize::MAX))?;
    let key_set = PublicKeySet::from_jwks(&Jwks {
        keys: keys.to_vec(),
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let first = lines
        .first()
        .ok_or_else(|| StoreError::Corrupt("head record unreadable".into()))?;
    let first: serde_json::Value =
        serde_json::from_str(first).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let previous = first
        .get("previous_hash")
        .and_then(|v| v.as_str())
        .unwrap_or(GENESIS_HASH);
    // The tree is built from the hash column, so the column must say what the lines say.
    let column = store.hashes(from, lines.len())?;
    let mut verifier = ChainVerifier::resume(SignaturePolicy::Require(&key_set), from, previous);
    for (i, line) in lines.iter().enumerate() {
        verifier
            .check_line(line)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if column.get(i).map(Digest32::to_hex).as_deref() != Some(verifier.head_hash()) {
            return Err(StoreError::Corrupt(format!(
                "the stored hash of record {} differs from its line",
                from + i as u64
            )));
        }
    }
    if verifier.head_hash() != head.current_hash.to_hex()
        || verifier.checked() != head.seq - from + 1
    {
        return Err(StoreError::Corrupt(
            "the head record does not close the chain".into(),
        ));
    }
    Ok(())
}

/// Sequences, hashes and signs. Runs ahead of the writer, so signing the next batch overlaps
/// the `fsync` of the current one.
struct Sealer {
    rx: mpsc::Receiver<Pending>,
    signer: Arc<dyn Signer>,
    head: Option<Head>,
    shared: Arc<Shared>,
}

/// Stores sealed batches durably, extends the Merkle tree, then answers their callers.
struct Writer {
    store: Box<dyn AuditStore>,
    /// The tree of every committed record; only the writer changes it.
    tree: LogTree,
    shared: Arc<Shared>,
    observer: Option<CommitObserver>,
}

pub(crate) fn refuse_all(replies: impl IntoIterator<Item = Reply>, why: &str) {
    for reply in replies {
        let _ = reply.send(Err(LedgerError::Unavailable(why.to_string())));
    }
}

impl Sealer {
    fn run(mut self, to_writer: Arc<Handoff>) {
        let _close = SealerGuard(&to_writer);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = self.rx.recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            if self.shared.failed.load(Ordering::Acquire) {
                refuse_all(batch.drain(..).map(|p| p.reply), "an earlier commit failed");
                continue;
            }
            let sealed = self.seal(&mut batch);
            if sealed.records.is_empty() {
                continue;
            }
            if let Err(lost) = to_writer.put(sealed) {
                refuse_all(lost, "audit writer stopped");
            }
        }
    }

    fn seal(&mut self, batch: &mut Vec<Pending>) -> SealedBatch {
        let started = Instant::now();
        let queue_wait = batch.first().map_or(Duration::ZERO, |p| {
            started.saturating_duration_since(p.enqueued)
        });
        let (drafts, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|p| (p.draft, p.reply)).unzip();
        let sealed = self.signer.rollover().and_then(|keys| {
            seal_batch(&mut self.head, drafts, self.signer.as_ref()).map(|r| (keys, r))
        });
        let (keys, records, replies) = match sealed {
            Ok((keys, records)) => (keys, records, replies),
            Err(e) => {
                // Nothing was chained: the head stays where it was and the next batch tries
                // the signer again.
                tracing::warn!(error = %e, records = replies.len(), "audit batch not signed; its decisions are refused");
                refuse_all(replies, &e.to_string());
                (Vec::new(), Vec::new(), Vec::new())
            }
        };
        SealedBatch {
            keys,
            records,
            replies,
            started,
            sealed: Instant::now(),
            stages: Stages {
                queue_wait,
                seal: started.elapsed(),
                ..Stages::default()
            },
        }
    }
}

/// Seals `drafts` in order as the records after `head` (the genesis record on an empty log):
/// every body is hashed, the digests are signed as one batch, and only if every signature
/// came back is `head` moved to the last record. On error `head` is unchanged.
pub(crate) fn seal_batch(
    head: &mut Option<Head>,
    drafts: Vec<RecordDraft>,
    signer: &dyn Signer,
) -> Result<Vec<SealedRecord>, crate::SignError> {
    let mut next = *head;
    let mut hashed = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let (seq, previous) = match next {
            Some(h) => (h.seq + 1, h.current_hash.to_hex()),
            None => (0, GENESIS_HASH.to_string()),
        };
        let body = draft.into_body(seq, wire_now(), previous);
        let (json, current_hash) = SealedRecord::hash_body(&body)?;
        next = Some(Head { seq, current_hash });
        hashed.push((body, json, current_hash));
    }
    let digests: Vec<Digest32> = hashed.iter().map(|(_, _, hash)| *hash).collect();
    let signatures = signer.sign_batch(&digests)?;
    if signatures.len() != hashed.len() {
        return Err(crate::SignError::Sign);
    }
    let records = hashed
        .into_iter()
        .zip(signatures)
        .map(|((body, json, hash), signature)| SealedRecord::assemble(body, &json, hash, signature))
        .collect::<Result<Vec<_>, _>>()?;
    *head = next;
    Ok(records)
}

impl Writer {
    fn run(mut self, from_sealer: Arc<Handoff>) {
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
                }
                Err(e) => refuse_all(batch.replies, &e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of `len` synthetic hashes (hash `i` is SHA-256 of `i`), failing on demand.
    struct Hashes {
        len: u64,
        fail_at: Option<u64>,
    }

    fn hash(i: u64) -> Digest32 {
        Digest32::sha256(&i.to_be_bytes())
    }

    impl AuditStore for Hashes {
        fn head(&mut self) -> Result<Option<Head>, StoreError> {
            Ok(self.len.checked_sub(1).map(|seq| Head {
                seq,
                current_hash: hash(seq),
            }))
        }
        fn append(&mut self, _: &[SealedRecord]) -> Result<(), StoreError> {
            Err(StoreError::Backend("read only".into()))
        }
        fn read(&mut self, _: u64, _: usize) -> Result<Vec<String>, StoreError> {
            Err(StoreError::Backend("no lines".into()))
        }
        fn hashes(&mut self, from: u64, limit: usize) -> Result<Vec<Digest32>, StoreError> {
            let end = self.len.min(from.saturating_add(limit as u64));
            if self.fail_at.is_some_and(|f| (from..end).contains(&f)) {
                return Err(StoreError::Backend("disk on fire".into()));
            }
            Ok((from..end).map(hash).collect())
        }
        fn publish_key(&mut self, _: &Jwk) -> Result<(), StoreError> {
            Ok(())
        }
        fn keys(&mut self) -> Result<Vec<Jwk>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn collect(store: &mut Hashes, size: u64) -> Result<Vec<Digest32>, StoreError> {
        let mut seen = Vec::new();
        for_each_hash(store, size, |h| seen.push(*h))?;
        Ok(seen)
    }

    #[test]
    fn hashes_arrive_in_order_across_pages_and_threads() {
        // Sizes around the page size take both paths: inline and with a reader thread.
        let page = HASH_PAGE as u64;
        for size in [0, 1, page - 1, page, page + 1, 3 * page + 7] {
            let mut store = Hashes {
                len: 3 * page + 7,
                fail_at: None,
            };
            let seen = collect(&mut store, size).unwrap();
            assert_eq!(seen.len() as u64, size);
            assert!(seen.iter().zip(0..).all(|(h, i)| *h == hash(i)), "{size}");
        }
        let mut store = Hashes {
            len: 2 * page + 3,
            fail_at: None,
        };
        let tree = rebuild_tree(
            &mut store,
            Some(Head {
                seq: 2 * page + 2,
                current_hash: hash(2 * page + 2),
            }),
        )
        .unwrap();
        let leaves: Vec<_> = (0..2 * page + 3)
            .map(|i| audit_leaf_hash(&hash(i)))
            .collect();
        assert_eq!(tree.root(), zt_contract::merkle::root(&leaves));
    }

    #[test]
    fn a_short_or_failing_store_is_an_error_on_either_path() {
        let page = HASH_PAGE as u64;
        for (len, size) in [(10, 11), (2 * page, 2 * page + 1)] {
            let mut store = Hashes { len, fail_at: None };
            let err = collect(&mut store, size).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        }
        for (len, fail_at) in [(10, 3), (3 * page, 2 * page + 5)] {
            let mut store = Hashes {
                len,
                fail_at: Some(fail_at),
            };
            let err = collect(&mut store, len).unwrap_err();
            assert!(err.to_string().contains("disk on fire"), "{err}");
        }
        // The head must close the stored hashes.
        let mut store = Hashes {
            len: 5,
            fail_at: None,
        };
        let wrong = Head {
            seq: 4,
            current_hash: hash(99),
        };
        assert!(matches!(
            rebuild_tree(&mut store, Some(wrong)),
            Err(StoreError::Corrupt(_))
        ));
    }
}
