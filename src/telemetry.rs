//! ccotel's own telemetry: its log output on stderr (plain or JSON, filtered by
//! `CCOTEL_LOG`), and, when `CCOTEL_SELF_OTLP_ENDPOINT` names an OTLP/HTTP
//! endpoint, its own spans and metrics sent there with the OpenTelemetry SDK.
//!
//! This is about ccotel the process (lines read, parse errors, export failures,
//! queue depth, lag), never about transcripts: those go through `signal/`.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::export::stats::PipelineStats;

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// The SDK providers, flushed and shut down on drop.
#[derive(Default)]
pub struct SelfTelemetry {
    meters: Option<SdkMeterProvider>,
    tracer: Option<SdkTracerProvider>,
}

/// Colours only for a person at a terminal who has not asked for none
/// (<https://no-color.org>): escape codes in a log file or a pipe are noise.
fn colors_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Sets up logging and, with an endpoint, self spans and metrics. `default_level`
/// applies when `CCOTEL_LOG` is not set.
pub fn init(
    default_level: &str,
    format: LogFormat,
    endpoint: Option<&str>,
    stats: Arc<PipelineStats>,
) -> SelfTelemetry {
    let filter =
        EnvFilter::try_from_env("CCOTEL_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let fmt = match format {
        LogFormat::Plain => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colors_on_stderr())
            .with_target(false)
            .without_time()
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut telemetry = SelfTelemetry::default();
    let otel_layer = endpoint.and_then(|endpoint| match providers(endpoint, stats) {
        Ok((meters, tracer)) => {
            // Only ccotel's own spans: the HTTP and gRPC stacks' are noise here.
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer.tracer("ccotel"))
                .with_filter(EnvFilter::new("ccotel=debug"));
            telemetry.meters = Some(meters);
            telemetry.tracer = Some(tracer);
            Some(layer)
        }
        Err(error) => {
            eprintln!("ccotel: self-telemetry disabled: {error}");
            None
        }
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel_layer)
        .init();
    telemetry
}

fn providers(
    endpoint: &str,
    stats: Arc<PipelineStats>,
) -> Result<(SdkMeterProvider, SdkTracerProvider), opentelemetry_otlp::ExporterBuildError> {
    let base = endpoint.trim_end_matches('/');
    let resource = Resource::builder()
        .with_service_name("ccotel")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_timeout(Duration::from_secs(5))
        .build()?;
    let meters = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(metric_exporter)
                .with_interval(Duration::from_secs(10))
                .build(),
        )
        .with_resource(resource.clone())
        .build();
    register_instruments(&meters, stats);
    let span_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(Duration::from_secs(5))
        .build()?;
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(span_exporter)
        .with_resource(resource)
        .build();
    Ok((meters, tracer))
}

/// Name, unit, description, and how to read the value.
type Instrument = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PipelineStats) -> u64,
);

fn register_instruments(meters: &SdkMeterProvider, stats: Arc<PipelineStats>) {
    let meter = meters.meter("ccotel");
    let counters: [Instrument; 8] = [
        (
            "ccotel.self.lines",
            "{line}",
            "Transcript lines read.",
            |s| s.lines.load(Ordering::Relaxed),
        ),
        ("ccotel.self.bytes", "By", "Transcript bytes read.", |s| {
            s.bytes.load(Ordering::Relaxed)
        }),
        (
            "ccotel.self.parse_errors",
            "{line}",
            "Lines that could not be decoded.",
            |s| s.parse_errors.load(Ordering::Relaxed),
        ),
        (
            "ccotel.self.export.failures",
            "{attempt}",
            "Failed delivery attempts.",
            |s| s.export_failures.load(Ordering::Relaxed),
        ),
        (
            "ccotel.self.receiver.records",
            "{record}",
            "Log records, spans and metric points received from Claude Code.",
            |s| s.receiver.records.load(Ordering::Relaxed),
        ),
        (
            "ccotel.self.receiver.joined",
            "{record}",
            "Received records joined to the transcript.",
            |s| s.receiver.joined.load(Ordering::Relaxed),
        ),
        (
            "ccotel.self.receiver.unmatched",
            "{record}",
            "Received records sent on unjoined after the wait.",
            |s| s.receiver.unmatched.load(Ordering::Relaxed),
        ),
        (
            "ccotel.self.receiver.refused",
            "{request}",
            "Requests refused because the queue stayed full.",
            |s| s.receiver.refused.load(Ordering::Relaxed),
        ),
    ];
    for (name, unit, description, read) in counters {
        let stats = stats.clone();
        meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| observer.observe(read(&stats), &[]))
            .build();
    }
    let gauges: [Instrument; 2] = [
        (
            "ccotel.self.queue.depth",
            "{batch}",
            "Batches read and waiting to be sent.",
            |s| s.queue_depth.load(Ordering::Relaxed),
        ),
        (
            "ccotel.self.lag",
            "By",
            "Transcript bytes not yet delivered and committed.",
            PipelineStats::lag_bytes,
        ),
    ];
    for (name, unit, description, read) in gauges {
        let stats = stats.clone();
        meter
            .u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| observer.observe(read(&stats), &[]))
            .build();
    }
}

impl Drop for SelfTelemetry {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take() {
            let _ = tracer.shutdown();
        }
        if let Some(meters) = self.meters.take() {
            let _ = meters.shutdown();
        }
    }
}
