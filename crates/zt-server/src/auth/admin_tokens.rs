//! Admin credentials: a file of `NAME TOKEN` lines (a line with only a token is named
//! `admin`). Created on first start with one random token, mode 0600. Admin tokens are distinct
//! from agent tokens: one never works where the other is required.
//!
//! Every token must be strong (see [`check_strength`]): a weak one refuses the whole file, at
//! start and on reload, so a guessable admin credential is never accepted.

use std::collections::{BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zt_contract::admin_token_file::admin_token_lines;

use super::tokens::{new_token, token_hash, ADMIN_TOKEN_PREFIX};

/// The default admin token file's name inside the data directory.
pub const ADMIN_TOKEN_FILE_NAME: &str = "admin-token";

/// The name of a line that holds only a token.
pub(crate) use zt_contract::admin_token_file::DEFAULT_ADMIN_NAME;

/// Fewest characters after [`ADMIN_TOKEN_PREFIX`] (issued tokens have 43: 256 random bits).
pub(crate) const MIN_TOKEN_SECRET_CHARS: usize = 32;

/// Fewest distinct characters after the prefix: random tokens have about 30, a typed
/// pattern (`aaaa…`, `abcabc…`) far fewer.
pub(crate) const MIN_TOKEN_DISTINCT_CHARS: usize = 16;

/// Longest admin name.
pub(crate) const MAX_ADMIN_NAME_CHARS: usize = 128;

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
    /// A line's first word is not a usable name: perhaps its token, written first. Named by
    /// the line only: the word is never repeated (this message is logged and shown by
    /// `/health`).
    #[error(
        "admin token file `{0}`, line {1}: expected `NAME TOKEN`, the name first (1 to 128 visible characters, not starting with `zt_` or `#`, not `zt-server`, `unauthenticated-admin` or `policy-file`)"
    )]
    BadName(String, usize),
    /// Two names share one token: which admin is calling would be ambiguous.
    #[error("admin token file `{0}`, line {1}: admin `{2}` has the same token as another admin")]
    SharedToken(String, usize, String),
    /// A token is guessable.
    #[error(
        "admin token file `{path}`, line {line}: the token of admin `{name}` is weak ({why}); \
         replace it with one from `zt admin add`"
    )]
    Weak {
        /// The file.
        path: String,
        /// The line, from 1.
        line: usize,
        /// The admin it belongs to.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A name is not usable.
    #[error("admin name `{0}` is not valid: {1}")]
    InvalidName(String, &'static str),
    /// `zt admin add` of a name already in the file.
    #[error("admin `{0}` already has a token in `{1}`")]
    NameTaken(String, String),
    /// `zt admin remove` of a name not in the file.
    #[error("admin `{0}` is not in `{1}`")]
    UnknownName(String, String),
    /// `zt admin remove` of the only admin.
    #[error("admin `{0}` is the only admin in `{1}`; add another one first")]
    LastAdmin(String, String),
    /// No token in it.
    #[error("admin token file `{0}` holds no token")]
    Empty(String),
    /// The system RNG failed.
    #[error("cannot generate an admin token")]
    Random,
}

impl AdminTokenError {
    /// True if the file is there but its content or mode is refused (an operator's mistake,
    /// not an I/O failure).
    pub fn is_refused_content(&self) -> bool {
        !matches!(self, AdminTokenError::Io(..) | AdminTokenError::Random)
    }
}

/// Checks that `token` cannot be guessed: the `zt_admin_` prefix, then at least
/// [`MIN_TOKEN_SECRET_CHARS`] characters of the base64url alphabet, with at least
/// [`MIN_TOKEN_DISTINCT_CHARS`] distinct ones. Returns what is wrong otherwise.
pub(crate) fn check_strength(token: &str) -> Result<(), &'static str> {
    let Some(secret) = token.strip_prefix(ADMIN_TOKEN_PREFIX) else {
        return Err("it does not start with `zt_admin_`");
    };
    if secret.chars().count() < MIN_TOKEN_SECRET_CHARS {
        return Err("fewer than 32 characters after `zt_admin_`");
    }
    if !secret
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("characters other than letters, digits, `-` and `_`");
    }
    if secret.chars().collect::<BTreeSet<_>>().len() < MIN_TOKEN_DISTINCT_CHARS {
        return Err("too few distinct characters to be random");
    }
    Ok(())
}

/// Checks an admin name: 1 to [`MAX_ADMIN_NAME_CHARS`] visible ASCII characters other than
/// `#` at the start (a comment), so that one line stays `NAME TOKEN`, and not starting with
/// `zt_` (a token written where the name goes). A SPIFFE ID is a valid
/// name (an admin token agrees with a client certificate only if its name is that ID).
pub(crate) fn check_name(name: &str) -> Result<(), AdminTokenError> {
    let invalid = |why| Err(AdminTokenError::InvalidName(name.to_string(), why));
    if name.is_empty() || name.chars().count() > MAX_ADMIN_NAME_CHARS {
        return invalid("use 1 to 128 characters");
    }
    if !name.chars().all(|c| c.is_ascii_graphic()) {
        return invalid("use visible ASCII characters, no spaces");
    }
    if name.starts_with('#') {
        return invalid("a name cannot start with `#`");
    }
    if name.starts_with("zt_") {
        return invalid("a name cannot start with `zt_`, the prefix of tokens");
    }
    // The actors of the server's own records: an admin so named would pass for the server.
    let reserved = [
        zt_contract::SERVER_ACTOR,
        super::UNAUTHENTICATED_ADMIN,
        crate::policy_reload::RELOADER,
    ];
    if reserved.contains(&name) {
        return invalid("the name is the actor of the server's own records");
    }
    Ok(())
}

/// One admin line of the file.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) token: String,
    /// Line number, from 1.
    pub(crate) line: usize,
}

// Leaves out the token: a debug print must never show a credential.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// The admin lines of `text` (comments and blank lines skipped), checked: each name once,
/// each token strong and used once.
pub(crate) fn parse(text: &str, shown: &str) -> Result<Vec<Entry>, AdminTokenError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut names = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for read in admin_token_lines(text) {
        let read = read.map_err(|e| AdminTokenError::Format(shown.into(), e.line))?;
        let (line_number, name, token) = (read.line, read.name.to_string(), read.token.to_string());
        // Checked before any message names it: `TOKEN NAME` would make the token the name.
        if check_name(&name).is_err() {
            return Err(AdminTokenError::BadName(shown.into(), line_number));
        }
        if !names.insert(name.clone()) {
            return Err(AdminTokenError::Format(shown.into(), line_number));
        }
        if let Err(why) = check_strength(&token) {
            return Err(AdminTokenError::Weak {
                path: shown.into(),
                line: line_number,
                name,
                why,
            });
        }
        if !hashes.insert(token_hash(&token)) {
            return Err(AdminTokenError::SharedToken(
                shown.into(),
                line_number,
                name,
            ));
        }
        entries.push(Entry {
            name,
            token,
            line: line_number,
        });
    }
    Ok(entries)
}

/// Reads `path` after checking that only its owner can read it.
pub(crate) fn read_private(path: &Path) -> Result<String, AdminTokenError> {
    let shown = path.display().to_string();
    let io = |e| AdminTokenError::Io(shown.clone(), e);
    if std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o077 != 0 {
        return Err(AdminTokenError::Permissions(shown));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Admin identities by token hash: one consistent reading of the file.
#[derive(Debug, Clone)]
pub(crate) struct AdminTokens {
    path: PathBuf,
    by_hash: HashMap<String, String>,
}

impl AdminTokens {
    /// Reads `path`, creating it with one random `admin` token if it does not exist.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, AdminTokenError> {
        if !path.exists() {
            let shown = path.display().to_string();
            let io = |e| AdminTokenError::Io(shown.clone(), e);
            let token = new_token(ADMIN_TOKEN_PREFIX).ok_or(AdminTokenError::Random)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(format!("{DEFAULT_ADMIN_NAME} {token}\n").as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            tracing::info!(
                admin_token_file = %path.display(),
                admin = DEFAULT_ADMIN_NAME,
                "created the admin token file with one admin (mode 0600; the token is never logged); client commands read it with `--admin-token-file FILE`; add a second admin with `zt admin add NAME` to approve policy changes"
            );
        }
        Self::load(path)
    }

    /// Reads and checks `path`, which must exist.
    pub(crate) fn load(path: &Path) -> Result<Self, AdminTokenError> {
        let shown = path.display().to_string();
        let text = read_private(path)?;
        let by_hash: HashMap<String, String> = parse(&text, &shown)?
            .into_iter()
            .map(|e| (token_hash(&e.token), e.name))
            .collect();
        if by_hash.is_empty() {
            return Err(AdminTokenError::Empty(shown));
        }
        Ok(Self {
            path: path.to_path_buf(),
            by_hash,
        })
    }

    /// The admin name a token belongs to.
    pub(crate) fn name_for(&self, token: &str) -> Option<&str> {
        self.name_for_hash(&token_hash(token))
    }

    /// Every admin's name, sorted (never a token).
    pub(crate) fn names(&self) -> BTreeSet<String> {
        self.by_hash.values().cloned().collect()
    }

    /// The admin name of the token whose [`token_hash`] is `hash`.
    pub(crate) fn name_for_hash(&self, hash: &str) -> Option<&str> {
        self.by_hash.get(hash).map(String::as_str)
    }

    /// Where the tokens live (printed at start-up; the tokens themselves never are).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
#[path = "admin_tokens_tests.rs"]
mod tests;
