//! Counters the export pipeline keeps about itself, read by ccotel's own
//! telemetry and by the end-of-run summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::receiver::ReceiverStats;

/// Live figures of a running export. Plain atomics: updating them costs nothing
/// whether or not self-telemetry is on.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Transcript lines read.
    pub lines: AtomicU64,
    /// Transcript bytes read.
    pub bytes: AtomicU64,
    /// Lines that could not be decoded (malformed, not an object, ...).
    pub parse_errors: AtomicU64,
    /// Failed delivery attempts (each retry counts).
    pub export_failures: AtomicU64,
    /// Batches read and waiting to be sent.
    pub queue_depth: AtomicU64,
    /// Bytes on disk not read yet, as of the last look at the files.
    pub unread_bytes: AtomicU64,
    /// Bytes read whose batch is not yet acknowledged and committed.
    pub uncommitted_bytes: AtomicU64,
    /// The receiver's counters (all zero without `--receiver`).
    pub receiver: Arc<ReceiverStats>,
}

impl PipelineStats {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, value: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(value))
        });
    }

    /// How far delivery is behind the transcripts on disk, in bytes.
    pub fn lag_bytes(&self) -> u64 {
        self.unread_bytes.load(Ordering::Relaxed) + self.uncommitted_bytes.load(Ordering::Relaxed)
    }
}
