//! Record hashing: `current_hash = hex(sha256(canonical_json(record body)))`, where the body is
//! the stored record without `current_hash` and `kms_signature`.

use std::fmt;

use aws_lc_rs::digest;
use serde_json::{Map, Value};

use crate::canonical::canonical_json;

/// The `previous_hash` of the first record in every chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Keys of a stored record that are not part of its hashed body.
pub const UNHASHED_KEYS: [&str; 2] = ["current_hash", "kms_signature"];

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest32(pub [u8; 32]);

impl Digest32 {
    /// SHA-256 of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Parses 64 lowercase hex characters; anything else is `None`.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// Lowercase hex, as the wire carries it. Written into one allocation of its size: a
    /// decision writes four of these (record link, record line, store row, answer), and
    /// `hex::encode` collected them through an iterator at several times the cost
    /// (docs/PERFORMANCE.md).
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            for nibble in [byte >> 4, byte & 0x0f] {
                // A nibble is below 16, so `from_digit` always has a (lowercase) digit.
                out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
            }
        }
        out
    }
}

impl fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The hashed body of a stored record: every key except [`UNHASHED_KEYS`].
pub fn hashed_body(record: &Map<String, Value>) -> Map<String, Value> {
    record
        .iter()
        .filter(|(k, _)| !UNHASHED_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The hash of a stored record (or of a bare body: unhashed keys are ignored either way).
pub fn record_hash(record: &Map<String, Value>) -> Digest32 {
    let body = Value::Object(hashed_body(record));
    Digest32::sha256(canonical_json(&body).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_hex_is_lowercase_hex_and_round_trips() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i * 8 + 7).unwrap();
        }
        for digest in [
            Digest32([0; 32]),
            Digest32([0xff; 32]),
            Digest32(bytes),
            Digest32::sha256(b"x"),
        ] {
            let hex = digest.to_hex();
            assert_eq!(hex, hex::encode(digest.0));
            assert_eq!(Digest32::from_hex(&hex), Some(digest));
        }
        assert_eq!(
            Digest32::sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
