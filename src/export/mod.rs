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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use checkpoint::Committer;
use reader::{Batch, ReadEnd, Reader};

use crate::receiver::index::RecentIndex;
use crate::receiver::{ReceiverSettings, ReceiverStats};
use crate::session::{PriceTable, Tracker, TrackerOptions};
use crate::signal::rows::Rows;
use crate::signal::{Encoder, OtlpBatch};
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
    /// Take Claude Code's own telemetry too (`run --receiver`).
    pub receiver: Option<ReceiverSettings>,
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
    /// Requests from Claude Code delivered, and those dropped at shutdown.
    pub native_requests: u64,
    pub native_dropped: u64,
    /// Native records joined to the transcript, and those that went on
    /// unjoined after the wait.
    pub native_joined: u64,
    pub native_unmatched: u64,
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
    let policy = options.encoder.policy();
    let index = options
        .receiver
        .as_ref()
        .map(|settings| Arc::new(Mutex::new(RecentIndex::new(settings.index_limits(policy)))));
    let mut native = match (&options.receiver, &index) {
        (Some(settings), Some(index)) => Some(
            crate::receiver::start(
                settings,
                index.clone(),
                policy,
                options.stats.receiver.clone(),
                stop.clone(),
            )
            .await
            .context("starting the receiver")?,
        ),
        _ => None,
    };
    let native_stats: Option<Arc<ReceiverStats>> = native.as_ref().map(|n| n.stats.clone());
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(options.queue_batches.max(1));
    let options = Arc::new(options);
    let reader = Reader::new(
        options.clone(),
        tracker,
        tailer,
        sender,
        stop.clone(),
        index,
    );
    let reading = std::thread::Builder::new()
        .name("ccotel-reader".into())
        .spawn(move || reader.run())
        .context("starting the reader thread")?;

    let mut summary = ExportSummary::default();
    let mut stopping_since: Option<Instant> = None;
    let stats = options.stats.clone();
    let mut reading_open = true;
    loop {
        let work = tokio::select! {
            batch = receiver.recv(), if reading_open => match batch {
                Some(batch) => Work::Transcript(Box::new(batch)),
                None => {
                    reading_open = false;
                    continue;
                }
            },
            request = next_native(&mut native), if native.is_some() => match request {
                Some(request) => Work::Native(request),
                None => {
                    native = None;
                    continue;
                }
            },
            else => break,
        };
        if stop.load(Ordering::Relaxed) && stopping_since.is_none() {
            stopping_since = Some(Instant::now());
        }
        let batch = match work {
            Work::Native(request) => {
                let rows = native_rows(&sinks, &request);
                let delivered = deliver(
                    &mut sinks,
                    &request,
                    rows.as_ref(),
                    &options,
                    &stop,
                    &mut stopping_since,
                    &mut summary,
                )
                .await;
                match delivered {
                    Ok(true) => summary.native_requests += 1,
                    Ok(false) => {
                        summary.native_dropped += 1;
                        tracing::warn!("a request from Claude Code was not delivered before shutdown and is dropped");
                    }
                    Err(fatal) => return Err(abort(fatal, &stop, receiver, reading).await),
                }
                continue;
            }
            Work::Transcript(batch) => *batch,
        };
        stats
            .queue_depth
            .store(receiver.len() as u64, Ordering::Relaxed);
        let counts = batch_counts(&batch);
        let delivered = deliver(
            &mut sinks,
            &batch.otlp,
            batch.rows.as_ref(),
            &options,
            &stop,
            &mut stopping_since,
            &mut summary,
        )
        .await;
        let delivered = match delivered {
            Ok(delivered) => delivered,
            Err(fatal) => return Err(abort(fatal, &stop, receiver, reading).await),
        };
        if !delivered {
            summary.abandoned_batches += 1 + receiver.len() as u64;
            receiver.close();
            reading_open = false;
            continue;
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
    if let Some(stats) = native_stats {
        report_receiver(&stats);
        summary.native_joined = stats.joined.load(Ordering::Relaxed);
        summary.native_unmatched = stats.unmatched.load(Ordering::Relaxed);
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

/// Stops everything after an error no retry can fix. Nothing after the last
/// commit is committed: it is all read again once the destination is fixed.
async fn abort(
    fatal: String,
    stop: &AtomicBool,
    mut receiver: tokio::sync::mpsc::Receiver<Batch>,
    reading: std::thread::JoinHandle<ReadEnd>,
) -> anyhow::Error {
    stop.store(true, Ordering::SeqCst);
    receiver.close();
    drop(receiver);
    let _ = tokio::task::spawn_blocking(move || reading.join()).await;
    anyhow::anyhow!("{fatal}")
}

/// Work for the exporter: a batch read from the transcripts, or a request
/// from Claude Code.
enum Work {
    Transcript(Box<Batch>),
    Native(OtlpBatch),
}

/// The next request from the receiver; pending forever when there is none.
async fn next_native(native: &mut Option<crate::receiver::Receiver>) -> Option<OtlpBatch> {
    match native {
        Some(native) => native.ready.recv().await,
        None => std::future::pending().await,
    }
}

/// Table rows for a native request, when a sink takes rows.
fn native_rows(sinks: &[Sink], request: &OtlpBatch) -> Option<Rows> {
    sinks
        .iter()
        .any(Sink::wants_rows)
        .then(|| crate::signal::rows_from_otlp::from_otlp(request))
}

/// Logs what the receiver did, once it stopped.
fn report_receiver(stats: &ReceiverStats) {
    let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    tracing::info!(
        requests = load(&stats.requests),
        records = load(&stats.records),
        joined = load(&stats.joined),
        unmatched = load(&stats.unmatched),
        refused = load(&stats.refused),
        malformed = load(&stats.malformed),
        "receiver stopped"
    );
}

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

/// Sends a batch to every sink, retrying retryable failures. Returns false when
/// shutting down and the grace period ran out before every sink took it.
#[tracing::instrument(level = "debug", skip_all, fields(bytes = otlp.encoded_len()))]
async fn deliver(
    sinks: &mut [Sink],
    otlp: &OtlpBatch,
    rows: Option<&Rows>,
    options: &ExportOptions,
    stop: &AtomicBool,
    stopping_since: &mut Option<Instant>,
    summary: &mut ExportSummary,
) -> Result<bool, String> {
    if otlp.is_empty() && rows.is_none_or(|r| r.is_empty()) {
        return Ok(true);
    }
    for sink in sinks.iter_mut() {
        let mut attempt = 0u32;
        let mut sent = Sent::default();
        loop {
            let started = Instant::now();
            match sink.export(otlp, rows, &mut sent).await {
                Ok(delivery) => {
                    tracing::debug!(sink = %sink.describe(), elapsed = ?started.elapsed(), bytes = otlp.encoded_len(), "batch delivered");
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
