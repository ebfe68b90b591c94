//! Reading transcripts into the ledger: decides which bytes of which files are new
//! (from the manifest), reads them on worker threads, and merges what they count.
//!
//! Every ledger observation is idempotent and order-independent, so a file read
//! again after a crash, a corrupt manifest or a replaced file never counts a
//! response twice; offsets only decide how much work a run does.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::{Scope, ScopedJoinHandle};

use crate::session::{Ledger, LedgerDelta, LedgerError, Observation, ResponseKey, TokenCounts};
pub use crate::source::Restart;
use crate::source::{
    cpus_allowed, io_error, resume_point, sort_by_path, FileChange, FileIdentity, FileRange,
    FileState, Line, LineReader, ListedFiles, ManifestDigest, ManifestError, Marker,
    PreparedAppend, SavedManifest, SessionStateFile, StateDir, TranscriptFile,
    DEFAULT_MAX_INLINE_LINE,
};
use crate::transcript::{
    decode_line, decode_reader, parse_timestamp_ms, DecodeError, Decoded, LineStats, UsageLine,
};

mod plan;

use plan::{plan_all, Job, Plan};

/// How to read.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Worker threads; 0 means one per CPU, or fewer when there is little to
    /// read.
    pub threads: usize,
    /// Lines longer than this are decoded by streaming rather than in memory.
    pub max_inline_line: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            threads: 0,
            max_inline_line: DEFAULT_MAX_INLINE_LINE,
        }
    }
}

/// Bytes to read and bytes read so far, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
}

/// What a run did, for the user.
#[derive(Debug, Default)]
pub struct IngestSummary {
    pub files: usize,
    pub files_read: usize,
    pub files_unchanged: usize,
    pub files_restarted: Vec<(PathBuf, Restart)>,
    /// Files in the manifest that are gone from disk; their counted usage stays.
    pub files_gone: usize,
    pub bytes_read: u64,
    /// Lines read this run, by outcome.
    pub lines: LineStats,
    /// Files with lines skipped this run, and how many.
    pub files_with_skipped_lines: Vec<(PathBuf, LineStats)>,
    /// Usage lines with no readable timestamp (dated 1970-01-01).
    pub usage_lines_without_timestamp: u64,
    /// Files that could not be read; their manifest state is kept as it was.
    pub errors: Vec<(PathBuf, String)>,
}

/// The result of a run: the ledger with everything counted, and what happened.
pub struct Ingest {
    pub ledger: Ledger,
    pub summary: IngestSummary,
    /// The id of the saved state that holds this ledger (`StateRef::id`); `None`
    /// when the run saved nothing, as a full scan does not.
    pub saved_state: Option<String>,
}

/// Reads every file from its first byte, with no manifest: what `--full` does.
pub fn full_scan(
    files: Vec<TranscriptFile>,
    options: &IngestOptions,
    progress: &Progress,
) -> Ingest {
    let mut files: Vec<&TranscriptFile> = files.iter().collect();
    sort_by_path(&mut files);
    match ingest(
        plan_all(&files, None),
        Restoring::fresh(),
        None,
        options,
        progress,
    ) {
        Ok(read) => read.result,
        Err(error) => unreachable!("a ledger that is not restored cannot fail to be: {error}"),
    }
}

/// The saved ledger: restored, or not yet, because a speculation recalled its
/// output by the state's id alone.
enum SavedLedger {
    /// With the blob it was restored from, if any, to name if it is damaged.
    Restored(Ledger, Option<PathBuf>),
    Deferred(SessionStateFile),
    /// Failed in a restore the run began before it needed the ledger (damage,
    /// or an error reading it): for it to handle once it does, as if it had
    /// begun the restore then.
    Failed(ManifestError),
}

impl SavedLedger {
    /// The ledger, if it was restored.
    fn restored(self) -> Option<Ledger> {
        match self {
            SavedLedger::Restored(ledger, _) => Some(ledger),
            SavedLedger::Deferred(_) | SavedLedger::Failed(_) => None,
        }
    }

    /// Starts restoring a deferred ledger on a thread of `scope`, to go on while
    /// the run plans and reads: only the merge needs it. `whole` says, on that
    /// thread, whether to check it whole (see [`restore_ledger`]).
    fn restore_in<'scope>(
        self,
        scope: &'scope Scope<'scope, '_>,
        whole: impl FnOnce() -> bool + Send + 'scope,
    ) -> Restoring<'scope> {
        match self {
            SavedLedger::Restored(ledger, blob) => Restoring::Ready { ledger, blob },
            SavedLedger::Failed(error) => Restoring::Failed(error),
            SavedLedger::Deferred(file) => Restoring::Thread {
                blob: file.blob_path().to_owned(),
                thread: scope.spawn(move || restore_ledger(file, whole())),
            },
        }
    }
}

/// A ledger to merge into, ready or being restored.
enum Restoring<'scope> {
    Ready {
        ledger: Ledger,
        /// The blob it was restored from, if any.
        blob: Option<PathBuf>,
    },
    Thread {
        blob: PathBuf,
        thread: ScopedJoinHandle<'scope, Result<Ledger, ManifestError>>,
    },
    Failed(ManifestError),
}

impl Restoring<'_> {
    fn fresh() -> Self {
        Restoring::Ready {
            ledger: Ledger::new(),
            blob: None,
        }
    }

    /// The ledger, and the blob it was restored from, if any; a thread that
    /// panicked counts as damage: the state is read again rather than trusted.
    fn wait(self) -> Result<(Ledger, Option<PathBuf>), ManifestError> {
        match self {
            Restoring::Ready { ledger, blob } => Ok((ledger, blob)),
            Restoring::Failed(error) => Err(error),
            Restoring::Thread { blob, thread } => match thread.join() {
                Ok(restored) => restored.map(|ledger| (ledger, Some(blob))),
                Err(_) => Err(ManifestError::Corrupt {
                    path: blob,
                    reason: "restoring the ledger from it failed".into(),
                }),
            },
        }
    }
}

/// What [`ingest`] read.
struct Reading {
    result: Ingest,
    /// What changed in the manifest, sorted by path.
    file_changes: Vec<FileChange>,
    /// Why the saved ledger, deferred until now, could not be restored; every
    /// file was then read from its start, as on a first run.
    discarded: Option<String>,
}

/// Reads what `plan` found new on top of the previous run's ledger it was planned
/// against (an empty one for a full scan). What the run added to the ledger is
/// also observed in `delta`, if given.
///
/// A damaged ledger is [`ManifestError::Corrupt`], for the caller to read every
/// file again ([`read_again`]); one that cannot be read is
/// [`ManifestError::Io`].
fn ingest(
    plan: Plan<'_>,
    ledger: Restoring<'_>,
    delta: Option<&mut LedgerDelta>,
    options: &IngestOptions,
    progress: &Progress,
) -> Result<Reading, ManifestError> {
    let started = std::time::Instant::now();
    let expected: u64 = plan
        .jobs
        .iter()
        .map(|job| {
            job.file
                .size
                .saturating_sub(job.previous.as_ref().map_or(0, |p| p.offset))
        })
        .sum();
    progress.bytes_total.store(expected, Ordering::Relaxed);
    let (outcomes, ledgers) = run_workers(&plan.jobs, expected, options, progress);
    tracing::debug!(elapsed = ?started.elapsed(), "new lines read");
    let mut delta = delta;
    let merged = ledger.wait().and_then(|(mut ledger, blob)| {
        tracing::debug!(elapsed = ?started.elapsed(), "saved ledger restored");
        for worker_ledger in &ledgers {
            match delta.as_deref_mut() {
                Some(delta) => ledger.merge_recording(worker_ledger, delta),
                None => ledger.merge(worker_ledger),
            }
        }
        tracing::debug!(elapsed = ?started.elapsed(), "merged into the saved ledger");
        // The saved records looked in were checked as they were: damage there
        // means some were not found, so what was merged cannot be trusted.
        if let Some(blob) = &blob {
            ledger.check().map_err(damaged(blob))?;
        }
        Ok(ledger)
    });
    // Damage is the caller's to recover from (see [`read_again`]): what was
    // read goes with the offsets it was read from.
    let ledger = merged?;
    let Plan {
        files,
        jobs,
        unchanged,
        gone,
        renamed,
        ..
    } = plan;
    let mut summary = IngestSummary {
        files,
        files_unchanged: unchanged,
        files_gone: gone.len() - renamed,
        ..IngestSummary::default()
    };
    let mut file_changes: Vec<FileChange> = gone.into_iter().map(|path| (path, None)).collect();
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        if let Some(change) = record_outcome(job, outcome, &mut summary) {
            file_changes.push(change);
        }
    }
    file_changes
        .sort_unstable_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    let result = Ingest {
        ledger,
        summary,
        saved_state: None,
    };
    Ok(Reading {
        result,
        file_changes,
        discarded: None,
    })
}

/// Reads every listed file from the start, with nothing saved: for a run that
/// found the saved ledger damaged (`damage`) once it had read on top of it. The
/// result says so (`discarded`): its file changes are to be saved as a new
/// base, not on top of the previous manifest.
fn read_again(
    listed: &ListedFiles,
    damage: ManifestError,
    options: &IngestOptions,
    progress: &Progress,
) -> Result<Reading, ManifestError> {
    progress.bytes_done.store(0, Ordering::Relaxed);
    let files = listed.sorted();
    let read = ingest(
        plan_all(&files, None),
        Restoring::fresh(),
        None,
        options,
        progress,
    )?;
    Ok(Reading {
        discarded: Some(damage.to_string()),
        ..read
    })
}

/// What the state directory held before a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorState {
    /// No manifest yet: a first run.
    Empty,
    /// The manifest was read, and the ledger too unless the run's output was
    /// recalled without it (see [`Speculation`]).
    Loaded,
    /// They could not be read (the reason); everything was read again.
    Discarded(String),
}

/// A run that could not complete.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("listing transcripts: {0}")]
    Listing(io::Error),
    /// The state could not be read or saved; the error names the file.
    #[error("state directory: {0}")]
    State(ManifestError),
}

// By hand, not `#[from]`, which would also make each a `source`: the messages
// hold them, and a chain that printed them again would say them twice.
impl From<io::Error> for IngestError {
    fn from(error: io::Error) -> Self {
        IngestError::Listing(error)
    }
}

impl From<ManifestError> for IngestError {
    fn from(error: ManifestError) -> Self {
        IngestError::State(error)
    }
}

/// Reads what is new since the state in `state` was saved, and saves the result
/// (unless nothing changed). `list_files` runs while the state loads.
pub fn ingest_incremental<F, L>(
    state: &StateDir,
    list_files: F,
    options: &IngestOptions,
    progress: &Progress,
) -> Result<(Ingest, PriorState), IngestError>
where
    F: FnOnce() -> io::Result<L>,
    L: Into<ListedFiles>,
{
    let run = ingest_speculating(state, list_files, &NeedsTheLedger, options, progress)?;
    let Some(ledger) = run.ledger else {
        unreachable!("nothing is recalled without the ledger")
    };
    let result = Ingest {
        ledger,
        summary: run.summary,
        saved_state: run.saved_state,
    };
    Ok((result, run.prior))
}

/// The speculation of a caller that wants the ledger itself.
struct NeedsTheLedger;

impl Speculation for NeedsTheLedger {
    type Output = ();

    fn recall(&self, _state: &str) -> Option<()> {
        None
    }

    fn compute(&self, _basis: Basis<'_>) {}

    fn needs_every_response(&self, _state: &str) -> bool {
        true
    }
}

/// What a speculation is computed on.
pub enum Basis<'a> {
    /// The saved ledger, and the id of the state that holds it.
    Saved { ledger: &'a Ledger, state: &'a str },
    /// The ledger after this run, not saved yet; with the state it grew from
    /// (if any) and what the run changed in it.
    Changed {
        ledger: &'a Ledger,
        from: Option<(&'a str, &'a LedgerDelta)>,
        /// The id the new state will have, when it is known before the save:
        /// the output can be kept under it while the run waits on the disk.
        saved_as: Option<&'a str>,
    },
}

/// Something computed on the state a run ends with (a report, say), while the
/// run waits on the disk; see [`ingest_speculating`].
pub trait Speculation: Sync {
    type Output: Send;

    /// The output for the saved state named `state`, if it can be had without
    /// that state's ledger (from a cache).
    fn recall(&self, state: &str) -> Option<Self::Output>;

    /// The output computed on `basis`.
    fn compute(&self, basis: Basis<'_>) -> Self::Output;

    /// Whether computing on a ledger grown from the saved state named `state`
    /// reads every response in it (no partial result of that state is kept
    /// to start from). The saved ledger is then checked whole as it is
    /// restored, so that damage is found before anything is read on top of it.
    fn needs_every_response(&self, state: &str) -> bool;
}

/// What a run with a speculation did, and the speculation's output.
pub struct Speculated<O> {
    /// The ledger after the run; `None` when nothing changed and the output
    /// was recalled, so the saved ledger was not restored (unless one of the
    /// files written last changed, yet the run found nothing to read).
    pub ledger: Option<Ledger>,
    pub summary: IngestSummary,
    pub prior: PriorState,
    /// The id of the saved state the output is of.
    pub saved_state: Option<String>,
    /// The run saved a state other than the one it loaded.
    pub new_state: bool,
    /// `None` if the speculation panicked (the ledger is then `Some`).
    pub output: Option<O>,
    /// The transcripts listed, handed back rather than freed: a process about
    /// to exit can leave them to the exit (freeing 10,000 paths took 0.25 ms,
    /// after everything else was done).
    pub listed: ListedFiles,
}

/// [`ingest_incremental`], with a speculation (a report, say) computed while the
/// run waits on the disk, and returned with what the run did:
///
/// - for the saved state while the transcripts are listed: recalled by the
///   state's id if it can be, else computed on the saved ledger; used when
///   nothing changed since, so on an unchanged rerun a report is ready as soon
///   as the listing is, and a recalled one does not restore the ledger (but
///   when one of the files written last has changed: see
///   `restore_beside_listing`);
/// - else on the new ledger while it is saved, with the id it is saved under
///   when that is known before the write (an append to the journal).
pub fn ingest_speculating<F, L, S>(
    state: &StateDir,
    list_files: F,
    speculation: &S,
    options: &IngestOptions,
    progress: &Progress,
) -> Result<Speculated<S::Output>, IngestError>
where
    F: FnOnce() -> io::Result<L>,
    L: Into<ListedFiles>,
    S: Speculation,
{
    let started = std::time::Instant::now();
    let (loaded, files) = std::thread::scope(|scope| {
        let loading = scope.spawn(|| {
            let loaded = load_prior(state, speculation);
            tracing::debug!(elapsed = ?started.elapsed(), "state loaded");
            loaded
        });
        let files = list_files();
        let loaded = loading.join().unwrap_or_else(|_| {
            Ok(Loaded::none(PriorState::Discarded(
                "loading the state failed".into(),
            )))
        });
        (loaded, files)
    });
    let loaded = loaded?;
    let Loaded {
        saved,
        saved_digest,
        ledger,
        prior,
        output,
    } = loaded;
    let listed: ListedFiles = files?.into();
    tracing::debug!(elapsed = ?started.elapsed(), files = listed.len(), "state loaded and transcripts listed");
    let comparable = prior == PriorState::Loaded && !state.is_legacy();
    let against = saved
        .as_ref()
        .zip(saved_digest.as_ref())
        .filter(|_| comparable);
    let unchanged =
        |listed: ListedFiles, files: usize, ledger: Option<Ledger>, output: Option<S::Output>| {
            Ok(Speculated {
                ledger,
                summary: IngestSummary {
                    files,
                    files_unchanged: files,
                    ..IngestSummary::default()
                },
                saved_state: saved.as_ref().map(SavedManifest::state_id),
                new_state: false,
                prior: prior.clone(),
                output,
                listed,
            })
        };
    if against.is_some_and(|(_, digest)| listed.digest() == digest.whole) {
        let files = listed.len();
        return unchanged(listed, files, ledger.restored(), output);
    }
    let mut delta = LedgerDelta::default();
    let recording = saved.as_ref().map(|_| &mut delta);
    let whole = || {
        saved
            .as_ref()
            .is_some_and(|saved| needs_every_record(saved, speculation))
    };
    // The restore starts before the listing is compared with the manifest,
    // which it does not wait for: it goes on beside the plan and the read.
    let scan = std::thread::scope(|scope| {
        let ledger = ledger.restore_in(scope, whole);
        let plan = plan::plan(&listed, against, started);
        // The digests differ, yet the listing can still be the manifest's once
        // the same file reached by two paths is dropped.
        if against.is_some() && plan.reads_nothing() {
            return Ok(Scan::Unchanged {
                files: plan.files,
                ledger: ledger.wait().ok().map(|(ledger, _)| ledger),
            });
        }
        let read = match ingest(plan, ledger, recording, options, progress) {
            Err(damage @ ManifestError::Corrupt { .. }) => {
                read_again(&listed, damage, options, progress)?
            }
            read => read?,
        };
        Ok::<Scan, ManifestError>(Scan::Read(Box::new(read)))
    })?;
    let read = match scan {
        Scan::Read(read) => *read,
        Scan::Unchanged { files, ledger } => return unchanged(listed, files, ledger, output),
    };
    let (saved, prior) = match read.discarded {
        Some(reason) => (None, PriorState::Discarded(reason)),
        None => (saved, prior),
    };
    let Reading {
        result: Ingest {
            ledger, summary, ..
        },
        file_changes,
        ..
    } = read;
    tracing::debug!(elapsed = ?started.elapsed(), changed = delta.added.len(), "files read");
    let previous_state = saved.as_ref().map(SavedManifest::state_id);
    let commit = Commit::prepare(state, saved.as_ref(), &file_changes, &delta.added)?;
    tracing::debug!(elapsed = ?started.elapsed(), "commit prepared");
    let saved_as = commit.new_state_id();
    let (saved_state, output) = std::thread::scope(|scope| {
        let ledger = &ledger;
        let file_changes = &file_changes;
        // The speculation, the longer of the two (a report is rendered and
        // stored), runs on this thread: a new one starts some hundred µs late,
        // which the commit, mostly waiting on the disk, can afford.
        let committing = scope.spawn(move || {
            let saved = commit.write(state, file_changes, ledger);
            tracing::debug!(elapsed = ?started.elapsed(), "state saved");
            saved
        });
        let from = previous_state.as_deref().map(|state| (state, &delta));
        let saved_as = saved_as.as_deref();
        let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            speculation.compute(Basis::Changed {
                ledger,
                from,
                saved_as,
            })
        }));
        let saved_state = committing.join().unwrap_or_else(|_| {
            Err(io_error(state.path())(io::Error::other(
                "saving the state failed",
            )))
        });
        (saved_state, output.ok())
    });
    let saved_state = saved_state?;
    // Whatever read saved records the run did not check up front checked them
    // as it went; what it made of a damaged one is not to be shown. The
    // speculation keeps no output of a damaged ledger, so the next run checks
    // the ledger whole and reads everything again.
    if let Some(saved) = &saved {
        ledger
            .check()
            .map_err(damaged(&state.blob_path(saved.session_state())))?;
    }
    Ok(Speculated {
        ledger: Some(ledger),
        summary,
        new_state: previous_state.as_ref() != Some(&saved_state),
        saved_state: Some(saved_state),
        prior,
        output,
        listed,
    })
}

/// How a run's changes are saved on top of the state it loaded (if any).
enum Commit<'a> {
    /// Appended to the loaded state's journal, the new state's id known before
    /// the write.
    Append(PreparedAppend),
    /// Folded with everything into a new base: once the journal has grown, the
    /// state is in an earlier format, or nothing was loaded.
    Fold(Option<&'a SavedManifest>),
}

impl<'a> Commit<'a> {
    fn prepare(
        state: &StateDir,
        saved: Option<&'a SavedManifest>,
        file_changes: &[FileChange],
        changes: &Ledger,
    ) -> Result<Commit<'a>, ManifestError> {
        let Some(saved) = saved else {
            return Ok(Commit::Fold(None));
        };
        let base = saved.session_state();
        if base.fold_due() {
            return Ok(Commit::Fold(Some(saved)));
        }
        let encoded = match changes.is_empty() {
            true => Vec::new(),
            // The changes are a ledger of their own, with nothing saved.
            false => changes.encode().map_err(damaged(&state.blob_path(base)))?,
        };
        Ok(Commit::Append(state.prepare_append(
            file_changes,
            base,
            &encoded,
        )?))
    }

    /// The id of the state this commit makes, if it is new and known before the
    /// write.
    fn new_state_id(&self) -> Option<String> {
        match self {
            Commit::Append(append) if append.is_new_state() => Some(append.state_id()),
            _ => None,
        }
    }

    fn write(
        self,
        state: &StateDir,
        file_changes: &[FileChange],
        ledger: &Ledger,
    ) -> Result<String, ManifestError> {
        match self {
            Commit::Append(append) => append.write(),
            Commit::Fold(saved) => {
                let blob = match saved {
                    Some(saved) => state.blob_path(saved.session_state()),
                    None => state.path().to_owned(),
                };
                let encoded = ledger.encode().map_err(damaged(&blob))?;
                state.save_with(saved, file_changes, &encoded)
            }
        }
    }
}

/// The saved state as the loading thread leaves it.
struct Loaded<O> {
    saved: Option<SavedManifest>,
    /// The digest of the saved manifest's files, whole and by project, taken on
    /// the loading thread so that an unchanged listing is recognised as soon as
    /// it is complete, and a changed one compared project by project.
    saved_digest: Option<ManifestDigest>,
    ledger: SavedLedger,
    prior: PriorState,
    /// The speculation's output for the saved state.
    output: Option<O>,
}

impl<O> Loaded<O> {
    /// Nothing loaded, because of `error`: damage discards the state, and
    /// anything else is passed on.
    fn discarded(error: ManifestError) -> Result<Loaded<O>, ManifestError> {
        match error {
            ManifestError::Corrupt { .. } => {
                Ok(Loaded::none(PriorState::Discarded(error.to_string())))
            }
            ManifestError::Io { .. } => Err(error),
        }
    }

    fn none(prior: PriorState) -> Loaded<O> {
        Loaded {
            saved: None,
            saved_digest: None,
            ledger: SavedLedger::Restored(Ledger::new(), None),
            prior,
            output: None,
        }
    }
}

/// A run's scan past the digest: nothing new after all, or what it read.
enum Scan {
    /// The saved ledger with it, if it could be restored.
    Unchanged {
        files: usize,
        ledger: Option<Ledger>,
    },
    Read(Box<Reading>),
}

/// Loads the manifest; recalls the speculation's output for its state, or
/// restores the ledger and computes it. A damaged state is discarded; one that
/// cannot be read is an error (see [`ManifestError::Io`]).
fn load_prior<S: Speculation>(
    state: &StateDir,
    speculation: &S,
) -> Result<Loaded<S::Output>, ManifestError> {
    let (saved, file) = match state.load_manifest() {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(Loaded::none(PriorState::Empty)),
        Err(error) => return Loaded::discarded(error),
    };
    let id = saved.state_id();
    let saved_digest = saved.listing_digest();
    if let Some(output) = speculation.recall(&id) {
        // Checked whole, a restore takes longer, and is left to go on beside
        // the read, after the listing.
        let whole = needs_every_record(&saved, speculation);
        let ledger = match !whole && saved_digest.written_last.any_changed() {
            true => restore_beside_listing(file),
            false => SavedLedger::Deferred(file),
        };
        return Ok(Loaded {
            saved: Some(saved),
            saved_digest: Some(saved_digest),
            ledger,
            prior: PriorState::Loaded,
            output: Some(output),
        });
    }
    let blob = file.blob_path().to_owned();
    // The output is computed from every saved record: all are checked first.
    match restore_ledger(file, true) {
        Ok(ledger) => {
            let output = speculation.compute(Basis::Saved {
                ledger: &ledger,
                state: &id,
            });
            Ok(Loaded {
                saved: Some(saved),
                saved_digest: Some(saved_digest),
                ledger: SavedLedger::Restored(ledger, Some(blob)),
                prior: PriorState::Loaded,
                output: Some(output),
            })
        }
        Err(error) => Loaded::discarded(error),
    }
}

/// Whether a run on top of `saved` will need every saved record, so that the
/// ledger is to be checked whole as it is restored: to fold them into a new
/// base, or for the speculation.
fn needs_every_record<S: Speculation>(saved: &SavedManifest, speculation: &S) -> bool {
    saved.session_state().fold_due() || speculation.needs_every_response(&saved.state_id())
}

/// The saved ledger, restored on the loading thread while the transcripts are
/// listed, for a run that will merge into it: one of the files written last has
/// changed since. Restored after the listing instead, it was what a small read
/// waited on: on 10,000 files, 0.7 ms of restore, and up to 0.5 ms before a
/// thread spawned for it began to run.
fn restore_beside_listing(file: SessionStateFile) -> SavedLedger {
    let blob = file.blob_path().to_owned();
    let restored = restore_ledger(file, false);
    tracing::debug!(
        failed = restored.is_err(),
        "ledger restored beside the listing"
    );
    match restored {
        Ok(ledger) => SavedLedger::Restored(ledger, Some(blob)),
        Err(error) => SavedLedger::Failed(error),
    }
}

/// The error for a ledger found damaged in the file at `path`.
fn damaged(path: &Path) -> impl FnOnce(LedgerError) -> ManifestError + '_ {
    move |error| ManifestError::Corrupt {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

/// The saved ledger with the journal's changes applied. Its records are checked
/// block by block as they are used, or all now if `whole`: a run that will
/// read every one of them finds damage before it reads anything on top.
fn restore_ledger(file: SessionStateFile, whole: bool) -> Result<Ledger, ManifestError> {
    let started = std::time::Instant::now();
    let (blob_path, journal_path) = (file.blob_path().to_owned(), file.journal_path());
    let saved = file.open()?;
    let mut ledger = Ledger::from_encoded(saved.blob).map_err(damaged(&blob_path))?;
    if whole {
        ledger.check_everything().map_err(damaged(&blob_path))?;
    }
    tracing::debug!(elapsed = ?started.elapsed(), whole, "ledger file checked and opened");
    ledger.reserve_for_changes(saved.changes.payloads().map(<[u8]>::len).sum());
    for payload in saved.changes.payloads() {
        ledger
            .apply_encoded_changes(payload)
            .map_err(damaged(&journal_path))?;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "ledger journal applied");
    Ok(ledger)
}

enum Outcome {
    Unchanged,
    Read {
        state: Box<FileState>,
        restart: Option<Restart>,
        lines: LineStats,
        bytes: u64,
        without_timestamp: u64,
    },
    Failed(io::Error),
}

/// New bytes per worker when the count is automatic: a small read is done on
/// one, leaving the other CPUs to the saved ledger's restore beside it (a second
/// worker for 1 MB was not measurably faster).
const BYTES_PER_WORKER: u64 = 4 << 20;

/// Reads `jobs`, about `expected` new bytes in all, on worker threads, or on
/// this one when one worker is enough: a thread spawned for a small append
/// waits for a CPU that the saved ledger's restore is using.
fn run_workers(
    jobs: &[Job<'_>],
    expected: u64,
    options: &IngestOptions,
    progress: &Progress,
) -> (Vec<Outcome>, Vec<Ledger>) {
    let threads = match options.threads {
        0 => {
            let worth_it = expected.div_ceil(BYTES_PER_WORKER).max(1);
            cpus_allowed().min(usize::try_from(worth_it).unwrap_or(usize::MAX))
        }
        n => n,
    }
    .min(jobs.len().max(1));
    // Largest first, so one big file does not start last and run alone.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].file.size));
    let next = AtomicUsize::new(0);
    // Each outcome with the worker that read it: a worker that panics takes its
    // ledger with it, so what it read must not be recorded as read.
    let outcomes: Mutex<Vec<Option<(usize, Outcome)>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let work = |worker: usize| {
        let mut ledger = Ledger::new();
        let mut reader = FileReader::new(options.max_inline_line, progress);
        while let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let outcome = reader.read(&jobs[index], &mut ledger);
            if let Ok(mut slots) = outcomes.lock() {
                slots[index] = Some((worker, outcome));
            }
        }
        ledger
    };
    let (ledgers, failed) = match threads {
        1 => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(0))) {
            Ok(ledger) => (vec![ledger], Vec::new()),
            Err(_) => (Vec::new(), vec![0]),
        },
        _ => std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|worker| {
                    let work = &work;
                    scope.spawn(move || work(worker))
                })
                .collect();
            let mut ledgers = Vec::with_capacity(workers.len());
            let mut failed = Vec::new();
            for (worker, handle) in workers.into_iter().enumerate() {
                match handle.join() {
                    Ok(ledger) => ledgers.push(ledger),
                    Err(_) => failed.push(worker),
                }
            }
            (ledgers, failed)
        }),
    };
    let outcomes = outcomes
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|slot| match slot {
            Some((worker, outcome)) if !failed.contains(&worker) => outcome,
            _ => Outcome::Failed(io::Error::other("worker thread failed")),
        })
        .collect();
    (outcomes, ledgers)
}

/// Adds a job's outcome to the summary; returns the change to the file's
/// manifest entry, if there is one.
fn record_outcome(
    job: Job<'_>,
    outcome: Outcome,
    summary: &mut IngestSummary,
) -> Option<FileChange> {
    let path = job.file.path.clone();
    // A file not read keeps its state: unchanged, or under its new path if it
    // was renamed.
    let kept = |path: PathBuf, previous: Option<FileState>| match job.renamed {
        true => previous.map(|state| (path, Some(state))),
        false => None,
    };
    match outcome {
        Outcome::Unchanged => {
            summary.files_unchanged += 1;
            kept(path, job.previous)
        }
        Outcome::Read {
            state,
            restart,
            lines,
            bytes,
            without_timestamp,
        } => {
            summary.files_read += 1;
            summary.bytes_read += bytes;
            summary.lines.add(&lines);
            summary.usage_lines_without_timestamp += without_timestamp;
            if lines.skipped() > 0 {
                summary.files_with_skipped_lines.push((path.clone(), lines));
            }
            if let Some(restart) = restart {
                summary.files_restarted.push((path.clone(), restart));
            }
            Some((path, Some(*state)))
        }
        Outcome::Failed(error) => {
            summary.errors.push((path.clone(), error.to_string()));
            kept(path, job.previous)
        }
    }
}

/// The largest line buffer a worker keeps for its next file.
const MAX_KEPT_BUFFER: usize = 1 << 20;

/// One worker's reading state, reused across files.
struct FileReader<'p> {
    max_inline_line: usize,
    progress: &'p Progress,
    scratch: Vec<u8>,
    /// The line reader's buffer, passed from file to file.
    lines: Vec<u8>,
}

impl<'p> FileReader<'p> {
    fn new(max_inline_line: usize, progress: &'p Progress) -> Self {
        FileReader {
            max_inline_line,
            progress,
            scratch: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn read(&mut self, job: &Job<'_>, ledger: &mut Ledger) -> Outcome {
        match self.try_read(job, ledger) {
            Ok(outcome) => outcome,
            Err(error) => Outcome::Failed(error),
        }
    }

    fn try_read(&mut self, job: &Job<'_>, ledger: &mut Ledger) -> io::Result<Outcome> {
        let path = &job.file.path;
        if let Some(before) = &job.previous {
            if job.file.identity.unchanged_since(&before.identity) {
                return Ok(Outcome::Unchanged);
            }
        }
        let mut file = File::open(path)?;
        // The identity is taken before reading: if the file grows while we read,
        // the next run sees a change and resumes from the committed offset.
        let identity = FileIdentity::of(&file.metadata()?);
        let (start, restart, mut lines) = match &job.previous {
            Some(before) if identity.unchanged_since(&before.identity) => {
                return Ok(Outcome::Unchanged)
            }
            Some(before) => match resume_point(&file, &identity, before)? {
                Ok(offset) => (offset, None, before.lines),
                Err(restart) => (0, Some(restart), LineStats::default()),
            },
            None => (0, None, LineStats::default()),
        };
        file.seek(SeekFrom::Start(start))?;
        let context = LineContext {
            path_text: path.to_string_lossy(),
            fallback_session: session_from_path(path),
            project: &job.file.project,
        };
        let mut run_lines = LineStats::default();
        let mut without_timestamp = 0;
        let buffer = std::mem::take(&mut self.lines);
        let mut reader = LineReader::with_buffer(&file, start, self.max_inline_line, buffer);
        let mut reported = 0;
        while let Some(line) = reader.next_line()? {
            let counted = match line {
                Line::Complete { bytes, offset } => {
                    let outcome = decode_line::<UsageLine>(bytes, &mut self.scratch);
                    run_lines.record(&outcome);
                    observe(&outcome, &context, offset, bytes, ledger)
                }
                Line::Oversized { offset, len } => {
                    run_lines.oversized += 1;
                    let outcome = decode_streamed(&file, offset, len)?;
                    run_lines.record(&outcome);
                    observe(&outcome, &context, offset, &offset.to_le_bytes(), ledger)
                }
            };
            without_timestamp += u64::from(counted == Some(false));
            let read = reader.bytes_read();
            if read - reported > (1 << 20) {
                self.progress
                    .bytes_done
                    .fetch_add(read - reported, Ordering::Relaxed);
                reported = read;
            }
        }
        let bytes = reader.bytes_read();
        self.progress
            .bytes_done
            .fetch_add(bytes - reported, Ordering::Relaxed);
        let offset = reader.committed_offset();
        self.lines = reader.into_buffer();
        if self.lines.len() > MAX_KEPT_BUFFER {
            // Grown for a long line: not kept for the files after it.
            self.lines = Vec::new();
        }
        lines.add(&run_lines);
        Ok(Outcome::Read {
            state: Box::new(FileState {
                project: job.file.project.to_string(),
                identity,
                offset,
                marker: Marker::read(&file, offset)?,
                lines,
            }),
            restart,
            lines: run_lines,
            bytes,
            without_timestamp,
        })
    }
}

/// Decodes a line too long to hold, reading it from the file being read, not
/// from its path, which may name another file by now. A failure to read fails
/// the file, which is read again from its committed offset next time.
fn decode_streamed(
    file: &File,
    offset: u64,
    len: u64,
) -> io::Result<Result<Decoded<UsageLine<'static>>, DecodeError>> {
    let reader = BufReader::with_capacity(64 << 10, FileRange::new(file, offset, len));
    Ok(decode_reader(reader)?.map(|value| Decoded::Value {
        value,
        repair: None,
    }))
}

struct LineContext<'a> {
    path_text: std::borrow::Cow<'a, str>,
    fallback_session: String,
    project: &'a str,
}

/// Feeds a decoded line's usage to the ledger. Returns `None` for lines without
/// usage, else whether the line had a readable timestamp.
fn observe(
    outcome: &Result<Decoded<UsageLine<'_>>, DecodeError>,
    context: &LineContext<'_>,
    offset: u64,
    line: &[u8],
    ledger: &mut Ledger,
) -> Option<bool> {
    let Ok(Decoded::Value { value, .. }) = outcome else {
        return None;
    };
    let (message, usage) = value.billable()?;
    let key = match message.id.as_deref() {
        Some(id) => ResponseKey::of(id, value.request_id.as_deref()),
        None => ResponseKey::of_line(&context.path_text, offset, line),
    };
    let timestamp_ms = value.timestamp.as_deref().and_then(parse_timestamp_ms);
    let observation = Observation {
        tokens: TokenCounts::of(usage),
        timestamp_ms: timestamp_ms.unwrap_or(0),
        model: message.model.as_deref().unwrap_or("unknown"),
        session: value
            .session_id
            .as_deref()
            .unwrap_or(&context.fallback_session),
        project: context.project,
        sidechain: value.is_sidechain.unwrap_or(false),
        fast: usage.speed.as_deref() == Some("fast"),
        us_only: usage.inference_geo.as_deref() == Some("us"),
        cost_usd: value.cost_usd,
    };
    ledger.observe(key, &observation);
    Some(timestamp_ms.is_some())
}

/// A trunk file's stem is its session id; used when a line lacks `sessionId`.
fn session_from_path(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}
