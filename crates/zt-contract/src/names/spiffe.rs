//! SPIFFE IDs (`spiffe://trust-domain/path`), parsed strictly by the SPIFFE-ID specification.

use std::fmt;

/// Longest SPIFFE ID accepted, in bytes (the specification's limit).
const MAX_ID_BYTES: usize = 2048;
/// Longest trust domain accepted, in bytes.
const MAX_TRUST_DOMAIN_BYTES: usize = 255;
const SCHEME: &str = "spiffe://";

/// A valid SPIFFE ID. The actor of a caller authenticated by an X.509-SVID or a JWT-SVID is
/// this string, unchanged; an actor name starting `spiffe:` must be one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId(String);

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// Not `spiffe://` (the scheme is lower case).
    #[error("a spiffe id starts with `spiffe://`")]
    Scheme,
    /// Over 2048 bytes.
    #[error("a spiffe id is at most {MAX_ID_BYTES} bytes")]
    TooLong,
    /// Empty, too long, or with characters other than `a-z 0-9 . - _`.
    #[error(
        "the trust domain must be 1 to {MAX_TRUST_DOMAIN_BYTES} characters of `a-z 0-9 . - _`"
    )]
    TrustDomain,
    /// An empty, `.` or `..` segment, a trailing `/`, or characters other than
    /// `a-z A-Z 0-9 . - _` (no percent-encoding, query or fragment).
    #[error(
        "each path segment must be non-empty, not `.` or `..`, and use only `a-z A-Z 0-9 . - _`"
    )]
    Path,
}

impl SpiffeId {
    /// Parses `text` strictly; no normalization is applied.
    pub fn parse(text: &str) -> Result<Self, SpiffeIdError> {
        if text.len() > MAX_ID_BYTES {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = text.strip_prefix(SCHEME).ok_or(SpiffeIdError::Scheme)?;
        let (trust_domain, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let domain_ok = !trust_domain.is_empty()
            && trust_domain.len() <= MAX_TRUST_DOMAIN_BYTES
            && trust_domain.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        if !domain_ok {
            return Err(SpiffeIdError::TrustDomain);
        }
        if let Some(segments) = path.strip_prefix('/') {
            for segment in segments.split('/') {
                let ok = !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
                if !ok {
                    return Err(SpiffeIdError::Path);
                }
            }
        }
        Ok(Self(text.to_string()))
    }

    /// The ID as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain (`example.org` in `spiffe://example.org/agent`).
    pub fn trust_domain(&self) -> &str {
        let rest = self.0.get(SCHEME.len()..).unwrap_or_default();
        rest.split('/').next().unwrap_or_default()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for id in [
            "spiffe://example.org",
            "spiffe://example.org/agent/billing",
            "spiffe://td-1.example_org/ns/prod/sa/Worker.v2",
        ] {
            let parsed = SpiffeId::parse(id).unwrap();
            assert_eq!(parsed.as_str(), id);
        }
        assert_eq!(
            SpiffeId::parse("spiffe://example.org/a")
                .unwrap()
                .trust_domain(),
            "example.org"
        );
        assert_eq!(
            SpiffeId::parse("spiffe://example.org")
                .unwrap()
                .trust_domain(),
            "example.org"
        );
    }

    #[test]
    fn refuses_everything_else() {
        let cases = [
            ("", SpiffeIdError::Scheme),
            ("https://example.org/a", SpiffeIdError::Scheme),
            ("SPIFFE://example.org/a", SpiffeIdError::Scheme),
            ("spiffe:/example.org", SpiffeIdError::Scheme),
            ("spiffe://", SpiffeIdError::TrustDomain),
            ("spiffe:///a", SpiffeIdError::TrustDomain),
            ("spiffe://Example.org/a", SpiffeIdError::TrustDomain),
            ("spiffe://user@example.org/a", SpiffeIdError::TrustDomain),
            ("spiffe://example.org:8080/a", SpiffeIdError::TrustDomain),
            ("spiffe://example.org/", SpiffeIdError::Path),
            ("spiffe://example.org/a/", SpiffeIdError::Path),
            ("spiffe://example.org//a", SpiffeIdError::Path),
            ("spiffe://example.org/./a", SpiffeIdError::Path),
            ("spiffe://example.org/a/..", SpiffeIdError::Path),
            ("spiffe://example.org/a%20b", SpiffeIdError::Path),
            ("spiffe://example.org/a?x=1", SpiffeIdError::Path),
            ("spiffe://example.org/a#f", SpiffeIdError::Path),
            ("spiffe://example.org/a b", SpiffeIdError::Path),
        ];
        for (text, expected) in cases {
            assert_eq!(SpiffeId::parse(text), Err(expected), "{text:?}");
        }
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_ID_BYTES));
        assert_eq!(SpiffeId::parse(&long), Err(SpiffeIdError::TooLong));
        let domain = format!("spiffe://{}/a", "d".repeat(MAX_TRUST_DOMAIN_BYTES + 1));
        assert_eq!(SpiffeId::parse(&domain), Err(SpiffeIdError::TrustDomain));
    }
}
