//! One connection's work: connect, find or create the stream, find where to resume, then
//! publish committed records in order, keeping at most [`WINDOW`] of them unacknowledged.
//! Any error ends the session; the publisher backs off and starts a new one, resuming at the
//! first record without a PubAck.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::{self as js, Context};
use async_nats::{header, Client, ConnectOptions};
use bytes::Bytes;
use tokio::sync::watch;
use zt_ledger::Ledger;

use super::settings::{NatsAuth, NatsConfig, NatsUrl};
use crate::metrics::Metrics;

/// Records published but not yet acknowledged, at most.
pub(super) const WINDOW: usize = 256;
/// Records read from the log at a time.
const PAGE: usize = 512;
/// How long a connection attempt, a JetStream API call or a PubAck may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the log is checked for new records once everything is published.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// Reconnections the client attempts by itself before the session gives up.
const RECONNECTS: usize = 3;
/// The header carrying the record's `seq`.
pub(super) const SEQ_HEADER: &str = "Zt-Seq";

/// All the publisher touches: the committed log it tails and the metrics its progress shows
/// in.
pub(super) struct Tail {
    /// The audit log.
    pub ledger: Ledger,
    /// The server's metrics (`nats_*`).
    pub metrics: Arc<Metrics>,
}

/// What the publisher knows across sessions.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    /// The first record without a PubAck: every record before it is in the stream. `None`
    /// until a session has read the stream's last record.
    pub next: Option<u64>,
    /// The log's identity in message ids: the `current_hash` of record 0.
    log_id: Option<String>,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    /// The server could not be reached or refused the connection.
    #[error("connecting: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// The stream could not be found or created.
    #[error("stream `{0}`: {1}")]
    Stream(String, #[source] js::context::CreateStreamError),
    /// The stream's last record could not be read.
    #[error("reading the stream's last record: {0}")]
    LastRecord(#[from] stream::LastRawMessageError),
    /// The stream's last message on the subject is not a record of this publisher.
    #[error(
        "the last message on the subject has no `{SEQ_HEADER}` and `Nats-Msg-Id` of a zt record"
    )]
    NotARecord,
    /// The stream holds another log's records on this subject.
    #[error("the subject holds records of another audit log (message id `{0}`); publish this one to another subject or stream")]
    ForeignLog(String),
    /// The stream holds more records than the log (a log restored from an older copy).
    #[error("the stream already holds seq {stream_seq}, but the log has {log_size} records; waiting for the log to pass it")]
    AheadOfLog {
        /// The stream's last seq.
        stream_seq: u64,
        /// Records in the log.
        log_size: u64,
    },
    /// The stream holds, under a record's message id, something else than that record.
    #[error("the stream holds a message under the id of record {seq} that is not that record (another publisher on the subject, or a log restored from an older copy); nothing more is published until that is resolved")]
    Diverged {
        /// The record.
        seq: u64,
    },
    /// A publish failed or was not acknowledged in time.
    #[error("publishing seq {seq}: {error}")]
    Publish {
        /// The record.
        seq: u64,
        /// What went wrong.
        #[source]
        error: PublishError,
    },
    /// The subject is captured by another stream than the configured one.
    #[error("seq {seq} was stored by stream `{actual}`, not `{expected}`: the subject belongs to another stream")]
    WrongStream {
        /// The record.
        seq: u64,
        /// The configured stream.
        expected: String,
        /// The stream that acknowledged it.
        actual: String,
    },
    /// The audit log could not be read.
    #[error("reading the audit log: {0}")]
    Log(String),
}

/// Runs one session until an error, or until a stop is asked for and everything committed
/// is published (`Ok`).
pub(super) async fn run(
    tail: &Tail,
    config: &NatsConfig,
    cursor: &mut Cursor,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let client = connect(&config.url).await?;
    let jetstream = js::context::ContextBuilder::new()
        .timeout(TIMEOUT)
        .max_ack_inflight(WINDOW)
        .backpressure_on_inflight(true)
        .build(client);
    let stream = jetstream
        .get_or_create_stream(stream::Config {
            name: config.stream.as_str().to_string(),
            subjects: vec![config.subject.as_str().to_string()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| SessionError::Stream(config.stream.as_str().to_string(), e))?;
    let log_id = log_id(tail, cursor).await?;
    let log_size = tail.ledger.tree_size();
    let stream_next = match last_record(&stream, config.subject.as_str()).await? {
        None => 0,
        Some((id, seq, _)) if Some(id.as_str()) == log_id.as_deref() && seq >= log_size => {
            return Err(SessionError::AheadOfLog {
                stream_seq: seq,
                log_size,
            })
        }
        // Resumed after only if it is this log's record, byte for byte: its headers alone
        // could be anyone's (a message claiming a later seq would skip the records between).
        Some((id, seq, payload)) if Some(id.as_str()) == log_id.as_deref() => {
            let line = read(tail, seq, 1).await?;
            if line.first().map(String::as_bytes) != Some(payload.as_ref()) {
                return Err(SessionError::Diverged { seq });
            }
            seq.saturating_add(1)
        }
        Some((id, _, _)) => return Err(SessionError::ForeignLog(format!("{id}:…"))),
    };
    // Never past what this process saw acknowledged: a record lost in a reconnection while
    // later ones were stored is sent again, never skipped.
    let next = cursor.next.map_or(stream_next, |n| n.min(stream_next));
    cursor.next = Some(next);
    tail.metrics.nats_connected(true);
    tracing::info!(
        server = %config.url,
        stream = config.stream.as_str(),
        subject = config.subject.as_str(),
        resume_at = next,
        committed = log_size,
        "nats publisher connected"
    );
    publish(tail, config, &jetstream, &stream, cursor, stop).await
}

async fn connect(url: &NatsUrl) -> Result<Client, async_nats::ConnectError> {
    let options = match url.auth() {
        NatsAuth::None => ConnectOptions::new(),
        NatsAuth::Token(token) => ConnectOptions::with_token(token.clone()),
        NatsAuth::UserPassword(user, password) => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
    };
    options
        .name("zt-audit-publisher")
        .connection_timeout(TIMEOUT)
        // A few quick reconnections ride out a blip; past that the session fails and the
        // publisher starts a new one, so a dropped client never keeps retrying on its own.
        .max_reconnects(RECONNECTS)
        .connect(url.server().clone())
        .await
}

/// The publishing loop: fills the window from the log, takes PubAcks in order.
async fn publish(
    tail: &Tail,
    config: &NatsConfig,
    jetstream: &Context,
    stream: &stream::Stream,
    cursor: &mut Cursor,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let mut acked = cursor.next.unwrap_or(0);
    let mut next_send = acked;
    let mut page: VecDeque<String> = VecDeque::new();
    let mut in_flight: VecDeque<(u64, Bytes, PublishAckFuture)> = VecDeque::with_capacity(WINDOW);
    let mut caught_up_logged = false;
    loop {
        let committed = tail.ledger.tree_size();
        tail.metrics.nats_progress(acked, committed);
        if in_flight.len() < WINDOW && next_send < committed {
            if page.is_empty() {
                let want = usize::try_from(committed - next_send).map_or(PAGE, |n| n.min(PAGE));
                page = read(tail, next_send, want).await?.into();
            }
            let Some(line) = page.pop_front() else {
                return Err(SessionError::Log(format!("record {next_send} is missing")));
            };
            let log_id = match log_id(tail, cursor).await? {
                Some(id) => id,
                None => return Err(SessionError::Log("record 0 is missing".into())),
            };
            let line = Bytes::from(line);
            let message = PublishMessage::build()
                .payload(line.clone())
                .message_id(format!("{log_id}:{next_send}"))
                .header(SEQ_HEADER, next_send.to_string());
            let ack = jetstream
                .send_publish(config.subject.as_str().to_string(), message)
                .await
                .map_err(|error| SessionError::Publish {
                    seq: next_send,
                    error,
                })?;
            in_flight.push_back((next_send, line, ack));
            next_send += 1;
            continue;
        }
        if let Some((seq, line, ack)) = in_flight.pop_front() {
            let ack = ack
                .await
                .map_err(|error| SessionError::Publish { seq, error })?;
            if ack.stream != config.stream.as_str() {
                return Err(SessionError::WrongStream {
                    seq,
                    expected: config.stream.as_str().to_string(),
                    actual: ack.stream,
                });
            }
            // A duplicate is stored already: a re-send after a reconnection, or a message
            // someone else published under this record's id. Counted only if it is the record.
            if ack.duplicate {
                let stored = stream
                    .get_raw_message(ack.sequence)
                    .await
                    .map_err(|e| SessionError::Log(format!("reading back seq {seq}: {e}")))?;
                if stored.payload != line {
                    return Err(SessionError::Diverged { seq });
                }
            }
            acked = seq + 1;
            cursor.next = Some(acked);
            continue;
        }
        // Everything committed is acknowledged.
        if !caught_up_logged {
            tracing::info!(published = acked, "nats publisher caught up");
            caught_up_logged = true;
        }
        if stopping(stop) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Whether the server asked the publisher to finish (or is gone).
pub(super) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// The stream's last message on `subject` as (log id, seq, payload), `None` if there is none.
async fn last_record(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Option<(String, u64, Bytes)>, SessionError> {
    let message = match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str());
    let (log, seq) = position(header(SEQ_HEADER), header(header::NATS_MESSAGE_ID.as_ref()))
        .ok_or(SessionError::NotARecord)?;
    Ok(Some((log, seq, message.payload)))
}

/// (log id, seq) from a message's `Zt-Seq` and `Nats-Msg-Id` headers, if they agree.
fn position(seq: Option<&str>, msg_id: Option<&str>) -> Option<(String, u64)> {
    let seq_text = seq?;
    let seq = seq_text.parse::<u64>().ok()?;
    let (log, id_seq) = msg_id?.rsplit_once(':')?;
    (id_seq == seq_text && !log.is_empty()).then(|| (log.to_string(), seq))
}

/// The log's identity (the `current_hash` of record 0), read once; `None` while the log is
/// empty.
async fn log_id(tail: &Tail, cursor: &mut Cursor) -> Result<Option<String>, SessionError> {
    if let Some(id) = &cursor.log_id {
        return Ok(Some(id.clone()));
    }
    if tail.ledger.tree_size() == 0 {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct First {
        current_hash: String,
    }
    let lines = read(tail, 0, 1).await?;
    let first = lines
        .first()
        .ok_or_else(|| SessionError::Log("record 0 is missing".into()))?;
    let first: First = serde_json::from_str(first)
        .map_err(|e| SessionError::Log(format!("record 0 is not a record: {e}")))?;
    cursor.log_id = Some(first.current_hash.clone());
    Ok(Some(first.current_hash))
}

/// Lines `from..from+limit` of the log, read off the async threads.
async fn read(tail: &Tail, from: u64, limit: usize) -> Result<Vec<String>, SessionError> {
    let ledger = tail.ledger.clone();
    tokio::task::spawn_blocking(move || ledger.read(from, limit))
        .await
        .map_err(|_| SessionError::Log("the read was interrupted".into()))?
        .map_err(|e| SessionError::Log(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_needs_both_headers_in_agreement() {
        assert_eq!(
            position(Some("41"), Some("abc:41")),
            Some(("abc".to_string(), 41))
        );
        assert_eq!(position(Some("41"), Some("abc:42")), None);
        assert_eq!(position(Some("x"), Some("abc:x")), None);
        assert_eq!(position(Some("41"), Some(":41")), None);
        assert_eq!(position(None, Some("abc:41")), None);
        assert_eq!(position(Some("41"), None), None);
        assert_eq!(position(Some("41"), Some("41")), None);
    }
}
