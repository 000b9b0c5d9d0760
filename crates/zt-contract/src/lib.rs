//! Wire contract of ZT-Infra: the types existing clients speak, canonical JSON, the audit
//! record (its draft and constructors, hashing, the decision answer made from it, the
//! vocabulary of admin actions and deny reasons), and verification of signatures and of the
//! hash chain.
//!
//! This crate does no I/O and has no async code, so servers, SDKs, gateways and the offline
//! verifier all share exactly one definition of what a valid record is.

pub mod admin_token_file;
pub mod authzen;
pub mod canonical;
pub mod checkpoint;
pub mod execution;
pub mod hash;
pub mod key_rotation;
pub mod keys;
pub mod merkle;
pub mod names;
pub mod note;
pub mod proof_wire;
pub mod receipts;
pub mod record;
pub mod sandbox;
pub mod session_cert;
pub mod strict_json;
#[cfg(test)]
mod test_keys;
pub mod timestamp;
pub mod verify;
pub mod vocabulary;
pub mod wire;

pub use checkpoint::{
    checkpoint_signing_input, parse_signed_note, verify_checkpoint, Checkpoint, CheckpointError,
};
pub use execution::{ExecutionOutcome, ExecutionReceipt, ReceiptRequest, ReceiptResponse};
pub use hash::{record_hash, Digest32, GENESIS_HASH};
pub use key_rotation::KeyRotation;
pub use keys::{Jwk, Jwks, KeyError, PublicKeySet};
pub use merkle::{CompactRange, ProofError};
pub use note::{NoteError, NoteKey, NoteSignature};
pub use proof_wire::{CheckpointKeyBody, ConsistencyBody, InclusionBody};
pub use record::RecordDraft;
pub use sandbox::{Narrowing, SandboxProfile};
pub use verify::{ChainVerifier, VerifyCheck, VerifyError};
pub use vocabulary::{
    spends_request_id, AdminAction, DenyReason, EXEC_ARGS_SHA256, EXEC_CONTEXT_KEY, EXEC_PROGRAM,
    REASON_ADMIN_ACCESS_REFUSED, REASON_NOT_ALLOWED, REASON_UNREGISTERED, REJECTIONS_ACTION,
    SERVER_ACTOR,
};
pub use wire::*;
