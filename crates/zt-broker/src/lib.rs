#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod child;
mod command;
pub mod env;
pub mod helper;
pub mod sandbox;

use std::ffi::OsString;

use serde_json::{Map, Value};
use zt_client::{ClientError, ControlPlane};
use zt_contract::execution::MAX_DETAIL_BYTES;
use zt_contract::sandbox::ProfileError;
use zt_contract::{
    Decision, DecisionRequest, DecisionResponse, ExecutionReceipt, Narrowing, ReceiptRequest,
    ReceiptResponse, SandboxProfile,
};

pub use child::{Ended, HelperCommand, StreamDigest};
pub use zt_contract::ExecutionOutcome;

use crate::command::ResolvedCommand;
use crate::helper::HelperSpec;
use crate::sandbox::ConcreteProfile;

/// Why a command did not run (or ran, but its receipt is missing: see [`Execution::receipt`]).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The request itself is wrong (no command, a `--pass-env` name the broker refuses).
    #[error("{0}")]
    Usage(String),
    /// No valid decision: unreachable, timed out, malformed, bad evidence (fail closed).
    #[error(transparent)]
    ControlPlane(#[from] ClientError),
    /// The control plane denied the action.
    #[error("denied: {}", .0.reason)]
    Denied(Box<DecisionResponse>),
    /// An allow without the sandbox profile a broker asks for (an older control plane).
    #[error("the allow carries no sandbox profile; the control plane does not grant sandboxes")]
    NoProfile(Box<DecisionResponse>),
    /// The caller asked for more than the decision granted; nothing ran.
    #[error("refused before running: {error}")]
    Wider {
        /// What was wider.
        error: ProfileError,
        /// The receipt recording the refusal.
        receipt: Box<Result<ReceiptResponse, ClientError>>,
    },
    /// The kernel cannot enforce the whole profile and a degraded run was not allowed (by
    /// the caller's `--allow-degraded` and the deciding policy both); nothing ran.
    #[error(
        "refused before running: the kernel cannot enforce {}{}",
        .missing.join("; "),
        if *.refused_by_policy { POLICY_REFUSES_DEGRADED } else { "" }
    )]
    Degraded {
        /// What cannot be enforced.
        missing: Vec<String>,
        /// `--allow-degraded` was given, but the policy's grant does not allow it.
        refused_by_policy: bool,
        /// The receipt recording the refusal.
        receipt: Box<Result<ReceiptResponse, ClientError>>,
    },
}

/// What a degraded run's refusal adds when `--allow-degraded` was given but the policy does
/// not allow it.
const POLICY_REFUSES_DEGRADED: &str =
    "; the deciding policy does not allow a degraded run (@sandbox_degraded(\"allow\"))";

/// What the caller asks the broker to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The action asked for.
    pub action: String,
    /// The resource acted on.
    pub resource: String,
    /// The decision's context.
    pub context: Option<Map<String, Value>>,
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// How to narrow the granted profile (never widen).
    pub narrowing: Narrowing,
    /// Environment variables passed to the command besides `PATH`, `HOME` and `LANG`.
    pub pass_env: Vec<String>,
    /// Dangerous: run even when the kernel cannot enforce the whole profile (recorded in the
    /// receipt).
    pub dangerous_allow_degraded: bool,
}

/// A command that was allowed: the decision, the profile it ran under, how it ended, and its
/// receipt (an `Err` leaves the decision without a receipt: an orphan in `zt audit orphans`).
#[derive(Debug)]
pub struct Execution {
    /// The allow decision.
    pub decision: DecisionResponse,
    /// The profile it ran under.
    pub profile: SandboxProfile,
    /// What the kernel did not enforce (run with degradation allowed), if anything.
    pub degraded: Option<Vec<String>>,
    /// How it ended.
    pub ended: Ended,
    /// The committed receipt record.
    pub receipt: Result<ReceiptResponse, ClientError>,
}

/// An execution broker: asks the control plane, runs allowed commands in the granted sandbox,
/// and records how they ended.
pub struct Broker {
    client: ControlPlane,
    actor: String,
    helper: HelperCommand,
}

// Leaves out the control-plane client, which holds the bearer token.
impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker deciding as `actor` through `client`, starting commands through `helper` (a
    /// program that calls [`helper::run`]; for `zt`: `zt __sandbox-exec`).
    pub fn new(client: ControlPlane, actor: &str, helper: HelperCommand) -> Self {
        Self {
            client,
            actor: actor.to_string(),
            helper,
        }
    }

    /// Decides, and on allow runs the command sandboxed with stdin, stdout and stderr passed
    /// through, then appends the receipt. On deny or any error the command never starts.
    pub async fn execute(&self, request: &ExecRequest) -> Result<Execution, BrokerError> {
        env::check_pass_env(&request.pass_env)?;
        // Resolved with the PATH the command will get, and decided on as resolved.
        let Some(command) = ResolvedCommand::resolve(&request.command, &env::command_path()) else {
            return Err(BrokerError::Usage("no command to run".into()));
        };
        let context = command
            .added_to(request.context.clone())
            .map_err(BrokerError::Usage)?;
        let decision = self
            .client
            .decide(&DecisionRequest {
                actor: self.actor.clone(),
                action: request.action.clone(),
                resource: request.resource.clone(),
                context: Some(context),
                sandbox: true,
                ..DecisionRequest::default()
            })
            .await?;
        if decision.decision != Decision::Allow {
            return Err(BrokerError::Denied(Box::new(decision)));
        }
        let Some(granted) = decision.evidence.sandbox.clone() else {
            return Err(BrokerError::NoProfile(Box::new(decision)));
        };
        // From here on, every way out records a receipt.
        let profile = match granted.narrowed(&request.narrowing) {
            Ok(profile) => profile,
            Err(error) => {
                let ended = Ended::not_started(error.to_string());
                let receipt = self.receipt(&decision, &granted, &ended, None).await;
                return Err(BrokerError::Wider {
                    error,
                    receipt: Box::new(receipt),
                });
            }
        };
        let cap = sandbox::abi_cap();
        let missing = sandbox::unenforceable_capped(cap);
        // A degraded run needs both the operator's flag and the deciding policy's grant
        // (`@sandbox_degraded("allow")`): the flag alone is the caller's choice.
        let degraded_allowed = request.dangerous_allow_degraded && profile.allows_degraded();
        if !missing.is_empty() && !degraded_allowed {
            let why = if request.dangerous_allow_degraded {
                POLICY_REFUSES_DEGRADED
            } else {
                ""
            };
            let detail = format!("the kernel cannot enforce {}{why}", missing.join("; "));
            let ended = Ended::not_started(detail);
            let receipt = self.receipt(&decision, &profile, &ended, None).await;
            return Err(BrokerError::Degraded {
                missing,
                refused_by_policy: request.dangerous_allow_degraded,
                receipt: Box::new(receipt),
            });
        }
        let degraded = (!missing.is_empty()).then_some(missing);
        let ended = self
            .run(
                &profile,
                &granted,
                request,
                &command,
                degraded.is_some(),
                cap,
            )
            .await;
        let receipt = self
            .receipt(&decision, &profile, &ended, degraded.clone())
            .await;
        Ok(Execution {
            decision,
            profile,
            degraded,
            ended,
            receipt,
        })
    }

    async fn run(
        &self,
        profile: &SandboxProfile,
        granted: &SandboxProfile,
        request: &ExecRequest,
        command: &ResolvedCommand,
        degraded: bool,
        cap: Option<u32>,
    ) -> Ended {
        let tmp = if profile.wants_private_tmp() {
            match tempfile::Builder::new().prefix("zt-exec-").tempdir() {
                Ok(dir) => Some(dir),
                Err(e) => return Ended::not_started(format!("cannot make the private tmp: {e}")),
            }
        } else {
            None
        };
        let tmp_path = tmp.as_ref().map(tempfile::TempDir::path);
        let spec = HelperSpec {
            program: command.program.clone().into(),
            profile: concrete(profile, tmp_path),
            granted: concrete(granted, tmp_path),
            allow_degraded: degraded,
            landlock_abi_cap: cap,
            status_fd: -1,
            broker_pid: 0,
        };
        let env = env::child_env(std::env::vars_os(), &request.pass_env, tmp_path);
        child::run(&self.helper, spec, &command.argv(), env).await
    }

    async fn receipt(
        &self,
        decision: &DecisionResponse,
        profile: &SandboxProfile,
        ended: &Ended,
        degraded: Option<Vec<String>>,
    ) -> Result<ReceiptResponse, ClientError> {
        let detail = ended.detail.as_ref().map(|d| bounded(d));
        let request = ReceiptRequest {
            actor: decision.actor.clone(),
            sandbox: profile.clone(),
            execution: ExecutionReceipt {
                decision_hash: decision.audit.current_hash.clone(),
                decision_seq: decision.evidence.seq,
                degraded,
                detail,
                duration_ms: ended.duration_ms,
                exit_code: ended.exit_code,
                outcome: ended.outcome,
                signal: ended.signal,
                stderr_bytes: ended.stderr.bytes,
                stderr_sha256: ended.stderr.sha256.clone(),
                stdout_bytes: ended.stdout.bytes,
                stdout_sha256: ended.stdout.sha256.clone(),
            },
        };
        self.client.submit_receipt(&request).await
    }
}

/// `@tmp` resolved to the run's private directory (dropped when there is none).
fn concrete(profile: &SandboxProfile, tmp: Option<&std::path::Path>) -> ConcreteProfile {
    let paths = |list: &[String]| {
        list.iter()
            .filter_map(|p| match p.as_str() {
                zt_contract::sandbox::PRIVATE_TMP => tmp.map(std::path::Path::to_path_buf),
                other => Some(other.into()),
            })
            .collect()
    };
    ConcreteProfile {
        read: paths(profile.read()),
        write: paths(profile.write()),
        exec: paths(profile.exec()),
        connect: profile.connect().to_vec(),
    }
}

/// `text` cut to what a receipt's `detail` may hold.
fn bounded(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_DETAIL_BYTES {
            break;
        }
        out.push(c);
    }
    out
}
