//! Telling whether a file is still the one we read: device and inode, size and
//! times from `stat`, and a marker of content hashes (the first bytes, and the bytes
//! just before the committed offset) that catches a file truncated and rewritten or
//! replaced by another of the same size.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// How many bytes each marker hash covers.
pub const MARKER_WINDOW: u64 = 4096;

/// What `stat` says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileIdentity {
    pub fn of(metadata: &Metadata) -> Self {
        FileIdentity {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.len(),
            mtime_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// From a `stat` made relative to a directory (see [`super::discover`]); equal
    /// to [`FileIdentity::of`] the same file's `Metadata`.
    pub fn of_stat(stat: &rustix::fs::Stat) -> Self {
        FileIdentity {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mtime_ns: nanos(stat.st_mtime, stat.st_mtime_nsec),
            ctime_ns: nanos(stat.st_ctime, stat.st_ctime_nsec),
        }
    }

    /// Same file, not written since: nothing to read.
    pub fn unchanged_since(&self, before: &FileIdentity) -> bool {
        self == before
    }

    /// Same inode on the same device.
    pub fn same_file(&self, before: &FileIdentity) -> bool {
        self.dev == before.dev && self.ino == before.ino
    }
}

/// A `stat` time as nanoseconds since the epoch, as `Metadata` gives it. The field
/// types differ between architectures.
pub fn nanos(secs: impl Into<i128>, nsec: impl Into<i128>) -> i64 {
    let nanos = secs.into() * 1_000_000_000 + nsec.into();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// Content hashes around a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Length of the head window: `min(MARKER_WINDOW, offset)`.
    pub head_len: u64,
    /// xxh3 of the first `head_len` bytes.
    pub head: u64,
    /// xxh3 of the `min(MARKER_WINDOW, offset)` bytes ending at the offset.
    pub tail: u64,
}

impl Marker {
    /// The marker of `file` at `offset`.
    pub fn read(file: &File, offset: u64) -> io::Result<Marker> {
        let window = MARKER_WINDOW.min(offset);
        let mut buf = vec![0; window as usize];
        file.read_exact_at(&mut buf, 0)?;
        let head = xxhash_rust::xxh3::xxh3_64(&buf);
        file.read_exact_at(&mut buf, offset - window)?;
        let tail = xxhash_rust::xxh3::xxh3_64(&buf);
        Ok(Marker {
            head_len: window,
            head,
            tail,
        })
    }

    /// Whether `file` still holds the same bytes at this marker's offset. A file
    /// now too short to hold them does not.
    pub fn matches(&self, file: &File, offset: u64) -> io::Result<bool> {
        match Marker::read(file, offset) {
            Ok(now) => Ok(now == *self),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn marker_detects_same_size_replacement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":2}\n").expect("write");
        let file = File::open(&path).expect("open");
        let marker = Marker::read(&file, 16).expect("marker");
        assert!(marker.matches(&file, 16).expect("read"));
        let mut append = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        append.write_all(b"{\"c\":3}\n").expect("append");
        assert!(marker.matches(&file, 16).expect("read"), "appends keep it");
        std::fs::write(&path, b"{\"x\":1}\n{\"y\":2}\n{\"c\":3}\n").expect("rewrite");
        assert!(
            !marker.matches(&file, 16).expect("read"),
            "rewrite changes it"
        );
        std::fs::write(&path, b"{}\n").expect("truncate");
        assert!(!marker.matches(&file, 16).expect("read"), "too short");
    }
}
