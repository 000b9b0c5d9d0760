//! The broker side of a run: spawn the helper with a scrubbed environment, copy the command's
//! stdout and stderr through while hashing them, forward signals, wait, and say how it ended.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{Context, SHA256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::oneshot;
use zt_contract::ExecutionOutcome;

use crate::helper::HelperSpec;

/// How to start the helper: a program and the arguments before the helper's own (for `zt`:
/// the `zt` binary and `__sandbox-exec`).
#[derive(Debug, Clone)]
pub struct HelperCommand {
    /// The program.
    pub program: PathBuf,
    /// Its leading arguments.
    pub args: Vec<OsString>,
}

/// What one stream carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamDigest {
    /// Bytes.
    pub bytes: u64,
    /// SHA-256 of them, lowercase hex.
    pub sha256: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Exited, signaled, or never started.
    pub outcome: ExecutionOutcome,
    /// The exit status, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Why it did not start.
    pub detail: Option<String>,
    /// Milliseconds from spawn to end.
    pub duration_ms: u64,
    /// The command's stdout.
    pub stdout: StreamDigest,
    /// The command's stderr.
    pub stderr: StreamDigest,
}

impl Ended {
    /// A run that never started, for `detail`.
    pub fn not_started(detail: String) -> Self {
        Self {
            outcome: ExecutionOutcome::NotStarted,
            exit_code: None,
            signal: None,
            detail: Some(detail),
            duration_ms: 0,
            stdout: StreamDigest::empty(),
            stderr: StreamDigest::empty(),
        }
    }
}

impl StreamDigest {
    /// Nothing carried.
    pub fn empty() -> Self {
        Self {
            bytes: 0,
            sha256: zt_contract::Digest32::sha256(b"").to_hex(),
        }
    }
}

/// How long the command's output may stay open after it ended (its own background processes
/// may hold it): the digests cover what arrived until then, and the rest is not relayed.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What a run's `detail` says when its output was still open after [`OUTPUT_GRACE`].
pub(crate) const OUTPUT_CUT: &str = "output still open 2 s after the command ended (a process it started holds it): the digests cover what arrived until then";

/// Spawns the helper for `command` under `spec`, with exactly `env`, and waits for the end.
pub(crate) async fn run(
    helper: &HelperCommand,
    mut spec: HelperSpec,
    command: &[OsString],
    env: Vec<(OsString, OsString)>,
) -> Ended {
    let (mut status_reader, status_writer) = match status_pipe() {
        Ok(pipe) => pipe,
        Err(e) => return Ended::not_started(format!("cannot make the status pipe: {e}")),
    };
    spec.status_fd = raw_fd(&status_writer);
    spec.broker_pid = i32::try_from(std::process::id()).unwrap_or(-1);
    let spec_json = match serde_json::to_string(&spec) {
        Ok(json) => json,
        Err(e) => return Ended::not_started(format!("cannot encode the sandbox: {e}")),
    };
    // Listening before the command starts, so that no signal meant for it is missed.
    let mut signals = match Signals::listen() {
        Ok(signals) => signals,
        Err(e) => return Ended::not_started(format!("cannot listen for signals: {e}")),
    };
    let started = Instant::now();
    let mut helper_command = Command::new(&helper.program);
    helper_command
        .args(&helper.args)
        .arg(spec_json)
        .arg("--")
        .args(command)
        .env_clear()
        .envs(env)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    pass_to_helper(&mut helper_command, status_writer);
    let spawned = helper_command.spawn();
    // The command holds the broker's copy of the write end: once it is gone, the helper's is
    // the only one, and end of file comes with its exec or exit.
    drop(helper_command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Ended::not_started(format!("cannot start the sandbox helper: {e}")),
    };
    let stdout = child
        .stdout
        .take()
        .map(|out| Relay::start(out, tokio::io::stdout()));
    let stderr = child
        .stderr
        .take()
        .map(|err| Relay::start(err, tokio::io::stderr()));
    // End of file comes with the helper's exec (the pipe is close-on-exec) or its exit; the
    // helper's first byte says it could report, and anything after it is a failure to start
    // (see `helper::started`), even one message cut inside a character at the bound.
    let status = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        let _ = (&mut status_reader).take(4096).read_to_end(&mut bytes);
        bytes
    })
    .await
    .unwrap_or_default();
    let waited = signals.forward_until_exit(&mut child).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let grace_ends = tokio::time::Instant::now() + OUTPUT_GRACE;
    let (stdout, stdout_cut) = Relay::finish(stdout, grace_ends).await;
    let (stderr, stderr_cut) = Relay::finish(stderr, grace_ends).await;
    let mut ended = Ended {
        outcome: ExecutionOutcome::Exited,
        exit_code: None,
        signal: None,
        detail: (stdout_cut || stderr_cut).then(|| OUTPUT_CUT.to_string()),
        duration_ms,
        stdout,
        stderr,
    };
    if let Err(failure) = crate::helper::started(&status) {
        ended.outcome = ExecutionOutcome::NotStarted;
        ended.detail = Some(failure);
        return ended;
    }
    match waited {
        Ok(status) => match (status.code(), exit_signal(&status)) {
            (Some(code), _) => ended.exit_code = Some(code),
            (None, Some(signal)) => {
                ended.outcome = ExecutionOutcome::Signaled;
                ended.signal = Some(signal);
            }
            (None, None) => {
                ended.outcome = ExecutionOutcome::Signaled;
                ended.signal = Some(0);
            }
        },
        Err(e) => {
            // Not waited: the command is killed rather than left running unaudited.
            let _ = child.start_kill();
            ended.outcome = ExecutionOutcome::Signaled;
            ended.signal = Some(9);
            ended.detail = Some(format!("lost the command: {e}"));
        }
    }
    ended
}

/// One of the command's output streams, copied through while it is hashed.
struct Relay {
    task: tokio::task::JoinHandle<StreamDigest>,
    stop: oneshot::Sender<()>,
}

impl Relay {
    fn start<R, W>(from: R, to: W) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            task: tokio::spawn(tee(from, to, stopped)),
            stop,
        }
    }

    /// The stream's digest once it ends, or what it carried until `grace_ends` (then true: it
    /// was cut, and nothing more is relayed).
    async fn finish(relay: Option<Self>, grace_ends: tokio::time::Instant) -> (StreamDigest, bool) {
        let Some(Relay { mut task, stop }) = relay else {
            return (StreamDigest::empty(), false);
        };
        match tokio::time::timeout_at(grace_ends, &mut task).await {
            Ok(done) => (done.unwrap_or_else(|_| StreamDigest::empty()), false),
            Err(_) => {
                let _ = stop.send(());
                (task.await.unwrap_or_else(|_| StreamDigest::empty()), true)
            }
        }
    }
}

/// Copies `from` to `to` (until `to` fails; then only reads), counting and hashing, until
/// `from` ends or `stop` says so (even while `to` is blocked).
async fn tee<R, W>(mut from: R, mut to: W, mut stop: oneshot::Receiver<()>) -> StreamDigest
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut context = Context::new(&SHA256);
    let mut bytes = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut writing = true;
    loop {
        let n = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = &mut stop => break,
        };
        let chunk = buffer.get(..n).unwrap_or_default();
        context.update(chunk);
        bytes += n as u64;
        if writing {
            // A caller that stopped reading must not keep the relay from stopping either.
            let relayed = tokio::select! {
                relayed = async {
                    to.write_all(chunk).await?;
                    to.flush().await
                } => relayed,
                _ = &mut stop => break,
            };
            writing = relayed.is_ok();
        }
    }
    StreamDigest {
        bytes,
        sha256: hex_of(context.finish().as_ref()),
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The status pipe, both ends close-on-exec: a process that another thread of the host
/// spawns meanwhile must not hold the write end, or end of file would wait for it to exit.
#[cfg(unix)]
fn status_pipe() -> std::io::Result<(std::io::PipeReader, std::io::PipeWriter)> {
    std::io::pipe()
}

/// Passes `writer` to the helper under the same number (the only descriptor passed besides
/// stdio). It stays close-on-exec in the broker; only the forked helper clears the flag, before
/// its exec (`command-fds`: a `pre_exec` hook, the `unsafe` this workspace forbids itself), and
/// the helper sets it again before running the command.
#[cfg(unix)]
fn pass_to_helper(command: &mut Command, writer: std::io::PipeWriter) {
    use command_fds::CommandFdExt;
    command.preserved_fds(vec![writer.into()]);
}

#[cfg(unix)]
fn raw_fd(writer: &std::io::PipeWriter) -> i32 {
    use std::os::fd::AsRawFd;
    writer.as_raw_fd()
}

#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// The signals the broker passes on to the command: INT, TERM, HUP, QUIT, USR1, USR2, so that
/// `kill BROKER` reaches the command and the broker lives to write the receipt.
#[cfg(unix)]
struct Signals {
    streams: Vec<(tokio::signal::unix::Signal, rustix::process::Signal)>,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> std::io::Result<Self> {
        use rustix::process::Signal;
        use tokio::signal::unix::{signal, SignalKind};
        let kinds = [
            (SignalKind::interrupt(), Signal::INT),
            (SignalKind::terminate(), Signal::TERM),
            (SignalKind::hangup(), Signal::HUP),
            (SignalKind::quit(), Signal::QUIT),
            (SignalKind::user_defined1(), Signal::USR1),
            (SignalKind::user_defined2(), Signal::USR2),
        ];
        let mut streams = Vec::new();
        for (kind, forwarded) in kinds {
            streams.push((signal(kind)?, forwarded));
        }
        Ok(Self { streams })
    }

    /// Waits for the child, forwarding every signal received meanwhile.
    async fn forward_until_exit(
        &mut self,
        child: &mut tokio::process::Child,
    ) -> std::io::Result<std::process::ExitStatus> {
        use rustix::process::{kill_process, Pid};
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        loop {
            tokio::select! {
                status = child.wait() => return status,
                forwarded = self.next() => {
                    if let Some(pid) = pid {
                        let _ = kill_process(pid, forwarded);
                    }
                }
            }
        }
    }

    /// The next signal received, as the signal to forward.
    async fn next(&mut self) -> rustix::process::Signal {
        std::future::poll_fn(|cx| {
            for (stream, forwarded) in self.streams.iter_mut() {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*forwarded);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_relay_stops_at_the_grace_even_while_its_reader_is_blocked() {
        // The command's output stays open, and whoever reads the relay has stopped reading:
        // the relay's writes block after 16 bytes.
        let (mut command, output) = tokio::io::duplex(64);
        let (relayed, _unread) = tokio::io::duplex(16);
        let written = b"0123456789abcdefghijklmnopqrstuvwxyz";
        command.write_all(written).await.unwrap();
        let relay = Relay::start(output, relayed);
        let grace_ends = tokio::time::Instant::now() + Duration::from_millis(200);
        let (digest, cut) = tokio::time::timeout(
            Duration::from_secs(5),
            Relay::finish(Some(relay), grace_ends),
        )
        .await
        .expect("the relay stops");
        assert!(cut);
        assert_eq!(digest.bytes, written.len() as u64);
        assert_eq!(
            digest.sha256,
            zt_contract::Digest32::sha256(written).to_hex()
        );
        drop(command);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_status_pipe_is_close_on_exec_in_the_broker() {
        let (reader, writer) = status_pipe().unwrap();
        for flags in [
            rustix::io::fcntl_getfd(&reader),
            rustix::io::fcntl_getfd(&writer),
        ] {
            assert!(flags.unwrap().contains(rustix::io::FdFlags::CLOEXEC));
        }
    }

    /// A stand-in for `zt __sandbox-exec` (sh, not the `zt` binary): it writes where its status
    /// descriptor leads to `$STATUS_LINK`, reports through it as the helper does (opened anew
    /// by number: the descriptor must have reached it), and execs the command (which keeps the
    /// descriptor: end of file comes with its exit).
    #[cfg(target_os = "linux")]
    fn stand_in_helper() -> HelperCommand {
        let script = r#"fd=$(printf '%s' "$1" | sed -n 's/.*"status_fd":\([0-9]*\).*/\1/p')
readlink "/proc/$$/fd/$fd" > "$STATUS_LINK" || exit 125
printf '\000' > "/proc/$$/fd/$fd" || exit 125
shift 2
exec "$@""#;
        HelperCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into(), "stand-in-helper".into()],
        }
    }

    /// Where each of `pid`'s descriptors leads (`pipe:[INODE]` for a pipe).
    #[cfg(target_os = "linux")]
    fn descriptors(pid: u32) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.unwrap().path()).ok())
            .map(|link| link.to_string_lossy().into_owned())
            .collect()
    }

    /// The broker is a library too: while it runs a command, another thread of its host may
    /// spawn processes. None of them may hold the status pipe's write end, or the broker would
    /// wait for that process's exit before it could tell how its own command started.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_process_another_thread_spawns_during_a_run_does_not_hold_the_status_pipe() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        use crate::sandbox::ConcreteProfile;

        // The window (pipe made, helper not yet spawned) is short: enough runs to cross it
        // (with the write end inheritable in the broker, about one run in five did).
        const RUNS: usize = 50;
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let spawner = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut held = Vec::new();
                let mut spawned = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let mut sleeper = std::process::Command::new("sleep")
                        .arg("30")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    // `spawn` returns after the exec: its descriptors are the ones it keeps.
                    held.extend(descriptors(sleeper.id()));
                    sleeper.kill().unwrap();
                    sleeper.wait().unwrap();
                    spawned += 1;
                }
                (spawned, held)
            }
        });
        let nothing = ConcreteProfile {
            read: vec![],
            write: vec![],
            exec: vec![],
            connect: vec![],
        };
        let mut status_pipes = Vec::new();
        for n in 0..RUNS {
            let link = dir.path().join(format!("status-{n}"));
            let spec = HelperSpec {
                program: "/usr/bin/true".into(),
                profile: nothing.clone(),
                granted: nothing.clone(),
                allow_degraded: false,
                landlock_abi_cap: None,
                status_fd: -1,
                broker_pid: 0,
            };
            let env = vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("STATUS_LINK".into(), link.clone().into_os_string()),
            ];
            let ended = run(&stand_in_helper(), spec, &["true".into()], env).await;
            assert_eq!(ended.outcome, ExecutionOutcome::Exited, "{ended:?}");
            assert_eq!(ended.exit_code, Some(0));
            let pipe = std::fs::read_to_string(&link).unwrap().trim().to_string();
            assert!(pipe.starts_with("pipe:["), "{pipe}");
            status_pipes.push(pipe);
        }
        stop.store(true, Ordering::Relaxed);
        let (spawned, held) = spawner.join().unwrap();
        assert!(spawned > 0);
        let leaked: Vec<_> = status_pipes
            .iter()
            .filter(|pipe| held.contains(pipe))
            .collect();
        assert!(
            leaked.is_empty(),
            "{} of {RUNS} status pipes reached one of {spawned} unrelated processes",
            leaked.len()
        );
    }
}
