//! `zt audit verify`: check a whole audit log offline or over HTTP, optionally against a saved
//! checkpoint; `zt audit checkpoint save`, `verify-consistency` and `verify-inclusion` live in
//! `audit/` (see `docs/PROOFS.md`).

mod checkpoint;
mod export;
mod orphans;
mod proofs;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{Jwks, PublicKeySet};
use zt_ledger::{AuditStore, PostgresLocation, PostgresStore, SqliteStore};

use crate::connection::{self, AdminArgs, TlsArgs};
use crate::exit::Exit;
use checkpoint::{CheckedVerification, Outcome};

/// Records fetched per page with `--url`.
const PAGE: usize = 10_000;

/// The longest line `verify --file` reads: a record is a few KiB, and a hostile file's line of
/// gigabytes must end the run with an error, not exhaust memory (the limit of the client's
/// answers and of an MCP message alike).
const MAX_FILE_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// The next line of `reader` without its line end: `Ok(None)` at the end of the input,
/// `Ok(Some(None))` for a line over [`MAX_FILE_LINE_BYTES`] or not UTF-8 (read no further
/// than the limit).
fn read_bounded_line(reader: &mut impl BufRead) -> std::io::Result<Option<Option<String>>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    let read = reader
        .by_ref()
        .take(MAX_FILE_LINE_BYTES + 1)
        .read_until(b'\n', &mut bytes)?;
    if read == 0 {
        return Ok(None);
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    } else if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_LINE_BYTES {
        return Ok(Some(None));
    }
    Ok(Some(String::from_utf8(bytes).ok()))
}

/// `zt audit` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Recompute every hash, check every link, sequence number and signature; name the first
    /// bad record. Exit 0 valid, 1 invalid or unreadable, 2 usage.
    Verify(VerifyArgs),
    /// Signed checkpoints (tree size and Merkle root) of the log.
    #[command(subcommand)]
    Checkpoint(checkpoint::CheckpointCommand),
    /// Check that a saved checkpoint's log is the start of the current one (or of a later
    /// saved checkpoint's), with the server's consistency proof: catches a history rewritten
    /// after the checkpoint was saved, even if re-hashed and re-signed. Exit 0 consistent,
    /// 1 not (or unreachable), 2 usage.
    VerifyConsistency(proofs::ConsistencyArgs),
    /// Check that a record, as the server serves it, is in a saved checkpoint's log: the leaf
    /// is recomputed from the record and the server's inclusion proof must lead to the
    /// checkpoint's root. Exit 0 included, 1 not (or unreachable), 2 usage.
    VerifyInclusion(proofs::InclusionArgs),
    /// Export the log for a SIEM: OCSF API Activity events or the stored JSON lines, from
    /// `--from SEQ` up to the head when the export starts (`docs/SIEM.md`). Exit 0 exported,
    /// 1 a source or output failure, 2 usage.
    Export(export::ExportArgs),
    /// List the execution broker's allow decisions that have no execution receipt (a broker
    /// that died, or one still running), after verifying the whole log as `verify` does.
    /// Exit 0 none, 1 some (or the log is invalid or unreadable), 2 usage.
    Orphans(VerifyArgs),
}

/// `zt audit verify` arguments: exactly one source.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["data_dir", "file", "url", "store"])))]
pub(crate) struct VerifyArgs {
    /// A server's data directory (readable while the server runs).
    #[arg(long, env = "ZT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A server's PostgreSQL audit store, as given to `zt serve --store` (readable while the
    /// server runs).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// A JSON-lines file of stored records, as `GET /audit/records` serves them.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A running control plane (`http://HOST:PORT` or `https://…`): its records and published
    /// keys. Reading records needs an admin credential (--admin-token-file) unless the server
    /// runs with `--auth none`.
    #[arg(long, env = "ZT_URL")]
    pub url: Option<zt_client::BaseUrl>,
    /// The verification keys (a JWKS file, as `GET /audit/keys` serves); required with --file
    /// unless signatures are skipped.
    #[arg(long, env = "ZT_KEYS")]
    pub keys: Option<PathBuf>,
    /// The hash the log must end at (a trusted head you saved); catches records cut off the end.
    #[arg(long)]
    pub expect_head: Option<String>,
    /// Check hashes, links and sequence only. Danger: anyone can rewrite an unsigned log
    /// consistently; for fixtures that carry no signatures.
    #[arg(long)]
    pub insecure_skip_signatures: bool,
    /// A signed checkpoint saved earlier (`zt audit checkpoint save`): the log's first `size`
    /// records must produce its Merkle root, recomputed from the records verified here. Its
    /// signature is checked with the same keys as the records.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The log origin the checkpoint must name (default: the one it names).
    #[arg(long, requires = "checkpoint")]
    pub origin: Option<String>,
    /// Threads verifying signatures (default: one per core). Records are read, hashed and
    /// linked in order on one thread whatever the number; `--jobs 1` verifies each signature
    /// in turn on that thread. The result is the same for any number.
    #[arg(long, value_name = "N")]
    pub jobs: Option<std::num::NonZeroUsize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Runs an audit subcommand.
pub(crate) fn run(command: AuditCommand) -> Exit {
    match command {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Checkpoint(command) => checkpoint::run(command),
        AuditCommand::VerifyConsistency(args) => proofs::run_consistency(args),
        AuditCommand::VerifyInclusion(args) => proofs::run_inclusion(args),
        AuditCommand::Export(args) => export::run(args),
        AuditCommand::Orphans(args) => orphans::run(&args, run_verify(&args)),
    }
}

fn verify(args: VerifyArgs) -> Exit {
    if args.file.is_some() && args.keys.is_none() && !args.insecure_skip_signatures {
        eprintln!("error: --file needs --keys JWKS_FILE (or --insecure-skip-signatures)");
        return Exit::Usage;
    }
    match run_verify(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{}", report.to_text());
            }
            if report.is_valid() {
                Exit::Success
            } else {
                Exit::Failure
            }
        }
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "error": {"check": "read", "message": connection::message(&e)}})
                );
            } else {
                eprintln!("error: {}", connection::message(&e));
            }
            connection::exit_code(&e)
        }
    }
}

/// Verifies a whole store, reading it page by page, with the keys it publishes unless
/// `--keys` pins others.
fn verify_stored(store: &mut dyn AuditStore, args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let jwks = match &args.keys {
        Some(path) => read_jwks(path)?,
        None => Jwks {
            keys: store.keys()?,
        },
    };
    let total = store.head()?.map(|h| h.seq + 1);
    let keys = PublicKeySet::from_jwks(&jwks)?;
    let mut run = CheckedVerification::new(
        signature_policy(args, &keys),
        total,
        args.json,
        jobs(args),
        saved_checkpoint(args, &jwks)?,
    );
    let mut from = 0u64;
    'pages: loop {
        let lines = store.read(from, PAGE)?;
        if lines.is_empty() {
            break;
        }
        for line in &lines {
            if !run.feed(line) {
                break 'pages;
            }
        }
        from += lines.len() as u64;
    }
    Ok(run.finish(args.expect_head.as_deref(), !args.insecure_skip_signatures))
}

fn run_verify(args: &VerifyArgs) -> anyhow::Result<Outcome> {
    if let Some(dir) = &args.data_dir {
        let mut store = SqliteStore::open_read_only(&SqliteStore::path_in(dir))?;
        return verify_stored(&mut store, args);
    }
    if let Some(url) = &args.store {
        let mut store = PostgresStore::open_read_only(&PostgresLocation::parse(url)?)?;
        return verify_stored(&mut store, args);
    }
    if let Some(path) = &args.file {
        let jwks = match &args.keys {
            Some(keys) => read_jwks(keys)?,
            None => Jwks::default(),
        };
        let keys = PublicKeySet::from_jwks(&jwks)?;
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open `{}`", path.display()))?;
        let mut run = CheckedVerification::new(
            signature_policy(args, &keys),
            None,
            args.json,
            jobs(args),
            saved_checkpoint(args, &jwks)?,
        );
        let mut reader = std::io::BufReader::new(file);
        let mut number = 0u64;
        while let Some(line) = read_bounded_line(&mut reader)
            .with_context(|| format!("cannot read `{}`", path.display()))?
        {
            number += 1;
            let line = line.with_context(|| {
                format!(
                    "line {number} of `{}` is longer than {MAX_FILE_LINE_BYTES} bytes or not UTF-8: not a record",
                    path.display()
                )
            })?;
            if !line.trim().is_empty() && !run.feed(&line) {
                break;
            }
        }
        return Ok(run.finish(args.expect_head.as_deref(), !args.insecure_skip_signatures));
    }
    let url = args.url.as_ref().context("no source given")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(verify_url(args, url))
}

async fn verify_url(args: &VerifyArgs, url: &zt_client::BaseUrl) -> anyhow::Result<Outcome> {
    let server = connection::admin_client(url, &args.tls, &args.admin, connection::AUDIT_TIMEOUT)?;
    let jwks = match &args.keys {
        Some(path) => read_jwks(path)?,
        None => server.audit_keys().await?,
    };
    let keys = PublicKeySet::from_jwks(&jwks)?;
    let head = server.audit_head().await?;
    let mut run = CheckedVerification::new(
        signature_policy(args, &keys),
        Some(head.records),
        args.json,
        jobs(args),
        saved_checkpoint(args, &jwks)?,
    );
    // Verify exactly the records up to the head read first: the log may grow meanwhile.
    let mut from = 0u64;
    'pages: while from < head.records {
        let lines = server.audit_records(from, PAGE).await?;
        if lines.is_empty() {
            break;
        }
        let wanted = usize::try_from(head.records - from).unwrap_or(usize::MAX);
        for line in lines.iter().take(wanted) {
            if !run.feed(line) {
                break 'pages;
            }
        }
        from += lines.len() as u64;
    }
    // The chain must reach the server's head; a caller's own trusted head overrides it.
    let expected = args.expect_head.clone().unwrap_or(head.current_hash);
    Ok(run.finish(Some(&expected), !args.insecure_skip_signatures))
}

/// `--jobs`, by default one per core.
fn jobs(args: &VerifyArgs) -> usize {
    args.jobs
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, std::num::NonZeroUsize::get)
}

fn signature_policy<'k>(args: &VerifyArgs, keys: &'k PublicKeySet) -> SignaturePolicy<'k> {
    if args.insecure_skip_signatures {
        SignaturePolicy::DangerousSkip
    } else {
        SignaturePolicy::Require(keys)
    }
}

/// The `--checkpoint` file, verified with the keys the records are verified with, and its
/// name for messages.
fn saved_checkpoint(
    args: &VerifyArgs,
    jwks: &Jwks,
) -> anyhow::Result<Option<(zt_contract::Checkpoint, String)>> {
    let Some(path) = &args.checkpoint else {
        return Ok(None);
    };
    let verified = checkpoint::read_checkpoint(path, args.origin.as_deref(), jwks)?;
    Ok(Some((verified, path.display().to_string())))
}

fn read_jwks(path: &Path) -> anyhow::Result<Jwks> {
    zt_client::read_jwks_file(path).with_context(|| format!("cannot use keys `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{read_bounded_line, MAX_FILE_LINE_BYTES};

    fn lines(input: &[u8]) -> Vec<Option<String>> {
        let mut reader = std::io::Cursor::new(input.to_vec());
        let mut out = Vec::new();
        while let Some(line) = read_bounded_line(&mut reader).unwrap() {
            let refused = line.is_none();
            out.push(line);
            if refused {
                break;
            }
        }
        out
    }

    #[test]
    fn lines_are_read_as_lines_reads_them() {
        assert_eq!(
            lines(b"a\nb\r\n\nlast"),
            [Some("a"), Some("b"), Some(""), Some("last")].map(|l| l.map(String::from))
        );
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"\xff\n"), vec![None]);
    }

    #[test]
    fn a_line_over_the_limit_is_refused_having_read_no_more_than_the_limit() {
        let limit = usize::try_from(MAX_FILE_LINE_BYTES).unwrap();
        let mut at_limit = vec![b'x'; limit];
        at_limit.push(b'\n');
        assert_eq!(lines(&at_limit), vec![Some("x".repeat(limit))]);

        let over = vec![b'x'; limit + 10];
        let mut reader = std::io::Cursor::new(over);
        assert_eq!(read_bounded_line(&mut reader).unwrap(), Some(None));
        assert_eq!(reader.position(), MAX_FILE_LINE_BYTES + 1);
    }
}
