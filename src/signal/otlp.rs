//! Session activity to OTLP export requests.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use super::content::ContentPolicy;
use super::metrics::metrics;
use super::nanos;
use super::resource::{scope, ResourceBase};
use crate::session::activity::{Activity, Attr, AttrValue, LogEntry, SpanKind, SpanRecord};

/// One batch's requests, one per signal that has data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtlpBatch {
    pub logs: Option<ExportLogsServiceRequest>,
    pub traces: Option<ExportTraceServiceRequest>,
    pub metrics: Option<ExportMetricsServiceRequest>,
}

/// What a batch holds, for counting and reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub log_records: usize,
    pub spans: usize,
    pub metric_points: usize,
}

impl OtlpBatch {
    pub fn is_empty(&self) -> bool {
        self.logs.is_none() && self.traces.is_none() && self.metrics.is_none()
    }

    /// Protobuf size of all requests.
    pub fn encoded_len(&self) -> usize {
        self.logs.as_ref().map_or(0, Message::encoded_len)
            + self.traces.as_ref().map_or(0, Message::encoded_len)
            + self.metrics.as_ref().map_or(0, Message::encoded_len)
    }

    pub fn counts(&self) -> BatchCounts {
        BatchCounts {
            log_records: self.logs.as_ref().map_or(0, log_record_count),
            spans: self.traces.as_ref().map_or(0, span_count),
            metric_points: self.metrics.as_ref().map_or(0, metric_point_count),
        }
    }
}

/// Log records in a request.
pub fn log_record_count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum()
}

/// Spans in a request.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// Sum and histogram data points in a request.
pub fn metric_point_count(request: &ExportMetricsServiceRequest) -> usize {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    request
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            _ => 0,
        })
        .sum()
}

/// Builds OTLP requests under one content policy and resource.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub(crate) policy: ContentPolicy,
    pub(crate) resource: ResourceBase,
}

impl Encoder {
    pub fn new(policy: ContentPolicy, resource: ResourceBase) -> Encoder {
        Encoder { policy, resource }
    }

    pub fn policy(&self) -> ContentPolicy {
        self.policy
    }

    /// The requests for one batch of activity. `observed_ms` is when it was read.
    pub fn encode(&self, activity: &Activity, observed_ms: i64) -> OtlpBatch {
        OtlpBatch {
            logs: self.logs(&activity.logs, observed_ms),
            traces: self.traces(&activity.spans),
            metrics: self.metrics(activity),
        }
    }

    fn logs(&self, entries: &[LogEntry], observed_ms: i64) -> Option<ExportLogsServiceRequest> {
        if entries.is_empty() {
            return None;
        }
        let mut by_version: BTreeMap<Option<&str>, Vec<LogRecord>> = BTreeMap::new();
        for entry in entries {
            by_version
                .entry(entry.version.as_deref())
                .or_default()
                .push(self.log_record(entry, observed_ms));
        }
        let resource_logs = by_version
            .into_iter()
            .map(|(version, log_records)| ResourceLogs {
                resource: Some(self.resource.resource(version)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            })
            .collect();
        Some(ExportLogsServiceRequest { resource_logs })
    }

    fn log_record(&self, entry: &LogEntry, observed_ms: i64) -> LogRecord {
        let mut attributes = self.attributes(&entry.attributes);
        attributes.push(kv("event.name", string_value(&entry.event_name)));
        if let Some(body) = &entry.body {
            attributes.push(kv("body_length", int_value(body.len() as i64)));
        }
        let body = entry
            .body
            .as_deref()
            .and_then(|text| self.policy.apply(text))
            .map(string_value);
        LogRecord {
            time_unix_nano: nanos(entry.time_ms),
            observed_time_unix_nano: nanos(observed_ms),
            severity_number: SeverityNumber::Info as i32,
            severity_text: "INFO".to_owned(),
            body,
            attributes,
            trace_id: entry.trace_id.to_vec(),
            span_id: entry.span_id.map(|s| s.to_vec()).unwrap_or_default(),
            flags: 1,
            event_name: entry.event_name.clone(),
            ..LogRecord::default()
        }
    }

    fn traces(&self, spans: &[SpanRecord]) -> Option<ExportTraceServiceRequest> {
        if spans.is_empty() {
            return None;
        }
        let mut by_version: BTreeMap<Option<&str>, Vec<Span>> = BTreeMap::new();
        for record in spans {
            by_version
                .entry(record.version.as_deref())
                .or_default()
                .push(self.span(record));
        }
        let resource_spans = by_version
            .into_iter()
            .map(|(version, spans)| ResourceSpans {
                resource: Some(self.resource.resource(version)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            })
            .collect();
        Some(ExportTraceServiceRequest { resource_spans })
    }

    fn span(&self, record: &SpanRecord) -> Span {
        let kind = match record.kind {
            SpanKind::Internal => span::SpanKind::Internal,
            SpanKind::Client => span::SpanKind::Client,
        };
        let status = record.error.as_ref().map(|message| Status {
            message: self.policy.apply(message).unwrap_or("error").to_owned(),
            code: status::StatusCode::Error as i32,
        });
        Span {
            trace_id: record.trace_id.to_vec(),
            span_id: record.span_id.to_vec(),
            parent_span_id: record
                .parent_span_id
                .map(|p| p.to_vec())
                .unwrap_or_default(),
            flags: 1,
            name: record.name.clone(),
            kind: kind as i32,
            start_time_unix_nano: nanos(record.start_ms),
            end_time_unix_nano: nanos(record.end_ms.max(record.start_ms)),
            attributes: self.attributes(&record.attributes),
            status,
            ..Span::default()
        }
    }

    fn metrics(&self, activity: &Activity) -> Option<ExportMetricsServiceRequest> {
        let metrics = metrics(activity);
        if metrics.is_empty() {
            return None;
        }
        Some(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.resource(None)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        })
    }

    /// Attributes, with transcript text cut or dropped by the content policy.
    fn attributes(&self, attrs: &[Attr]) -> Vec<KeyValue> {
        attrs
            .iter()
            .filter_map(|attr| {
                let value = match &attr.value {
                    AttrValue::Str(s) => string_value(s),
                    AttrValue::Int(i) => int_value(*i),
                    AttrValue::Float(f) => AnyValue {
                        value: Some(any_value::Value::DoubleValue(*f)),
                    },
                    AttrValue::Bool(b) => AnyValue {
                        value: Some(any_value::Value::BoolValue(*b)),
                    },
                    AttrValue::StrList(list) => AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: list.iter().map(|s| string_value(s)).collect(),
                        })),
                    },
                    AttrValue::Text(text) => string_value(self.policy.apply(text)?),
                };
                Some(kv(attr.key, value))
            })
            .collect()
    }
}

pub(crate) fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..KeyValue::default()
    }
}

pub(crate) fn string_value(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    }
}

fn int_value(value: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(value)),
    }
}
