//! Why a policy could not be loaded, and where in its text.

use std::fmt;

/// A position in policy text: line and column, both from 1 (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Location {
    /// The line and column of byte `offset` in `text` (clamped to the end of the text).
    pub fn at_offset(text: &str, offset: usize) -> Self {
        let mut line = 1;
        let mut column = 1;
        for (i, c) in text.char_indices() {
            if i >= offset {
                break;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Self { line, column }
    }
}

/// Where the lines of a text start, to turn byte offsets into [`Location`]s quickly.
#[derive(Debug)]
pub(crate) struct Lines<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    /// Indexes `text`.
    pub(crate) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    /// The location of byte `offset` (clamped to the end of the text).
    pub(crate) fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self.text.get(start..).map_or(0, |rest| {
            rest.char_indices()
                .take_while(|&(i, _)| start + i < offset)
                .count()
        });
        Location {
            line,
            column: column + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A JSON error with its position as `line L, column C`, columns from 1 like every other
/// position here (serde_json says `column 0` for an error at the very start of a line).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if error.line() == 0 {
        return text;
    }
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = text.strip_suffix(&position).unwrap_or(&text);
    format!(
        "{message} at line {}, column {}",
        error.line(),
        error.column().max(1)
    )
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not a valid reference JSON policy document. The message carries the
    /// JSON error whole, so it is not also given as the source.
    #[error("invalid action policy: {}", json_message(.0))]
    Parse(serde_json::Error),
    /// A reference JSON rule with an empty action pattern.
    #[error("invalid action policy: {list} rule {index} has an empty action")]
    EmptyAction {
        /// `allow` or `deny`.
        list: &'static str,
        /// Position of the rule in its list, from 0.
        index: usize,
    },
    /// A reference JSON rule whose action pattern no request could match as written.
    #[error("invalid action policy: {list} rule {index}: {source}")]
    InvalidPattern {
        /// `allow` or `deny`.
        list: &'static str,
        /// Position of the rule in its list, from 0.
        index: usize,
        /// What is wrong with the pattern.
        source: zt_contract::names::NameError,
    },
    /// The Cedar text does not parse.
    #[error("cedar syntax error at {location}: {message}")]
    Syntax {
        /// Where the parser gave up.
        location: Location,
        /// What it expected.
        message: String,
    },
    /// A policy parses but breaks a rule of the schema or of this crate's conventions.
    #[error("policy `{id}` at {location}: {message}")]
    Invalid {
        /// The policy's id (from `@id`, or generated).
        id: String,
        /// Where the problem is.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// Two policies with the same id.
    #[error("duplicate policy id `{id}` at {location} (first used at {first})")]
    DuplicateId {
        /// The id used twice.
        id: String,
        /// The second use.
        location: Location,
        /// The first use.
        first: Location,
    },
    /// A policy file could not be read.
    #[error("policy file `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A policy file whose contents are not a valid policy.
    #[error("policy file `{path}`: {source}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with its contents.
        source: Box<PolicyError>,
    },
    /// A policy file whose name ends neither in `.json` nor in `.cedar`.
    #[error("policy file `{path}`: expected a `.json` or `.cedar` file")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// The schema built for validation is invalid (a bug in this crate, or a name it cannot
    /// declare).
    #[error("policy schema: {0}")]
    Schema(String),
    /// Cedar refused what this crate built from a valid policy set (a bug in this crate).
    #[error("policy engine error: {0}")]
    Internal(String),
}

impl From<serde_json::Error> for PolicyError {
    fn from(error: serde_json::Error) -> Self {
        PolicyError::Parse(error)
    }
}

/// The byte offset of a Cedar diagnostic's first label, and its message with its help.
pub(crate) fn diagnostic_parts(d: &dyn miette::Diagnostic) -> (Option<usize>, String) {
    let offset = d
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let message = match d.help() {
        Some(help) => format!("{d}; {help}"),
        None => d.to_string(),
    };
    (offset, message)
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
