//! `zt audit verify-consistency` and `zt audit verify-inclusion`: check the server's Merkle
//! proofs against checkpoints saved earlier. Nothing the server says is taken on trust: the
//! checkpoints' signatures are verified, the leaf hash is recomputed from the record, and the
//! proof must lead to the saved root.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use zt_contract::merkle::{audit_leaf_hash, verify_consistency, verify_inclusion};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{
    record_hash, ChainVerifier, ConsistencyBody, Digest32, InclusionBody, PublicKeySet,
};

use super::checkpoint::{read_checkpoint, trusted_keys, verify_note};
use crate::connection::{self, AdminArgs, TlsArgs, AUDIT_TIMEOUT};
use crate::exit::Exit;

/// `zt audit verify-consistency` arguments.
#[derive(Args, Debug)]
pub(crate) struct ConsistencyArgs {
    /// The control plane that serves the proof (and the current checkpoint without `--new`).
    #[arg(long, env = "ZT_URL")]
    pub url: zt_client::BaseUrl,
    /// A checkpoint saved earlier (`zt audit checkpoint save`).
    #[arg(long)]
    pub old: PathBuf,
    /// A later saved checkpoint (default: the server's checkpoint at its current size).
    #[arg(long)]
    pub new: Option<PathBuf>,
    /// Trust only these audit keys (a JWKS file saved earlier), not the server's
    /// `GET /audit/keys`.
    #[arg(long, env = "ZT_KEYS")]
    pub keys: Option<PathBuf>,
    /// The log origin the checkpoints must name (default: the one the old checkpoint names).
    #[arg(long)]
    pub origin: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `zt audit verify-inclusion` arguments.
#[derive(Args, Debug)]
pub(crate) struct InclusionArgs {
    /// The control plane that serves the record and its proof (reading a record needs an admin
    /// credential, --admin-token-file, unless the server runs with `--auth none`).
    #[arg(long, env = "ZT_URL")]
    pub url: zt_client::BaseUrl,
    /// The record's sequence number (a decision's `evidence.seq`).
    #[arg(long)]
    pub seq: u64,
    /// A checkpoint saved earlier that covers the record (its size must exceed `--seq`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Trust only these audit keys (a JWKS file saved earlier), not the server's
    /// `GET /audit/keys`.
    #[arg(long, env = "ZT_KEYS")]
    pub keys: Option<PathBuf>,
    /// The log origin the checkpoint must name (default: the one it names).
    #[arg(long)]
    pub origin: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// A check that failed, as opposed to a source that could not be read.
#[derive(Debug)]
pub(super) struct Rejected {
    check: &'static str,
    message: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rejected {}

/// A failed check, named `check` in `--json` output.
pub(super) fn rejected(check: &'static str, message: impl Into<String>) -> anyhow::Error {
    Rejected {
        check,
        message: message.into(),
    }
    .into()
}

/// Runs `zt audit verify-consistency`.
pub(super) fn run_consistency(args: ConsistencyArgs) -> Exit {
    finish(args.json, block_on(consistency(&args)))
}

/// Runs `zt audit verify-inclusion`.
pub(super) fn run_inclusion(args: InclusionArgs) -> Exit {
    finish(args.json, block_on(inclusion(&args)))
}

/// Runs a future on a fresh current-thread runtime.
pub(super) fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// Prints a command's result (text, or JSON with `valid`) and picks the exit code.
pub(super) fn finish(json: bool, result: anyhow::Result<(String, Value)>) -> Exit {
    match result {
        Ok((text, value)) => {
            if json {
                println!("{value}");
            } else {
                println!("{text}");
            }
            Exit::Success
        }
        Err(e) => {
            let rejection = e.downcast_ref::<Rejected>();
            let check = rejection.map_or("read", |r| r.check);
            if json {
                println!(
                    "{}",
                    json!({"valid": false, "error": {"check": check, "message": connection::message(&e)}})
                );
            } else if rejection.is_some() {
                println!("REJECTED: {e:#}");
            } else {
                eprintln!("error: {}", connection::message(&e));
            }
            connection::exit_code(&e)
        }
    }
}

async fn consistency(args: &ConsistencyArgs) -> anyhow::Result<(String, Value)> {
    let server = connection::client(&args.url, args.tls.options(true), AUDIT_TIMEOUT, None)?;
    let jwks = trusted_keys(&server, args.keys.as_deref()).await?;
    let old = read_checkpoint(&args.old, args.origin.as_deref(), &jwks)
        .map_err(|e| rejected("checkpoint", format!("{e:#}")))?;
    let new = match &args.new {
        Some(path) => read_checkpoint(path, Some(&old.origin), &jwks)
            .map_err(|e| rejected("checkpoint", format!("{e:#}")))?,
        None => {
            let note = server.audit_checkpoint(true).await?;
            verify_note(&note, Some(&old.origin), &jwks).map_err(|e| {
                rejected(
                    "checkpoint",
                    format!("the server's current checkpoint: {e:#}"),
                )
            })?
        }
    };
    if new.size < old.size {
        return Err(rejected(
            "consistency",
            format!(
                "the new checkpoint has {} records, fewer than the old one's {}: the log was cut",
                new.size, old.size
            ),
        ));
    }
    let answer: ConsistencyBody = server.consistency_proof(old.size, new.size).await?;
    if (answer.from, answer.to) != (old.size, new.size) {
        return Err(rejected(
            "consistency",
            format!(
                "asked for a proof from {} to {}, got one from {} to {}",
                old.size, new.size, answer.from, answer.to
            ),
        ));
    }
    let proof = parse_hashes(&answer.proof)?;
    verify_consistency(old.size, new.size, &old.root, &new.root, &proof).map_err(|e| {
        rejected(
            "consistency",
            format!(
                "the log's first {} records are not the ones checkpoint `{}` saved ({e}): the log was rewritten, or the proof is forged",
                old.size,
                args.old.display()
            ),
        )
    })?;
    Ok((
        format!(
            "consistent: the {} records of the old checkpoint (root {}) are the first records of the log at {} records (root {}), `{}`",
            old.size, old.root, new.size, new.root, old.origin
        ),
        json!({"valid": true, "origin": old.origin,
               "old": {"size": old.size, "root": old.root.to_hex()},
               "new": {"size": new.size, "root": new.root.to_hex()}}),
    ))
}

async fn inclusion(args: &InclusionArgs) -> anyhow::Result<(String, Value)> {
    let server = connection::admin_client(&args.url, &args.tls, &args.admin, AUDIT_TIMEOUT)?;
    let jwks = trusted_keys(&server, args.keys.as_deref()).await?;
    let checkpoint = read_checkpoint(&args.checkpoint, args.origin.as_deref(), &jwks)
        .map_err(|e| rejected("checkpoint", format!("{e:#}")))?;
    let (seq, size) = (args.seq, checkpoint.size);
    if seq >= size {
        return Err(rejected(
            "inclusion",
            format!("checkpoint `{}` covers records 0 to {}: it cannot prove record {seq}; save a newer one",
                args.checkpoint.display(), size.saturating_sub(1)),
        ));
    }

    // The record, checked on its own: sequence number, hash and signature.
    let lines = server.audit_records(seq, 1).await?;
    let line = lines
        .first()
        .ok_or_else(|| rejected("record", format!("the server has no record {seq}")))?;
    let keys = PublicKeySet::from_jwks(&jwks).context("the trusted keys")?;
    // Read as `zt audit verify` reads a line: strictly (a duplicate key is refused).
    let record = ChainVerifier::new(SignaturePolicy::Require(&keys))
        .parse_line(line)
        .map_err(|e| rejected("record", format!("record {seq} is not a record: {e}")))?;
    let previous = record
        .get("previous_hash")
        .and_then(Value::as_str)
        .ok_or_else(|| rejected("record", format!("record {seq} has no previous_hash")))?;
    ChainVerifier::resume(SignaturePolicy::Require(&keys), seq, previous)
        .check_record(&record)
        .map_err(|e| rejected("record", format!("record {seq} does not verify: {e}")))?;
    // The leaf comes from the record itself, never from the server's answer.
    let current_hash = record_hash(&record);
    let leaf = audit_leaf_hash(&current_hash);

    let answer: InclusionBody = server.inclusion_proof(seq, size).await?;
    if (answer.seq, answer.size) != (seq, size) {
        return Err(rejected(
            "inclusion",
            format!(
                "asked for a proof of record {seq} in {size} records, got one of {} in {}",
                answer.seq, answer.size
            ),
        ));
    }
    let proof = parse_hashes(&answer.proof)?;
    verify_inclusion(&leaf, seq, size, &proof, &checkpoint.root).map_err(|e| {
        rejected(
            "inclusion",
            format!(
                "record {seq} as the server serves it (current_hash {current_hash}) is not in checkpoint `{}` ({e})",
                args.checkpoint.display()
            ),
        )
    })?;
    Ok((
        format!(
            "included: record {seq} (current_hash {current_hash}) is in the log `{}` of checkpoint `{}` ({size} records, root {})",
            checkpoint.origin,
            args.checkpoint.display(),
            checkpoint.root
        ),
        json!({"valid": true, "origin": checkpoint.origin, "seq": seq, "size": size,
               "root": checkpoint.root.to_hex(), "current_hash": current_hash.to_hex(),
               "leaf_hash": leaf.to_hex()}),
    ))
}

/// Proof hashes: 64 lowercase hex digits each.
fn parse_hashes(hashes: &[String]) -> anyhow::Result<Vec<Digest32>> {
    hashes
        .iter()
        .map(|h| {
            Digest32::from_hex(h).ok_or_else(|| {
                rejected(
                    "proof",
                    format!(
                        "the proof holds `{}`, not a hash",
                        h.chars().take(80).collect::<String>()
                    ),
                )
            })
        })
        .collect()
}
