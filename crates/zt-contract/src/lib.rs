//! Wire contract of ZT-Infra: the types existing clients speak, canonical JSON, record hashing,
//! and verification of signatures and of the hash chain.
//!
//! This crate does no I/O and has no async code, so servers, SDKs, gateways and the offline
//! verifier all share exactly one definition of what a valid record is.

pub mod canonical;
pub mod hash;
pub mod keys;
pub mod timestamp;
pub mod verify;
pub mod wire;

pub use hash::{record_hash, Digest32, GENESIS_HASH};
pub use keys::{Jwk, Jwks, KeyError, PublicKeySet};
pub use verify::{ChainVerifier, VerifyCheck, VerifyError};
pub use wire::*;
