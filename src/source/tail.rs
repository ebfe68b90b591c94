//! Following files between runs and while they grow: which listed files have new
//! bytes, where to resume each, and which known files are gone.
//!
//! A file is resumed at its committed offset when it is the same file (device and
//! inode) and the bytes before the offset are unchanged (the marker); otherwise it
//! was truncated or replaced and is read again from its first byte. A file that
//! moved to a new path keeps its offset.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use rustc_hash::FxHashMap;

use super::{FileIdentity, FileState, Manifest, TranscriptFile};

/// Why a known file is read again from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Shorter than the committed offset.
    Truncated,
    /// Another file now has this path, or the bytes before the offset changed.
    Replaced,
}

/// Where to resume a known file, or why it must be read from the start.
pub fn resume_point(
    file: &File,
    now: &FileIdentity,
    before: &FileState,
) -> io::Result<Result<u64, Restart>> {
    if !now.same_file(&before.identity) {
        return Ok(Err(Restart::Replaced));
    }
    if now.size < before.offset {
        return Ok(Err(Restart::Truncated));
    }
    if !before.marker.matches(file, before.offset)? {
        return Ok(Err(Restart::Replaced));
    }
    Ok(Ok(before.offset))
}

/// A listed file with new bytes, and what was known about it.
#[derive(Debug)]
pub struct Pending {
    pub file: TranscriptFile,
    pub previous: Option<FileState>,
}

/// An opened file and where to start reading it.
#[derive(Debug)]
pub struct Opened {
    pub handle: File,
    pub identity: FileIdentity,
    pub start: u64,
    pub restart: Option<Restart>,
}

/// The read position of every known file.
#[derive(Debug, Default)]
pub struct Tailer {
    known: FxHashMap<PathBuf, FileState>,
}

impl Tailer {
    pub fn new(manifest: Manifest) -> Tailer {
        Tailer {
            known: manifest.files,
        }
    }

    pub fn known(&self) -> usize {
        self.known.len()
    }

    /// Splits a listing into files with something new (in listing order) and paths
    /// that are gone. Files whose identity is unchanged are passed over unopened.
    pub fn changes(&mut self, listed: Vec<TranscriptFile>) -> (Vec<Pending>, Vec<PathBuf>) {
        let mut seen: FxHashMap<PathBuf, ()> =
            FxHashMap::with_capacity_and_hasher(listed.len(), Default::default());
        let mut pending = Vec::new();
        let mut fresh = Vec::new();
        for file in listed {
            seen.insert(file.path.clone(), ());
            match self.known.get(&file.path) {
                Some(state) if file.identity.unchanged_since(&state.identity) => {}
                Some(state) => pending.push(Pending {
                    previous: Some(state.clone()),
                    file,
                }),
                None => fresh.push(file),
            }
        }
        let mut vanished: FxHashMap<(u64, u64), PathBuf> = self
            .known
            .iter()
            .filter(|(path, _)| !seen.contains_key(*path))
            .map(|(path, state)| ((state.identity.dev, state.identity.ino), path.clone()))
            .collect();
        for file in fresh {
            let moved_from = vanished.remove(&(file.identity.dev, file.identity.ino));
            let previous = moved_from.and_then(|old| self.known.remove(&old));
            // Known under its new path at once: if it cannot be read this pass,
            // the next one still resumes it, rather than reading it from byte 0.
            if let Some(state) = &previous {
                self.known.insert(file.path.clone(), state.clone());
            }
            pending.push(Pending { file, previous });
        }
        let gone: Vec<PathBuf> = vanished.into_values().collect();
        for path in &gone {
            self.known.remove(path);
        }
        (pending, gone)
    }

    /// Opens a pending file and decides where to start.
    pub fn open(&self, pending: &Pending) -> io::Result<Opened> {
        let handle = File::open(&pending.file.path)?;
        // Identity is taken before reading: bytes appended meanwhile are seen as a
        // change on the next pass.
        let identity = FileIdentity::of(&handle.metadata()?);
        let (start, restart) = match &pending.previous {
            Some(before) => match resume_point(&handle, &identity, before)? {
                Ok(offset) => (offset, None),
                Err(restart) => (0, Some(restart)),
            },
            None => (0, None),
        };
        Ok(Opened {
            handle,
            identity,
            start,
            restart,
        })
    }

    /// Records how far a file has been read.
    pub fn update(&mut self, path: PathBuf, state: FileState) {
        self.known.insert(path, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Marker;
    use crate::transcript::LineStats;

    fn listed(path: &str, size: u64) -> TranscriptFile {
        let identity = FileIdentity {
            dev: 1,
            ino: 7,
            size,
            mtime_ns: size as i64,
            ctime_ns: size as i64,
        };
        TranscriptFile {
            path: PathBuf::from(path),
            project: "p".into(),
            size,
            identity,
        }
    }

    fn read_up_to(file: &TranscriptFile) -> FileState {
        FileState {
            project: "p".into(),
            identity: file.identity,
            offset: file.size,
            marker: Marker {
                head_len: 0,
                head: 0,
                tail: 0,
            },
            lines: LineStats::default(),
        }
    }

    #[test]
    fn a_moved_file_not_read_in_its_first_pass_still_resumes_in_the_next() {
        let before = listed("/p/a.jsonl", 100);
        let mut tailer = Tailer::default();
        tailer.update(before.path.clone(), read_up_to(&before));

        let (pending, gone) = tailer.changes(vec![listed("/p/b.jsonl", 150)]);
        assert!(gone.is_empty(), "a move is not a deletion");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].previous.as_ref().map(|s| s.offset), Some(100));

        // The pass failed to open it, so nothing was recorded; it grew meanwhile.
        let (pending, gone) = tailer.changes(vec![listed("/p/b.jsonl", 180)]);
        assert!(gone.is_empty());
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].file.path, PathBuf::from("/p/b.jsonl"));
        assert_eq!(
            pending[0].previous.as_ref().map(|s| s.offset),
            Some(100),
            "resumed at its offset, not read again from byte 0"
        );
        assert_eq!(tailer.known(), 1);
    }
}
