//! The stdio gateway: the MCP server runs as a child process, the client talks to the gateway
//! on its own stdin/stdout. Client messages are read one line at a time and sorted
//! ([`crate::intercept`]); tool calls are decided concurrently but reach the server in the
//! client's order. The server's output is copied to the client line by line, byte for byte,
//! except the answers to the gateway's own `tools/list` requests; the gateway's own answers are
//! put in only between two of the server's lines. The gateway sends its own requests only once
//! the client has initialized the session ([`SessionStart`]); a tool call sent before that is
//! refused at once.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ErrorCode, RequestId};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::gate::{Gate, Verdict};
use crate::intercept::{
    answer, classify, decision_failed, oversized, refusal, stray_carriage_return, Inbound,
    Initialization,
};
use crate::lines::{read_line, Line};
use crate::tools::{
    announces_tools_changed, list_request, own_id, parse_if_marked, result_of, ListTools,
    ToolCache, LIST_TIMEOUT, OWN_ID_MARK, TOOLS_CHANGED_MARK,
};
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

/// The server's stdin, written by the relay and by the gateway's own requests, a line at a
/// time; `None` once closed.
type ServerInput = Arc<Mutex<Option<ChildStdin>>>;
/// The gateway's own requests waiting for the server's answer, by id.
type Waiting = Arc<std::sync::Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// How the server answered the client's `initialize`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum InitAnswer {
    /// Not yet (or no `initialize` yet).
    #[default]
    Awaited,
    /// With a result: the session is initialized once the client says it is done.
    Accepted,
    /// With anything else (an error): the session is not initialized.
    Refused,
}

/// How far the session's MCP initialization (the `initialize` exchange, nothing to do with
/// TLS) has come, as the gateway sees it relayed.
#[derive(Debug, Default)]
struct McpInitProgress {
    /// The id of the client's latest `initialize` request relayed to the server.
    initialize_id: Option<Value>,
    /// Bytes the server's answer to that id holds, searched for before a line is parsed.
    answer_mark: Vec<u8>,
    answer: InitAnswer,
    /// The client's `notifications/initialized` was relayed after its `initialize`.
    finished: bool,
    /// When every wait for the initialization gives up: set by the first one, shared by all,
    /// so that waiting calls end together rather than one after another.
    deadline: Option<Instant>,
}

impl McpInitProgress {
    /// `None` while the wait goes on, else whether the gateway may send requests.
    fn outcome(&self) -> Option<Result<(), String>> {
        match self.answer {
            InitAnswer::Accepted if self.finished => Some(Ok(())),
            InitAnswer::Refused => Some(Err(
                "the session is not initialized: the server refused its `initialize`".into(),
            )),
            _ => None,
        }
    }

    fn awaits_answer(&self) -> bool {
        self.initialize_id.is_some() && self.answer == InitAnswer::Awaited
    }
}

/// The bytes an answer with `id` holds however its encoder escapes strings: the number, or the
/// longest run of the string's characters that no encoder escapes. Empty (every line is parsed
/// until the answer comes) only for an id of punctuation alone.
fn answer_mark(id: &Value) -> Vec<u8> {
    let Value::String(id) = id else {
        return id.to_string().into_bytes();
    };
    id.as_bytes()
        .split(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        .max_by_key(|run| run.len())
        .unwrap_or_default()
        .to_vec()
}

/// When the gateway may send requests of its own: once the server has answered the client's
/// `initialize` with a result and the client's `notifications/initialized` has been relayed
/// after it. The protocol asks every client to wait so, and a strict server (the Python SDK's,
/// for one) refuses any other request before then; a client may pipeline its first messages,
/// so the gateway's `tools/list` for a call could otherwise overtake them. Calls waiting for a
/// session that is slow to initialize share one deadline ([`LIST_TIMEOUT`] from the first
/// wait), then fail closed; an error answer to `initialize` fails them at once.
#[derive(Debug, Default)]
struct SessionStart(watch::Sender<McpInitProgress>);

impl SessionStart {
    /// Before the client's `initialize` (or notification) goes out: answers can only follow.
    fn relaying(&self, step: &Initialization) {
        if let Initialization::Request { id } = step {
            self.0.send_if_modified(|progress| {
                // Once accepted, the session is initialized: what the server makes of a second
                // `initialize` is between it and the client.
                let watches = progress.answer != InitAnswer::Accepted;
                if watches {
                    progress.answer_mark = answer_mark(id);
                    progress.initialize_id = Some(id.clone());
                    progress.answer = InitAnswer::Awaited;
                    // A new opening: its own `notifications/initialized` must follow it.
                    progress.finished = false;
                    progress.deadline = None;
                }
                watches
            });
        }
    }

    /// After the client's message went out whole.
    fn relayed(&self, step: &Initialization) {
        if *step == Initialization::Finished {
            // A notification before any `initialize` finishes nothing.
            self.0.send_if_modified(|progress| {
                let finishes = progress.initialize_id.is_some() && !progress.finished;
                progress.finished |= finishes;
                finishes
            });
        }
    }

    /// Whether the server's lines must be read for the answer to the client's `initialize`.
    #[cfg(test)]
    fn awaits_answer(&self) -> bool {
        self.0.borrow().awaits_answer()
    }

    /// While [`Self::awaits_answer`]: what a line that may answer `initialize` holds.
    fn answer_mark(&self) -> Option<Vec<u8>> {
        let progress = self.0.borrow();
        progress
            .awaits_answer()
            .then(|| progress.answer_mark.clone())
    }

    /// One of the server's messages, read while [`Self::awaits_answer`]. Any answer to the
    /// `initialize` ends the watch: with a result it initializes, with anything else it does
    /// not, and nothing waits for it any more.
    fn server_message(&self, message: &Value) {
        self.0.send_if_modified(|progress| {
            let answers = progress.awaits_answer()
                && message.get("method").is_none()
                && message.get("id") == progress.initialize_id.as_ref();
            if answers {
                progress.answer = if message.get("result").is_some() {
                    InitAnswer::Accepted
                } else {
                    InitAnswer::Refused
                };
            }
            answers
        });
    }

    /// Returns once the session is initialized, or why the gateway may not ask the server.
    async fn initialized(&self) -> Result<(), String> {
        let mut deadline = None;
        // No waiter looks at the deadline: setting it wakes nobody.
        self.0.send_if_modified(|progress| {
            deadline = Some(
                *progress
                    .deadline
                    .get_or_insert_with(|| Instant::now() + LIST_TIMEOUT),
            );
            false
        });
        let deadline = deadline.unwrap_or_else(Instant::now);
        let mut progress = self.0.subscribe();
        let outcome = tokio::time::timeout_at(
            deadline,
            progress.wait_for(|progress| progress.outcome().is_some()),
        )
        .await;
        match outcome {
            Ok(Ok(progress)) => progress.outcome().unwrap_or(Ok(())),
            // The sender lives as long as `self`.
            Ok(Err(_)) => Err("the session ended".into()),
            Err(_) => Err(format!(
                "the session was not initialized within {} s",
                LIST_TIMEOUT.as_secs()
            )),
        }
    }
}

/// The client's opening as read (not yet relayed): a tool call read before it cannot be
/// decided, since the gateway's `tools/list` would wait behind it for ever.
#[derive(Debug, Default)]
struct ClientOpening {
    initialize: bool,
    initialized: bool,
}

impl ClientOpening {
    fn read(&mut self, step: &Initialization) {
        match step {
            // A new `initialize` opens anew: its notification must follow it.
            Initialization::Request { .. } => {
                self.initialize = true;
                self.initialized = false;
            }
            Initialization::Finished => self.initialized |= self.initialize,
        }
    }

    /// Why a tool call read now is refused at once, if it is.
    fn refuses_calls(&self) -> Option<&'static str> {
        if !self.initialize {
            Some("the session is not initialized: send initialize first")
        } else if !self.initialized {
            Some("the session is not initialized: send notifications/initialized before tools/call")
        } else {
            None
        }
    }
}

/// Reads `tools/list` from the server over its own stdio.
#[derive(Clone)]
struct ServerLister {
    input: ServerInput,
    waiting: Waiting,
    start: Arc<SessionStart>,
}

/// Removes a request's place in [`Waiting`] however its wait ends.
struct WaitingFor<'a> {
    waiting: &'a Waiting,
    id: String,
}

impl Drop for WaitingFor<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(&self.id);
        }
    }
}

impl ListTools for ServerLister {
    async fn ready(&self) -> Result<(), String> {
        self.start.initialized().await
    }

    async fn list_page(&self, id: String, cursor: Option<String>) -> Result<Value, String> {
        // Already awaited by `ready`: here it ends at once, and no request can go out early.
        self.start.initialized().await?;
        let (answered, answer) = oneshot::channel();
        self.waiting
            .lock()
            .map_err(|_| "the gateway's request table is poisoned".to_string())?
            .insert(id.clone(), answered);
        let _place = WaitingFor {
            waiting: &self.waiting,
            id: id.clone(),
        };
        let request = list_request(&id, cursor.as_deref()).to_string();
        // Written by a task of its own, which a timeout of this wait cannot cut short: half a
        // line on the server's stdin would swallow the client's next message.
        let input = self.input.clone();
        tokio::spawn(async move { relay(&input, request.as_bytes()).await })
            .await
            .map_err(|e| format!("cannot write to the server: {e}"))?
            .map_err(|e| format!("cannot write to the server: {e}"))?;
        let answer = answer
            .await
            .map_err(|_| "the server stopped before answering".to_string())?;
        result_of(answer)
    }
}

/// What every tool call of the session needs.
#[derive(Clone)]
struct Screening {
    gate: Gate,
    tools: Arc<ToolCache>,
    lister: ServerLister,
}

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
    let screening = Screening {
        gate,
        tools: Arc::default(),
        lister: ServerLister {
            input: Arc::new(Mutex::new(Some(server_in))),
            waiting: Waiting::default(),
            start: Arc::default(),
        },
    };
    let to_client = tokio::spawn(server_to_client(
        server_out,
        answers_rx,
        client_out,
        screening.clone(),
    ));

    let status = tokio::select! {
        ended = client_to_server(&screening, client_in, answers) => {
            if let Err(error) = ended {
                tracing::warn!(%error, "relay to the MCP server stopped");
            }
            // Closing the server's stdin is the stdio way of asking it to exit.
            drop(screening.lister.input.lock().await.take());
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
    Relay {
        message: Vec<u8>,
        initialization: Option<Initialization>,
    },
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
    screening: &Screening,
    client_in: I,
    answers: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let (pending, pending_rx) = mpsc::channel(DECISIONS_IN_FLIGHT);
    let read = read_client(screening, client_in, pending);
    let write = settle_in_order(pending_rx, &screening.lister, answers);
    tokio::try_join!(read, write).map(|_| ())
}

/// Reads and sorts client messages, starting the decision of each tool call at once.
async fn read_client<I: AsyncRead + Unpin>(
    screening: &Screening,
    client_in: I,
    pending: mpsc::Sender<(Pending, OwnedSemaphorePermit)>,
) -> std::io::Result<()> {
    let bytes = Arc::new(Semaphore::new(PENDING_BYTES));
    let mut reader = BufReader::new(client_in);
    let mut message = Vec::new();
    let mut opening = ClientOpening::default();
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
            Line::StrayCarriageReturn => Pending::Answer(stray_carriage_return()),
            Line::Message => match classify(&message) {
                Inbound::Relay(initialization) => {
                    if let Some(step) = &initialization {
                        opening.read(step);
                    }
                    Pending::Relay {
                        message: std::mem::take(&mut message),
                        initialization,
                    }
                }
                Inbound::ToolCall { id, call } => match opening.refuses_calls() {
                    // Answered at once, never relayed: it could not be decided in time.
                    Some(why) => {
                        Pending::Answer(refusal(id, ErrorCode::INVALID_REQUEST, why.into()))
                    }
                    None => {
                        let Screening {
                            gate,
                            tools,
                            lister,
                        } = screening.clone();
                        Pending::Decide {
                            message: std::mem::take(&mut message),
                            id,
                            verdict: tokio::spawn(async move {
                                gate.screen(*call, &tools, &lister).await
                            }),
                        }
                    }
                },
                Inbound::Refuse(Some(line)) => Pending::Answer(line),
                Inbound::Refuse(None) | Inbound::Blank => continue,
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
    lister: &ServerLister,
    answers: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let server_in = &lister.input;
    // The permit is released when the message is settled, at the end of each turn.
    while let Some((next, _permit)) = pending.recv().await {
        let to_client = match next {
            Pending::Relay {
                message,
                initialization,
            } => {
                if let Some(step) = &initialization {
                    lister.start.relaying(step);
                }
                relay(server_in, &message).await?;
                if let Some(step) = &initialization {
                    lister.start.relayed(step);
                }
                None
            }
            Pending::Answer(line) => Some(line),
            Pending::Decide {
                message,
                id,
                verdict,
            } => match verdict.await {
                Ok(Verdict::Allow) => {
                    relay(server_in, &message).await?;
                    None
                }
                Ok(Verdict::Deny(result)) => Some(answer(id, *result)),
                Ok(Verdict::Refuse { code, message }) => Some(refusal(id, code, message)),
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

/// Writes one line to the server, whole: the gateway's own requests go between the client's.
async fn relay(server_in: &ServerInput, message: &[u8]) -> std::io::Result<()> {
    let mut server_in = server_in.lock().await;
    let Some(server_in) = server_in.as_mut() else {
        return Err(std::io::ErrorKind::BrokenPipe.into());
    };
    server_in.write_all(message).await?;
    server_in.write_all(b"\n").await?;
    server_in.flush().await
}

/// One of the server's lines, whole: an answer to the gateway's own request goes to it; the
/// notice that the tools changed makes the gateway forget its list; the answer to the client's
/// `initialize` lets the gateway send requests of its own. Returns whether the line goes on to
/// the client.
fn for_the_client(line: &[u8], screening: &Screening) -> bool {
    // Until `initialize` is answered, the lines that may be its answer are read too.
    let start = &screening.lister.start;
    let initialize_answer = start.answer_mark();
    let marks = [OWN_ID_MARK, TOOLS_CHANGED_MARK]
        .into_iter()
        .chain(initialize_answer.as_deref());
    let Some(message) = parse_if_marked(line, marks) else {
        return true;
    };
    if initialize_answer.is_some() {
        start.server_message(&message);
    }
    if announces_tools_changed(&message) {
        screening.tools.forget();
        return true;
    }
    let id = match own_id(&message) {
        Some(id) if message.get("method").is_none() => id.to_string(),
        // A request or notification: the client's business.
        _ => return true,
    };
    // An answer to the gateway's request never reaches the client (no client request may
    // take such an id), even once nobody waits for it any more.
    let waiter = screening
        .lister
        .waiting
        .lock()
        .ok()
        .and_then(|mut waiting| waiting.remove(&id));
    match waiter {
        Some(waiter) => drop(waiter.send(message)),
        None => tracing::debug!(id, "dropped a late answer to the gateway's own request"),
    }
    false
}

async fn server_to_client<S: AsyncRead + Unpin, O: AsyncWrite + Unpin>(
    mut server_out: S,
    mut answers: mpsc::Receiver<Vec<u8>>,
    mut client_out: O,
    screening: Screening,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    // The server's line being read, held until it is whole (at most MAX_MESSAGE_BYTES; the
    // rest of a longer line is copied as it comes: it cannot be an answer to the gateway).
    let mut line = Vec::new();
    let mut copying_long_line = false;
    let mut answers_open = true;
    loop {
        tokio::select! {
            answer = answers.recv(), if !copying_long_line && answers_open => match answer {
                Some(answer) => {
                    client_out.write_all(&answer).await?;
                    client_out.flush().await?;
                }
                None => answers_open = false,
            },
            read = server_out.read(&mut buf) => {
                let mut chunk = buf.get(..read?).unwrap_or_default();
                if chunk.is_empty() {
                    break;
                }
                while !chunk.is_empty() {
                    let end = memchr::memchr(b'\n', chunk).map(|at| at + 1);
                    let (part, rest) = chunk.split_at(end.unwrap_or(chunk.len()));
                    chunk = rest;
                    if copying_long_line {
                        client_out.write_all(part).await?;
                        copying_long_line = end.is_none();
                        continue;
                    }
                    line.extend_from_slice(part);
                    if end.is_some() {
                        if for_the_client(&line, &screening) {
                            client_out.write_all(&line).await?;
                        }
                        line.clear();
                    } else if line.len() > MAX_MESSAGE_BYTES {
                        client_out.write_all(&line).await?;
                        line.clear();
                        copying_long_line = true;
                    }
                }
                client_out.flush().await?;
            }
        }
    }
    // The server is gone; what it wrote still reaches the client, and answers already made
    // follow on lines of their own.
    client_out.write_all(&line).await?;
    if copying_long_line || !line.is_empty() {
        client_out.write_all(b"\n").await?;
    }
    while let Ok(answer) = answers.try_recv() {
        client_out.write_all(&answer).await?;
    }
    client_out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolsError;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// A session whose server input is closed (the relay's tests write nothing to it).
    fn screening() -> Screening {
        let plane =
            zt_client::ControlPlane::with_timeout("http://127.0.0.1:9", Duration::from_secs(1))
                .unwrap();
        Screening {
            gate: Gate::new(plane, "agent", "srv"),
            tools: Arc::default(),
            lister: ServerLister {
                input: Arc::new(Mutex::new(None)),
                waiting: Waiting::default(),
                start: Arc::default(),
            },
        }
    }

    /// The client's `initialize` (id `id`) and then its `notifications/initialized` relayed,
    /// as a pipelining client sends them, before the server's answer is read.
    fn relay_client_initialization(start: &SessionStart, id: serde_json::Value) {
        let initialize = Initialization::Request { id };
        start.relaying(&initialize);
        start.relayed(&initialize);
        start.relayed(&Initialization::Finished);
    }

    #[tokio::test]
    async fn the_gateway_asks_nothing_before_the_session_is_initialized() {
        let screening = screening();
        let lister = screening.lister.clone();
        let asking = tokio::spawn(async move {
            lister
                .list_page("zt-gateway/tools-list/0".into(), None)
                .await
        });
        let still_waiting = |asking: &JoinHandle<_>, when: &str| {
            assert!(!asking.is_finished(), "asked the server {when}");
        };
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        still_waiting(&asking, "before `initialize`");

        let start = &screening.lister.start;
        // A pipelining client's notification goes out before the server answered.
        relay_client_initialization(start, serde_json::json!(0));
        for line in [
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"0","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#,
        ] {
            assert!(for_the_client(line.as_bytes(), &screening), "{line}");
            settle().await;
            still_waiting(&asking, &format!("after {line}"));
        }
        let answer = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#;
        assert!(for_the_client(answer.as_bytes(), &screening), "relayed");
        // Initialized: the request is written (here to a closed input).
        let asked = tokio::time::timeout(Duration::from_secs(5), asking).await;
        let error = asked.unwrap().unwrap().unwrap_err();
        assert!(error.starts_with("cannot write to the server"), "{error}");
    }

    #[tokio::test]
    async fn a_notification_before_initialize_does_not_initialize() {
        let screening = screening();
        let start = &screening.lister.start;
        start.relayed(&Initialization::Finished);
        let initialize = Initialization::Request {
            id: serde_json::json!("i"),
        };
        start.relaying(&initialize);
        let answer = r#"{"jsonrpc":"2.0","id":"i","result":{}}"#;
        assert!(for_the_client(answer.as_bytes(), &screening));
        let waited = tokio::time::timeout(Duration::from_millis(100), start.initialized()).await;
        assert!(waited.is_err(), "initialized without the notification");
        start.relayed(&Initialization::Finished);
        tokio::time::timeout(Duration::from_secs(5), start.initialized())
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn an_error_answer_to_initialize_ends_the_wait_and_the_watch() {
        let screening = screening();
        let start = &screening.lister.start;
        relay_client_initialization(start, serde_json::json!("init/1"));
        let lister = screening.lister.clone();
        let asking = tokio::spawn(async move {
            lister
                .list_page("zt-gateway/tools-list/0".into(), None)
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!asking.is_finished(), "asked before the answer");
        // The server writes `/` as `\/`: the answer is still found (by `init`).
        let refused =
            br#"{"jsonrpc":"2.0","id":"init\/1","error":{"code":-32602,"message":"bad"}}"#;
        assert!(for_the_client(refused, &screening), "relayed");
        assert!(!start.awaits_answer(), "still watching the server's lines");
        let asked = tokio::time::timeout(Duration::from_secs(1), asking).await;
        let error = asked.expect("still waiting").unwrap().unwrap_err();
        assert!(error.contains("refused its `initialize`"), "{error}");
        // A later call is refused at once too.
        let later = tokio::time::timeout(
            Duration::from_millis(100),
            screening.tools.declared(&screening.lister, "t", None),
        )
        .await;
        assert!(
            matches!(later, Ok(Err(ToolsError::Unreadable(_)))),
            "{later:?}"
        );
        // The client may try again.
        let again = Initialization::Request {
            id: serde_json::json!(7),
        };
        start.relaying(&again);
        assert!(start.awaits_answer());
        start.relayed(&again);
        assert!(for_the_client(
            br#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            &screening
        ));
        // The first opening's notification does not finish the new one: its own must follow.
        let early = tokio::time::timeout(Duration::from_millis(100), start.initialized()).await;
        assert!(early.is_err(), "initialized before its notification");
        start.relayed(&Initialization::Finished);
        tokio::time::timeout(Duration::from_secs(1), start.initialized())
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn the_answer_to_initialize_is_searched_for_as_its_encoder_may_write_it() {
        use serde_json::json;
        assert_eq!(answer_mark(&json!(12)), b"12");
        assert_eq!(answer_mark(&json!("a/bcd/é")), b"bcd");
        assert_eq!(answer_mark(&json!("init-1.x_y")), b"init-1.x_y");
        assert_eq!(answer_mark(&json!("//")), b"");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_waiting_for_initialization_share_one_deadline() {
        let screening = screening();
        let start = &screening.lister.start;
        relay_client_initialization(start, serde_json::json!(0));
        // The server never answers `initialize`; every call waits for it (time is paused).
        let began = tokio::time::Instant::now();
        let calls: Vec<_> = (0..DECISIONS_IN_FLIGHT)
            .map(|_| {
                let screening = screening.clone();
                tokio::spawn(
                    async move { screening.tools.declared(&screening.lister, "t", None).await },
                )
            })
            .collect();
        for call in calls {
            let refused = call.await.unwrap();
            assert!(
                matches!(refused, Err(ToolsError::Unreadable(_))),
                "{refused:?}"
            );
        }
        let waited = began.elapsed();
        assert!(
            waited <= crate::tools::LIST_TIMEOUT + Duration::from_secs(1),
            "{} calls waited {waited:?} in all",
            DECISIONS_IN_FLIGHT
        );
    }

    #[tokio::test]
    async fn a_call_before_the_session_is_initialized_is_refused_at_once() {
        let gate = screening().gate;
        let (mut client, gateway_in) = tokio::io::duplex(64 * 1024);
        let (gateway_out, client_out) = tokio::io::duplex(64 * 1024);
        let relay = tokio::spawn(run_stdio(gate, strict_server(), gateway_in, gateway_out));
        let call = |id: u64| {
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"t\",\"arguments\":{{}}}}}}\n"
            )
        };
        let initialize = r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{}}"#;
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        // All at once: a call before `initialize`, one between it and the notification, one
        // after (decided: nothing answers on port 9).
        let opening = format!(
            "{}{initialize}\n{}{initialized}\n{}",
            call(1),
            call(2),
            call(3)
        );
        client.write_all(opening.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(client_out);
        let answers = tokio::time::timeout(Duration::from_secs(5), async {
            let mut answers = Vec::new();
            for _ in 0..4 {
                answers.push(next_message(&mut lines).await);
            }
            answers
        })
        .await
        .expect("a call waited");
        let by_id = |id: Value| {
            answers
                .iter()
                .find(|answer| answer["id"] == id)
                .unwrap_or_else(|| panic!("no answer to {id}: {answers:?}"))
        };
        for (id, why) in [
            (1, "send initialize first"),
            (2, "send notifications/initialized"),
        ] {
            let error = &by_id(serde_json::json!(id))["error"];
            assert_eq!(error["code"], -32600, "{error}");
            let message = error["message"].as_str().unwrap();
            assert!(
                message.starts_with("the session is not initialized"),
                "{message}"
            );
            assert!(message.contains(why), "{message}");
        }
        assert!(by_id(serde_json::json!("init"))["result"].is_object());
        let reason = by_id(serde_json::json!(3))["result"]["structuredContent"]["zt"]["reason"]
            .as_str()
            .unwrap();
        assert!(reason.starts_with("control plane unavailable"), "{reason}");
        drop(client);
        assert!(relay.await.unwrap().unwrap().success());
    }

    #[tokio::test]
    async fn a_line_with_a_carriage_return_inside_is_refused_never_relayed() {
        // `cat` echoes whatever the gateway relays.
        let gate = screening().gate;
        let (mut client, gateway_in) = tokio::io::duplex(64 * 1024);
        let (gateway_out, mut client_out) = tokio::io::duplex(64 * 1024);
        let relay = tokio::spawn(run_stdio(
            gate,
            Command::new("cat"),
            gateway_in,
            gateway_out,
        ));
        // One notification to the gateway; three lines to a server reading universal newlines,
        // the middle one a tool call.
        let smuggled = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{\"a\":\r\
            {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"t\"}}\r}}\n";
        let crlf = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/y\"}\r\n";
        client.write_all(smuggled.as_bytes()).await.unwrap();
        client.write_all(crlf.as_bytes()).await.unwrap();
        drop(client);
        let mut out = String::new();
        client_out.read_to_string(&mut out).await.unwrap();
        assert!(relay.await.unwrap().unwrap().success());
        let lines: Vec<Value> = out
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{out:?}");
        let refusal = lines
            .iter()
            .find(|line| line.get("error").is_some())
            .unwrap();
        assert_eq!(refusal["error"]["code"], -32700, "{refusal}");
        assert!(refusal.get("id").is_none(), "{refusal}");
        // A CRLF line end is a line end: relayed as it came.
        assert!(out.contains(crlf), "{out:?}");
        assert!(!out.contains("tools/call"), "relayed: {out:?}");
    }

    /// A server that, as the protocol allows, refuses every request but `initialize` until the
    /// client sent `notifications/initialized`; it lists the one tool `t`.
    fn strict_server() -> Command {
        let mut server = Command::new("sh");
        server.args([
            "-c",
            r#"ready=no
               while IFS= read -r line; do
                 id=$(printf '%s' "$line" | sed -n 's/.*"id":\([^,}]*\).*/\1/p')
                 case "$line" in
                   *'"method":"initialize"'*)
                     printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"strict","version":"1"}}}\n' "$id";;
                   *'"method":"notifications/initialized"'*) ready=yes;;
                   *'"method":"tools/list"'*)
                     if [ $ready = yes ]; then
                       printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"t","inputSchema":{"type":"object"}}]}}\n' "$id"
                     else
                       printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32600,"message":"not initialized"}}\n' "$id"
                     fi;;
                 esac
               done"#,
        ]);
        server
    }

    /// The client's `initialize`, `notifications/initialized` and a call of `t`, one line each.
    /// The `initialize` is longer than a pipe holds, so the relay is still writing it when the
    /// call needs the tool list: the gateway's request must wait its turn, and more.
    fn pipelined_opening(call_id: u64) -> String {
        let padding = "x".repeat(256 * 1024);
        format!(
            "{}\n{}\n{}\n",
            format_args!(
                r#"{{"jsonrpc":"2.0","id":"init","method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{"experimental":{{"padding":{{"text":"{padding}"}}}}}},"clientInfo":{{"name":"pipelining","version":"1"}}}}}}"#
            ),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            format_args!(
                r#"{{"jsonrpc":"2.0","id":{call_id},"method":"tools/call","params":{{"name":"t","arguments":{{}}}}}}"#
            ),
        )
    }

    async fn next_message<R: AsyncRead + Unpin>(lines: &mut BufReader<R>) -> Value {
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(lines, &mut line)
            .await
            .unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    #[tokio::test]
    async fn a_pipelining_client_initializes_before_the_gateway_lists_the_tools() {
        // Nothing answers on port 9: an allowed-by-list call is denied, undecided.
        let gate = screening().gate;
        let (mut client, gateway_in) = tokio::io::duplex(64 * 1024);
        let (gateway_out, client_out) = tokio::io::duplex(64 * 1024);
        let relay = tokio::spawn(run_stdio(gate, strict_server(), gateway_in, gateway_out));
        // All three in one write.
        client
            .write_all(pipelined_opening(2).as_bytes())
            .await
            .unwrap();
        let mut lines = BufReader::new(client_out);
        let initialized = next_message(&mut lines).await;
        assert_eq!(initialized["id"], "init", "{initialized}");
        let call = next_message(&mut lines).await;
        assert_eq!(call["id"], 2, "{call}");
        let reason = call["result"]["structuredContent"]["zt"]["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("the list was not read: {call}"));
        assert!(reason.starts_with("control plane unavailable"), "{reason}");
        drop(client);
        assert!(relay.await.unwrap().unwrap().success());
    }

    #[tokio::test]
    async fn answers_go_between_server_lines_never_inside_one() {
        let (mut server, server_out) = tokio::io::duplex(1024);
        let (client_out, mut client) = tokio::io::duplex(1024);
        let (answers, answers_rx) = mpsc::channel(4);
        let relay = tokio::spawn(server_to_client(
            server_out,
            answers_rx,
            client_out,
            screening(),
        ));

        server.write_all(b"{\"first\":").await.unwrap();
        // Let the relay read the start of the server's line before the answer comes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        answers.send(b"{\"answer\":1}\n".to_vec()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.write_all(b"1}\n{\"second\":2}\n").await.unwrap();
        drop(server);
        drop(answers);
        relay.await.unwrap().unwrap();

        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            ["{\"answer\":1}", "{\"first\":1}", "{\"second\":2}"],
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_line_the_server_cut_off_ends_before_the_answers_after_it() {
        let (mut server, server_out) = tokio::io::duplex(1024);
        let (client_out, mut client) = tokio::io::duplex(1024);
        let (answers, answers_rx) = mpsc::channel(4);
        let relay = tokio::spawn(server_to_client(
            server_out,
            answers_rx,
            client_out,
            screening(),
        ));
        server.write_all(b"{\"cut").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(server);
        answers.send(b"{\"answer\":1}\n".to_vec()).await.unwrap();
        drop(answers);
        relay.await.unwrap().unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert!(
            out == "{\"cut\n{\"answer\":1}\n" || out == "{\"answer\":1}\n{\"cut\n",
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn answers_to_the_gateways_own_requests_stay_with_it() {
        let (mut server, server_out) = tokio::io::duplex(1024);
        let (client_out, mut client) = tokio::io::duplex(1024);
        let (_answers, answers_rx) = mpsc::channel(4);
        let screening = screening();
        let (answered, answer) = oneshot::channel();
        screening
            .lister
            .waiting
            .lock()
            .unwrap()
            .insert("zt-gateway/tools-list/0".into(), answered);
        let relay = tokio::spawn(server_to_client(
            server_out, answers_rx, client_out, screening,
        ));
        // The server writes `id` last, as the TypeScript SDK does, and escapes `/` as `\/`.
        server
            .write_all(
                b"{\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[]},\"id\":\"zt-gateway\\/tools-list\\/0\"}\n\
                  {\"jsonrpc\":\"2.0\",\"result\":{},\"id\":\"zt-gateway/tools-list/7\"}\n\
                  {\"jsonrpc\":\"2.0\",\"id\":\"zt-gateway/tools-list/1\",\"method\":\"x\"}\n",
            )
            .await
            .unwrap();
        drop(server);
        assert_eq!(
            answer.await.unwrap()["result"],
            serde_json::json!({"tools": []})
        );
        relay.await.unwrap().unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        // Nobody waits for /7 any more: dropped all the same. /1 is a request: the client's.
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("tools-list/1"), "{out}");
    }

    /// Counts the lists it is asked for.
    #[derive(Clone, Default)]
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    impl ListTools for Counting {
        async fn list_page(&self, _: String, _: Option<String>) -> Result<Value, String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(serde_json::json!({"tools": [{"name": "t", "inputSchema": {}}]}))
        }
    }

    #[tokio::test]
    async fn the_servers_notice_that_its_tools_changed_makes_the_gateway_read_them_again() {
        let screening = screening();
        let lister = Counting::default();
        screening.tools.declared(&lister, "t", None).await.unwrap();
        let changed = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        assert!(for_the_client(changed, &screening), "relayed all the same");
        screening.tools.declared(&lister, "t", None).await.unwrap();
        assert_eq!(lister.0.load(std::sync::atomic::Ordering::SeqCst), 2);
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
        // Answers `initialize` and the gateway's `tools/list` (the one tool `t`), nothing else.
        server.args([
            "-c",
            r#"while IFS= read -r line; do
                 id=$(printf '%s' "$line" | sed 's/.*"id":"\([^"]*\)".*/\1/')
                 case "$line" in
                   *'"initialize"'*)
                     printf '{"jsonrpc":"2.0","id":"%s","result":{}}\n' "$id";;
                   *'"tools/list"'*)
                     printf '{"jsonrpc":"2.0","id":"%s","result":{"tools":[{"name":"t","inputSchema":{"type":"object"}}]}}\n' "$id";;
                 esac
               done"#,
        ]);
        let (mut client, gateway_in) = tokio::io::duplex(4096);
        let (gateway_out, client_out) = tokio::io::duplex(4096);
        let relay = tokio::spawn(run_stdio(gate, server, gateway_in, gateway_out));
        client
            .write_all(
                b"{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\",\"params\":{}}\n\
                  {\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n",
            )
            .await
            .unwrap();
        let mut lines = BufReader::new(client_out);
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line)
            .await
            .unwrap();
        assert!(line.contains("\"init\""), "{line}");
        for id in [1, 2] {
            let call = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"t","arguments":{{}}}}}}"#
            );
            client.write_all(call.as_bytes()).await.unwrap();
            client.write_all(b"\n").await.unwrap();
        }
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
