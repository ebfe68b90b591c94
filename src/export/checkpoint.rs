//! What is committed after the sinks acknowledge a batch: each file's offset and
//! the session state (dedup ledger and open spans) that matches those offsets.
//!
//! The reader runs ahead of the sinks, so each batch carries only what changed
//! since the previous one; the committer applies changes in batch order to its own
//! copy and writes it atomically, so the state on disk never runs ahead of what a
//! destination has.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::session::Ledger;
use crate::source::{FileState, Manifest, ManifestError, StateDir};

const MAGIC: &[u8; 16] = b"ccotel-export-1\n";

/// The state after a batch, as changes to the state after the previous batch.
#[derive(Default)]
pub struct Checkpoint {
    /// New offsets, or `None` for files that are gone.
    pub files: HashMap<PathBuf, Option<FileState>>,
    /// Ledger records that changed.
    pub ledger: Ledger,
    /// The tracker's whole open state (it is small).
    pub open_state: Vec<u8>,
}

/// The committed state and the directory it lives in.
pub struct Committer {
    dir: StateDir,
    manifest: Manifest,
    ledger: Ledger,
    open_state: Vec<u8>,
}

/// What a state directory held at start.
pub struct Restored {
    pub manifest: Manifest,
    pub ledger: Ledger,
    pub open_state: Vec<u8>,
}

impl Committer {
    /// Opens the state; a missing or corrupt state is a warning and a fresh start
    /// (deterministic ids make re-sending what was sent harmless for spans).
    pub fn open(dir: StateDir) -> (Committer, Restored) {
        let restored = match dir.load() {
            Ok(Some((manifest, blob))) => {
                match decode_blob(&blob) {
                    Ok((ledger, open_state)) => Restored {
                        manifest,
                        ledger,
                        open_state,
                    },
                    Err(reason) => {
                        tracing::warn!("export state in {} is corrupt ({reason}); reading every transcript again", dir.path().display());
                        Restored::empty()
                    }
                }
            }
            Ok(None) => Restored::empty(),
            Err(error) => {
                tracing::warn!("{error}; reading every transcript again");
                Restored::empty()
            }
        };
        let mut ledger = Ledger::new();
        ledger.merge(&restored.ledger);
        let committer = Committer {
            dir,
            manifest: Manifest {
                files: restored.manifest.files.clone(),
            },
            ledger,
            open_state: restored.open_state.clone(),
        };
        (committer, restored)
    }

    /// Applies a batch's changes and writes the state atomically.
    pub fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), ManifestError> {
        for (path, state) in checkpoint.files {
            match state {
                Some(state) => self.manifest.files.insert(path, state),
                None => self.manifest.files.remove(&path),
            };
        }
        self.ledger.merge(&checkpoint.ledger);
        self.open_state = checkpoint.open_state;
        self.dir
            .save(&self.manifest, &encode_blob(&self.ledger, &self.open_state))
    }

    /// Offsets committed so far, by file.
    pub fn offsets(&self) -> impl Iterator<Item = (&PathBuf, u64)> {
        self.manifest.files.iter().map(|(p, s)| (p, s.offset))
    }
}

impl Restored {
    fn empty() -> Restored {
        Restored {
            manifest: Manifest::default(),
            ledger: Ledger::new(),
            open_state: Vec::new(),
        }
    }
}

fn encode_blob(ledger: &Ledger, open_state: &[u8]) -> Vec<u8> {
    let ledger = ledger.encode();
    let mut blob = Vec::with_capacity(MAGIC.len() + 8 + ledger.len() + open_state.len());
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&(ledger.len() as u64).to_le_bytes());
    blob.extend_from_slice(&ledger);
    blob.extend_from_slice(open_state);
    blob
}

fn decode_blob(blob: &[u8]) -> Result<(Ledger, Vec<u8>), String> {
    let rest = blob
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not an export state file")?;
    let (len, rest) = rest.split_at_checked(8).ok_or("truncated")?;
    let len = u64::from_le_bytes(len.try_into().map_err(|_| "truncated")?) as usize;
    let (ledger, open_state) = rest.split_at_checked(len).ok_or("truncated ledger")?;
    let ledger = Ledger::decode(ledger).map_err(|e| e.to_string())?;
    Ok((ledger, open_state.to_vec()))
}
