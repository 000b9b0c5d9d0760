//! `zt completions SHELL`: shell completions generated from the CLI definition.

use clap::Args;
use clap_complete::Shell;

use crate::exit::Exit;

/// `zt completions` arguments.
#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for `command` to stdout.
pub(crate) fn run(args: CompletionsArgs, mut command: clap::Command) -> Exit {
    clap_complete::generate(args.shell, &mut command, "zt", &mut std::io::stdout());
    Exit::Success
}
