//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test crate uses a different part")]

pub(crate) mod merkle_ref;
pub(crate) mod signer;

use serde_json::Value;
use zt_contract::Digest32;

/// A 64-hex-character JSON string as a digest.
pub(crate) fn digest(v: &Value) -> Digest32 {
    Digest32::from_hex(v.as_str().unwrap()).unwrap()
}

/// A JSON array of 64-hex-character strings as digests.
pub(crate) fn digests(v: &Value) -> Vec<Digest32> {
    v.as_array().unwrap().iter().map(digest).collect()
}

/// `d` with bit `bit` (0 = most significant bit of the first byte) flipped.
pub(crate) fn flip_bit(d: &Digest32, bit: usize) -> Digest32 {
    let mut out = *d;
    out.0[bit / 8] ^= 0x80 >> (bit % 8);
    out
}
