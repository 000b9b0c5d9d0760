//! Signature checks spread over cores. The reader checks every record in order (format,
//! sequence, link, hash, the signature's form) and hands the ECDSA verifications, most of a
//! record's cost, to worker threads in bounded batches; when every worker is busy and the
//! queue is full, the reader verifies the batch itself, so it never waits and never buffers
//! more than a few batches. The failure reported is the one of the lowest record, so the result
//! is the sequential verifier's whatever the threads' timing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use zt_contract::verify::PendingSignature;
use zt_contract::{PublicKeySet, VerifyError};

/// Signatures per batch: about 13 ms of work, so handing batches over costs nothing.
const BATCH: usize = 256;

/// The failure of the lowest record seen so far.
#[derive(Default)]
struct Earliest {
    /// Set once any failure is known (read on every record, without the lock).
    failed: AtomicBool,
    error: Mutex<Option<VerifyError>>,
}

impl Earliest {
    fn offer(&self, error: VerifyError) {
        let mut earliest = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if earliest.as_ref().is_none_or(|e| error.index < e.index) {
            *earliest = Some(error);
        }
        self.failed.store(true, Ordering::Release);
    }

    /// True when a known failure lies before `index`: checking from there on is wasted work.
    fn failed_before(&self, index: u64) -> bool {
        self.failed.load(Ordering::Acquire)
            && self
                .error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(|e| e.index < index)
    }
}

/// Verifies the signatures of a batch in order and stops at its first failure (its lowest).
fn check_batch(keys: &PublicKeySet, batch: &[PendingSignature], earliest: &Earliest) {
    if batch
        .first()
        .is_some_and(|first| earliest.failed_before(first.index()))
    {
        return;
    }
    if let Some(error) = batch.iter().find_map(|s| s.verify(keys).err()) {
        earliest.offer(error);
    }
}

/// Worker threads verifying batches of signatures, fed by the reader.
pub(super) struct SignaturePool {
    keys: Arc<PublicKeySet>,
    batch: Vec<PendingSignature>,
    queue: Option<SyncSender<Vec<PendingSignature>>>,
    workers: Vec<JoinHandle<()>>,
    earliest: Arc<Earliest>,
}

impl SignaturePool {
    /// A pool where at most `jobs` threads verify: `jobs - 1` workers and the reader itself.
    /// A worker that cannot be started leaves its share to the others.
    pub(super) fn new(keys: &PublicKeySet, jobs: usize) -> Self {
        let keys = Arc::new(keys.clone());
        let earliest = Arc::new(Earliest::default());
        let wanted = jobs.saturating_sub(1);
        // One batch waiting per worker, beside the one it verifies: bounded memory.
        let (queue, batches) = mpsc::sync_channel::<Vec<PendingSignature>>(wanted.max(1));
        let batches = Arc::new(Mutex::new(batches));
        let mut workers = Vec::with_capacity(wanted);
        for n in 0..wanted {
            let (keys, earliest, batches) = (keys.clone(), earliest.clone(), batches.clone());
            let started = std::thread::Builder::new()
                .name(format!("zt-verify-{n}"))
                .spawn(move || work(&keys, &batches, &earliest));
            match started {
                Ok(worker) => workers.push(worker),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a signature worker; verifying with fewer threads");
                    break;
                }
            }
        }
        Self {
            keys,
            batch: Vec::with_capacity(BATCH),
            queue: (!workers.is_empty()).then_some(queue),
            workers,
            earliest,
        }
    }

    /// Queues the signature of the next record.
    pub(super) fn submit(&mut self, signature: PendingSignature) {
        self.batch.push(signature);
        if self.batch.len() >= BATCH {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            self.dispatch(full);
        }
    }

    /// True once a signature failed: the records after it need not be read.
    pub(super) fn has_failed(&self) -> bool {
        self.earliest.failed.load(Ordering::Acquire)
    }

    /// Verifies what is left, waits for the workers, and returns the failure of the lowest
    /// record, if any.
    pub(super) fn finish(mut self) -> Option<VerifyError> {
        let rest = std::mem::take(&mut self.batch);
        check_batch(&self.keys, &rest, &self.earliest);
        self.queue = None;
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!("a signature worker panicked");
            }
        }
        self.earliest
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Hands a full batch to a worker, or verifies it here when every worker is busy.
    fn dispatch(&mut self, batch: Vec<PendingSignature>) {
        let batch = match &self.queue {
            Some(queue) => match queue.try_send(batch) {
                Ok(()) => return,
                Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => batch,
            },
            None => batch,
        };
        check_batch(&self.keys, &batch, &self.earliest);
    }
}

/// A worker: verifies batches until the reader closes the queue.
fn work(
    keys: &PublicKeySet,
    batches: &Mutex<Receiver<Vec<PendingSignature>>>,
    earliest: &Earliest,
) {
    loop {
        // The lock is held only while waiting for a batch, never while verifying one.
        let next = batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        match next {
            Ok(batch) => check_batch(keys, &batch, earliest),
            Err(_) => return,
        }
    }
}
