//! The grammar of the names an agent sends: action names, actor names and resource ids. Every
//! name is hostile input, so each has one parser here, used by the server before any policy
//! work, by the policy engine, and by anything else that takes names from the outside.
//!
//! - **Actions** ([`ActionName`]): dot-separated segments of ASCII letters, digits, `_` and
//!   `-`; at most [`MAX_ACTION_BYTES`] bytes and [`MAX_ACTION_SEGMENTS`] segments; no empty
//!   segment; no `*`. Upper case is accepted and folded to lower case, so `aws.s3.DELETE_bucket`
//!   is the action `aws.s3.delete_bucket` (decided, recorded and answered folded). Policies
//!   name actions and groups in lower case ([`ActionPattern`]).
//! - **Actors** ([`ActorName`]): a SPIFFE ID ([`SpiffeId`], as the SPIFFE specification has
//!   it), or 1 to [`MAX_ACTOR_BYTES`] bytes of ASCII letters, digits, `_ - . @ :` starting with
//!   a letter or digit. Actors are not folded (`Coder` and `coder` are two actors); being ASCII,
//!   they cannot hold look-alike, invisible or differently normalized characters.
//! - **Resources** ([`ResourceName`]): any text up to [`MAX_RESOURCE_BYTES`] bytes without
//!   control, invisible, bidirectional-override or non-ASCII space characters and without a
//!   leading or trailing space, normalized to Unicode NFC (empty means no resource).
//!
//! Refusals never echo the input: they name the offending character by code point and its
//! byte offset.

mod action;
mod actor;
mod resource;
mod spiffe;

use std::fmt;

pub use action::{ActionName, ActionPattern, MAX_ACTION_BYTES, MAX_ACTION_SEGMENTS};
pub use actor::{ActorName, MAX_ACTOR_BYTES};
pub use resource::{ResourceName, MAX_RESOURCE_BYTES};
pub use spiffe::{SpiffeId, SpiffeIdError};

/// Which kind of name a [`NameError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameKind {
    /// A request's action.
    Action,
    /// An action or action group named by a policy.
    ActionPattern,
    /// An actor.
    Actor,
    /// A resource id.
    Resource,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Action => "action",
            NameKind::ActionPattern => "policy action",
            NameKind::Actor => "actor",
            NameKind::Resource => "resource",
        })
    }
}

/// A character shown in an error: its code point, plus the character itself when it is
/// printable ASCII (anything else could be invisible or reorder the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown(pub char);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c.is_ascii_graphic() {
            write!(f, "`{c}` (U+{:04X})", u32::from(c))
        } else {
            write!(f, "U+{:04X}", u32::from(c))
        }
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing where a name is required.
    #[error("{0} is empty")]
    Empty(NameKind),
    /// Over the kind's length limit.
    #[error("{kind} is longer than {max} bytes")]
    TooLong {
        /// What was refused.
        kind: NameKind,
        /// The limit.
        max: usize,
    },
    /// An action with too many dot-separated segments.
    #[error("{kind} has more than {max} dot-separated segments")]
    TooManySegments {
        /// What was refused.
        kind: NameKind,
        /// The limit.
        max: usize,
    },
    /// Two dots in a row, or a dot at the start or the end.
    #[error(
        "{kind} has an empty segment at byte {at} (segments are separated by single dots, \
         and the name neither starts nor ends with a dot)"
    )]
    EmptySegment {
        /// What was refused.
        kind: NameKind,
        /// Byte offset of the offending dot.
        at: usize,
    },
    /// A character outside the kind's alphabet.
    #[error("{kind} contains {character} at byte {at}, which is not allowed ({allowed})")]
    Character {
        /// What was refused.
        kind: NameKind,
        /// The character.
        character: Shown,
        /// Its byte offset.
        at: usize,
        /// What is allowed instead.
        allowed: &'static str,
    },
    /// A `*` in a name (a policy wildcard, never part of an action).
    #[error("{kind} contains `*` at byte {at}: `*` is a policy wildcard, never part of a name")]
    Wildcard {
        /// What was refused.
        kind: NameKind,
        /// Its byte offset.
        at: usize,
    },
    /// Upper case in a policy's action name: requests are folded to lower case, so it could
    /// never match.
    #[error(
        "{kind} contains upper case {character} at byte {at}: actions are folded to lower \
         case before policy, so write policy action names in lower case"
    )]
    UpperCase {
        /// What was refused.
        kind: NameKind,
        /// The letter.
        character: Shown,
        /// Its byte offset.
        at: usize,
    },
    /// A space at the start or the end.
    #[error("{0} starts or ends with a space")]
    EdgeSpace(NameKind),
    /// An actor that claims to be a SPIFFE ID and is not a valid one.
    #[error("actor is not a valid spiffe id: {0}")]
    Spiffe(#[from] SpiffeIdError),
}

/// The character at byte `at` of `text` (for errors).
fn char_at(text: &str, at: usize) -> char {
    text.get(at..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

#[cfg(test)]
#[path = "names/names_tests.rs"]
mod tests;
