//! Newline-delimited messages read with a size bound, so a client cannot make the gateway
//! hold an endless line in memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A whole message (without its `\n`) in the buffer.
    Message,
    /// A message longer than the bound: it was read and thrown away.
    TooLong,
    /// The input ended.
    End,
}

/// Reads the next line into `buf` (cleared first), reading past and dropping a line longer
/// than `max` bytes. A last line without `\n` counts as a line.
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
                (false, false) => Line::Message,
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
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Message
            });
        }
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
