//! The storage trait every backend implements, and the record as stored.

use std::time::Duration;

use zt_contract::{Digest32, Jwk, KmsSignature, RecordBody, RecordDraft};

/// A record with its place in the chain, hash and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// The hashed body.
    pub body: RecordBody,
    /// SHA-256 of the body's canonical JSON.
    pub current_hash: Digest32,
    /// Signature over `current_hash`.
    pub signature: KmsSignature,
    /// The stored JSON line: the body plus `current_hash` and `kms_signature`.
    pub line: String,
}

/// The newest record of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub current_hash: Digest32,
}

/// A storage failure. Every one of them makes the ledger refuse to answer (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend reported an error.
    #[error("audit store: {0}")]
    Backend(String),
    /// Stored data is not what was written.
    #[error("audit store is corrupt: {0}")]
    Corrupt(String),
}

/// Chains the drafts it is given onto the head it is given: see [`AuditStore::append_at_head`].
pub type SealAtHead =
    Box<dyn FnOnce(Option<Head>, Vec<RecordDraft>) -> Result<Vec<SealedRecord>, StoreError> + Send>;

/// A batch to chain onto the head of the store (see [`AuditStore::append_at_head`]).
pub struct BatchAtHead {
    /// The records to be, in order.
    pub drafts: Vec<RecordDraft>,
    /// How long a request id a record spends (`RecordDraft::spent_request_id`) stays spent for
    /// its actor, on every server writing a shared store.
    pub request_id_window: Duration,
    /// Seals the drafts that may be committed onto the head.
    pub seal: SealAtHead,
}

impl std::fmt::Debug for BatchAtHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchAtHead")
            .field("drafts", &self.drafts.len())
            .field("request_id_window", &self.request_id_window)
            .finish_non_exhaustive()
    }
}

/// The refusal of a seal that did not return one record per draft it was given: each caller
/// is answered with the record at its draft's place, so such a batch is not committed.
pub(crate) fn one_record_per_draft(records: usize, drafts: usize) -> StoreError {
    StoreError::Backend(format!("sealed {records} records for {drafts} drafts"))
}

/// Checks the key stored under `ours.kid` after a publication: the store keeps the first key
/// published under an id, so one written there before (by someone with write access to the
/// store, under the id of a KMS or HSM key they cannot use) would otherwise be served by
/// `/audit/keys` and trusted by verifiers as ours. Only the server, which holds the real key,
/// can tell; it refuses to go on. The point is compared, not the whole JWK, so a key
/// published by an earlier version with other optional members still matches.
pub(crate) fn confirm_published(stored: &str, ours: &Jwk) -> Result<(), StoreError> {
    let stored: Jwk = serde_json::from_str(stored).map_err(|e| {
        StoreError::Corrupt(format!(
            "the stored public key `{}` is unreadable: {e}",
            ours.kid
        ))
    })?;
    if (&stored.kty, &stored.crv, &stored.x, &stored.y) == (&ours.kty, &ours.crv, &ours.x, &ours.y)
    {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "the store holds another public key under this server's key id `{}`",
            ours.kid
        )))
    }
}

/// What [`AuditStore::append_at_head`] committed.
#[derive(Debug, Default)]
pub struct AppendedAtHead {
    /// The records committed, in the order of the drafts they were sealed from.
    pub records: Vec<SealedRecord>,
    /// The drafts left out, each with its place in the batch: a record already committed (by
    /// another server, or earlier in the batch) spent their request id within the window.
    pub spent_before: Vec<(usize, RecordDraft)>,
}

/// Where records live. Every implementation must pass the conformance suite in
/// `tests/store_conformance.rs`.
pub trait AuditStore: Send {
    /// The newest record, `None` on an empty log.
    fn head(&mut self) -> Result<Option<Head>, StoreError>;
    /// Appends records, in order, atomically: when this returns `Ok` they survive a crash or
    /// power loss; on `Err` none of them is stored.
    fn append(&mut self, records: &[SealedRecord]) -> Result<(), StoreError>;
    /// Stored lines from `from`, in order, at most `limit`.
    fn read(&mut self, from: u64, limit: usize) -> Result<Vec<String>, StoreError>;
    /// The `current_hash` of the stored records from `from`, in order, at most `limit`: the
    /// Merkle tree's leaf data (see `zt_contract::merkle`). It must not parse or even load the
    /// record lines where the backend can avoid it: the server reads every hash at start to
    /// rebuild the tree, and at most two ranges of 1,024 for each proof. A gap in the sequence
    /// numbers or a hash that is not 64 lowercase hex characters is [`StoreError::Corrupt`].
    fn hashes(&mut self, from: u64, limit: usize) -> Result<Vec<Digest32>, StoreError>;
    /// Whether several servers may write this store at once. Such a store is written only
    /// through [`AuditStore::append_at_head`], since no one server knows its head.
    fn is_shared(&self) -> bool {
        false
    }
    /// Reads the head, has `seal` chain the batch onto it, and appends what `seal` returns (one
    /// record per draft it was given, or nothing is stored), atomically and durably as
    /// [`AuditStore::append`] does. A shared store does all of it in
    /// one transaction under a lock that every writer of the chain takes, so two servers can
    /// never chain onto the same head; in that transaction it also spends the request ids the
    /// drafts carry, leaving out (and handing back) a draft whose id a committed record spent
    /// within the window, so an id is spent once across every server. The default suits a
    /// store with one writer, whose server's own replay guard already refused such a draft.
    fn append_at_head(&mut self, batch: BatchAtHead) -> Result<AppendedAtHead, StoreError> {
        let drafts = batch.drafts.len();
        let records = (batch.seal)(self.head()?, batch.drafts)?;
        if records.len() != drafts {
            return Err(one_record_per_draft(records.len(), drafts));
        }
        self.append(&records)?;
        Ok(AppendedAtHead {
            records,
            spent_before: Vec::new(),
        })
    }
    /// Upkeep the writer runs after a commit's callers have been answered, so none of them
    /// waits for it (SQLite: finishing a WAL checkpoint, `sqlite/wal.rs`). It cannot fail:
    /// work it could not do is tried again later. Returns whether it did any work: the
    /// writer times it, since the next batch waits for it (`Stages::upkeep`).
    fn between_commits(&mut self) -> bool {
        false
    }
    /// Records a public key as published (idempotent); [`StoreError::Corrupt`] if another
    /// key is stored under its id (see `confirm_published`).
    fn publish_key(&mut self, jwk: &Jwk) -> Result<(), StoreError>;
    /// Every key ever published, oldest first.
    fn keys(&mut self) -> Result<Vec<Jwk>, StoreError>;
}

impl SealedRecord {
    /// The head of a log that ends with this record.
    pub fn head(&self) -> Head {
        Head {
            seq: self.body.seq,
            current_hash: self.current_hash,
        }
    }

    /// Hashes and signs a body, and builds its stored line.
    pub fn seal(body: RecordBody, signer: &dyn crate::Signer) -> Result<Self, crate::SignError> {
        let (json, current_hash) = Self::hash_body(&body)?;
        let signature = signer.sign_digest(&current_hash)?;
        Self::assemble(body, &json, current_hash, signature)
    }

    /// The canonical JSON of a body and its SHA-256, the digest that is signed.
    pub fn hash_body(body: &RecordBody) -> Result<(String, Digest32), crate::SignError> {
        body.canonical_json_and_hash()
            .map_err(|_| crate::SignError::Sign)
    }

    /// A record from its body, the body's canonical JSON and hash, and its signature.
    pub fn assemble(
        body: RecordBody,
        json: &str,
        current_hash: Digest32,
        signature: KmsSignature,
    ) -> Result<Self, crate::SignError> {
        let signature_json =
            serde_json::to_string(&signature).map_err(|_| crate::SignError::Sign)?;
        let open = json.strip_suffix('}').unwrap_or(json);
        // Sized once: `format!` would start small and grow the ~1 KiB line several times.
        let mut line = String::with_capacity(open.len() + signature_json.len() + 104);
        line.push_str(open);
        line.push_str(",\"current_hash\":\"");
        line.push_str(&current_hash.to_hex());
        line.push_str("\",\"kms_signature\":");
        line.push_str(&signature_json);
        line.push('}');
        Ok(Self {
            body,
            current_hash,
            signature,
            line,
        })
    }
}
