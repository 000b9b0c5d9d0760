//! Note verifier keys: ECDSA P-256 public keys under a key name, with the key ID the signed-note
//! spec assigns to signature type `0x02`.

use std::fmt;

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_ASN1};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{note_signing_input, NoteError};
use crate::keys::Jwk;
use crate::Digest32;

/// Signature type `0x02` of c2sp.org/signed-note: "ECDSA signatures as implemented by
/// github.com/transparency-dev/witness", a DER (ASN.1) ECDSA signature over SHA-256 of the
/// note text. Sigstore's Rekor signs its checkpoints this way.
pub const SIGNATURE_TYPE_ECDSA: u8 = 0x02;

/// DER `SubjectPublicKeyInfo` of an EC P-256 key, up to the uncompressed point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes, no unused bits) }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An uncompressed SEC1 P-256 point: `04 || X || Y`.
const P256_POINT_LEN: usize = 65;

/// The key ID of an ECDSA note key: the first four bytes (big-endian) of SHA-256 of its DER
/// `SubjectPublicKeyInfo`. Signed-note type `0x02` defines it so (not from the key name, unlike
/// Ed25519's `SHA-256(name || 0x0A || 0x01 || key)`), as do the transparency-dev and Rekor
/// verifiers, whose published keys and checkpoints the tests check.
pub fn note_key_id(spki_der: &[u8]) -> u32 {
    let [a, b, c, d, ..] = Digest32::sha256(spki_der).0;
    u32::from_be_bytes([a, b, c, d])
}

/// True for a valid key name: non-empty, no Unicode space, no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '+')
}

/// An ECDSA P-256 public key that signs notes under a key name.
#[derive(Clone)]
pub struct NoteKey {
    name: String,
    key_id: u32,
    spki: Vec<u8>,
    key: ParsedPublicKey,
}

impl NoteKey {
    /// A key from an uncompressed SEC1 point (`04 || X || Y`).
    pub fn from_uncompressed_p256(name: &str, point: &[u8]) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.into()));
        }
        if point.len() != P256_POINT_LEN || point.first() != Some(&4) {
            return Err(NoteError::UnsupportedKey(name.into()));
        }
        let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .map_err(|_| NoteError::MalformedKey(name.into()))?;
        let spki = [&P256_SPKI_PREFIX[..], point].concat();
        Ok(Self {
            name: name.into(),
            key_id: note_key_id(&spki),
            spki,
            key,
        })
    }

    /// A key from its DER `SubjectPublicKeyInfo` (P-256, uncompressed point only).
    pub fn from_spki_der(name: &str, der: &[u8]) -> Result<Self, NoteError> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => Self::from_uncompressed_p256(name, point),
            None => Err(NoteError::UnsupportedKey(name.into())),
        }
    }

    /// A key from a published JWK (the audit signing keys of `GET /audit/keys`).
    pub fn from_jwk(name: &str, jwk: &Jwk) -> Result<Self, NoteError> {
        let point = jwk
            .uncompressed_point()
            .map_err(|_| NoteError::UnsupportedKey(name.into()))?;
        Self::from_uncompressed_p256(name, &point)
    }

    /// A key from its verifier-key text, `<name>+<key ID, 8 hex>+<base64(0x02 || SPKI DER)>`,
    /// the form transparency-dev and Rekor publish. The key ID must match the key.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let bad = || NoteError::MalformedVerifierKey(vkey.into());
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad())?;
        let bytes = STANDARD.decode(b64).map_err(|_| bad())?;
        let Some((&SIGNATURE_TYPE_ECDSA, der)) = bytes.split_first() else {
            return Err(NoteError::UnsupportedKey(name.into()));
        };
        let key = Self::from_spki_der(name, der)?;
        if key.key_id != id {
            return Err(bad());
        }
        Ok(key)
    }

    /// The verifier-key text of this key (see [`NoteKey::from_vkey`]).
    pub fn vkey(&self) -> String {
        let typed = [&[SIGNATURE_TYPE_ECDSA][..], &self.spki].concat();
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(typed)
        )
    }

    /// The key name signature lines carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID signatures start with.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// True if `signature_der` is this key's signature over the note text `text`.
    pub fn verifies(&self, text: &str, signature_der: &[u8]) -> bool {
        let digest = note_signing_input(text);
        let Ok(digest) = Digest::import_less_safe(&digest.0, &SHA256) else {
            return false;
        };
        self.key.verify_digest_sig(&digest, signature_der).is_ok()
    }
}

impl fmt::Debug for NoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.vkey())
    }
}
