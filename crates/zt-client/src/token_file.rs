//! Reading an admin token from the server's admin token file (the format of
//! `zt_contract::admin_token_file`: `NAME TOKEN` per line, or a bare `TOKEN` named `admin`),
//! so the token never has to be copied onto a command line, where `ps` shows it.

use std::path::Path;

use zt_contract::admin_token_file::admin_token_lines;

/// Why no token was read.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("admin token file `{0}`: {1}")]
    Io(String, std::io::Error),
    /// A line is neither `NAME TOKEN` nor `TOKEN`.
    #[error("admin token file `{0}`, line {1}: expected `NAME TOKEN`")]
    Format(String, usize),
    /// No entry (with that name).
    #[error("admin token file `{0}` has no {1}")]
    Missing(String, String),
}

/// The token of the entry named `name`, or of the first entry.
pub fn read_admin_token(path: &Path, name: Option<&str>) -> Result<String, TokenFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TokenFileError::Io(shown.clone(), e))?;
    for read in admin_token_lines(&text) {
        let read = read.map_err(|e| TokenFileError::Format(shown.clone(), e.line))?;
        if name.is_none_or(|wanted| wanted == read.name) {
            return Ok(read.token.to_string());
        }
    }
    let what = match name {
        Some(name) => format!("entry named `{name}`"),
        None => "token".to_string(),
    };
    Err(TokenFileError::Missing(shown, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_or_named_entry() {
        let dir = std::env::temp_dir().join(format!("zt-token-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin-token");
        std::fs::write(&path, "# admins\n\nalice zt_admin_a\nbob zt_admin_b\n").unwrap();
        assert_eq!(read_admin_token(&path, None).unwrap(), "zt_admin_a");
        assert_eq!(read_admin_token(&path, Some("bob")).unwrap(), "zt_admin_b");
        let e = read_admin_token(&path, Some("carol"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no entry named `carol`"), "{e}");
        std::fs::write(&path, "zt_admin_only\n").unwrap();
        assert_eq!(
            read_admin_token(&path, Some("admin")).unwrap(),
            "zt_admin_only"
        );
        std::fs::write(&path, "a b c\n").unwrap();
        let e = read_admin_token(&path, None).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_admin_token(&path, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
