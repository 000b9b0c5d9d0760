//! Action names (what a request asks for) and action patterns (what a policy names).

use std::fmt;

use super::{char_at, NameError, NameKind, Shown};

/// Longest action name, in bytes.
pub const MAX_ACTION_BYTES: usize = 256;
/// Most dot-separated segments in an action name.
pub const MAX_ACTION_SEGMENTS: usize = 32;

const ACTION_ALPHABET: &str =
    "use ASCII letters, digits, `_` and `-`, in segments separated by `.`";

/// A valid action name, folded to lower case: `aws.s3.delete_bucket`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionName(String);

impl ActionName {
    /// Parses a request's action, folding ASCII upper case to lower case. Runs in time linear
    /// in the length of `text`, and refuses anything over [`MAX_ACTION_BYTES`] before reading it.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        check_segments(text, NameKind::Action, Case::Fold)?;
        Ok(Self(text.to_ascii_lowercase()))
    }

    /// The folded name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folded name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ActionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ActionName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<ActionName> for String {
    fn from(name: ActionName) -> Self {
        name.0
    }
}

/// What a policy may name where actions are matched, always in lower case (requests are
/// folded, so an upper-case pattern could never match and is refused):
/// `*` (every action), `aws.s3.*` (a group: every action starting `aws.s3.`),
/// `aws.s3.delete*` (a prefix not at a dot, in the reference JSON format) or
/// `aws.s3.delete_bucket` (exactly that action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionPattern {
    /// `*`.
    All,
    /// `<prefix>*` where the prefix ends with a dot; holds the prefix (`aws.s3.`).
    Group(String),
    /// `<prefix>*` where the prefix does not end with a dot; holds the prefix (`aws.s3.delete`).
    Prefix(String),
    /// An action name.
    Exact(ActionName),
}

impl ActionPattern {
    /// Parses a pattern written in a policy. Never folds: upper case is refused.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let kind = NameKind::ActionPattern;
        if text == "*" {
            return Ok(Self::All);
        }
        let Some(prefix) = text.strip_suffix('*') else {
            check_segments(text, kind, Case::Lower)?;
            return Ok(Self::Exact(ActionName(text.to_string())));
        };
        match prefix.strip_suffix('.') {
            Some(group) => {
                check_segments(group, kind, Case::Lower)?;
                Ok(Self::Group(prefix.to_string()))
            }
            None => {
                check_segments(prefix, kind, Case::Lower)?;
                Ok(Self::Prefix(prefix.to_string()))
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// Upper case is accepted (the caller folds).
    Fold,
    /// Upper case is refused.
    Lower,
}

/// Checks `text` against the action grammar in one pass over its bytes.
fn check_segments(text: &str, kind: NameKind, case: Case) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty(kind));
    }
    if text.len() > MAX_ACTION_BYTES {
        return Err(NameError::TooLong {
            kind,
            max: MAX_ACTION_BYTES,
        });
    }
    let mut segments = 1;
    let mut segment_empty = true;
    for (at, byte) in text.bytes().enumerate() {
        match byte {
            b'.' => {
                if segment_empty {
                    return Err(NameError::EmptySegment { kind, at });
                }
                segments += 1;
                if segments > MAX_ACTION_SEGMENTS {
                    return Err(NameError::TooManySegments {
                        kind,
                        max: MAX_ACTION_SEGMENTS,
                    });
                }
                segment_empty = true;
            }
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => segment_empty = false,
            b'A'..=b'Z' if case == Case::Fold => segment_empty = false,
            b'A'..=b'Z' => {
                return Err(NameError::UpperCase {
                    kind,
                    character: Shown(char::from(byte)),
                    at,
                })
            }
            b'*' => return Err(NameError::Wildcard { kind, at }),
            _ => {
                return Err(NameError::Character {
                    kind,
                    character: Shown(char_at(text, at)),
                    at,
                    allowed: ACTION_ALPHABET,
                })
            }
        }
    }
    if segment_empty {
        return Err(NameError::EmptySegment {
            kind,
            at: text.len() - 1,
        });
    }
    Ok(())
}
