//! What is committed after the sinks acknowledge a batch: each file's offset and
//! the session state (dedup ledger, open spans, finished sessions) that matches
//! those offsets.
//!
//! The reader runs ahead of the sinks, so each batch carries only what changed
//! since the previous one. The committer appends those changes to a journal (one
//! record and one fsync per batch, however large the state), and now and then
//! folds the journal into a new base snapshot written atomically. A commit's cost
//! is therefore proportional to what the batch changed, not to the history kept.
//!
//! Files in the export state directory:
//! - `manifest.bin` and `session-state.<hash>.bin`: the base snapshot
//!   ([`StateDir::save`]), the blob holding its generation, ledger, open spans and
//!   finished sessions;
//! - `journal.bin`: a header naming the base generation it extends, then records
//!   `[u32 length][u64 xxh3][payload]`. A torn last record (a crash mid-append) is
//!   dropped; that batch was never committed and is read again.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::codec::{journal_record, journal_record_at, put_section, put_u64, CodecError, Decoder};
use crate::session::{Ledger, LedgerError};
use crate::source::manifest::{io_error, write_atomically};
use crate::source::{FileState, Manifest, ManifestError, StateDir};

const BASE_MAGIC: &[u8; 16] = b"ccotel-export-2\n";
const JOURNAL_MAGIC: &[u8; 16] = b"ccotel-journal1\n";
const JOURNAL_FILE: &str = "journal.bin";
/// The journal is folded into a new base once it is larger than the base and
/// than this.
const COMPACT_MIN: u64 = 8 << 20;

/// The state after a batch, as changes to the state after the previous batch.
#[derive(Default)]
pub struct Checkpoint {
    /// New offsets, or `None` for files that are gone.
    pub files: Vec<(PathBuf, Option<FileState>)>,
    /// Ledger records that changed.
    pub ledger: Ledger,
    /// The tracker's whole open state (it is small).
    pub open_state: Vec<u8>,
    /// Sessions finished in this batch.
    pub closed: Vec<(String, Vec<u8>)>,
}

/// What a state directory held at start.
pub struct Restored {
    pub manifest: Manifest,
    pub ledger: Ledger,
    pub open_state: Vec<u8>,
    pub closed: Vec<(String, Vec<u8>)>,
}

/// The committed state and the directory it lives in.
pub struct Committer {
    dir: StateDir,
    generation: u64,
    manifest: Manifest,
    ledger: Ledger,
    open_state: Vec<u8>,
    closed: BTreeMap<String, Vec<u8>>,
    /// Open for appending once the journal is known to be valid.
    journal: Option<File>,
    journal_len: u64,
    base_len: u64,
}

impl Committer {
    /// Opens the state: the base, then the journal records that extend it. A
    /// missing or corrupt base is a warning and a fresh start (deterministic ids
    /// make re-sending what was sent harmless for spans).
    pub fn open(dir: StateDir) -> Result<(Committer, Restored), ManifestError> {
        let (generation, mut restored, base_len) = match load_base(dir.path()) {
            Ok(Some(base)) => base,
            Ok(None) => (0, Restored::empty(), 0),
            Err(reason) => {
                tracing::warn!(
                    "export state in {} is unreadable ({reason}); reading every transcript again",
                    dir.path().display()
                );
                (0, Restored::empty(), 0)
            }
        };
        let journal_path = dir.path().join(JOURNAL_FILE);
        let replayed = if generation > 0 {
            replay_journal(&journal_path, generation, &mut restored)
        } else {
            None
        };
        let mut ledger = Ledger::new();
        ledger.merge(&restored.ledger);
        let mut committer = Committer {
            journal: None,
            dir,
            generation,
            manifest: Manifest {
                files: restored.manifest.files.clone(),
            },
            ledger,
            open_state: restored.open_state.clone(),
            closed: restored.closed.iter().cloned().collect(),
            journal_len: 0,
            base_len,
        };
        match replayed {
            Some(valid_len) => committer.reopen_journal(valid_len)?,
            // No base yet, or a journal that does not extend it: start a new base.
            None => committer.compact()?,
        }
        Ok((committer, restored))
    }

    /// Records a batch's changes durably: one journal record, one fsync.
    pub fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), ManifestError> {
        let path = self.dir.path().join(JOURNAL_FILE);
        let payload = encode_changes(&checkpoint).map_err(|reason| ManifestError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        let (record, _) = journal_record(&payload).map_err(|e| ManifestError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let journal = self.journal.as_mut().ok_or_else(|| ManifestError::Io {
            path: path.clone(),
            error: io::Error::other("the journal is not open"),
        })?;
        journal
            .write_all(&record)
            .and_then(|()| journal.sync_data())
            .map_err(io_error(&path))?;
        self.journal_len += record.len() as u64;
        self.apply(checkpoint);
        if self.journal_len > COMPACT_MIN.max(self.base_len) {
            self.compact()?;
        }
        Ok(())
    }

    /// Offsets committed so far, by file.
    pub fn offsets(&self) -> impl Iterator<Item = (&PathBuf, u64)> {
        self.manifest.files.iter().map(|(p, s)| (p, s.offset))
    }

    fn apply(&mut self, checkpoint: Checkpoint) {
        apply_files(&mut self.manifest, checkpoint.files);
        self.ledger.merge(&checkpoint.ledger);
        self.open_state = checkpoint.open_state;
        self.closed.extend(checkpoint.closed);
    }

    /// Writes everything as a new base of the next generation, then starts an
    /// empty journal for it. A crash in between leaves a journal of the old
    /// generation, which the next start ignores: the new base holds it all.
    fn compact(&mut self) -> Result<(), ManifestError> {
        self.generation += 1;
        let blob = encode_base(
            self.generation,
            &self.ledger,
            &self.open_state,
            &self.closed,
        )
        .map_err(|error| ManifestError::Corrupt {
            path: self.dir.path().to_owned(),
            reason: error.to_string(),
        })?;
        self.dir.save(&self.manifest, &blob)?;
        self.base_len = blob.len() as u64;
        let path = self.dir.path().join(JOURNAL_FILE);
        write_atomically(&path, &journal_header(self.generation))?;
        self.reopen_journal(journal_header(self.generation).len() as u64)
    }

    /// Opens the journal for appending after its last valid record.
    fn reopen_journal(&mut self, valid_len: u64) -> Result<(), ManifestError> {
        let path = self.dir.path().join(JOURNAL_FILE);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        file.set_len(valid_len).map_err(io_error(&path))?;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        file.flush().map_err(io_error(&path))?;
        self.journal = Some(file);
        self.journal_len = valid_len;
        Ok(())
    }
}

impl Restored {
    fn empty() -> Restored {
        Restored {
            manifest: Manifest::default(),
            ledger: Ledger::new(),
            open_state: Vec::new(),
            closed: Vec::new(),
        }
    }
}

fn apply_files(manifest: &mut Manifest, files: Vec<(PathBuf, Option<FileState>)>) {
    for (path, state) in files {
        match state {
            Some(state) => manifest.files.insert(path, state),
            None => manifest.files.remove(&path),
        };
    }
}

fn journal_header(generation: u64) -> Vec<u8> {
    let mut header = JOURNAL_MAGIC.to_vec();
    put_u64(&mut header, generation);
    header
}

/// The committed offsets in an export state directory, read without its lock
/// (for inspecting a running `ccotel run`; a read that races a compaction fails
/// and can be retried).
pub fn committed_manifest(export_dir: &Path) -> Result<Manifest, String> {
    let Some((generation, mut restored, _)) = load_base(export_dir)? else {
        return Ok(Manifest::default());
    };
    replay_journal(&export_dir.join(JOURNAL_FILE), generation, &mut restored);
    Ok(restored.manifest)
}

/// The base snapshot, or `Ok(None)` when there is none yet.
fn load_base(dir: &Path) -> Result<Option<(u64, Restored, u64)>, String> {
    let Some((manifest, state)) =
        crate::source::manifest::load_from(dir).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    // The export state keeps its own journal (above); the blob's is never used.
    if !state.changes.is_empty() {
        return Err("the base has a session-state journal, which export never writes".into());
    }
    let manifest = manifest.decode();
    let (generation, restored) = decode_base(manifest, &state.blob).map_err(|e| e.to_string())?;
    Ok(Some((generation, restored, state.blob.len() as u64)))
}

fn decode_base(manifest: Manifest, blob: &[u8]) -> Result<(u64, Restored), CodecError> {
    let mut reader = Decoder::new(blob);
    if reader.take(BASE_MAGIC.len())? != BASE_MAGIC {
        return Err(CodecError::Invalid(
            "not an export state file of this version".into(),
        ));
    }
    let generation = reader.u64()?;
    let ledger = Ledger::decode(reader.section()?)
        .map_err(|error| CodecError::Invalid(error.to_string()))?;
    let restored = Restored {
        manifest,
        ledger,
        open_state: reader.section()?.to_vec(),
        closed: take_pairs(&mut reader)?,
    };
    Ok((generation, restored))
}

/// Applies the journal's records to `restored`; returns the length of its valid
/// prefix, or `None` when there is no journal for this generation.
fn replay_journal(path: &Path, generation: u64, restored: &mut Restored) -> Option<u64> {
    let bytes = fs::read(path).ok()?;
    let header = journal_header(generation);
    if !bytes.starts_with(&header) {
        return None;
    }
    let mut at = header.len();
    let mut records = 0;
    while let Some((payload, _)) = journal_record_at(&bytes, at) {
        let next = payload.end;
        let Ok(changes) = decode_changes(&bytes[payload]) else {
            break;
        };
        apply_files(&mut restored.manifest, changes.files);
        restored.ledger.merge(&changes.ledger);
        restored.open_state = changes.open_state;
        restored.closed.extend(changes.closed);
        at = next;
        records += 1;
    }
    if at < bytes.len() {
        tracing::info!(
            "dropped a torn last record from {} (a batch that was not committed)",
            path.display()
        );
    }
    tracing::debug!(records, "replayed the export journal");
    Some(at as u64)
}

fn encode_base(
    generation: u64,
    ledger: &Ledger,
    open_state: &[u8],
    closed: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, LedgerError> {
    let mut blob = BASE_MAGIC.to_vec();
    put_u64(&mut blob, generation);
    put_section(&mut blob, &ledger.encode()?);
    put_section(&mut blob, open_state);
    put_pairs(
        &mut blob,
        closed.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
    );
    Ok(blob)
}

fn encode_changes(checkpoint: &Checkpoint) -> Result<Vec<u8>, String> {
    let mut payload = Vec::new();
    let files = serde_json::to_vec(&checkpoint.files)
        .map_err(|error| format!("cannot encode the offsets: {error}"))?;
    put_section(&mut payload, &files);
    let ledger = checkpoint
        .ledger
        .encode()
        .map_err(|error| error.to_string())?;
    put_section(&mut payload, &ledger);
    put_section(&mut payload, &checkpoint.open_state);
    put_pairs(
        &mut payload,
        checkpoint
            .closed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice())),
    );
    Ok(payload)
}

fn decode_changes(payload: &[u8]) -> Result<Checkpoint, String> {
    let mut reader = Decoder::new(payload);
    let text = |error: CodecError| error.to_string();
    let files =
        serde_json::from_slice(reader.section().map_err(text)?).map_err(|e| e.to_string())?;
    let ledger = Ledger::decode(reader.section().map_err(text)?).map_err(|e| e.to_string())?;
    let open_state = reader.section().map_err(text)?.to_vec();
    let closed = take_pairs(&mut reader).map_err(text)?;
    Ok(Checkpoint {
        files,
        ledger,
        open_state,
        closed,
    })
}

fn put_pairs<'a>(out: &mut Vec<u8>, pairs: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>) {
    put_u64(out, pairs.len() as u64);
    for (key, value) in pairs {
        put_section(out, key.as_bytes());
        put_section(out, value);
    }
}

/// Reads what `put_pairs` wrote.
fn take_pairs(input: &mut Decoder<'_>) -> Result<Vec<(String, Vec<u8>)>, CodecError> {
    let count = input.count(16)?;
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let key = input.text()?.to_owned();
        pairs.push((key, input.section()?.to_vec()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FileIdentity, Marker};
    use crate::transcript::LineStats;

    fn state(offset: u64) -> FileState {
        FileState {
            project: "p".into(),
            identity: FileIdentity {
                dev: 1,
                ino: 2,
                size: offset,
                mtime_ns: 3,
                ctime_ns: 4,
            },
            offset,
            marker: Marker {
                head_len: 0,
                head: 0,
                tail: 0,
            },
            lines: LineStats::default(),
        }
    }

    fn checkpoint(offset: u64) -> Checkpoint {
        Checkpoint {
            files: vec![(PathBuf::from("/a.jsonl"), Some(state(offset)))],
            ledger: Ledger::new(),
            open_state: format!("open {offset}").into_bytes(),
            closed: vec![(format!("s{offset}"), b"{}".to_vec())],
        }
    }

    fn open(dir: &Path) -> (Committer, Restored) {
        Committer::open(StateDir::open(dir).expect("state dir")).expect("committer")
    }

    #[test]
    fn commits_survive_a_restart_and_a_torn_record_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut committer, restored) = open(dir.path());
            assert!(restored.manifest.files.is_empty());
            committer.commit(checkpoint(10)).expect("commit");
            committer.commit(checkpoint(20)).expect("commit");
        }
        // A crash in the middle of appending a third record.
        let journal = dir.path().join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&journal)
            .expect("journal");
        file.write_all(&[200, 0, 0, 0, 1, 2, 3])
            .expect("torn write");
        drop(file);
        let (mut committer, restored) = open(dir.path());
        assert_eq!(restored.manifest.files[Path::new("/a.jsonl")].offset, 20);
        assert_eq!(restored.open_state, b"open 20");
        assert_eq!(restored.closed.len(), 2);
        // Appends continue after the last good record.
        committer.commit(checkpoint(30)).expect("commit");
        drop(committer);
        let (_, restored) = open(dir.path());
        assert_eq!(restored.manifest.files[Path::new("/a.jsonl")].offset, 30);
        assert_eq!(restored.closed.len(), 3);
    }

    #[test]
    fn compaction_folds_the_journal_into_the_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut committer, _) = open(dir.path());
        committer.commit(checkpoint(5)).expect("commit");
        committer.compact().expect("compact");
        committer.commit(checkpoint(6)).expect("commit");
        drop(committer);
        let (_, restored) = open(dir.path());
        assert_eq!(restored.manifest.files[Path::new("/a.jsonl")].offset, 6);
        assert_eq!(restored.closed.len(), 2);
        // A journal of an older generation (a crash right after compaction) is ignored.
        let journal = dir.path().join(JOURNAL_FILE);
        let (mut committer, _) = open(dir.path());
        committer.commit(checkpoint(7)).expect("commit");
        let old = fs::read(&journal).expect("read");
        committer.compact().expect("compact");
        drop(committer);
        fs::write(&journal, &old).expect("restore an old journal");
        let (_, restored) = open(dir.path());
        assert_eq!(restored.manifest.files[Path::new("/a.jsonl")].offset, 7);
    }
}
