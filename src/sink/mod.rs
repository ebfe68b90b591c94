//! Destinations. Each sink sends one batch and says whether the destination took
//! it; the pipeline commits offsets only after every sink has.
//!
//! - [`grpc`]: OTLP over gRPC (tonic), gzip, TLS, headers, `RetryInfo`.
//! - [`http`]: OTLP over HTTP/protobuf, gzip, TLS, headers, `Retry-After`.
//! - [`file`](mod@file): the embedded default, OTLP-JSON lines files in the data directory.
//! - [`retry`]: backoff with jitter, shared by all.

pub mod clickhouse;
pub mod file;
pub mod grpc;
pub mod http;
pub mod retry;

use std::time::Duration;

use crate::signal::rows::Rows;
use crate::signal::OtlpBatch;

/// What a destination said about a batch it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Records the destination accepted the request for but rejected
    /// (`partial_success`), with its message.
    pub rejected: u64,
    pub message: Option<String>,
}

impl Delivery {
    fn add_partial(&mut self, rejected: i64, message: &str) {
        if rejected > 0 || !message.is_empty() {
            self.rejected += rejected.max(0) as u64;
            if !message.is_empty() {
                self.message = Some(message.to_owned());
            }
        }
    }
}

/// Which of a batch's requests a destination has taken, so a retry re-sends only
/// the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub logs: bool,
    pub traces: bool,
    pub metrics: bool,
    /// ClickHouse: tables inserted.
    pub tables: clickhouse::TablesSent,
}

/// One signal's outcome in a concurrent send: not sent (absent or already
/// taken), or the destination's answer with its partial-success report.
pub(crate) type SignalOutcome = Option<Result<Option<(i64, String)>, SinkError>>;

/// Folds the three signals' outcomes: marks the ones taken, sums partial
/// rejections, and returns the last failure if any.
pub(crate) fn settle(outcomes: [(SignalOutcome, &mut bool); 3]) -> Result<Delivery, SinkError> {
    let mut delivery = Delivery::default();
    let mut failure: Option<SinkError> = None;
    for (outcome, taken) in outcomes {
        match outcome {
            None => {}
            Some(Ok(partial)) => {
                *taken = true;
                if let Some((rejected, message)) = partial {
                    delivery.add_partial(rejected, &message);
                }
            }
            Some(Err(error)) => failure = Some(SinkError::graver(failure, error)),
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(delivery),
    }
}

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again: unreachable, overloaded, throttled, timed out.
    #[error("{message}")]
    Retryable {
        message: String,
        /// What the destination asked for (`Retry-After`, gRPC `RetryInfo`).
        retry_after: Option<Duration>,
    },
    /// Sending the same bytes again cannot succeed (bad request, unauthorised,
    /// misconfigured).
    #[error("{0}")]
    Permanent(String),
    /// No batch can succeed until someone fixes the destination (credentials
    /// revoked, table dropped): stop without committing, so nothing is lost.
    #[error("{0}")]
    Fatal(String),
}

impl SinkError {
    /// How much an error decides about a batch: stopping beats retrying, and
    /// retrying beats giving up on the batch (which would commit past it).
    fn gravity(&self) -> u8 {
        match self {
            SinkError::Fatal(_) => 2,
            SinkError::Retryable { .. } => 1,
            SinkError::Permanent(_) => 0,
        }
    }

    /// The graver of two errors.
    pub fn graver(first: Option<SinkError>, second: SinkError) -> SinkError {
        match first {
            Some(first) if first.gravity() >= second.gravity() => first,
            _ => second,
        }
    }

    pub fn retryable(message: impl Into<String>) -> SinkError {
        SinkError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Where and how to send OTLP, from the standard `OTEL_EXPORTER_OTLP_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    pub protocol: Protocol,
    /// Base endpoint (`http://host:4317` for gRPC, `http://host:4318` for HTTP).
    pub endpoint: String,
    /// Per-signal endpoints; for HTTP they are used as given (full URL).
    pub logs_endpoint: Option<String>,
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub timeout: Duration,
}

/// A configured destination.
pub enum Sink {
    Grpc(Box<grpc::GrpcSink>),
    Http(http::HttpSink),
    File(file::FileSink),
    ClickHouse(Box<clickhouse::ClickHouseSink>),
}

impl Sink {
    /// A short name for messages: the endpoint or the folder.
    pub fn describe(&self) -> String {
        match self {
            Sink::Grpc(sink) => format!("OTLP/gRPC {}", sink.endpoint()),
            Sink::Http(sink) => format!("OTLP/HTTP {}", sink.endpoint()),
            Sink::File(sink) => format!("OTLP-JSON files in {}", sink.dir().display()),
            Sink::ClickHouse(sink) => sink.describe(),
        }
    }

    /// Whether this sink takes table rows rather than OTLP messages.
    pub fn wants_rows(&self) -> bool {
        matches!(self, Sink::ClickHouse(_))
    }

    /// Sends the parts of a batch not yet in `sent`, once, and marks those the
    /// destination took.
    pub async fn export(
        &mut self,
        batch: &OtlpBatch,
        rows: Option<&Rows>,
        sent: &mut Sent,
    ) -> Result<Delivery, SinkError> {
        match self {
            Sink::Grpc(sink) => sink.export(batch, sent).await,
            Sink::Http(sink) => sink.export(batch, sent).await,
            Sink::File(sink) => sink.export(batch, sent),
            Sink::ClickHouse(sink) => match rows {
                Some(rows) => sink.export(rows, &mut sent.tables).await,
                None => Ok(Delivery::default()),
            },
        }
    }
}
