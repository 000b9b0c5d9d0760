//! The request queue in front of both committers ([`crate::sealer`] for a store with one
//! writer, [`crate::replicated`] for a shared one): callers queue a record with the channel
//! its answer comes back on, and the committer takes everything queued as one batch.
//!
//! Bounded, and never waited on by a caller: a full queue refuses the record at once as
//! [`LedgerError::Overloaded`] (fail closed) rather than queue without bound.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::committer::LedgerError;
use crate::draft::RecordDraft;
use crate::store::SealedRecord;

/// The most records one batch commits.
pub(crate) const MAX_BATCH: usize = 2048;

/// Where a caller hears whether its record was committed.
pub(crate) type Reply = oneshot::Sender<Result<SealedRecord, LedgerError>>;

/// A record waiting for its batch.
pub(crate) struct Pending {
    pub(crate) draft: RecordDraft,
    pub(crate) reply: Reply,
    /// When it was queued.
    pub(crate) enqueued: Instant,
}

/// The callers' end of the queue.
#[derive(Clone)]
pub(crate) struct Submitter(SyncSender<Pending>);

/// The committer's end of the queue.
pub(crate) struct Batches(Receiver<Pending>);

/// A queue that holds at most `capacity` records (at least one).
pub(crate) fn bounded(capacity: usize) -> (Submitter, Batches) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    (Submitter(tx), Batches(rx))
}

impl Submitter {
    /// Queues `draft`; the receiver resolves once its batch is committed or refused.
    pub(crate) fn submit(
        &self,
        draft: RecordDraft,
    ) -> Result<oneshot::Receiver<Result<SealedRecord, LedgerError>>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .try_send(Pending {
                draft,
                reply,
                enqueued: Instant::now(),
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => LedgerError::Overloaded,
                TrySendError::Disconnected(_) => LedgerError::Closed,
            })?;
        Ok(answer)
    }
}

impl Batches {
    /// Waits for a record, then adds it and everything queued behind it (up to [`MAX_BATCH`]
    /// in all) to `batch`. False once every caller's end is gone and the queue is empty.
    pub(crate) fn wait(&self, batch: &mut Vec<Pending>) -> bool {
        match self.0.recv() {
            Ok(first) => {
                self.fill(batch, first);
                true
            }
            Err(_) => false,
        }
    }

    /// As [`Batches::wait`], but gives up after `idle` without a record.
    pub(crate) fn wait_for(
        &self,
        batch: &mut Vec<Pending>,
        idle: Duration,
    ) -> Result<(), RecvTimeoutError> {
        let first = self.0.recv_timeout(idle)?;
        self.fill(batch, first);
        Ok(())
    }

    fn fill(&self, batch: &mut Vec<Pending>, first: Pending) {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match self.0.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
    }
}

/// Answers every caller in `replies` that its record was not committed, and why.
pub(crate) fn refuse_all(replies: impl IntoIterator<Item = Reply>, why: &str) {
    for reply in replies {
        let _ = reply.send(Err(LedgerError::Unavailable(why.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_at_once_and_a_batch_takes_everything_queued() {
        let (submitter, batches) = bounded(2);
        let first = submitter.submit(RecordDraft::default()).unwrap();
        let _second = submitter.submit(RecordDraft::default()).unwrap();
        // Full: refused without waiting, and nothing more is queued.
        assert_eq!(
            submitter.submit(RecordDraft::default()).err(),
            Some(LedgerError::Overloaded)
        );
        let mut batch = Vec::new();
        assert!(batches.wait(&mut batch));
        assert_eq!(batch.len(), 2);
        // Room again once the committer took them; a refused caller hears why.
        assert!(submitter.submit(RecordDraft::default()).is_ok());
        refuse_all(batch.drain(..).map(|p| p.reply), "disk on fire");
        assert_eq!(
            first.blocking_recv().unwrap(),
            Err(LedgerError::Unavailable("disk on fire".into()))
        );
    }

    #[test]
    fn an_idle_queue_times_out_and_a_queue_without_callers_closes() {
        let (submitter, batches) = bounded(4);
        let mut batch = Vec::new();
        assert_eq!(
            batches.wait_for(&mut batch, Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        let answer = submitter.submit(RecordDraft::default()).unwrap();
        drop(submitter);
        // What was queued before the last caller's end went is still taken, then it closes.
        assert!(batches.wait(&mut batch));
        assert_eq!(batch.len(), 1);
        assert!(!batches.wait(&mut batch));
        assert_eq!(
            batches.wait_for(&mut batch, Duration::from_millis(10)),
            Err(RecvTimeoutError::Disconnected)
        );
        drop(batch);
        // A record dropped unanswered reads as closed to its caller.
        assert!(answer.blocking_recv().is_err());
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_records() {
        let (submitter, batches) = bounded(MAX_BATCH + 5);
        let _answers: Vec<_> = (0..MAX_BATCH + 5)
            .map(|_| submitter.submit(RecordDraft::default()).unwrap())
            .collect();
        let mut batch = Vec::new();
        assert!(batches.wait(&mut batch));
        assert_eq!(batch.len(), MAX_BATCH);
        batch.clear();
        assert!(batches.wait(&mut batch));
        assert_eq!(batch.len(), 5);
    }
}
