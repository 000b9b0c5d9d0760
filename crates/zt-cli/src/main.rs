//! `zt`: the ZT-Infra command line. This file only parses and dispatches; each command lives
//! in its own module under `commands/`.

mod commands;
mod config_file;
mod connection;
mod exit;
mod listener_args;
mod logging;
mod receipt_report;
mod rotation_report;
mod text;
mod verification;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// ZT-Infra: a zero-trust control plane for AI-agent actions.
///
/// Every flag has an environment twin named in its help (`ZT_*`).
/// Exit codes: 0 success, 1 failure (including a log that does not verify), 2 usage error;
/// `zt exec` has its own (docs/BROKER.md).
#[derive(Parser)]
#[command(name = "zt", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane.
    // Boxed: its many flags make it far larger than the other variants.
    Serve(Box<commands::serve::ServeArgs>),
    /// The five-minute story in one command: deny, policy, allow, verify, tamper.
    Demo(commands::demo::DemoArgs),
    /// Inspect and verify the audit log.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Load-test a running control plane.
    Bench(commands::bench::BenchArgs),
    /// Validate, test and diff policy files.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Add, list and remove the admins of a server's admin token file.
    #[command(subcommand)]
    Admin(commands::admin::AdminCommand),
    /// Make a development CA, a server certificate and SPIFFE client certificates (PEM), for
    /// trying TLS and workload identity locally.
    DevCerts(commands::dev_certs::DevCertsArgs),
    /// Rotate the audit signing key.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Print shell completions (e.g. `zt completions bash > /etc/bash_completion.d/zt`).
    Completions(commands::completions::CompletionsArgs),
    /// Print the man page (or write every command's page with --out-dir).
    Man(commands::man::ManArgs),
    /// Put the control plane in front of an A2A agent: every call decided before it is forwarded.
    A2aProxy(commands::a2a_proxy::A2aProxyArgs),
    /// Put an MCP server behind the control plane: every tool call is decided first.
    McpGateway(commands::mcp_gateway::McpGatewayArgs),
    /// Run a command only if the control plane allows it, in the sandbox the decision grants,
    /// and record how it ended. Exit: the command's status; 69 no decision, 71 no sandbox,
    /// 75 no receipt, 77 denied, 78 wider sandbox asked (docs/BROKER.md).
    Exec(commands::exec::ExecArgs),
    /// The sandbox helper `zt exec` starts (internal).
    #[command(name = "__sandbox-exec", hide = true)]
    SandboxExec(commands::exec::SandboxExecArgs),
}

fn main() -> std::process::ExitCode {
    // `zt serve --config FILE` adds the file's settings as flags, then the line is parsed.
    let argv = config_file::expand(&Cli::command(), std::env::args_os().collect());
    let cli = match Cli::command()
        .try_get_matches_from(argv)
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let exit = match cli.command {
        Command::Serve(args) => commands::serve::run(*args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Audit(command) => commands::audit::run(command),
        Command::Bench(args) => commands::bench::run(args),
        Command::Policy(command) => commands::policy::run(command),
        Command::Admin(command) => commands::admin::run(command),
        Command::DevCerts(args) => commands::dev_certs::run(args),
        Command::Keys(command) => commands::keys::run(command),
        Command::Completions(args) => commands::completions::run(args, Cli::command()),
        Command::Man(args) => commands::man::run(args, Cli::command()),
        Command::A2aProxy(args) => commands::a2a_proxy::run(args),
        Command::McpGateway(args) => commands::mcp_gateway::run(args),
        Command::Exec(args) => commands::exec::run(args),
        Command::SandboxExec(args) => commands::exec::run_helper(args),
    };
    exit.into()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
