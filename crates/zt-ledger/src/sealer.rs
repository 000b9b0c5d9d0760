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
        let (drafts, mut replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|p| (p.draft, p.reply)).unzip();
        let sealed = self.signer.rollover().and_then(|keys| {
            seal_prefix(&mut self.head, drafts, self.signer.as_ref()).map(|r| (keys, r))
        });
        let (keys, records, replies) = match sealed {
            Ok((keys, sealed)) => {
                // At most one record per reply; `min` keeps `split_off` from ever panicking.
                let unsigned = replies.split_off(sealed.records.len().min(replies.len()));
                if let Some(e) = &sealed.stopped {
                    // The head moved past the records sealed only: the next batch chains
                    // onto them and tries the signer again.
                    tracing::warn!(error = %e, sealed = sealed.records.len(), refused = unsigned.len(), "audit batch signed in part; the rest of its decisions are refused");
                    refuse_all(unsigned, &e.to_string());
                }
                (keys, sealed.records, replies)
            }
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
    let sealed = seal_prefix(&mut next, drafts, signer)?;
    if let Some(e) = sealed.stopped {
        return Err(e);
    }
    *head = next;
    Ok(sealed.records)
}

/// What [`seal_prefix`] sealed: the first records of the batch, and why the rest were not.
pub(crate) struct SealedPrefix {
    pub(crate) records: Vec<SealedRecord>,
    pub(crate) stopped: Option<crate::SignError>,
}

/// Seals as much of `drafts`, in order, as the signer signs ([`Signer::sign_prefix`]): `head`
/// moves to the last record sealed, so the next batch chains onto it, and the drafts after it
/// are not records (their sequence numbers go to the next batch). An error before any
/// signing (hashing) seals nothing.
pub(crate) fn seal_prefix(
    head: &mut Option<Head>,
    drafts: Vec<RecordDraft>,
    signer: &dyn Signer,
) -> Result<SealedPrefix, crate::SignError> {
    let hashed = hash_drafts(*head, drafts)?;
    let digests: Vec<Digest32> = hashed.iter().map(|(_, _, hash)| *hash).collect();
    let signed = signer.sign_prefix(&digests);
    // A prefix short of the batch always says why.
    let mut stopped = match signed.stopped {
        None if signed.signatures.len() < digests.len() => Some(crate::SignError::Sign),
        stopped => stopped,
    };
    let mut records = Vec::with_capacity(signed.signatures.len());
    for ((body, json, hash), signature) in hashed.into_iter().zip(signed.signatures) {
        match SealedRecord::assemble(body, &json, hash, signature) {
            Ok(record) => records.push(record),
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    if let Some(last) = records.last() {
        *head = Some(last.head());
    }
    Ok(SealedPrefix { records, stopped })
}

/// Sequences and hashes `drafts` as the records after `head`.
fn hash_drafts(
    head: Option<Head>,
    drafts: Vec<RecordDraft>,
) -> Result<Vec<(zt_contract::RecordBody, String, Digest32)>, crate::SignError> {
    let mut next = head;
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
    Ok(hashed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::LocalKeySigner;
    use crate::test_util::SwitchableSigner;

    fn drafts(n: usize) -> Vec<RecordDraft> {
        (0..n).map(|_| RecordDraft::default()).collect()
    }

    /// Signs the first `signs` digests of every batch, then stops.
    struct SignsSome {
        key: LocalKeySigner,
        signs: usize,
    }

    impl Signer for SignsSome {
        fn key_id(&self) -> &str {
            self.key.key_id()
        }
        fn public_jwk(&self) -> &zt_contract::Jwk {
            self.key.public_jwk()
        }
        fn sign_digest(
            &self,
            digest: &Digest32,
        ) -> Result<zt_contract::KmsSignature, crate::SignError> {
            self.key.sign_digest(digest)
        }
        fn sign_prefix(&self, digests: &[Digest32]) -> crate::SignedPrefix {
            let signs = self.signs.min(digests.len());
            crate::SignedPrefix {
                signatures: digests[..signs]
                    .iter()
                    .map(|d| self.key.sign_digest(d).unwrap())
                    .collect(),
                stopped: (signs < digests.len())
                    .then(|| crate::SignError::Unavailable("throttled".into())),
            }
        }
    }

    #[test]
    fn a_batch_signed_in_part_seals_its_signed_prefix_and_the_next_chains_onto_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = LocalKeySigner::load_or_create(dir.path()).unwrap();
        let mut head = None;
        let sealed = seal_prefix(&mut head, drafts(5), &SignsSome { key, signs: 2 }).unwrap();
        assert_eq!(sealed.records.len(), 2);
        assert!(matches!(
            sealed.stopped,
            Some(crate::SignError::Unavailable(_))
        ));
        assert_eq!(
            head,
            Some(sealed.records[1].head()),
            "the head is the last sealed"
        );
        let key = LocalKeySigner::load_or_create(dir.path()).unwrap();
        let next = seal_prefix(&mut head, drafts(3), &SignsSome { key, signs: 9 }).unwrap();
        assert!(next.stopped.is_none());
        assert_eq!(
            next.records[0].body.seq, 2,
            "the unsigned drafts' seqs go to the next batch"
        );
        assert_eq!(
            next.records[0].body.previous_hash,
            sealed.records[1].current_hash.to_hex()
        );
        let key = LocalKeySigner::load_or_create(dir.path()).unwrap();
        let before = head;
        let none = seal_prefix(&mut head, drafts(2), &SignsSome { key, signs: 0 }).unwrap();
        assert!(none.records.is_empty() && none.stopped.is_some());
        assert_eq!(head, before, "nothing signed: the head stays");
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
