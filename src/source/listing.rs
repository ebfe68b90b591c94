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
//!
//! A saved listing is looked up in place, not decoded into a map: on an unchanged
//! rerun it is read once and nearly every directory is looked up once, so building
//! a map of owned records cost more than all the lookups.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::ops::Range;
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

    pub fn borrow(&self) -> DirEntriesRef<'_> {
        DirEntriesRef {
            names: &self.names,
            subdirs: self.subdirs,
            transcripts: self.transcripts,
        }
    }
}

/// A directory's entries, borrowed from one read now or from a saved listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntriesRef<'a> {
    names: &'a [u8],
    subdirs: usize,
    transcripts: usize,
}

impl<'a> DirEntriesRef<'a> {
    fn names(self) -> impl Iterator<Item = &'a OsStr> {
        self.names
            .split(|&byte| byte == 0)
            .take(self.subdirs + self.transcripts)
            .map(OsStr::from_bytes)
    }

    pub fn subdirs(self) -> impl Iterator<Item = &'a OsStr> {
        self.names().take(self.subdirs)
    }

    pub fn transcripts(self) -> impl Iterator<Item = &'a OsStr> {
        self.names().skip(self.subdirs)
    }

    /// Subdirectories and transcripts merged in the byte order of the paths under
    /// them, so a walk that descends in this order lists paths already sorted.
    pub fn in_path_order(self) -> impl Iterator<Item = DirEntry<'a>> {
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

    fn owned(self) -> DirEntries {
        DirEntries {
            names: self.names.into(),
            subdirs: self.subdirs,
            transcripts: self.transcripts,
        }
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

/// Settled directories' entries, by path: those recorded by this process, and
/// those of the saved listing it was loaded from.
///
/// Recorded ones are keyed by the path's bytes: `Path` hashes component by
/// component, which on an unchanged rerun cost more than the lookups' other work.
/// A listing is either loaded or built, so a directory is in one of the two.
#[derive(Debug, Default)]
pub struct Listing {
    dirs: FxHashMap<OsString, DirListing>,
    saved: Saved,
}

impl Listing {
    pub fn len(&self) -> usize {
        self.dirs.len() + self.saved.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `dir` as recorded (its key, to refer to it) and its entries, if its stamp
    /// is still `stamp`.
    pub fn unchanged(&self, dir: &Path, stamp: &DirStamp) -> Option<(&OsStr, DirEntriesRef<'_>)> {
        let (key, recorded, entries) = self.get(dir.as_os_str())?;
        (recorded == *stamp).then_some((key, entries))
    }

    fn get(&self, dir: &OsStr) -> Option<(&OsStr, DirStamp, DirEntriesRef<'_>)> {
        if let Some((key, listing)) = self.dirs.get_key_value(dir) {
            return Some((key.as_os_str(), listing.stamp, listing.entries.borrow()));
        }
        self.saved.get(dir.as_bytes())
    }

    pub fn insert(&mut self, dir: &Path, listing: DirListing) {
        self.dirs.insert(dir.as_os_str().to_owned(), listing);
    }

    pub fn extend(&mut self, other: Listing) {
        self.dirs.extend(other.dirs);
    }

    /// Adds `previous`'s records of `dirs`: shared when recorded, copied when
    /// saved.
    pub fn keep(&mut self, previous: &Listing, dirs: &[&OsStr]) {
        self.dirs.reserve(dirs.len());
        for &dir in dirs {
            if let Some(listing) = previous.dirs.get(dir) {
                self.dirs.insert(dir.to_owned(), listing.clone());
            } else if let Some((_, stamp, entries)) = previous.saved.get(dir.as_bytes()) {
                let entries = Arc::new(entries.owned());
                self.dirs
                    .insert(dir.to_owned(), DirListing { stamp, entries });
            }
        }
    }

    /// How many transcripts the recorded directories hold.
    pub fn transcripts(&self) -> usize {
        self.records()
            .map(|(_, _, entries)| entries.transcripts)
            .sum()
    }

    /// Every directory's path, stamp and entries, recorded or saved.
    fn records(&self) -> impl Iterator<Item = (&[u8], DirStamp, DirEntriesRef<'_>)> {
        let recorded = self
            .dirs
            .iter()
            .map(|(path, listing)| (path.as_bytes(), listing.stamp, listing.entries.borrow()));
        recorded.chain(self.saved.iter())
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
        match Saved::index(bytes) {
            Ok(saved) => Listing {
                dirs: FxHashMap::default(),
                saved,
            },
            Err(error) => {
                tracing::debug!(
                    "{}: {error}; directories will be read again",
                    path.display()
                );
                Listing::default()
            }
        }
    }

    /// Replaces the listing in `state_dir`.
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        replace_cache_file(&state_dir.join(LISTING_FILE), &self.encode())
    }

    /// Directories sorted by path, so the same listing encodes to the same bytes
    /// (and a saved one can be searched).
    fn encode(&self) -> Vec<u8> {
        let mut dirs: Vec<(&[u8], DirStamp, DirEntriesRef<'_>)> = self.records().collect();
        dirs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(64 + dirs.len() * 160);
        out.extend_from_slice(MAGIC);
        put_u64(&mut out, dirs.len() as u64);
        for (path, stamp, entries) in dirs {
            put_section(&mut out, path);
            put_u64(&mut out, stamp.dev);
            put_u64(&mut out, stamp.ino);
            put_i64(&mut out, stamp.mtime_ns);
            put_i64(&mut out, stamp.ctime_ns);
            put_u64(&mut out, entries.subdirs as u64);
            put_u64(&mut out, entries.transcripts as u64);
            put_section(&mut out, entries.names);
        }
        seal(&mut out);
        out
    }
}

/// A saved listing's bytes, with where each directory's record is in them.
#[derive(Debug, Default)]
struct Saved {
    bytes: FileBytes,
    /// Sorted by path, as they were written.
    records: Vec<SavedRecord>,
}

#[derive(Debug)]
struct SavedRecord {
    path: Range<usize>,
    stamp: DirStamp,
    names: Range<usize>,
    subdirs: usize,
    transcripts: usize,
}

impl Saved {
    /// Checks `bytes` whole and finds each record, copying nothing.
    fn index(bytes: FileBytes) -> Result<Saved, CodecError> {
        let body = unseal(&bytes)?;
        let mut input = Decoder::new(body);
        if input.take(MAGIC.len())? != MAGIC {
            return Err(CodecError::Invalid("not a ccotel listing".into()));
        }
        let count = input.count(8 * 7)?;
        let mut records: Vec<SavedRecord> = Vec::with_capacity(count);
        let mut last_path: Option<&[u8]> = None;
        for _ in 0..count {
            let path = input.section()?;
            if last_path.is_some_and(|last| last >= path) {
                return Err(CodecError::Invalid("directories out of order".into()));
            }
            last_path = Some(path);
            let path = input.position() - path.len()..input.position();
            let stamp = DirStamp {
                dev: input.u64()?,
                ino: input.u64()?,
                mtime_ns: input.i64()?,
                ctime_ns: input.i64()?,
            };
            let entries = decode_entries(&mut input)?;
            let names = input.position() - entries.names.len()..input.position();
            records.push(SavedRecord {
                path,
                stamp,
                names,
                subdirs: entries.subdirs,
                transcripts: entries.transcripts,
            });
        }
        input.finish()?;
        Ok(Saved { bytes, records })
    }

    fn get(&self, dir: &[u8]) -> Option<(&OsStr, DirStamp, DirEntriesRef<'_>)> {
        let at = self
            .records
            .binary_search_by(|record| self.slice(&record.path).cmp(dir))
            .ok()?;
        self.records.get(at).map(|record| self.view(record))
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], DirStamp, DirEntriesRef<'_>)> {
        self.records.iter().map(|record| {
            let (path, stamp, entries) = self.view(record);
            (path.as_bytes(), stamp, entries)
        })
    }

    fn view(&self, record: &SavedRecord) -> (&OsStr, DirStamp, DirEntriesRef<'_>) {
        let entries = DirEntriesRef {
            names: self.slice(&record.names),
            subdirs: record.subdirs,
            transcripts: record.transcripts,
        };
        (
            OsStr::from_bytes(self.slice(&record.path)),
            record.stamp,
            entries,
        )
    }

    /// The ranges were found in these bytes, so they are in bounds.
    fn slice(&self, range: &Range<usize>) -> &[u8] {
        self.bytes.get(range.clone()).unwrap_or_default()
    }
}

/// A record's entries, checked: the names are as many as their counts say.
fn decode_entries<'a>(input: &mut Decoder<'a>) -> Result<DirEntriesRef<'a>, CodecError> {
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
    Ok(DirEntriesRef {
        names,
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
            .borrow()
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

    fn listing_of(dirs: &[(&str, i64, &[&str], &[&str])]) -> Listing {
        let names = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let mut listing = Listing::default();
        for &(path, changed_ns, subdirs, transcripts) in dirs {
            let entries = DirEntries::new(names(subdirs), names(transcripts));
            listing.insert(
                Path::new(path),
                DirListing {
                    stamp: stamp(changed_ns),
                    entries: Arc::new(entries),
                },
            );
        }
        listing
    }

    #[test]
    fn round_trips_through_the_state_dir_and_ignores_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Listing::load(dir.path()).is_empty());
        let listing = listing_of(&[
            (
                "/h/.claude/projects/-p",
                5,
                &["s1"],
                &["b.jsonl", "a.jsonl"],
            ),
            ("/h/.claude/projects", 4, &["-p", "-q"], &[]),
            ("/h/.claude/projects/-q", 6, &[], &["c.jsonl"]),
        ]);
        listing.save(dir.path()).expect("save");
        let loaded = Listing::load(dir.path());
        assert_eq!(loaded.len(), 3);
        assert_eq!(loaded.transcripts(), 3);
        assert_eq!(loaded.encode(), listing.encode());
        let project = Path::new("/h/.claude/projects/-p");
        let (key, entries) = loaded
            .unchanged(project, &stamp(5))
            .expect("found in place");
        assert_eq!(key, project.as_os_str());
        assert_eq!(entries.subdirs().collect::<Vec<_>>(), ["s1"]);
        assert_eq!(
            entries.transcripts().collect::<Vec<_>>(),
            ["a.jsonl", "b.jsonl"]
        );
        assert!(
            loaded.unchanged(project, &stamp(7)).is_none(),
            "changed since"
        );
        assert!(loaded
            .unchanged(Path::new("/h/.claude/projects/-o"), &stamp(5))
            .is_none());

        let path = dir.path().join(LISTING_FILE);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 9;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).expect("damage");
        assert!(Listing::load(dir.path()).is_empty());
    }

    /// Lookups in place search the saved records, so records out of order are
    /// damage even when the checksum matches.
    #[test]
    fn a_saved_listing_out_of_order_is_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listing = listing_of(&[("/a", 5, &[], &["x.jsonl"]), ("/b", 5, &[], &[])]);
        let mut bytes = listing.encode();
        bytes.truncate(bytes.len() - 8);
        let a = bytes.windows(2).position(|w| w == b"/a").expect("/a");
        let b = bytes.windows(2).position(|w| w == b"/b").expect("/b");
        bytes[a + 1] = b'b';
        bytes[b + 1] = b'a';
        seal(&mut bytes);
        fs::write(dir.path().join(LISTING_FILE), &bytes).expect("write");
        assert!(Listing::load(dir.path()).is_empty());
    }

    #[test]
    fn kept_records_of_a_saved_listing_are_copied_into_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        listing_of(&[("/a", 5, &["s"], &["x.jsonl"]), ("/b", 5, &[], &[])])
            .save(dir.path())
            .expect("save");
        let loaded = Listing::load(dir.path());
        let mut next = listing_of(&[("/c", 6, &[], &["y.jsonl"])]);
        next.keep(&loaded, &[OsStr::new("/a"), OsStr::new("/gone")]);
        drop(loaded);
        assert_eq!(next.len(), 2);
        let (_, entries) = next.unchanged(Path::new("/a"), &stamp(5)).expect("kept");
        assert_eq!(entries.transcripts().collect::<Vec<_>>(), ["x.jsonl"]);
        assert_eq!(entries.subdirs().collect::<Vec<_>>(), ["s"]);
    }
}
