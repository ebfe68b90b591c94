//! Reading complete lines from a byte offset with bounded memory.
//!
//! Only lines ended by `\n` are returned: a partial last line (a writer mid-append,
//! or a crash that left no newline) stays unread until its newline arrives. Lines
//! longer than the inline limit are not buffered; the caller gets their position
//! and decodes them by streaming, through a [`FileRange`] of the same open file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Lines up to this many bytes are decoded in place; longer ones are streamed.
pub const DEFAULT_MAX_INLINE_LINE: usize = 8 << 20;
const CHUNK: usize = 256 << 10;

/// A complete line, or the position of one too long to hold in memory.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes without the `\n`, and the file offset where it starts.
    Complete { bytes: &'a [u8], offset: u64 },
    /// A line longer than the inline limit: where it starts and its length without
    /// the `\n`.
    Oversized { offset: u64, len: u64 },
}

/// Splits a byte stream that starts at a known file offset into lines.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    buffer_offset: u64,
    /// File offset just after the last complete line returned.
    committed: u64,
    /// Start of an oversized line whose bytes are being skipped.
    skipping_from: Option<u64>,
    max_inline: usize,
    bytes_read: u64,
}

enum Found {
    Complete {
        start: usize,
        end: usize,
        offset: u64,
    },
    Oversized {
        offset: u64,
        len: u64,
    },
}

impl<R: Read> LineReader<R> {
    /// Reads from `inner`, whose first byte is at file offset `offset`.
    pub fn new(inner: R, offset: u64, max_inline: usize) -> Self {
        LineReader::with_buffer(inner, offset, max_inline, Vec::new())
    }

    /// [`LineReader::new`], reading into `buf` (its content is overwritten):
    /// the buffer of an earlier reader, taken back with
    /// [`LineReader::into_buffer`]. A fresh buffer is zeroed, and on first use
    /// each of its pages faulted in: for a few new lines, more than reading them.
    pub fn with_buffer(inner: R, offset: u64, max_inline: usize, buf: Vec<u8>) -> Self {
        LineReader {
            inner,
            buf,
            start: 0,
            end: 0,
            buffer_offset: offset,
            committed: offset,
            skipping_from: None,
            max_inline: max_inline.max(1),
            bytes_read: 0,
        }
    }

    /// The next complete line, or `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        let found = loop {
            if let Some(found) = self.take_buffered_line() {
                break found;
            }
            if !self.fill()? {
                return Ok(None);
            }
        };
        Ok(Some(match found {
            Found::Complete { start, end, offset } => Line::Complete {
                bytes: &self.buf[start..end],
                offset,
            },
            Found::Oversized { offset, len } => Line::Oversized { offset, len },
        }))
    }

    /// File offset just after the last complete line: where the next read resumes.
    pub fn committed_offset(&self) -> u64 {
        self.committed
    }

    /// The buffer, for the next reader.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes read from the underlying stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn take_buffered_line(&mut self) -> Option<Found> {
        let newline = memchr::memchr(b'\n', &self.buf[self.start..self.end])?;
        let start = self.start;
        let end = start + newline;
        let offset = self.buffer_offset;
        self.start = end + 1;
        self.buffer_offset += newline as u64 + 1;
        self.committed = self.buffer_offset;
        Some(match self.skipping_from.take() {
            Some(from) => Found::Oversized {
                offset: from,
                len: self.committed - from - 1,
            },
            None => Found::Complete { start, end, offset },
        })
    }

    /// Makes room and reads more; false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        let pending = self.end - self.start;
        if self.skipping_from.is_some() || pending > self.max_inline {
            // Too long to keep: remember where it began and drop what we have.
            self.skipping_from.get_or_insert(self.buffer_offset);
            self.buffer_offset += pending as u64;
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        if self.buf.len() < self.end + CHUNK {
            self.buf.resize(self.end + CHUNK, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        };
        self.end += n;
        self.bytes_read += n as u64;
        Ok(n > 0)
    }
}

/// A range of an open file, read by position: the handle's own cursor (a
/// [`LineReader`]'s) is left where it is, and the bytes are those of the file
/// that was opened, even if its path now names another.
pub struct FileRange<'a> {
    file: &'a File,
    position: u64,
    end: u64,
}

impl<'a> FileRange<'a> {
    /// The `len` bytes of `file` from `offset`.
    pub fn new(file: &'a File, offset: u64, len: u64) -> Self {
        FileRange {
            file,
            position: offset,
            end: offset.saturating_add(len),
        }
    }
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.position).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], offset: u64, max_inline: usize) -> (Vec<String>, u64) {
        let mut reader = LineReader::new(input, offset, max_inline);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().expect("read") {
            out.push(line_text(line));
        }
        (out, reader.committed_offset())
    }

    fn line_text(line: Line<'_>) -> String {
        match line {
            Line::Complete { bytes, offset } => {
                format!("{offset}:{}", String::from_utf8_lossy(bytes))
            }
            Line::Oversized { offset, len } => format!("{offset}:<{len} bytes>"),
        }
    }

    #[test]
    fn a_file_range_reads_its_bytes_and_leaves_the_cursor_alone() {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(b"0123456789").expect("write");
        file.seek(SeekFrom::Start(2)).expect("seek");
        let mut range = String::new();
        FileRange::new(&file, 3, 4)
            .read_to_string(&mut range)
            .expect("read the range");
        assert_eq!(range, "3456");
        let mut past_the_end = String::new();
        FileRange::new(&file, 8, 10)
            .read_to_string(&mut past_the_end)
            .expect("read to the end");
        assert_eq!(past_the_end, "89");
        let mut rest = String::new();
        (&file).read_to_string(&mut rest).expect("read on");
        assert_eq!(rest, "23456789", "the cursor was not moved");
    }

    #[test]
    fn partial_last_line_is_not_consumed() {
        let (out, committed) = lines(b"a\nbb\nccc", 100, 1024);
        assert_eq!(out, ["100:a", "102:bb"]);
        assert_eq!(committed, 105);
    }

    #[test]
    fn empty_lines_and_crlf_are_returned_as_they_are() {
        let (out, committed) = lines(b"\r\n\nx\r\n", 0, 1024);
        assert_eq!(out, ["0:\r", "2:", "3:x\r"]);
        assert_eq!(committed, 6);
    }

    #[test]
    fn long_lines_are_skipped_with_their_position() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * CHUNK + 17));
        input.extend_from_slice(b"\nafter\n");
        let (out, committed) = lines(&input, 0, 1000);
        assert_eq!(
            out,
            [
                "0:ok".to_string(),
                format!("3:<{} bytes>", 3 * CHUNK + 17),
                format!("{}:after", 3 * CHUNK + 21)
            ]
        );
        assert_eq!(committed, input.len() as u64);
    }

    #[test]
    fn a_buffer_passed_on_does_not_leak_into_the_next_reader() {
        let mut first = LineReader::new(&b"first line\nunfinished"[..], 0, 1024);
        while first.next_line().expect("read").is_some() {}
        let buf = first.into_buffer();
        assert!(buf.len() >= CHUNK, "the buffer was used");
        let mut second = LineReader::with_buffer(&b"a\nbb"[..], 40, 1024, buf);
        let mut out = Vec::new();
        while let Some(line) = second.next_line().expect("read") {
            out.push(line_text(line));
        }
        assert_eq!(out, ["40:a"]);
        assert_eq!(second.committed_offset(), 42);
    }

    #[test]
    fn lines_spanning_chunks_are_whole() {
        let long = "y".repeat(CHUNK + 5);
        let input = format!("{long}\nz\n");
        let (out, _) = lines(input.as_bytes(), 0, DEFAULT_MAX_INLINE_LINE);
        assert_eq!(out, [format!("0:{long}"), format!("{}:z", CHUNK + 6)]);
    }
}
