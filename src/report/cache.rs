//! Reports already rendered, kept in the state directory (`reports.bin`) under a
//! key made of everything a report is a function of: the saved ledger's checksum,
//! the effective price table, the grouping, dates, the time zone's rules and the
//! format, and the build of ccotel that rendered it (its version and its
//! binary's identity). A rerun over an unchanged corpus prints the stored text
//! instead of aggregating every response again.
//!
//! Beside a report's text goes its tally (the sums by group it was made from,
//! see [`super::aggregate::Tally`]), under a key without the format: a run that
//! adds a little starts from the previous state's tally instead of grouping
//! everything again.
//!
//! Each entry also names the saved state it was rendered from. A state never
//! comes back once the next one is saved, so storing a report of a new state
//! drops every entry of older ones: a run that counted something writes one
//! report, not `KEEP`.
//!
//! Like the directory listing, this is a cache, not state: it is replaced without
//! an fsync, and a missing or damaged file only means the report is rendered.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use xxhash_rust::xxh3::Xxh3;

use crate::codec::{
    put_section, put_u64, replace_cache_file_with, unseal, CodecError, Decoder, FileBytes, Sealing,
};

const CACHE_FILE: &str = "reports.bin";
const MAGIC: &[u8; 16] = b"ccotel-reports2\n";
/// Entries kept of one state: a few views (daily, by model, a JSON one for a
/// status line), each a report, its tally and the index of its rows.
const KEEP: usize = 12;

/// A report as printed, with the models it could not price (warned about on every
/// print, cached or not).
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: ReportText,
    pub unpriced: BTreeMap<String, u64>,
}

/// A report's text: rendered by this run, or found in the mapped cache file. A
/// hit is printed from the mapping: on an unchanged rerun, copying it to the heap
/// cost a tenth of the run, most of it in page faults.
#[derive(Debug)]
pub enum ReportText {
    /// Written by this run: UTF-8, but for rows copied from a cached report
    /// (see [`super::json::splice`]), which are as the cache held them.
    Rendered(Vec<u8>),
    /// UTF-8, checked when the entry was found.
    Cached {
        file: Arc<FileBytes>,
        at: Range<usize>,
    },
}

impl ReportText {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ReportText::Rendered(text) => text,
            ReportText::Cached { file, at } => &file[at.clone()],
        }
    }
}

impl From<String> for ReportText {
    fn from(text: String) -> Self {
        ReportText::Rendered(text.into_bytes())
    }
}

impl From<Vec<u8>> for ReportText {
    fn from(text: Vec<u8>) -> Self {
        ReportText::Rendered(text)
    }
}

impl PartialEq for ReportText {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ReportText {}

/// What a rendered report is keyed by: build it from every input of the report.
pub struct CacheKey(Xxh3);

impl CacheKey {
    /// A key begun with the build that renders: the version, and the running
    /// binary's file identity, since a rebuild (a fix, an install of a newer
    /// commit) keeps the version but may render differently. `None` when the
    /// binary cannot be found, so that a report of another build is never
    /// taken for this one's.
    pub fn for_this_build() -> Option<CacheKey> {
        let mut key = CacheKey(Xxh3::new());
        key.add(env!("CARGO_PKG_VERSION").as_bytes())
            .add(build_identity()?);
        Some(key)
    }

    /// Adds one input, delimited so that ("ab", "c") and ("a", "bc") differ.
    pub fn add(&mut self, part: &[u8]) -> &mut CacheKey {
        self.0.update(&(part.len() as u64).to_le_bytes());
        self.0.update(part);
        self
    }

    pub fn finish(&self) -> u64 {
        self.0.digest()
    }
}

/// The running binary's device, inode, size and modification time, read once.
fn build_identity() -> Option<&'static [u8]> {
    static IDENTITY: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let identity = IDENTITY.get_or_init(|| {
        let metadata = std::env::current_exe().and_then(std::fs::metadata).ok()?;
        let parts = [
            metadata.dev(),
            metadata.ino(),
            metadata.size(),
            metadata.mtime() as u64,
            metadata.mtime_nsec() as u64,
        ];
        Some(parts.iter().flat_map(|part| part.to_le_bytes()).collect())
    });
    identity.as_deref()
}

/// The cache file as a run found it, opened and its checksum verified once
/// however many entries the run looks up (its unchanged report; on a changed
/// run, whether the tally is there, then the tally): each look-up had mapped and
/// hashed the whole file again.
pub struct CacheFile {
    path: PathBuf,
    /// The file with the length of its checked body, or `None` when it is
    /// missing or its checksum fails; an entry that does not decode is not
    /// found (see [`CacheFile::find`]).
    checked: OnceLock<Option<(Arc<FileBytes>, usize)>>,
}

impl CacheFile {
    /// The cache in `state_dir`, opened when first looked in.
    pub fn in_dir(state_dir: &Path) -> CacheFile {
        CacheFile {
            path: state_dir.join(CACHE_FILE),
            checked: OnceLock::new(),
        }
    }

    /// The rendered report stored under `key`, if any.
    pub fn lookup(&self, key: u64) -> Option<Rendered> {
        let (file, _) = self.checked()?;
        let (at, unpriced) = self.find(key)?;
        std::str::from_utf8(&file[at.clone()]).ok()?;
        Some(Rendered {
            text: ReportText::Cached {
                file: Arc::clone(file),
                at,
            },
            unpriced,
        })
    }

    /// Whether anything is stored under `key`.
    pub fn contains(&self, key: u64) -> bool {
        self.find(key).is_some()
    }

    /// The bytes stored under `key` (a tally, a report's row index), if any.
    pub fn lookup_bytes(&self, key: u64) -> Option<&[u8]> {
        let (file, _) = self.checked()?;
        let (at, _) = self.find(key)?;
        file.get(at)
    }

    fn checked(&self) -> Option<&(Arc<FileBytes>, usize)> {
        self.checked
            .get_or_init(|| {
                let file = FileBytes::open(&self.path).ok()?;
                let body = unseal(&file).ok()?.len();
                Some((Arc::new(file), body))
            })
            .as_ref()
    }

    /// Where the entry stored under `key` is in the file, and its unpriced
    /// models; nothing if the file does not decode whole.
    fn find(&self, key: u64) -> Option<(Range<usize>, BTreeMap<String, u64>)> {
        let (file, body) = self.checked()?;
        let mut found = None;
        visit_body(&file[..*body], |entry_key, entry| {
            if entry_key == key {
                found = Some((entry.text_at.clone(), entry.unpriced_owned()));
            }
        })
        .ok()?;
        found
    }
}

/// Stores `rendered`, a report of the saved state `state`, under `key`, and
/// what goes `beside` it (its tally, its row index) under their keys, keeping
/// the `KEEP` most recent entries of that state. Of a state first saved by this run (`new_state`), the file
/// can hold nothing, so it is not read: anything in it is dropped.
pub fn store(
    state_dir: &Path,
    state: &str,
    new_state: bool,
    key: u64,
    rendered: &Rendered,
    beside: &[(u64, &[u8])],
) -> io::Result<()> {
    let path = state_dir.join(CACHE_FILE);
    let unpriced = rendered
        .unpriced
        .iter()
        .map(|(model, n)| (model.as_str(), *n))
        .collect();
    let mut entries = vec![Stored {
        key,
        text: rendered.text.as_bytes(),
        unpriced,
    }];
    entries.extend(beside.iter().map(|&(key, bytes)| Stored {
        key,
        text: bytes,
        unpriced: Vec::new(),
    }));
    let stored = |found: u64| found == key || beside.iter().any(|&(key, _)| found == key);
    // Earlier entries are written from the mapped file as they are, not decoded.
    let earlier = match new_state {
        true => None,
        false => FileBytes::open(&path).ok(),
    };
    if let Some(bytes) = &earlier {
        let _damaged_is_dropped = visit(bytes, |found, entry| {
            if !stored(found) && entry.state == state && entries.len() < KEEP {
                entries.push(Stored {
                    key: found,
                    text: entry.text,
                    unpriced: entry.unpriced.clone(),
                });
            }
        });
    }
    replace_cache_file_with(&path, |file| {
        let mut out = Sealing::new(BufWriter::new(file));
        out.write_all(MAGIC)?;
        out.write_all(&(entries.len() as u64).to_le_bytes())?;
        for entry in &entries {
            entry.write(&mut out, state)?;
        }
        out.finish()?.flush()
    })
}

/// An entry to store: a report's text or a tally's bytes, where they already are.
struct Stored<'a> {
    key: u64,
    text: &'a [u8],
    unpriced: Vec<(&'a str, u64)>,
}

impl Stored<'_> {
    /// Writes the entry as [`visit`] reads it, the text straight from where it is.
    fn write(&self, out: &mut impl Write, state: &str) -> io::Result<()> {
        let mut head = Vec::with_capacity(3 * 8 + state.len());
        put_u64(&mut head, self.key);
        put_section(&mut head, state.as_bytes());
        put_u64(&mut head, self.text.len() as u64);
        out.write_all(&head)?;
        out.write_all(self.text)?;
        let mut tail = Vec::new();
        put_u64(&mut tail, self.unpriced.len() as u64);
        for (model, responses) in &self.unpriced {
            put_section(&mut tail, model.as_bytes());
            put_u64(&mut tail, *responses);
        }
        out.write_all(&tail)
    }
}

/// A stored report, borrowed from the cache file.
struct Entry<'a> {
    state: &'a str,
    text: &'a [u8],
    /// Where `text` is in the file.
    text_at: Range<usize>,
    unpriced: Vec<(&'a str, u64)>,
}

impl Entry<'_> {
    fn unpriced_owned(&self) -> BTreeMap<String, u64> {
        self.unpriced
            .iter()
            .map(|&(model, responses)| (model.to_owned(), responses))
            .collect()
    }
}

/// Checks the whole file, and calls `each` with every entry without copying it.
fn visit<'a>(bytes: &'a [u8], each: impl FnMut(u64, &Entry<'a>)) -> Result<(), CodecError> {
    visit_body(unseal(bytes)?, each)
}

/// [`visit`] on a body whose checksum has been verified.
fn visit_body<'a>(body: &'a [u8], mut each: impl FnMut(u64, &Entry<'a>)) -> Result<(), CodecError> {
    let mut input = Decoder::new(body);
    if input.take(MAGIC.len())? != MAGIC {
        return Err(CodecError::Invalid("not a ccotel report cache".into()));
    }
    let count = input.count(4 * 8)?;
    for _ in 0..count {
        let key = input.u64()?;
        let state = input.text()?;
        // A report's text, or a tally's bytes: text is checked when looked up.
        let text = input.section()?;
        let end = input.position();
        let text_at = end - text.len()..end;
        let models = input.count(2 * 8)?;
        let unpriced = (0..models)
            .map(|_| Ok((input.text()?, input.u64()?)))
            .collect::<Result<Vec<_>, CodecError>>()?;
        each(
            key,
            &Entry {
                state,
                text,
                text_at,
                unpriced,
            },
        );
    }
    input.finish()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn rendered(text: &str) -> Rendered {
        Rendered {
            text: text.to_owned().into(),
            unpriced: BTreeMap::from([("mystery-model".to_owned(), 3)]),
        }
    }

    /// A look-up by a new run, which opens the file as it is now.
    fn lookup(state_dir: &Path, key: u64) -> Option<Rendered> {
        CacheFile::in_dir(state_dir).lookup(key)
    }

    fn lookup_bytes(state_dir: &Path, key: u64) -> Option<Vec<u8>> {
        CacheFile::in_dir(state_dir)
            .lookup_bytes(key)
            .map(<[u8]>::to_vec)
    }

    /// A cache holding a daily report of the state "s1" under key 1, and
    /// `tally` beside it under key 2.
    fn daily_with_tally(tally: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        store(
            dir.path(),
            "s1",
            false,
            1,
            &rendered("daily"),
            &[(2, tally)],
        )
        .expect("store");
        dir
    }

    #[test]
    fn a_run_looks_in_the_file_as_it_first_opened_it() {
        let tally: &[u8] = &[7, 7];
        let dir = daily_with_tally(tally);
        let run = CacheFile::in_dir(dir.path());
        assert_eq!(run.lookup(1), Some(rendered("daily")));
        store(dir.path(), "s2", true, 3, &rendered("daily of s2"), &[]).expect("store");
        // The file this run opened is kept whole, though it was replaced.
        assert!(run.contains(2));
        assert_eq!(run.lookup_bytes(2), Some(tally));
        assert_eq!(run.lookup(3), None);
        assert_eq!(lookup(dir.path(), 1), None, "a new run opens the new file");
        assert_eq!(lookup(dir.path(), 3), Some(rendered("daily of s2")));
    }

    #[test]
    fn keys_tell_their_inputs_apart() {
        let key = |parts: &[&str]| {
            let mut key = CacheKey::for_this_build().expect("the test binary is found");
            for part in parts {
                key.add(part.as_bytes());
            }
            key.finish()
        };
        assert_eq!(key(&["daily", "UTC"]), key(&["daily", "UTC"]));
        assert_ne!(key(&["daily", "UTC"]), key(&["daily", "Asia/Tokyo"]));
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
    }

    #[test]
    fn stores_the_latest_reports_and_ignores_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(lookup(dir.path(), 1), None);
        let last = KEEP as u64 + 1;
        for key in 0..=last {
            store(
                dir.path(),
                "s1",
                false,
                key,
                &rendered(&format!("report {key}")),
                &[],
            )
            .expect("store");
        }
        assert_eq!(
            lookup(dir.path(), last),
            Some(rendered(&format!("report {last}")))
        );
        assert_eq!(lookup(dir.path(), 2), Some(rendered("report 2")));
        assert_eq!(lookup(dir.path(), 1), None, "the oldest were dropped");
        store(dir.path(), "s1", false, 2, &rendered("again"), &[]).expect("store");
        assert_eq!(lookup(dir.path(), 2), Some(rendered("again")));
        assert_eq!(
            lookup(dir.path(), last),
            Some(rendered(&format!("report {last}")))
        );
        assert_eq!(
            lookup(dir.path(), 3),
            Some(rendered("report 3")),
            "not pushed out by a re-store"
        );

        let path = dir.path().join(CACHE_FILE);
        let mut bytes = fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        fs::write(&path, &bytes).expect("damage");
        assert_eq!(lookup(dir.path(), 2), None);
        store(dir.path(), "s1", false, 5, &rendered("fresh"), &[]).expect("store over damage");
        assert_eq!(lookup(dir.path(), 5), Some(rendered("fresh")));
    }

    #[test]
    fn a_tally_is_stored_beside_its_report_and_is_not_taken_for_text() {
        let tally: &[u8] = &[0xff, 0xfe, 0, 1];
        let dir = daily_with_tally(tally);
        assert_eq!(lookup(dir.path(), 1), Some(rendered("daily")));
        assert_eq!(lookup_bytes(dir.path(), 2).as_deref(), Some(tally));
        assert_eq!(lookup(dir.path(), 2), None, "not UTF-8: not a report");
        store(dir.path(), "s1", false, 3, &rendered("monthly"), &[]).expect("store");
        assert_eq!(lookup_bytes(dir.path(), 2).as_deref(), Some(tally), "kept");
        store(dir.path(), "s2", false, 4, &rendered("daily"), &[]).expect("store");
        assert_eq!(lookup_bytes(dir.path(), 2), None, "a new state drops it");
    }

    #[test]
    fn the_store_of_a_new_state_does_not_read_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        store(dir.path(), "s1", false, 1, &rendered("daily"), &[]).expect("store");
        store(dir.path(), "s1", false, 2, &rendered("monthly"), &[]).expect("store");
        assert_eq!(lookup(dir.path(), 1), Some(rendered("daily")), "kept");
        store(dir.path(), "s1", true, 3, &rendered("weekly"), &[]).expect("store");
        assert_eq!(lookup(dir.path(), 1), None, "not read, so not kept");
        assert_eq!(lookup(dir.path(), 3), Some(rendered("weekly")));
    }

    #[test]
    fn a_report_of_a_new_state_drops_the_older_states_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        store(dir.path(), "s1", false, 1, &rendered("daily of s1"), &[]).expect("store");
        store(dir.path(), "s1", false, 2, &rendered("monthly of s1"), &[]).expect("store");
        let size_of_two = fs::metadata(dir.path().join(CACHE_FILE))
            .expect("stat")
            .len();
        store(dir.path(), "s2", false, 3, &rendered("daily of s2"), &[]).expect("store");
        assert_eq!(lookup(dir.path(), 1), None);
        assert_eq!(lookup(dir.path(), 2), None);
        assert_eq!(lookup(dir.path(), 3), Some(rendered("daily of s2")));
        let size_of_one = fs::metadata(dir.path().join(CACHE_FILE))
            .expect("stat")
            .len();
        assert!(size_of_one < size_of_two, "{size_of_one} < {size_of_two}");
        store(dir.path(), "s2", false, 4, &rendered("monthly of s2"), &[]).expect("store");
        assert_eq!(lookup(dir.path(), 3), Some(rendered("daily of s2")));
    }
}
