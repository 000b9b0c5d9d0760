//! Admin credentials: a file of `NAME TOKEN` lines (a line with only a token is named
//! `admin`). Created on first start with one random token, mode 0600. Admin tokens are distinct
//! from agent tokens: one never works where the other is required.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::tokens::{new_token, token_hash, ADMIN_TOKEN_PREFIX};

/// The default admin token file's name inside the data directory.
pub const ADMIN_TOKEN_FILE_NAME: &str = "admin-token";

/// Why the admin token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// Reading or creating it failed.
    #[error("admin token file `{0}`: {1}")]
    Io(String, std::io::Error),
    /// Group or others can read it.
    #[error("admin token file `{0}` is readable by other users; run `chmod 600` on it")]
    Permissions(String),
    /// A line is not `NAME TOKEN` or `TOKEN`, or a name repeats.
    #[error("admin token file `{0}`, line {1}: expected `NAME TOKEN`, each name once")]
    Format(String, usize),
    /// No token in it.
    #[error("admin token file `{0}` holds no token")]
    Empty(String),
    /// The system RNG failed.
    #[error("cannot generate an admin token")]
    Random,
}

/// Admin identities by token hash.
#[derive(Debug, Clone)]
pub struct AdminTokens {
    path: PathBuf,
    by_hash: HashMap<String, String>,
}

impl AdminTokens {
    /// Reads `path`, creating it with one random `admin` token if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, AdminTokenError> {
        let shown = path.display().to_string();
        let io = |e| AdminTokenError::Io(shown.clone(), e);
        if !path.exists() {
            let token = new_token(ADMIN_TOKEN_PREFIX).ok_or(AdminTokenError::Random)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(format!("admin {token}\n").as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        if std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o077 != 0 {
            return Err(AdminTokenError::Permissions(shown));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mut by_hash = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, token) = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                [token] => ("admin".to_string(), token.to_string()),
                [name, token] => (name.to_string(), token.to_string()),
                _ => return Err(AdminTokenError::Format(shown, index + 1)),
            };
            if !names.insert(name.clone()) {
                return Err(AdminTokenError::Format(shown, index + 1));
            }
            by_hash.insert(token_hash(&token), name);
        }
        if by_hash.is_empty() {
            return Err(AdminTokenError::Empty(shown));
        }
        Ok(Self {
            path: path.to_path_buf(),
            by_hash,
        })
    }

    /// The admin name a token belongs to.
    pub fn name_for(&self, token: &str) -> Option<&str> {
        self.by_hash.get(&token_hash(token)).map(String::as_str)
    }

    /// Where the tokens live (printed at start-up; the tokens themselves never are).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_file_with_one_admin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_TOKEN_FILE_NAME);
        let tokens = AdminTokens::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let token = text.split_whitespace().nth(1).unwrap();
        assert_eq!(tokens.name_for(token), Some("admin"));
        assert_eq!(tokens.name_for("zt_admin_wrong"), None);
    }

    #[test]
    fn reads_named_tokens_and_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admins");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("# admins\nalice tok-a\nbob tok-b\n", 0o600);
        let tokens = AdminTokens::load_or_create(&path).unwrap();
        assert_eq!(tokens.name_for("tok-a"), Some("alice"));
        assert_eq!(tokens.name_for("tok-b"), Some("bob"));
        write("alice tok-a\n", 0o644);
        assert!(matches!(
            AdminTokens::load_or_create(&path),
            Err(AdminTokenError::Permissions(_))
        ));
        write("alice tok-a\nalice tok-b\n", 0o600);
        assert!(matches!(
            AdminTokens::load_or_create(&path),
            Err(AdminTokenError::Format(_, 2))
        ));
        write("a b c\n", 0o600);
        assert!(matches!(
            AdminTokens::load_or_create(&path),
            Err(AdminTokenError::Format(_, 1))
        ));
        write("# nothing\n", 0o600);
        assert!(matches!(
            AdminTokens::load_or_create(&path),
            Err(AdminTokenError::Empty(_))
        ));
    }
}
