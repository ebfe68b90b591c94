//! The session-state journal: changes appended to a saved session-state blob, so
//! that a run which adds a little writes a little instead of the whole blob.
//!
//! `session-state.<hash>.journal` extends `session-state.<hash>.bin`: a header,
//! then records framed as `[u32 length][u64 xxh3][payload]`, as the export
//! journal frames its own ([`crate::codec::journal_record`]). The manifest names
//! how many of its bytes are committed and a digest chained over their records'
//! checksums; bytes past that length (a run that crashed before its manifest was
//! written) are ignored and cut off by the next append. Whoever reads the blob
//! applies the payloads to it in order.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use crate::codec::{journal_record, journal_record_at};

const MAGIC: &[u8; 16] = b"ccotel-journal2\n";

/// How much of a journal a manifest commits to: its length in bytes (0 for no
/// journal) and a digest of its records, which names their content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalRef {
    pub len: u64,
    pub digest: u64,
}

impl JournalRef {
    /// Record bytes, without the header.
    pub fn record_bytes(&self) -> u64 {
        self.len.saturating_sub(MAGIC.len() as u64)
    }
}

/// The journal of the blob at `blob_path`.
pub fn journal_path(blob_path: &Path) -> PathBuf {
    blob_path.with_extension("journal")
}

/// The committed records of a journal: its bytes and each payload's range.
#[derive(Debug)]
pub struct Records {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Records {
    pub fn none() -> Records {
        Records {
            bytes: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// The payloads, in the order they were appended.
    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges.iter().map(|range| &self.bytes[range.clone()])
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Reads the first `committed.len` bytes of the journal at `path`; an error
/// (what is wrong with the file, to follow its name) if they are not what the
/// manifest says.
pub fn read(path: &Path, committed: JournalRef) -> Result<Records, String> {
    if committed.len == 0 {
        return Ok(Records::none());
    }
    // Read, not mapped: unlike the other state files, a journal is written in
    // place (appended to, and cut back after a crash).
    let bytes = std::fs::read(path).map_err(|error| format!("cannot be read: {error}"))?;
    let end = usize::try_from(committed.len).map_err(|_| "is too long".to_owned())?;
    let committed_bytes = bytes
        .get(..end)
        .ok_or_else(|| format!("is shorter than the {end} bytes the manifest commits"))?;
    if !committed_bytes.starts_with(MAGIC) {
        return Err("is not a ccotel journal".into());
    }
    let mut ranges = Vec::new();
    let mut digest = 0;
    let mut at = MAGIC.len();
    while at < end {
        let (payload, sum) = journal_record_at(committed_bytes, at)
            .ok_or_else(|| format!("has a damaged record at byte {at}"))?;
        digest = chain(digest, sum);
        ranges.push(payload.clone());
        at = payload.end;
    }
    if digest != committed.digest {
        return Err("does not hold the records the manifest commits".into());
    }
    Ok(Records { bytes, ranges })
}

/// Appends one record after the committed part of the journal at `path`
/// (creating it when nothing is committed), durably; returns what to commit.
pub fn append(path: &Path, committed: JournalRef, payload: &[u8]) -> io::Result<JournalRef> {
    let (record, sum) = journal_record(payload).map_err(io::Error::other)?;
    let mut file = open_at_end(path, committed)?;
    file.write_all(&record)?;
    file.sync_data()?;
    Ok(JournalRef {
        len: file.stream_position()?,
        digest: chain(committed.digest, sum),
    })
}

/// The journal open for writing after its committed bytes, anything after them
/// (an uncommitted append) cut off.
fn open_at_end(path: &Path, committed: JournalRef) -> io::Result<File> {
    if committed.len == 0 {
        let mut file = File::create(path)?;
        file.write_all(MAGIC)?;
        return Ok(file);
    }
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.set_len(committed.len)?;
    file.seek(SeekFrom::Start(committed.len))?;
    Ok(file)
}

fn chain(digest: u64, sum: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&digest.to_le_bytes());
    bytes[8..].copy_from_slice(&sum.to_le_bytes());
    xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_records_are_read_back_and_an_uncommitted_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session-state.x.journal");
        let first = append(&path, JournalRef::default(), b"one").expect("append");
        let second = append(&path, first, b"two").expect("append");
        let read_back = read(&path, second).expect("read");
        let payloads: Vec<&[u8]> = read_back.payloads().collect();
        assert_eq!(payloads, [&b"one"[..], b"two"]);
        // The manifest committed only `first`: `two` is not read, and the next
        // append replaces it.
        let read_back = read(&path, first).expect("read");
        let payloads: Vec<&[u8]> = read_back.payloads().collect();
        assert_eq!(payloads, [&b"one"[..]]);
        let other = append(&path, first, b"three").expect("append");
        assert_ne!(other.digest, second.digest);
        let read_back = read(&path, other).expect("read");
        let payloads: Vec<&[u8]> = read_back.payloads().collect();
        assert_eq!(payloads, [&b"one"[..], b"three"]);
        assert!(read(&path, JournalRef::default()).expect("none").is_empty());
    }

    #[test]
    fn damage_in_the_committed_part_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.journal");
        let committed = append(&path, JournalRef::default(), b"payload").expect("append");
        let good = std::fs::read(&path).expect("read");
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).expect("write");
        assert!(read(&path, committed).is_err(), "a flipped byte");
        std::fs::write(&path, &good[..good.len() - 1]).expect("write");
        assert!(read(&path, committed).is_err(), "a cut file");
        std::fs::write(&path, &good).expect("write");
        let wrong_digest = JournalRef {
            digest: committed.digest ^ 1,
            ..committed
        };
        assert!(read(&path, wrong_digest).is_err(), "another digest");
        std::fs::remove_file(&path).expect("remove");
        assert!(read(&path, committed).is_err(), "a missing journal");
    }
}
