//! Server-sent events (`text/event-stream`, WHATWG HTML "event stream interpretation") read
//! from the upstream's answers as their bytes come, for every reader of them in the gateway:
//! the relay's watch for the notice that the tools changed ([`crate::change_watch`]) and the
//! gateway's own `tools/list` ([`crate::upstream_tools`]).
//!
//! The upstream is not trusted: only the data of the event being read is held, at most the
//! reader's bound (an event past it is reported as [`Event::TooLarge`], its data dropped), and
//! every other line (comments, `event`, `id`, `retry`), however long, is passed over unheld.
//! Lines end in `\r\n`, `\n` or a bare `\r`, wherever the chunks are cut; one leading UTF-8
//! byte order mark is skipped.

use std::borrow::Cow;

/// The field whose lines make an event's data.
const DATA_FIELD: &[u8] = b"data";
/// The UTF-8 byte order mark.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";
/// The buffer capacity kept between events, so that small events need no new allocation while
/// a long-lived stream holds next to nothing between events.
const IDLE_CAPACITY: usize = 256;

/// One whole event (ended by a blank line) that carried data.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event<'r> {
    /// Its `data` lines joined by `\n`, decoded as UTF-8 with invalid bytes replaced (as the
    /// format decodes the whole stream).
    Data(Cow<'r, str>),
    /// Its data outgrew the reader's bound: dropped unread.
    TooLarge,
}

/// Where the current line is.
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

/// Reads an event stream incrementally: fed each chunk as it comes, it yields each event once
/// the blank line that ends it is read.
#[derive(Debug)]
pub(crate) struct EventReader {
    /// The most bytes of one event's data held.
    max_data: usize,
    /// The data of the event being read, its lines joined by `\n`.
    data: Vec<u8>,
    /// The event being read has a `data` line (the next one starts with `\n`).
    has_data: bool,
    /// The event being read outgrew `max_data`: its data is dropped.
    too_large: bool,
    line: LineState,
    /// The last byte read ended a line with `\r`: a `\n` right after it ends the same line.
    after_cr: bool,
    /// How many bytes of a leading byte order mark were read; `None` once past the stream's
    /// start.
    mark: Option<usize>,
    /// `data` still holds the event last yielded: released at the next call, once the caller
    /// is done with it.
    yielded: bool,
}

impl EventReader {
    /// A reader of a stream from its start, holding at most `max_data` bytes of an event's
    /// data.
    pub(crate) fn new(max_data: usize) -> Self {
        Self {
            max_data,
            data: Vec::new(),
            has_data: false,
            too_large: false,
            line: LineState::Field(0),
            after_cr: false,
            mark: Some(0),
            yielded: false,
        }
    }

    /// The next event that the bytes of `input` complete, `input` left at the bytes after it;
    /// `None` once every byte of `input` is read (and kept as far as the next event needs).
    /// Call again until `None`: that also releases the last event's data.
    pub(crate) fn next_event(&mut self, input: &mut &[u8]) -> Option<Event<'_>> {
        if std::mem::take(&mut self.yielded) {
            self.data.clear();
            self.data.shrink_to(IDLE_CAPACITY);
        }
        let mut bytes = self.past_mark(input);
        let complete = loop {
            let Some((&first, after_first)) = bytes.split_first() else {
                break false;
            };
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                bytes = after_first;
                continue;
            }
            let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) else {
                self.line_part(bytes);
                bytes = &[];
                break false;
            };
            let (part, rest) = bytes.split_at(end);
            self.line_part(part);
            let Some((&line_end, rest)) = rest.split_first() else {
                break false;
            };
            bytes = rest;
            self.after_cr = line_end == b'\r';
            if self.line_end() {
                break true;
            }
        };
        *input = bytes;
        if !complete {
            return None;
        }
        let too_large = std::mem::take(&mut self.too_large);
        self.yielded = true;
        Some(if too_large {
            Event::TooLarge
        } else {
            Event::Data(String::from_utf8_lossy(&self.data))
        })
    }

    /// `bytes` without the part of a leading byte order mark they hold.
    fn past_mark<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let Some(matched) = self.mark else {
            return bytes;
        };
        let wanted = BYTE_ORDER_MARK.get(matched..).unwrap_or_default();
        let (head, rest) = bytes.split_at(bytes.len().min(wanted.len()));
        if wanted.starts_with(head) {
            self.mark = (head.len() < wanted.len()).then_some(matched + head.len());
            return rest;
        }
        // No mark: what was taken for one starts the first line.
        self.mark = None;
        self.line_part(BYTE_ORDER_MARK.get(..matched).unwrap_or_default());
        bytes
    }

    /// Part of a line, without its line end.
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
                        // the data, and are not held.
                        self.line = LineState::Skip;
                    }
                }
            }
        }
    }

    /// A line of `data` begins: its value joins the event's data on a line of its own.
    fn data_line(&mut self) {
        if std::mem::replace(&mut self.has_data, true) {
            self.hold(b"\n");
        }
        self.line = if self.too_large {
            LineState::Skip
        } else {
            LineState::ValueStart
        };
    }

    /// A line ended; returns whether it ended an event that carried data.
    fn line_end(&mut self) -> bool {
        let line = std::mem::replace(&mut self.line, LineState::Field(0));
        match line {
            // A blank line ends the event; the format dispatches none whose data is empty.
            LineState::Field(0) => {
                self.has_data = false;
                self.too_large || !self.data.is_empty()
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
        if self.too_large {
            return;
        }
        if self.data.len().saturating_add(part.len()) > self.max_data {
            self.too_large = true;
            self.data = Vec::new();
            if self.line == LineState::Value {
                self.line = LineState::Skip;
            }
        } else {
            self.data.extend_from_slice(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `reader` yields for `chunks` fed one by one: each event's data (`None` for one too
    /// large), and after which chunk it came.
    fn events_of(reader: &mut EventReader, chunks: &[&[u8]]) -> Vec<(usize, Option<String>)> {
        let mut events = Vec::new();
        for (n, chunk) in chunks.iter().enumerate() {
            let mut rest = *chunk;
            while let Some(event) = reader.next_event(&mut rest) {
                events.push((
                    n,
                    match event {
                        Event::Data(data) => Some(data.into_owned()),
                        Event::TooLarge => None,
                    },
                ));
            }
            assert!(rest.is_empty(), "every byte read");
        }
        events
    }

    /// The events' data of `stream` read whole, and read cut at every place into two and
    /// three chunks and byte by byte: the same wherever the cuts fall.
    fn data_of(stream: &[u8], max_data: usize) -> Vec<Option<String>> {
        let only_data = |events: Vec<(usize, Option<String>)>| -> Vec<Option<String>> {
            events.into_iter().map(|(_, data)| data).collect()
        };
        let whole = only_data(events_of(&mut EventReader::new(max_data), &[stream]));
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let chunks = [&stream[..i], &stream[i..j], &stream[j..]];
                let cut = only_data(events_of(&mut EventReader::new(max_data), &chunks));
                assert_eq!(cut, whole, "cut at {i} and {j}");
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let byte_by_byte = only_data(events_of(&mut EventReader::new(max_data), &bytes));
        assert_eq!(byte_by_byte, whole, "byte by byte");
        whole
    }

    fn data(texts: &[&str]) -> Vec<Option<String>> {
        texts.iter().map(|text| Some(text.to_string())).collect()
    }

    #[test]
    fn lines_end_in_crlf_lf_or_a_bare_cr_wherever_the_chunks_are_cut() {
        for end in ["\n", "\r\n", "\r"] {
            let stream = format!("data: a{end}data: b{end}{end}data:c{end}{end}").into_bytes();
            assert_eq!(data_of(&stream, 100), data(&["a\nb", "c"]), "{end:?}");
        }
        let mixed = b"data: a\r\ndata: b\rdata: c\n\rdata: d\r\r\n\n";
        assert_eq!(data_of(mixed, 100), data(&["a\nb\nc", "d"]));
    }

    #[test]
    fn a_crlf_cut_between_two_chunks_ends_one_line() {
        let mut reader = EventReader::new(100);
        let chunks: [&[u8]; 4] = [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"];
        assert_eq!(
            events_of(&mut reader, &chunks),
            [(2, Some("a\nb".to_string()))],
            "two data lines of one event, ended by the third chunk's `\\r`"
        );
        assert!(events_of(&mut reader, &[b"data: c\r"]).is_empty());
        assert_eq!(
            events_of(&mut reader, &[b"\r"]),
            [(0, Some("c".to_string()))],
            "`\\r\\r` is a line and a blank line"
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_once_at_the_start_only() {
        assert_eq!(data_of(b"\xEF\xBB\xBFdata: a\n\n", 100), data(&["a"]));
        // A second mark, or one later, is the line's own: the field is no longer `data`.
        assert!(data_of(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n", 100).is_empty());
        assert!(data_of(b"\n\xEF\xBB\xBFdata: a\n\n", 100).is_empty());
        // Bytes that only begin like a mark start the first line.
        assert_eq!(
            data_of(b"\xEF\xBBdata: a\n\ndata: b\n\n", 100),
            data(&["b"])
        );
        assert!(data_of(b"\xEFdata: a\n\n", 100).is_empty());
        assert_eq!(data_of(b"data: a\n\n", 100), data(&["a"]));
    }

    #[test]
    fn comments_and_other_fields_are_passed_over() {
        let stream = b": keep-alive\n\nevent: message\nid: 7\nretry: 10\ndata: a\n: note\n\n\
                       datum: x\ndata-: x\ndat\nDATA: x\n\n:data: x\n\n";
        assert_eq!(data_of(stream, 100), data(&["a"]));
    }

    #[test]
    fn data_lines_join_with_newlines_and_lose_one_leading_space() {
        let stream = b"data:a\ndata:  b\ndata\ndata:\n\ndata\n\ndata\ndata\n\n";
        // `data` alone is a data line with an empty value; an event whose data is empty is
        // not dispatched, one of two empty lines is `\n`.
        assert_eq!(data_of(stream, 100), data(&["a\n b\n\n", "\n"]));
    }

    #[test]
    fn an_event_cut_off_by_the_end_is_not_yielded() {
        let mut reader = EventReader::new(100);
        assert!(events_of(&mut reader, &[b"data: a\n"]).is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(data_of(b"data: a\xFFb\n\n", 100), data(&["a\u{FFFD}b"]));
    }

    #[test]
    fn an_event_past_the_bound_is_refused_and_the_next_is_read() {
        // Exactly the bound (with the `\n` that joins two lines) is read; one byte more is not.
        assert_eq!(data_of(b"data: 12345\n\n", 5), data(&["12345"]));
        assert_eq!(data_of(b"data: 12\ndata: 45\n\n", 5), data(&["12\n45"]));
        assert_eq!(
            data_of(b"data: 123456\n\ndata: ok\n\n", 5),
            [None, Some("ok".into())]
        );
        assert_eq!(
            data_of(b"data: 123\ndata: 45\ndata: 6\n\ndata: ok\n\n", 5),
            [None, Some("ok".into())]
        );
    }

    #[test]
    fn only_data_is_held_and_it_is_released_after_each_event() {
        let max = 4096;
        let long = "x".repeat(16 * max);
        let stream = format!(": {long}\nevent: {long}\ndata: a\n\n");
        let mut reader = EventReader::new(max);
        assert_eq!(
            events_of(&mut reader, &[stream.as_bytes()]),
            [(0, Some("a".to_string()))]
        );
        assert!(reader.data.capacity() <= IDLE_CAPACITY);
        let large = "y".repeat(max - 1);
        assert!(events_of(&mut reader, &[format!("data: {large}\n").as_bytes()]).is_empty());
        assert!(
            reader.data.capacity() >= large.len(),
            "held until the event ends"
        );
        assert_eq!(events_of(&mut reader, &[b"\n"]), [(0, Some(large))]);
        assert!(reader.data.capacity() <= IDLE_CAPACITY, "released");
        assert_eq!(
            events_of(&mut reader, &[format!("data: {long}\n\n").as_bytes()]),
            [(0, None)]
        );
        assert!(reader.data.capacity() <= IDLE_CAPACITY, "never held");
    }

    #[test]
    fn the_input_is_left_at_the_bytes_after_the_event() {
        let mut reader = EventReader::new(100);
        let mut input: &[u8] = b"data: a\n\ndata: b\n\ndata: c";
        assert_eq!(reader.next_event(&mut input), Some(Event::Data("a".into())));
        assert_eq!(input, b"data: b\n\ndata: c");
        assert_eq!(reader.next_event(&mut input), Some(Event::Data("b".into())));
        assert_eq!(reader.next_event(&mut input), None);
        assert!(input.is_empty());
        let mut end: &[u8] = b"\n\n";
        assert_eq!(reader.next_event(&mut end), Some(Event::Data("c".into())));
    }
}
