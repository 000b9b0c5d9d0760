//! `zt`: the ZT-Infra command line. This file only parses and dispatches; each command lives
//! in its own module under `commands/`.

mod commands;
mod exit;
mod logging;
mod verification;

use clap::{Parser, Subcommand};

/// ZT-Infra: a zero-trust control plane for AI-agent actions.
///
/// Every flag has an environment twin named in its help (`ZT_*`).
/// Exit codes: 0 success, 1 failure (including a log that does not verify), 2 usage error.
#[derive(Parser)]
#[command(name = "zt", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane.
    Serve(commands::serve::ServeArgs),
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
    /// Put an MCP server behind the control plane: every tool call is decided first.
    McpGateway(commands::mcp_gateway::McpGatewayArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Audit(command) => commands::audit::run(command),
        Command::Bench(args) => commands::bench::run(args),
        Command::Policy(command) => commands::policy::run(command),
        Command::McpGateway(args) => commands::mcp_gateway::run(args),
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
