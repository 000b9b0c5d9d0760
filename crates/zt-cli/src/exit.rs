//! The process exit codes, as `zt --help` and docs/BROKER.md document them.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: it did what was asked (for `audit verify`: the log is valid).
    Success,
    /// 1: it failed (for `audit verify`: the log is invalid or could not be read).
    Failure,
    /// 2: the command line was wrong.
    Usage,
    /// `zt exec`: the command ran and ended with this status (128 + N when signal N ended it).
    Command(u8),
    /// 69, `zt exec`: no valid decision (control plane unreachable, timed out, malformed
    /// answer, bad evidence); the command did not run.
    ControlPlane,
    /// 71, `zt exec`: the sandbox could not be set up (the kernel cannot enforce the profile
    /// and `--allow-degraded` was not given, or the helper failed); the command did not run.
    SandboxUnavailable,
    /// 75, `zt exec`: the command ran, but its execution receipt was not recorded.
    ReceiptFailed,
    /// 77, `zt exec`: the control plane denied the action; the command did not run.
    Denied,
    /// 78, `zt exec`: the caller asked for a wider (or an invalid) sandbox than granted; the
    /// command did not run.
    ProfileRefused,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(match exit {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Command(code) => code,
            Exit::ControlPlane => 69,
            Exit::SandboxUnavailable => 71,
            Exit::ReceiptFailed => 75,
            Exit::Denied => 77,
            Exit::ProfileRefused => 78,
        })
    }
}
