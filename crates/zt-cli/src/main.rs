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
    /// Put the control plane in front of an A2A agent: every call decided before it is forwarded.
    A2aProxy(commands::a2a_proxy::A2aProxyArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Audit(command) => commands::audit::run(command),
        Command::Bench(args) => commands::bench::run(args),
        Command::Policy(command) => commands::policy::run(command),
        Command::A2aProxy(args) => commands::a2a_proxy::run(args),
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
