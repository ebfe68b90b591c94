//! The manifest: per file, how far it has been read and how to recognise it, plus an
//! opaque blob of session state (the dedup ledger) that must stay consistent with
//! those offsets.
//!
//! A state is a base and its journal:
//! - the base, `manifest.bin` (checksummed, entries sorted by path) and the
//!   `session-state.<hash>.bin` blob it names, each written atomically (temp file,
//!   fsync, rename, fsync of the directory); the blob first, under a new name, then
//!   the manifest, so a crash at any point leaves a consistent pair;
//! - its journal (`super::journal`): one record per run since, holding the run's
//!   changed file entries and ledger changes together, each its own commit point.
//!
//! So a run that changes a little appends a little (one write, one `fdatasync`),
//! whatever the history; [`StateDir::save_with`] folds everything into a new base
//! once the journal has grown.
//!
//! The manifest is binary: a rerun over an unchanged corpus is mostly loading it,
//! and decoding 10,000 files' state from JSON took longer than the rest of such a
//! run. The JSON manifest of earlier versions (`manifest.json`) and the earlier
//! binary formats are still read, and replaced at the next save.
//!
//! Loading maps the files and checks them, but builds nothing: a
//! [`SavedManifest`] is walked in path order beside the listing (which is sorted
//! the same way), and only changed files' entries are ever copied out. The
//! session-state blob can be left unopened ([`StateDir::load_manifest`]) until a
//! run needs the ledger. What a run compares its listing with, the manifest's
//! digests and the files it saw written last, is in `digest`.

use std::collections::{btree_map, BTreeMap};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::iter::Peekable;
use std::ops::Range;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::identity::{FileIdentity, Marker};
use super::journal::{self, JournalRef};
use crate::codec::{
    put_i64, put_section, put_u64, seal, self_checked, unseal, CodecError, Decoder, FileBytes,
};
use crate::transcript::LineStats;

mod digest;

pub use digest::{EntriesBlock, ManifestDigest, ProjectEntries, WrittenLast, ENTRIES_PER_BLOCK};

const MANIFEST_FILE: &str = "manifest.bin";
const MAGIC: &[u8; 16] = b"ccotel-manifest4";
/// The format whose journal's committed length the manifest names:
/// read, never written.
const MAGIC_COMMITTING_JOURNAL: &[u8; 16] = b"ccotel-manifest3";
/// The format before journals: read, never written.
const MAGIC_WITHOUT_JOURNAL: &[u8; 16] = b"ccotel-manifest2";
/// Written by ccotel before 0.2; read, never written.
const LEGACY_MANIFEST_FILE: &str = "manifest.json";
const LEGACY_FORMAT: u32 = 1;

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read or written. Its content may be whole: a run
    /// stops rather than discard it, since the state may hold the usage of
    /// transcripts Claude Code has since deleted.
    // `error`, not `source`: the message holds it, and a chain that printed it
    // again would say it twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    /// The file's content is damaged: a run discards the state, with a warning,
    /// and reads every transcript again.
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Wraps an I/O error with the path it concerns.
pub fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ManifestError + '_ {
    move |error| ManifestError::Io {
        path: path.to_owned(),
        error,
    }
}

/// What the manifest knows about one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileState {
    pub project: String,
    pub identity: FileIdentity,
    /// Byte offset just after the last newline fully processed.
    pub offset: u64,
    pub marker: Marker,
    /// Lines seen in this file over all runs, by outcome.
    pub lines: LineStats,
}

/// Per-file read state, keyed by path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    /// Fx, not SipHash: a run looks up every listed path, and the keys are our
    /// own files' paths, not input an attacker picks to collide.
    pub files: FxHashMap<PathBuf, FileState>,
}

/// What a run changes in the manifest: a file's new state, or `None` when the
/// file is gone.
pub type FileChange = (PathBuf, Option<FileState>);

/// Changed entries by path bytes (the order entries are kept in).
type Changed = BTreeMap<Vec<u8>, Option<FileState>>;

/// A manifest as the state directory holds it: checked, but not decoded.
#[derive(Debug)]
pub struct SavedManifest {
    base: Base,
    /// What the journal changed since the base was written.
    changed: Changed,
    session_state: StateRef,
}

/// The entries of `manifest.bin`, sorted by path, checked when loaded.
#[derive(Debug)]
enum Base {
    Encoded {
        bytes: FileBytes,
        entries_at: usize,
        count: usize,
    },
    /// An earlier version's `manifest.json`, whose entries are all in `changed`.
    Empty,
}

/// The session state as saved: the blob, and the journal payloads appended to it
/// since, to apply in order.
#[derive(Debug)]
pub struct SessionState {
    pub blob: FileBytes,
    pub changes: journal::Records,
}

/// The session state as a manifest names it, its blob not opened yet: a run
/// whose report is recalled from the cache by the state's id never needs it.
#[derive(Debug)]
pub struct SessionStateFile {
    manifest_path: PathBuf,
    blob_path: PathBuf,
    blob: BlobRef,
    changes: journal::Records,
}

impl SessionStateFile {
    /// The blob's path, to name in errors about its content.
    pub fn blob_path(&self) -> &Path {
        &self.blob_path
    }

    /// The journal's path, to name in errors about its records.
    pub fn journal_path(&self) -> PathBuf {
        journal::journal_path(&self.blob_path)
    }

    /// Opens the blob and checks it against the checksum its manifest recorded.
    /// The blob is named first in an error: it may be found damaged runs after
    /// the damage, by the first run that needed it.
    pub fn open(self) -> Result<SessionState, ManifestError> {
        let manifest = self.manifest_path.display();
        let corrupt = |reason: String| ManifestError::Corrupt {
            path: self.blob_path.clone(),
            reason,
        };
        // Missing, the state is damaged; unreadable, it may be whole, and is
        // not to be discarded (see `ManifestError::Io`).
        let blob = FileBytes::open_sparse(&self.blob_path).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => corrupt(format!("it is missing; {manifest} names it")),
            _ => io_error(&self.blob_path)(error),
        })?;
        if BlobRef::of(&blob) != self.blob {
            return Err(corrupt(format!(
                "it does not match the checksum {manifest} records"
            )));
        }
        Ok(SessionState {
            blob,
            changes: self.changes,
        })
    }
}

/// The session state a manifest commits to: a blob and how much of its journal.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRef {
    blob: BlobRef,
    journal: JournalRef,
    /// The base is in this version's format, whose journal records commit
    /// themselves; an earlier one is folded into a new base at the next change.
    appendable: bool,
}

impl StateRef {
    /// Names the state's content: two saves with equal ids saved equal state.
    pub fn id(&self) -> String {
        match self.journal.len {
            0 => self.blob.xxh3.clone(),
            len => format!("{}+{len}.{:016x}", self.blob.xxh3, self.journal.digest),
        }
    }

    /// Whether appending `more` bytes of changes would leave the journal small
    /// next to the blob. Every load replays the journal, at several times the
    /// cost per record of loading the blob, so it is kept to about an eighth of
    /// it (see [`StateRef::fold_due`]).
    pub fn journal_has_room(&self, more: usize) -> bool {
        self.appendable && self.journal.record_bytes() + more as u64 <= self.blob.bytes / 8
    }

    /// Whether the next change is to be folded into a new base rather than
    /// appended: the journal has outgrown its room (by at most one run's
    /// changes), or the base is in an earlier format. Known before the run
    /// reads anything, so that a run that will fold can check the whole saved
    /// ledger as it restores it.
    pub fn fold_due(&self) -> bool {
        !self.journal_has_room(0)
    }

    /// The blob's file name in the state directory.
    pub fn blob_file(&self) -> &str {
        &self.blob.file
    }
}

/// A run's changes made into a journal record for the state they extend; see
/// [`StateDir::prepare_append`].
#[derive(Debug)]
pub struct PreparedAppend {
    path: PathBuf,
    base: StateRef,
    /// `None` when nothing changed: the state stays what it was.
    record: Option<journal::Prepared>,
}

impl PreparedAppend {
    /// The id of the state once the record is written.
    pub fn state_id(&self) -> String {
        self.state().id()
    }

    /// Whether the record names a state other than the one it extends.
    pub fn is_new_state(&self) -> bool {
        self.record.is_some()
    }

    /// Appends the record to the journal: a write proportional to what changed,
    /// and the commit point. Returns the new state's id.
    pub fn write(self) -> Result<String, ManifestError> {
        if let Some(record) = &self.record {
            record.append_to(&self.path).map_err(io_error(&self.path))?;
        }
        Ok(self.state_id())
    }

    fn state(&self) -> StateRef {
        match &self.record {
            Some(record) => StateRef {
                journal: record.commits(),
                ..self.base.clone()
            },
            None => self.base.clone(),
        }
    }
}

impl SavedManifest {
    /// Names the content of the session state loaded with this manifest: the
    /// blob's checksum as the manifest records it, and the journal's, checked.
    pub fn state_id(&self) -> String {
        self.session_state.id()
    }

    /// The session state this manifest commits to, to append to.
    pub fn session_state(&self) -> &StateRef {
        &self.session_state
    }

    /// The entries, in path order.
    pub fn entries(&self) -> Entries<'_> {
        Entries::new(&self.base, &self.changed)
    }

    /// The manifest as a map, to change.
    pub fn decode(&self) -> Manifest {
        let files = self
            .entries()
            .map(|entry| (entry.path_buf(), entry.to_state()))
            .collect();
        Manifest { files }
    }
}

/// A manifest's entries in path order: the base's, with the journal's changes
/// applied.
pub struct Entries<'a> {
    base: Option<Decoder<'a>>,
    /// The base's entries, from the first: to say where `base` stands.
    base_bytes: usize,
    base_left: usize,
    next_base: Option<Entry<'a>>,
    /// Where `next_base` begins in the base's entries.
    next_base_at: usize,
    changed: Peekable<btree_map::Range<'a, Vec<u8>, Option<FileState>>>,
}

/// Where [`Entries`] stood before an entry: the base entry it was to read next
/// (its offset among the base's entries, and how many are left from it).
/// With the entry's path, enough to walk the entries again from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntriesAt {
    base_offset: usize,
    base_left: usize,
}

impl<'a> Entries<'a> {
    fn new(base: &'a Base, changed: &'a Changed) -> Entries<'a> {
        let start = EntriesAt {
            base_offset: 0,
            base_left: usize::MAX,
        };
        Entries::resume(base, changed, start, &[])
    }

    /// The entries from `at`, the first of them at `path` or after it.
    fn resume(base: &'a Base, changed: &'a Changed, at: EntriesAt, path: &[u8]) -> Entries<'a> {
        let (base, base_bytes, base_left) = match base {
            Base::Encoded {
                bytes,
                entries_at,
                count,
            } => {
                let entries = bytes.get(*entries_at..).unwrap_or_default();
                let from = entries.get(at.base_offset..).unwrap_or_default();
                (
                    Some(Decoder::new(from)),
                    entries.len(),
                    at.base_left.min(*count),
                )
            }
            Base::Empty => (None, 0, 0),
        };
        let from = (std::ops::Bound::Included(path), std::ops::Bound::Unbounded);
        let mut entries = Entries {
            base,
            base_bytes,
            base_left,
            next_base: None,
            next_base_at: 0,
            changed: changed.range::<[u8], _>(from).peekable(),
        };
        // Base entries before `path` that `at` still points at: those a change
        // removed, skipped with it just before the entry at `path`.
        while entries.peek_base().is_some_and(|entry| entry.path < path) {
            entries.next_base = None;
        }
        entries
    }

    /// Where the entries stand, before the next one.
    fn at(&self) -> EntriesAt {
        match self.next_base {
            Some(_) => EntriesAt {
                base_offset: self.next_base_at,
                base_left: self.base_left + 1,
            },
            None => EntriesAt {
                base_offset: self.base_offset(),
                base_left: self.base_left,
            },
        }
    }

    fn base_offset(&self) -> usize {
        let left = self.base.as_ref().map_or(0, Decoder::remaining);
        self.base_bytes - left
    }

    fn peek_base(&mut self) -> Option<Entry<'a>> {
        if self.next_base.is_none() && self.base_left > 0 {
            self.next_base_at = self.base_offset();
            self.base_left -= 1;
            // The base was checked through to its last entry when loaded; were
            // one unreadable all the same, the files after it would look new and
            // be read again, which the ledger makes harmless.
            self.next_base = self
                .base
                .as_mut()
                .and_then(|input| decode_entry(input).ok());
            if self.next_base.is_none() {
                self.base_left = 0;
            }
        }
        self.next_base
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        loop {
            let base = self.peek_base();
            let change_path = self.changed.peek().map(|(path, _)| path.as_slice());
            match (base, change_path) {
                (None, None) => return None,
                (Some(base), None) => {
                    self.next_base = None;
                    return Some(base);
                }
                (Some(base), Some(path)) if base.path < path => {
                    self.next_base = None;
                    return Some(base);
                }
                (base, Some(path)) => {
                    if base.is_some_and(|base| base.path == path) {
                        self.next_base = None;
                    }
                    let (path, change) = self.changed.next()?;
                    if let Some(state) = change {
                        return Some(Entry::of(path, state));
                    }
                }
            }
        }
    }
}

/// The JSON manifest of earlier versions.
#[derive(Deserialize)]
struct LegacyManifestFile {
    format: u32,
    session_state: BlobRef,
    files: FxHashMap<PathBuf, FileState>,
}

/// Names the session-state blob that matches the manifest's offsets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct BlobRef {
    file: String,
    bytes: u64,
    xxh3: String,
}

impl BlobRef {
    /// A blob that checks itself is named by its own digest, which it checks
    /// as it is read: opening it does not hash it whole (see
    /// [`self_checked`]).
    fn of(session_state: &[u8]) -> BlobRef {
        let digest = match self_checked(session_state) {
            Some((digest, _body)) => digest,
            None => xxhash_rust::xxh3::xxh3_64(session_state),
        };
        let hash = format!("{digest:016x}");
        BlobRef {
            file: format!("session-state.{hash}.bin"),
            bytes: session_state.len() as u64,
            xxh3: hash,
        }
    }
}

/// The state directory, held under an exclusive lock while this process uses it.
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Opens (creating) the directory and takes its lock, waiting for another
    /// ccotel process that holds it.
    pub fn open(path: &Path) -> Result<StateDir, ManifestError> {
        fs::create_dir_all(path).map_err(io_error(path))?;
        let lock_path = path.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        if let Err(fs::TryLockError::WouldBlock) = lock.try_lock() {
            tracing::warn!(state_dir = %path.display(), "another ccotel process holds the state directory; waiting");
            lock.lock().map_err(io_error(&lock_path))?;
        }
        Ok(StateDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the blob of the session state `state` is.
    pub fn blob_path(&self, state: &StateRef) -> PathBuf {
        self.path.join(state.blob_file())
    }

    /// The manifest and session state, or `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<(SavedManifest, SessionState)>, ManifestError> {
        load_from(&self.path)
    }

    /// [`StateDir::load`], leaving the session-state blob to be opened if needed.
    pub fn load_manifest(
        &self,
    ) -> Result<Option<(SavedManifest, SessionStateFile)>, ManifestError> {
        load_manifest_from(&self.path)
    }

    /// The manifest on disk is an earlier version's, to be rewritten in this one's
    /// format even when nothing else changed.
    pub fn is_legacy(&self) -> bool {
        !self.path.join(MANIFEST_FILE).exists() && self.path.join(LEGACY_MANIFEST_FILE).exists()
    }

    /// Atomically replaces the manifest and its session-state blob (with no
    /// journal); returns the new state's id.
    pub fn save(&self, manifest: &Manifest, session_state: &[u8]) -> Result<String, ManifestError> {
        let mut entries: Vec<Entry<'_>> = manifest
            .files
            .iter()
            .map(|(path, state)| Entry::of(path.as_os_str().as_bytes(), state))
            .collect();
        entries.sort_unstable_by(|a, b| a.path.cmp(b.path));
        self.save_entries(&entries, session_state)
    }

    /// [`StateDir::save`] of the manifest `saved` (none: an empty one) with
    /// `changes` made to it: a new base, into which the journal is folded.
    pub fn save_with(
        &self,
        saved: Option<&SavedManifest>,
        changes: &[FileChange],
        session_state: &[u8],
    ) -> Result<String, ManifestError> {
        // The journal's changes and this run's, over the base, as a load sees
        // them: the journal is small next to the base, so copying it is cheap.
        let mut changed = saved.map_or_else(Changed::new, |saved| saved.changed.clone());
        for (path, change) in changes {
            changed.insert(path.as_os_str().as_bytes().to_vec(), change.clone());
        }
        let empty = Base::Empty;
        let base = saved.map_or(&empty, |saved| &saved.base);
        let entries: Vec<Entry<'_>> = Entries::new(base, &changed).collect();
        self.save_entries(&entries, session_state)
    }

    /// Writes a new base of `entries` (sorted by path) and `session_state`.
    fn save_entries(
        &self,
        entries: &[Entry<'_>],
        session_state: &[u8],
    ) -> Result<String, ManifestError> {
        let state = StateRef {
            blob: BlobRef::of(session_state),
            journal: JournalRef::default(),
            appendable: true,
        };
        let blob_path = self.path.join(&state.blob.file);
        // Always rewritten: a blob of the same name on disk may be the damaged one.
        write_atomically(&blob_path, session_state)?;
        // A journal extends the manifest that names its blob; one left from an
        // earlier base with the same blob must not extend this one.
        let journal_path = journal::journal_path(&blob_path);
        match fs::remove_file(&journal_path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(&journal_path)(error))
            }
            _ => {}
        }
        write_atomically(
            &self.path.join(MANIFEST_FILE),
            &encode_manifest(entries, &state),
        )?;
        sync_dir(&self.path)?;
        let _ = fs::remove_file(self.path.join(LEGACY_MANIFEST_FILE));
        self.remove_stale_blobs(&state.blob.file);
        Ok(state.id())
    }

    /// Appends a run's `changes` to the files and `ledger_changes` (both may be
    /// empty) to the journal of the state `base` (the one loaded, which they
    /// extend), as one record: a write proportional to what changed, and the
    /// commit point. Returns the new state's id. Only for a base whose
    /// [`StateRef::journal_has_room`].
    pub fn append(
        &self,
        changes: &[FileChange],
        base: &StateRef,
        ledger_changes: &[u8],
    ) -> Result<String, ManifestError> {
        self.prepare_append(changes, base, ledger_changes)?.write()
    }

    /// [`StateDir::append`] in two steps: the record made here, and the id of
    /// the state it makes known, before [`PreparedAppend::write`] writes it.
    pub fn prepare_append(
        &self,
        changes: &[FileChange],
        base: &StateRef,
        ledger_changes: &[u8],
    ) -> Result<PreparedAppend, ManifestError> {
        let path = journal::journal_path(&self.path.join(&base.blob.file));
        let record = match changes.is_empty() && ledger_changes.is_empty() {
            true => None,
            false => {
                let payload = encode_record(changes, ledger_changes);
                Some(journal::prepare(base.journal, &payload).map_err(io_error(&path))?)
            }
        };
        Ok(PreparedAppend {
            path,
            base: base.clone(),
            record,
        })
    }

    fn remove_stale_blobs(&self, keep: &str) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        // Journals go with their blob: `session-state.<hash>.journal`.
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("session-state.") && name != keep {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads a state directory's manifest and session state without taking its
/// lock: for inspecting the state of a running process. `Ok(None)` when there
/// is none yet.
pub fn load_from(dir: &Path) -> Result<Option<(SavedManifest, SessionState)>, ManifestError> {
    let Some((manifest, file)) = load_manifest_from(dir)? else {
        return Ok(None);
    };
    Ok(Some((manifest, file.open()?)))
}

/// The manifest with its journal's changes, and the session state it names.
fn load_manifest_from(
    dir: &Path,
) -> Result<Option<(SavedManifest, SessionStateFile)>, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let corrupt = |reason: String| ManifestError::Corrupt {
        path: path.clone(),
        reason,
    };
    let (base, changed, mut state) = match FileBytes::open(&path) {
        Ok(bytes) => {
            let (base, state) = check_manifest(bytes).map_err(corrupt)?;
            (base, Changed::new(), state)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => match load_legacy(dir)? {
            Some((manifest, blob)) => {
                let changed = manifest
                    .files
                    .into_iter()
                    .map(|(path, state)| (path.into_os_string().into_vec(), Some(state)))
                    .collect();
                let state = StateRef {
                    blob,
                    journal: JournalRef::default(),
                    appendable: false,
                };
                (Base::Empty, changed, state)
            }
            None => return Ok(None),
        },
        Err(error) => return Err(io_error(&path)(error)),
    };
    if state.blob.file.contains('/') {
        return Err(corrupt(format!(
            "bad session state name {:?}",
            state.blob.file
        )));
    }
    let blob_path = dir.join(&state.blob.file);
    let journal_path = journal::journal_path(&blob_path);
    let (changed, changes) = match state.appendable {
        true => {
            let (changed, changes, committed) = read_journal(&journal_path, changed)?;
            state.journal = committed;
            (changed, changes)
        }
        false => {
            let changes = journal::read_committed(&journal_path, state.journal).map_err(|why| {
                ManifestError::Corrupt {
                    reason: format!("it {why}"),
                    path: journal_path,
                }
            })?;
            (changed, changes)
        }
    };
    let file = SessionStateFile {
        manifest_path: path,
        blob_path,
        blob: state.blob.clone(),
        changes,
    };
    let manifest = SavedManifest {
        base,
        changed,
        session_state: state,
    };
    Ok(Some((manifest, file)))
}

/// The journal's records applied to the base's entries: the entries it changed,
/// its ledger payloads, and what it commits. Records after one that cannot be
/// used are dropped, with a warning: any prefix is a consistent state, and what
/// the rest recorded is read again from the transcripts.
///
/// A journal that cannot be read is an error: see [`journal::read`].
fn read_journal(
    path: &Path,
    mut changed: Changed,
) -> Result<(Changed, journal::Records, JournalRef), ManifestError> {
    let mut read = journal::read(path).map_err(io_error(path))?;
    let mut ledger_payloads: Vec<Range<usize>> = Vec::new();
    let mut usable = 0;
    for (payload, bytes) in read.records.ranged_payloads() {
        match decode_record(bytes) {
            Ok((changes, ledger)) => {
                for (path, change) in changes {
                    changed.insert(path, change);
                }
                // A run may change offsets and count nothing new.
                if !ledger.is_empty() {
                    ledger_payloads.push(payload.start + ledger.start..payload.start + ledger.end);
                }
                usable += 1;
            }
            Err(error) => {
                read.dropped = Some(format!("record {} cannot be decoded: {error}", usable + 1));
                break;
            }
        }
    }
    read.truncate(usable);
    if let Some(why) = &read.dropped {
        tracing::warn!(
            "{}: {why}; what was dropped is read again from the transcripts",
            path.display()
        );
    }
    let committed = read.committed();
    Ok((
        changed,
        read.records.with_ranges(ledger_payloads),
        committed,
    ))
}

fn load_legacy(dir: &Path) -> Result<Option<(Manifest, BlobRef)>, ManifestError> {
    let path = dir.join(LEGACY_MANIFEST_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path)(error)),
    };
    let corrupt = |reason: String| ManifestError::Corrupt {
        path: path.clone(),
        reason,
    };
    let file: LegacyManifestFile =
        serde_json::from_slice(&text).map_err(|error| corrupt(error.to_string()))?;
    if file.format != LEGACY_FORMAT {
        return Err(corrupt(format!("unsupported format {}", file.format)));
    }
    Ok(Some((Manifest { files: file.files }, file.session_state)))
}

/// Entries sorted by path, so the same manifest always encodes to the same bytes.
fn encode_manifest(entries: &[Entry<'_>], state: &StateRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 200);
    out.extend_from_slice(MAGIC);
    put_section(
        &mut out,
        format!("ccotel {}", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    let blob = &state.blob;
    put_section(&mut out, blob.file.as_bytes());
    put_u64(&mut out, blob.bytes);
    put_section(&mut out, blob.xxh3.as_bytes());
    put_u64(&mut out, entries.len() as u64);
    for entry in entries {
        put_section(&mut out, entry.path);
        put_state(&mut out, entry);
    }
    seal(&mut out);
    out
}

fn put_state(out: &mut Vec<u8>, entry: &Entry<'_>) {
    put_section(out, entry.project());
    let id = &entry.identity;
    for value in [id.dev, id.ino, id.size] {
        put_u64(out, value);
    }
    put_i64(out, id.mtime_ns);
    put_i64(out, id.ctime_ns);
    let state = match entry.rest {
        Rest::Encoded { fields, .. } => return out.extend_from_slice(fields),
        Rest::Decoded(state) => state,
    };
    put_u64(out, state.offset);
    let marker = &state.marker;
    let lines = &state.lines;
    for value in [
        marker.head_len,
        marker.head,
        marker.tail,
        lines.lines,
        lines.blank,
        lines.not_object,
        lines.malformed,
        lines.repaired,
        lines.oversized,
    ] {
        put_u64(out, value);
    }
}

/// A journal record: the run's changed entries (a path, then 1 and the state,
/// or 0 for a file gone), then its ledger changes.
fn encode_record(changes: &[FileChange], ledger_changes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + changes.len() * 220 + ledger_changes.len());
    put_u64(&mut out, changes.len() as u64);
    for (path, change) in changes {
        put_section(&mut out, path.as_os_str().as_bytes());
        match change {
            Some(state) => {
                out.push(1);
                put_state(&mut out, &Entry::of(path.as_os_str().as_bytes(), state));
            }
            None => out.push(0),
        }
    }
    put_section(&mut out, ledger_changes);
    out
}

/// One record's changed entries, by path bytes, in the order written.
type RecordChanges = Vec<(Vec<u8>, Option<FileState>)>;

/// What [`encode_record`] wrote: the changes, and where the ledger's are in
/// `payload`. Decoded whole before any of it is applied, so that a damaged
/// record changes nothing.
fn decode_record(payload: &[u8]) -> Result<(RecordChanges, Range<usize>), CodecError> {
    let mut input = Decoder::new(payload);
    let count = input.count(9)?;
    let mut changes = Vec::with_capacity(count);
    for _ in 0..count {
        let path = input.section()?.to_vec();
        let change = match input.u8()? {
            0 => None,
            1 => Some(
                decode_state(path.as_slice(), &mut input)?
                    .checked()?
                    .to_state(),
            ),
            other => return Err(CodecError::Invalid(format!("bad change tag {other}"))),
        };
        changes.push((path, change));
    }
    let ledger = input.section()?;
    let end = input.position();
    input.finish()?;
    Ok((changes, end - ledger.len()..end))
}

/// The smallest encoded file: two empty sections (path, project) and 15 numbers
/// (identity 5, offset 1, marker 3, line counts 6).
const MIN_FILE_BYTES: usize = 2 * 8 + 15 * 8;

/// Checks a `manifest.bin` through to its last entry, so that walking it later
/// cannot fail, and finds where its entries start.
fn check_manifest(bytes: FileBytes) -> Result<(Base, StateRef), String> {
    let invalid = |error: CodecError| error.to_string();
    let body = unseal(&bytes).map_err(invalid)?;
    let mut input = Decoder::new(body);
    let magic = input.take(MAGIC.len()).map_err(invalid)?;
    if ![&MAGIC[..], MAGIC_COMMITTING_JOURNAL, MAGIC_WITHOUT_JOURNAL].contains(&magic) {
        return Err("not a ccotel manifest".into());
    }
    let appendable = magic == MAGIC;
    let _written_by = input.section().map_err(invalid)?;
    let blob = BlobRef {
        file: input.text().map_err(invalid)?.to_owned(),
        bytes: input.u64().map_err(invalid)?,
        xxh3: input.text().map_err(invalid)?.to_owned(),
    };
    let journal = match magic == MAGIC_COMMITTING_JOURNAL {
        true => JournalRef {
            len: input.u64().map_err(invalid)?,
            digest: input.u64().map_err(invalid)?,
        },
        false => JournalRef::default(),
    };
    let count = input.count(MIN_FILE_BYTES).map_err(invalid)?;
    let entries_at = input.position();
    for _ in 0..count {
        decode_entry(&mut input)
            .and_then(Entry::checked)
            .map_err(invalid)?;
    }
    input.finish().map_err(invalid)?;
    let base = Base::Encoded {
        bytes,
        entries_at,
        count,
    };
    let state = StateRef {
        blob,
        journal,
        appendable,
    };
    Ok((base, state))
}

/// One file's entry, borrowed from an encoded manifest or a [`FileState`].
///
/// A run compares every listed file's path and identity with the manifest's
/// and needs the rest only for the few that changed, so an encoded entry's rest
/// stays encoded until asked for.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub path: &'a [u8],
    pub identity: FileIdentity,
    rest: Rest<'a>,
}

/// An entry's fields after its identity: offset, marker and line counts, as
/// many `u64`s.
const REST_FIELDS: usize = 10;
const REST_BYTES: usize = REST_FIELDS * 8;

#[derive(Debug, Clone, Copy)]
enum Rest<'a> {
    /// The project's bytes, UTF-8 as checked when the manifest was loaded (see
    /// [`check_manifest`]), and the fields after the identity as written.
    Encoded {
        project: &'a [u8],
        fields: &'a [u8; REST_BYTES],
    },
    Decoded(&'a FileState),
}

impl<'a> Entry<'a> {
    fn of(path: &'a [u8], state: &'a FileState) -> Entry<'a> {
        Entry {
            path,
            identity: state.identity,
            rest: Rest::Decoded(state),
        }
    }

    pub fn path_buf(&self) -> PathBuf {
        PathBuf::from(OsString::from_vec(self.path.to_vec()))
    }

    /// The entry, once its project is found to be UTF-8: what a manifest and
    /// a journal record are checked for as they are loaded, so that the
    /// entries walked afterwards need not be.
    fn checked(self) -> Result<Entry<'a>, CodecError> {
        std::str::from_utf8(self.project())
            .map_err(|error| CodecError::Invalid(error.to_string()))?;
        Ok(self)
    }

    pub fn project(&self) -> &'a [u8] {
        match self.rest {
            Rest::Encoded { project, .. } => project,
            Rest::Decoded(state) => state.project.as_bytes(),
        }
    }

    pub fn to_state(&self) -> FileState {
        let (project, fields) = match self.rest {
            Rest::Decoded(state) => return state.clone(),
            Rest::Encoded { project, fields } => (project, fields),
        };
        let mut values = [0u64; REST_FIELDS];
        for (value, bytes) in values.iter_mut().zip(fields.as_chunks::<8>().0) {
            *value = u64::from_le_bytes(*bytes);
        }
        let [offset, head_len, head, tail, lines, blank, not_object, malformed, repaired, oversized] =
            values;
        FileState {
            project: String::from_utf8_lossy(project).into_owned(),
            identity: self.identity,
            offset,
            marker: Marker {
                head_len,
                head,
                tail,
            },
            lines: LineStats {
                lines,
                blank,
                not_object,
                malformed,
                repaired,
                oversized,
            },
        }
    }
}

fn decode_entry<'a>(input: &mut Decoder<'a>) -> Result<Entry<'a>, CodecError> {
    let path = input.section()?;
    decode_state(path, input)
}

fn decode_state<'a, 'p>(path: &'p [u8], input: &mut Decoder<'a>) -> Result<Entry<'p>, CodecError>
where
    'a: 'p,
{
    let project = input.section()?;
    let identity = FileIdentity {
        dev: input.u64()?,
        ino: input.u64()?,
        size: input.u64()?,
        mtime_ns: input.i64()?,
        ctime_ns: input.i64()?,
    };
    let fields = input
        .take(REST_BYTES)?
        .try_into()
        .map_err(|_| CodecError::Truncated)?;
    Ok(Entry {
        path,
        identity,
        rest: Rest::Encoded { project, fields },
    })
}

/// Writes `bytes` to `path` through a temporary file, fsynced before the rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

fn sync_dir(path: &Path) -> Result<(), ManifestError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sample_state() -> FileState {
        FileState {
            project: "-p".into(),
            identity: FileIdentity {
                dev: 1,
                ino: 2,
                size: 30,
                mtime_ns: 4,
                ctime_ns: 5,
            },
            offset: 20,
            marker: Marker {
                head_len: 20,
                head: 6,
                tail: 7,
            },
            lines: LineStats::default(),
        }
    }

    /// An entry read from the mapping keeps its fields after the identity
    /// encoded until asked for, and is written again by copying them: each
    /// field distinct, so a field read or copied in the wrong place shows.
    #[test]
    fn an_encoded_entry_decodes_and_copies_every_field() {
        let state = FileState {
            project: "-home-dév-app".into(),
            offset: 11,
            marker: Marker {
                head_len: 12,
                head: 13,
                tail: 14,
            },
            lines: LineStats {
                lines: 15,
                blank: 16,
                not_object: 17,
                malformed: 18,
                repaired: 19,
                oversized: 20,
            },
            ..sample_state()
        };
        let path: &[u8] = b"/x/a.jsonl";
        let decoded = [Entry::of(path, &state)];
        let state_ref = StateRef {
            blob: BlobRef::of(b"blob"),
            journal: JournalRef::default(),
            appendable: true,
        };
        let bytes = encode_manifest(&decoded, &state_ref);
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("m"), &bytes).expect("write");
        let mapped = FileBytes::open(&dir.path().join("m")).expect("open");
        let (base, _) = check_manifest(mapped).expect("a sound manifest");
        let changed = Changed::new();
        let encoded: Vec<Entry<'_>> = Entries::new(&base, &changed).collect();
        assert!(matches!(
            encoded[..],
            [Entry {
                rest: Rest::Encoded { .. },
                ..
            }]
        ));
        assert_eq!(encoded[0].path, path);
        assert_eq!(encoded[0].to_state(), state);
        assert_eq!(encode_manifest(&encoded, &state_ref), bytes);
    }

    /// A project name that is not UTF-8 makes the manifest, or the journal
    /// record, that holds it damaged: it is not read lossily.
    #[test]
    fn a_project_that_is_not_utf8_is_damage() {
        let state = sample_state();
        let fields = [0u8; REST_BYTES];
        let bad = Entry {
            path: b"/x/a.jsonl",
            identity: state.identity,
            rest: Rest::Encoded {
                project: b"-p\xff",
                fields: &fields,
            },
        };
        let state_ref = StateRef {
            blob: BlobRef::of(b"blob"),
            journal: JournalRef::default(),
            appendable: true,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m");
        fs::write(&path, encode_manifest(&[bad], &state_ref)).expect("write");
        let mapped = FileBytes::open(&path).expect("open");
        assert!(check_manifest(mapped).is_err(), "the manifest is damaged");

        let record_of = |entry: &Entry<'_>| {
            let mut record = Vec::new();
            put_u64(&mut record, 1);
            put_section(&mut record, entry.path);
            record.push(1);
            put_state(&mut record, entry);
            put_section(&mut record, b"");
            record
        };
        assert!(
            decode_record(&record_of(&bad)).is_err(),
            "the record is damaged"
        );
        let good = Entry::of(bad.path, &state);
        assert!(
            decode_record(&record_of(&good)).is_ok(),
            "the same record, UTF-8"
        );
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        assert!(state.load().expect("load").is_none());
        let mut manifest = Manifest::default();
        manifest.files.insert("/x/a.jsonl".into(), sample_state());
        state.save(&manifest, b"first").expect("save");
        state.save(&manifest, b"second").expect("save");
        let (loaded, blob) = state.load().expect("load").expect("some");
        let checksum = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"second"));
        assert_eq!(loaded.state_id(), checksum);
        assert_eq!(loaded.decode(), manifest);
        assert_eq!(&*blob.blob, b"second");
        assert!(blob.changes.is_empty());
        let blobs = fs::read_dir(dir.path())
            .expect("ls")
            .filter(|e| {
                e.as_ref()
                    .map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("session-state.")
                    })
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(blobs, 1, "stale blobs are removed");
    }

    #[test]
    fn a_json_manifest_from_an_earlier_version_is_read_then_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        let blob = BlobRef::of(b"ledger");
        fs::write(dir.path().join(&blob.file), b"ledger").expect("blob");
        let legacy = serde_json::json!({
            "format": 1,
            "written_by": "ccotel 0.1.0",
            "session_state": {"file": blob.file, "bytes": blob.bytes, "xxh3": blob.xxh3},
            "files": {"/x/a.jsonl": sample_state()},
        });
        fs::write(
            dir.path().join(LEGACY_MANIFEST_FILE),
            serde_json::to_vec(&legacy).expect("json"),
        )
        .expect("write");
        let (saved, session_state) = state.load().expect("load").expect("some");
        let manifest = saved.decode();
        assert_eq!(manifest.files[Path::new("/x/a.jsonl")], sample_state());
        assert_eq!(&*session_state.blob, b"ledger");
        assert!(state.is_legacy());
        state.save(&manifest, &session_state.blob).expect("save");
        assert!(!state.is_legacy());
        assert!(!dir.path().join(LEGACY_MANIFEST_FILE).exists());
        let (saved, _) = state.load().expect("load").expect("some");
        assert_eq!(saved.decode(), manifest);
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("ls")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("session-state."))
            .collect();
        names.sort();
        names
    }

    fn state_at(offset: u64) -> FileState {
        FileState {
            offset,
            ..sample_state()
        }
    }

    fn map(entries: &[(&str, u64)]) -> Manifest {
        let files = entries
            .iter()
            .map(|(path, offset)| (PathBuf::from(path), state_at(*offset)))
            .collect();
        Manifest { files }
    }

    pub(super) fn load(state: &StateDir) -> (SavedManifest, SessionState) {
        state.load().expect("load").expect("some")
    }

    fn ledger_payloads(session_state: &SessionState) -> Vec<Vec<u8>> {
        session_state
            .changes
            .payloads()
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn journal_in(dir: &Path) -> PathBuf {
        dir.join(
            names_in(dir)
                .iter()
                .find(|n| n.ends_with(".journal"))
                .expect("journal"),
        )
    }

    #[test]
    fn changes_append_to_the_journal_until_a_save_folds_them_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        let blob_id = state
            .save(&map(&[("/x/a.jsonl", 20), ("/x/c.jsonl", 5)]), b"base")
            .expect("save");
        let (saved, _) = load(&state);
        let changes = [
            ("/x/a.jsonl".into(), Some(state_at(30))),
            ("/x/b.jsonl".into(), Some(state_at(7))),
        ];
        let first = state
            .append(&changes, saved.session_state(), b"one")
            .expect("append");
        let (saved, loaded) = load(&state);
        assert_eq!(saved.state_id(), first);
        let expected = map(&[("/x/a.jsonl", 30), ("/x/b.jsonl", 7), ("/x/c.jsonl", 5)]);
        assert_eq!(saved.decode(), expected);
        let paths: Vec<&[u8]> = saved.entries().map(|entry| entry.path).collect();
        assert_eq!(paths, [&b"/x/a.jsonl"[..], b"/x/b.jsonl", b"/x/c.jsonl"]);
        assert_eq!(ledger_payloads(&loaded), [b"one".to_vec()]);

        let unchanged = state
            .append(&[], saved.session_state(), b"")
            .expect("append nothing");
        assert_eq!(unchanged, first, "nothing appended, the same state");
        let gone = [("/x/a.jsonl".into(), None)];
        let second = state
            .append(&gone, saved.session_state(), b"two")
            .expect("append");
        let ids = [&blob_id, &first, &second];
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        let (saved, loaded) = load(&state);
        assert_eq!(saved.state_id(), second);
        assert_eq!(saved.decode(), map(&[("/x/b.jsonl", 7), ("/x/c.jsonl", 5)]));
        assert_eq!(&*loaded.blob, b"base");
        assert_eq!(ledger_payloads(&loaded), [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(names_in(dir.path()).len(), 2, "{:?}", names_in(dir.path()));

        let more = [("/x/d.jsonl".into(), Some(state_at(1)))];
        let folded_id = state
            .save_with(Some(&saved), &more, b"base, one, two")
            .expect("save");
        let (saved, folded) = load(&state);
        assert_eq!(saved.state_id(), folded_id);
        assert!(folded.changes.is_empty());
        let all = map(&[("/x/b.jsonl", 7), ("/x/c.jsonl", 5), ("/x/d.jsonl", 1)]);
        assert_eq!(saved.decode(), all);
        assert_eq!(
            names_in(dir.path()).len(),
            1,
            "the old journal goes with its blob"
        );
    }

    /// Any prefix of the journal is a consistent state: a record that cannot be
    /// read, and those after it, are dropped; their files are read again.
    #[test]
    fn a_damaged_journal_record_rolls_the_state_back_to_the_one_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        state
            .save(&map(&[("/x/a.jsonl", 20)]), b"base")
            .expect("save");
        let (saved, _) = load(&state);
        let one = [("/x/a.jsonl".into(), Some(state_at(30)))];
        let first = state
            .append(&one, saved.session_state(), b"one")
            .expect("append");
        let (saved, _) = load(&state);
        let two = [("/x/a.jsonl".into(), Some(state_at(40)))];
        state
            .append(&two, saved.session_state(), b"two")
            .expect("append");
        let (after_two, _) = load(&state);
        let journal = journal_in(dir.path());
        let mut bytes = fs::read(&journal).expect("read");
        // The second record's last byte, before the zeros written ahead.
        let last = after_two.session_state().journal.len as usize - 1;
        bytes[last] ^= 1;
        fs::write(&journal, bytes).expect("damage");
        let (saved, loaded) = load(&state);
        assert_eq!(saved.state_id(), first);
        assert_eq!(saved.decode(), map(&[("/x/a.jsonl", 30)]));
        assert_eq!(ledger_payloads(&loaded), [b"one".to_vec()]);
        // The next append replaces the damaged record.
        let three = [("/x/a.jsonl".into(), Some(state_at(50)))];
        let third = state
            .append(&three, saved.session_state(), b"three")
            .expect("append");
        let (saved, loaded) = load(&state);
        assert_eq!(saved.state_id(), third);
        assert_eq!(saved.decode(), map(&[("/x/a.jsonl", 50)]));
        assert_eq!(
            ledger_payloads(&loaded),
            [b"one".to_vec(), b"three".to_vec()]
        );
    }

    /// A journal extends the manifest written with its blob, not a later one
    /// that names a blob of the same content.
    #[test]
    fn a_new_base_with_the_same_blob_starts_without_a_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        state
            .save(&map(&[("/x/a.jsonl", 20)]), b"same")
            .expect("save");
        let (saved, _) = load(&state);
        let change = [("/x/b.jsonl".into(), Some(state_at(9)))];
        state
            .append(&change, saved.session_state(), b"")
            .expect("append");
        assert!(journal_in(dir.path()).exists());
        let other = map(&[("/x/z.jsonl", 1)]);
        let id = state.save(&other, b"same").expect("save");
        let (saved, loaded) = load(&state);
        assert_eq!(saved.state_id(), id);
        assert_eq!(saved.decode(), other);
        assert!(loaded.changes.is_empty());
    }

    /// Earlier formats: a manifest that names its journal's committed
    /// length, and one from before journals. Both are read; a change folds
    /// them into a new base rather than appending.
    #[test]
    fn manifests_of_earlier_formats_are_read_and_then_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        let manifest = map(&[("/x/a.jsonl", 20)]);
        state.save(&manifest, b"blob").expect("save");
        let path = dir.path().join(MANIFEST_FILE);
        let current = fs::read(&path).expect("read");
        let body = unseal(&current).expect("unseal");
        let mut input = Decoder::new(body);
        input.take(MAGIC.len()).expect("magic");
        input.section().expect("written by");
        input.section().expect("blob name");
        input.u64().expect("blob bytes");
        input.section().expect("blob xxh3");
        let journal_at = input.position();
        let mut without_journal = MAGIC_WITHOUT_JOURNAL.to_vec();
        without_journal.extend_from_slice(&body[MAGIC.len()..]);
        seal(&mut without_journal);
        let mut committing = MAGIC_COMMITTING_JOURNAL.to_vec();
        committing.extend_from_slice(&body[MAGIC.len()..journal_at]);
        committing.extend_from_slice(&[0; 16]);
        committing.extend_from_slice(&body[journal_at..]);
        seal(&mut committing);
        for old in [without_journal, committing] {
            fs::write(&path, old).expect("write");
            let (saved, loaded) = load(&state);
            assert_eq!(
                saved.state_id(),
                format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"blob"))
            );
            assert_eq!(saved.decode(), manifest);
            assert_eq!(&*loaded.blob, b"blob");
            assert!(!saved.session_state().journal_has_room(0));
        }
    }

    #[test]
    fn corruption_is_reported_not_panicked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        state.save(&Manifest::default(), b"blob").expect("save");
        let manifest_path = dir.path().join(MANIFEST_FILE);
        let good = fs::read(&manifest_path).expect("read");
        for bad in [&b"{\"format\":1,"[..], b"\x00\x01garbage", b"[]"] {
            fs::write(&manifest_path, bad).expect("write");
            assert!(matches!(state.load(), Err(ManifestError::Corrupt { .. })));
        }
        fs::write(&manifest_path, &good).expect("write");
        for entry in fs::read_dir(dir.path()).expect("ls").flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("session-state.")
            {
                fs::write(entry.path(), b"bl0b").expect("corrupt blob");
            }
        }
        let error = state.load().expect_err("checksum mismatch");
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
