//! `zt audit checkpoint save`, and what every command that reads checkpoints shares: which
//! keys and origin a checkpoint must verify with, and `zt audit verify --checkpoint`'s check
//! that the log's first records still produce a saved checkpoint's root.
//!
//! A checkpoint is a C2SP signed note whose key is an audit signing key under the name of the
//! log's origin (see `docs/PROOFS.md`). So the trusted keys are the audit keys (a JWKS, from
//! `--keys` or the server's `GET /audit/keys`), and the origin is `--origin`, or else the one
//! the saved checkpoint names.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use zt_contract::merkle::audit_leaf_hash;
use zt_contract::note::NoteKey;
use zt_contract::verify::SignaturePolicy;
use zt_contract::{
    parse_signed_note, verify_checkpoint, Checkpoint, CheckpointKeyBody, CompactRange, Digest32,
    Jwks,
};

use super::proofs::rejected;
use super::read_jwks;
use crate::connection::{self, TlsArgs, AUDIT_TIMEOUT};
use crate::exit::Exit;
use crate::verification::{Report, Verification};

/// `zt audit checkpoint` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum CheckpointCommand {
    /// Fetch the server's signed checkpoint (C2SP signed note: origin, size, Merkle root),
    /// verify its signature against the published audit key, and save it. Keep it somewhere
    /// the server cannot write: later `verify --checkpoint`, `verify-consistency` and
    /// `verify-inclusion` check the log against it. Exit 0 saved, 1 not verified or
    /// unreachable, 2 usage.
    Save(SaveArgs),
}

/// `zt audit checkpoint save` arguments.
#[derive(Args, Debug)]
pub(crate) struct SaveArgs {
    /// The control plane.
    #[arg(long, env = "ZT_URL")]
    pub url: zt_client::BaseUrl,
    /// Where to write the signed checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    /// Trust only these audit keys (a JWKS file saved earlier), not the server's
    /// `GET /audit/keys`.
    #[arg(long, env = "ZT_KEYS")]
    pub keys: Option<PathBuf>,
    /// The log origin the checkpoint must name (default: the one the server publishes at
    /// `GET /audit/checkpoint/key`).
    #[arg(long)]
    pub origin: Option<String>,
    /// Have the server sign a checkpoint at the log's current size, instead of taking the
    /// latest one (at most about a second old).
    #[arg(long)]
    pub fresh: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Runs a checkpoint subcommand.
pub(super) fn run(command: CheckpointCommand) -> Exit {
    match command {
        CheckpointCommand::Save(args) => {
            let json = args.json;
            super::proofs::finish(json, super::proofs::block_on(save(&args)))
        }
    }
}

async fn save(args: &SaveArgs) -> anyhow::Result<(String, Value)> {
    let server = connection::client(&args.url, args.tls.options(true), AUDIT_TIMEOUT, None)?;
    let jwks = trusted_keys(&server, args.keys.as_deref()).await?;
    let published: CheckpointKeyBody = server.checkpoint_key().await?;
    let origin = args.origin.as_deref().unwrap_or(&published.origin);
    if published.origin != origin {
        return Err(rejected(
            "checkpoint",
            format!("the server's log is `{}`, not `{origin}`", published.origin),
        ));
    }
    // The checkpoint key the server publishes must be one of the audit keys we trust.
    let trusted = NoteKey::from_vkey(&published.vkey).is_ok_and(|vkey| {
        note_keys(origin, &jwks)
            .iter()
            .any(|k| k.vkey() == vkey.vkey())
    });
    if !trusted {
        return Err(rejected(
            "checkpoint",
            format!(
                "the published checkpoint key `{}` is not one of the trusted audit keys",
                published.vkey
            ),
        ));
    }
    let note = server.audit_checkpoint(args.fresh).await?;
    let checkpoint = verify_note(&note, Some(origin), &jwks)
        .map_err(|e| rejected("checkpoint", format!("the server's checkpoint: {e:#}")))?;
    zt_ledger::persist::write_atomically(&args.out, note.as_bytes())
        .with_context(|| format!("cannot write `{}`", args.out.display()))?;
    let root = checkpoint.root.to_hex();
    Ok((
        format!(
            "saved: checkpoint of `{}` at {} records, root {root}, signature verified, in `{}`",
            checkpoint.origin,
            checkpoint.size,
            args.out.display()
        ),
        json!({"valid": true, "saved": args.out.display().to_string(), "origin": checkpoint.origin,
               "size": checkpoint.size, "root": root}),
    ))
}

/// The audit keys to trust: `--keys` if given, else the server's published ones.
pub(super) async fn trusted_keys(
    server: &zt_client::ControlPlane,
    keys: Option<&Path>,
) -> anyhow::Result<Jwks> {
    match keys {
        Some(path) => read_jwks(path),
        None => Ok(server.audit_keys().await?),
    }
}

/// Every trusted custody key as a note key of the log `origin`. Only custody keys sign
/// checkpoints: a session key (one with a `zt_session` certificate) signs records within its
/// certificate's window, and one taken from a memory dump, even long expired, must not be able
/// to sign a checkpoint that verifies. Keys that cannot sign notes are left out too.
pub(super) fn note_keys(origin: &str, jwks: &Jwks) -> Vec<NoteKey> {
    jwks.keys
        .iter()
        .filter(|jwk| jwk.zt_session.is_none())
        .filter_map(|jwk| NoteKey::from_jwk(origin, jwk).ok())
        .collect()
}

/// Verifies a signed checkpoint: a valid signature by one of `jwks` under the origin's name,
/// and the origin `origin` (or, if `None`, the one the note names).
pub(super) fn verify_note(
    note: &str,
    origin: Option<&str>,
    jwks: &Jwks,
) -> anyhow::Result<Checkpoint> {
    let named = parse_signed_note(note)
        .context("not a signed checkpoint")?
        .0
        .origin;
    let origin = origin.unwrap_or(&named);
    verify_checkpoint(note, origin, &note_keys(origin, jwks))
        .context("its signature or origin does not verify with the trusted keys")
}

/// Reads and verifies a saved checkpoint.
pub(super) fn read_checkpoint(
    path: &Path,
    origin: Option<&str>,
    jwks: &Jwks,
) -> anyhow::Result<Checkpoint> {
    let note = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read checkpoint `{}`", path.display()))?;
    verify_note(&note, origin, jwks).with_context(|| format!("checkpoint `{}`", path.display()))
}

/// `zt audit verify`'s run, plus, with `--checkpoint`, the Merkle tree of the first `size`
/// verified records, whose root must be the checkpoint's.
pub(super) struct CheckedVerification<'k> {
    run: Verification<'k>,
    tree: Option<TreeCheck>,
}

struct TreeCheck {
    checkpoint: Checkpoint,
    file: String,
    tree: CompactRange,
    unreadable: Option<String>,
}

impl<'k> CheckedVerification<'k> {
    /// A run as [`Verification::new`] makes it, with signatures verified on up to `jobs`
    /// threads, checking against `checkpoint` (verified, and the file it came from) if given.
    pub(super) fn new(
        signatures: SignaturePolicy<'k>,
        total: Option<u64>,
        quiet: bool,
        jobs: usize,
        checkpoint: Option<(Checkpoint, String)>,
    ) -> Self {
        Self {
            run: Verification::new(signatures, total, quiet).jobs(jobs),
            tree: checkpoint.map(|(checkpoint, file)| TreeCheck {
                checkpoint,
                file,
                tree: CompactRange::new(),
                unreadable: None,
            }),
        }
    }

    /// Checks one line; returns false once a record has failed (stop feeding).
    pub(super) fn feed(&mut self, line: &str) -> bool {
        if !self.run.feed(line) {
            return false;
        }
        match &mut self.tree {
            Some(check) if check.tree.size() < check.checkpoint.size => {
                check.add(self.run.head_hash())
            }
            _ => true,
        }
    }

    /// Ends the run: the chain's report and, with a checkpoint, whether it matched.
    pub(super) fn finish(self, expected_head: Option<&str>, signatures_checked: bool) -> Outcome {
        let report = self.run.finish(expected_head, signatures_checked);
        let verified = match &report {
            Report::Valid { records, .. } => *records,
            Report::Invalid {
                records_checked, ..
            } => *records_checked,
        };
        let checkpoint = self.tree.map(|check| check.finish(verified));
        Outcome { report, checkpoint }
    }
}

impl TreeCheck {
    /// Adds the record whose hash the chain verifier has just checked.
    fn add(&mut self, current_hash: &str) -> bool {
        match Digest32::from_hex(current_hash) {
            Some(hash) => {
                self.tree.append(audit_leaf_hash(&hash));
                true
            }
            None => {
                self.unreadable = Some(format!(
                    "record {} has no readable current_hash",
                    self.tree.size()
                ));
                false
            }
        }
    }

    /// Compares the tree with the checkpoint. Only the first `verified` records count: with
    /// signatures checked on other threads, the tree may hold records past a bad one.
    fn finish(self, verified: u64) -> CheckpointMatch {
        let cp = &self.checkpoint;
        let size = self.tree.size().min(verified);
        let error = if let Some(e) = self.unreadable {
            Some(e)
        } else if size < cp.size {
            Some(format!(
                "the log has {} records, but checkpoint `{}` commits to its first {}: records were removed",
                size,
                self.file,
                cp.size
            ))
        } else if self.tree.root() != cp.root {
            Some(format!(
                "the first {} records have Merkle root {}, but checkpoint `{}` commits to {}: the log was rewritten after the checkpoint was saved",
                cp.size,
                self.tree.root(),
                self.file,
                cp.root
            ))
        } else {
            None
        };
        CheckpointMatch {
            origin: cp.origin.clone(),
            size: cp.size,
            root: cp.root,
            error,
        }
    }
}

/// How a checked log compares with the saved checkpoint.
pub(super) struct CheckpointMatch {
    origin: String,
    size: u64,
    root: Digest32,
    error: Option<String>,
}

/// `zt audit verify`'s result: the chain's report and the checkpoint's.
pub(super) struct Outcome {
    report: Report,
    checkpoint: Option<CheckpointMatch>,
}

impl Outcome {
    /// The chain's report.
    pub(super) fn report(&self) -> &Report {
        &self.report
    }

    /// True when the chain verified and matched the checkpoint, if one was given.
    pub(super) fn is_valid(&self) -> bool {
        self.report.is_valid() && self.checkpoint.as_ref().is_none_or(|c| c.error.is_none())
    }

    /// The `--json` form: the chain's, with a `checkpoint` object when one was given; a chain
    /// that verified but does not match makes it invalid with the check `checkpoint`.
    pub(super) fn to_json(&self) -> Value {
        let mut out = self.report.to_json();
        let Some(cp) = &self.checkpoint else {
            return out;
        };
        if let Some(obj) = out.as_object_mut() {
            obj.insert(
                "checkpoint".into(),
                json!({"origin": cp.origin, "size": cp.size, "root": cp.root.to_hex(),
                       "matches": cp.error.is_none()}),
            );
            if let (Some(error), true) = (&cp.error, self.report.is_valid()) {
                obj.insert("valid".into(), json!(false));
                obj.insert(
                    "error".into(),
                    json!({"check": "checkpoint", "message": error}),
                );
            }
        }
        out
    }

    /// The human form.
    pub(super) fn to_text(&self) -> String {
        let text = self.report.to_text();
        match (&self.checkpoint, self.report.is_valid()) {
            (Some(cp), true) => match &cp.error {
                None => format!(
                    "{text}\ncheckpoint: the first {} records produce the signed root {} of `{}`",
                    cp.size, cp.root, cp.origin
                ),
                Some(error) => format!("INVALID: {error}"),
            },
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use zt_contract::note::{format_note, NoteSignature};
    use zt_contract::session_cert::SessionCertificate;
    use zt_contract::{checkpoint_signing_input, Checkpoint, Digest32};
    use zt_ledger::{LocalKeySigner, Signer};

    const ORIGIN: &str = "zt.example/audit";

    /// A checkpoint of `ORIGIN` signed by `signer`, as the server signs one.
    fn note_signed_by(signer: &LocalKeySigner) -> String {
        let key = NoteKey::from_jwk(ORIGIN, signer.public_jwk()).unwrap();
        let body = Checkpoint::new(ORIGIN, 7, Digest32([9; 32])).body();
        let signature = signer
            .sign_digest(&checkpoint_signing_input(&body))
            .unwrap();
        let line = NoteSignature {
            name: key.name().into(),
            key_id: key.key_id(),
            signature: STANDARD.decode(signature.signature).unwrap(),
        };
        format_note(&body, &[line])
    }

    #[test]
    fn only_a_custody_key_signs_a_checkpoint_that_verifies() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let custody = LocalKeySigner::load_or_create(dirs.0.path()).unwrap();
        let session = LocalKeySigner::load_or_create(dirs.1.path()).unwrap();
        let mut session_jwk = session.public_jwk().clone();
        session_jwk.zt_session = Some(SessionCertificate {
            custody_key_id: custody.key_id().into(),
            origin: ORIGIN.into(),
            not_before: "2026-01-01T00:00:00.000Z".into(),
            not_after: "2026-01-01T01:00:00.000Z".into(),
            signature: String::new(),
        });
        let jwks = Jwks {
            keys: vec![custody.public_jwk().clone(), session_jwk],
        };

        let by_custody = verify_note(&note_signed_by(&custody), Some(ORIGIN), &jwks).unwrap();
        assert_eq!(by_custody.size, 7);
        let by_session = verify_note(&note_signed_by(&session), Some(ORIGIN), &jwks);
        assert!(
            by_session.is_err(),
            "a checkpoint signed by a session key verified"
        );
        assert_eq!(note_keys(ORIGIN, &jwks).len(), 1);

        // The control: the same key published as a custody key verifies.
        let as_custody = Jwks {
            keys: vec![session.public_jwk().clone()],
        };
        assert!(verify_note(&note_signed_by(&session), Some(ORIGIN), &as_custody).is_ok());
    }
}
