//! SIEM export of the audit log: each stored record line becomes one output line, either the
//! stored line itself (`jsonl`, still verifiable with `zt audit verify --file`) or an OCSF
//! API Activity event with the Security Control profile (`ocsf`). Pure mapping: no I/O, no
//! async, so the CLI export and the server's live stream share exactly one definition.
//!
//! See `docs/SIEM.md` for the field mapping.

pub mod jsonl;
pub mod ocsf;
mod time;

use std::fmt;
use std::str::FromStr;

/// Why a record line could not be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiemError {
    /// The line is not a stored audit record.
    #[error("not an audit record: {0}")]
    NotARecord(String),
    /// The record's timestamp is not the wire shape (`2026-05-01T00:00:00.000Z`).
    #[error("record timestamp `{0}` is not an RFC 3339 UTC millisecond timestamp")]
    BadTimestamp(String),
    /// An export format name that is not `jsonl` or `ocsf`.
    #[error("unknown format `{0}`; expected `jsonl` or `ocsf`")]
    UnknownFormat(String),
}

/// An export format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// The stored record line, unchanged: hashes and signatures still verify.
    #[default]
    Jsonl,
    /// One OCSF API Activity event (class 6003) with the Security Control profile.
    Ocsf,
}

impl Format {
    /// The name used on the command line and in `?format=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Ocsf => "ocsf",
        }
    }

    /// One stored record line in this format, as one line of JSON without a newline.
    pub fn render(self, line: &str) -> Result<String, SiemError> {
        match self {
            Format::Jsonl => jsonl::line(line),
            Format::Ocsf => ocsf::event_line(line),
        }
    }
}

impl FromStr for Format {
    type Err = SiemError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "ocsf" => Ok(Format::Ocsf),
            other => Err(SiemError::UnknownFormat(other.chars().take(40).collect())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for format in [Format::Jsonl, Format::Ocsf] {
            assert_eq!(format.as_str().parse::<Format>().unwrap(), format);
        }
        assert!(matches!(
            "xml".parse::<Format>(),
            Err(SiemError::UnknownFormat(_))
        ));
    }
}
