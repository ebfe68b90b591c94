//! What each directory under `projects/` held when it was last read, so a
//! directory unchanged since is not read again.
//!
//! Creating, deleting or renaming an entry changes a directory's mtime and ctime;
//! appending to a file in it does not (the files are still `stat`ed every time).
//! A directory's entries are reused only when its `stat` is identical to the one
//! taken before they were read, and that one was *settled*: changed at least
//! [`SETTLE`] before the listing began. Timestamps come from a coarse clock, so a
//! directory changed again in the same tick as a recent change could keep the same
//! times; by requiring the recorded change to be old, any later change is
//! guaranteed a newer timestamp (the "racy git" rule).
//!
//! The listing is a cache, not state: it lives beside the manifest in
//! `listing.bin`, and a missing, damaged or stale one only means directories are
//! read again. That is why it is replaced without an fsync.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;

use super::identity::nanos;
use crate::codec::{
    put_i64, put_section, put_u64, replace_cache_file, seal, unseal, CodecError, Decoder, FileBytes,
};

const LISTING_FILE: &str = "listing.bin";
const MAGIC: &[u8; 16] = b"ccotel-listing2\n";

/// How long before a listing a directory's last change must be for its entries to
/// be trusted next time.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What `stat` says about a directory: any entry created, removed or renamed in it
/// changes this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStamp {
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl DirStamp {
    pub fn of(stat: &rustix::fs::Stat) -> DirStamp {
        DirStamp {
            dev: stat.st_dev,
            ino: stat.st_ino,
            mtime_ns: nanos(stat.st_mtime, stat.st_mtime_nsec),
            ctime_ns: nanos(stat.st_ctime, stat.st_ctime_nsec),
        }
    }

    /// Last changed at least [`SETTLE`] before `listed_at`.
    pub fn settled(&self, listed_at: SystemTime) -> bool {
        let Ok(since_epoch) = listed_at.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let horizon = since_epoch.saturating_sub(SETTLE).as_nanos();
        let changed = self.mtime_ns.max(self.ctime_ns);
        u128::try_from(changed).is_ok_and(|changed| changed < horizon)
    }
}

/// The entries of one directory that matter: subdirectories to descend into, and
/// `*.jsonl` names that are not directories (regular files, or symlinks to them),
/// each sorted as their paths sort (a subdirectory `a` as `a/`).
///
/// The names share one buffer, each ended by a NUL (which no file name holds):
/// loading a listing of 10,000 transcripts then makes one allocation per
/// directory rather than one per name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirEntries {
    /// The subdirectories', then the transcripts' names.
    names: Box<[u8]>,
    subdirs: usize,
    transcripts: usize,
}

impl DirEntries {
    pub fn new(mut subdirs: Vec<OsString>, mut transcripts: Vec<OsString>) -> DirEntries {
        subdirs.sort_unstable_by(|a, b| cmp_dirs(a.as_bytes(), b.as_bytes()));
        transcripts.sort_unstable();
        let mut names = Vec::new();
        for name in subdirs.iter().chain(&transcripts) {
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        DirEntries {
            names: names.into(),
            subdirs: subdirs.len(),
            transcripts: transcripts.len(),
        }
    }

    /// Reads `dir`. Directory symlinks are not followed: they can form cycles.
    pub fn read(dir: &Path) -> io::Result<DirEntries> {
        let mut subdirs = Vec::new();
        let mut transcripts = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                subdirs.push(name);
            } else if name.as_bytes().ends_with(b".jsonl") {
                transcripts.push(name);
            }
        }
        Ok(DirEntries::new(subdirs, transcripts))
    }

    fn names(&self) -> impl Iterator<Item = &OsStr> {
        self.names
            .split(|&byte| byte == 0)
            .take(self.subdirs + self.transcripts)
            .map(OsStr::from_bytes)
    }

    pub fn subdirs(&self) -> impl Iterator<Item = &OsStr> {
        self.names().take(self.subdirs)
    }

    pub fn transcripts(&self) -> impl Iterator<Item = &OsStr> {
        self.names().skip(self.subdirs)
    }

    /// Subdirectories and transcripts merged in the byte order of the paths under
    /// them, so a walk that descends in this order lists paths already sorted.
    pub fn in_path_order(&self) -> impl Iterator<Item = DirEntry<'_>> {
        let mut subdirs = self.subdirs().peekable();
        let mut transcripts = self.transcripts().peekable();
        std::iter::from_fn(move || match (subdirs.peek(), transcripts.peek()) {
            (Some(dir), Some(file))
                if cmp_name_with_dir(file.as_bytes(), dir.as_bytes()).is_lt() =>
            {
                transcripts.next().map(DirEntry::Transcript)
            }
            (Some(_), _) => subdirs.next().map(DirEntry::Subdir),
            (None, _) => transcripts.next().map(DirEntry::Transcript),
        })
    }
}

/// One of a directory's entries that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirEntry<'a> {
    Subdir(&'a OsStr),
    Transcript(&'a OsStr),
}

/// Orders two directories as the paths under them sort: `a/` against `b/`.
fn cmp_dirs(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let common = a.len().min(b.len());
    let next = |name: &[u8]| name.get(common).copied().unwrap_or(b'/');
    a[..common]
        .cmp(&b[..common])
        .then_with(|| next(a).cmp(&next(b)))
        .then_with(|| a.len().cmp(&b.len()))
}

/// Orders `name` against `dir` followed by a `/`, as the paths under them sort.
/// Names never hold a `/`.
fn cmp_name_with_dir(name: &[u8], dir: &[u8]) -> std::cmp::Ordering {
    let common = name.len().min(dir.len());
    match name[..common].cmp(&dir[..common]) {
        std::cmp::Ordering::Equal if name.len() <= dir.len() => std::cmp::Ordering::Less,
        std::cmp::Ordering::Equal => name[dir.len()].cmp(&b'/'),
        unequal => unequal,
    }
}

/// A directory's entries and the stamp taken just before they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirListing {
    pub stamp: DirStamp,
    /// Shared: a listing that reuses them does not copy every name.
    pub entries: Arc<DirEntries>,
}

/// Settled directories' entries, by path.
///
/// Keyed by the path's bytes: `Path` hashes component by component, which on an
/// unchanged rerun cost more than the lookups' other work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    dirs: FxHashMap<OsString, DirListing>,
}

impl Listing {
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// `dir` as recorded (its key, to refer to it) and its entries, if its stamp
    /// is still `stamp`.
    pub fn unchanged(&self, dir: &Path, stamp: &DirStamp) -> Option<(&OsStr, &DirEntries)> {
        self.dirs
            .get_key_value(dir.as_os_str())
            .filter(|(_, listing)| listing.stamp == *stamp)
            .map(|(key, listing)| (key.as_os_str(), &*listing.entries))
    }

    pub fn insert(&mut self, dir: &Path, listing: DirListing) {
        self.dirs.insert(dir.as_os_str().to_owned(), listing);
    }

    pub fn extend(&mut self, other: Listing) {
        self.dirs.extend(other.dirs);
    }

    /// Adds `previous`'s records of `dirs`, sharing their entries.
    pub fn keep(&mut self, previous: &Listing, dirs: &[&OsStr]) {
        self.dirs.reserve(dirs.len());
        for &dir in dirs {
            if let Some(listing) = previous.dirs.get(dir) {
                self.dirs.insert(dir.to_owned(), listing.clone());
            }
        }
    }

    /// How many transcripts the recorded directories hold.
    pub fn transcripts(&self) -> usize {
        self.dirs
            .values()
            .map(|listing| listing.entries.transcripts)
            .sum()
    }

    /// The listing saved in `state_dir`, or an empty one when there is none or it
    /// cannot be read (then every directory is read again).
    pub fn load(state_dir: &Path) -> Listing {
        let path = state_dir.join(LISTING_FILE);
        let bytes = match FileBytes::open(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Listing::default(),
            Err(error) => {
                tracing::debug!(
                    "{}: {error}; directories will be read again",
                    path.display()
                );
                return Listing::default();
            }
        };
        Listing::decode(&bytes).unwrap_or_else(|error| {
            tracing::debug!(
                "{}: {error}; directories will be read again",
                path.display()
            );
            Listing::default()
        })
    }

    /// Replaces the listing in `state_dir`.
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        replace_cache_file(&state_dir.join(LISTING_FILE), &self.encode())
    }

    /// Directories sorted by path, so the same listing encodes to the same bytes.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.dirs.len() * 160);
        out.extend_from_slice(MAGIC);
        let mut dirs: Vec<(&OsString, &DirListing)> = self.dirs.iter().collect();
        dirs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        put_u64(&mut out, dirs.len() as u64);
        for (path, listing) in dirs {
            put_section(&mut out, path.as_bytes());
            let stamp = &listing.stamp;
            put_u64(&mut out, stamp.dev);
            put_u64(&mut out, stamp.ino);
            put_i64(&mut out, stamp.mtime_ns);
            put_i64(&mut out, stamp.ctime_ns);
            let entries = &listing.entries;
            put_u64(&mut out, entries.subdirs as u64);
            put_u64(&mut out, entries.transcripts as u64);
            put_section(&mut out, &entries.names);
        }
        seal(&mut out);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Listing, CodecError> {
        let mut input = Decoder::new(unseal(bytes)?);
        if input.take(MAGIC.len())? != MAGIC {
            return Err(CodecError::Invalid("not a ccotel listing".into()));
        }
        let count = input.count(8 * 7)?;
        let mut dirs = FxHashMap::with_capacity_and_hasher(count, Default::default());
        for _ in 0..count {
            let path = OsStr::from_bytes(input.section()?).to_owned();
            let stamp = DirStamp {
                dev: input.u64()?,
                ino: input.u64()?,
                mtime_ns: input.i64()?,
                ctime_ns: input.i64()?,
            };
            let entries = Arc::new(decode_entries(&mut input)?);
            dirs.insert(path, DirListing { stamp, entries });
        }
        input.finish()?;
        Ok(Listing { dirs })
    }
}

fn decode_entries(input: &mut Decoder<'_>) -> Result<DirEntries, CodecError> {
    let subdirs = usize::try_from(input.u64()?).map_err(|_| CodecError::Truncated)?;
    let transcripts = usize::try_from(input.u64()?).map_err(|_| CodecError::Truncated)?;
    let names = input.section()?;
    let ended = names.iter().filter(|&&byte| byte == 0).count();
    if names.last().is_some_and(|&byte| byte != 0)
        || Some(ended) != subdirs.checked_add(transcripts)
    {
        return Err(CodecError::Invalid(
            "directory names do not match their counts".into(),
        ));
    }
    Ok(DirEntries {
        names: names.into(),
        subdirs,
        transcripts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(changed_ns: i64) -> DirStamp {
        DirStamp {
            dev: 1,
            ino: 2,
            mtime_ns: changed_ns,
            ctime_ns: changed_ns,
        }
    }

    #[test]
    fn a_change_within_the_settle_time_is_not_trusted() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(stamp(990_000_000_000).settled(now));
        assert!(!stamp(999_000_000_000).settled(now));
        assert!(!stamp(2_000_000_000_000).settled(now), "from the future");
        assert!(!stamp(-5).settled(now), "before 1970: always read again");
    }

    #[test]
    fn entries_come_in_the_order_of_their_paths() {
        let names = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let entries = DirEntries::new(
            names(&["abc", "a", "abc-d", "b"]),
            names(&["abc.jsonl", "a-z.jsonl", "ab.jsonl", "c.jsonl"]),
        );
        let walked: Vec<String> = entries
            .in_path_order()
            .map(|entry| match entry {
                DirEntry::Subdir(name) => format!("{}/", name.to_string_lossy()),
                DirEntry::Transcript(name) => name.to_string_lossy().into_owned(),
            })
            .collect();
        let mut sorted = walked.clone();
        sorted.sort();
        assert_eq!(walked, sorted);
        assert_eq!(walked.len(), 8);
    }

    #[test]
    fn round_trips_through_the_state_dir_and_ignores_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Listing::load(dir.path()).is_empty());
        let mut listing = Listing::default();
        listing.insert(
            Path::new("/h/.claude/projects/-p"),
            DirListing {
                stamp: stamp(5),
                entries: Arc::new(DirEntries::new(
                    vec!["s1".into()],
                    vec!["b.jsonl".into(), "a.jsonl".into()],
                )),
            },
        );
        listing.save(dir.path()).expect("save");
        let loaded = Listing::load(dir.path());
        assert_eq!(loaded, listing);
        let entries = &loaded.dirs[OsStr::new("/h/.claude/projects/-p")].entries;
        assert_eq!(entries.subdirs().collect::<Vec<_>>(), ["s1"]);
        assert_eq!(
            entries.transcripts().collect::<Vec<_>>(),
            ["a.jsonl", "b.jsonl"]
        );
        let path = dir.path().join(LISTING_FILE);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 9;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).expect("damage");
        assert!(Listing::load(dir.path()).is_empty());
    }
}
