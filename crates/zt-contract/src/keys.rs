//! Published verification keys: a JWKS of EC P-256 keys, and the set the verifier checks with.

use std::collections::HashMap;

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_ASN1};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{strict_json, Digest32};

/// One public key as `GET /audit/keys` publishes it (RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `EC`.
    pub kty: String,
    /// `P-256`.
    pub crv: String,
    /// Big-endian X coordinate, base64url without padding.
    pub x: String,
    /// Big-endian Y coordinate, base64url without padding.
    pub y: String,
    /// The `key_id` records name.
    pub kid: String,
    /// `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// On a session key only: its certificate by a custody key (see
    /// [`crate::session_cert`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zt_session: Option<crate::session_cert::SessionCertificate>,
}

impl Jwk {
    /// A P-256 JWK from an uncompressed SEC1 point (`04 || X || Y`).
    pub fn from_uncompressed_p256(kid: &str, point: &[u8]) -> Result<Self, KeyError> {
        match point {
            [4, rest @ ..] if rest.len() == 64 => {
                let (x, y) = rest.split_at(32);
                Ok(Self {
                    kty: "EC".into(),
                    crv: "P-256".into(),
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: URL_SAFE_NO_PAD.encode(y),
                    kid: kid.into(),
                    key_use: Some("sig".into()),
                    alg: Some("ES256".into()),
                    zt_session: None,
                })
            }
            _ => Err(KeyError::Malformed(kid.into())),
        }
    }

    /// The uncompressed SEC1 point of this key.
    pub fn uncompressed_point(&self) -> Result<Vec<u8>, KeyError> {
        if self.kty != "EC" || self.crv != "P-256" {
            return Err(KeyError::Unsupported(self.kid.clone()));
        }
        let x = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|_| KeyError::Malformed(self.kid.clone()))?;
        let y = URL_SAFE_NO_PAD
            .decode(&self.y)
            .map_err(|_| KeyError::Malformed(self.kid.clone()))?;
        if x.len() != 32 || y.len() != 32 {
            return Err(KeyError::Malformed(self.kid.clone()));
        }
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Ok(point)
    }
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Reads a JWKS document strictly ([`crate::strict_json`]): an object at the top, no key
    /// twice at any depth, a key only ever read from an object. A key set is a trust anchor:
    /// a file with two `x` members, or a key written as a positional array, must not mean one
    /// key to this reader and another to the next.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeyError> {
        let document =
            strict_json::parse_document(bytes).map_err(|e| KeyError::NotJwks(e.to_string()))?;
        Self::from_document(&document)
    }

    /// Reads a JWKS from an already parsed JSON object, as [`Jwks::from_json`] does (only the
    /// duplicate keys the parse already merged cannot be seen).
    pub fn from_document(document: &Map<String, Value>) -> Result<Self, KeyError> {
        strict_json::from_document(document).map_err(|e| KeyError::NotJwks(e.to_string()))
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Not an EC P-256 key.
    #[error("key `{0}` is not an EC P-256 key")]
    Unsupported(String),
    /// Coordinates that do not decode to a point on the curve.
    #[error("key `{0}` is malformed")]
    Malformed(String),
    /// Two keys with one id.
    #[error("key id `{0}` appears twice")]
    DuplicateId(String),
    /// Not a JWKS document (`{"keys": [...]}`), or an ambiguous one.
    #[error("not a jwks: {0}")]
    NotJwks(String),
    /// A session key whose certificate does not hold.
    #[error(transparent)]
    Session(#[from] crate::session_cert::SessionCertError),
}

/// Parsed public keys by key id, ready to verify record signatures. Cloning shares the
/// parsed keys (each verifying thread holds its own set).
#[derive(Default, Clone)]
pub struct PublicKeySet {
    keys: HashMap<String, ParsedPublicKey>,
    /// The certificates of session keys, by key id; custody keys have none.
    sessions: HashMap<String, crate::session_cert::SessionCertificate>,
}

impl std::fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKeySet")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PublicKeySet {
    /// Parses every key of `jwks`; one bad key rejects the whole set. A session key (one
    /// with a `zt_session` certificate) must be certified by a custody key of the set.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, KeyError> {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let point = jwk.uncompressed_point()?;
            let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
                .map_err(|_| KeyError::Malformed(jwk.kid.clone()))?;
            if keys.insert(jwk.kid.clone(), parsed).is_some() {
                return Err(KeyError::DuplicateId(jwk.kid.clone()));
            }
        }
        let mut set = Self {
            keys,
            sessions: HashMap::new(),
        };
        set.sessions = crate::session_cert::certified_sessions(&set, jwks)?;
        Ok(set)
    }

    /// True if `key_id` may sign a record stamped `timestamp`: always for a custody key, and
    /// inside its certified validity period for a session key.
    pub fn valid_at(&self, key_id: &str, timestamp: &str) -> bool {
        match self.sessions.get(key_id) {
            Some(cert) => cert.covers(timestamp),
            None => self.keys.contains_key(key_id),
        }
    }

    /// True if `key_id` names a session key.
    pub fn is_session_key(&self, key_id: &str) -> bool {
        self.sessions.contains_key(key_id)
    }

    /// The custody key behind `key_id`: the key that certified it for a session key, the key
    /// itself for a custody key; `None` for a key not in the set.
    pub fn custody_key_of(&self, key_id: &str) -> Option<&str> {
        match self.sessions.get(key_id) {
            Some(cert) => Some(cert.custody_key_id.as_str()),
            None => self.keys.get_key_value(key_id).map(|(kid, _)| kid.as_str()),
        }
    }

    /// The uncompressed SEC1 point of the key `key_id`.
    pub fn point(&self, key_id: &str) -> Option<&[u8]> {
        self.keys.get(key_id).map(AsRef::as_ref)
    }

    /// True if a key with this id is known.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a DER ECDSA signature over a 32-byte digest with the key `key_id`.
    pub fn verify_digest(&self, key_id: &str, digest: &Digest32, signature_der: &[u8]) -> bool {
        let Some(key) = self.keys.get(key_id) else {
            return false;
        };
        let Ok(digest) = Digest::import_less_safe(&digest.0, &SHA256) else {
            return false;
        };
        key.verify_digest_sig(&digest, signature_der).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::key;

    fn one_key_document() -> (Jwk, String) {
        let (_, jwk) = key("k1");
        let text = serde_json::to_string(&Jwks {
            keys: vec![jwk.clone()],
        })
        .unwrap();
        (jwk, text)
    }

    #[test]
    fn a_plain_jwks_reads_as_serde_reads_it() {
        let (jwk, text) = one_key_document();
        let read = Jwks::from_json(text.as_bytes()).unwrap();
        assert_eq!(read.keys, vec![jwk]);
        assert_eq!(read, serde_json::from_str::<Jwks>(&text).unwrap());
        // Members a JWK may carry that this reader does not use are not a reason to refuse.
        let extra = text.replacen("\"kty\"", "\"x5t\":\"abc\",\"kty\"", 1);
        assert_eq!(Jwks::from_json(extra.as_bytes()).unwrap(), read);
    }

    #[test]
    fn a_member_given_twice_is_refused() {
        let (_, text) = one_key_document();
        let (_, other) = key("k2");
        // A second `x` before the real one (serde's derived types refuse it too; the strict
        // parse refuses it whatever the type, before any field is read).
        let doubled = text.replacen("\"kty\"", &format!("\"x\":\"{}\",\"kty\"", other.x), 1);
        assert_ne!(doubled, text);
        let refused = Jwks::from_json(doubled.as_bytes()).unwrap_err();
        assert!(
            matches!(&refused, KeyError::NotJwks(why) if why.contains("duplicate")),
            "{refused}"
        );
        let keys_twice = format!("{{\"keys\":[],{}", &text[1..]);
        assert!(matches!(
            Jwks::from_json(keys_twice.as_bytes()),
            Err(KeyError::NotJwks(_))
        ));
    }

    #[test]
    fn a_key_written_as_a_positional_array_is_refused() {
        let (_, jwk) = key("k1");
        let positional = serde_json::json!({"keys": [[jwk.kty, jwk.crv, jwk.x, jwk.y, jwk.kid]]});
        // serde_json alone reads the array as the key, field by field.
        assert_eq!(
            serde_json::from_value::<Jwks>(positional.clone())
                .unwrap()
                .keys[0]
                .kid,
            "k1"
        );
        let text = positional.to_string();
        assert!(matches!(
            Jwks::from_json(text.as_bytes()),
            Err(KeyError::NotJwks(_))
        ));
        let Value::Object(document) = positional else {
            unreachable!()
        };
        assert!(matches!(
            Jwks::from_document(&document),
            Err(KeyError::NotJwks(_))
        ));
        // And a document that is not an object at all.
        assert!(matches!(
            Jwks::from_json(b"[[]]"),
            Err(KeyError::NotJwks(_))
        ));
    }
}
