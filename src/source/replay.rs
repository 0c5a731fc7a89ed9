//! NDJSON input for `replay`: files (or `-` for stdin) read line by line.
//!
//! Lines are handed out as raw bytes with their 1-based line number, without the
//! terminator (`\n`, or `\r\n`). Memory stays bounded whatever the input: a line
//! longer than [`MAX_LINE_KEPT`] is kept only up to that length (it is rejected
//! as `too_large` anyway; its dead-letter copy is then truncated, and says so).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

/// Longest part of one line kept in memory.
pub const MAX_LINE_KEPT: usize = 1 << 20;

/// One input line.
pub struct Line<'a> {
    /// 1-based line number within its file.
    pub number: u64,
    /// The bytes, without terminator (at most [`MAX_LINE_KEPT`]).
    pub bytes: &'a [u8],
    /// Whether the line was longer than what `bytes` holds.
    pub truncated: bool,
}

/// Reads lines from one input.
pub struct LineReader {
    inner: Box<dyn BufRead>,
    buf: Vec<u8>,
    number: u64,
    truncated: bool,
}

impl LineReader {
    /// Opens a file, or stdin for `-`.
    pub fn open(path: &str) -> io::Result<LineReader> {
        let inner: Box<dyn BufRead> = if path == "-" {
            Box::new(BufReader::with_capacity(1 << 20, io::stdin()))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, File::open(path)?))
        };
        Ok(Self::new(inner))
    }

    /// Reads from any buffered reader.
    pub fn new(inner: Box<dyn BufRead>) -> LineReader {
        LineReader {
            inner,
            buf: Vec::with_capacity(4096),
            number: 0,
            truncated: false,
        }
    }

    /// The next line, or `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        self.truncated = false;
        let n = (&mut self.inner)
            .take(MAX_LINE_KEPT as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE_KEPT {
            // Over the cap: drop the rest of the line.
            self.truncated = true;
            self.buf.truncate(MAX_LINE_KEPT);
            let mut sink = Vec::new();
            loop {
                sink.clear();
                let m = (&mut self.inner)
                    .take(1 << 20)
                    .read_until(b'\n', &mut sink)?;
                if m == 0 || sink.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line {
            number: self.number,
            bytes: &self.buf,
            truncated: self.truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_terminators() {
        let data = b"a\r\n\nbb\nlast".to_vec();
        let mut r = LineReader::new(Box::new(io::Cursor::new(data)));
        let mut got = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            got.push((l.number, String::from_utf8_lossy(l.bytes).to_string()));
        }
        assert_eq!(
            got,
            vec![
                (1, "a".into()),
                (2, "".into()),
                (3, "bb".into()),
                (4, "last".into())
            ]
        );
    }

    #[test]
    fn huge_line_is_bounded() {
        let mut data = vec![b'x'; MAX_LINE_KEPT * 3];
        data.extend_from_slice(b"\nnext\n");
        let mut r = LineReader::new(Box::new(io::Cursor::new(data)));
        let l = r.next_line().unwrap().unwrap();
        assert!(l.truncated);
        assert_eq!(l.bytes.len(), MAX_LINE_KEPT);
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.number, l.bytes), (2, &b"next"[..]));
    }
}
