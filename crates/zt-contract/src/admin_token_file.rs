//! The admin token file's format, parsed without I/O so that the server (which reads and
//! checks the whole file) and the SDK (which picks one token from it) read it alike: one
//! admin a line, `NAME TOKEN`, or a bare `TOKEN` named [`DEFAULT_ADMIN_NAME`]; blank lines and
//! lines starting with `#` are skipped.

/// The name of a line that holds only a token.
pub const DEFAULT_ADMIN_NAME: &str = "admin";

/// One admin line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminTokenLine<'a> {
    /// Line number, from 1.
    pub line: usize,
    /// The admin's name.
    pub name: &'a str,
    /// The token.
    pub token: &'a str,
}

/// A line that is neither `NAME TOKEN` nor `TOKEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected `NAME TOKEN`")]
#[non_exhaustive]
pub struct AdminTokenLineError {
    /// Line number, from 1.
    pub line: usize,
}

/// The admin lines of `text`, in order; a malformed line is an error in its place.
pub fn admin_token_lines(
    text: &str,
) -> impl Iterator<Item = Result<AdminTokenLine<'_>, AdminTokenLineError>> {
    text.lines().enumerate().filter_map(|(index, line)| {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut words = line.split_whitespace();
        Some(match (words.next(), words.next(), words.next()) {
            (Some(token), None, None) => Ok(AdminTokenLine {
                line: line_number,
                name: DEFAULT_ADMIN_NAME,
                token,
            }),
            (Some(name), Some(token), None) => Ok(AdminTokenLine {
                line: line_number,
                name,
                token,
            }),
            _ => Err(AdminTokenLineError { line: line_number }),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_named_bare_commented_and_malformed() {
        let text = "# admins\n\n  alice  t-a \nt-bare\nbob t-b extra\n";
        let read: Vec<_> = admin_token_lines(text).collect();
        assert_eq!(
            read,
            [
                Ok(AdminTokenLine {
                    line: 3,
                    name: "alice",
                    token: "t-a"
                }),
                Ok(AdminTokenLine {
                    line: 4,
                    name: "admin",
                    token: "t-bare"
                }),
                Err(AdminTokenLineError { line: 5 }),
            ]
        );
        assert_eq!(admin_token_lines("\n# only\n").count(), 0);
    }
}
