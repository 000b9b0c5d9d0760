//! Actor names: a SPIFFE ID, or a plain ASCII name.

use std::fmt;

use super::{char_at, NameError, NameKind, Shown, SpiffeId};

/// Longest plain (non-SPIFFE) actor name, in bytes.
pub const MAX_ACTOR_BYTES: usize = 256;

const ACTOR_ALPHABET: &str =
    "an actor is a SPIFFE ID, or ASCII letters, digits, `_`, `-`, `.`, `@` and `:` starting \
     with a letter or digit";

/// A valid actor name, exactly as given (actors are not folded or normalized: a name that
/// would need it is refused).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorName(String);

impl ActorName {
    /// Parses an actor: a name starting `spiffe:` (in any case) must be a valid SPIFFE ID;
    /// anything else must be a plain name of the safe ASCII alphabet.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let kind = NameKind::Actor;
        if text.is_empty() {
            return Err(NameError::Empty(kind));
        }
        let claims_spiffe = text
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("spiffe:"));
        if claims_spiffe {
            return Ok(Self(SpiffeId::parse(text)?.as_str().to_string()));
        }
        if text.len() > MAX_ACTOR_BYTES {
            return Err(NameError::TooLong {
                kind,
                max: MAX_ACTOR_BYTES,
            });
        }
        for (at, byte) in text.bytes().enumerate() {
            let allowed = byte.is_ascii_alphanumeric()
                || (at > 0 && matches!(byte, b'_' | b'-' | b'.' | b'@' | b':'));
            if !allowed {
                return Err(NameError::Character {
                    kind,
                    character: Shown(char_at(text, at)),
                    at,
                    allowed: ACTOR_ALPHABET,
                });
            }
        }
        Ok(Self(text.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ActorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ActorName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<ActorName> for String {
    fn from(name: ActorName) -> Self {
        name.0
    }
}
