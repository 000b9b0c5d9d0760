//! Bearer tokens: 256 random bits, shown once, stored only as SHA-256.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zt_contract::Digest32;

/// Prefix of agent tokens, so a leaked one is recognizable in a secret scanner.
pub(crate) const AGENT_TOKEN_PREFIX: &str = "zt_agent_";
/// Prefix of admin tokens.
pub(crate) const ADMIN_TOKEN_PREFIX: &str = "zt_admin_";

/// A fresh token with `prefix`; `None` only if the system RNG fails.
pub(crate) fn new_token(prefix: &str) -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// What the registry stores for a token: hex SHA-256. Tokens carry 256 bits of entropy, so a
/// fast hash is enough (no password stretching is needed).
pub(crate) fn token_hash(token: &str) -> String {
    Digest32::sha256(token.as_bytes()).to_hex()
}

/// The token of an `Authorization: Bearer <token>` header value.
pub(crate) fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let a = new_token(AGENT_TOKEN_PREFIX).unwrap();
        let b = new_token(AGENT_TOKEN_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(AGENT_TOKEN_PREFIX));
        assert_eq!(a.len(), AGENT_TOKEN_PREFIX.len() + 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
