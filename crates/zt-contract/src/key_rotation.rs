//! Rotation of the custody key, endorsed by the outgoing key.
//!
//! When the custody key changes, the first record the new key signs (`action:
//! zt.audit.key.rotate`) carries a `key_rotation` member: the outgoing key's signature over a
//! statement naming the incoming key by id and public point, for the log `origin`. A verifier
//! then sees custody pass from one key to the next without trusting the server's word: the
//! endorsement verifies with the outgoing key's published public key, and the endorsed point
//! is the incoming key's published point. A rotation whose outgoing key was lost or destroyed
//! before it could endorse carries no endorsement (`endorsement: null`) and says so.
//!
//! The rotation is bound to its place in the log: `previous_hash` is the `current_hash` of the
//! record before the rotation record, the outgoing key's last. So the outgoing key endorses
//! the incoming one from that record on and not from any other, and a verifier holds the
//! rotation record to that place ([`KeyRotation::check_position`]): an endorsement cannot be
//! copied into a fork of the log that hands custody over earlier.
//!
//! The signed statement is the SHA-256 of the canonical JSON (keys sorted, no whitespace) of
//! `{"crv","kid","kty","origin","previous_hash","previous_key_id","type","x","y"}`, `type`
//! being [`ROTATION_STATEMENT_TYPE`], signed as a digest exactly as records are
//! (`ECDSA_SHA_256`, DER, base64). A rotation that names no place has no `previous_hash`: one
//! writer's among several sharing a log ([`KeyRotation::unplaced`]), whose records come between
//! the outgoing key's last and the rotation, or one recorded before the binding existed. Its
//! statement omits `previous_hash` and has the type [`UNBOUND_ROTATION_STATEMENT_TYPE`], and it
//! verifies wherever it stands, as rotations always did.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::canonical::canonical_json;
use crate::keys::{Jwk, PublicKeySet};
use crate::Digest32;

/// The `type` of the signed statement.
pub const ROTATION_STATEMENT_TYPE: &str = "zt-key-rotation/v2";

/// The `type` of the statement of a rotation recorded without its place in the log.
pub const UNBOUND_ROTATION_STATEMENT_TYPE: &str = "zt-key-rotation/v1";

/// The `key_rotation` member of a rotation record. Fields are declared in sorted order, as
/// in the record body, so serde writes canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// Base64 DER ECDSA signature of the statement digest by the outgoing key; `None` when the
    /// outgoing key was not available to endorse.
    pub endorsement: Option<String>,
    /// The incoming custody key.
    pub key_id: String,
    /// The log whose custody passes.
    pub origin: String,
    /// The `current_hash` (hex) of the record before the rotation record: where custody
    /// passes. `None` in a rotation that names no place (see the module documentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_hash: Option<String>,
    /// The outgoing custody key (a `kid` of the published set).
    pub previous_key_id: String,
    /// The incoming key's X coordinate (base64url, as in its JWK).
    pub x: String,
    /// The incoming key's Y coordinate.
    pub y: String,
}

impl KeyRotation {
    /// The rotation from `previous_key_id` to `incoming` for the log `origin`, right after the
    /// record whose hash is `after`; not yet endorsed.
    pub fn new(previous_key_id: &str, incoming: &Jwk, origin: &str, after: &Digest32) -> Self {
        Self {
            previous_hash: Some(after.to_hex()),
            ..Self::unplaced(previous_key_id, incoming, origin)
        }
    }

    /// The rotation from `previous_key_id` to `incoming` for the log `origin` at no named place:
    /// one writer's rotation among several sharing the log, whose records come between the
    /// outgoing key's last and the rotation record; not yet endorsed.
    pub fn unplaced(previous_key_id: &str, incoming: &Jwk, origin: &str) -> Self {
        Self {
            previous_key_id: previous_key_id.to_string(),
            key_id: incoming.kid.clone(),
            origin: origin.to_string(),
            previous_hash: None,
            x: incoming.x.clone(),
            y: incoming.y.clone(),
            endorsement: None,
        }
    }

    /// The digest the outgoing key signs.
    pub fn statement_digest(&self) -> Digest32 {
        let mut statement = json!({
            "crv": "P-256",
            "kid": self.key_id,
            "kty": "EC",
            "origin": self.origin,
            "previous_key_id": self.previous_key_id,
            "type": UNBOUND_ROTATION_STATEMENT_TYPE,
            "x": self.x,
            "y": self.y,
        });
        if let (Some(previous_hash), Some(fields)) =
            (&self.previous_hash, statement.as_object_mut())
        {
            fields.insert("previous_hash".into(), json!(previous_hash));
            fields.insert("type".into(), json!(ROTATION_STATEMENT_TYPE));
        }
        Digest32::sha256(canonical_json(&statement).as_bytes())
    }

    /// Checks that the rotation record stands where custody was handed over: its
    /// `previous_hash` (`record_previous_hash`) is the statement's, and the record before it
    /// was signed under the outgoing key (`previous_custody`: the custody key behind that
    /// record's signature, `None` when the verifier did not see it, as when it resumed at the
    /// rotation record). A rotation that names no place passes unchecked.
    pub fn check_position(
        &self,
        record_previous_hash: &str,
        previous_custody: Option<&str>,
    ) -> Result<(), String> {
        let Some(bound) = &self.previous_hash else {
            return Ok(());
        };
        if bound != record_previous_hash {
            return Err(format!(
                "a rotation endorsed after the record `{bound}` in the record after `{record_previous_hash}`"
            ));
        }
        if record_previous_hash == crate::GENESIS_HASH {
            return Err(
                "a rotation as the log's first record, with no outgoing key's records before it"
                    .into(),
            );
        }
        match previous_custody {
            Some(custody) if custody != self.previous_key_id => Err(format!(
                "a rotation from `{}` after a record signed under `{custody}`",
                self.previous_key_id
            )),
            _ => Ok(()),
        }
    }

    /// Checks the rotation against the published keys: two different custody keys of `keys`,
    /// the endorsed point is the incoming key's, and the endorsement, when there is one,
    /// verifies with the outgoing key. `Ok(true)` if endorsed, `Ok(false)` if not.
    pub fn check(&self, keys: &PublicKeySet) -> Result<bool, String> {
        // A key "endorsing" itself proves nothing about custody passing to it.
        if self.previous_key_id == self.key_id {
            return Err(format!("a rotation from `{}` to itself", self.key_id));
        }
        for kid in [&self.previous_key_id, &self.key_id] {
            if !keys.contains(kid) || keys.is_session_key(kid) {
                return Err(format!("custody key `{kid}` is not published"));
            }
        }
        let incoming = Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: self.x.clone(),
            y: self.y.clone(),
            kid: self.key_id.clone(),
            key_use: None,
            alg: None,
            zt_session: None,
        };
        let endorsed = incoming
            .uncompressed_point()
            .map_err(|_| "the endorsed key is not a P-256 point".to_string())?;
        if keys.point(&self.key_id) != Some(endorsed.as_slice()) {
            return Err(format!(
                "the endorsed key is not the published key `{}`",
                self.key_id
            ));
        }
        let Some(endorsement) = &self.endorsement else {
            return Ok(false);
        };
        let der = STANDARD
            .decode(endorsement)
            .map_err(|_| "the endorsement is not base64".to_string())?;
        if keys.verify_digest(&self.previous_key_id, &self.statement_digest(), &der) {
            Ok(true)
        } else {
            Err(format!(
                "the endorsement does not verify with `{}`",
                self.previous_key_id
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::{key, sign};
    use crate::Jwks;
    use aws_lc_rs::signature::EcdsaKeyPair;

    fn endorse(by: &EcdsaKeyPair, rotation: &KeyRotation) -> String {
        sign(by, &rotation.statement_digest())
    }

    /// The hash of the record the rotations of these tests follow.
    fn after() -> Digest32 {
        Digest32::sha256(b"the outgoing key's last record")
    }

    #[test]
    fn the_statement_is_the_documented_canonical_json() {
        let (_, new_jwk) = key("new");
        let rotation = KeyRotation::new("old", &new_jwk, "zt-infra/test", &after());
        let bound = format!(
            r#"{{"crv":"P-256","kid":"new","kty":"EC","origin":"zt-infra/test","previous_hash":"{}","previous_key_id":"old","type":"zt-key-rotation/v2","x":"{}","y":"{}"}}"#,
            after().to_hex(),
            new_jwk.x,
            new_jwk.y
        );
        assert_eq!(
            rotation.statement_digest(),
            Digest32::sha256(bound.as_bytes())
        );
        // A rotation naming no place (a replica's, or one recorded before the binding) has
        // the statement rotations were endorsed over before.
        let rotation = KeyRotation::unplaced("old", &new_jwk, "zt-infra/test");
        let unbound = format!(
            r#"{{"crv":"P-256","kid":"new","kty":"EC","origin":"zt-infra/test","previous_key_id":"old","type":"zt-key-rotation/v1","x":"{}","y":"{}"}}"#,
            new_jwk.x, new_jwk.y
        );
        assert_eq!(
            rotation.statement_digest(),
            Digest32::sha256(unbound.as_bytes())
        );
    }

    #[test]
    fn a_bound_rotation_holds_only_right_after_the_outgoing_keys_record() {
        let (_, new_jwk) = key("new");
        let rotation = KeyRotation::new("old", &new_jwk, "zt-infra/test", &after());
        let here = after().to_hex();
        assert_eq!(rotation.check_position(&here, Some("old")), Ok(()));
        // The verifier did not see the record before (it resumed here): the link alone.
        assert_eq!(rotation.check_position(&here, None), Ok(()));
        // Another place, or a record before it signed under another key, is refused.
        let elsewhere = Digest32::sha256(b"another record").to_hex();
        assert!(rotation.check_position(&elsewhere, Some("old")).is_err());
        assert!(rotation.check_position(&here, Some("new")).is_err());
        assert!(rotation.check_position(&here, Some("other")).is_err());
        // Custody cannot pass at the log's first record.
        let mut at_genesis = rotation.clone();
        at_genesis.previous_hash = Some(crate::GENESIS_HASH.into());
        assert!(at_genesis
            .check_position(crate::GENESIS_HASH, None)
            .is_err());
        // A rotation that names no place is not held to one.
        let mut unbound = rotation;
        unbound.previous_hash = None;
        assert_eq!(unbound.check_position(&elsewhere, Some("other")), Ok(()));
    }

    #[test]
    fn an_endorsement_holds_only_for_the_published_incoming_key_signed_by_the_outgoing_one() {
        let (old, old_jwk) = key("old");
        let (new, new_jwk) = key("new");
        let (_, other_jwk) = key("other");
        let keys = PublicKeySet::from_jwks(&Jwks {
            keys: vec![old_jwk.clone(), new_jwk.clone(), other_jwk.clone()],
        })
        .unwrap();
        let mut rotation = KeyRotation::new("old", &new_jwk, "zt-infra/test", &after());
        assert_eq!(rotation.check(&keys), Ok(false));
        rotation.endorsement = Some(endorse(&old, &rotation));
        assert_eq!(rotation.check(&keys), Ok(true));

        // Signed by the incoming key itself: not an endorsement.
        let mut self_signed = rotation.clone();
        self_signed.endorsement = Some(endorse(&new, &rotation));
        assert!(self_signed.check(&keys).is_err());
        // Another origin, or another endorsed point, breaks the signature or the binding.
        let mut moved = rotation.clone();
        moved.origin = "zt-infra/other".into();
        assert!(moved.check(&keys).is_err());
        // Another place in the log breaks the signature.
        let mut elsewhere = rotation.clone();
        elsewhere.previous_hash = Some(Digest32::sha256(b"another record").to_hex());
        assert!(elsewhere.check(&keys).is_err());
        let mut unbound = rotation.clone();
        unbound.previous_hash = None;
        assert!(unbound.check(&keys).is_err());
        let mut swapped = rotation.clone();
        swapped.x = other_jwk.x.clone();
        swapped.y = other_jwk.y.clone();
        assert!(swapped.check(&keys).is_err());
        // Both keys must be published.
        let only_new = PublicKeySet::from_jwks(&Jwks {
            keys: vec![new_jwk.clone()],
        })
        .unwrap();
        assert!(rotation.check(&only_new).is_err());
        // A key cannot endorse itself as its own successor.
        let mut to_itself = KeyRotation::new("new", &new_jwk, "zt-infra/test", &after());
        to_itself.endorsement = Some(endorse(&new, &to_itself));
        assert!(to_itself.check(&keys).is_err());
    }
}
