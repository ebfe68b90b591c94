//! Table rows for the ClickHouse sink, built from the same activity and under the
//! same content policy as the OTLP messages: the OpenTelemetry Collector
//! exporter's tables (`otel_logs`, `otel_traces`, `otel_metrics_sum`,
//! `otel_metrics_histogram`) and the domain tables (`claude_messages`,
//! `claude_sessions`, `claude_tool_usage`, `claude_file_access`).
//!
//! No row holds a wall-clock value, so reading the same lines again yields the same
//! rows: what makes a re-sent insert recognisable as a duplicate.

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use serde::Serialize;
use serde_json::Value;

use super::metrics::metrics;
use super::otlp::Encoder;
use super::rows_from_otlp::{metric_rows, Described, MetricHeader};
use crate::session::activity::{
    Activity, Attr, AttrValue, LogEntry, SessionSummary, SpanKind, SpanRecord, ToolOutcome,
};
use crate::session::ids::hex;

type Pairs = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
#[serde(rename_all = "PascalCase")]
pub struct LogRow {
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub trace_flags: u8,
    pub severity_text: String,
    pub severity_number: u8,
    pub service_name: String,
    pub body: String,
    pub resource_schema_url: String,
    pub resource_attributes: Pairs,
    pub scope_schema_url: String,
    pub scope_name: String,
    pub scope_version: String,
    pub scope_attributes: Pairs,
    pub log_attributes: Pairs,
    pub event_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
#[serde(rename_all = "PascalCase")]
pub struct TraceRow {
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub trace_state: String,
    pub span_name: String,
    pub span_kind: String,
    pub service_name: String,
    pub resource_attributes: Pairs,
    pub scope_name: String,
    pub scope_version: String,
    pub span_attributes: Pairs,
    pub duration: u64,
    pub status_code: String,
    pub status_message: String,
    #[serde(rename = "Events.Timestamp")]
    pub events_timestamp: Vec<i64>,
    #[serde(rename = "Events.Name")]
    pub events_name: Vec<String>,
    #[serde(rename = "Events.Attributes")]
    pub events_attributes: Vec<Pairs>,
    #[serde(rename = "Links.TraceId")]
    pub links_trace_id: Vec<String>,
    #[serde(rename = "Links.SpanId")]
    pub links_span_id: Vec<String>,
    #[serde(rename = "Links.TraceState")]
    pub links_trace_state: Vec<String>,
    #[serde(rename = "Links.Attributes")]
    pub links_attributes: Vec<Pairs>,
}

#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
#[serde(rename_all = "PascalCase")]
pub struct SumRow {
    pub resource_attributes: Pairs,
    pub resource_schema_url: String,
    pub scope_name: String,
    pub scope_version: String,
    pub scope_attributes: Pairs,
    pub scope_dropped_attr_count: u32,
    pub scope_schema_url: String,
    pub service_name: String,
    pub metric_name: String,
    pub metric_description: String,
    pub metric_unit: String,
    pub attributes: Pairs,
    pub start_time_unix: i64,
    pub time_unix: i64,
    pub value: f64,
    pub flags: u32,
    #[serde(rename = "Exemplars.FilteredAttributes")]
    pub exemplars_filtered_attributes: Vec<Pairs>,
    #[serde(rename = "Exemplars.TimeUnix")]
    pub exemplars_time_unix: Vec<i64>,
    #[serde(rename = "Exemplars.Value")]
    pub exemplars_value: Vec<f64>,
    #[serde(rename = "Exemplars.SpanId")]
    pub exemplars_span_id: Vec<String>,
    #[serde(rename = "Exemplars.TraceId")]
    pub exemplars_trace_id: Vec<String>,
    pub aggregation_temporality: i32,
    pub is_monotonic: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
#[serde(rename_all = "PascalCase")]
pub struct HistogramRow {
    pub resource_attributes: Pairs,
    pub resource_schema_url: String,
    pub scope_name: String,
    pub scope_version: String,
    pub scope_attributes: Pairs,
    pub scope_dropped_attr_count: u32,
    pub scope_schema_url: String,
    pub service_name: String,
    pub metric_name: String,
    pub metric_description: String,
    pub metric_unit: String,
    pub attributes: Pairs,
    pub start_time_unix: i64,
    pub time_unix: i64,
    pub count: u64,
    pub sum: f64,
    pub bucket_counts: Vec<u64>,
    pub explicit_bounds: Vec<f64>,
    #[serde(rename = "Exemplars.FilteredAttributes")]
    pub exemplars_filtered_attributes: Vec<Pairs>,
    #[serde(rename = "Exemplars.TimeUnix")]
    pub exemplars_time_unix: Vec<i64>,
    #[serde(rename = "Exemplars.Value")]
    pub exemplars_value: Vec<f64>,
    #[serde(rename = "Exemplars.SpanId")]
    pub exemplars_span_id: Vec<String>,
    #[serde(rename = "Exemplars.TraceId")]
    pub exemplars_trace_id: Vec<String>,
    pub flags: u32,
    pub min: f64,
    pub max: f64,
    pub aggregation_temporality: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct MessageRow {
    pub uuid: String,
    pub session_id: String,
    pub parent_uuid: String,
    pub timestamp: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub role: String,
    pub model: String,
    pub content_type: String,
    pub content_length: u64,
    pub content_preview: String,
    pub is_sidechain: bool,
    pub agent_id: String,
    pub cwd: String,
    pub git_branch: String,
    pub project: String,
    pub version: String,
    pub message_id: String,
    pub request_id: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cost_estimate: f64,
    pub transcript_path: String,
    pub transcript_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct SessionRow {
    pub session_id: String,
    pub project: String,
    pub cwd: String,
    pub git_branch: String,
    pub version: String,
    pub start: i64,
    pub last_activity: i64,
    pub entries: u64,
    pub bytes: u64,
    pub turns: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cost_estimate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct ToolRow {
    pub tool_use_id: String,
    pub session_id: String,
    pub message_uuid: String,
    pub timestamp: i64,
    pub tool_name: String,
    pub file_path: String,
    pub command: String,
    pub query: String,
    pub success: bool,
    pub error_message: String,
    pub result_size: u64,
    pub duration_ms: u64,
    pub project: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct FileAccessRow {
    pub session_id: String,
    pub timestamp: i64,
    pub file_path: String,
    pub operation: String,
    pub size: u64,
    pub extension: String,
    pub sensitive: bool,
    pub tool_use_id: String,
    pub project: String,
}

/// One batch's rows, by table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub logs: Vec<LogRow>,
    pub traces: Vec<TraceRow>,
    pub sums: Vec<SumRow>,
    pub histograms: Vec<HistogramRow>,
    pub messages: Vec<MessageRow>,
    pub sessions: Vec<SessionRow>,
    pub tools: Vec<ToolRow>,
    pub files: Vec<FileAccessRow>,
}

impl Rows {
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.traces.is_empty()
            && self.sums.is_empty()
            && self.histograms.is_empty()
            && self.messages.is_empty()
            && self.sessions.is_empty()
            && self.tools.is_empty()
            && self.files.is_empty()
    }
}

impl Encoder {
    /// The rows for one batch of activity.
    pub fn rows(&self, activity: &Activity) -> Rows {
        let mut rows = Rows {
            logs: activity.logs.iter().map(|l| self.log_row(l)).collect(),
            traces: activity.spans.iter().map(|s| self.trace_row(s)).collect(),
            messages: activity.logs.iter().map(|l| self.message_row(l)).collect(),
            sessions: activity.sessions.iter().map(session_row).collect(),
            tools: activity.tools.iter().map(|t| self.tool_row(t)).collect(),
            files: activity.tools.iter().filter_map(file_access_row).collect(),
            ..Rows::default()
        };
        self.metric_rows(activity, &mut rows);
        rows
    }

    fn pairs(&self, attrs: &[Attr]) -> Pairs {
        attrs
            .iter()
            .filter_map(|attr| Some((attr.key.to_owned(), self.value_text(&attr.value)?)))
            .collect()
    }

    fn value_text(&self, value: &AttrValue) -> Option<String> {
        Some(match value {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Float(f) => f.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::StrList(list) => serde_json::to_string(list).unwrap_or_default(),
            AttrValue::Text(text) => self.policy.apply(text)?.to_owned(),
        })
    }

    fn log_row(&self, entry: &LogEntry) -> LogRow {
        let mut attributes = self.pairs(&entry.attributes);
        attributes.push(("event.name".to_owned(), entry.event_name.clone()));
        LogRow {
            timestamp: entry.time_ms.saturating_mul(1_000_000),
            trace_id: hex(&entry.trace_id),
            span_id: entry.span_id.map(|s| hex(&s)).unwrap_or_default(),
            trace_flags: 1,
            severity_text: "INFO".to_owned(),
            severity_number: 9,
            service_name: self.resource.service_name(),
            body: entry
                .body
                .as_deref()
                .and_then(|b| self.policy.apply(b))
                .unwrap_or_default()
                .to_owned(),
            resource_schema_url: String::new(),
            resource_attributes: self.resource.pairs(entry.version.as_deref()),
            scope_schema_url: String::new(),
            scope_name: "ccotel".to_owned(),
            scope_version: env!("CARGO_PKG_VERSION").to_owned(),
            scope_attributes: Vec::new(),
            log_attributes: attributes,
            event_name: entry.event_name.clone(),
        }
    }

    fn trace_row(&self, span: &SpanRecord) -> TraceRow {
        TraceRow {
            timestamp: span.start_ms.saturating_mul(1_000_000),
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: span.parent_span_id.map(|p| hex(&p)).unwrap_or_default(),
            trace_state: String::new(),
            span_name: span.name.clone(),
            span_kind: match span.kind {
                SpanKind::Internal => "Internal",
                SpanKind::Client => "Client",
            }
            .to_owned(),
            service_name: self.resource.service_name(),
            resource_attributes: self.resource.pairs(span.version.as_deref()),
            scope_name: "ccotel".to_owned(),
            scope_version: env!("CARGO_PKG_VERSION").to_owned(),
            span_attributes: self.pairs(&span.attributes),
            duration: (span.end_ms.saturating_sub(span.start_ms).max(0) as u64)
                .saturating_mul(1_000_000),
            status_code: if span.error.is_some() {
                "Error"
            } else {
                "Unset"
            }
            .to_owned(),
            status_message: span
                .error
                .as_deref()
                .map(|e| self.policy.apply(e).unwrap_or("error").to_owned())
                .unwrap_or_default(),
            events_timestamp: Vec::new(),
            events_name: Vec::new(),
            events_attributes: Vec::new(),
            links_trace_id: Vec::new(),
            links_span_id: Vec::new(),
            links_trace_state: Vec::new(),
            links_attributes: Vec::new(),
        }
    }

    /// The metrics as the OTLP sink sends them, made into rows as a received
    /// batch's are: one mapping for both, under ccotel's own scope.
    fn metric_rows(&self, activity: &Activity, rows: &mut Rows) {
        let resource = Described {
            attributes: self.resource.pairs(None),
            service_name: self.resource.service_name(),
        };
        let scope = InstrumentationScope {
            name: "ccotel".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..InstrumentationScope::default()
        };
        let header = MetricHeader {
            resource: &resource,
            resource_schema_url: "",
            scope: Some(&scope),
            scope_schema_url: "",
        };
        for metric in metrics(activity) {
            metric_rows(&metric, &header, rows);
        }
    }

    fn message_row(&self, entry: &LogEntry) -> MessageRow {
        let attr = |key: &str| -> String {
            entry
                .attributes
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| self.value_text(&a.value))
                .unwrap_or_default()
        };
        let kind = attr("entry.type");
        let usage = entry.usage.as_ref();
        let count = |pick: fn(&crate::session::activity::UsageDelta) -> i64| {
            usage.map_or(0, |u| pick(u).max(0) as u64)
        };
        let preview = entry
            .body
            .as_deref()
            .and_then(|b| self.policy.apply(b))
            .map(|b| crate::session::tracker::truncate(b, 500).to_owned())
            .unwrap_or_default();
        MessageRow {
            uuid: attr("message.uuid"),
            session_id: attr("session.id"),
            parent_uuid: attr("message.parent_uuid"),
            timestamp: entry.time_ms,
            role: match kind.as_str() {
                "user" | "assistant" | "system" => kind.clone(),
                _ => String::new(),
            },
            kind,
            model: attr("model"),
            content_type: entry.content_type.clone(),
            content_length: entry.body.as_ref().map_or(0, |b| b.len() as u64),
            content_preview: preview,
            is_sidechain: attr("is_sidechain") == "true",
            agent_id: attr("agent_id"),
            cwd: attr("cwd"),
            git_branch: attr("git.branch"),
            project: attr("project"),
            version: attr("app.version"),
            message_id: attr("message.id"),
            request_id: attr("request_id"),
            input_tokens: count(|u| u.input),
            output_tokens: count(|u| u.output),
            cache_creation_input_tokens: count(|u| u.cache_creation),
            cache_read_input_tokens: count(|u| u.cache_read),
            cost_estimate: usage.map_or(0.0, |u| u.cost_usd),
            transcript_path: attr("transcript.path"),
            transcript_offset: attr("transcript.offset").parse().unwrap_or(0),
        }
    }

    fn tool_row(&self, tool: &ToolOutcome) -> ToolRow {
        let input: Value = serde_json::from_str(&tool.input).unwrap_or(Value::Null);
        let field = |keys: &[&str]| -> String {
            keys.iter()
                .find_map(|k| input.get(*k).and_then(Value::as_str))
                .and_then(|text| self.policy.apply(text))
                .unwrap_or_default()
                .to_owned()
        };
        // Paths are metadata, like cwd: sent whatever the content policy.
        let path = ["file_path", "notebook_path", "path"]
            .iter()
            .find_map(|k| input.get(*k).and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        ToolRow {
            tool_use_id: tool.tool_use_id.clone(),
            session_id: tool.session.clone(),
            message_uuid: tool.message_uuid.clone(),
            timestamp: tool.start_ms,
            tool_name: tool.tool.clone(),
            file_path: path,
            command: field(&["command"]),
            query: field(&["query", "pattern", "url", "prompt"]),
            success: !tool.error,
            error_message: tool
                .error_message
                .as_deref()
                .and_then(|e| self.policy.apply(e))
                .unwrap_or_default()
                .to_owned(),
            result_size: tool.result_size,
            duration_ms: tool.time_ms.saturating_sub(tool.start_ms).max(0) as u64,
            project: tool.project.clone(),
        }
    }
}

fn session_row(summary: &SessionSummary) -> SessionRow {
    SessionRow {
        session_id: summary.session.clone(),
        project: summary.project.clone(),
        cwd: summary.cwd.clone().unwrap_or_default(),
        git_branch: summary.git_branch.clone().unwrap_or_default(),
        version: summary.version.clone().unwrap_or_default(),
        start: summary.start_ms,
        last_activity: summary.last_ms,
        entries: summary.entries,
        bytes: summary.bytes,
        turns: summary.turns,
        input_tokens: summary.input.max(0) as u64,
        output_tokens: summary.output.max(0) as u64,
        cache_creation_input_tokens: summary.cache_creation.max(0) as u64,
        cache_read_input_tokens: summary.cache_read.max(0) as u64,
        cost_estimate: summary.cost_usd,
    }
}

/// Tools that touch one file, and what they do to it.
const FILE_TOOLS: [(&str, &str); 7] = [
    ("Read", "read"),
    ("Write", "write"),
    ("Edit", "edit"),
    ("MultiEdit", "edit"),
    ("NotebookEdit", "edit"),
    ("Glob", "search"),
    ("Grep", "search"),
];

/// Names that usually hold secrets.
const SENSITIVE: [&str; 9] = [
    ".env",
    "id_rsa",
    "id_ed25519",
    ".pem",
    ".key",
    "credentials",
    "secret",
    ".npmrc",
    ".netrc",
];

fn file_access_row(tool: &ToolOutcome) -> Option<FileAccessRow> {
    let operation = FILE_TOOLS.iter().find(|(name, _)| *name == tool.tool)?.1;
    let input: Value = serde_json::from_str(&tool.input).ok()?;
    let path = ["file_path", "notebook_path", "path"]
        .iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))?;
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    let lower = path.to_ascii_lowercase();
    Some(FileAccessRow {
        session_id: tool.session.clone(),
        timestamp: tool.start_ms,
        file_path: path.to_owned(),
        operation: operation.to_owned(),
        size: if operation == "read" {
            tool.result_size
        } else {
            0
        },
        extension,
        sensitive: SENSITIVE.iter().any(|s| lower.contains(s)),
        tool_use_id: tool.tool_use_id.clone(),
        project: tool.project.clone(),
    })
}
