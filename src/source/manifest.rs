//! The manifest: per file, how far it has been read and how to recognise it, plus an
//! opaque blob of session state (the dedup ledger) that must stay consistent with
//! those offsets. Both are written atomically (temp file, fsync, rename, fsync of
//! the directory); the blob first, under a new name, then the manifest that names
//! it, so a crash at any point leaves a consistent pair.
//!
//! The manifest is binary (`manifest.bin`, checksummed): a rerun over an unchanged
//! corpus is mostly loading it, and decoding 10,000 files' state from JSON took
//! longer than the rest of such a run. The JSON manifest of earlier versions
//! (`manifest.json`) is still read, and replaced at the next save.
//!
//! A run that adds little appends its ledger changes to the blob's journal
//! ([`super::journal`]) instead of rewriting the blob, and names the journal's
//! committed length in the manifest it writes; [`StateDir::save`] folds
//! everything into a new blob once the journal has grown.
//!
//! Loading maps the files and checks them, but builds nothing: a
//! [`SavedManifest`] is compared with the listing as it lies on disk, and decoded
//! into a [`Manifest`] only when something changed.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::discover::TranscriptFile;
use super::identity::{FileIdentity, Marker};
use super::journal::{self, JournalRef};
use crate::codec::{put_i64, put_section, put_u64, seal, unseal, CodecError, Decoder, FileBytes};
use crate::transcript::LineStats;

const MANIFEST_FILE: &str = "manifest.bin";
const MAGIC: &[u8; 16] = b"ccotel-manifest3";
/// The format before journals: read, never written.
const MAGIC_WITHOUT_JOURNAL: &[u8; 16] = b"ccotel-manifest2";
/// Written by ccotel before 0.2; read, never written.
const LEGACY_MANIFEST_FILE: &str = "manifest.json";
const LEGACY_FORMAT: u32 = 1;

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Wraps an I/O error with the path it concerns.
pub fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io {
        path: path.to_owned(),
        source,
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

/// A manifest as the state directory holds it, checked but not yet decoded.
#[derive(Debug)]
pub struct SavedManifest {
    files: Saved,
    session_state: StateRef,
}

/// The session state as saved: the blob, and the journal payloads appended to it
/// since, to apply in order.
#[derive(Debug)]
pub struct SessionState {
    pub blob: FileBytes,
    pub changes: journal::Records,
}

/// The session state a manifest commits to: a blob and how much of its journal.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRef {
    blob: BlobRef,
    journal: JournalRef,
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
    /// cost per record of loading the blob, so it is kept to an eighth of it.
    pub fn journal_has_room(&self, more: usize) -> bool {
        self.journal.record_bytes() + more as u64 <= self.blob.bytes / 8
    }
}

#[derive(Debug)]
enum Saved {
    /// `manifest.bin` at `path`, whose file entries (sorted by path) start at
    /// `entries_at`.
    Encoded {
        path: PathBuf,
        bytes: FileBytes,
        entries_at: usize,
        count: usize,
    },
    /// An earlier version's `manifest.json`.
    Decoded(Manifest),
}

impl SavedManifest {
    /// Names the content of the session state loaded with this manifest (blob
    /// and journal, both checked against their checksums).
    pub fn state_id(&self) -> String {
        self.session_state.id()
    }

    /// The session state this manifest commits to, to append to.
    pub fn session_state(&self) -> &StateRef {
        &self.session_state
    }

    /// Files in the manifest.
    pub fn len(&self) -> usize {
        match &self.files {
            Saved::Encoded { count, .. } => *count,
            Saved::Decoded(manifest) => manifest.files.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `files` (sorted by path bytes, as a listing is) are exactly the manifest's
    /// files, none changed since: the usual rerun, decided without decoding.
    pub fn lists_unchanged(&self, files: &[TranscriptFile]) -> bool {
        if files.len() != self.len() {
            return false;
        }
        match &self.files {
            Saved::Encoded {
                bytes, entries_at, ..
            } => {
                let mut input = Decoder::new(&bytes[*entries_at..]);
                files.iter().all(|file| {
                    decode_entry(&mut input).is_ok_and(|entry| {
                        entry.path == file.path.as_os_str().as_bytes()
                            && file.identity.unchanged_since(&entry.identity)
                    })
                })
            }
            Saved::Decoded(manifest) => files.iter().all(|file| {
                manifest
                    .files
                    .get(&file.path)
                    .is_some_and(|state| file.identity.unchanged_since(&state.identity))
            }),
        }
    }

    /// The manifest, to change.
    pub fn decode(self) -> Result<Manifest, ManifestError> {
        let (path, bytes, entries_at, count) = match self.files {
            Saved::Decoded(manifest) => return Ok(manifest),
            Saved::Encoded {
                path,
                bytes,
                entries_at,
                count,
            } => (path, bytes, entries_at, count),
        };
        let mut input = Decoder::new(&bytes[entries_at..]);
        let mut files = FxHashMap::with_capacity_and_hasher(count, Default::default());
        for _ in 0..count {
            let entry = decode_entry(&mut input).map_err(|error| ManifestError::Corrupt {
                path: path.clone(),
                reason: error.to_string(),
            })?;
            files.insert(
                PathBuf::from(OsStr::from_bytes(entry.path)),
                entry.to_state(),
            );
        }
        Ok(Manifest { files })
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
    fn of(session_state: &[u8]) -> BlobRef {
        let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(session_state));
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

    /// The manifest and session state, or `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<(SavedManifest, SessionState)>, ManifestError> {
        load_from(&self.path)
    }

    /// The manifest on disk is an earlier version's, to be rewritten in this one's
    /// format even when nothing else changed.
    pub fn is_legacy(&self) -> bool {
        !self.path.join(MANIFEST_FILE).exists() && self.path.join(LEGACY_MANIFEST_FILE).exists()
    }

    /// Atomically replaces the manifest and its session-state blob (with no
    /// journal); returns the new state's id.
    pub fn save(&self, manifest: &Manifest, session_state: &[u8]) -> Result<String, ManifestError> {
        let state = StateRef {
            blob: BlobRef::of(session_state),
            journal: JournalRef::default(),
        };
        // Always rewritten: a blob of the same name on disk may be the damaged one.
        write_atomically(&self.path.join(&state.blob.file), session_state)?;
        self.write_manifest(manifest, &state)?;
        self.remove_stale_blobs(&state.blob.file);
        Ok(state.id())
    }

    /// Appends `changes` (unless empty) to the journal of the state `base` (the
    /// one loaded, which `changes` extend) and replaces the manifest with one that
    /// commits them: a write proportional to what changed. Returns the new
    /// state's id.
    pub fn append(
        &self,
        manifest: &Manifest,
        base: &StateRef,
        changes: &[u8],
    ) -> Result<String, ManifestError> {
        let path = journal::journal_path(&self.path.join(&base.blob.file));
        let journal = match changes.is_empty() {
            true => base.journal,
            false => journal::append(&path, base.journal, changes).map_err(io_error(&path))?,
        };
        let state = StateRef {
            blob: base.blob.clone(),
            journal,
        };
        self.write_manifest(manifest, &state)?;
        Ok(state.id())
    }

    /// The commit point of a save: the manifest names the state its offsets match.
    fn write_manifest(&self, manifest: &Manifest, state: &StateRef) -> Result<(), ManifestError> {
        write_atomically(
            &self.path.join(MANIFEST_FILE),
            &encode_manifest(manifest, state),
        )?;
        sync_dir(&self.path)?;
        let _ = fs::remove_file(self.path.join(LEGACY_MANIFEST_FILE));
        Ok(())
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
    let path = dir.join(MANIFEST_FILE);
    let (files, state) = match FileBytes::open(&path) {
        Ok(bytes) => check_manifest(&path, bytes).map_err(|reason| ManifestError::Corrupt {
            path: path.clone(),
            reason,
        })?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => match load_legacy(dir)? {
            Some((manifest, blob)) => (
                Saved::Decoded(manifest),
                StateRef {
                    blob,
                    journal: JournalRef::default(),
                },
            ),
            None => return Ok(None),
        },
        Err(error) => return Err(io_error(&path)(error)),
    };
    let corrupt = |reason: String| ManifestError::Corrupt {
        path: path.clone(),
        reason,
    };
    let blob = &state.blob;
    if blob.file.contains('/') {
        return Err(corrupt(format!("bad session state name {:?}", blob.file)));
    }
    let blob_path = dir.join(&blob.file);
    let blob_bytes = FileBytes::open(&blob_path)
        .map_err(|error| corrupt(format!("cannot read {}: {error}", blob_path.display())))?;
    if BlobRef::of(&blob_bytes) != *blob {
        return Err(corrupt(format!(
            "{} does not match its checksum",
            blob_path.display()
        )));
    }
    let journal_path = journal::journal_path(&blob_path);
    let changes =
        journal::read(&journal_path, state.journal).map_err(|why| ManifestError::Corrupt {
            reason: format!("it {why}"),
            path: journal_path,
        })?;
    let manifest = SavedManifest {
        files,
        session_state: state,
    };
    let session_state = SessionState {
        blob: blob_bytes,
        changes,
    };
    Ok(Some((manifest, session_state)))
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

/// Files sorted by path, so the same manifest always encodes to the same bytes.
fn encode_manifest(manifest: &Manifest, state: &StateRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + manifest.files.len() * 200);
    out.extend_from_slice(MAGIC);
    put_section(
        &mut out,
        format!("ccotel {}", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    let blob = &state.blob;
    put_section(&mut out, blob.file.as_bytes());
    put_u64(&mut out, blob.bytes);
    put_section(&mut out, blob.xxh3.as_bytes());
    put_u64(&mut out, state.journal.len);
    put_u64(&mut out, state.journal.digest);
    let mut entries: Vec<(&PathBuf, &FileState)> = manifest.files.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    put_u64(&mut out, entries.len() as u64);
    for (path, state) in entries {
        put_section(&mut out, path.as_os_str().as_bytes());
        put_section(&mut out, state.project.as_bytes());
        let id = &state.identity;
        for value in [id.dev, id.ino, id.size] {
            put_u64(&mut out, value);
        }
        put_i64(&mut out, id.mtime_ns);
        put_i64(&mut out, id.ctime_ns);
        put_u64(&mut out, state.offset);
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
            put_u64(&mut out, value);
        }
    }
    seal(&mut out);
    out
}

/// The smallest encoded file: two empty sections (path, project) and 15 numbers
/// (identity 5, offset 1, marker 3, line counts 6).
const MIN_FILE_BYTES: usize = 2 * 8 + 15 * 8;

/// Checks a `manifest.bin` through to its last entry, so that decoding it later
/// cannot fail, and finds where its entries start.
fn check_manifest(path: &Path, bytes: FileBytes) -> Result<(Saved, StateRef), String> {
    let invalid = |error: CodecError| error.to_string();
    let body = unseal(&bytes).map_err(invalid)?;
    let mut input = Decoder::new(body);
    let magic = input.take(MAGIC.len()).map_err(invalid)?;
    if magic != MAGIC && magic != MAGIC_WITHOUT_JOURNAL {
        return Err("not a ccotel manifest".into());
    }
    let _written_by = input.section().map_err(invalid)?;
    let blob = BlobRef {
        file: input.text().map_err(invalid)?.to_owned(),
        bytes: input.u64().map_err(invalid)?,
        xxh3: input.text().map_err(invalid)?.to_owned(),
    };
    let journal = match magic == MAGIC {
        true => JournalRef {
            len: input.u64().map_err(invalid)?,
            digest: input.u64().map_err(invalid)?,
        },
        false => JournalRef::default(),
    };
    let count = input.count(MIN_FILE_BYTES).map_err(invalid)?;
    let entries_at = body.len() - input.remaining();
    for _ in 0..count {
        decode_entry(&mut input).map_err(invalid)?;
    }
    input.finish().map_err(invalid)?;
    let saved = Saved::Encoded {
        path: path.to_owned(),
        bytes,
        entries_at,
        count,
    };
    Ok((saved, StateRef { blob, journal }))
}

/// One file's entry, borrowed from the encoded manifest.
struct Entry<'a> {
    path: &'a [u8],
    project: &'a str,
    identity: FileIdentity,
    offset: u64,
    marker: Marker,
    lines: LineStats,
}

impl Entry<'_> {
    fn to_state(&self) -> FileState {
        FileState {
            project: self.project.to_owned(),
            identity: self.identity,
            offset: self.offset,
            marker: self.marker,
            lines: self.lines,
        }
    }
}

fn decode_entry<'a>(input: &mut Decoder<'a>) -> Result<Entry<'a>, CodecError> {
    let path = input.section()?;
    let project = input.text()?;
    let identity = FileIdentity {
        dev: input.u64()?,
        ino: input.u64()?,
        size: input.u64()?,
        mtime_ns: input.i64()?,
        ctime_ns: input.i64()?,
    };
    let offset = input.u64()?;
    let marker = Marker {
        head_len: input.u64()?,
        head: input.u64()?,
        tail: input.u64()?,
    };
    let lines = LineStats {
        lines: input.u64()?,
        blank: input.u64()?,
        not_object: input.u64()?,
        malformed: input.u64()?,
        repaired: input.u64()?,
        oversized: input.u64()?,
    };
    Ok(Entry {
        path,
        project,
        identity,
        offset,
        marker,
        lines,
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

    fn sample_state() -> FileState {
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
        assert_eq!(loaded.decode().expect("decode"), manifest);
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
        let manifest = saved.decode().expect("decode");
        assert_eq!(manifest.files[Path::new("/x/a.jsonl")], sample_state());
        assert_eq!(&*session_state.blob, b"ledger");
        assert!(state.is_legacy());
        state.save(&manifest, &session_state.blob).expect("save");
        assert!(!state.is_legacy());
        assert!(!dir.path().join(LEGACY_MANIFEST_FILE).exists());
        let (saved, _) = state.load().expect("load").expect("some");
        assert_eq!(saved.decode().expect("decode"), manifest);
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

    #[test]
    fn changes_append_to_the_journal_until_a_save_folds_them_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        let mut manifest = Manifest::default();
        let blob_id = state.save(&manifest, b"base").expect("save");
        let (saved, _) = state.load().expect("load").expect("some");
        manifest.files.insert("/x/a.jsonl".into(), sample_state());
        let first = state
            .append(&manifest, saved.session_state(), b"one")
            .expect("append");
        let (saved, loaded) = state.load().expect("load").expect("some");
        assert_eq!(saved.state_id(), first);
        assert_eq!(saved.decode().expect("decode"), manifest);
        let (saved, _) = state.load().expect("load").expect("some");
        let unchanged = state
            .append(&manifest, saved.session_state(), b"")
            .expect("append nothing");
        assert_eq!(unchanged, first, "nothing appended, the same state");
        let second = state
            .append(&manifest, saved.session_state(), b"two")
            .expect("append");
        let ids = [&blob_id, &first, &second];
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        let (saved, loaded_again) = state.load().expect("load").expect("some");
        assert_eq!(saved.state_id(), second);
        assert_eq!(&*loaded_again.blob, b"base");
        let payloads: Vec<&[u8]> = loaded_again.changes.payloads().collect();
        assert_eq!(payloads, [&b"one"[..], b"two"]);
        assert_eq!(loaded.changes.len(), 1);
        assert_eq!(names_in(dir.path()).len(), 2, "{:?}", names_in(dir.path()));

        state.save(&manifest, b"base, one, two").expect("save");
        let (_, folded) = state.load().expect("load").expect("some");
        assert!(folded.changes.is_empty());
        assert_eq!(
            names_in(dir.path()).len(),
            1,
            "the old journal goes with its blob"
        );

        let (saved, _) = state.load().expect("load").expect("some");
        state
            .append(&manifest, saved.session_state(), b"three")
            .expect("append");
        let journal = dir.path().join(
            names_in(dir.path())
                .iter()
                .find(|n| n.ends_with(".journal"))
                .expect("journal"),
        );
        let mut bytes = fs::read(&journal).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&journal, bytes).expect("damage");
        let error = state.load().expect_err("a damaged journal");
        assert!(matches!(error, ManifestError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn a_manifest_written_before_journals_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        let mut manifest = Manifest::default();
        manifest.files.insert("/x/a.jsonl".into(), sample_state());
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
        let journal_at = body.len() - input.remaining();
        let mut old = MAGIC_WITHOUT_JOURNAL.to_vec();
        old.extend_from_slice(&body[MAGIC.len()..journal_at]);
        old.extend_from_slice(&body[journal_at + 16..]);
        seal(&mut old);
        fs::write(&path, old).expect("write");
        let (saved, loaded) = state.load().expect("load").expect("some");
        assert_eq!(
            saved.state_id(),
            format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"blob"))
        );
        assert_eq!(saved.decode().expect("decode"), manifest);
        assert_eq!(&*loaded.blob, b"blob");
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
