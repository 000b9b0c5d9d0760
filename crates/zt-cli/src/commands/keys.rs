//! `zt keys rotate`: replaces the local audit signing key of a stopped server's data
//! directory. The outgoing key waits in the data directory; the next start publishes the new
//! key, writes a rotation record signed with it and endorsed by the outgoing key, then destroys
//! the outgoing private key, and keeps publishing the old public key so earlier records still
//! verify. Moving to a KMS or HSM key needs no command: start with the new `--signer` and the
//! old one as `--previous-signer` (docs/SIGNING.md).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use zt_ledger::LocalKeySigner;

use crate::exit::Exit;

/// `zt keys ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Replace the local audit signing key (the server must be stopped). The next start
    /// records the rotation, endorsed by the old key, then destroys the old private key; its
    /// public key stays published, so old records keep verifying.
    Rotate(RotateArgs),
}

/// `zt keys rotate`.
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The server's data directory.
    #[arg(long, env = "ZT_DATA_DIR", default_value = "./zt-data")]
    pub data_dir: PathBuf,
}

/// Runs a `zt keys` command.
pub(crate) fn run(command: KeysCommand) -> Exit {
    match command {
        KeysCommand::Rotate(args) => rotate(&args),
    }
}

fn rotate(args: &RotateArgs) -> Exit {
    if !args
        .data_dir
        .join("keys")
        .join(zt_ledger::signer::KEY_FILE_NAME)
        .exists()
    {
        eprintln!(
            "error: `{}` holds no local audit key (a KMS or HSM key is rotated by starting with the new --signer and --previous-signer)",
            args.data_dir.display()
        );
        return Exit::Failure;
    }
    // The server holds this lock while it runs: rotate only a stopped server's key.
    let _lock = match zt_server::DataDirLock::acquire(&args.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failure;
        }
    };
    match LocalKeySigner::rotate(&args.data_dir) {
        Ok(rotated) => {
            println!(
                "audit signing key rotated: {} -> {}",
                rotated.replaced, rotated.new
            );
            println!("{}", next_start(&rotated.endorser));
            Exit::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Failure
        }
    }
}

/// What the next start does with the retiring key `endorser`.
fn next_start(endorser: &str) -> String {
    format!("the next `zt serve` records the rotation, endorsed by {endorser}, then destroys {endorser}'s private key; its public key stays published for the records it signed")
}
