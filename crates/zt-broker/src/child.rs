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
    let spawned = Command::new(&helper.program)
        .args(&helper.args)
        .arg(spec_json)
        .arg("--")
        .args(command)
        .env_clear()
        .envs(env)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    drop(status_writer);
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

#[cfg(unix)]
fn status_pipe() -> std::io::Result<(std::io::PipeReader, std::io::PipeWriter)> {
    let (reader, writer) = std::io::pipe()?;
    // The write end must survive into the helper (it is the only descriptor passed besides
    // stdio); the helper makes it close-on-exec again before running the command.
    rustix::io::fcntl_setfd(&writer, rustix::io::FdFlags::empty())?;
    Ok((reader, writer))
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
}
