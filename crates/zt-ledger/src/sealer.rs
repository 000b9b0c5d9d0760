//! The sealer of the single-writer pipeline: it takes everything queued as one batch, and
//! sequences, hashes and signs it onto the head it alone keeps, then hands it to the writer
//! ([`crate::writer`]) through [`crate::handoff`]. It runs ahead of the writer, so signing the
//! next batch overlaps the `fsync` of the current one.
//!
//! Sequencing happens here alone, in order, which is what makes the chain impossible to fork:
//! there is exactly one place where `previous_hash` is chosen. [`seal_batch`] is also how
//! [`crate::replicated`] seals a batch onto the head it reads inside the store's transaction.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zt_contract::{Digest32, GENESIS_HASH};

use crate::clock::wire_now;
use crate::committer::{Shared, Stages};
use crate::draft::RecordDraft;
use crate::handoff::{Handoff, SealedBatch, SealerGuard};
use crate::queue::{refuse_all, Batches, Pending, MAX_BATCH};
use crate::signer::Signer;
use crate::store::{Head, SealedRecord};

/// Sequences, hashes and signs. Runs ahead of the writer, so signing the next batch overlaps
/// the `fsync` of the current one.
pub(crate) struct Sealer {
    pub(crate) queue: Batches,
    pub(crate) signer: Arc<dyn Signer>,
    pub(crate) head: Option<Head>,
    pub(crate) shared: Arc<Shared>,
}

impl Sealer {
    pub(crate) fn run(mut self, to_writer: Arc<Handoff>) {
        let _close = SealerGuard(&to_writer);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while self.queue.wait(&mut batch) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::LocalKeySigner;
    use crate::test_util::SwitchableSigner;

    fn drafts(n: usize) -> Vec<RecordDraft> {
        (0..n).map(|_| RecordDraft::default()).collect()
    }

    #[test]
    fn a_failed_signature_leaves_the_head_and_the_next_batch_chains_onto_it() {
        let dir = tempfile::tempdir().unwrap();
        let signer = SwitchableSigner::new(LocalKeySigner::load_or_create(dir.path()).unwrap());
        let mut head = None;
        let first = seal_batch(&mut head, drafts(2), &signer).unwrap();
        assert_eq!(first[0].body.seq, 0);
        assert_eq!(first[0].body.previous_hash, GENESIS_HASH);
        assert_eq!(first[1].body.previous_hash, first[0].current_hash.to_hex());
        let before = head;
        assert_eq!(before, Some(first[1].head()));

        signer.switch_off();
        assert!(seal_batch(&mut head, drafts(3), &signer).is_err());
        assert_eq!(head, before, "a refused batch must not move the head");

        signer.switch_on();
        let next = seal_batch(&mut head, drafts(1), &signer).unwrap();
        assert_eq!(next[0].body.seq, 2);
        assert_eq!(next[0].body.previous_hash, first[1].current_hash.to_hex());
        assert_eq!(head, Some(next[0].head()));
    }
}
