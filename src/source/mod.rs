//! Where transcripts come from: the Claude config roots and the files under them
//! (with a cache of unchanged directories' entries),
//! reading complete lines from a byte offset, file identity, and the manifest that
//! records how far each file has been read (with the session state saved beside
//! it, and that state's journal of changes).
//!
//! Nothing here knows what a line means.

mod discover;
mod identity;
mod journal;
mod listed;
pub mod listing;
pub mod manifest;
mod reader;
pub mod tail;
pub mod watch;

pub use discover::{
    cpus_allowed, default_roots, discover, discover_with, roots_from_env, sort_by_path, Discovery,
    SkipReason, Skipped, TranscriptFile,
};
pub use identity::{FileIdentity, Marker, MARKER_WINDOW};
pub use listed::{FileHash, ListedFiles, ListedProject, ListedRun, ListingDigest};
pub use listing::Listing;
pub use manifest::{
    io_error, EntriesBlock, Entry, FileChange, FileState, Manifest, ManifestDigest, ManifestError,
    PreparedAppend, ProjectEntries, SavedManifest, SessionState, SessionStateFile, StateDir,
    StateRef, WrittenLast, ENTRIES_PER_BLOCK,
};
pub use reader::{FileRange, Line, LineReader, DEFAULT_MAX_INLINE_LINE};
pub use tail::{resume_point, Restart, Tailer};
