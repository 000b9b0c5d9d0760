//! Over Streamable HTTP the upstream says that a session's tools changed
//! (`notifications/tools/list_changed`) in the answers the gateway relays: an event of a `POST`'s
//! answer stream or of the `GET` stream (or, from a lenient server, a JSON answer). The relay
//! reads each frame of those answers as it passes, never holding or delaying one, and has the
//! session's tool list read again before its next call.
//!
//! Memory is bounded per answer: only `data:` lines are held, as the event's data, and an
//! event (or a JSON answer) of more than [`MAX_WATCHED_MESSAGE_BYTES`] is relayed unread; a
//! notice that large is then missed, and the list is read again only when it no longer covers
//! a call or is a minute old. The buffer is released after each event, so a long-lived `GET`
//! stream holds next to nothing between events.
//!
//! A notice counts when the client's connection reads the frame that carries it: an answer
//! nobody reads is not read here either.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Bytes, HttpBody};
use axum::http::{header, HeaderMap};
use hyper::body::{Frame, SizeHint};

use crate::tools::is_tools_changed_notice;
use crate::upstream_tools::SessionTools;

/// The most bytes of one event's data (or of a JSON answer) held to be read. A notice is a few
/// dozen bytes; with thousands of relayed answers open at once, each may hold this much.
pub(crate) const MAX_WATCHED_MESSAGE_BYTES: usize = 8 * 1024;
/// The buffer capacity kept between events, so that small events need no new allocation.
const IDLE_CAPACITY: usize = 256;
/// The field whose lines make an event's data.
const DATA_FIELD: &[u8] = b"data";

/// How an answer carries the server's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `text/event-stream`: each event's data is a message.
    EventStream,
    /// `application/json`: the whole body is one (or a batch).
    Json,
}

/// Where the event stream's current line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// This many bytes of the line read, all of them a prefix of `data`.
    Field(usize),
    /// Right after `data:`: one space is dropped, as the format says.
    ValueStart,
    /// In the value of a `data` line: its bytes go to the event's data.
    Value,
    /// Any other line, or data past the bound: passed over to its end.
    Skip,
}

/// Finds the notices that the tools changed in an answer's bytes as they come.
#[derive(Debug)]
struct NoticeReader {
    format: Format,
    /// The data of the event being read, its lines joined by `\n` (event stream), or the body
    /// so far (JSON).
    data: Vec<u8>,
    /// The event being read has a `data` line.
    has_data: bool,
    /// The event (or JSON answer) outgrew the bound: it is not read.
    too_long: bool,
    line: LineState,
    /// The last byte read ended a line with `\r`: a `\n` right after it ends the same line.
    after_cr: bool,
    /// How many bytes of a leading byte order mark were read (an event stream may start with
    /// one, and it is no part of the first field); `None` once past the stream's start.
    mark: Option<usize>,
}

/// The UTF-8 byte order mark.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

impl NoticeReader {
    fn new(format: Format) -> Self {
        Self {
            format,
            data: Vec::new(),
            has_data: false,
            too_long: false,
            line: LineState::Field(0),
            after_cr: false,
            mark: Some(0),
        }
    }

    /// `bytes` without the part of a leading byte order mark they hold.
    fn past_mark<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let Some(matched) = self.mark else {
            return bytes;
        };
        let wanted = BYTE_ORDER_MARK.get(matched..).unwrap_or_default();
        let (head, rest) = bytes.split_at(bytes.len().min(wanted.len()));
        if wanted.starts_with(head) {
            if head.len() == wanted.len() {
                self.mark = None;
            } else {
                self.mark = Some(matched + head.len());
            }
            return rest;
        }
        // No mark: what was taken for one starts the first line.
        self.mark = None;
        self.line_part(BYTE_ORDER_MARK.get(..matched).unwrap_or_default());
        bytes
    }

    /// The next bytes of the answer; returns whether they complete a notice.
    fn read(&mut self, mut bytes: &[u8]) -> bool {
        if self.format == Format::Json {
            self.hold(bytes);
            return false;
        }
        bytes = self.past_mark(bytes);
        let mut noticed = false;
        while let Some((&first, after_first)) = bytes.split_first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                bytes = after_first;
                continue;
            }
            // Lines end in `\n`, `\r\n` or a bare `\r`.
            let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) else {
                self.line_part(bytes);
                break;
            };
            let (part, rest) = bytes.split_at(end);
            self.line_part(part);
            let Some((&line_end, rest)) = rest.split_first() else {
                break;
            };
            self.after_cr = line_end == b'\r';
            noticed |= self.line_end();
            bytes = rest;
        }
        noticed
    }

    /// The answer ended; returns whether a JSON answer was a notice (an event cut off by the
    /// end is dropped, as the format says).
    fn end(&mut self) -> bool {
        let noticed =
            self.format == Format::Json && !self.too_long && is_tools_changed_notice(&self.data);
        self.data = Vec::new();
        noticed
    }

    /// Part of a line of the event stream, without its line end.
    fn line_part(&mut self, mut part: &[u8]) {
        while !part.is_empty() {
            match self.line {
                LineState::Skip => return,
                LineState::Value => return self.hold(part),
                LineState::ValueStart => {
                    self.line = LineState::Value;
                    part = part.strip_prefix(b" ").unwrap_or(part);
                }
                LineState::Field(read) => {
                    let expected = DATA_FIELD.get(read..).unwrap_or_default();
                    let n = expected.len().min(part.len());
                    let (head, tail) = part.split_at(n);
                    if expected.starts_with(head) {
                        self.line = LineState::Field(read + n);
                        part = tail;
                        // The whole field name: a colon must follow for a value.
                        if read + n == DATA_FIELD.len() {
                            match part.split_first() {
                                Some((b':', value)) => {
                                    self.data_line();
                                    part = value;
                                }
                                Some(_) => self.line = LineState::Skip,
                                None => {}
                            }
                        }
                    } else {
                        // Other fields (`event`, `id`, `retry`) and comments say nothing of
                        // the message, and are not held.
                        self.line = LineState::Skip;
                    }
                }
            }
        }
    }

    /// A line of `data` begins: its value joins the event's data on a line of its own.
    fn data_line(&mut self) {
        if self.too_long {
            self.line = LineState::Skip;
            return;
        }
        if std::mem::replace(&mut self.has_data, true) {
            self.hold(b"\n");
        }
        self.line = if self.too_long {
            LineState::Skip
        } else {
            LineState::ValueStart
        };
    }

    /// A line of the event stream ended; returns whether it ended an event that is a notice.
    fn line_end(&mut self) -> bool {
        let line = std::mem::replace(&mut self.line, LineState::Field(0));
        match line {
            // A blank line ends the event.
            LineState::Field(0) => {
                let noticed =
                    self.has_data && !self.too_long && is_tools_changed_notice(&self.data);
                self.has_data = false;
                self.too_long = false;
                self.data.clear();
                self.data.shrink_to(IDLE_CAPACITY);
                noticed
            }
            // `data` without a colon: a data line with an empty value.
            LineState::Field(read) if read == DATA_FIELD.len() => {
                self.data_line();
                self.line = LineState::Field(0);
                false
            }
            _ => false,
        }
    }

    /// Adds `part` to the data, up to the bound; past it the data is dropped and released.
    fn hold(&mut self, part: &[u8]) {
        if self.too_long {
            return;
        }
        if self.data.len() + part.len() > MAX_WATCHED_MESSAGE_BYTES {
            self.too_long = true;
            self.data = Vec::new();
            if self.line == LineState::Value {
                self.line = LineState::Skip;
            }
        } else {
            self.data.extend_from_slice(part);
        }
    }
}

/// An answer of the upstream on its way to the client, read for notices as it passes.
pub(crate) struct WatchedBody<B> {
    body: B,
    /// `None` for an answer that carries no messages, and once the answer ended.
    reader: Option<NoticeReader>,
    tools: Arc<SessionTools>,
    /// The `Mcp-Session-Id` of the request answered.
    session: Vec<u8>,
}

impl<B> WatchedBody<B> {
    /// `body`, answering a request of `session`, with the answer's `headers`.
    pub(crate) fn new(
        body: B,
        headers: &HeaderMap,
        tools: Arc<SessionTools>,
        session: Vec<u8>,
    ) -> Self {
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
            tools,
            session,
        }
    }

    fn noticed(&self, noticed: bool) {
        if noticed {
            tracing::debug!("the upstream's tools changed: the session's list is read again");
            self.tools.tools_changed(&self.session);
        }
    }

    fn end(&mut self) {
        if let Some(mut reader) = self.reader.take() {
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
    fn a_stream_may_start_with_a_byte_order_mark() {
        let stream = format!("\u{feff}data: {NOTICE}\n\n");
        assert_eq!(notices_in(Format::EventStream, &[stream.as_bytes()]), [0]);
        let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
        assert_eq!(notices_in(Format::EventStream, &bytes), [bytes.len() - 1]);
        // Bytes that only begin like a mark are the line's own.
        let lookalike = [&b"\xEF"[..], format!("data: {NOTICE}\n\n").as_bytes()].concat();
        assert_eq!(
            notices_in(Format::EventStream, &[&lookalike[..1], &lookalike[1..]]),
            Vec::<usize>::new(),
            "a field name with a stray byte is no data"
        );
        assert_eq!(
            notices_in(
                Format::EventStream,
                &[format!("data: {NOTICE}\n\n").as_bytes()]
            ),
            [0]
        );
    }

    #[test]
    fn lines_may_end_in_a_bare_carriage_return() {
        let stream = format!("event: message\rdata: {NOTICE}\r\rdata: {NOTICE}\r\n\r\n");
        assert_eq!(notices_in(Format::EventStream, &[stream.as_bytes()]), [0]);
        let mut reader = NoticeReader::new(Format::EventStream);
        let seen: usize = stream
            .as_bytes()
            .chunks(1)
            .map(|byte| usize::from(reader.read(byte)))
            .sum();
        assert_eq!(seen, 2, "byte by byte");
        // A `\r\n` cut between two chunks ends one line, not a line and an event.
        let (start, end) = NOTICE.split_at(30);
        let cut = [
            format!("data: {start}\r"),
            format!("\ndata: {end}\r"),
            "\n\r\n".to_string(),
        ];
        let cut: Vec<&[u8]> = cut.iter().map(|chunk| chunk.as_bytes()).collect();
        assert_eq!(
            notices_in(Format::EventStream, &cut),
            Vec::<usize>::new(),
            "two data lines, one message: not the notice"
        );
        let split = [format!("data: {NOTICE}\r"), "\n\r".into(), "\n".into()];
        let split: Vec<&[u8]> = split.iter().map(|chunk| chunk.as_bytes()).collect();
        assert_eq!(notices_in(Format::EventStream, &split), [1]);
    }

    #[test]
    fn only_data_is_held_and_it_is_released_after_each_event() {
        // A comment or another field far longer than the bound is passed over, not held: the
        // event's data is read all the same.
        let long = "x".repeat(16 * MAX_WATCHED_MESSAGE_BYTES);
        let event = format!(": {long}\nevent: {long}\ndata: {NOTICE}\n\n");
        let mut reader = NoticeReader::new(Format::EventStream);
        assert!(reader.read(event.as_bytes()));
        assert!(reader.data.capacity() <= IDLE_CAPACITY);
        // A large answer is held only until its event ends.
        let padded = "y".repeat(MAX_WATCHED_MESSAGE_BYTES - 100);
        assert!(!reader.read(format!("data: {{\"p\":\"{padded}\"}}\n").as_bytes()));
        assert!(reader.data.capacity() >= padded.len());
        assert!(!reader.read(b"\n"));
        assert!(reader.data.capacity() <= IDLE_CAPACITY, "released");
        // Only the field `data` is data; its one leading space is optional.
        let lookalikes = format!("datum: {NOTICE}\ndata-: {NOTICE}\n\ndat\n\n");
        assert!(!reader.read(lookalikes.as_bytes()));
        assert!(reader.read(format!("data:{NOTICE}\n\n").as_bytes()));
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
