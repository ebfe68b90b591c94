//! Table rows from OTLP messages as received (Claude Code's own telemetry), in
//! the collector exporter's layout, so native and transcript records share the
//! `otel_*` tables as they would behind a collector.
//!
//! The ClickHouse sink's own metric rows are made here too (see
//! [`super::rows::Rows`]), so that one mapping serves both.
//!
//! Logs, spans, sums and histograms are kept. Claude Code sends no gauges or
//! exponential histograms; any that arrive are dropped with a warning.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};

use super::rows::{HistogramRow, LogRow, Rows, SumRow, TraceRow};
use super::OtlpBatch;
use crate::session::ids::hex;

type Pairs = Vec<(String, String)>;

/// The rows for one received batch.
pub fn from_otlp(batch: &OtlpBatch) -> Rows {
    let mut rows = Rows::default();
    for resource_logs in batch.logs.iter().flat_map(|r| &r.resource_logs) {
        let resource = Described::of(resource_logs.resource.as_ref());
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref();
            for record in &scope_logs.log_records {
                let time = if record.time_unix_nano > 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                rows.logs.push(LogRow {
                    timestamp: ns(time),
                    trace_id: hex(&record.trace_id),
                    span_id: hex(&record.span_id),
                    trace_flags: (record.flags & 0xff) as u8,
                    severity_text: record.severity_text.clone(),
                    severity_number: record.severity_number.clamp(0, 255) as u8,
                    service_name: resource.service_name.clone(),
                    body: record.body.as_ref().map(text).unwrap_or_default(),
                    resource_schema_url: resource_logs.schema_url.clone(),
                    resource_attributes: resource.attributes.clone(),
                    scope_schema_url: scope_logs.schema_url.clone(),
                    scope_name: scope.map(|s| s.name.clone()).unwrap_or_default(),
                    scope_version: scope.map(|s| s.version.clone()).unwrap_or_default(),
                    scope_attributes: scope_pairs(scope),
                    log_attributes: pairs(&record.attributes),
                    event_name: record.event_name.clone(),
                });
            }
        }
    }
    for resource_spans in batch.traces.iter().flat_map(|r| &r.resource_spans) {
        let resource = Described::of(resource_spans.resource.as_ref());
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref();
            for span in &scope_spans.spans {
                rows.traces.push(trace_row(span, &resource, scope));
            }
        }
    }
    for resource_metrics in batch.metrics.iter().flat_map(|r| &r.resource_metrics) {
        let resource = Described::of(resource_metrics.resource.as_ref());
        for scope_metrics in &resource_metrics.scope_metrics {
            let scope = scope_metrics.scope.as_ref();
            let header = MetricHeader {
                resource: &resource,
                resource_schema_url: &resource_metrics.schema_url,
                scope,
                scope_schema_url: &scope_metrics.schema_url,
            };
            for metric in &scope_metrics.metrics {
                metric_rows(metric, &header, &mut rows);
            }
        }
    }
    rows
}

/// A resource's attributes and service name, computed once per resource.
pub(super) struct Described {
    pub attributes: Pairs,
    pub service_name: String,
}

impl Described {
    fn of(resource: Option<&Resource>) -> Described {
        let attributes = resource.map(|r| pairs(&r.attributes)).unwrap_or_default();
        let service_name = attributes
            .iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Described {
            attributes,
            service_name,
        }
    }
}

/// What every row of one scope's metrics shares.
pub(super) struct MetricHeader<'a> {
    pub resource: &'a Described,
    pub resource_schema_url: &'a str,
    pub scope: Option<&'a InstrumentationScope>,
    pub scope_schema_url: &'a str,
}

fn trace_row(span: &Span, resource: &Described, scope: Option<&InstrumentationScope>) -> TraceRow {
    let kind = match span::SpanKind::try_from(span.kind).unwrap_or(span::SpanKind::Unspecified) {
        span::SpanKind::Internal => "Internal",
        span::SpanKind::Server => "Server",
        span::SpanKind::Client => "Client",
        span::SpanKind::Producer => "Producer",
        span::SpanKind::Consumer => "Consumer",
        span::SpanKind::Unspecified => "Unspecified",
    };
    let (status_code, status_message) = match &span.status {
        Some(s) => (
            match status::StatusCode::try_from(s.code).unwrap_or(status::StatusCode::Unset) {
                status::StatusCode::Ok => "Ok",
                status::StatusCode::Error => "Error",
                status::StatusCode::Unset => "Unset",
            },
            s.message.clone(),
        ),
        None => ("Unset", String::new()),
    };
    TraceRow {
        timestamp: ns(span.start_time_unix_nano),
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: hex(&span.parent_span_id),
        trace_state: span.trace_state.clone(),
        span_name: span.name.clone(),
        span_kind: kind.to_owned(),
        service_name: resource.service_name.clone(),
        resource_attributes: resource.attributes.clone(),
        scope_name: scope.map(|s| s.name.clone()).unwrap_or_default(),
        scope_version: scope.map(|s| s.version.clone()).unwrap_or_default(),
        span_attributes: pairs(&span.attributes),
        duration: span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano),
        status_code: status_code.to_owned(),
        status_message,
        events_timestamp: span.events.iter().map(|e| ns(e.time_unix_nano)).collect(),
        events_name: span.events.iter().map(|e| e.name.clone()).collect(),
        events_attributes: span.events.iter().map(|e| pairs(&e.attributes)).collect(),
        links_trace_id: span.links.iter().map(|l| hex(&l.trace_id)).collect(),
        links_span_id: span.links.iter().map(|l| hex(&l.span_id)).collect(),
        links_trace_state: span.links.iter().map(|l| l.trace_state.clone()).collect(),
        links_attributes: span.links.iter().map(|l| pairs(&l.attributes)).collect(),
    }
}

/// The rows of one metric's points: sums and histograms.
pub(super) fn metric_rows(metric: &Metric, header: &MetricHeader<'_>, rows: &mut Rows) {
    let scope = header.scope;
    match &metric.data {
        Some(metric::Data::Sum(sum)) => {
            for point in &sum.data_points {
                rows.sums.push(SumRow {
                    resource_attributes: header.resource.attributes.clone(),
                    resource_schema_url: header.resource_schema_url.to_owned(),
                    scope_name: scope.map(|s| s.name.clone()).unwrap_or_default(),
                    scope_version: scope.map(|s| s.version.clone()).unwrap_or_default(),
                    scope_attributes: scope_pairs(scope),
                    scope_dropped_attr_count: scope.map_or(0, |s| s.dropped_attributes_count),
                    scope_schema_url: header.scope_schema_url.to_owned(),
                    service_name: header.resource.service_name.clone(),
                    metric_name: metric.name.clone(),
                    metric_description: metric.description.clone(),
                    metric_unit: metric.unit.clone(),
                    attributes: pairs(&point.attributes),
                    start_time_unix: ns(point.start_time_unix_nano),
                    time_unix: ns(point.time_unix_nano),
                    value: number(point.value.as_ref()),
                    flags: point.flags,
                    exemplars_filtered_attributes: Vec::new(),
                    exemplars_time_unix: Vec::new(),
                    exemplars_value: Vec::new(),
                    exemplars_span_id: Vec::new(),
                    exemplars_trace_id: Vec::new(),
                    aggregation_temporality: sum.aggregation_temporality,
                    is_monotonic: sum.is_monotonic,
                });
            }
        }
        Some(metric::Data::Histogram(histogram)) => {
            for point in &histogram.data_points {
                rows.histograms.push(HistogramRow {
                    resource_attributes: header.resource.attributes.clone(),
                    resource_schema_url: header.resource_schema_url.to_owned(),
                    scope_name: scope.map(|s| s.name.clone()).unwrap_or_default(),
                    scope_version: scope.map(|s| s.version.clone()).unwrap_or_default(),
                    scope_attributes: scope_pairs(scope),
                    scope_dropped_attr_count: scope.map_or(0, |s| s.dropped_attributes_count),
                    scope_schema_url: header.scope_schema_url.to_owned(),
                    service_name: header.resource.service_name.clone(),
                    metric_name: metric.name.clone(),
                    metric_description: metric.description.clone(),
                    metric_unit: metric.unit.clone(),
                    attributes: pairs(&point.attributes),
                    start_time_unix: ns(point.start_time_unix_nano),
                    time_unix: ns(point.time_unix_nano),
                    count: point.count,
                    sum: point.sum.unwrap_or(0.0),
                    bucket_counts: point.bucket_counts.clone(),
                    explicit_bounds: point.explicit_bounds.clone(),
                    exemplars_filtered_attributes: Vec::new(),
                    exemplars_time_unix: Vec::new(),
                    exemplars_value: Vec::new(),
                    exemplars_span_id: Vec::new(),
                    exemplars_trace_id: Vec::new(),
                    flags: point.flags,
                    min: point.min.unwrap_or(0.0),
                    max: point.max.unwrap_or(0.0),
                    aggregation_temporality: histogram.aggregation_temporality,
                });
            }
        }
        Some(_) => {
            tracing::warn!(
                metric = %metric.name,
                "a received metric is neither a sum nor a histogram; ClickHouse gets no row for it"
            );
        }
        None => {}
    }
}

fn number(
    value: Option<&opentelemetry_proto::tonic::metrics::v1::number_data_point::Value>,
) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match value {
        Some(Value::AsDouble(v)) => *v,
        Some(Value::AsInt(v)) => *v as f64,
        None => 0.0,
    }
}

/// OTLP's unsigned nanoseconds as the tables' signed ones, clamped.
fn ns(nanos: u64) -> i64 {
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

fn scope_pairs(scope: Option<&InstrumentationScope>) -> Pairs {
    scope.map(|s| pairs(&s.attributes)).unwrap_or_default()
}

fn pairs(attributes: &[KeyValue]) -> Pairs {
    attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

/// A value as the collector exporter writes it into a `Map(String, String)`:
/// strings as they are, everything else as JSON.
fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(bytes)) => hex(bytes),
        Some(any_value::Value::ArrayValue(array)) => {
            let items: Vec<String> = array.values.iter().map(text).collect();
            serde_json::to_string(&items).unwrap_or_default()
        }
        Some(any_value::Value::KvlistValue(list)) => {
            let map: serde_json::Map<String, serde_json::Value> = list
                .values
                .iter()
                .map(|kv| {
                    let value = kv.value.as_ref().map(text).unwrap_or_default();
                    (kv.key.clone(), serde_json::Value::String(value))
                })
                .collect();
            serde_json::Value::Object(map).to_string()
        }
        // Dictionary references (profiles only) mean nothing without the dictionary.
        Some(any_value::Value::StringValueStrindex(_)) | None => String::new(),
    }
}
