//! Over Streamable HTTP the upstream says that a session's tools changed
//! (`notifications/tools/list_changed`) in the answers the gateway relays: an event of a `POST`'s
//! answer stream or of the `GET` stream (or, from a lenient server, a JSON answer). The relay
//! reads each frame of those answers as it passes, never holding or delaying one, and has the
//! session's tool list read again before its next call.
//!
//! Memory is bounded per answer: the event stream's reader ([`crate::sse`]) holds only `data:`
//! lines, as the event's data, and an event (or a JSON answer) of more than
//! [`MAX_WATCHED_MESSAGE_BYTES`] is relayed unread; a notice that large is then missed, and the
//! list is read again only when it no longer covers a call or is a minute old. The buffer is
//! released after each event, so a long-lived `GET` stream holds next to nothing between
//! events.
//!
//! A notice counts when the client's connection reads the frame that carries it: an answer
//! nobody reads is not read here either.
//!
//! The relay asks for answers uncompressed (`Accept-Encoding: identity`); one compressed all
//! the same is relayed unread, and the session's lists are read again before their next use.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Bytes, HttpBody};
use axum::http::{header, HeaderMap};
use hyper::body::{Frame, SizeHint};

use crate::sse::{Event, EventReader};
use crate::tools::is_tools_changed_notice;
use crate::upstream_tools::{encoded, SessionLists};

/// The most bytes of one event's data (or of a JSON answer) held to be read. A notice is a few
/// dozen bytes; with thousands of relayed answers open at once, each may hold this much.
pub(crate) const MAX_WATCHED_MESSAGE_BYTES: usize = 8 * 1024;

/// How an answer carries the server's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `text/event-stream`: each event's data is a message.
    EventStream,
    /// `application/json`: the whole body is one (or a batch).
    Json,
}

/// Finds the notices that the tools changed in an answer's bytes as they come.
#[derive(Debug)]
enum NoticeReader {
    EventStream(EventReader),
    /// The body so far, `None` once it outgrew the bound (it is not read).
    Json(Option<Vec<u8>>),
}

impl NoticeReader {
    fn new(format: Format) -> Self {
        match format {
            Format::EventStream => Self::EventStream(EventReader::new(MAX_WATCHED_MESSAGE_BYTES)),
            Format::Json => Self::Json(Some(Vec::new())),
        }
    }

    /// The next bytes of the answer; returns whether they complete a notice.
    fn read(&mut self, mut bytes: &[u8]) -> bool {
        match self {
            Self::EventStream(events) => {
                let mut noticed = false;
                while let Some(event) = events.next_event(&mut bytes) {
                    noticed |= matches!(event, Event::Data(message)
                        if is_tools_changed_notice(message.as_bytes()));
                }
                noticed
            }
            Self::Json(body) => {
                if let Some(held) = body {
                    if held.len() + bytes.len() <= MAX_WATCHED_MESSAGE_BYTES {
                        held.extend_from_slice(bytes);
                    } else {
                        // Past the bound the body is dropped and released.
                        *body = None;
                    }
                }
                false
            }
        }
    }

    /// The answer ended; returns whether a JSON answer was a notice (an event cut off by the
    /// end is dropped, as the format says).
    fn end(self) -> bool {
        match self {
            Self::EventStream(_) => false,
            Self::Json(body) => body.is_some_and(|body| is_tools_changed_notice(&body)),
        }
    }
}

/// An answer of the upstream on its way to the client, read for notices as it passes.
pub(crate) struct WatchedBody<B> {
    body: B,
    /// `None` for an answer that carries no messages, and once the answer ended.
    reader: Option<NoticeReader>,
    /// The tool lists of the session whose request this answers.
    lists: SessionLists,
}

impl<B> WatchedBody<B> {
    /// `body`, answering a request of the session of `lists`, with the answer's `headers`.
    pub(crate) fn new(body: B, headers: &HeaderMap, lists: SessionLists) -> Self {
        if encoded(headers).is_some() {
            // Encoded though the relay asked for none: its notices cannot be read, so the
            // session's lists are read again before their next use, as if it held one.
            lists.tools_changed();
            return Self {
                body,
                reader: None,
                lists,
            };
        }
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let format = match media_type.as_deref() {
            Some("text/event-stream") => Some(Format::EventStream),
            Some("application/json") => Some(Format::Json),
            _ => None,
        };
        Self {
            body,
            reader: format.map(NoticeReader::new),
            lists,
        }
    }

    fn noticed(&self, noticed: bool) {
        if noticed {
            self.lists.tools_changed();
        }
    }

    fn end(&mut self) {
        if let Some(reader) = self.reader.take() {
            let noticed = reader.end();
            self.noticed(noticed);
        }
    }
}

impl<B> HttpBody for WatchedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(reader), Some(data)) = (this.reader.as_mut(), frame.data_ref()) {
                    let noticed = reader.read(data);
                    this.noticed(noticed);
                }
            }
            Poll::Ready(None) => this.end(),
            _ => {}
        }
        // The frame is read before the client gets it, and so is the end of a body of known
        // length, which is not polled past its last frame.
        if this.body.is_end_stream() {
            this.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTICE: &str = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;

    /// Feeds `chunks` one by one; returns after which chunks a notice was complete.
    fn notices_in(format: Format, chunks: &[&[u8]]) -> Vec<usize> {
        let mut reader = NoticeReader::new(format);
        let mut at: Vec<usize> = chunks
            .iter()
            .enumerate()
            .filter(|(_, chunk)| reader.read(chunk))
            .map(|(n, _)| n)
            .collect();
        if reader.end() {
            at.push(chunks.len());
        }
        at
    }

    #[test]
    fn a_notice_is_seen_in_the_event_that_carries_it_however_it_is_cut() {
        let stream = format!(
            ": keep-alive\n\nevent: message\r\nid: 7\r\ndata: {NOTICE}\r\n\r\n\
             data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\n\n\
             data: {{\"jsonrpc\":\"2.0\",\"method\":\n\
             data: \"notifications/tools/list_changed\"}}\n\n"
        );
        let bytes = stream.as_bytes();
        let whole = notices_in(Format::EventStream, &[bytes]);
        assert_eq!(whole, [0], "two notices, one chunk");
        let mut reader = NoticeReader::new(Format::EventStream);
        let seen: usize = bytes
            .chunks(1)
            .map(|byte| usize::from(reader.read(byte)))
            .sum();
        assert_eq!(seen, 2, "byte by byte");
        // Seen at the blank line that ends its event, not before.
        let end = stream.find("\r\n\r\n").unwrap();
        let (before, after) = bytes.split_at(end + 2);
        assert_eq!(notices_in(Format::EventStream, &[before, after]), [1]);
    }

    #[test]
    fn other_messages_and_lookalikes_are_no_notice() {
        for event in [
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/list_changed\"}\n\n"
                .to_string(),
            format!("data: {{\"id\":1,\"result\":{{\"text\":{NOTICE:?}}}}}\n\n"),
            format!("data: {NOTICE}\n"),
            format!(": {NOTICE}\n\n"),
            format!("data: {NOTICE}{NOTICE}\n\n"),
        ] {
            assert!(
                notices_in(Format::EventStream, &[event.as_bytes()]).is_empty(),
                "{event}"
            );
        }
    }

    #[test]
    fn events_past_the_bound_are_not_read_and_those_after_are() {
        let long = "x".repeat(MAX_WATCHED_MESSAGE_BYTES);
        let padded = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{{"_meta":{{"p":"{long}"}}}}}}"#
        );
        let mut reader = NoticeReader::new(Format::EventStream);
        // One long line, then an event whose data lines add up past the bound.
        assert!(!reader.read(format!("data: {padded}\n\n").as_bytes()));
        let half = &padded[..padded.len() / 2];
        let rest = &padded[padded.len() / 2..];
        assert!(!reader.read(format!("data: {half}\ndata: {rest}\n\n").as_bytes()));
        assert!(reader.read(format!("data: {NOTICE}\n\n").as_bytes()));
    }

    #[test]
    fn a_json_answer_is_read_whole_within_the_bound() {
        let (start, end) = NOTICE.split_at(20);
        assert_eq!(
            notices_in(Format::Json, &[start.as_bytes(), end.as_bytes()]),
            [2]
        );
        let batch = format!(r#"[{{"jsonrpc":"2.0","id":1,"result":{{}}}},{NOTICE}]"#);
        assert_eq!(notices_in(Format::Json, &[batch.as_bytes()]), [1]);
        assert!(notices_in(Format::Json, &[start.as_bytes()]).is_empty());
        let long = format!("{NOTICE}{}", " ".repeat(MAX_WATCHED_MESSAGE_BYTES));
        assert!(notices_in(Format::Json, &[long.as_bytes()]).is_empty());
    }
}
