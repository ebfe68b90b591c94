//! The reading side of an export: lists and follows transcripts, feeds every new
//! line to the tracker, and cuts the result into batches of OTLP requests, each
//! with the checkpoint it completes.

use std::collections::HashMap;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use super::checkpoint::Checkpoint;
use super::stats::PipelineStats;
use super::{ExportOptions, Mode};
use crate::receiver::SharedIndex;
use crate::session::activity::Activity;
use crate::session::{LineOrigin, Tracker};
use crate::signal::rows::Rows;
use crate::signal::{Encoder, OtlpBatch};
use crate::source::tail::{Opened, Pending};
use crate::source::watch::Watch;
use crate::source::{
    discover_with, FileIdentity, FileRange, FileState, Line, LineReader, Listing, Marker, Tailer,
};
use crate::transcript::{decode_line, decode_reader, Decoded, Entry, EntryKind, LineStats};

/// A batch ready to send, and the state to commit once it is acknowledged.
pub struct Batch {
    pub otlp: OtlpBatch,
    /// Table rows, when a ClickHouse sink is configured.
    pub rows: Option<Rows>,
    pub checkpoint: Checkpoint,
    /// Transcript bytes and lines this batch covers.
    pub bytes: u64,
    pub lines: u64,
}

/// The reading loop's state.
pub struct Reader {
    options: Arc<ExportOptions>,
    tracker: Tracker,
    tailer: Tailer,
    encoder: Encoder,
    sender: Sender<Batch>,
    stop: Arc<AtomicBool>,
    /// Recent facts for the receiver to join Claude Code's events to.
    index: Option<SharedIndex>,
    activity: Activity,
    dirty: HashMap<PathBuf, Option<FileState>>,
    /// Unchanged directories are not read again on the next pass.
    listing: Listing,
    bytes: u64,
    lines: u64,
    scratch: Vec<u8>,
    /// Log entries of the current batch already counted in `log_bytes`.
    sized_logs: usize,
    log_bytes: usize,
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// Everything on disk was read (backfill).
    Done,
    /// Asked to stop.
    Stopped,
    /// The sending side went away.
    Closed,
}

impl Reader {
    pub fn new(
        options: Arc<ExportOptions>,
        tracker: Tracker,
        tailer: Tailer,
        sender: Sender<Batch>,
        stop: Arc<AtomicBool>,
        index: Option<SharedIndex>,
    ) -> Reader {
        let encoder = options.encoder.clone();
        Reader {
            index,
            options,
            tracker,
            tailer,
            encoder,
            sender,
            stop,
            activity: Activity::default(),
            dirty: HashMap::new(),
            listing: Listing::default(),
            bytes: 0,
            lines: 0,
            scratch: Vec::new(),
            sized_logs: 0,
            log_bytes: 0,
        }
    }

    /// Reads until done (backfill), stopped, or the sender closes.
    pub fn run(mut self) -> ReadEnd {
        let watch = match self.options.mode {
            Mode::Follow => Some(Watch::start(
                &self.options.roots,
                self.options.poll_interval,
            )),
            Mode::Backfill => None,
        };
        let mut first_pass = true;
        loop {
            if let Err(end) = self.pass(first_pass) {
                return end;
            }
            let now = now_ms();
            match self.options.mode {
                Mode::Backfill => self.tracker.close_all(&mut self.activity),
                Mode::Follow if first_pass => self.tracker.close_history(now, &mut self.activity),
                Mode::Follow => {}
            }
            first_pass = false;
            if self.options.mode == Mode::Follow {
                self.tracker.close_idle(now, &mut self.activity);
            }
            if let Err(end) = self.cut() {
                return end;
            }
            let Some(watch) = &watch else {
                return ReadEnd::Done;
            };
            let deadline = Instant::now() + self.options.poll_interval;
            while Instant::now() < deadline {
                if self.stop.load(Ordering::Relaxed) {
                    return ReadEnd::Stopped;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if watch.wait(left.min(Duration::from_millis(200)))
                    == crate::source::watch::Wake::Event
                {
                    break;
                }
            }
        }
    }

    /// One look at every file: reads what is new.
    fn pass(&mut self, first: bool) -> Result<(), ReadEnd> {
        let listed = match discover_with(&self.options.roots, &self.listing) {
            Ok(found) => {
                if first {
                    found.warn(&self.options.roots);
                }
                let (files, changed_listing) = found.into_parts();
                if let Some(listing) = changed_listing {
                    self.listing = listing;
                }
                files.into_sorted()
            }
            Err(error) => {
                tracing::warn!("cannot list transcripts: {error}");
                return Ok(());
            }
        };
        let (pending, gone) = self.tailer.changes(listed);
        let unread: u64 = pending
            .iter()
            .map(|p| {
                p.file
                    .size
                    .saturating_sub(p.previous.as_ref().map_or(0, |s| s.offset))
            })
            .sum();
        self.options
            .stats
            .unread_bytes
            .store(unread, Ordering::Relaxed);
        let _span = tracing::debug_span!("read_pass", files = pending.len(), unread).entered();
        for path in gone {
            tracing::info!(file = %path.display(), "transcript is gone; what was read from it stays sent");
            self.dirty.insert(path, None);
        }
        for file in pending {
            if self.stop.load(Ordering::Relaxed) {
                return Err(ReadEnd::Stopped);
            }
            self.read_file(&file)?;
        }
        Ok(())
    }

    fn read_file(&mut self, pending: &Pending) -> Result<(), ReadEnd> {
        let path = pending.file.path.clone();
        let opened = match self.tailer.open(pending) {
            Ok(opened) => opened,
            Err(error) => {
                tracing::warn!(file = %path.display(), "cannot read: {error}; will retry");
                return Ok(());
            }
        };
        if let Some(restart) = opened.restart {
            tracing::warn!(file = %path.display(), ?restart, "transcript changed under its offset; reading it from the start");
        }
        let lines = pending
            .previous
            .as_ref()
            .filter(|_| opened.restart.is_none())
            .map(|s| s.lines)
            .unwrap_or_default();
        match self.read_lines(pending, opened, lines) {
            Ok(result) => result,
            Err(error) => {
                tracing::warn!(file = %path.display(), "read failed: {error}; will retry");
                Ok(())
            }
        }
    }

    fn read_lines(
        &mut self,
        pending: &Pending,
        opened: Opened,
        mut stats: LineStats,
    ) -> std::io::Result<Result<(), ReadEnd>> {
        let Opened {
            mut handle,
            identity,
            start,
            ..
        } = opened;
        let path = &pending.file.path;
        let path_text = path.to_string_lossy().into_owned();
        let project = pending.file.project.clone();
        handle.seek(SeekFrom::Start(start))?;
        let mut reader = LineReader::new(&handle, start, self.options.max_inline_line);
        let mut last_cut_offset = start;
        let mut counted_bytes = 0;
        let mut counted_skipped = stats.skipped();
        // Just after the last line fully processed: what a state may record.
        let mut processed = start;
        let failure = loop {
            let line = match reader.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break None,
                Err(error) => break Some(error),
            };
            let (offset, entry, raw_line): (u64, Option<Entry>, Vec<u8>) = match line {
                Line::Complete { bytes, offset } => {
                    let entry = decode_entry(bytes, &mut self.scratch, &mut stats);
                    (offset, entry, bytes.to_vec())
                }
                Line::Oversized { offset, len } => {
                    stats.oversized += 1;
                    match decode_oversized(&handle, offset, len, &mut stats) {
                        Ok(entry) => (offset, entry, offset.to_le_bytes().to_vec()),
                        Err(error) => break Some(error),
                    }
                }
            };
            processed = reader.committed_offset();
            self.lines += 1;
            PipelineStats::add(&self.options.stats.lines, 1);
            PipelineStats::add(
                &self.options.stats.bytes,
                reader.bytes_read() - counted_bytes,
            );
            counted_bytes = reader.bytes_read();
            let skipped = stats.skipped();
            PipelineStats::add(&self.options.stats.parse_errors, skipped - counted_skipped);
            counted_skipped = skipped;
            if let Some(entry) = entry {
                let origin = LineOrigin {
                    path: &path_text,
                    project: &project,
                    offset,
                    line: &raw_line,
                    file_time_ms: identity.mtime_ns / 1_000_000,
                };
                self.tracker
                    .observe(&origin, &entry, now_ms(), &mut self.activity);
                if let (Some(index), Some(log)) = (&self.index, self.activity.logs.last()) {
                    let mut index = match index.lock() {
                        Ok(index) => index,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    index.observe(&entry, log, Instant::now());
                }
            }
            if self.batch_full() {
                self.bytes += processed - last_cut_offset;
                last_cut_offset = processed;
                self.record_partial(path, &handle, &project, identity, processed, stats)?;
                if let Err(end) = self.cut() {
                    return Ok(Err(end));
                }
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(Err(ReadEnd::Stopped));
                }
            }
        };
        drop(reader);
        self.bytes += processed - last_cut_offset;
        if let Some(error) = failure {
            // What was read stays read: record the state at the last line
            // processed, so the next pass resumes there instead of reading (and
            // sending) those lines again.
            tracing::warn!(file = %path.display(), "read stopped at byte {processed}: {error}; will resume there");
            self.record_partial(path, &handle, &project, identity, processed, stats)?;
            return Ok(Ok(()));
        }
        let state = file_state(&handle, &project, identity, processed, stats)?;
        self.tailer.update(path.clone(), state.clone());
        self.dirty.insert(path.clone(), Some(state));
        self.tracker
            .end_of_file(&path_text, now_ms(), &mut self.activity);
        Ok(Ok(()))
    }

    /// Records a file as read up to `offset` though it goes on: its identity
    /// says the file ended there, so the next look sees it as changed and
    /// resumes at this offset rather than passing it over as unchanged.
    fn record_partial(
        &mut self,
        path: &Path,
        handle: &std::fs::File,
        project: &str,
        identity: FileIdentity,
        offset: u64,
        stats: LineStats,
    ) -> std::io::Result<()> {
        let partial = FileIdentity {
            size: offset,
            ..identity
        };
        let state = file_state(handle, project, partial, offset, stats)?;
        self.tailer.update(path.to_owned(), state.clone());
        self.dirty.insert(path.to_owned(), Some(state));
        Ok(())
    }

    fn batch_full(&mut self) -> bool {
        self.activity.len() >= self.options.batch_max_records
            || self.approximate_bytes() >= self.options.batch_max_bytes
    }

    /// A rough size of the batch so far, kept up as log entries are added.
    fn approximate_bytes(&mut self) -> usize {
        let cap = self.options.text_cap;
        let new = &self.activity.logs[self.sized_logs.min(self.activity.logs.len())..];
        self.log_bytes += new
            .iter()
            .map(|l| 256 + l.body.as_ref().map_or(0, |b| b.len().min(cap)))
            .sum::<usize>();
        self.sized_logs = self.activity.logs.len();
        self.log_bytes + self.activity.spans.len() * 512
    }

    /// Sends what has accumulated as one batch with its checkpoint.
    fn cut(&mut self) -> Result<(), ReadEnd> {
        if self.activity.is_empty() && self.dirty.is_empty() {
            return Ok(());
        }
        let activity = std::mem::take(&mut self.activity);
        self.sized_logs = 0;
        self.log_bytes = 0;
        let otlp = if self.options.otlp {
            self.encoder.encode(&activity, now_ms())
        } else {
            OtlpBatch::default()
        };
        let rows = self.options.rows.then(|| self.encoder.rows(&activity));
        let checkpoint = Checkpoint {
            files: self.dirty.drain().collect(),
            ledger: self.tracker.take_ledger_changes(),
            open_state: self.tracker.open_state(),
            closed: self.tracker.take_closed_changes(),
        };
        let batch = Batch {
            otlp,
            rows,
            checkpoint,
            bytes: std::mem::take(&mut self.bytes),
            lines: std::mem::take(&mut self.lines),
        };
        self.sender
            .blocking_send(batch)
            .map_err(|_| ReadEnd::Closed)
    }
}

fn file_state(
    handle: &std::fs::File,
    project: &str,
    identity: FileIdentity,
    offset: u64,
    lines: LineStats,
) -> std::io::Result<FileState> {
    Ok(FileState {
        project: project.to_owned(),
        identity,
        offset,
        marker: Marker::read(handle, offset)?,
        lines,
    })
}

fn decode_entry(bytes: &[u8], scratch: &mut Vec<u8>, stats: &mut LineStats) -> Option<Entry> {
    let outcome = decode_line::<Entry>(bytes, scratch);
    stats.record(&outcome);
    match outcome {
        Ok(Decoded::Value { mut value, .. }) => {
            if matches!(
                value.kind,
                EntryKind::Metadata(_) | EntryKind::Unknown(_) | EntryKind::Untyped
            ) {
                let text = String::from_utf8_lossy(bytes.trim_ascii());
                value.raw = serde_json::value::RawValue::from_string(text.into_owned()).ok();
            }
            Some(value)
        }
        _ => None,
    }
}

/// Decodes a line too long to hold in memory by streaming it from the file
/// already open (not by path, which may now name another file). Positional
/// reads leave the handle's own position, which the line reader uses, alone.
fn decode_oversized(
    handle: &std::fs::File,
    offset: u64,
    len: u64,
    stats: &mut LineStats,
) -> std::io::Result<Option<Entry>> {
    let reader = BufReader::with_capacity(64 << 10, FileRange::new(handle, offset, len));
    let outcome = decode_reader::<_, Entry>(reader)?.map(|value| Decoded::Value {
        value,
        repair: None,
    });
    stats.record(&outcome);
    Ok(outcome.ok().and_then(|d| match d {
        Decoded::Value { value, .. } => Some(value),
        Decoded::Blank => None,
    }))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
