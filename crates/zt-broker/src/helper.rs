//! The helper side: a fresh process the broker spawns (`zt __sandbox-exec`), which applies the
//! sandbox to itself and then replaces itself with the command, so the command starts already
//! confined and nothing of the broker (its memory, its credentials, its descriptors) survives.
//! No `unsafe`: the sandbox is applied to the helper's own process, then `exec`.
//!
//! Failure before `exec` is reported on the status pipe the broker passes (`status_fd`): the
//! broker reads it to end of file, which comes with a successful `exec` (the descriptor is
//! close-on-exec) or with an error message.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::{self, ConcreteProfile};

/// The helper's exit status when it could not start the command (`env`'s convention).
pub const HELPER_FAILED: i32 = 125;

/// What the broker tells the helper, as one JSON argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperSpec {
    /// The file to run, as decided on: its real path (no symlink, no `..`).
    pub program: PathBuf,
    /// The profile to apply.
    pub profile: ConcreteProfile,
    /// The profile the decision granted: every path of `profile` must lead beneath it.
    pub granted: ConcreteProfile,
    /// Run with the parts the kernel cannot enforce dropped.
    pub allow_degraded: bool,
    /// The Landlock ABI cap the broker probed with ([`sandbox::ABI_CAP_ENV`]), so the ruleset
    /// applied is the one reported (the helper's environment is scrubbed of it).
    #[serde(default)]
    pub landlock_abi_cap: Option<u32>,
    /// The write end of the status pipe, inherited.
    pub status_fd: i32,
    /// The broker's process id: if the broker is gone before the helper is set up, stop.
    pub broker_pid: i32,
}

/// Runs the helper: `spec` is the JSON [`HelperSpec`], `command` the command's `argv[0]` and
/// arguments (it runs [`HelperSpec::program`]). Returns only on failure (with the status to
/// exit with); on success the process is the command.
pub fn run(spec: &str, command: &[OsString]) -> i32 {
    let spec: HelperSpec = match serde_json::from_str(spec) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("zt sandbox helper: bad specification: {e}");
            return HELPER_FAILED;
        }
    };
    // No command runs unless the broker can be told whether it started: the status pipe
    // first carries [`STATUS_ALIVE`], then a failure's message or nothing (the exec closes it).
    let Some(mut status) = open_status(spec.status_fd) else {
        eprintln!("zt sandbox helper: cannot open the status pipe; nothing was run");
        return HELPER_FAILED;
    };
    if status.write_all(&[STATUS_ALIVE]).is_err() {
        return HELPER_FAILED;
    }
    let error = match prepare(&spec, command) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    let _ = status.write_all(error.as_bytes());
    HELPER_FAILED
}

/// The status pipe's first byte: the helper could report, so end of file after it alone means
/// the command was exec'd.
pub(crate) const STATUS_ALIVE: u8 = 0;

/// What the status pipe said: `Ok` if the command was exec'd, else why it did not start.
pub(crate) fn started(status: &[u8]) -> Result<(), String> {
    match status.split_first() {
        None => Err("the sandbox helper never reported; nothing was run".into()),
        Some((&STATUS_ALIVE, [])) => Ok(()),
        Some((&STATUS_ALIVE, message)) => Err(printable(message)),
        Some(_) => Err(printable(status)),
    }
}

/// A helper's message as receipt text: lossy UTF-8 (it may be cut inside a character), no
/// control characters.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// Sets up and execs; returns only an error.
fn prepare(spec: &HelperSpec, command: &[OsString]) -> Result<std::convert::Infallible, String> {
    let Some((arg0, args)) = command.split_first() else {
        return Err("no command".into());
    };
    guard_parent(spec.broker_pid)?;
    // Every descriptor but stdin, stdout and stderr closes at exec: none the broker's caller
    // left open reaches the command (the status pipe included, which signals the exec).
    close_fds::CloseFdsBuilder::new().cloexecfrom(3);
    sandbox::restrict_self(
        &spec.profile,
        &spec.granted,
        spec.allow_degraded,
        spec.landlock_abi_cap,
    )?;
    let program = &spec.program;
    // As late as can be: a path that no longer leads to the file decided on runs nothing. The
    // path is looked up once more by the exec, so a swap in between by someone who may write
    // a directory on it is not seen (docs/BROKER.md).
    still_decided(program)?;
    let error = exec(program, arg0, args);
    Err(format!("cannot run `{}`: {error}", program.display()))
}

/// `Ok` if `program` is still the real path of a file: no symlink and no `..` on the way,
/// so the file the exec finds is the one the decision named.
fn still_decided(program: &Path) -> Result<(), String> {
    match std::fs::canonicalize(program) {
        Ok(real) if real == program => Ok(()),
        Ok(real) => Err(format!(
            "cannot run `{}`: it now leads to `{}`, not the file decided on",
            program.display(),
            real.display()
        )),
        Err(e) => Err(format!("cannot run `{}`: {e}", program.display())),
    }
}

#[cfg(unix)]
fn exec(program: &Path, arg0: &OsStr, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .exec()
}

#[cfg(not(unix))]
fn exec(_: &Path, _: &OsStr, _: &[OsString]) -> std::io::Error {
    std::io::Error::other("the broker runs on unix only")
}

/// The command dies with the broker: a broker that is killed must not leave an unaudited
/// command running (its decision stays without a receipt, an orphan `zt audit orphans` lists).
#[cfg(target_os = "linux")]
fn guard_parent(broker_pid: i32) -> Result<(), String> {
    use rustix::process::{getppid, set_parent_process_death_signal, Pid, Signal};
    set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    if getppid().map(Pid::as_raw_pid) != Some(broker_pid) {
        return Err("the broker is gone".into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn guard_parent(_: i32) -> Result<(), String> {
    Ok(())
}

/// The status pipe, opened anew through `/proc/self/fd` (close-on-exec, unlike the inherited
/// descriptor, which `cloexecfrom` closes at exec too).
fn open_status(fd: i32) -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_helper_that_reported_and_then_said_nothing_started_the_command() {
        assert_eq!(started(&[STATUS_ALIVE]), Ok(()));
        // It never opened the pipe, or died before: nothing can be said to have run.
        assert!(started(&[]).is_err());
        let failed = started(b"\0cannot run `x`: No such file\n").unwrap_err();
        assert_eq!(failed, "cannot run `x`: No such file");
        // A message cut inside a character at the bound is still a failure.
        let cut = [STATUS_ALIVE, b'a', 0xC3];
        assert!(started(&cut).unwrap_err().starts_with('a'));
        assert!(started(b"stray").is_err());
    }

    #[test]
    fn only_a_path_that_still_leads_to_the_decided_file_runs() {
        let real = std::fs::canonicalize("/usr/bin/true").unwrap();
        still_decided(&real).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("true");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let swapped = still_decided(&link).unwrap_err();
        assert!(swapped.contains("not the file decided on"), "{swapped}");
        assert!(still_decided(Path::new("/usr/bin/../bin/true")).is_err());
        assert!(still_decided(&dir.path().join("gone")).is_err());
    }
}
