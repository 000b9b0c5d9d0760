//! Wire contract of ZT-Infra: the types existing clients speak, canonical JSON, record hashing,
//! and verification of signatures and of the hash chain.
//!
//! This crate does no I/O and has no async code, so servers, SDKs, gateways and the offline
//! verifier all share exactly one definition of what a valid record is.

pub mod authzen;
pub mod canonical;
pub mod checkpoint;
pub mod hash;
pub mod keys;
pub mod merkle;
pub mod names;
pub mod note;
pub mod proof_wire;
pub mod session_cert;
pub mod strict_json;
pub mod timestamp;
pub mod verify;
pub mod wire;

pub use checkpoint::{
    checkpoint_signing_input, parse_signed_note, verify_checkpoint, Checkpoint, CheckpointError,
};
pub use hash::{record_hash, Digest32, GENESIS_HASH};
pub use keys::{Jwk, Jwks, KeyError, PublicKeySet};
pub use merkle::{CompactRange, ProofError};
pub use note::{NoteError, NoteKey, NoteSignature};
pub use proof_wire::{CheckpointKeyBody, ConsistencyBody, InclusionBody};
pub use verify::{ChainVerifier, VerifyCheck, VerifyError};
pub use wire::*;
