//! The state journal: changes appended to a saved state (manifest and session-state
//! blob), so that a run which changes a little writes a little instead of both.
//!
//! `session-state.<hash>.journal` extends `session-state.<hash>.bin` and the
//! manifest that names it: a header, then records framed as
//! `[u32 length][u64 xxh3][payload]`, as the export journal frames its own
//! ([`crate::codec::journal_record`]). Each record is one run's changes, written
//! with one `fdatasync`, and is its own commit point: a record that is whole and
//! matches its checksum is committed. Every prefix of the journal is a consistent
//! state (a record holds a run's file offsets and its ledger changes together), so
//! a torn or damaged record and whatever follows it are dropped, read again from
//! the transcripts, and cut off by the next append.
//!
//! The journal is written ahead with zeros ([`PREWRITTEN`] bytes past its last
//! record), and a record goes over them, followed by a zero header that ends the
//! journal. Syncing a write that does not change the file's size waits on the
//! data alone; one that grows it waits on the file system's own journal too: on
//! this machine's ext4, 0.6–0.9 ms against 1.0–1.2 ms for a 45 KB record
//! (`benches/fsync_floor.py`), most of a small rerun's commit.
//!
//! Journals in the earlier format (`ccotel-journal2`) held ledger changes only, and
//! the manifest named how many of their bytes were committed; they are still read
//! ([`read_committed`]), never appended to.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use crate::codec::{journal_record, journal_record_at, RECORD_HEADER_BYTES};

const MAGIC: &[u8; 16] = b"ccotel-journal3\n";
/// The format whose committed length the manifest names: read, never written.
const MAGIC_COMMITTED_BY_MANIFEST: &[u8; 16] = b"ccotel-journal2\n";

/// How many zeros an append that grows the journal writes past its record, for
/// the appends after it to write over: about five 1 MB reruns' records, and what
/// a run reads beyond the records at the most.
pub const PREWRITTEN: usize = 256 << 10;

/// A record header of zeros: where the journal's records end. No record has it,
/// since no payload, not even an empty one, has a checksum of zero.
const END: [u8; RECORD_HEADER_BYTES] = [0; RECORD_HEADER_BYTES];

/// How much of a journal is committed: its length in bytes (0 for no journal)
/// and a digest chained over its records' checksums, which names their content.
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

    /// The same bytes with other payload ranges (parts of the records').
    pub fn with_ranges(self, ranges: Vec<Range<usize>>) -> Records {
        Records {
            bytes: self.bytes,
            ranges,
        }
    }

    /// The payloads with where each is in the journal's bytes, in the order
    /// they were appended.
    pub fn ranged_payloads(&self) -> impl Iterator<Item = (Range<usize>, &[u8])> {
        self.ranges
            .iter()
            .map(|range| (range.clone(), &self.bytes[range.clone()]))
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

/// A journal as read: its whole records, and how much of it they are.
#[derive(Debug)]
pub struct Read {
    pub records: Records,
    /// What each prefix of the records commits: `commits[i]` ends with record `i`.
    pub commits: Vec<JournalRef>,
    /// Why bytes after the whole records were dropped, if there were any.
    pub dropped: Option<String>,
}

impl Read {
    /// Keeps the first `count` records only.
    pub fn truncate(&mut self, count: usize) {
        self.records.ranges.truncate(count);
        self.commits.truncate(count);
    }

    /// What the records kept commit.
    pub fn committed(&self) -> JournalRef {
        self.commits.last().copied().unwrap_or_default()
    }
}

/// Reads the journal at `path` up to its last whole record. A missing journal
/// has none; a journal of another format, or bytes after the last whole record
/// that do not begin with the end mark (a run that crashed mid-append, or
/// damage), are dropped and said why.
///
/// A journal that cannot be read is an error, not an empty one: its records may
/// hold what no transcript holds any more, and the next append would cut them.
pub fn read(path: &Path) -> io::Result<Read> {
    let mut read = Read {
        records: Records::none(),
        commits: Vec::new(),
        dropped: None,
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(read),
        Err(error) => return Err(error),
    };
    if !bytes.starts_with(MAGIC) {
        read.dropped = Some("it is not a ccotel journal".into());
        return Ok(read);
    }
    let mut digest = 0;
    let mut at = MAGIC.len();
    while let Some((payload, sum)) = journal_record_at(&bytes, at) {
        digest = chain(digest, sum);
        at = payload.end;
        read.records.ranges.push(payload);
        read.commits.push(JournalRef {
            len: at as u64,
            digest,
        });
    }
    let rest = &bytes[at..];
    // What follows the end mark is the zeros written ahead.
    if !rest.is_empty() && !rest.starts_with(&END) {
        let after = rest.len();
        read.dropped = Some(format!(
            "its last {after} bytes are not a whole record (a run that stopped while writing, or damage)"
        ));
    }
    read.records.bytes = bytes;
    Ok(read)
}

/// Reads the first `committed.len` bytes of a journal whose manifest names its
/// committed length (the earlier format); an error (what is wrong with the
/// file, to follow its name) if they are not what the manifest says.
pub fn read_committed(path: &Path, committed: JournalRef) -> Result<Records, String> {
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
    if !committed_bytes.starts_with(MAGIC_COMMITTED_BY_MANIFEST) {
        return Err("is not a ccotel journal".into());
    }
    let mut ranges = Vec::new();
    let mut digest = 0;
    let mut at = MAGIC_COMMITTED_BY_MANIFEST.len();
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

/// A record framed to follow a journal's committed part, and what the journal
/// commits once it is appended: known before the write, so that what depends on
/// the next state's name need not wait for the disk.
#[derive(Debug)]
pub struct Prepared {
    record: Vec<u8>,
    after: JournalRef,
    commits: JournalRef,
}

/// Frames `payload` as the record to follow the `committed` part of a journal.
pub fn prepare(committed: JournalRef, payload: &[u8]) -> io::Result<Prepared> {
    let (record, sum) = journal_record(payload).map_err(io::Error::other)?;
    let start = match committed.len {
        0 => MAGIC.len() as u64,
        len => len,
    };
    let commits = JournalRef {
        len: start + record.len() as u64,
        digest: chain(committed.digest, sum),
    };
    Ok(Prepared {
        record,
        after: committed,
        commits,
    })
}

impl Prepared {
    /// What the journal commits once this record is appended.
    pub fn commits(&self) -> JournalRef {
        self.commits
    }

    /// Appends the record after the committed part of the journal at `path`
    /// (creating it when nothing is committed), durably: once this returns, the
    /// record is committed. Returns what the journal now commits.
    pub fn append_to(&self, path: &Path) -> io::Result<JournalRef> {
        let (mut file, room) = open_at_end(path, self.after)?;
        // Over zeros written ahead when they hold the record and its end
        // mark; otherwise growing the file by the record and zeros ahead.
        let ahead = match room >= self.record.len() + END.len() {
            true => END.len(),
            false => PREWRITTEN,
        };
        let mut write = Vec::with_capacity(self.record.len() + ahead);
        write.extend_from_slice(&self.record);
        write.resize(self.record.len() + ahead, 0);
        file.write_all(&write)?;
        file.sync_data()?;
        if self.after.len == 0 {
            // A new journal: its directory entry must be durable too.
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(self.commits)
    }
}

/// The journal open for writing after its committed bytes, and how many zeros
/// written ahead follow them, to write over.
///
/// Anything else past the committed bytes (a torn append, or records a load did
/// not take) is cut off first, as before zeros were written ahead: were the
/// next record to land on disk without its end mark, whole records left after
/// it would otherwise read as following it.
fn open_at_end(path: &Path, committed: JournalRef) -> io::Result<(File, usize)> {
    if committed.len == 0 {
        let mut file = File::create(path)?;
        file.write_all(MAGIC)?;
        return Ok((file, 0));
    }
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut room = usize::try_from(len.saturating_sub(committed.len)).unwrap_or(usize::MAX);
    if room > 0 {
        let mut next = [0xff; END.len()];
        let read = file.read_at(&mut next, committed.len)?;
        if next[..read] != END[..read] {
            file.set_len(committed.len)?;
            room = 0;
        }
    }
    file.seek(SeekFrom::Start(committed.len))?;
    Ok((file, room))
}

fn chain(digest: u64, sum: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&digest.to_le_bytes());
    bytes[8..].copy_from_slice(&sum.to_le_bytes());
    xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    fn append(path: &Path, committed: JournalRef, payload: &[u8]) -> io::Result<JournalRef> {
        prepare(committed, payload)?.append_to(path)
    }

    fn payloads(read: &Read) -> Vec<&[u8]> {
        read.records.payloads().collect()
    }

    /// Why the read dropped bytes, which it must have.
    fn dropped_because(read: &Read) -> &str {
        read.dropped.as_deref().expect("said why")
    }

    #[test]
    fn appended_records_are_read_back_and_a_torn_tail_is_dropped_then_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session-state.x.journal");
        assert!(
            payloads(&read(&path).expect("read")).is_empty(),
            "no journal, no records"
        );
        let first = append(&path, JournalRef::default(), b"one").expect("append");
        let second = append(&path, first, b"two").expect("append");
        let read_back = read(&path).expect("read");
        assert_eq!(payloads(&read_back), [&b"one"[..], b"two"]);
        assert_eq!(read_back.commits, [first, second]);
        assert_eq!(read_back.committed(), second);
        assert!(read_back.dropped.is_none());

        // The file grew once, by the first record and zeros written ahead; the
        // second went over them.
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(len, first.len + PREWRITTEN as u64);

        // A run that stopped while appending a third record, over the zeros.
        let mut torn_bytes = vec![200, 0, 0, 0];
        torn_bytes.extend(1..=36);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&torn_bytes, second.len)
            .expect("torn write");
        drop(file);
        let torn = read(&path).expect("read");
        assert_eq!(payloads(&torn), [&b"one"[..], b"two"]);
        assert_eq!(torn.committed(), second);
        let dropped = len - second.len;
        assert!(dropped_because(&torn).contains(&format!("last {dropped} bytes")));
        let third = append(&path, torn.committed(), b"3").expect("append");
        let read_back = read(&path).expect("read");
        assert_eq!(payloads(&read_back), [&b"one"[..], b"two", b"3"]);
        assert!(read_back.dropped.is_none(), "the torn bytes were cut off");
        assert_eq!(read_back.committed(), third);
        assert_ne!(third.digest, second.digest);
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(len, third.len + PREWRITTEN as u64, "and zeros written anew");
    }

    #[test]
    fn an_append_with_no_room_left_grows_the_journal_by_zeros_written_ahead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.journal");
        let first = append(&path, JournalRef::default(), b"small").expect("append");
        let big = vec![7u8; PREWRITTEN];
        let second = append(&path, first, &big).expect("append");
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(len, second.len + PREWRITTEN as u64);
        let read_back = read(&path).expect("read");
        assert_eq!(payloads(&read_back), [&b"small"[..], &big[..]]);
        assert!(read_back.dropped.is_none());
    }

    /// Records a load did not take (one it could not decode, and those after
    /// it) are cut off by the next append, not left past its end mark.
    #[test]
    fn records_a_load_did_not_take_are_cut_off_by_the_next_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.journal");
        let first = append(&path, JournalRef::default(), b"A").expect("append");
        let second = append(&path, first, b"a longer B").expect("append");
        // Longer than the zeros an append writes ahead, so that only a cut
        // leaves nothing of it.
        let long_c = vec![7u8; 2 * PREWRITTEN];
        append(&path, second, &long_c).expect("append");
        let mut read_back = read(&path).expect("read");
        read_back.truncate(1);
        let fourth = append(&path, read_back.committed(), b"D").expect("append");
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(len, fourth.len + PREWRITTEN as u64, "cut, then grown anew");
        let raw = std::fs::read(&path).expect("read");
        assert!(
            raw[fourth.len as usize..].iter().all(|&byte| byte == 0),
            "nothing of B or C is left past D, had its end mark not reached the disk"
        );
        let read_back = read(&path).expect("read");
        assert_eq!(payloads(&read_back), [&b"A"[..], b"D"]);
        assert!(read_back.dropped.is_none());
    }

    /// A journal written before zeros were written ahead ends at its last
    /// record; a torn tail shorter than a header is dropped and cut off.
    #[test]
    fn a_journal_without_zeros_ahead_and_a_tail_shorter_than_a_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.journal");
        let mut bytes = MAGIC.to_vec();
        let (record, sum) = journal_record(b"old").expect("record");
        bytes.extend_from_slice(&record);
        std::fs::write(&path, &bytes).expect("write");
        let old = read(&path).expect("read");
        assert_eq!(payloads(&old), [&b"old"[..]]);
        assert!(old.dropped.is_none());
        assert_eq!(old.committed().digest, chain(0, sum));
        bytes.extend_from_slice(&[5, 0, 0]);
        std::fs::write(&path, &bytes).expect("write");
        let torn = read(&path).expect("read");
        assert!(dropped_because(&torn).contains("last 3 bytes"));
        let next = append(&path, torn.committed(), b"new").expect("append");
        let read_back = read(&path).expect("read");
        assert_eq!(payloads(&read_back), [&b"old"[..], b"new"]);
        assert!(read_back.dropped.is_none());
        assert_eq!(read_back.committed(), next);
    }

    #[test]
    fn no_record_begins_as_the_end_mark_does() {
        let (empty, _) = journal_record(b"").expect("record");
        assert_ne!(empty[..END.len()], END);
    }

    #[test]
    fn a_damaged_record_and_those_after_it_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.journal");
        let first = append(&path, JournalRef::default(), b"payload").expect("append");
        append(&path, first, b"later").expect("append");
        let mut bytes = std::fs::read(&path).expect("read");
        // The first record's last payload byte.
        bytes[first.len as usize - 1] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let damaged = read(&path).expect("read");
        assert!(payloads(&damaged).is_empty());
        assert_eq!(damaged.committed(), JournalRef::default());
        assert!(damaged.dropped.is_some());

        std::fs::write(&path, b"not a journal at all").expect("write");
        let other = read(&path).expect("read");
        assert!(payloads(&other).is_empty());
        assert!(dropped_because(&other).contains("not a ccotel journal"));
        let restarted = append(&path, other.committed(), b"new").expect("append");
        assert_eq!(payloads(&read(&path).expect("read")), [&b"new"[..]]);
        assert_eq!(read(&path).expect("read").committed(), restarted);
    }

    /// A journal in the earlier format: its manifest names how much is committed.
    #[test]
    fn a_journal_committed_by_its_manifest_is_read_to_that_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.journal");
        let mut bytes = MAGIC_COMMITTED_BY_MANIFEST.to_vec();
        let mut committed = JournalRef::default();
        for payload in [&b"one"[..], b"two"] {
            let (record, sum) = journal_record(payload).expect("record");
            bytes.extend_from_slice(&record);
            committed = JournalRef {
                len: bytes.len() as u64,
                digest: chain(committed.digest, sum),
            };
        }
        let (uncommitted, _) = journal_record(b"three").expect("record");
        bytes.extend_from_slice(&uncommitted);
        std::fs::write(&path, &bytes).expect("write");
        let records = read_committed(&path, committed).expect("read");
        let payloads: Vec<&[u8]> = records.payloads().collect();
        assert_eq!(payloads, [&b"one"[..], b"two"]);
        let wrong_digest = JournalRef {
            digest: committed.digest ^ 1,
            ..committed
        };
        assert!(read_committed(&path, wrong_digest).is_err());
        let mut flipped = bytes.clone();
        flipped[committed.len as usize - 1] ^= 1;
        std::fs::write(&path, &flipped).expect("write");
        assert!(read_committed(&path, committed).is_err(), "a flipped byte");
        std::fs::remove_file(&path).expect("remove");
        assert!(
            read_committed(&path, committed).is_err(),
            "a missing journal"
        );
    }
}
