//! Signed notes (c2sp.org/signed-note): a UTF-8 text ending in a newline, a blank line, then
//! one or more signature lines `— <key name> <base64(key ID || signature)>\n` (em dash U+2014,
//! space).
//!
//! # Signature type
//!
//! zt-infra signs with ECDSA P-256, so its notes use the signed-note spec's signature type
//! `0x02` ([`SIGNATURE_TYPE_ECDSA`]): a DER ECDSA signature over SHA-256 of the note text (the
//! exact text bytes, final newline included, separating blank line excluded), and the key ID
//! `SHA-256(DER SubjectPublicKeyInfo)[:4]` ([`note_key_id`]). That type is registered in the
//! spec as "ECDSA signatures as implemented by github.com/transparency-dev/witness" and is what
//! Sigstore's Rekor log uses, so existing verifiers can check our checkpoints, and ours can
//! check theirs. Signing stays outside this crate: [`note_signing_input`] is the digest a
//! signer of 32-byte digests signs.
//!
//! # Verification
//!
//! As the spec requires: signatures from unknown keys (name and key ID not both matching a
//! known key) are ignored; every signature from a known key must verify, or the whole note is
//! rejected; at least one must be present.

mod key;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::Digest32;

pub use key::{is_valid_key_name, note_key_id, NoteKey, SIGNATURE_TYPE_ECDSA};

/// The most signature lines a note may carry (the spec requires accepting at least 16; Go's
/// `note.Open` stops at 100).
pub const MAX_SIGNATURES: usize = 100;

/// Start of every signature line: em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note or a note key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// An ASCII control character other than newline.
    #[error("the note contains a control character other than newline")]
    ControlCharacter,
    /// No blank line separates the text from the signatures.
    #[error("the note has no blank line before its signatures")]
    NoSignatureBlock,
    /// The note (or its text) does not end with a newline.
    #[error("the note does not end with a newline")]
    MissingFinalNewline,
    /// A line of the signature block is not a well-formed signature line.
    #[error("signature line {0} is malformed")]
    MalformedSignatureLine(usize),
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("the note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// No signature from a known key.
    #[error("the note has no signature from a known key")]
    NoKnownSignature,
    /// A signature from a known key does not verify.
    #[error("the signature by key `{name}` ({key_id:08x}) does not verify")]
    BadSignature {
        /// The key name.
        name: String,
        /// The key ID.
        key_id: u32,
    },
    /// A key name that is empty or has a space or `+`.
    #[error("key name `{0}` is empty or contains a space or a plus sign")]
    InvalidKeyName(String),
    /// Not an EC P-256 key with an uncompressed point.
    #[error("key `{0}` is not an EC P-256 key")]
    UnsupportedKey(String),
    /// Bytes that are not a point on the curve.
    #[error("key `{0}` is malformed")]
    MalformedKey(String),
    /// A verifier-key text that does not parse or whose key ID does not match its key.
    #[error("verifier key `{0}` is malformed")]
    MalformedVerifierKey(String),
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID: the first four bytes of the signature blob, big-endian.
    pub key_id: u32,
    /// The signature proper (for type `0x02`, a DER ECDSA signature).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, newline included.
    pub fn line(&self) -> String {
        let blob = [&self.key_id.to_be_bytes()[..], &self.signature].concat();
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        )
    }

    fn parse(line: &str, number: usize) -> Result<Self, NoteError> {
        let bad = || NoteError::MalformedSignatureLine(number);
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(bad)?;
        let (name, b64) = rest.split_once(' ').ok_or_else(bad)?;
        if !is_valid_key_name(name) {
            return Err(bad());
        }
        let blob = STANDARD.decode(b64).map_err(|_| bad())?;
        match blob.split_first_chunk::<4>() {
            Some((id, signature)) if !signature.is_empty() => Ok(Self {
                name: name.into(),
                key_id: u32::from_be_bytes(*id),
                signature: signature.to_vec(),
            }),
            _ => Err(bad()),
        }
    }
}

/// SHA-256 of the note text: what a note signature of type `0x02` signs.
pub fn note_signing_input(text: &str) -> Digest32 {
    Digest32::sha256(text.as_bytes())
}

/// Splits a note into its text (final newline included) and its signatures, checking the
/// syntax only. Nothing is verified: see [`verify_note`].
pub fn parse_note(note: &str) -> Result<(&str, Vec<NoteSignature>), NoteError> {
    if note.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter);
    }
    if !note.ends_with('\n') {
        return Err(NoteError::MissingFinalNewline);
    }
    // The text ends at the last blank line; signature lines contain no blank line.
    let split = note.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
    let (text, rest) = note
        .split_at_checked(split + 1)
        .ok_or(NoteError::NoSignatureBlock)?;
    let block = rest.strip_prefix('\n').unwrap_or(rest);
    if block.is_empty() {
        return Err(NoteError::NoSignatureBlock);
    }
    let lines: Vec<&str> = block
        .strip_suffix('\n')
        .unwrap_or(block)
        .split('\n')
        .collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }
    let signatures = lines
        .iter()
        .enumerate()
        .map(|(i, line)| NoteSignature::parse(line, i + 1))
        .collect::<Result<_, _>>()?;
    Ok((text, signatures))
}

/// Verifies a note against the known `keys` and returns its text: every signature whose key
/// name and key ID match a known key must verify, and at least one must.
pub fn verify_note<'n>(note: &'n str, keys: &[NoteKey]) -> Result<&'n str, NoteError> {
    let (text, signatures) = parse_note(note)?;
    let mut verified = false;
    for sig in &signatures {
        let mut known = keys
            .iter()
            .filter(|k| k.name() == sig.name && k.key_id() == sig.key_id)
            .peekable();
        if known.peek().is_none() {
            continue; // unknown key: ignored, as the spec requires
        }
        if !known.any(|k| k.verifies(text, &sig.signature)) {
            return Err(NoteError::BadSignature {
                name: sig.name.clone(),
                key_id: sig.key_id,
            });
        }
        verified = true;
    }
    if verified {
        Ok(text)
    } else {
        Err(NoteError::NoKnownSignature)
    }
}

/// A note from its text (ending in a newline) and signatures.
pub fn format_note(text: &str, signatures: &[NoteSignature]) -> String {
    let mut out = String::with_capacity(text.len() + 1 + 128 * signatures.len());
    out.push_str(text);
    out.push('\n');
    for sig in signatures {
        out.push_str(&sig.line());
    }
    out
}

#[cfg(test)]
#[path = "note/tests.rs"]
mod tests;
