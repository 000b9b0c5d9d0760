//! Signed checkpoints (c2sp.org/tlog-checkpoint): a signed note (see [`crate::note`]) whose
//! text is the log's origin, its tree size in decimal, and the base64 of its RFC 6962 root,
//! one per line, optionally followed by non-empty extension lines. For the 4-leaf reference tree
//! of the RFC 6962 test vectors:
//!
//! ```text
//! zt.example/audit
//! 4
//! 037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=
//!
//! — zt.example/audit <base64(key ID || DER ECDSA signature)>
//! ```
//!
//! The size is the number of audit records committed (records `0..size`) and the root is
//! [`crate::merkle::root`] of their leaf hashes. This module only parses and verifies; a server
//! signs [`checkpoint_signing_input`] of [`Checkpoint::body`] with its digest signer and
//! appends the signature line with [`crate::note::format_note`]:
//!
//! ```
//! # use aws_lc_rs::{digest, signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING}};
//! use zt_contract::merkle::{audit_leaf_hash, CompactRange};
//! use zt_contract::note::{format_note, NoteKey, NoteSignature};
//! use zt_contract::{checkpoint_signing_input, verify_checkpoint, Checkpoint, Digest32};
//!
//! # let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
//! # let sign_digest = |d: &Digest32| {
//! #     let d = digest::Digest::import_less_safe(&d.0, &digest::SHA256).unwrap();
//! #     pair.sign_digest(&d).unwrap().as_ref().to_vec()
//! # };
//! let origin = "zt.example/audit";
//! let key = NoteKey::from_uncompressed_p256(origin, pair.public_key().as_ref()).unwrap();
//!
//! // Server: append each committed record, then sign the tree head.
//! let mut tree = CompactRange::new();
//! for record in [b"first", b"secnd"] {
//!     tree.append(audit_leaf_hash(&Digest32::sha256(record)));
//! }
//! let body = Checkpoint::new(origin, tree.size(), tree.root()).body();
//! let signature = NoteSignature {
//!     name: key.name().into(),
//!     key_id: key.key_id(),
//!     signature: sign_digest(&checkpoint_signing_input(&body)),
//! };
//! let note = format_note(&body, &[signature]);
//!
//! // Client: trust the log's key and origin, nothing else.
//! let checkpoint = verify_checkpoint(&note, origin, &[key]).unwrap();
//! assert_eq!((checkpoint.size, checkpoint.root), (2, tree.root()));
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::note::{note_signing_input, parse_note, verify_note, NoteError, NoteKey, NoteSignature};
use crate::Digest32;

/// Why a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signed-note layer failed: syntax or signatures.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The body does not end with a newline.
    #[error("the checkpoint body does not end with a newline")]
    MissingFinalNewline,
    /// The body contains an ASCII control character other than newline.
    #[error("the checkpoint body contains a control character other than newline")]
    ControlCharacter,
    /// Fewer than the three mandatory lines.
    #[error("the checkpoint body has fewer than three lines")]
    TooFewLines,
    /// An empty line (an empty origin or an empty extension line).
    #[error("line {0} of the checkpoint body is empty")]
    EmptyLine(usize),
    /// The size line is not a decimal number without leading zeros that fits 64 bits.
    #[error("tree size `{0}` is not a decimal number without leading zeros")]
    BadSize(String),
    /// The root line is not the canonical base64 of 32 bytes.
    #[error("root hash `{0}` is not the base64 of 32 bytes")]
    BadRoot(String),
    /// The origin is not the log the caller expects.
    #[error("the checkpoint is for origin `{found}`, not `{expected}`")]
    WrongOrigin {
        /// The origin the caller trusts.
        expected: String,
        /// The origin of the checkpoint.
        found: String,
    },
}

/// A log's tree head at one size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `zt.example/audit`. Non-empty, one line.
    pub origin: String,
    /// Number of leaves (audit records) in the tree.
    pub size: u64,
    /// The RFC 6962 root of the tree of `size` leaves.
    pub root: Digest32,
    /// Extension lines after the root, kept as they are (non-empty, one line each).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Digest32) -> Self {
        Self {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: origin, size and base64 root, then any extension lines, each ending in a
    /// newline. These exact bytes are what the log signs. A checkpoint whose origin or
    /// extensions are empty or hold a newline or control character yields a body that
    /// [`Checkpoint::parse_body`] rejects; servers should round-trip their first body.
    pub fn body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root.0)
        );
        for line in &self.extensions {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Parses a note text as a checkpoint body, strictly: three or more non-empty lines, a
    /// decimal size without leading zeros, a canonical base64 root of 32 bytes, a final newline.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        if text.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(CheckpointError::ControlCharacter);
        }
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?
            .split('\n')
            .collect();
        if let Some(i) = lines.iter().position(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyLine(i + 1));
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines);
        };
        Ok(Self {
            origin: (*origin).into(),
            size: parse_size(size)?,
            root: parse_root(root)?,
            extensions: extensions.iter().map(|l| (*l).to_string()).collect(),
        })
    }
}

/// The digest a log signs for a checkpoint: SHA-256 of the body bytes (signed-note type
/// `0x02`), for signers that take 32-byte digests.
pub fn checkpoint_signing_input(body: &str) -> Digest32 {
    note_signing_input(body)
}

/// Parses a signed checkpoint without verifying anything: its checkpoint and its signatures.
pub fn parse_signed_note(text: &str) -> Result<(Checkpoint, Vec<NoteSignature>), CheckpointError> {
    let (body, signatures) = parse_note(text)?;
    Ok((Checkpoint::parse_body(body)?, signatures))
}

/// Verifies a signed checkpoint of the log `origin`: a valid signature by at least one of
/// `keys`, none failing from a known key (see [`verify_note`]), a well-formed body, and that
/// origin. The origin check matters: one key may sign for several logs, and a size and root
/// mean something only for the log they name.
pub fn verify_checkpoint(
    text: &str,
    origin: &str,
    keys: &[NoteKey],
) -> Result<Checkpoint, CheckpointError> {
    let body = verify_note(text, keys)?;
    let checkpoint = Checkpoint::parse_body(body)?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.into(),
            found: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let bad = || CheckpointError::BadSize(line.into());
    let digits_only = line.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (line.len() > 1 && line.starts_with('0')) {
        return Err(bad());
    }
    line.parse().map_err(|_| bad())
}

fn parse_root(line: &str) -> Result<Digest32, CheckpointError> {
    let bad = || CheckpointError::BadRoot(line.into());
    let bytes = STANDARD.decode(line).map_err(|_| bad())?;
    let root: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    // One encoding per root: no non-zero padding bits slip through.
    if STANDARD.encode(root) != line {
        return Err(bad());
    }
    Ok(Digest32(root))
}
