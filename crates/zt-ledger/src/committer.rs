//! Group commit in a two-stage pipeline. Requests queue up; the sealer thread takes everything
//! queued as one batch, sequences, hashes and signs it, and hands it to the writer thread, which
//! stores it durably and only then answers its callers. Durability costs each request one
//! `fsync` of latency, but the log pays one `fsync` per batch, not per record, and the sealer
//! signs the next batch while the writer waits on the disk.
//!
//! Sequencing happens on the sealer alone, in order, which is what makes the chain impossible
//! to fork: there is exactly one place where `previous_hash` is chosen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, Jwk, Jwks, PublicKeySet, GENESIS_HASH};

use crate::clock::wire_now;
use crate::draft::RecordDraft;
use crate::signer::Signer;
use crate::store::{AuditStore, Head, SealedRecord, StoreError};

/// The most records one batch commits.
const MAX_BATCH: usize = 2048;
/// How many records at the tail of the log are re-verified at start.
const TAIL_CHECK: u64 = 1000;

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
}

/// Called after every batch commit.
pub type CommitObserver = Box<dyn Fn(CommitStats) + Send>;

struct Pending {
    draft: RecordDraft,
    reply: oneshot::Sender<Result<SealedRecord, LedgerError>>,
}

/// Opens a store for reading; used to serve reads beside the writer.
pub type ReaderFactory = Box<dyn Fn() -> Result<Box<dyn AuditStore>, StoreError> + Send + Sync>;

struct Shared {
    head: Mutex<Option<Head>>,
    keys: Vec<Jwk>,
    readers: Mutex<Vec<Box<dyn AuditStore>>>,
    open_reader: ReaderFactory,
    failed: AtomicBool,
}

/// A cheap, clonable handle to the audit log.
#[derive(Clone)]
pub struct Ledger {
    queue: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
}

/// The committer threads; join them after every [`Ledger`] handle is dropped.
pub struct LedgerWorker {
    sealer: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl LedgerWorker {
    /// Waits until every queued record is committed and the threads have exited.
    pub fn join(self) {
        // The sealer exits when the queue closes; its exit closes the writer's channel.
        if self.sealer.join().is_err() || self.writer.join().is_err() {
            tracing::error!("audit committer thread panicked");
        }
    }
}

/// Settings of the committer.
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
        store.publish_key(signer.public_jwk())?;
        let keys = store.keys()?;
        let head = store.head()?;
        check_tail(store.as_mut(), head, &keys)?;
        let shared = Arc::new(Shared {
            head: Mutex::new(head),
            keys,
            readers: Mutex::new(Vec::new()),
            open_reader,
            failed: AtomicBool::new(false),
        });
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        // One sealed batch may wait while the writer syncs the previous one.
        let (to_writer, from_sealer) = std::sync::mpsc::sync_channel(1);
        let sealer = Sealer {
            rx,
            signer,
            head,
            shared: shared.clone(),
        };
        let writer = Writer {
            store,
            shared: shared.clone(),
            observer,
        };
        let spawn_error =
            |e: std::io::Error| StoreError::Backend(format!("cannot start audit threads: {e}"));
        let writer = std::thread::Builder::new()
            .name("zt-audit-write".into())
            .spawn(move || writer.run(from_sealer))
            .map_err(spawn_error)?;
        let sealer = std::thread::Builder::new()
            .name("zt-audit-seal".into())
            .spawn(move || sealer.run(to_writer))
            .map_err(spawn_error)?;
        Ok((Ledger { queue, shared }, LedgerWorker { sealer, writer }))
    }

    /// Sequences, signs and durably commits a record; resolves only once it is on disk.
    pub async fn append(&self, draft: RecordDraft) -> Result<SealedRecord, LedgerError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(LedgerError::Unavailable("an earlier commit failed".into()));
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Pending { draft, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LedgerError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => LedgerError::Closed,
            })?;
        answer.await.map_err(|_| LedgerError::Closed)?
    }

    /// The newest committed record.
    pub fn head(&self) -> Option<Head> {
        *self
            .shared
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every public key this log's records may be signed with.
    pub fn keys(&self) -> Jwks {
        Jwks {
            keys: self.shared.keys.clone(),
        }
    }

    /// True once a commit has failed: the ledger refuses everything until restart.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Stored lines from `from`, at most `limit`. Blocking: call from a blocking context.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<String>, StoreError> {
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
        let lines = reader.read(from, limit)?;
        self.shared
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reader);
        Ok(lines)
    }
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
    let mut verifier = ChainVerifier::resume(SignaturePolicy::Require(&key_set), from, previous);
    for line in &lines {
        verifier
            .check_line(line)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
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

/// A sealed batch on its way to the writer, with the callers waiting for it.
struct SealedBatch {
    records: Vec<SealedRecord>,
    replies: Vec<oneshot::Sender<Result<SealedRecord, LedgerError>>>,
    started: Instant,
}

/// Sequences, hashes and signs. Runs one batch ahead of the writer, so signing batch N+1
/// overlaps the `fsync` of batch N.
struct Sealer {
    rx: mpsc::Receiver<Pending>,
    signer: Arc<dyn Signer>,
    head: Option<Head>,
    shared: Arc<Shared>,
}

/// Stores sealed batches durably, then answers their callers.
struct Writer {
    store: Box<dyn AuditStore>,
    shared: Arc<Shared>,
    observer: Option<CommitObserver>,
}

fn refuse_all(
    replies: impl IntoIterator<Item = oneshot::Sender<Result<SealedRecord, LedgerError>>>,
    why: &str,
) {
    for reply in replies {
        let _ = reply.send(Err(LedgerError::Unavailable(why.to_string())));
    }
}

impl Sealer {
    fn run(mut self, to_writer: std::sync::mpsc::SyncSender<SealedBatch>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.rx.blocking_recv() {
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
            if let Err(std::sync::mpsc::SendError(lost)) = to_writer.send(sealed) {
                refuse_all(lost.replies, "audit writer stopped");
            }
        }
    }

    fn seal(&mut self, batch: &mut Vec<Pending>) -> SealedBatch {
        let started = Instant::now();
        let mut next_seq = self.head.map_or(0, |h| h.seq + 1);
        let mut previous = self
            .head
            .map_or_else(|| GENESIS_HASH.to_string(), |h| h.current_hash.to_hex());
        let mut records = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for p in batch.drain(..) {
            let body = p.draft.into_body(next_seq, wire_now(), previous.clone());
            match SealedRecord::seal(body, self.signer.as_ref()) {
                Ok(record) => {
                    previous = record.current_hash.to_hex();
                    next_seq += 1;
                    self.head = Some(Head {
                        seq: record.body.seq,
                        current_hash: record.current_hash,
                    });
                    records.push(record);
                    replies.push(p.reply);
                }
                Err(e) => refuse_all([p.reply], &e.to_string()),
            }
        }
        SealedBatch {
            records,
            replies,
            started,
        }
    }
}

impl Writer {
    fn run(mut self, from_sealer: std::sync::mpsc::Receiver<SealedBatch>) {
        while let Ok(batch) = from_sealer.recv() {
            if self.shared.failed.load(Ordering::Acquire) {
                refuse_all(batch.replies, "an earlier commit failed");
                continue;
            }
            let count = batch.records.len();
            match self.store.append(&batch.records) {
                Ok(()) => {
                    let head = batch.records.last().map(|r| Head {
                        seq: r.body.seq,
                        current_hash: r.current_hash,
                    });
                    *self
                        .shared
                        .head
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = head;
                    for (reply, record) in batch.replies.into_iter().zip(batch.records) {
                        let _ = reply.send(Ok(record));
                    }
                }
                Err(e) => {
                    // The sealer has already chained later records onto this batch, and the
                    // store may or may not hold it: stop for good rather than risk a fork.
                    // A restart re-reads the head from the store and verifies the tail.
                    tracing::error!(error = %e, records = count, "audit commit failed; refusing every decision until restart");
                    self.shared.failed.store(true, Ordering::Release);
                    refuse_all(batch.replies, &e.to_string());
                }
            }
            if let Some(observe) = &self.observer {
                let head_seq = self
                    .shared
                    .head
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .map(|h| h.seq);
                observe(CommitStats {
                    records: count,
                    duration: batch.started.elapsed(),
                    head_seq,
                });
            }
        }
    }
}
