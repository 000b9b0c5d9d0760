//! The hand-off from the sealer to the writer: sealed records accumulate here while the writer
//! stores the previous batch, and the writer takes all of them at once for its next commit.
//!
//! A queue of sealed batches (the first design) made a record wait for every batch sealed
//! before it: the sealer sealed the first few requests at once, they waited for the writer, and
//! the requests that arrived meanwhile were sealed as a third batch that waited for both. Taking
//! everything sealed means a record waits for at most the commit in progress and its own.
//!
//! Bounded: once [`MAX_PENDING`] records wait, the sealer waits for the writer, the request
//! queue fills, and new requests are refused as overload (fail closed).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::committer::Stages;
use crate::queue::Reply;
use crate::store::SealedRecord;
use zt_contract::Jwk;

/// Sealed records that may wait for the writer before the sealer waits too.
pub(crate) const MAX_PENDING: usize = 2048;

/// Sealed records and the callers waiting for them, in chain order.
pub(crate) struct SealedBatch {
    /// New keys of the signer, published before the records.
    pub(crate) keys: Vec<Jwk>,
    pub(crate) records: Vec<SealedRecord>,
    pub(crate) replies: Vec<Reply>,
    /// When sealing of its first record started.
    pub(crate) started: Instant,
    /// When its first record was sealed: from then on it waits for the writer.
    pub(crate) sealed: Instant,
    /// Its stages so far: queue wait (the oldest record's) and sealing (in all).
    pub(crate) stages: Stages,
}

impl SealedBatch {
    /// Appends a later sealed batch (the chain continues from this one's last record).
    fn extend(&mut self, later: SealedBatch) {
        self.keys.extend(later.keys);
        self.records.extend(later.records);
        self.replies.extend(later.replies);
        self.stages.queue_wait = self.stages.queue_wait.max(later.stages.queue_wait);
        self.stages.seal += later.stages.seal;
    }
}

#[derive(Default)]
struct State {
    pending: Option<SealedBatch>,
    /// The sealer will hand over nothing more.
    closed: bool,
    /// The writer stopped: nothing handed over would be stored.
    writer_gone: bool,
}

/// The meeting point of the sealer and the writer.
#[derive(Default)]
pub(crate) struct Handoff {
    state: Mutex<State>,
    changed: Condvar,
}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands over a sealed batch, after those handed over before it; waits while
    /// [`MAX_PENDING`] records are waiting. Gives the batch's callers back, to be refused, if
    /// the writer has stopped.
    pub(crate) fn put(&self, batch: SealedBatch) -> Result<(), Vec<Reply>> {
        let mut state = self.lock();
        while !state.writer_gone
            && state
                .pending
                .as_ref()
                .is_some_and(|p| p.records.len() >= MAX_PENDING)
        {
            state = self.wait(state);
        }
        if state.writer_gone {
            return Err(batch.replies);
        }
        match &mut state.pending {
            Some(pending) => pending.extend(batch),
            None => state.pending = Some(batch),
        }
        self.changed.notify_all();
        Ok(())
    }

    /// The sealer is done: the writer stores what is pending, then stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Everything sealed so far, waiting until there is something; `None` once closed and
    /// drained.
    pub(crate) fn take(&self) -> Option<SealedBatch> {
        let mut state = self.lock();
        loop {
            if let Some(batch) = state.pending.take() {
                self.changed.notify_all();
                return Some(batch);
            }
            if state.closed {
                return None;
            }
            state = self.wait(state);
        }
    }

    /// The writer stopped (returned or panicked): the sealer must not wait for it.
    pub(crate) fn writer_gone(&self) {
        self.lock().writer_gone = true;
        self.changed.notify_all();
    }
}

/// Held by the writer: marks it gone when dropped, however its thread ends.
pub(crate) struct WriterGuard<'h>(pub(crate) &'h Handoff);

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.0.writer_gone();
    }
}

/// Held by the sealer: closes the hand-off when dropped, however its thread ends, so the
/// writer stores what is pending and stops.
pub(crate) struct SealerGuard<'h>(pub(crate) &'h Handoff);

impl Drop for SealerGuard<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::committer::LedgerError;

    type ReplyResult = Result<SealedRecord, LedgerError>;

    /// A batch of no records with `n` callers waiting.
    fn batch(n: usize, queue_wait_ms: u64) -> (SealedBatch, Vec<oneshot::Receiver<ReplyResult>>) {
        let (replies, receivers) = (0..n).map(|_| oneshot::channel()).unzip();
        let now = Instant::now();
        let batch = SealedBatch {
            keys: Vec::new(),
            records: Vec::new(),
            replies,
            started: now,
            sealed: now,
            stages: Stages {
                queue_wait: Duration::from_millis(queue_wait_ms),
                seal: Duration::from_millis(1),
                ..Stages::default()
            },
        };
        (batch, receivers)
    }

    #[test]
    fn the_writer_takes_everything_sealed_in_order_then_stops_once_closed() {
        let handoff = Handoff::default();
        let (first, _) = batch(2, 5);
        let (second, _) = batch(3, 9);
        assert!(handoff.put(first).is_ok());
        assert!(handoff.put(second).is_ok());
        let taken = handoff.take().unwrap();
        assert_eq!(taken.replies.len(), 5);
        assert_eq!(taken.stages.queue_wait, Duration::from_millis(9));
        assert_eq!(taken.stages.seal, Duration::from_millis(2));
        // Closed with a batch pending: the writer still gets it, then nothing.
        let (third, _) = batch(1, 0);
        assert!(handoff.put(third).is_ok());
        handoff.close();
        assert_eq!(handoff.take().map(|b| b.replies.len()), Some(1));
        assert!(handoff.take().is_none());
    }

    #[test]
    fn a_gone_writer_hands_the_batch_back_and_a_waiting_writer_wakes() {
        let handoff = Handoff::default();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| handoff.take().map(|b| b.replies.len()));
            std::thread::sleep(Duration::from_millis(20));
            let (b, _) = batch(4, 0);
            assert!(handoff.put(b).is_ok());
            assert_eq!(writer.join().unwrap(), Some(4));
        });
        drop(WriterGuard(&handoff));
        let (b, _) = batch(1, 0);
        assert_eq!(handoff.put(b).err().map(|replies| replies.len()), Some(1));
        // A sealer that ends, however, releases a waiting writer.
        let handoff = Handoff::default();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| handoff.take().is_none());
            std::thread::sleep(Duration::from_millis(20));
            drop(SealerGuard(&handoff));
            assert!(writer.join().unwrap());
        });
    }
}
