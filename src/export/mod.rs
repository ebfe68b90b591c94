//! `ccotel run` and `ccotel backfill`: read transcripts, send what they say to
//! every sink, and commit offsets only after every sink acknowledged.
//!
//! ```text
//!  reader thread ──batches──▶ bounded queue ──▶ exporter task ──acks──▶ committer
//!  (tail, decode, track,                         (each sink, retries     (offsets +
//!   encode OTLP)                                  with backoff)           session state)
//! ```
//!
//! The queue holds a few batches: when a destination is down, the exporter keeps
//! retrying, the queue fills, and the reader waits. Memory stays bounded and
//! nothing is dropped or committed early.

pub mod checkpoint;
pub mod reader;
pub mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use checkpoint::Committer;
use reader::{Batch, ReadEnd, Reader};

use crate::session::{PriceTable, Tracker, TrackerOptions};
use crate::signal::Encoder;
use crate::sink::retry::Backoff;
use crate::sink::{Sent, Sink, SinkError};
use crate::source::{StateDir, Tailer};
use stats::PipelineStats;

/// Whether to stop once everything on disk is sent, or keep following.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Backfill,
    Follow,
}

/// How an export runs.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub mode: Mode,
    pub roots: Vec<PathBuf>,
    pub state_dir: PathBuf,
    pub prices: PriceTable,
    pub tracker: TrackerOptions,
    pub encoder: Encoder,
    pub max_inline_line: usize,
    pub batch_max_records: usize,
    pub batch_max_bytes: usize,
    /// Batches waiting between reader and exporter.
    pub queue_batches: usize,
    pub poll_interval: Duration,
    /// After a stop signal, how long to keep trying to deliver what was read.
    pub shutdown_grace: Duration,
    pub backoff: Backoff,
    /// The most text a single value can carry (sizes batches).
    pub text_cap: usize,
    /// Live counters, for self-telemetry.
    pub stats: Arc<PipelineStats>,
    /// Build table rows for a ClickHouse sink.
    pub rows: bool,
    /// Build OTLP messages for an OTLP sink.
    pub otlp: bool,
}

/// What an export did.
#[derive(Debug, Default, Clone)]
pub struct ExportSummary {
    pub batches: u64,
    pub log_records: u64,
    pub spans: u64,
    pub metric_points: u64,
    pub bytes: u64,
    pub lines: u64,
    pub retries: u64,
    /// Records destinations accepted the request for but rejected.
    pub rejected: u64,
    /// Batches a destination refused outright (not retryable); their offsets
    /// were committed so the export does not stall.
    pub refused_batches: u64,
    /// Batches read but not delivered before shutdown; read again next time.
    pub abandoned_batches: u64,
}

/// Runs an export until done (backfill) or stopped.
pub async fn run(
    options: ExportOptions,
    mut sinks: Vec<Sink>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ExportSummary> {
    let state_path = options.state_dir.join("export");
    let dir = StateDir::open(&state_path)
        .with_context(|| format!("opening the state directory {}", state_path.display()))?;
    let (mut committer, restored) = Committer::open(dir)
        .with_context(|| format!("opening the export state in {}", state_path.display()))?;
    let (tracker, error) = Tracker::restore(
        options.prices.clone(),
        options.tracker,
        restored.ledger,
        &restored.open_state,
        &restored.closed,
    );
    if let Some(error) = error {
        tracing::warn!("{error}; open spans start afresh (counted usage is kept)");
    }
    let tailer = Tailer::new(restored.manifest);
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(options.queue_batches.max(1));
    let options = Arc::new(options);
    let reader = Reader::new(options.clone(), tracker, tailer, sender, stop.clone());
    let reading = std::thread::Builder::new()
        .name("ccotel-reader".into())
        .spawn(move || reader.run())
        .context("starting the reader thread")?;

    let mut summary = ExportSummary::default();
    let mut stopping_since: Option<Instant> = None;
    let stats = options.stats.clone();
    while let Some(batch) = receiver.recv().await {
        stats
            .queue_depth
            .store(receiver.len() as u64, Ordering::Relaxed);
        if stop.load(Ordering::Relaxed) && stopping_since.is_none() {
            stopping_since = Some(Instant::now());
        }
        let counts = batch_counts(&batch);
        let delivered = deliver(
            &mut sinks,
            &batch,
            &options,
            &stop,
            &mut stopping_since,
            &mut summary,
        )
        .await;
        let delivered = match delivered {
            Ok(delivered) => delivered,
            Err(fatal) => {
                // Nothing after the last commit is committed: it is all read
                // again once the destination is fixed.
                stop.store(true, Ordering::SeqCst);
                receiver.close();
                drop(receiver);
                let _ = tokio::task::spawn_blocking(move || reading.join()).await;
                anyhow::bail!("{fatal}");
            }
        };
        if !delivered {
            summary.abandoned_batches += 1 + receiver.len() as u64;
            receiver.close();
            break;
        }
        let Batch {
            checkpoint,
            bytes,
            lines,
            ..
        } = batch;
        tokio::task::block_in_place(|| {
            let _span = tracing::debug_span!("commit").entered();
            committer.commit(checkpoint)
        })
        .context("committing offsets")?;
        PipelineStats::sub(&stats.uncommitted_bytes, bytes);
        summary.batches += 1;
        summary.log_records += counts.log_records as u64;
        summary.spans += counts.spans as u64;
        summary.metric_points += counts.metric_points as u64;
        summary.bytes += bytes;
        summary.lines += lines;
    }
    drop(receiver);
    let end = tokio::task::spawn_blocking(move || reading.join())
        .await
        .context("joining the reader")?
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
    tracing::debug!(?end, "reader finished");
    if end == ReadEnd::Closed && summary.abandoned_batches == 0 && !stop.load(Ordering::Relaxed) {
        anyhow::bail!("the exporter stopped unexpectedly");
    }
    Ok(summary)
}

/// Sends a batch to every sink, retrying retryable failures. Returns false when
/// shutting down and the grace period ran out before every sink took it.
/// Records in a batch, from its OTLP messages or, with only ClickHouse, its rows.
fn batch_counts(batch: &Batch) -> crate::signal::otlp::BatchCounts {
    match &batch.rows {
        Some(rows) if batch.otlp.is_empty() => crate::signal::otlp::BatchCounts {
            log_records: rows.logs.len(),
            spans: rows.traces.len(),
            metric_points: rows.sums.len() + rows.histograms.len(),
        },
        _ => batch.otlp.counts(),
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(records = batch_counts(batch).log_records, bytes = batch.bytes))]
async fn deliver(
    sinks: &mut [Sink],
    batch: &Batch,
    options: &ExportOptions,
    stop: &AtomicBool,
    stopping_since: &mut Option<Instant>,
    summary: &mut ExportSummary,
) -> Result<bool, String> {
    if batch.otlp.is_empty() && batch.rows.as_ref().is_none_or(|r| r.is_empty()) {
        return Ok(true);
    }
    for sink in sinks.iter_mut() {
        let mut attempt = 0u32;
        let mut sent = Sent::default();
        loop {
            let started = Instant::now();
            match sink
                .export(&batch.otlp, batch.rows.as_ref(), &mut sent)
                .await
            {
                Ok(delivery) => {
                    tracing::debug!(sink = %sink.describe(), elapsed = ?started.elapsed(), bytes = batch.otlp.encoded_len(), "batch delivered");
                    if delivery.rejected > 0 || delivery.message.is_some() {
                        summary.rejected += delivery.rejected;
                        tracing::warn!(
                            sink = %sink.describe(),
                            rejected = delivery.rejected,
                            message = delivery.message.as_deref().unwrap_or(""),
                            "destination accepted the batch but rejected part of it"
                        );
                    }
                    break;
                }
                Err(SinkError::Fatal(message)) => {
                    PipelineStats::add(&options.stats.export_failures, 1);
                    return Err(format!("{}: {message}", sink.describe()));
                }
                Err(SinkError::Permanent(message)) => {
                    summary.refused_batches += 1;
                    PipelineStats::add(&options.stats.export_failures, 1);
                    tracing::error!(sink = %sink.describe(), "batch refused, not retryable: {message}");
                    break;
                }
                Err(SinkError::Retryable {
                    message,
                    retry_after,
                }) => {
                    attempt += 1;
                    summary.retries += 1;
                    PipelineStats::add(&options.stats.export_failures, 1);
                    if stop.load(Ordering::Relaxed) {
                        let since = *stopping_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > options.shutdown_grace {
                            tracing::warn!(sink = %sink.describe(), "giving up on delivery at shutdown: {message}; it will be read again next run");
                            return Ok(false);
                        }
                    }
                    let delay = options.backoff.delay(attempt, retry_after);
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(sink = %sink.describe(), attempt, "delivery failed: {message}; retrying in {delay:?}");
                    }
                    // Stopping: wait no longer than the grace that is left.
                    let delay = match *stopping_since {
                        Some(since) => {
                            delay.min(options.shutdown_grace.saturating_sub(since.elapsed()))
                        }
                        None => delay,
                    };
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    Ok(true)
}
