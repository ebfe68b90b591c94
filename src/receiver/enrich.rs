//! Joins Claude Code's own events and spans to the transcript, and holds their
//! content to ccotel's content policy.
//!
//! A record is joined by the keys it carries (`message.uuid`, `prompt.id`,
//! `tool_use_id`, `request_id`), else by the nearest fact of its kind in time
//! within its session. What it gains:
//!
//! | event | added |
//! |---|---|
//! | `user_prompt` | `prompt` (when redacted), `message.uuid`, `prompt.id`, `cwd`, `git.branch` |
//! | `tool_result`, `tool_decision` | `tool_input` (when redacted), `tool_use_id`, `ccotel.tool.result`, `ccotel.tool.is_error` |
//! | `api_request`, `api_error`, `assistant_response` | `message.id`, `request_id`, `stop_reason` |
//!
//! and, on every joined record, `ccotel.trace_id` and `ccotel.span_id` naming
//! ccotel's `turn`, `execute_tool` or `chat` span, and `ccotel.match` saying
//! which key joined it. A log record without trace context takes the span's;
//! a native span gets a link to it.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::{span, Span};

use super::index::{RecentIndex, SpanLink};
use crate::session::ids::hex;
use crate::signal::content::ContentPolicy;
use crate::signal::otlp::{kv, string_value as string};
use crate::transcript::parse_timestamp_ms;

/// How far apart in time an event and a transcript line may be and still be
/// joined when the event carries no key.
pub const TIME_TOLERANCE_MS: i64 = 3_000;

/// What Claude Code sends in place of text it withholds.
pub const REDACTED: &str = "<REDACTED>";

/// The attribute saying how a record was joined; its presence marks a record done.
pub const MATCH_KEY: &str = "ccotel.match";

/// Attributes of native records that carry transcript content. The content
/// policy applies to them as to ccotel's own.
const CONTENT_KEYS: &[&str] = &[
    "prompt",
    "user_prompt",
    "response",
    "tool_input",
    "tool_parameters",
    "body",
    "full_command",
    "bash_command",
    "file_path",
    // Error messages can quote tool output or the request.
    "error",
    // The GenAI conventions' opt-in content attributes.
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
];

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Joined now, by this key.
    Joined(&'static str),
    /// Joined before (a retry).
    AlreadyJoined,
    /// Not an event ccotel enriches.
    NotApplicable,
    /// Its transcript line has not been read (yet).
    Waiting,
}

/// The time of an event: `event.timestamp`, else the record's time.
fn event_time_ms(record: &LogRecord) -> i64 {
    string_value(&record.attributes, "event.timestamp")
        .and_then(parse_timestamp_ms)
        .unwrap_or_else(|| {
            let nanos = if record.time_unix_nano > 0 {
                record.time_unix_nano
            } else {
                record.observed_time_unix_nano
            };
            (nanos / 1_000_000) as i64
        })
}

/// The event's name: `event.name`, the OTLP `event_name`, or the body
/// `claude_code.<name>`.
pub fn event_name(record: &LogRecord) -> Option<&str> {
    if let Some(name) = string_value(&record.attributes, "event.name") {
        return Some(name);
    }
    if !record.event_name.is_empty() {
        return Some(record.event_name.trim_start_matches("claude_code."));
    }
    match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(body)) => body.strip_prefix("claude_code."),
        _ => None,
    }
}

/// Joins one log record to the transcript, adding what the index knows.
///
/// An event that carries a key is joined by it or not at all, with one
/// exception: an `api_error`'s request id is never in the transcript (the
/// error line has none), so once `expired` it is joined by time. An event
/// without keys is joined by time at once.
pub fn join_log(
    record: &mut LogRecord,
    index: &RecentIndex,
    policy: ContentPolicy,
    expired: bool,
) -> Join {
    if string_value(&record.attributes, MATCH_KEY).is_some() {
        return Join::AlreadyJoined;
    }
    let Some(event) = event_name(record).map(str::to_owned) else {
        return Join::NotApplicable;
    };
    if !matches!(
        event.as_str(),
        "user_prompt"
            | "tool_result"
            | "tool_decision"
            | "api_request"
            | "api_error"
            | "assistant_response"
    ) {
        return Join::NotApplicable;
    }
    let Some(session) = string_value(&record.attributes, "session.id").map(str::to_owned) else {
        return Join::NotApplicable;
    };
    let time_ms = event_time_ms(record);
    let attrs = &record.attributes;
    let joined = match event.as_str() {
        "user_prompt" => join_prompt(attrs, index, &session, time_ms, policy),
        "tool_result" | "tool_decision" => {
            let decision = event == "tool_decision";
            join_tool(attrs, index, &session, time_ms, decision, policy)
        }
        _ => join_response(
            attrs,
            index,
            &session,
            time_ms,
            event == "api_error",
            expired,
        ),
    };
    let Some((key, link, added)) = joined else {
        return Join::Waiting;
    };
    for (name, value) in added {
        set(&mut record.attributes, name, value);
    }
    add_link_attributes(&mut record.attributes, key, link);
    if record.trace_id.iter().all(|b| *b == 0) {
        record.trace_id = link.trace_id.to_vec();
        record.span_id = link.span_id.to_vec();
    }
    Join::Joined(key)
}

type Added = Vec<(&'static str, AnyValue)>;

fn join_prompt(
    attrs: &[KeyValue],
    index: &RecentIndex,
    session: &str,
    time_ms: i64,
    policy: ContentPolicy,
) -> Option<(&'static str, SpanLink, Added)> {
    let uuid = string_value(attrs, "message.uuid");
    let prompt_id = string_value(attrs, "prompt.id");
    let (key, prompt) = if let Some(found) = uuid.and_then(|u| index.prompt_by_uuid(session, u)) {
        ("message.uuid", found)
    } else if let Some(found) = prompt_id.and_then(|id| index.prompt_by_id(session, id)) {
        ("prompt.id", found)
    } else if uuid.is_none() && prompt_id.is_none() {
        let near = index.prompt_near(session, time_ms, TIME_TOLERANCE_MS)?;
        ("time", near)
    } else {
        // Its keys name a prompt not read (yet): another prompt near in time
        // would be the wrong one.
        return None;
    };
    let mut added = Added::new();
    if withheld(attrs, "prompt") {
        if let Some(text) = prompt.text.as_deref().and_then(|t| policy.apply(t)) {
            added.push(("prompt", string(text)));
        }
    }
    let optional = [
        ("message.uuid", &prompt.uuid),
        ("prompt.id", &prompt.prompt_id),
        ("cwd", &prompt.cwd),
        ("git.branch", &prompt.git_branch),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            if string_value(attrs, name).is_none() {
                added.push((name, string(value)));
            }
        }
    }
    Some((key, prompt.span, added))
}

fn join_tool(
    attrs: &[KeyValue],
    index: &RecentIndex,
    session: &str,
    time_ms: i64,
    decision: bool,
    policy: ContentPolicy,
) -> Option<(&'static str, SpanLink, Added)> {
    let by_id = string_value(attrs, "tool_use_id").map(|id| index.tool(session, id));
    let (key, tool) = match by_id {
        Some(Some(found)) => ("tool_use_id", found),
        // Its id names a call not read (yet), or one the index no longer
        // holds: a call near in time would be another call.
        Some(None) => return None,
        None => {
            let name = string_value(attrs, "tool_name");
            let near = index.tool_near(session, name, decision, time_ms, TIME_TOLERANCE_MS)?;
            ("time", near)
        }
    };
    // A decision comes before the result; a result event needs the result line.
    if !decision && tool.result.is_none() {
        return None;
    }
    let mut added = Added::new();
    if string_value(attrs, "tool_use_id").is_none() {
        added.push(("tool_use_id", string(&tool.tool_use_id)));
    }
    if withheld(attrs, "tool_input") {
        if let Some(input) = tool.input.as_deref().and_then(|t| policy.apply(t)) {
            added.push(("tool_input", string(input)));
        }
    }
    if let (false, Some(result)) = (decision, &tool.result) {
        if let Some(summary) = result.summary.as_deref().and_then(|t| policy.apply(t)) {
            added.push(("ccotel.tool.result", string(summary)));
        }
        added.push(("ccotel.tool.is_error", boolean(result.is_error)));
    }
    Some((key, tool.span, added))
}

fn join_response(
    attrs: &[KeyValue],
    index: &RecentIndex,
    session: &str,
    time_ms: i64,
    api_error: bool,
    expired: bool,
) -> Option<(&'static str, SpanLink, Added)> {
    let by_request = string_value(attrs, "request_id").filter(|id| !id.is_empty());
    let (key, response) = match by_request.and_then(|id| index.response(session, id)) {
        Some(found) => ("request_id", found),
        // An error may have no request id, or one the transcript never saw.
        None if by_request.is_none() || (api_error && expired) => {
            let model = string_value(attrs, "model");
            let near =
                index.response_near(session, model, api_error, time_ms, TIME_TOLERANCE_MS)?;
            ("time", near)
        }
        None => return None,
    };
    let mut added = Added::new();
    added.push(("message.id", string(&response.message_id)));
    if let (None, Some(request)) = (by_request, &response.request_id) {
        added.push(("request_id", string(request)));
    }
    if let Some(stop) = &response.stop_reason {
        added.push(("stop_reason", string(stop)));
    }
    Some((key, response.span, added))
}

/// Joins a native span (beta tracing) and links it to ccotel's span.
pub fn join_span(span: &mut Span, index: &RecentIndex) -> Join {
    if string_value(&span.attributes, MATCH_KEY).is_some() {
        return Join::AlreadyJoined;
    }
    let Some(session) = string_value(&span.attributes, "session.id").map(str::to_owned) else {
        return Join::NotApplicable;
    };
    let attrs = &span.attributes;
    let start_ms = (span.start_time_unix_nano / 1_000_000) as i64;
    let joined = match span.name.as_str() {
        "claude_code.interaction" => index
            .prompt_near(&session, start_ms, TIME_TOLERANCE_MS)
            .map(|p| ("time", p.span)),
        "claude_code.llm_request" => match string_value(attrs, "request_id") {
            Some(id) => index.response(&session, id).map(|r| ("request_id", r.span)),
            None => return Join::NotApplicable,
        },
        "claude_code.tool" | "claude_code.tool.execution" | "claude_code.tool.blocked_on_user" => {
            match string_value(attrs, "tool_use_id") {
                Some(id) => index.tool(&session, id).map(|t| ("tool_use_id", t.span)),
                None => return Join::NotApplicable,
            }
        }
        _ => return Join::NotApplicable,
    };
    let Some((key, link)) = joined else {
        return Join::Waiting;
    };
    add_link_attributes(&mut span.attributes, key, link);
    span.links.push(span::Link {
        trace_id: link.trace_id.to_vec(),
        span_id: link.span_id.to_vec(),
        attributes: vec![kv("ccotel.link", string("transcript"))],
        ..Default::default()
    });
    Join::Joined(key)
}

/// Holds the content a native record carries to the policy: cut to its limit,
/// or replaced by `<REDACTED>` under `none`. A content key whose value is not
/// a string (a list, a map, bytes) cannot be cut, so it is replaced unless the
/// policy is `full`.
pub fn apply_policy(attributes: &mut [KeyValue], policy: ContentPolicy) {
    for attr in attributes.iter_mut() {
        if CONTENT_KEYS.contains(&attr.key.as_str()) {
            hold_to_policy(&mut attr.value, policy);
        }
    }
}

fn hold_to_policy(value: &mut Option<AnyValue>, policy: ContentPolicy) {
    match value.as_mut().and_then(|v| v.value.as_mut()) {
        Some(any_value::Value::StringValue(text)) => {
            if text == REDACTED {
                return;
            }
            match policy.apply(text) {
                Some(kept) if kept.len() == text.len() => {}
                Some(kept) => *text = kept.to_owned(),
                None => *text = REDACTED.to_owned(),
            }
        }
        Some(
            any_value::Value::ArrayValue(_)
            | any_value::Value::KvlistValue(_)
            | any_value::Value::BytesValue(_),
        ) if policy != ContentPolicy::Full => *value = Some(string(REDACTED)),
        _ => {}
    }
}

/// The policy for a log record's content attributes and, for the raw API
/// body events, its body.
pub fn apply_policy_to_log(record: &mut LogRecord, policy: ContentPolicy) {
    apply_policy(&mut record.attributes, policy);
    if matches!(
        event_name(record),
        Some("api_request_body" | "api_response_body")
    ) {
        hold_to_policy(&mut record.body, policy);
    }
}

/// The policy for a span: its content attributes, its status message, and its
/// events (tool content arrives as span events, under names not documented:
/// under `none` every text value of an event goes).
pub fn apply_policy_to_span(span: &mut Span, policy: ContentPolicy) {
    apply_policy(&mut span.attributes, policy);
    if let Some(status) = span.status.as_mut() {
        if let Some(kept) = policy.apply(&status.message) {
            if kept.len() != status.message.len() {
                status.message = kept.to_owned();
            }
        } else if !status.message.is_empty() {
            status.message = REDACTED.to_owned();
        }
    }
    for event in &mut span.events {
        for attr in &mut event.attributes {
            hold_to_policy(&mut attr.value, policy);
        }
    }
}

fn add_link_attributes(attributes: &mut Vec<KeyValue>, key: &'static str, link: SpanLink) {
    set(attributes, "ccotel.trace_id", string(&hex(&link.trace_id)));
    set(attributes, "ccotel.span_id", string(&hex(&link.span_id)));
    set(attributes, MATCH_KEY, string(key));
}

/// Whether Claude Code withheld a value: absent, empty or `<REDACTED>`.
fn withheld(attrs: &[KeyValue], key: &str) -> bool {
    string_value(attrs, key).is_none_or(|v| v.is_empty() || v == REDACTED)
}

pub fn string_value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(text) => Some(text.as_str()),
            _ => None,
        }
    })
}

fn set(attributes: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match attributes.iter_mut().find(|kv| kv.key == key) {
        Some(existing) => existing.value = Some(value),
        None => attributes.push(kv(key, value)),
    }
}

fn boolean(value: bool) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::BoolValue(value)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::receiver::fixture::{index, SESSION};
    use crate::receiver::index::IndexLimits;

    fn record(event: &str, time: &str, attrs: &[(&str, &str)]) -> LogRecord {
        let mut attributes = vec![
            kv("event.name", string(event)),
            kv("session.id", string(SESSION)),
            kv("event.timestamp", string(time)),
        ];
        attributes.extend(attrs.iter().map(|(k, v)| kv(k, string(v))));
        LogRecord {
            body: Some(string(&format!("claude_code.{event}"))),
            attributes,
            ..Default::default()
        }
    }

    fn value<'a>(record: &'a LogRecord, key: &str) -> Option<&'a str> {
        string_value(&record.attributes, key)
    }

    #[test]
    fn a_redacted_prompt_is_filled_in_and_linked_to_its_turn() {
        let index = index(8, IndexLimits::default(), Instant::now());
        let mut prompt = record(
            "user_prompt",
            "2026-03-01T10:00:00.010Z",
            &[("prompt", REDACTED), ("message.uuid", "u-0001")],
        );
        let policy = ContentPolicy::Truncate(6);
        assert_eq!(
            join_log(&mut prompt, &index, policy, false),
            Join::Joined("message.uuid")
        );
        assert_eq!(
            value(&prompt, "prompt"),
            Some("Rename"),
            "cut to the policy"
        );
        assert_eq!(value(&prompt, "git.branch"), Some("feature/rename"));
        let turn = index
            .prompt_by_uuid(SESSION, "u-0001")
            .expect("prompt")
            .span;
        assert_eq!(prompt.span_id, turn.span_id.to_vec());
        assert_eq!(
            value(&prompt, "ccotel.span_id"),
            Some(hex(&turn.span_id).as_str())
        );
        assert_eq!(
            join_log(&mut prompt, &index, policy, false),
            Join::AlreadyJoined
        );
    }

    #[test]
    fn text_claude_code_sent_is_kept_and_none_sends_no_text() {
        let index = index(8, IndexLimits::default(), Instant::now());
        let mut prompt = record(
            "user_prompt",
            "2026-03-01T10:00:00.010Z",
            &[("prompt", "typed by hand"), ("prompt.id", "p-0001")],
        );
        assert_eq!(
            join_log(&mut prompt, &index, ContentPolicy::None, false),
            Join::Joined("prompt.id")
        );
        assert_eq!(
            value(&prompt, "prompt"),
            Some("typed by hand"),
            "not replaced"
        );
        apply_policy_to_log(&mut prompt, ContentPolicy::None);
        assert_eq!(
            value(&prompt, "prompt"),
            Some(REDACTED),
            "but held to the policy"
        );
        assert_eq!(
            value(&prompt, "cwd"),
            Some("/home/dev/shop"),
            "ids and places stay"
        );

        let mut result = record(
            "tool_result",
            "2026-03-01T10:00:06.400Z",
            &[("tool_use_id", "toolu_01AAA"), ("error", "stack trace")],
        );
        join_log(&mut result, &index, ContentPolicy::None, false);
        apply_policy_to_log(&mut result, ContentPolicy::None);
        assert_eq!(value(&result, "ccotel.tool.result"), None);
        assert_eq!(value(&result, "error"), Some(REDACTED));
    }

    #[test]
    fn keyless_events_join_by_time_and_unknown_keys_wait() {
        let index = index(8, IndexLimits::default(), Instant::now());
        let policy = ContentPolicy::default();
        let mut failed = record(
            "tool_result",
            "2026-03-01T10:01:04.300Z",
            &[("tool_name", "Read")],
        );
        assert_eq!(
            join_log(&mut failed, &index, policy, false),
            Join::Joined("time")
        );
        assert_eq!(value(&failed, "tool_use_id"), Some("toolu_01CCC"));
        assert_eq!(
            failed
                .attributes
                .iter()
                .find(|kv| kv.key == "ccotel.tool.is_error")
                .and_then(|kv| kv.value.clone()),
            Some(boolean(true))
        );

        let mut unknown = record(
            "tool_result",
            "2026-03-01T10:01:04.300Z",
            &[("tool_use_id", "toolu_X")],
        );
        assert_eq!(join_log(&mut unknown, &index, policy, false), Join::Waiting);
        assert_eq!(
            value(&unknown, MATCH_KEY),
            None,
            "left untouched while it waits"
        );
        let mut later = record(
            "api_request",
            "2026-03-01T10:00:04.100Z",
            &[("request_id", "req_011ZZZ")],
        );
        assert_eq!(join_log(&mut later, &index, policy, false), Join::Waiting);
        let mut other = record("permission_mode_changed", "2026-03-01T10:00:04.100Z", &[]);
        assert_eq!(
            join_log(&mut other, &index, policy, false),
            Join::NotApplicable
        );
    }

    #[test]
    fn a_result_waits_for_its_result_line() {
        // Read up to the tool call, not its result.
        let index = index(2, IndexLimits::default(), Instant::now());
        let policy = ContentPolicy::default();
        let mut decision = record(
            "tool_decision",
            "2026-03-01T10:00:04.200Z",
            &[("tool_use_id", "toolu_01AAA")],
        );
        assert_eq!(
            join_log(&mut decision, &index, policy, false),
            Join::Joined("tool_use_id")
        );
        let mut result = record(
            "tool_result",
            "2026-03-01T10:00:06.400Z",
            &[("tool_use_id", "toolu_01AAA")],
        );
        assert_eq!(join_log(&mut result, &index, policy, false), Join::Waiting);
    }

    #[test]
    fn native_spans_get_a_link_to_ccotel_s_span() {
        let index = index(8, IndexLimits::default(), Instant::now());
        let mut span = Span {
            name: "claude_code.llm_request".to_owned(),
            attributes: vec![
                kv("session.id", string(SESSION)),
                kv("request_id", string("req_011BBB")),
                kv("user_prompt", string("PROMPT-ALPHA-7731")),
            ],
            ..Default::default()
        };
        assert_eq!(join_span(&mut span, &index), Join::Joined("request_id"));
        let chat = index
            .response(SESSION, "req_011BBB")
            .expect("response")
            .span;
        assert_eq!(span.links.len(), 1);
        assert_eq!(span.links[0].span_id, chat.span_id.to_vec());
        apply_policy_to_span(&mut span, ContentPolicy::None);
        assert_eq!(
            string_value(&span.attributes, "user_prompt"),
            Some(REDACTED)
        );
    }

    #[test]
    fn an_api_error_falls_back_to_time_only_after_its_wait() {
        let index = index(8, IndexLimits::default(), Instant::now());
        let policy = ContentPolicy::default();
        let mut error = record(
            "api_error",
            "2026-03-01T10:01:20.100Z",
            &[("request_id", "req_never_written")],
        );
        assert_eq!(join_log(&mut error, &index, policy, false), Join::Waiting);
        assert_eq!(
            join_log(&mut error, &index, policy, true),
            Join::Joined("time")
        );
        assert_eq!(value(&error, "message.id"), Some("a2c1e7d4-api-error"));
        // A prompt whose uuid was never read is not joined to a neighbour.
        let mut prompt = record(
            "user_prompt",
            "2026-03-01T10:01:00.100Z",
            &[("message.uuid", "u-never")],
        );
        assert_eq!(join_log(&mut prompt, &index, policy, true), Join::Waiting);
    }

    #[test]
    fn none_covers_span_status_events_and_structured_values() {
        use opentelemetry_proto::tonic::common::v1::ArrayValue;
        use opentelemetry_proto::tonic::trace::v1::{span::Event, Status};
        let mut span = Span {
            attributes: vec![
                kv("error", string("cat: secret.txt: RESULT-DELTA")),
                kv(
                    "gen_ai.input.messages",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![string("PROMPT-ALPHA")],
                        })),
                    },
                ),
                kv("tool_name", string("Bash")),
            ],
            status: Some(Status {
                message: "failed on PROMPT-ALPHA".to_owned(),
                ..Default::default()
            }),
            events: vec![Event {
                name: "tool.output".to_owned(),
                attributes: vec![kv("whatever", string("RESULT-DELTA"))],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut truncated = span.clone();
        apply_policy_to_span(&mut span, ContentPolicy::None);
        assert_eq!(string_value(&span.attributes, "error"), Some(REDACTED));
        assert_eq!(
            string_value(&span.attributes, "gen_ai.input.messages"),
            Some(REDACTED)
        );
        assert_eq!(
            string_value(&span.attributes, "tool_name"),
            Some("Bash"),
            "names stay"
        );
        assert_eq!(
            span.status.as_ref().map(|s| s.message.as_str()),
            Some(REDACTED)
        );
        assert_eq!(
            string_value(&span.events[0].attributes, "whatever"),
            Some(REDACTED)
        );
        apply_policy_to_span(&mut truncated, ContentPolicy::Truncate(6));
        assert_eq!(
            truncated.status.as_ref().map(|s| s.message.as_str()),
            Some("failed")
        );
    }
}
