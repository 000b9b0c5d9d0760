//! Session keys certified by the custody key.
//!
//! In session-key mode the control plane signs records with an in-memory P-256 key and has
//! the custody key (AWS KMS, an HSM) sign a statement binding that key to a validity period
//! and to the log's origin. The session key is published in `GET /audit/keys` with that
//! statement in its `zt_session` member; custody keys carry none. A session key is trusted
//! only if its statement verifies with a custody key of the same set, and a record it signed
//! only if the record's timestamp falls inside the statement's validity period.
//!
//! The signed statement is the SHA-256 of the canonical JSON (keys sorted, no whitespace) of
//! `{"crv","custody_key_id","kid","kty","not_after","not_before","origin","type","x","y"}`,
//! `type` being [`SESSION_STATEMENT_TYPE`], signed as a digest exactly as records are
//! (`ECDSA_SHA_256`, DER, base64).

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::canonical::canonical_json;
use crate::keys::Jwk;
use crate::timestamp::is_wire_timestamp;
use crate::Digest32;

/// The `type` of the signed statement.
pub const SESSION_STATEMENT_TYPE: &str = "zt-session-key/v1";

/// The certificate of a session key, as published in its JWK's `zt_session` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCertificate {
    /// The custody key that signed the statement (a `kid` of the same key set).
    pub custody_key_id: String,
    /// The log the session key signs for.
    pub origin: String,
    /// First instant the key may sign (wire timestamp, inclusive).
    pub not_before: String,
    /// Last instant the key may sign (wire timestamp, inclusive).
    pub not_after: String,
    /// Base64 DER ECDSA signature of the statement digest by the custody key.
    pub signature: String,
}

/// Why a session key is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionCertError {
    /// The certificate names a key that is not a custody key of the set.
    #[error("session key `{0}` is certified by `{1}`, which is not a custody key of the set")]
    UnknownCustodyKey(String, String),
    /// The validity period is not two wire timestamps in order.
    #[error("session key `{0}` has a malformed validity period")]
    Validity(String),
    /// The custody key's signature does not verify.
    #[error("session key `{0}` has a certificate that does not verify")]
    Signature(String),
}

/// The digest the custody key signs for `session` (its `zt_session` member is ignored).
pub fn session_statement_digest(session: &Jwk, cert: &SessionCertificate) -> Digest32 {
    let statement = json!({
        "crv": session.crv,
        "custody_key_id": cert.custody_key_id,
        "kid": session.kid,
        "kty": session.kty,
        "not_after": cert.not_after,
        "not_before": cert.not_before,
        "origin": cert.origin,
        "type": SESSION_STATEMENT_TYPE,
        "x": session.x,
        "y": session.y,
    });
    Digest32::sha256(canonical_json(&statement).as_bytes())
}

impl SessionCertificate {
    /// True if `timestamp` (a wire timestamp) is inside the validity period. Wire timestamps
    /// have one fixed shape, so they compare as text.
    pub fn covers(&self, timestamp: &str) -> bool {
        is_wire_timestamp(timestamp)
            && self.not_before.as_str() <= timestamp
            && timestamp <= self.not_after.as_str()
    }

    /// Checks the shape of the validity period.
    pub fn check_validity(&self, kid: &str) -> Result<(), SessionCertError> {
        if is_wire_timestamp(&self.not_before)
            && is_wire_timestamp(&self.not_after)
            && self.not_before <= self.not_after
        {
            Ok(())
        } else {
            Err(SessionCertError::Validity(kid.to_string()))
        }
    }
}

/// Checks the certificate of every session key of `jwks` against the custody keys of `set`
/// (the keys of `jwks` without a certificate); returns the certificates by key id.
pub(crate) fn certified_sessions(
    set: &crate::PublicKeySet,
    jwks: &crate::Jwks,
) -> Result<HashMap<String, SessionCertificate>, SessionCertError> {
    let custody: Vec<&str> = jwks
        .keys
        .iter()
        .filter(|k| k.zt_session.is_none())
        .map(|k| k.kid.as_str())
        .collect();
    let mut sessions = HashMap::new();
    for jwk in &jwks.keys {
        let Some(cert) = &jwk.zt_session else {
            continue;
        };
        if !custody.contains(&cert.custody_key_id.as_str()) {
            return Err(SessionCertError::UnknownCustodyKey(
                jwk.kid.clone(),
                cert.custody_key_id.clone(),
            ));
        }
        cert.check_validity(&jwk.kid)?;
        let digest = session_statement_digest(jwk, cert);
        let verified = STANDARD
            .decode(&cert.signature)
            .is_ok_and(|der| set.verify_digest(&cert.custody_key_id, &digest, &der));
        if !verified {
            return Err(SessionCertError::Signature(jwk.kid.clone()));
        }
        sessions.insert(jwk.kid.clone(), cert.clone());
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::{key, sign};
    use crate::{Jwks, PublicKeySet};
    use aws_lc_rs::signature::EcdsaKeyPair;

    fn certified(custody: &EcdsaKeyPair, custody_kid: &str, kid: &str) -> Jwk {
        let (_, mut session) = key(kid);
        let mut cert = SessionCertificate {
            custody_key_id: custody_kid.into(),
            origin: "zt-infra/test".into(),
            not_before: "2026-01-01T00:00:00.000Z".into(),
            not_after: "2026-01-01T01:00:00.000Z".into(),
            signature: String::new(),
        };
        cert.signature = sign(custody, &session_statement_digest(&session, &cert));
        session.zt_session = Some(cert);
        session
    }

    #[test]
    fn a_certified_session_key_is_trusted_and_bounded_in_time() {
        let (custody, custody_jwk) = key("custody");
        let session = certified(&custody, "custody", "session-1");
        let set = PublicKeySet::from_jwks(&Jwks {
            keys: vec![custody_jwk.clone(), session.clone()],
        })
        .unwrap();
        assert!(set.contains("session-1"));
        assert!(set.valid_at("session-1", "2026-01-01T00:30:00.000Z"));
        assert!(!set.valid_at("session-1", "2026-01-01T01:00:00.001Z"));
        assert!(!set.valid_at("session-1", "2025-12-31T23:59:59.999Z"));
        assert!(set.valid_at("custody", "2030-01-01T00:00:00.000Z"));

        // Any change to the certified statement breaks it.
        let mut moved = session.clone();
        if let Some(cert) = moved.zt_session.as_mut() {
            cert.not_after = "2027-01-01T00:00:00.000Z".into();
        }
        let err = PublicKeySet::from_jwks(&Jwks {
            keys: vec![custody_jwk.clone(), moved],
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("does not verify"), "{err}");

        // Certified by a key that is not in the set, or by another session key.
        let (stranger, _) = key("stranger");
        let orphan = certified(&stranger, "stranger", "session-2");
        assert!(PublicKeySet::from_jwks(&Jwks {
            keys: vec![custody_jwk.clone(), orphan],
        })
        .is_err());
        let (session_pair, _) = key("x");
        let chained = certified(&session_pair, "session-1", "session-3");
        assert!(PublicKeySet::from_jwks(&Jwks {
            keys: vec![custody_jwk, session, chained],
        })
        .is_err());
    }
}
