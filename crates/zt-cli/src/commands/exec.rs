//! `zt exec`: the execution broker (crate `zt-broker`). Asks the control plane whether the
//! actor may take `--action`; on deny or any error the command never starts, and `zt exec`
//! exits with a code of its own (docs/BROKER.md). On allow the command runs in the Landlock
//! sandbox the deciding permit grants (narrowed by `--read`, `--write`, `--execute`,
//! `--connect`, `--no-network`, never widened), and its exit status becomes `zt exec`'s. An
//! execution receipt joins the audit chain when it ends.

use std::ffi::OsString;

use clap::Args;
use zt_broker::{Broker, BrokerError, ExecRequest, Execution, ExecutionOutcome, HelperCommand};
use zt_contract::Narrowing;

use crate::exit::Exit;

/// The hidden subcommand the broker starts as its sandbox helper.
pub(crate) const HELPER_SUBCOMMAND: &str = "__sandbox-exec";

/// `zt exec` arguments.
#[derive(Args, Debug)]
pub(crate) struct ExecArgs {
    /// The action to ask for (e.g. `ci.build`).
    #[arg(long)]
    pub action: String,
    /// The resource acted on.
    #[arg(long, default_value = "")]
    pub resource: String,
    /// The decision's context, a JSON object (policies read it as `context`).
    #[arg(long, value_name = "JSON")]
    pub context: Option<String>,
    /// The control plane, the agent, its token, the decision timeout and TLS.
    #[command(flatten)]
    pub enforcement: crate::connection::EnforcementArgs,
    /// Narrow the readable paths to these (each within the grant); repeatable.
    #[arg(long = "read", value_name = "PATH", help_heading = "Sandbox")]
    pub read: Vec<String>,
    /// Narrow the writable paths to these (`@tmp`: the private temporary directory).
    #[arg(long = "write", value_name = "PATH", help_heading = "Sandbox")]
    pub write: Vec<String>,
    /// Narrow the executable paths to these.
    #[arg(long = "execute", value_name = "PATH", help_heading = "Sandbox")]
    pub execute: Vec<String>,
    /// Narrow the TCP ports the command may connect to.
    #[arg(long, value_name = "PORT", help_heading = "Sandbox")]
    pub connect: Vec<u16>,
    /// No network at all, whatever the grant.
    #[arg(long, conflicts_with = "connect", help_heading = "Sandbox")]
    pub no_network: bool,
    /// Pass these environment variables to the command besides PATH, HOME and LANG
    /// (comma-separated or repeated; `ZT_*` never passes).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NAME",
        help_heading = "Sandbox"
    )]
    pub pass_env: Vec<String>,
    /// Danger: run even if the kernel cannot enforce the whole profile (no Landlock, or no
    /// network rules), where the deciding policy also allows it (`@sandbox_degraded("allow")`);
    /// the degradation is recorded in the receipt.
    #[arg(long, help_heading = "Sandbox")]
    pub allow_degraded: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// The hidden helper's arguments: the sandbox specification and the command.
#[derive(Args, Debug)]
pub(crate) struct SandboxExecArgs {
    /// The specification (JSON), from the broker.
    pub spec: String,
    /// The command's `argv[0]` and arguments (the file to run is in the specification).
    #[arg(last = true)]
    pub command: Vec<OsString>,
}

/// Runs the hidden helper: returns only if the command could not be started.
pub(crate) fn run_helper(args: SandboxExecArgs) -> Exit {
    let status = zt_broker::helper::run(&args.spec, &args.command);
    Exit::Command(u8::try_from(status).unwrap_or(1))
}

/// Runs `zt exec`.
pub(crate) fn run(args: ExecArgs) -> Exit {
    let request = match request(&args) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let client = match args.enforcement.client() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("zt exec: not run: {}", crate::connection::message(&e));
            return match crate::connection::exit_code(&e) {
                Exit::Usage => Exit::Usage,
                _ => Exit::ControlPlane,
            };
        }
    };
    let program = match std::env::current_exe() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("zt exec: not run: cannot find the zt binary for the sandbox helper: {e}");
            return Exit::SandboxUnavailable;
        }
    };
    let helper = HelperCommand {
        program,
        args: vec![HELPER_SUBCOMMAND.into()],
    };
    let broker = Broker::new(client, &args.enforcement.actor, helper);
    // One thread: the helper is spawned from the thread that lives as long as the broker, as
    // its parent-death signal follows the spawning thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zt exec: not run: cannot start runtime: {e}");
            return Exit::Failure;
        }
    };
    let executed = runtime.block_on(broker.execute(&request));
    runtime.shutdown_background();
    match executed {
        Ok(execution) => ended(&execution),
        Err(error) => refused(error),
    }
}

fn request(args: &ExecArgs) -> anyhow::Result<ExecRequest> {
    let context = match &args.context {
        None => None,
        // Strict, as the server reads it: a key given twice is refused here, not dropped.
        Some(text) => match zt_contract::strict_json::parse_value(text.as_bytes())? {
            serde_json::Value::Object(map) => Some(map),
            _ => anyhow::bail!("--context must be a JSON object"),
        },
    };
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let connect = if args.no_network {
        Some(Vec::new())
    } else {
        (!args.connect.is_empty()).then(|| args.connect.clone())
    };
    Ok(ExecRequest {
        action: args.action.clone(),
        resource: args.resource.clone(),
        context,
        command: args.command.clone(),
        narrowing: Narrowing {
            read: list(&args.read),
            write: list(&args.write),
            exec: list(&args.execute),
            connect,
        },
        pass_env: args.pass_env.clone(),
        dangerous_allow_degraded: args.allow_degraded,
    })
}

fn refused(error: BrokerError) -> Exit {
    match &error {
        BrokerError::Usage(_) => {
            eprintln!("error: {error}");
            return Exit::Usage;
        }
        BrokerError::Denied(decision) => {
            eprintln!(
                "zt exec: not run: denied: {} (decision seq {})",
                decision.reason, decision.evidence.seq
            );
            return Exit::Denied;
        }
        _ => eprintln!("zt exec: not run: {error}"),
    }
    match error {
        BrokerError::ControlPlane(_) | BrokerError::NoProfile(_) => Exit::ControlPlane,
        BrokerError::Wider { receipt, .. } => {
            report_receipt(&receipt);
            Exit::ProfileRefused
        }
        BrokerError::Degraded { receipt, .. } => {
            report_receipt(&receipt);
            Exit::SandboxUnavailable
        }
        BrokerError::Usage(_) | BrokerError::Denied(_) => Exit::Usage,
    }
}

fn report_receipt(receipt: &Result<zt_contract::ReceiptResponse, zt_client::ClientError>) {
    if let Err(e) = receipt {
        eprintln!("zt exec: the receipt recording the refusal was not recorded: {e}");
    }
}

fn ended(execution: &Execution) -> Exit {
    if let Some(degraded) = &execution.degraded {
        eprintln!(
            "zt exec: WARNING: ran DEGRADED, not enforced: {}",
            degraded.join("; ")
        );
    }
    let ended = &execution.ended;
    let status = match (ended.outcome, ended.exit_code, ended.signal) {
        (ExecutionOutcome::Exited, Some(code), _) => {
            Exit::Command(u8::try_from(code & 0xff).unwrap_or(1))
        }
        (ExecutionOutcome::Signaled, _, Some(signal)) => {
            Exit::Command(u8::try_from(128 + (signal & 0x7f)).unwrap_or(1))
        }
        _ => {
            eprintln!(
                "zt exec: not run: {}",
                ended
                    .detail
                    .as_deref()
                    .unwrap_or("the sandbox helper failed")
            );
            Exit::SandboxUnavailable
        }
    };
    match &execution.receipt {
        Ok(_) => status,
        Err(e) => {
            eprintln!(
                "zt exec: the command ended ({status:?}) but its execution receipt was not recorded: {e}"
            );
            Exit::ReceiptFailed
        }
    }
}
