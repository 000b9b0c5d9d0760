//! Newline-delimited messages read with a size bound, so a client cannot make the gateway
//! hold an endless line in memory, and with one line ending only: `\n`, or `\r\n`.
//!
//! A `\r` inside a line is refused. The gateway's parser reads it as JSON whitespace, but a
//! server reading its input with universal newlines (the Python SDK's stdio, Java's
//! `BufferedReader`, .NET's `ReadLine`) ends a line there: a notification the gateway relays
//! could hold, between two `\r`, a `tools/call` line that such a server runs undecided. The
//! other characters some readers end lines at need no rule: `\x0b`, `\x0c` and `\x1c`-`\x1e`
//! are neither JSON whitespace nor allowed raw in a string, so the parser refuses them; U+0085,
//! U+2028 and U+2029 may stand raw only inside a string, so a piece cut there starts inside one,
//! and its own strings would be what the gateway read as bare tokens, where no `"tools/call"`
//! (nor any string) can be spelled.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A whole message (without its `\n`) in the buffer.
    Message,
    /// A message longer than the bound: it was read and thrown away.
    TooLong,
    /// A message holding a `\r` before its end (see the module docs): thrown away.
    StrayCarriageReturn,
    /// The input ended.
    End,
}

/// Reads the next line into `buf` (cleared first), reading past and dropping a line longer
/// than `max` bytes, and dropping one with a `\r` anywhere but as its last byte (the `\r` of
/// a `\r\n` stays in `buf`). A last line without `\n` counts as a line.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::End,
                (false, false) => whole(buf),
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (available.get(..at).unwrap_or_default(), Some(at + 1)),
            None => (available, None),
        };
        if !too_long && buf.len() + chunk.len() > max {
            too_long = true;
            buf.clear();
        }
        if !too_long {
            buf.extend_from_slice(chunk);
        }
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if too_long { Line::TooLong } else { whole(buf) });
        }
    }
}

/// A line read whole: a message, unless it holds a `\r` before its last byte.
fn whole(buf: &mut Vec<u8>) -> Line {
    match memchr::memchr(b'\r', buf) {
        Some(at) if at + 1 < buf.len() => {
            buf.clear();
            Line::StrayCarriageReturn
        }
        _ => Line::Message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = read_line(&mut reader, &mut buf, max).await.unwrap();
            if line == Line::End {
                return out;
            }
            out.push((line, buf.clone()));
        }
    }

    #[tokio::test]
    async fn lines_split_on_newline_across_reads() {
        let got = all(b"abcdefgh\n\nxy\nlast", 100).await;
        assert_eq!(
            got,
            vec![
                (Line::Message, b"abcdefgh".to_vec()),
                (Line::Message, b"".to_vec()),
                (Line::Message, b"xy".to_vec()),
                (Line::Message, b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn a_carriage_return_only_ends_a_line_before_its_newline() {
        let got = all(b"a\r\n\r\nb\rc\n\rd\n\r\r\nok\nlast\r", 100).await;
        assert_eq!(
            got,
            vec![
                (Line::Message, b"a\r".to_vec()),
                (Line::Message, b"\r".to_vec()),
                (Line::StrayCarriageReturn, Vec::new()),
                (Line::StrayCarriageReturn, Vec::new()),
                (Line::StrayCarriageReturn, Vec::new()),
                (Line::Message, b"ok".to_vec()),
                (Line::Message, b"last\r".to_vec()),
            ]
        );
        assert_eq!(
            all(b"x\ry", 100).await,
            vec![(Line::StrayCarriageReturn, Vec::new())],
            "a last line without its newline"
        );
    }

    #[tokio::test]
    async fn a_long_line_is_dropped_and_reading_goes_on() {
        let got = all(b"0123456789\nok\n0123456789", 5).await;
        assert_eq!(
            got,
            vec![
                (Line::TooLong, Vec::new()),
                (Line::Message, b"ok".to_vec()),
                (Line::TooLong, Vec::new()),
            ]
        );
        assert_eq!(
            all(b"12345\n", 5).await,
            vec![(Line::Message, b"12345".to_vec())]
        );
    }
}
