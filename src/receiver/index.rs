//! Recent transcript facts the receiver joins Claude Code's own events to:
//! prompts, tool calls and model responses per session, each with the ids of
//! the span ccotel made for it.
//!
//! The export's reader feeds it as it reads lines. Native events arrive seconds
//! after their line, so only recent facts are kept: the oldest read go first
//! once they are older than the age limit or the count or byte limits are
//! reached. Text is stored already cut to the content policy, so nothing the
//! policy forbids is held, let alone sent.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::session::activity::{AttrValue, LogEntry};
use crate::session::ids::{span_id, SpanId, TraceId};
use crate::session::tracker::{content_blocks, is_human_prompt, tool_result_text, truncate};
use crate::transcript::{Entry, EntryKind};

/// How much the index keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLimits {
    /// Facts read longer ago than this are dropped.
    pub max_age: Duration,
    /// At most this many facts across all sessions.
    pub max_facts: usize,
    /// At most about this many bytes of ids and text.
    pub max_bytes: usize,
    /// The most text kept per value; `None` keeps no text at all.
    pub text_cap: Option<usize>,
}

impl Default for IndexLimits {
    fn default() -> Self {
        IndexLimits {
            max_age: Duration::from_secs(10 * 60),
            max_facts: 100_000,
            max_bytes: 32 << 20,
            text_cap: Some(4096),
        }
    }
}

/// A span ccotel sent, to link to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// A prompt the human typed; its span is the `turn`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub uuid: Option<String>,
    pub prompt_id: Option<String>,
    pub time_ms: i64,
    pub text: Option<String>,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    pub span: SpanLink,
}

/// A tool call; its span is `execute_tool`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub tool_use_id: String,
    /// Unknown when only the result was read (the call is older than the index).
    pub name: Option<String>,
    pub time_ms: i64,
    /// The call's input as JSON.
    pub input: Option<String>,
    pub result: Option<ToolResult>,
    pub span: SpanLink,
}

/// What a tool call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// The start of the result's text.
    pub summary: Option<String>,
    /// Size of the result as written in the transcript.
    pub size: u64,
    pub is_error: bool,
    pub time_ms: i64,
}

/// A model response (or an API error Claude Code recorded); its span is `chat`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub message_id: String,
    pub request_id: Option<String>,
    pub model: Option<String>,
    pub stop_reason: Option<String>,
    pub is_api_error: bool,
    pub time_ms: i64,
    pub span: SpanLink,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Prompt,
    Tool,
    Response,
}

#[derive(Debug, Default)]
struct SessionFacts {
    prompts: VecDeque<Prompt>,
    tools: VecDeque<ToolCall>,
    responses: VecDeque<Response>,
    /// The kind of each fact, oldest first, so eviction pops the right queue.
    order: VecDeque<Kind>,
}

/// Recent facts per session.
#[derive(Debug)]
pub struct RecentIndex {
    limits: IndexLimits,
    sessions: HashMap<String, SessionFacts>,
    /// Every fact's session and when it was read, oldest first.
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

impl RecentIndex {
    pub fn new(limits: IndexLimits) -> RecentIndex {
        RecentIndex {
            limits,
            sessions: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Facts held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes in one transcript line, with the log entry the tracker made of it
    /// (which names its session and the span it belongs to).
    pub fn observe(&mut self, entry: &Entry, log: &LogEntry, now: Instant) {
        let Some(session) = string_attr(log, "session.id") else {
            return;
        };
        let session = session.to_owned();
        match entry.kind {
            EntryKind::User => self.observe_user(&session, entry, log, now),
            EntryKind::Assistant => self.observe_assistant(&session, entry, log, now),
            _ => {}
        }
        self.evict(now);
    }

    fn observe_user(&mut self, session: &str, entry: &Entry, log: &LogEntry, now: Instant) {
        let blocks = content_blocks(entry);
        let results: Vec<_> = blocks
            .iter()
            .filter(|b| b.kind.as_deref() == Some("tool_result"))
            .collect();
        if is_human_prompt(entry, !results.is_empty()) {
            let Some(span_id) = log.span_id else { return };
            let text = crate::session::tracker::user_text(entry);
            let prompt = Prompt {
                uuid: entry.uuid.clone(),
                prompt_id: entry.prompt_id.clone(),
                time_ms: log.time_ms,
                text: self.keep_text(&text),
                cwd: entry.cwd.clone(),
                git_branch: entry.git_branch.clone(),
                span: SpanLink {
                    trace_id: log.trace_id,
                    span_id,
                },
            };
            self.push(session, Kind::Prompt, prompt_size(&prompt), now, |facts| {
                facts.prompts.push_back(prompt)
            });
            return;
        }
        for block in results {
            let Some(tool_use_id) = block.tool_use_id.as_deref() else {
                continue;
            };
            let text = block
                .content
                .as_deref()
                .map(tool_result_text)
                .unwrap_or_default();
            let result = ToolResult {
                summary: self.keep_text(&text),
                size: block.content.as_deref().map_or(0, |c| c.get().len() as u64),
                is_error: block.is_error == Some(true),
                time_ms: log.time_ms,
            };
            let known = self
                .sessions
                .get_mut(session)
                .and_then(|facts| {
                    facts
                        .tools
                        .iter_mut()
                        .rev()
                        .find(|t| t.tool_use_id == tool_use_id)
                })
                .map(|tool| {
                    // A result read again (a replay, a re-read file) replaces
                    // the one held: count the change, not the sum.
                    let before = tool_size(tool);
                    tool.result = Some(result.clone());
                    tool_size(tool) as isize - before as isize
                });
            if let Some(change) = known {
                self.bytes = self.bytes.saturating_add_signed(change);
                continue;
            }
            let tool = ToolCall {
                tool_use_id: tool_use_id.to_owned(),
                name: None,
                time_ms: log.time_ms,
                input: None,
                result: Some(result),
                span: SpanLink {
                    trace_id: log.trace_id,
                    span_id: span_id(&log.trace_id, "tool", tool_use_id),
                },
            };
            self.push(session, Kind::Tool, tool_size(&tool), now, |facts| {
                facts.tools.push_back(tool)
            });
        }
    }

    fn observe_assistant(&mut self, session: &str, entry: &Entry, log: &LogEntry, now: Instant) {
        let (Some(message), Some(chat_span)) = (entry.message.as_ref(), log.span_id) else {
            return;
        };
        let message_id = string_attr(log, "message.id").map(str::to_owned);
        if let Some(message_id) = message_id {
            let known = self.sessions.get(session).is_some_and(|facts| {
                facts.responses.iter().rev().any(|r| {
                    r.message_id == message_id
                        && r.request_id.as_deref() == entry.request_id.as_deref()
                })
            });
            if !known {
                let response = Response {
                    message_id,
                    request_id: entry.request_id.clone(),
                    model: message.model.clone(),
                    stop_reason: message.stop_reason.clone(),
                    is_api_error: entry.is_api_error_message,
                    time_ms: log.time_ms,
                    span: SpanLink {
                        trace_id: log.trace_id,
                        span_id: chat_span,
                    },
                };
                let size = response_size(&response);
                self.push(session, Kind::Response, size, now, |facts| {
                    facts.responses.push_back(response)
                });
            } else if let Some(stop) = &message.stop_reason {
                // Later lines of a streamed response carry its stop reason.
                if let Some(response) = self.sessions.get_mut(session).and_then(|facts| {
                    facts
                        .responses
                        .iter_mut()
                        .rev()
                        .find(|r| Some(r.message_id.as_str()) == string_attr(log, "message.id"))
                }) {
                    response.stop_reason = Some(stop.clone());
                }
            }
        }
        for block in content_blocks(entry) {
            if !matches!(
                block.kind.as_deref(),
                Some("tool_use") | Some("server_tool_use")
            ) {
                continue;
            }
            let Some(id) = block.id.as_deref() else {
                continue;
            };
            let input = block.input.as_deref().map_or("", |raw| raw.get());
            let tool = ToolCall {
                tool_use_id: id.to_owned(),
                name: block.name.clone(),
                time_ms: log.time_ms,
                input: self.keep_text(input),
                result: None,
                span: SpanLink {
                    trace_id: log.trace_id,
                    span_id: span_id(&log.trace_id, "tool", id),
                },
            };
            self.push(session, Kind::Tool, tool_size(&tool), now, |facts| {
                facts.tools.push_back(tool)
            });
        }
    }

    fn keep_text(&self, text: &str) -> Option<String> {
        let cap = self.limits.text_cap?;
        (!text.is_empty()).then(|| truncate(text, cap).to_owned())
    }

    fn push(
        &mut self,
        session: &str,
        kind: Kind,
        size: usize,
        now: Instant,
        add: impl FnOnce(&mut SessionFacts),
    ) {
        let facts = self.sessions.entry(session.to_owned()).or_default();
        add(facts);
        facts.order.push_back(kind);
        self.order.push_back((now, session.to_owned()));
        self.bytes += size + session.len();
    }

    /// Drops facts past the age limit, then the oldest until within the count
    /// and byte limits.
    pub fn evict(&mut self, now: Instant) {
        while let Some((read_at, _)) = self.order.front() {
            let too_old = now.saturating_duration_since(*read_at) > self.limits.max_age;
            let too_many =
                self.order.len() > self.limits.max_facts || self.bytes > self.limits.max_bytes;
            if !too_old && !too_many {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        let Some((_, session)) = self.order.pop_front() else {
            return;
        };
        let Some(facts) = self.sessions.get_mut(&session) else {
            return;
        };
        let freed = match facts.order.pop_front() {
            Some(Kind::Prompt) => facts.prompts.pop_front().map(|p| prompt_size(&p)),
            Some(Kind::Tool) => facts.tools.pop_front().map(|t| tool_size(&t)),
            Some(Kind::Response) => facts.responses.pop_front().map(|r| response_size(&r)),
            None => None,
        };
        self.bytes = self
            .bytes
            .saturating_sub(freed.unwrap_or(0) + session.len());
        if facts.order.is_empty() {
            self.sessions.remove(&session);
        }
    }

    /// The prompt with this transcript uuid.
    pub fn prompt_by_uuid(&self, session: &str, uuid: &str) -> Option<&Prompt> {
        self.facts(session)?
            .prompts
            .iter()
            .rev()
            .find(|p| p.uuid.as_deref() == Some(uuid))
    }

    /// The prompt with this `promptId`.
    pub fn prompt_by_id(&self, session: &str, prompt_id: &str) -> Option<&Prompt> {
        self.facts(session)?
            .prompts
            .iter()
            .rev()
            .find(|p| p.prompt_id.as_deref() == Some(prompt_id))
    }

    /// The prompt nearest `time_ms`, if within `tolerance_ms`.
    pub fn prompt_near(&self, session: &str, time_ms: i64, tolerance_ms: i64) -> Option<&Prompt> {
        nearest(&self.facts(session)?.prompts, time_ms, tolerance_ms, |p| {
            Some(p.time_ms)
        })
    }

    pub fn tool(&self, session: &str, tool_use_id: &str) -> Option<&ToolCall> {
        self.facts(session)?
            .tools
            .iter()
            .rev()
            .find(|t| t.tool_use_id == tool_use_id)
    }

    /// The call of this tool whose result (or, with `started`, whose start)
    /// is nearest `time_ms`, within `tolerance_ms`. Claude Code reports user
    /// MCP tools as `mcp_tool`.
    pub fn tool_near(
        &self,
        session: &str,
        name: Option<&str>,
        started: bool,
        time_ms: i64,
        tolerance_ms: i64,
    ) -> Option<&ToolCall> {
        let facts = self.facts(session)?;
        let named = |tool: &ToolCall| match (name, tool.name.as_deref()) {
            (None, _) => true,
            (Some("mcp_tool"), Some(actual)) => actual.starts_with("mcp__"),
            (Some(wanted), Some(actual)) => wanted == actual,
            (Some(_), None) => false,
        };
        nearest(&facts.tools, time_ms, tolerance_ms, |t| {
            if !named(t) {
                return None;
            }
            if started {
                Some(t.time_ms)
            } else {
                t.result.as_ref().map(|r| r.time_ms)
            }
        })
    }

    /// The response with this request id.
    pub fn response(&self, session: &str, request_id: &str) -> Option<&Response> {
        self.facts(session)?
            .responses
            .iter()
            .rev()
            .find(|r| r.request_id.as_deref() == Some(request_id))
    }

    /// The response (or recorded API error) nearest `time_ms`, within
    /// `tolerance_ms`, of this model when one is named.
    pub fn response_near(
        &self,
        session: &str,
        model: Option<&str>,
        api_error: bool,
        time_ms: i64,
        tolerance_ms: i64,
    ) -> Option<&Response> {
        nearest(
            &self.facts(session)?.responses,
            time_ms,
            tolerance_ms,
            |r| {
                let model_matches = api_error || model.is_none() || r.model.as_deref() == model;
                (r.is_api_error == api_error && model_matches).then_some(r.time_ms)
            },
        )
    }

    fn facts(&self, session: &str) -> Option<&SessionFacts> {
        self.sessions.get(session)
    }
}

/// The fact whose time (`None`: not a candidate) is nearest `time_ms`, within
/// `tolerance_ms`; on a tie, the one read last.
fn nearest<T>(
    facts: &VecDeque<T>,
    time_ms: i64,
    tolerance_ms: i64,
    time_of: impl Fn(&T) -> Option<i64>,
) -> Option<&T> {
    facts
        .iter()
        .rev()
        .filter_map(|fact| Some((time_of(fact)?.abs_diff(time_ms), fact)))
        .filter(|(distance, _)| *distance <= tolerance_ms.unsigned_abs())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, fact)| fact)
}

fn string_attr<'a>(log: &'a LogEntry, key: &str) -> Option<&'a str> {
    log.attributes.iter().find_map(|attr| match &attr.value {
        AttrValue::Str(value) if attr.key == key => Some(value.as_str()),
        _ => None,
    })
}

const FACT_OVERHEAD: usize = 96;

fn len(text: &Option<String>) -> usize {
    text.as_ref().map_or(0, String::len)
}

fn prompt_size(prompt: &Prompt) -> usize {
    FACT_OVERHEAD
        + len(&prompt.uuid)
        + len(&prompt.prompt_id)
        + len(&prompt.text)
        + len(&prompt.cwd)
        + len(&prompt.git_branch)
}

fn tool_size(tool: &ToolCall) -> usize {
    FACT_OVERHEAD
        + tool.tool_use_id.len()
        + len(&tool.name)
        + len(&tool.input)
        + tool.result.as_ref().map_or(0, |r| len(&r.summary) + 32)
}

fn response_size(response: &Response) -> usize {
    FACT_OVERHEAD
        + response.message_id.len()
        + len(&response.request_id)
        + len(&response.model)
        + len(&response.stop_reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::fixture::{index, SESSION};
    use crate::session::ids::trace_id;

    #[test]
    fn prompts_tools_and_responses_are_found_by_their_keys() {
        let now = Instant::now();
        let index = index(8, IndexLimits::default(), now);
        let prompt = index.prompt_by_uuid(SESSION, "u-0001").expect("prompt");
        assert_eq!(prompt.prompt_id.as_deref(), Some("p-0001"));
        assert_eq!(prompt.cwd.as_deref(), Some("/home/dev/shop"));
        assert!(prompt
            .text
            .as_deref()
            .is_some_and(|t| t.contains("PROMPT-ALPHA-7731")));
        assert_eq!(prompt.span.trace_id, trace_id(SESSION));
        assert_eq!(
            prompt.span.span_id,
            span_id(&trace_id(SESSION), "turn", "u-0001")
        );
        assert_eq!(index.prompt_by_id(SESSION, "p-0001"), Some(prompt));

        let tool = index.tool(SESSION, "toolu_01AAA").expect("tool");
        assert_eq!(tool.name.as_deref(), Some("Bash"));
        assert!(tool
            .input
            .as_deref()
            .is_some_and(|i| i.contains("INPUT-CHARLIE-9043")));
        let result = tool.result.as_ref().expect("result read");
        assert!(!result.is_error);
        assert!(result
            .summary
            .as_deref()
            .is_some_and(|s| s.contains("RESULT-DELTA")));

        let response = index.response(SESSION, "req_011AAA").expect("response");
        assert_eq!(response.message_id, "msg_01AAA");
        assert_eq!(response.stop_reason.as_deref(), Some("tool_use"));
        assert!(index.response(SESSION, "req_unknown").is_none());
        assert!(index.tool("another-session", "toolu_01AAA").is_none());
    }

    #[test]
    fn nearest_in_time_respects_the_tolerance_and_the_kind() {
        let index = index(8, IndexLimits::default(), Instant::now());
        // u-0003 is at 10:01:00.000.
        let at = crate::transcript::parse_timestamp_ms("2026-03-01T10:01:00.000Z").expect("time");
        let near = index.prompt_near(SESSION, at + 200, 3_000).expect("near");
        assert_eq!(near.uuid.as_deref(), Some("u-0003"));
        assert!(index.prompt_near(SESSION, at + 30_000, 3_000).is_none());
        // The Read call failed at 10:01:04; an MCP name never matches Read.
        let failed = index
            .tool_near(SESSION, Some("Read"), false, at + 4_300, 3_000)
            .expect("tool");
        assert_eq!(failed.tool_use_id, "toolu_01CCC");
        assert!(index
            .tool_near(SESSION, Some("mcp_tool"), false, at + 4_300, 3_000)
            .is_none());
        let error = index
            .response_near(
                SESSION,
                Some("claude-sonnet-4-5-20250929"),
                true,
                at + 20_100,
                3_000,
            )
            .expect("api error");
        assert!(error.is_api_error);
    }

    #[test]
    fn the_policy_decides_what_text_is_kept() {
        let limits = IndexLimits {
            text_cap: None,
            ..IndexLimits::default()
        };
        let index = index(8, limits, Instant::now());
        let prompt = index.prompt_by_uuid(SESSION, "u-0001").expect("prompt");
        assert_eq!(prompt.text, None);
        let tool = index.tool(SESSION, "toolu_01AAA").expect("tool");
        assert_eq!(tool.input, None);
        assert_eq!(tool.result.as_ref().and_then(|r| r.summary.clone()), None);

        let limits = IndexLimits {
            text_cap: Some(6),
            ..IndexLimits::default()
        };
        let index = super::super::fixture::index(8, limits, Instant::now());
        let prompt = index.prompt_by_uuid(SESSION, "u-0001").expect("prompt");
        assert_eq!(prompt.text.as_deref(), Some("Rename"));
    }

    #[test]
    fn facts_are_evicted_by_age_count_and_bytes() {
        let start = Instant::now();
        let mut index = index(8, IndexLimits::default(), start);
        // 2 prompts, 2 tool calls, 3 responses (and an API error).
        assert_eq!(index.len(), 8);
        index.evict(start + Duration::from_secs(9 * 60));
        assert_eq!(index.len(), 8, "not yet too old");
        index.evict(start + Duration::from_secs(11 * 60));
        assert!(index.is_empty(), "all older than ten minutes");
        assert_eq!(index.bytes(), 0, "every byte accounted for");

        let few = IndexLimits {
            max_facts: 3,
            ..IndexLimits::default()
        };
        let index = super::super::fixture::index(8, few, start);
        assert_eq!(index.len(), 3);
        assert!(
            index.prompt_by_uuid(SESSION, "u-0001").is_none(),
            "oldest first"
        );
        assert!(index.tool(SESSION, "toolu_01CCC").is_some(), "newest kept");

        let small = IndexLimits {
            max_bytes: 600,
            ..IndexLimits::default()
        };
        let index = super::super::fixture::index(8, small, start);
        assert!(index.bytes() <= 600, "{}", index.bytes());
        assert!(!index.is_empty());
    }
}
