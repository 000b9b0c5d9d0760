//! `zt man`: man pages generated from the CLI definition.

use std::path::PathBuf;

use clap::Args;

use crate::exit::Exit;

/// `zt man` arguments.
#[derive(Args, Debug)]
pub(crate) struct ManArgs {
    /// Write one page per command (`zt.1`, `zt-serve.1`, …) into this directory instead of
    /// printing `zt.1` on stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Prints or writes the man pages of `command`.
pub(crate) fn run(args: ManArgs, command: clap::Command) -> Exit {
    let written = match &args.out_dir {
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout()),
        Some(dir) => {
            std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(command, dir))
        }
    };
    match written {
        Ok(()) => Exit::Success,
        Err(e) => {
            eprintln!("error: cannot write the man pages: {e}");
            Exit::Failure
        }
    }
}
