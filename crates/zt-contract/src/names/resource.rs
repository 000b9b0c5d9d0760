//! Resource ids: free text (URLs, paths, table names), minus what can hide or disguise it.

use std::fmt;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use super::{NameError, NameKind, Shown};

/// Longest resource id, in bytes (before and after normalization).
pub const MAX_RESOURCE_BYTES: usize = 1024;

const RESOURCE_ALPHABET: &str =
    "control, invisible, bidirectional-control and non-ASCII space characters are refused";

/// A valid resource id, normalized to Unicode NFC; empty when the request names no resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceName(String);

impl ResourceName {
    /// Parses a resource id and normalizes it to NFC (so `cafe\u{301}` is `café`). Refuses
    /// control characters, default-ignorable (invisible) and bidirectional-control characters,
    /// line and paragraph separators, spaces other than U+0020, and a leading or trailing
    /// space. The empty string is valid: no resource.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let kind = NameKind::Resource;
        if text.len() > MAX_RESOURCE_BYTES {
            return Err(NameError::TooLong {
                kind,
                max: MAX_RESOURCE_BYTES,
            });
        }
        if text.starts_with(' ') || text.ends_with(' ') {
            return Err(NameError::EdgeSpace(kind));
        }
        if let Some((at, c)) = text.char_indices().find(|&(_, c)| is_hidden(c)) {
            return Err(NameError::Character {
                kind,
                character: Shown(c),
                at,
                allowed: RESOURCE_ALPHABET,
            });
        }
        let normalized = match is_nfc_quick(text.chars()) {
            IsNormalized::Yes => text.to_string(),
            IsNormalized::No | IsNormalized::Maybe => text.nfc().collect(),
        };
        if normalized.len() > MAX_RESOURCE_BYTES {
            return Err(NameError::TooLong {
                kind,
                max: MAX_RESOURCE_BYTES,
            });
        }
        Ok(Self(normalized))
    }

    /// A resource id made of free text (a message's words): every run of whitespace becomes
    /// one space, other hidden characters (see [`ResourceName::parse`]) are dropped, and the
    /// result is trimmed and cut at `max_chars` characters, so it always parses.
    pub fn from_free_text(text: &str, max_chars: usize) -> String {
        let mut out = String::new();
        let mut chars = 0;
        let mut space = false;
        for c in text.chars() {
            if c.is_whitespace() {
                space = !out.is_empty();
                continue;
            }
            if is_hidden(c) {
                continue;
            }
            let needed = if space { 2 } else { 1 };
            if chars + needed > max_chars || out.len() + 8 > MAX_RESOURCE_BYTES {
                break;
            }
            if std::mem::take(&mut space) {
                out.push(' ');
            }
            out.push(c);
            chars += needed;
        }
        out
    }

    /// The normalized id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalized id, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ResourceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<ResourceName> for String {
    fn from(name: ResourceName) -> Self {
        name.0
    }
}

/// True for a character that is invisible, reorders text, or passes for a space: controls
/// (C0, DEL, C1), any whitespace but U+0020, format characters (zero-width, bidirectional
/// controls, tags), Unicode's default-ignorable code points, and noncharacters.
pub(super) fn is_hidden(c: char) -> bool {
    if c == ' ' {
        return false;
    }
    if c.is_control() || c.is_whitespace() {
        return true;
    }
    let n = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&n)
        || (n & 0xFFFE) == 0xFFFE
        || INVISIBLE
            .iter()
            .any(|&(first, last)| (first..=last).contains(&n))
}

/// Default-ignorable code points (Unicode `DerivedCoreProperties.txt`), the other format
/// (`Cf`) characters, and blanks that render as nothing.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD), // soft hyphen
    (0x034F, 0x034F), // combining grapheme joiner
    (0x0600, 0x0605), // Arabic number signs
    (0x061C, 0x061C), // Arabic letter mark
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160), // Hangul fillers
    (0x17B4, 0x17B5),
    (0x180B, 0x180F), // Mongolian variation selectors and vowel separator
    (0x200B, 0x200F), // zero-width space, joiners, LRM, RLM
    (0x202A, 0x202E), // bidirectional embeddings and overrides
    (0x2060, 0x206F), // word joiner, invisible operators, bidirectional isolates
    (0x2800, 0x2800), // braille blank
    (0x3164, 0x3164), // Hangul filler
    (0xFE00, 0xFE0F), // variation selectors
    (0xFEFF, 0xFEFF), // zero-width no-break space (BOM)
    (0xFFA0, 0xFFA0), // halfwidth Hangul filler
    (0xFFF0, 0xFFFB), // interlinear annotation
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF), // tags and variation selectors supplement
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_becomes_a_resource_that_parses() {
        let cases = [
            ("Summarise:\nthe\treport ", 120, "Summarise: the report"),
            (
                "  leading and\r\n\r\ntrailing  ",
                120,
                "leading and trailing",
            ),
            (
                "zero\u{200B}width\u{202E}bidi\u{00A0}nbsp",
                120,
                "zerowidthbidi nbsp",
            ),
            ("cut at a space here", 7, "cut at"),
            ("ééééé", 3, "ééé"),
            ("\n\t", 120, ""),
        ];
        for (text, max, want) in cases {
            let made = ResourceName::from_free_text(text, max);
            assert_eq!(made, want, "{text:?}");
            assert!(made.chars().count() <= max);
            assert!(ResourceName::parse(&made).is_ok(), "{made:?}");
        }
        let long = "a ".repeat(2000);
        let made = ResourceName::from_free_text(&long, usize::MAX);
        assert!(ResourceName::parse(&made).is_ok(), "bounded in bytes too");
    }
}
