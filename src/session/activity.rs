//! What the session layer hands on: completed spans, one log entry per transcript
//! line, and counter deltas, in transcript terms. `signal/` turns these into OTLP.

use super::ids::{SpanId, TraceId};
use super::TokenCounts;

/// An attribute value. [`AttrValue::Text`] is transcript text (prompts, responses,
/// tool input and output): the content policy decides whether and how much of it
/// leaves the process.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    StrList(Vec<String>),
    Text(String),
}

/// One attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub key: &'static str,
    pub value: AttrValue,
}

impl Attr {
    pub fn str(key: &'static str, value: impl Into<String>) -> Attr {
        Attr {
            key,
            value: AttrValue::Str(value.into()),
        }
    }
    pub fn int(key: &'static str, value: i64) -> Attr {
        Attr {
            key,
            value: AttrValue::Int(value),
        }
    }
    pub fn float(key: &'static str, value: f64) -> Attr {
        Attr {
            key,
            value: AttrValue::Float(value),
        }
    }
    pub fn bool(key: &'static str, value: bool) -> Attr {
        Attr {
            key,
            value: AttrValue::Bool(value),
        }
    }
    pub fn text(key: &'static str, value: impl Into<String>) -> Attr {
        Attr {
            key,
            value: AttrValue::Text(value.into()),
        }
    }
}

/// Span kinds used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Client,
}

/// A finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ms: i64,
    pub end_ms: i64,
    pub attributes: Vec<Attr>,
    /// Status ERROR with this message.
    pub error: Option<String>,
    /// Claude Code's version, for the resource's `service.version`.
    pub version: Option<String>,
}

/// The log record for one transcript line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub trace_id: TraceId,
    pub span_id: Option<SpanId>,
    pub time_ms: i64,
    pub event_name: String,
    pub body: Option<String>,
    pub attributes: Vec<Attr>,
    pub version: Option<String>,
    /// The kinds of content the entry carries (`text`, `tool_use`, …, joined by
    /// `,`), or `string` for plain-text content.
    pub content_type: String,
    /// What this line added to its response's counted usage.
    pub usage: Option<UsageDelta>,
}

/// Which series a counter delta belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub session: String,
    pub project: String,
    pub model: String,
}

/// Usage newly counted for one response: the difference between its new largest
/// observation and what was counted before, so the sum of all deltas is the total.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageDelta {
    pub series: SeriesKey,
    pub time_ms: i64,
    pub input: i64,
    pub output: i64,
    pub cache_creation: i64,
    pub cache_read: i64,
    pub cost_usd: f64,
}

impl UsageDelta {
    pub fn between(
        series: SeriesKey,
        time_ms: i64,
        now: &TokenCounts,
        before: &TokenCounts,
        cost_usd: f64,
    ) -> UsageDelta {
        let diff = |a: u64, b: u64| a as i64 - b as i64;
        UsageDelta {
            series,
            time_ms,
            input: diff(now.input, before.input),
            output: diff(now.output, before.output),
            cache_creation: diff(now.cache_creation, before.cache_creation),
            cache_read: diff(now.cache_read, before.cache_read),
            cost_usd,
        }
    }
}

/// A tool call that finished.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub session: String,
    pub project: String,
    pub tool: String,
    pub error: bool,
    /// When the result arrived.
    pub time_ms: i64,
    pub tool_use_id: String,
    /// The assistant entry that asked for the call.
    pub message_uuid: String,
    pub start_ms: i64,
    /// The call's input as JSON (cut at the tracker's text limit).
    pub input: String,
    pub result_size: u64,
    /// The result text when the call failed.
    pub error_message: Option<String>,
}

/// A model call whose response is complete, with its final usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCall {
    pub model: String,
    /// Input as the semantic conventions count it: fresh input plus cache
    /// reads and writes.
    pub input: u64,
    pub output: u64,
    pub time_ms: i64,
}

/// A session that finished (or went idle), with its totals.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub session: String,
    pub project: String,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    pub version: Option<String>,
    pub start_ms: i64,
    pub last_ms: i64,
    pub entries: u64,
    pub bytes: u64,
    pub turns: u64,
    pub input: i64,
    pub output: i64,
    pub cache_creation: i64,
    pub cache_read: i64,
    pub cost_usd: f64,
}

/// An API error Claude Code recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub session: String,
    pub project: String,
    pub time_ms: i64,
}

/// Everything derived from a stretch of lines.
#[derive(Debug, Default, Clone)]
pub struct Activity {
    pub spans: Vec<SpanRecord>,
    pub logs: Vec<LogEntry>,
    pub usage: Vec<UsageDelta>,
    pub tools: Vec<ToolOutcome>,
    pub api_errors: Vec<ApiError>,
    pub sessions: Vec<SessionSummary>,
    pub calls: Vec<ModelCall>,
}

impl Activity {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
            && self.logs.is_empty()
            && self.usage.is_empty()
            && self.tools.is_empty()
            && self.api_errors.is_empty()
            && self.sessions.is_empty()
            && self.calls.is_empty()
    }

    /// Records counted, for batch sizing.
    pub fn len(&self) -> usize {
        self.spans.len() + self.logs.len() + self.usage.len() + self.tools.len()
    }
}
