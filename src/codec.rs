//! Little-endian framing for ccotel's binary state files (the ledger, the
//! manifest, the directory listing, the export journal): fixed-width integers and
//! length-prefixed byte strings, read back with bounds checks, and a checksum
//! trailer, so damaged state is an error and never a panic. State files are
//! mapped rather than read ([`FileBytes`]).

use std::fs::File;
use std::io::{self, Write};
use std::ops::{Deref, Range};
use std::path::Path;

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// A state file's bytes: mapped from the page cache, or owned.
///
/// Mapping matters for the unchanged rerun: reading a 9 MB ledger into fresh heap
/// pages costs about as much as the rest of the state load, mapping it almost
/// nothing.
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// The whole file at `path`.
    pub fn open(path: &Path) -> io::Result<FileBytes> {
        FileBytes::map(path, true)
    }

    /// The file at `path`, for a reader that uses a few parts of it: its pages
    /// are mapped as they are touched, not all up front.
    pub fn open_sparse(path: &Path) -> io::Result<FileBytes> {
        FileBytes::map(path, false)
    }

    fn map(path: &Path, populate: bool) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        let mut options = memmap2::MmapOptions::new();
        if populate {
            options.populate();
        }
        // SAFETY: a mapping is undefined behaviour if the file changes under it.
        // ccotel never writes a state file in place: every save writes a new file
        // and renames it into place, which leaves a mapped inode as it was.
        let mapped = unsafe { options.map(&file)? };
        Ok(FileBytes::Mapped(mapped))
    }
}

/// Replaces the cache file at `path` with `bytes`: written beside it, then
/// renamed into place, never written in place (see [`FileBytes::open`]). No
/// fsync: a cache may be lost, and a lost one is rebuilt.
///
/// The old file is removed first, because renaming over a file makes ext4
/// flush the new one (`auto_da_alloc`, for applications that skip the fsync):
/// 0.3 ms for a report cache, an eighth of a run that appended a little.
pub fn replace_cache_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_cache_file_with(path, |mut file| file.write_all(bytes))
}

/// [`replace_cache_file`], the new file written by `write`.
pub fn replace_cache_file_with(
    path: &Path,
    write: impl FnOnce(File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    write(File::create(&tmp)?)?;
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    std::fs::rename(&tmp, path)
}

/// Writes through to `W`, hashing what passes, and ends with the same trailer
/// as [`seal`]: a file of large parts is written from where they are, never
/// gathered in one buffer (whose fresh pages would each cost a page fault).
pub struct Sealing<W: Write> {
    inner: W,
    hash: Xxh3,
}

impl<W: Write> Sealing<W> {
    pub fn new(inner: W) -> Sealing<W> {
        Sealing {
            inner,
            hash: Xxh3::new(),
        }
    }

    /// Writes the trailer; returns the writer, to be flushed.
    pub fn finish(mut self) -> io::Result<W> {
        let hash = self.hash.digest();
        self.inner.write_all(&hash.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hash.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Default for FileBytes {
    fn default() -> Self {
        FileBytes::Owned(Vec::new())
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(bytes: Vec<u8>) -> Self {
        FileBytes::Owned(bytes)
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(mapped) => mapped,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.len())
    }
}

/// State bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated")]
    Truncated,
    #[error("checksum mismatch")]
    Checksum,
    #[error("{0}")]
    Invalid(String),
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Overwrites the u64 that [`put_u64`] wrote at `at`: for a count that is known
/// only once what it counts has been written after it.
pub fn patch_u64(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A byte string with its length (u64) in front.
pub fn put_section(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends the xxh3 of everything in `out`, for [`unseal`].
pub fn seal(out: &mut Vec<u8>) {
    let hash = xxh3_64(out);
    put_u64(out, hash);
}

/// The bytes before a [`seal`] trailer, if the trailer matches them.
pub fn unseal(bytes: &[u8]) -> Result<&[u8], CodecError> {
    let split = bytes.len().checked_sub(8).ok_or(CodecError::Truncated)?;
    let (body, trailer) = bytes.split_at(split);
    let expected = u64::from_le_bytes(trailer.try_into().map_err(|_| CodecError::Truncated)?);
    if xxh3_64(body) == expected {
        Ok(body)
    } else {
        Err(CodecError::Checksum)
    }
}

/// Starts a file that checks itself piece by piece; see [`self_checked`].
const SELF_CHECKED_START: &[u8; 8] = b"ccotsc1\n";
/// Ends it, after its digest.
const SELF_CHECKED_END: &[u8; 8] = b"ccotdig1";

/// Starts a self-checking file in `out` (see [`self_checked`]); returns where
/// its body starts.
pub fn put_self_checked_start(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(SELF_CHECKED_START);
    out.len()
}

/// Ends a self-checking file with `digest`, a checksum its format defines over
/// what it holds (its header and the checksums of its blocks, say) and checks
/// as it reads.
pub fn put_self_checked_end(out: &mut Vec<u8>, digest: u64) {
    put_u64(out, digest);
    out.extend_from_slice(SELF_CHECKED_END);
}

/// The digest of a self-checking file and where its body is in `bytes`, or
/// `None` if `bytes` are not one. Such a file is named by its digest rather
/// than by a hash of every byte, so opening it costs only the parts a reader
/// uses.
pub fn self_checked(bytes: &[u8]) -> Option<(u64, Range<usize>)> {
    let start = SELF_CHECKED_START.len();
    let end = bytes.len().checked_sub(16).filter(|&end| end >= start)?;
    let (digest, marker) = bytes[end..].split_at(8);
    if !bytes.starts_with(SELF_CHECKED_START) || marker != SELF_CHECKED_END {
        return None;
    }
    Some((u64::from_le_bytes(digest.try_into().ok()?), start..end))
}

/// Bytes in front of a journal record's payload: its length and checksum.
pub const RECORD_HEADER_BYTES: usize = 4 + 8;

/// One journal record, as both journals (the ledger's and the export's) append
/// them: `[u32 length][u64 xxh3][payload]`. Returns it with the checksum.
pub fn journal_record(payload: &[u8]) -> Result<(Vec<u8>, u64), CodecError> {
    let length = u32::try_from(payload.len())
        .map_err(|_| CodecError::Invalid("a journal record of 4 GiB or more".into()))?;
    let sum = xxh3_64(payload);
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    put_u32(&mut record, length);
    put_u64(&mut record, sum);
    record.extend_from_slice(payload);
    Ok((record, sum))
}

/// The payload range and checksum of the [`journal_record`] at `at` in `bytes`,
/// if it is whole and matches its checksum (a torn append is not).
pub fn journal_record_at(bytes: &[u8], at: usize) -> Option<(Range<usize>, u64)> {
    let mut input = Decoder::new(bytes.get(at..)?);
    let len = input.u32().ok()? as usize;
    let sum = input.u64().ok()?;
    let payload = input.take(len).ok()?;
    let start = at + RECORD_HEADER_BYTES;
    (xxh3_64(payload) == sum).then_some((start..start + len, sum))
}

/// Reads what the `put_*` functions wrote, front to back.
pub struct Decoder<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder {
            bytes,
            len: bytes.len(),
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes read so far: where the next item starts in the bytes decoded, so a
    /// reader can keep where a part lies rather than copy it.
    pub fn position(&self) -> usize {
        self.len - self.bytes.len()
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        let (head, rest) = self
            .bytes
            .split_at_checked(len)
            .ok_or(CodecError::Truncated)?;
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.take(N)?.try_into().map_err(|_| CodecError::Truncated)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A count of items that each take at least `min_item_bytes`: checked against
    /// what is left, so a damaged count cannot make a reader allocate wildly.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize, CodecError> {
        let count = usize::try_from(self.u64()?).map_err(|_| CodecError::Truncated)?;
        if count.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return Err(CodecError::Truncated);
        }
        Ok(count)
    }

    /// A byte string written by [`put_section`].
    pub fn section(&mut self) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(self.u64()?).map_err(|_| CodecError::Truncated)?;
        self.take(len)
    }

    /// A UTF-8 string written by [`put_section`].
    pub fn text(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.section()?).map_err(|error| CodecError::Invalid(error.to_string()))
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Invalid("trailing bytes".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_cache_file_leaves_its_mapping_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache.bin");
        replace_cache_file(&path, b"first").expect("create");
        let mapped = FileBytes::open(&path).expect("map");
        replace_cache_file(&path, b"second, longer").expect("replace");
        assert_eq!(&*mapped, b"first");
        assert_eq!(std::fs::read(&path).expect("read"), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|entry| entry.file_name())
            .collect();
        assert_eq!(names, ["cache.bin"], "no temporary file left");
    }

    #[test]
    fn a_file_sealed_piece_by_piece_is_sealed_as_if_whole() {
        let mut whole = b"ccotel".to_vec();
        put_section(&mut whole, &[7; 5000]);
        let mut sealing = Sealing::new(Vec::new());
        for piece in whole.chunks(777) {
            sealing.write_all(piece).expect("write");
        }
        let streamed = sealing.finish().expect("finish");
        seal(&mut whole);
        assert_eq!(streamed, whole);
        assert_eq!(unseal(&streamed).map(<[u8]>::len), Ok(whole.len() - 8));
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut out = Vec::new();
        put_u32(&mut out, 7);
        put_i64(&mut out, -3);
        put_section(&mut out, b"abc");
        seal(&mut out);
        let body = unseal(&out).expect("sealed");
        let mut input = Decoder::new(body);
        assert_eq!(input.u32(), Ok(7));
        assert_eq!(input.i64(), Ok(-3));
        assert_eq!(input.text(), Ok("abc"));
        assert_eq!(input.finish(), Ok(()));

        let mut flipped = out.clone();
        flipped[5] ^= 1;
        assert_eq!(unseal(&flipped), Err(CodecError::Checksum));
        assert_eq!(unseal(&out[..3]), Err(CodecError::Truncated));
        let mut huge = Vec::new();
        put_u64(&mut huge, u64::MAX);
        assert_eq!(Decoder::new(&huge).section(), Err(CodecError::Truncated));
        assert_eq!(Decoder::new(&huge).count(1), Err(CodecError::Truncated));
    }
}
