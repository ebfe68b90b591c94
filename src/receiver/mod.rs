//! The OTLP receiver: Claude Code's own telemetry in, joined to the
//! transcripts, and out through the same sinks as ccotel's own signals.
//!
//! ```text
//!  Claude Code ──OTLP──▶ server (gRPC, HTTP) ──▶ hold (wait for the line, join, policy) ──▶ export loop ──▶ sinks
//!  transcripts ──▶ export reader ──▶ index (recent prompts, tool calls, responses) ──▶ hold
//! ```
//!
//! Native metrics pass through untouched. They are Claude Code's counters
//! (`claude_code.*`) beside ccotel's (`ccotel.*`), so nothing is counted twice.
//!
//! A request is acknowledged once queued. Like a collector without a
//! persistent queue, what is queued when ccotel is killed is lost; what is
//! refused while the queue is full, Claude Code's exporter sends again.

pub mod enrich;
pub mod hold;
pub mod index;
pub mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::mpsc;

use crate::signal::content::ContentPolicy;
use crate::signal::otlp::{log_record_count, metric_point_count, span_count};
use crate::signal::OtlpBatch;
use index::{IndexLimits, RecentIndex};

/// The index, shared by the export's reader (which fills it) and the hold
/// stage (which reads it).
pub type SharedIndex = Arc<Mutex<RecentIndex>>;

/// The default gRPC address: loopback only.
pub const DEFAULT_GRPC: &str = "127.0.0.1:4317";
/// The default HTTP address: loopback only.
pub const DEFAULT_HTTP: &str = "127.0.0.1:4318";

/// How the receiver runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSettings {
    /// Where to take OTLP/gRPC; `None` turns it off.
    pub grpc: Option<SocketAddr>,
    /// Where to take OTLP/HTTP; `None` turns it off.
    pub http: Option<SocketAddr>,
    /// How long an event waits for its transcript line.
    pub wait: Duration,
    pub index: IndexLimits,
    /// The largest request taken, compressed or inflated.
    pub max_request_bytes: usize,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        ReceiverSettings {
            grpc: DEFAULT_GRPC.parse().ok(),
            http: DEFAULT_HTTP.parse().ok(),
            wait: Duration::from_secs(5),
            index: IndexLimits::default(),
            max_request_bytes: 32 << 20,
        }
    }
}

impl ReceiverSettings {
    /// The index limits, with text kept only as far as the policy lets it out.
    pub fn index_limits(&self, policy: ContentPolicy) -> IndexLimits {
        IndexLimits {
            text_cap: policy.max_bytes(),
            ..self.index
        }
    }
}

/// A request as received.
#[derive(Debug, Clone, PartialEq)]
pub enum Native {
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Native {
    /// Log records, spans or metric points in it.
    pub fn records(&self) -> u64 {
        let count = match self {
            Native::Logs(logs) => log_record_count(logs),
            Native::Traces(traces) => span_count(traces),
            Native::Metrics(metrics) => metric_point_count(metrics),
        };
        count as u64
    }

    pub fn into_batch(self) -> OtlpBatch {
        match self {
            Native::Logs(logs) => OtlpBatch {
                logs: Some(logs),
                ..OtlpBatch::default()
            },
            Native::Traces(traces) => OtlpBatch {
                traces: Some(traces),
                ..OtlpBatch::default()
            },
            Native::Metrics(metrics) => OtlpBatch {
                metrics: Some(metrics),
                ..OtlpBatch::default()
            },
        }
    }
}

/// What the receiver has done, for ccotel's own telemetry and the end summary.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Requests accepted.
    pub requests: AtomicU64,
    /// Log records, spans and metric points accepted.
    pub records: AtomicU64,
    /// Records joined to the transcript.
    pub joined: AtomicU64,
    /// Records that waited their full time and went on unjoined.
    pub unmatched: AtomicU64,
    /// Requests refused because the queue stayed full.
    pub refused: AtomicU64,
    /// Requests that could not be decoded.
    pub malformed: AtomicU64,
}

/// A started receiver: where it listens, and the stream of requests ready to send.
pub struct Receiver {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub ready: mpsc::Receiver<OtlpBatch>,
    pub stats: Arc<ReceiverStats>,
}

/// Binds the configured addresses and starts serving, joining against `index`.
/// Stops when `stop` is set: the servers close, and what is held goes on.
pub async fn start(
    settings: &ReceiverSettings,
    index: SharedIndex,
    policy: ContentPolicy,
    stats: Arc<ReceiverStats>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Receiver> {
    let (sender, incoming) = mpsc::channel::<Native>(64);
    let (ready_sender, ready) = mpsc::channel::<OtlpBatch>(16);
    let intake = server::Intake::new(sender, stats.clone(), settings.max_request_bytes);
    let mut receiver = Receiver {
        grpc: None,
        http: None,
        ready,
        stats: stats.clone(),
    };
    if let Some(addr) = settings.grpc {
        let listener = server::bind(addr, "receiver.grpc").await?;
        receiver.grpc = listener.local_addr().ok();
        warn_if_exposed(addr, "receiver.grpc");
        let (intake, stop) = (intake.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(error) = server::serve_grpc(listener, intake, stop).await {
                tracing::error!("receiver: OTLP/gRPC server stopped: {error}");
            }
        });
    }
    if let Some(addr) = settings.http {
        let listener = server::bind(addr, "receiver.http").await?;
        receiver.http = listener.local_addr().ok();
        warn_if_exposed(addr, "receiver.http");
        let (intake, stop) = (intake.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(error) = server::serve_http(listener, intake, stop).await {
                tracing::error!("receiver: OTLP/HTTP server stopped: {error}");
            }
        });
    }
    drop(intake);
    let hold = hold::Hold {
        index,
        stop: stop.clone(),
        policy,
        wait: settings.wait,
        stats,
    };
    tokio::spawn(hold.run(incoming, ready_sender));
    tracing::info!(
        grpc = ?receiver.grpc,
        http = ?receiver.http,
        "receiving Claude Code's own telemetry; point OTEL_EXPORTER_OTLP_ENDPOINT here"
    );
    Ok(receiver)
}

/// Says so when an address is reachable from other machines.
fn warn_if_exposed(addr: SocketAddr, setting: &str) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "{setting} `{addr}` is not a loopback address: anyone who can reach it can send \
             telemetry through ccotel to your destinations (nothing from the transcripts is \
             sent back to them)"
        );
    }
}

/// The receiver's unit-test fixture: the paired transcript of
/// `tests/fixtures/native/`, read through a real tracker into an index.
#[cfg(test)]
pub(crate) mod fixture {
    use std::time::Instant;

    use super::index::{IndexLimits, RecentIndex};
    use crate::session::activity::Activity;
    use crate::session::{LineOrigin, PriceTable, Tracker, TrackerOptions};
    use crate::transcript::{decode_line, Decoded, Entry};

    pub const SESSION: &str = "5b1c0f5e-7a55-4b55-9e3e-2b8f0c1d9a01";

    /// The fixture transcript's lines.
    pub fn transcript_lines() -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/native/session.jsonl"
        );
        std::fs::read_to_string(path)
            .expect("fixture transcript")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// An index fed the first `lines` lines, as the export reader feeds it.
    pub fn index(lines: usize, limits: IndexLimits, now: Instant) -> RecentIndex {
        let mut index = RecentIndex::new(limits);
        let mut tracker = Tracker::new(PriceTable::embedded(), TrackerOptions::default());
        let mut out = Activity::default();
        let mut scratch = Vec::new();
        let mut offset = 0u64;
        for line in transcript_lines().iter().take(lines) {
            let Ok(Decoded::Value { value, .. }) =
                decode_line::<Entry>(line.as_bytes(), &mut scratch)
            else {
                panic!("fixture line decodes");
            };
            let origin = LineOrigin {
                path: "/p/-home-dev-shop/5b1c0f5e-7a55-4b55-9e3e-2b8f0c1d9a01.jsonl",
                project: "-home-dev-shop",
                offset,
                line: line.as_bytes(),
                file_time_ms: 0,
            };
            tracker.observe(&origin, &value, 1_800_000_000_000, &mut out);
            index.observe(&value, out.logs.last().expect("a log entry per line"), now);
            offset += line.len() as u64 + 1;
        }
        index
    }
}
