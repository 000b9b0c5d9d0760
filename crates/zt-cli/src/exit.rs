//! The process exit codes, as `zt --help` documents them.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: it did what was asked (for `audit verify`: the log is valid).
    Success,
    /// 1: it failed (for `audit verify`: the log is invalid or could not be read).
    Failure,
    /// 2: the command line was wrong.
    Usage,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Success => std::process::ExitCode::SUCCESS,
            Exit::Failure => std::process::ExitCode::from(1),
            Exit::Usage => std::process::ExitCode::from(2),
        }
    }
}
