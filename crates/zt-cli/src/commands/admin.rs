//! `zt admin add|list|remove`: the admins of a server's admin token file (`NAME TOKEN` lines,
//! mode 0600). A running server picks up a change within a second (or on SIGHUP), without a
//! restart. Tokens are shown once, by `add`; nothing else ever prints one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use zt_server::{admin_token_file, AdminTokenError, ADMIN_TOKEN_FILE_NAME};

use crate::exit::Exit;

/// `zt admin` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum AdminCommand {
    /// Add an admin with a new random token, printed once on stdout (creates the token file,
    /// mode 0600, if missing). A running server accepts it within a second. Exit 0 added,
    /// 1 the file cannot be read or written, 2 the name is invalid or taken.
    Add(AddArgs),
    /// List the admins' names (never their tokens).
    List(TokenFileArgs),
    /// Remove an admin; a running server stops accepting their token within a second. The
    /// last admin cannot be removed. Exit 2 if the name is unknown or the last one.
    Remove(RemoveArgs),
}

/// Where the admin token file is.
#[derive(Args, Debug)]
pub(crate) struct TokenFileArgs {
    /// The server's data directory; the token file is DATA_DIR/admin-token.
    #[arg(long, env = "ZT_DATA_DIR", default_value = "./zt-data")]
    pub data_dir: PathBuf,
    /// The admin token file, when the server runs with `--admin-token-file` (overrides
    /// `--data-dir`).
    #[arg(long, env = "ZT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

impl TokenFileArgs {
    fn path(&self) -> PathBuf {
        self.admin_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(ADMIN_TOKEN_FILE_NAME))
    }
}

/// `zt admin add` arguments.
#[derive(Args, Debug)]
pub(crate) struct AddArgs {
    /// The admin's name: recorded as the actor of their changes (visible ASCII, no spaces).
    pub name: String,
    #[command(flatten)]
    pub file: TokenFileArgs,
}

/// `zt admin remove` arguments.
#[derive(Args, Debug)]
pub(crate) struct RemoveArgs {
    /// The admin's name.
    pub name: String,
    #[command(flatten)]
    pub file: TokenFileArgs,
}

/// Runs an admin subcommand.
pub(crate) fn run(command: AdminCommand) -> Exit {
    let result = match &command {
        AdminCommand::Add(args) => add(args),
        AdminCommand::List(args) => list(args),
        AdminCommand::Remove(args) => remove(args),
    };
    match result {
        Ok(()) => Exit::Success,
        Err(e) => {
            eprintln!("error: {e}");
            if is_usage(&e) {
                Exit::Usage
            } else {
                Exit::Failure
            }
        }
    }
}

/// Errors the command line can fix (the name), as opposed to a file that cannot be used.
fn is_usage(e: &AdminTokenError) -> bool {
    matches!(
        e,
        AdminTokenError::InvalidName(..)
            | AdminTokenError::NameTaken(..)
            | AdminTokenError::UnknownName(..)
            | AdminTokenError::LastAdmin(..)
    )
}

fn add(args: &AddArgs) -> Result<(), AdminTokenError> {
    let path = args.file.path();
    if args.file.admin_token_file.is_none() {
        create_data_dir(&args.file.data_dir)?;
    }
    let token = admin_token_file::add(&path, &args.name)?;
    println!("{token}");
    eprintln!(
        "added admin `{}` to `{}`; the token above is shown once: hand it to them \
         (a running server accepts it within a second)",
        args.name,
        path.display()
    );
    Ok(())
}

/// Creates the data directory (mode 0700) if it does not exist yet, so an admin can be added
/// before the first start.
fn create_data_dir(dir: &Path) -> Result<(), AdminTokenError> {
    if dir.exists() {
        return Ok(());
    }
    let io = |e| AdminTokenError::Io(dir.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

fn list(args: &TokenFileArgs) -> Result<(), AdminTokenError> {
    for name in admin_token_file::list(&args.path())? {
        println!("{name}");
    }
    Ok(())
}

fn remove(args: &RemoveArgs) -> Result<(), AdminTokenError> {
    let path = args.file.path();
    admin_token_file::remove(&path, &args.name)?;
    eprintln!(
        "removed admin `{}` from `{}`; a running server stops accepting their token within a second",
        args.name,
        path.display()
    );
    Ok(())
}
