//! The manifest: per file, how far it has been read and how to recognise it, plus an
//! opaque blob of session state (the dedup ledger) that must stay consistent with
//! those offsets. Both are written atomically (temp file, fsync, rename, fsync of
//! the directory); the blob first, under a new name, then the manifest that names
//! it, so a crash at any point leaves a consistent pair.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::{FileIdentity, Marker};
use crate::transcript::LineStats;

const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: u32 = 1;

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
    pub files: HashMap<PathBuf, FileState>,
}

/// The manifest as read from disk.
#[derive(Deserialize)]
struct ManifestFile {
    format: u32,
    session_state: BlobRef,
    files: HashMap<PathBuf, FileState>,
}

/// The manifest as written: files sorted by path, so the file diffs cleanly.
#[derive(Serialize)]
struct ManifestFileOut<'a> {
    format: u32,
    written_by: String,
    session_state: BlobRef,
    #[serde(serialize_with = "sorted_by_path")]
    files: &'a HashMap<PathBuf, FileState>,
}

fn sorted_by_path<S: serde::Serializer>(
    files: &&HashMap<PathBuf, FileState>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut entries: Vec<(&PathBuf, &FileState)> = files.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    serializer.collect_map(entries)
}

#[derive(Serialize, Deserialize)]
struct BlobRef {
    file: String,
    bytes: u64,
    xxh3: String,
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

    /// The manifest and session-state blob, or `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<(Manifest, Vec<u8>)>, ManifestError> {
        load_from(&self.path)
    }

    /// Atomically replaces the manifest and its session-state blob.
    pub fn save(&self, manifest: &Manifest, session_state: &[u8]) -> Result<(), ManifestError> {
        let hash = xxhash_rust::xxh3::xxh3_64(session_state);
        let blob_name = format!("session-state.{hash:016x}.bin");
        let blob_path = self.path.join(&blob_name);
        // Always rewritten: a blob of the same name on disk may be the damaged one.
        write_atomically(&blob_path, session_state)?;
        let file = ManifestFileOut {
            format: FORMAT,
            written_by: format!("ccotel {}", env!("CARGO_PKG_VERSION")),
            session_state: BlobRef {
                file: blob_name.clone(),
                bytes: session_state.len() as u64,
                xxh3: format!("{hash:016x}"),
            },
            files: &manifest.files,
        };
        let text = serde_json::to_vec(&file).map_err(|error| ManifestError::Corrupt {
            path: self.path.join(MANIFEST_FILE),
            reason: error.to_string(),
        })?;
        write_atomically(&self.path.join(MANIFEST_FILE), &text)?;
        sync_dir(&self.path)?;
        self.remove_stale_blobs(&blob_name);
        Ok(())
    }

    fn remove_stale_blobs(&self, keep: &str) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("session-state.") && name != keep {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads a state directory's manifest and blob without taking its lock: for
/// inspecting the state of a running process. `Ok(None)` when there is none yet.
pub fn load_from(dir: &Path) -> Result<Option<(Manifest, Vec<u8>)>, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path)(error)),
    };
    let corrupt = |reason: String| ManifestError::Corrupt {
        path: path.clone(),
        reason,
    };
    let file: ManifestFile =
        serde_json::from_slice(&text).map_err(|error| corrupt(error.to_string()))?;
    if file.format != FORMAT {
        return Err(corrupt(format!("unsupported format {}", file.format)));
    }
    let blob_name = &file.session_state.file;
    if blob_name.contains('/') {
        return Err(corrupt(format!("bad session state name {blob_name:?}")));
    }
    let blob_path = dir.join(blob_name);
    let blob = fs::read(&blob_path)
        .map_err(|error| corrupt(format!("cannot read {}: {error}", blob_path.display())))?;
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&blob));
    if blob.len() as u64 != file.session_state.bytes || hash != file.session_state.xxh3 {
        return Err(corrupt(format!(
            "{} does not match its checksum",
            blob_path.display()
        )));
    }
    Ok(Some((Manifest { files: file.files }, blob)))
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
        assert_eq!(loaded, manifest);
        assert_eq!(blob, b"second");
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
