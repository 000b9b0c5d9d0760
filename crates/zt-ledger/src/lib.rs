//! The audit log: signed, hash-chained records committed durably in batches.
//!
//! - [`signer`]: who signs a record's `current_hash` (a local P-256 key by default; a KMS-held
//!   key plugs in by implementing [`Signer`]).
//! - [`store`]: where records live, behind [`AuditStore`]; [`sqlite`] is the embedded default,
//!   [`postgres`] the PostgreSQL backend; [`location`] picks one from a `--store` URL.
//! - [`documents`]: the named, versioned documents a server keeps beside its log in a
//!   PostgreSQL store (registry, policy, proposals), on the same kind of session as the audit
//!   store (`pg_session.rs`, private: PostgreSQL is reached only through these stores).
//! - [`committer`]: the [`Ledger`] handle and its group commit: callers queue records
//!   (`queue`), a sealer thread sequences, hashes and signs them (`sealer`), and a writer thread
//!   group-commits them (`writer`), so the chain never forks and every answer waits only for
//!   its own batch's `fsync` (and the one in progress: `handoff`); [`replicated`] commits
//!   instead when several servers share one store. `startup` re-verifies the stored tail and
//!   rebuilds the Merkle tree before either starts.

pub mod clock;
pub mod committer;
pub mod documents;
pub mod draft;
mod handoff;
pub mod location;
pub mod persist;
mod pg_request_ids;
mod pg_session;
pub mod postgres;
mod proofs;
mod queue;
mod reader_pool;
pub mod replicated;
mod sealer;
pub mod signer;
pub mod sqlite;
mod startup;
pub mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod tree;
mod writer;

pub use self::postgres::{PostgresLocation, PostgresStore};
pub use committer::{CommitStats, Ledger, LedgerError, LedgerWorker, Queued, Stages};
pub use draft::RecordDraft;
pub use location::open_store;
pub use signer::{
    fingerprint_kid, LatencyHistogram, LocalKeySigner, RotatedKeys, SignError, SignedPrefix,
    Signer, SignerStatus, SIGNER_LATENCY_BOUNDS,
};
pub use sqlite::SqliteStore;
pub use store::{
    AppendedAtHead, AuditStore, BatchAtHead, Head, SealAtHead, SealedRecord, StoreError,
};
