//! Editing the admin token file (`zt admin add|list|remove`): each change is checked like a
//! server reading it would, then replaces the file atomically (mode 0600), so a running server
//! that picks it up never sees a half-written file. Comments and other lines are kept.

use std::path::Path;

use super::admin_tokens::{check_name, parse, read_private, AdminTokenError};
use super::tokens::{new_token, ADMIN_TOKEN_PREFIX};
use zt_ledger::persist::write_atomically;

/// The file's text, or empty if it does not exist yet.
fn current_text(path: &Path) -> Result<String, AdminTokenError> {
    if path.exists() {
        read_private(path)
    } else {
        Ok(String::new())
    }
}

fn save(path: &Path, text: &str) -> Result<(), AdminTokenError> {
    write_atomically(path, text.as_bytes())
        .map_err(|e| AdminTokenError::Io(path.display().to_string(), e))
}

/// Adds admin `name` with a new random token and returns the token (to be shown once).
/// Creates the file (mode 0600) if it does not exist.
pub fn add(path: &Path, name: &str) -> Result<String, AdminTokenError> {
    check_name(name)?;
    let shown = path.display().to_string();
    let mut text = current_text(path)?;
    if parse(&text, &shown)?.iter().any(|e| e.name == name) {
        return Err(AdminTokenError::NameTaken(name.into(), shown));
    }
    let token = new_token(ADMIN_TOKEN_PREFIX).ok_or(AdminTokenError::Random)?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{name} {token}\n"));
    save(path, &text)?;
    Ok(token)
}

/// The admins' names, in file order (never their tokens).
pub fn list(path: &Path) -> Result<Vec<String>, AdminTokenError> {
    let shown = path.display().to_string();
    let text = read_private(path)?;
    Ok(parse(&text, &shown)?.into_iter().map(|e| e.name).collect())
}

/// Removes admin `name`; its token stops working as soon as the server reloads the file.
/// The last admin cannot be removed (nobody could administer the server).
pub fn remove(path: &Path, name: &str) -> Result<(), AdminTokenError> {
    let shown = path.display().to_string();
    let text = read_private(path)?;
    let entries = parse(&text, &shown)?;
    let Some(gone) = entries.iter().find(|e| e.name == name) else {
        return Err(AdminTokenError::UnknownName(name.into(), shown));
    };
    if entries.len() == 1 {
        return Err(AdminTokenError::LastAdmin(name.into(), shown));
    }
    let kept: String = text
        .lines()
        .enumerate()
        .filter(|(index, _)| index + 1 != gone.line)
        .map(|(_, line)| format!("{line}\n"))
        .collect();
    save(path, &kept)
}
