//! The stdio gateway: the MCP server runs as a child process, the client talks to the gateway
//! on its own stdin/stdout. Client messages are read one line at a time and sorted
//! ([`crate::intercept`]); tool calls are decided concurrently but reach the server in the
//! client's order. The server's output is copied to the client byte for byte, and the
//! gateway's own answers are put in only between two of the server's lines.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::RequestId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::gate::{Gate, Verdict};
use crate::intercept::{answer, classify, decision_failed, oversized, Inbound};
use crate::lines::{read_line, Line};
use crate::GatewayError;

/// The longest client message relayed; a longer one is answered with an error and dropped.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How long the server gets to exit after the client closed its input, before it is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Gateway answers waiting for a gap between two server lines.
const ANSWER_QUEUE: usize = 64;
/// Client messages read ahead of the oldest unsettled one (tool calls decided at once).
pub(crate) const DECISIONS_IN_FLIGHT: usize = 16;
/// Bytes of client messages held unsettled (32 MiB): with [`MAX_MESSAGE_BYTES`] per message, a
/// client sending huge messages gets fewer read ahead, never more memory.
const PENDING_BYTES: usize = 32 * 1024 * 1024;
const COPY_BUFFER: usize = 64 * 1024;

/// Runs `command` as the MCP server and relays between it and the client on `client_in` /
/// `client_out` (the gateway's stdin and stdout), deciding every tool call with `gate`.
/// Returns when the server has exited (after the client closed its input, or on its own).
pub async fn run_stdio<I, O>(
    gate: Gate,
    mut command: Command,
    client_in: I,
    client_out: O,
) -> Result<ExitStatus, GatewayError>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin + Send + 'static,
{
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| GatewayError::Spawn { program, source })?;
    let server_in = child.stdin.take().ok_or(GatewayError::Pipe("stdin"))?;
    let server_out = child.stdout.take().ok_or(GatewayError::Pipe("stdout"))?;
    let (answers, answers_rx) = mpsc::channel(ANSWER_QUEUE);
    let to_client = tokio::spawn(server_to_client(server_out, answers_rx, client_out));

    let status = tokio::select! {
        ended = client_to_server(&gate, client_in, server_in, answers) => {
            if let Err(error) = ended {
                tracing::warn!(%error, "relay to the MCP server stopped");
            }
            // The server's stdin is closed now: the stdio way of asking it to exit.
            match tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await {
                Ok(status) => status.map_err(GatewayError::Wait)?,
                Err(_) => {
                    tracing::warn!("the MCP server did not exit after its input closed: killing it");
                    let _ = child.start_kill();
                    child.wait().await.map_err(GatewayError::Wait)?
                }
            }
        }
        status = child.wait() => status.map_err(GatewayError::Wait)?,
    };
    // What the server wrote before exiting still reaches the client.
    match tokio::time::timeout(SHUTDOWN_GRACE, to_client).await {
        Ok(Ok(Err(error))) => tracing::warn!(%error, "relay to the client stopped"),
        Ok(_) => {}
        Err(_) => tracing::warn!("the MCP server's output stayed open after it exited"),
    }
    Ok(status)
}

/// One client message on its way, in the order the client sent it.
enum Pending {
    /// Relay as it came.
    Relay(Vec<u8>),
    /// A tool call being decided: relayed on an allow, answered on a deny.
    Decide {
        message: Vec<u8>,
        id: RequestId,
        verdict: JoinHandle<Verdict>,
    },
    /// Answer the client, relay nothing.
    Answer(Vec<u8>),
}

/// Tool calls are decided concurrently, but every message reaches the server in the order the
/// client sent it: a message waits until each earlier tool call is relayed or refused. So a
/// `notifications/cancelled` (or anything else) never overtakes the call it refers to, and the
/// server sees exactly the client's order less the refused calls. Refusals reach the client
/// in the same order; JSON-RPC matches answers by id, so the order is a courtesy.
async fn client_to_server<I: AsyncRead + Unpin>(
    gate: &Gate,
    client_in: I,
    server_in: ChildStdin,
    answers: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let (pending, pending_rx) = mpsc::channel(DECISIONS_IN_FLIGHT);
    let read = read_client(gate, client_in, pending);
    let write = settle_in_order(pending_rx, server_in, answers);
    tokio::try_join!(read, write).map(|_| ())
}

/// Reads and sorts client messages, starting the decision of each tool call at once.
async fn read_client<I: AsyncRead + Unpin>(
    gate: &Gate,
    client_in: I,
    pending: mpsc::Sender<(Pending, OwnedSemaphorePermit)>,
) -> std::io::Result<()> {
    let bytes = Arc::new(Semaphore::new(PENDING_BYTES));
    let mut reader = BufReader::new(client_in);
    let mut message = Vec::new();
    loop {
        let line = read_line(&mut reader, &mut message, MAX_MESSAGE_BYTES).await?;
        // The message's share of PENDING_BYTES, held until it is settled. A message is at most
        // MAX_MESSAGE_BYTES, below PENDING_BYTES: it always fits once earlier ones are settled.
        let share = u32::try_from(message.len().clamp(1, PENDING_BYTES)).unwrap_or(u32::MAX);
        let Ok(permit) = bytes.clone().acquire_many_owned(share).await else {
            return Ok(());
        };
        let next = match line {
            Line::End => return Ok(()),
            Line::TooLong => Pending::Answer(oversized(MAX_MESSAGE_BYTES)),
            Line::Message => match classify(&message) {
                Inbound::Relay => Pending::Relay(message.clone()),
                Inbound::ToolCall { id, call } => {
                    let gate = gate.clone();
                    Pending::Decide {
                        message: message.clone(),
                        id,
                        verdict: tokio::spawn(async move { gate.check(&call).await }),
                    }
                }
                Inbound::Refuse(Some(line)) => Pending::Answer(line),
                Inbound::Refuse(None) => continue,
            },
        };
        if pending.send((next, permit)).await.is_err() {
            return Ok(());
        }
    }
}

/// Settles client messages one by one in their order: relays, refusals, decided calls.
async fn settle_in_order(
    mut pending: mpsc::Receiver<(Pending, OwnedSemaphorePermit)>,
    mut server_in: ChildStdin,
    answers: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    // The permit is released when the message is settled, at the end of each turn.
    while let Some((next, _permit)) = pending.recv().await {
        let to_client = match next {
            Pending::Relay(message) => {
                relay(&mut server_in, &message).await?;
                None
            }
            Pending::Answer(line) => Some(line),
            Pending::Decide {
                message,
                id,
                verdict,
            } => match verdict.await {
                Ok(Verdict::Allow) => {
                    relay(&mut server_in, &message).await?;
                    None
                }
                Ok(Verdict::Deny(result)) => Some(answer(id, *result)),
                Err(error) => {
                    tracing::warn!(%error, "tool call dropped: its decision did not finish");
                    Some(decision_failed(id))
                }
            },
        };
        if let Some(line) = to_client {
            if answers.send(line).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn relay(server_in: &mut ChildStdin, message: &[u8]) -> std::io::Result<()> {
    server_in.write_all(message).await?;
    server_in.write_all(b"\n").await?;
    server_in.flush().await
}

async fn server_to_client<S: AsyncRead + Unpin, O: AsyncWrite + Unpin>(
    mut server_out: S,
    mut answers: mpsc::Receiver<Vec<u8>>,
    mut client_out: O,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut at_line_start = true;
    let mut answers_open = true;
    loop {
        tokio::select! {
            answer = answers.recv(), if at_line_start && answers_open => match answer {
                Some(line) => {
                    client_out.write_all(&line).await?;
                    client_out.flush().await?;
                }
                None => answers_open = false,
            },
            read = server_out.read(&mut buf) => {
                let chunk = buf.get(..read?).unwrap_or_default();
                if chunk.is_empty() {
                    break;
                }
                client_out.write_all(chunk).await?;
                client_out.flush().await?;
                at_line_start = chunk.last() == Some(&b'\n');
            }
        }
    }
    // The server is gone; answers already made still reach the client, on a line of their own.
    if !at_line_start {
        client_out.write_all(b"\n").await?;
    }
    while let Ok(line) = answers.try_recv() {
        client_out.write_all(&line).await?;
    }
    client_out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn answers_go_between_server_lines_never_inside_one() {
        let (mut server, server_out) = tokio::io::duplex(1024);
        let (client_out, mut client) = tokio::io::duplex(1024);
        let (answers, answers_rx) = mpsc::channel(4);
        let relay = tokio::spawn(server_to_client(server_out, answers_rx, client_out));

        server.write_all(b"{\"first\":").await.unwrap();
        // Once the client holds the start of the server's line, the relay is inside it.
        let mut start = [0u8; 9];
        client.read_exact(&mut start).await.unwrap();
        answers.send(b"{\"answer\":1}\n".to_vec()).await.unwrap();
        // Give a relay without the line-boundary rule the chance to put the answer in here.
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.write_all(b"1}\n{\"second\":2}\n").await.unwrap();
        drop(server);
        drop(answers);
        relay.await.unwrap().unwrap();

        let mut rest = String::new();
        client.read_to_string(&mut rest).await.unwrap();
        let out = format!("{}{rest}", String::from_utf8_lossy(&start));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.first(), Some(&"{\"first\":1}"), "{out}");
        assert!(lines.contains(&"{\"answer\":1}"), "{out}");
        assert!(lines.contains(&"{\"second\":2}"), "{out}");
        assert_eq!(lines.len(), 3, "{out}");
    }

    #[tokio::test]
    async fn an_answer_after_a_server_that_ended_mid_line_starts_a_new_line() {
        let (mut server, server_out) = tokio::io::duplex(1024);
        let (client_out, mut client) = tokio::io::duplex(1024);
        let (answers, answers_rx) = mpsc::channel(4);
        let relay = tokio::spawn(server_to_client(server_out, answers_rx, client_out));
        server.write_all(b"{\"cut").await.unwrap();
        let mut start = [0u8; 5];
        client.read_exact(&mut start).await.unwrap();
        answers.send(b"{\"answer\":1}\n".to_vec()).await.unwrap();
        drop(server);
        relay.await.unwrap().unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "\n{\"answer\":1}\n");
    }

    /// A control plane that answers nothing until `together` requests are open at once, then
    /// answers each with a 500: only decisions taken concurrently get the 500; decisions taken
    /// one at a time would each wait out the client's timeout instead.
    async fn answers_only_concurrent_requests(together: usize) -> String {
        use std::sync::Arc;
        use tokio::sync::Barrier;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let barrier = Arc::new(Barrier::new(together));
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = socket.read(&mut buf).await;
                    barrier.wait().await;
                    let body = r#"{"ok":false,"error":"busy"}"#;
                    let response = format!(
                        "HTTP/1.1 500 X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn tool_calls_are_decided_concurrently() {
        let url = answers_only_concurrent_requests(2).await;
        let plane = zt_client::ControlPlane::with_timeout(&url, Duration::from_secs(10)).unwrap();
        let gate = Gate::new(plane, "agent", "srv");
        let mut server = Command::new("sh");
        server.args(["-c", "cat > /dev/null"]);
        let (mut client, gateway_in) = tokio::io::duplex(4096);
        let (gateway_out, client_out) = tokio::io::duplex(4096);
        let relay = tokio::spawn(run_stdio(gate, server, gateway_in, gateway_out));
        for id in [1, 2] {
            let call = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"t","arguments":{{}}}}}}"#
            );
            client.write_all(call.as_bytes()).await.unwrap();
            client.write_all(b"\n").await.unwrap();
        }
        let mut lines = BufReader::new(client_out);
        for id in [1, 2] {
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line)
                .await
                .unwrap();
            let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(answer["id"], id, "answers keep the client's order: {line}");
            let reason = answer["result"]["structuredContent"]["zt"]["reason"]
                .as_str()
                .unwrap();
            assert!(reason.contains("500"), "decided one at a time: {reason}");
        }
        drop(client);
        assert!(relay.await.unwrap().unwrap().success());
    }
}
