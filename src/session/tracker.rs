//! Correlation across lines: a session's turns, model calls, tool calls and
//! subagents become spans; every line becomes a log entry; usage becomes counter
//! deltas against the ledger.
//!
//! The tracker sees lines in file order, one file at a time, and holds only what is
//! still open (sessions, turns, responses being streamed, tool calls awaiting their
//! result). That open state is small, serialisable, and saved with the offsets it
//! matches, so a restart continues exactly where the last acknowledged batch ended.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::activity::{Activity, ApiError, Attr, LogEntry, SeriesKey, SpanKind, SpanRecord};
use super::activity::{ModelCall, SessionSummary, ToolOutcome, UsageDelta};
use super::ids::{span_id, trace_id, SpanId, TraceId};
use super::{Ledger, Observation, PriceTable, ResponseKey, TokenCounts};
use crate::transcript::{parse_timestamp_ms, ContentBlock, Entry, EntryKind, MessageContent};

/// Transcript text kept in open state (tool input, prompts) is capped here; the
/// content policy later cuts it further.
pub const MAX_KEPT_TEXT: usize = 1 << 20;
/// Responses remembered per file after their span was sent, so a late line of the
/// same response does not send the span twice.
const COMPLETED_MEMORY: usize = 16;
const AGENT_TOOLS: [&str; 2] = ["Task", "Agent"];

fn parse_open_state(
    open_state: &[u8],
    closed: &[(String, Vec<u8>)],
) -> Result<OpenState, TrackerStateError> {
    let corrupt = |e: serde_json::Error| TrackerStateError(e.to_string());
    let mut open = if open_state.is_empty() {
        OpenState::default()
    } else {
        serde_json::from_slice::<OpenState>(open_state).map_err(corrupt)?
    };
    for (id, saved) in closed {
        let session: ClosedSession = serde_json::from_slice(saved).map_err(corrupt)?;
        open.closed.insert(id.clone(), session);
    }
    Ok(open)
}

/// A line's time, when it is between 1970 and 2100: outside that, timestamps
/// are garbage (Go's zero time, a year 9999) and would overflow nanoseconds.
fn plausible_timestamp_ms(text: &str) -> Option<i64> {
    const YEAR_2100_MS: i64 = 4_102_444_800_000;
    parse_timestamp_ms(text).filter(|ms| (0..YEAR_2100_MS).contains(ms))
}

/// Where a line came from.
#[derive(Debug, Clone, Copy)]
pub struct LineOrigin<'a> {
    /// The transcript's path, as text.
    pub path: &'a str,
    /// The project directory name under `projects/`.
    pub project: &'a str,
    /// Byte offset of the line in its file.
    pub offset: u64,
    /// The line itself (keys responses that have no message id).
    pub line: &'a [u8],
    /// When the file was last modified: the time of lines that carry none, before
    /// any line of their session did.
    pub file_time_ms: i64,
}

impl LineOrigin<'_> {
    /// The session a file belongs to when its lines do not say: the file stem of a
    /// trunk file, or the `<session>` folder of a 2.1 subagent file.
    fn fallback_session(&self) -> &str {
        let path = std::path::Path::new(self.path);
        if self.subagent().is_some() {
            if let Some(folder) = path.parent().and_then(|p| p.parent()) {
                if path.parent().and_then(|p| p.file_name()) == Some("subagents".as_ref()) {
                    return folder.file_name().and_then(|n| n.to_str()).unwrap_or("");
                }
            }
        }
        path.file_stem().and_then(|s| s.to_str()).unwrap_or("")
    }

    /// The agent id of a subagent file (`agent-<id>.jsonl`).
    fn subagent(&self) -> Option<&str> {
        subagent_of(self.path)
    }
}

/// The agent id of a subagent file path (`agent-<id>.jsonl`).
pub fn subagent_of(path: &str) -> Option<&str> {
    let name = std::path::Path::new(path).file_name()?.to_str()?;
    name.strip_prefix("agent-")?.strip_suffix(".jsonl")
}

/// Settings that shape spans.
#[derive(Debug, Clone, Copy)]
pub struct TrackerOptions {
    /// A session with no new line for this long (and whose last entry is this old)
    /// is finished: its root span is sent.
    pub idle_ms: i64,
    /// A response with no new line for this long is finished: its span is sent.
    pub response_linger_ms: i64,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions {
            idle_ms: 10 * 60 * 1000,
            response_linger_ms: 30 * 1000,
        }
    }
}

/// Cross-line state: the dedup ledger and everything still open.
pub struct Tracker {
    ledger: Ledger,
    /// Ledger records changed since [`Tracker::take_ledger_changes`].
    ledger_changes: Ledger,
    prices: PriceTable,
    options: TrackerOptions,
    open: OpenState,
}

/// The persisted part of the tracker besides the ledger. What is open is saved
/// whole (it is small); finished sessions only as they change (they accumulate).
#[derive(Debug, Default, Serialize, Deserialize)]
struct OpenState {
    sessions: BTreeMap<String, SessionState>,
    #[serde(skip)]
    closed: HashMap<String, ClosedSession>,
    /// Sessions closed since the last [`Tracker::take_closed_changes`].
    #[serde(skip)]
    closed_changes: Vec<String>,
    /// The session of each file's latest line, for lines that do not name one.
    #[serde(default)]
    file_sessions: HashMap<String, String>,
    /// Sessions touched since the last end of a file. Saved, and ordered, so a
    /// restart closes the same sessions in the same order as an uninterrupted run.
    #[serde(default)]
    touched: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClosedSession {
    span_id: SpanId,
    agents_sent: Vec<String>,
    /// The last entry time it had: older lines arriving later are replays.
    last_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionState {
    /// The session id as written in the transcript.
    #[serde(default)]
    id: String,
    trace_id: TraceId,
    span_id: SpanId,
    /// False when the root span was already sent and late lines are attached to it.
    root_pending: bool,
    start_ms: i64,
    last_ms: i64,
    last_read_ms: i64,
    project: String,
    version: Option<String>,
    cwd: Option<String>,
    git_branch: Option<String>,
    entrypoint: Option<String>,
    entries: u64,
    turns: u64,
    turn: Option<TurnState>,
    chats: BTreeMap<String, ChatState>,
    completed_chats: BTreeMap<String, VecDeque<String>>,
    tools: BTreeMap<String, ToolState>,
    agents: BTreeMap<String, AgentState>,
    /// 1.0.x inline sidechains: line uuid to the uuid of its root line.
    inline_roots: HashMap<String, String>,
    /// Trunk lines up to this time were already turned into spans (replays).
    replay_until_ms: i64,
    /// Usage and bytes counted for this session, for its summary.
    #[serde(default)]
    totals: SessionTotals,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SessionTotals {
    bytes: u64,
    input: i64,
    output: i64,
    cache_creation: i64,
    cache_read: i64,
    cost_usd: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TurnState {
    span_id: SpanId,
    uuid: String,
    prompt_id: Option<String>,
    prompt: String,
    start_ms: i64,
    last_ms: i64,
    sequence: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChatState {
    message_id: String,
    span_id: SpanId,
    parent: SpanId,
    model: String,
    request_id: Option<String>,
    start_ms: i64,
    end_ms: i64,
    last_read_ms: i64,
    tokens: TokenCounts,
    cost_usd: Option<f64>,
    stop_reason: Option<String>,
    tool_calls: u32,
    agent: Option<String>,
    version: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ToolState {
    span_id: SpanId,
    parent: SpanId,
    name: String,
    start_ms: i64,
    input: String,
    #[serde(default)]
    message_uuid: String,
    /// Task/Agent tools: what the subagent was asked.
    task: Option<TaskInfo>,
    agent: Option<String>,
    version: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TaskInfo {
    description: Option<String>,
    subagent_type: Option<String>,
    prompt_hash: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AgentState {
    tool_use_id: Option<String>,
    first_ms: i64,
    last_ms: i64,
    sent: bool,
    version: Option<String>,
}

/// The persisted tracker state could not be read.
#[derive(Debug, thiserror::Error)]
#[error("open span state is corrupt: {0}")]
pub struct TrackerStateError(String);

impl Tracker {
    pub fn new(prices: PriceTable, options: TrackerOptions) -> Tracker {
        Tracker {
            ledger: Ledger::new(),
            ledger_changes: Ledger::new(),
            prices,
            options,
            open: OpenState::default(),
        }
    }

    /// Restores a tracker from a saved ledger, open state and finished sessions.
    /// Unreadable open state is reported and dropped; the ledger is always kept,
    /// so nothing already counted is counted again.
    pub fn restore(
        prices: PriceTable,
        options: TrackerOptions,
        ledger: Ledger,
        open_state: &[u8],
        closed: &[(String, Vec<u8>)],
    ) -> (Tracker, Option<TrackerStateError>) {
        let (open, error) = match parse_open_state(open_state, closed) {
            Ok(open) => (open, None),
            Err(error) => (OpenState::default(), Some(error)),
        };
        let tracker = Tracker {
            ledger,
            ledger_changes: Ledger::new(),
            prices,
            options,
            open,
        };
        (tracker, error)
    }

    /// The open state, serialised for the state directory.
    pub fn open_state(&self) -> Vec<u8> {
        serde_json::to_vec(&self.open).unwrap_or_default()
    }

    /// Sessions finished since the last call, serialised, by session id.
    pub fn take_closed_changes(&mut self) -> Vec<(String, Vec<u8>)> {
        let ids = std::mem::take(&mut self.open.closed_changes);
        ids.into_iter()
            .filter_map(|id| {
                let saved = serde_json::to_vec(self.open.closed.get(&id)?).ok()?;
                Some((id, saved))
            })
            .collect()
    }

    /// Ledger records changed since the last call.
    pub fn take_ledger_changes(&mut self) -> Ledger {
        std::mem::take(&mut self.ledger_changes)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sessions with open spans.
    pub fn open_sessions(&self) -> usize {
        self.open.sessions.len()
    }

    /// Feeds one decoded line.
    pub fn observe(
        &mut self,
        origin: &LineOrigin<'_>,
        entry: &Entry,
        now_ms: i64,
        out: &mut Activity,
    ) {
        let session_id = match &entry.session_id {
            Some(id) => {
                if self.open.file_sessions.get(origin.path) != Some(id) {
                    self.open
                        .file_sessions
                        .insert(origin.path.to_owned(), id.clone());
                }
                id.clone()
            }
            None => self
                .open
                .file_sessions
                .get(origin.path)
                .cloned()
                .unwrap_or_else(|| origin.fallback_session().to_owned()),
        };
        let agent_file = origin.subagent().map(str::to_owned);
        let stamped = entry.timestamp.as_deref().and_then(plausible_timestamp_ms);
        let mut session = self.take_session(&session_id, entry, stamped, agent_file.is_some());
        self.open.touched.insert(session_id.clone());
        let before_ms = session.last_ms;
        let time_ms = stamped.unwrap_or(if session.last_ms > 0 {
            session.last_ms
        } else {
            origin.file_time_ms
        });
        let sidechain = agent_file.is_some() || entry.is_sidechain;
        let replay = !sidechain && time_ms <= session.replay_until_ms;
        if !replay && !sidechain && session.replay_until_ms > 0 {
            session.resume_after_replay(&session_id, entry);
        }
        session.note_entry(origin, entry, time_ms, now_ms);
        let agent = agent_key(&mut session, entry, agent_file.as_deref());
        if let Some(key) = &agent {
            let state = session.agents.entry(key.clone()).or_default();
            if state.first_ms == 0 || time_ms < state.first_ms {
                state.first_ms = time_ms;
            }
            state.last_ms = state.last_ms.max(time_ms);
            state.version = entry.version.clone();
        }
        let mut line = LineContext {
            origin,
            entry,
            session_id: &session_id,
            time_ms,
            before_ms,
            now_ms,
            agent,
            log_span: None,
            log_attrs: Vec::new(),
            usage: None,
        };
        match entry.kind {
            // Lines a resumed session copies from a finished one: counted (the
            // ledger ignores what it has seen) and logged, but their spans were sent.
            EntryKind::Assistant if replay => {
                self.count_usage(&mut session, &mut line, out);
            }
            EntryKind::User | EntryKind::Assistant if replay => {}
            EntryKind::User => self.on_user(&mut session, &mut line, out),
            EntryKind::Assistant => self.on_assistant(&mut session, &mut line, out),
            EntryKind::Progress => on_progress(&mut session, entry),
            EntryKind::System => on_system(&mut session, &mut line, out),
            _ => {}
        }
        out.logs.push(log_entry(&session, &line));
        self.open.sessions.insert(session_id, session);
    }

    /// A file has been read to its end: a trunk file's session that is history
    /// (its last entry older than the idle time) is finished now.
    pub fn end_of_file(&mut self, path: &str, now_ms: i64, out: &mut Activity) {
        let trunk = subagent_of(path).is_none();
        // Kept only while a file is being read: its stem names the session anyway.
        self.open.file_sessions.remove(path);
        let touched = std::mem::take(&mut self.open.touched);
        for id in touched {
            let Some(session) = self.open.sessions.get(&id) else {
                continue;
            };
            let history = now_ms - session.last_ms > self.options.idle_ms;
            if history && (trunk || !session.root_pending) {
                self.close(&id, out);
            }
        }
    }

    /// Finishes sessions idle for the idle time, and responses that stopped streaming.
    pub fn close_idle(&mut self, now_ms: i64, out: &mut Activity) {
        let idle = self.options.idle_ms;
        let idle_sessions: Vec<String> = self
            .open
            .sessions
            .iter()
            .filter(|(_, s)| now_ms - s.last_ms > idle && now_ms - s.last_read_ms > idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle_sessions {
            self.close(&id, out);
        }
        let linger = self.options.response_linger_ms;
        for session in self.open.sessions.values_mut() {
            let quiet: Vec<String> = session
                .chats
                .iter()
                .filter(|(_, chat)| now_ms - chat.last_read_ms > linger)
                .map(|(file, _)| file.clone())
                .collect();
            for file in quiet {
                session.complete_chat(&file, out);
            }
        }
    }

    /// Finishes every session: the end of a backfill, which sends everything.
    pub fn close_all(&mut self, out: &mut Activity) {
        let ids: Vec<String> = self.open.sessions.keys().cloned().collect();
        for id in ids {
            self.close(&id, out);
        }
    }

    /// Finishes every session whose last entry is older than the idle time: the end
    /// of the first pass of `run`, where nothing more is expected for them.
    pub fn close_history(&mut self, now_ms: i64, out: &mut Activity) {
        let idle = self.options.idle_ms;
        let history: Vec<String> = self
            .open
            .sessions
            .iter()
            .filter(|(_, s)| now_ms - s.last_ms > idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in history {
            self.close(&id, out);
        }
    }

    fn take_session(
        &mut self,
        id: &str,
        entry: &Entry,
        time_ms: Option<i64>,
        agent_file: bool,
    ) -> SessionState {
        if let Some(session) = self.open.sessions.remove(id) {
            return session;
        }
        let trace = trace_id(id);
        let Some(closed) = self.open.closed.get(id) else {
            return SessionState::new(id, trace, span_id(&trace, "session", id), true);
        };
        let late_subagent = agent_file || entry.is_sidechain;
        let replayed = time_ms.is_none_or(|t| t <= closed.last_ms);
        let mut session = if late_subagent || replayed {
            // Under the root already sent: late subagent lines, or a resumed
            // session replaying lines of this one.
            let mut session = SessionState::new(id, trace, closed.span_id, false);
            session.replay_until_ms = closed.last_ms;
            session
        } else {
            let anchor = format!("{id}/{}", entry.uuid.as_deref().unwrap_or_default());
            SessionState::new(id, trace, span_id(&trace, "session", &anchor), true)
        };
        for key in &closed.agents_sent {
            session.agents.insert(
                key.clone(),
                AgentState {
                    sent: true,
                    ..AgentState::default()
                },
            );
        }
        session
    }

    fn close(&mut self, id: &str, out: &mut Activity) {
        let Some(mut session) = self.open.sessions.remove(id) else {
            return;
        };
        let files: Vec<String> = session.chats.keys().cloned().collect();
        for file in files {
            session.complete_chat(&file, out);
        }
        let tools: Vec<String> = session.tools.keys().cloned().collect();
        for tool_use_id in tools {
            if let Some(tool) = session.tools.remove(&tool_use_id) {
                let end = session.last_ms;
                out.spans
                    .push(session.tool_span(&tool_use_id, tool, end, None, None, true));
            }
        }
        session.end_turn(out);
        let keys: Vec<String> = session.agents.keys().cloned().collect();
        for key in &keys {
            session.send_agent(key, out);
        }
        if session.root_pending {
            out.spans.push(session.root_span(id));
        }
        out.sessions.push(session.summary(id));
        self.open.closed_changes.push(id.to_owned());
        self.open.closed.insert(
            id.to_owned(),
            ClosedSession {
                span_id: session.span_id,
                agents_sent: keys,
                last_ms: session.last_ms,
            },
        );
    }

    fn on_user(
        &mut self,
        session: &mut SessionState,
        line: &mut LineContext<'_>,
        out: &mut Activity,
    ) {
        let entry = line.entry;
        let blocks = content_blocks(entry);
        let results: Vec<&ContentBlock> = blocks
            .iter()
            .copied()
            .filter(|b| b.kind.as_deref() == Some("tool_result"))
            .collect();
        if line.agent.is_none() && is_human_prompt(entry, !results.is_empty()) {
            self.start_turn(session, line, out);
            return;
        }
        if let (Some(key), None) = (&line.agent, &entry.parent_uuid) {
            link_inline_root(session, key, &user_text(entry));
        }
        for (index, block) in results.iter().enumerate() {
            let Some(tool_use_id) = block.tool_use_id.as_deref() else {
                continue;
            };
            let error = block.is_error == Some(true);
            let result_text = block
                .content
                .as_deref()
                .map(tool_result_text)
                .unwrap_or_default();
            let result_size = block.content.as_deref().map_or(0, |c| c.get().len());
            if index == 0 {
                line.log_span = Some(span_id(&session.trace_id, "tool", tool_use_id));
                line.log_attrs.push(Attr::str("tool_use_id", tool_use_id));
                line.log_attrs
                    .push(Attr::str("success", (!error).to_string()));
            }
            let Some(tool) = session.tools.remove(tool_use_id) else {
                continue;
            };
            if index == 0 {
                line.log_attrs
                    .push(Attr::str("tool_name", tool.name.clone()));
            }
            out.tools.push(ToolOutcome {
                session: line.session_id.to_owned(),
                project: session.project.clone(),
                tool: tool.name.clone(),
                error,
                time_ms: line.time_ms,
                tool_use_id: tool_use_id.to_owned(),
                message_uuid: tool.message_uuid.clone(),
                start_ms: tool.start_ms,
                input: tool.input.clone(),
                result_size: result_size as u64,
                error_message: error.then(|| truncate(&result_text, 4096).to_owned()),
            });
            if tool.task.is_some() {
                if let Some(agent) = spawned_agent(entry, &result_text) {
                    session.agents.entry(agent.clone()).or_default().tool_use_id =
                        Some(tool_use_id.to_owned());
                    let window = (tool.start_ms, line.time_ms);
                    session.send_agent_linked(&agent, &tool, window, out);
                }
            }
            let error_text = error.then(|| truncate(&result_text, 1024).to_owned());
            let span = session.tool_span(
                tool_use_id,
                tool,
                line.time_ms,
                Some(result_size),
                error_text,
                false,
            );
            out.spans.push(span);
        }
    }

    fn start_turn(
        &mut self,
        session: &mut SessionState,
        line: &mut LineContext<'_>,
        out: &mut Activity,
    ) {
        let entry = line.entry;
        let files: Vec<String> = session.chats.keys().cloned().collect();
        for file in files {
            session.complete_chat(&file, out);
        }
        session.end_turn(out);
        let uuid = entry
            .uuid
            .clone()
            .unwrap_or_else(|| format!("{}@{}", line.origin.path, line.origin.offset));
        session.turns += 1;
        let turn = TurnState {
            span_id: span_id(&session.trace_id, "turn", &uuid),
            uuid,
            prompt_id: entry.prompt_id.clone(),
            prompt: truncate(&user_text(entry), MAX_KEPT_TEXT).to_owned(),
            start_ms: line.time_ms,
            last_ms: line.time_ms,
            sequence: session.turns,
        };
        line.log_span = Some(turn.span_id);
        session.turn = Some(turn);
    }

    fn on_assistant(
        &mut self,
        session: &mut SessionState,
        line: &mut LineContext<'_>,
        out: &mut Activity,
    ) {
        let entry = line.entry;
        if entry.is_api_error_message {
            out.api_errors.push(ApiError {
                session: line.session_id.to_owned(),
                project: session.project.clone(),
                time_ms: line.time_ms,
            });
        }
        let Some(message) = entry.message.as_ref() else {
            return;
        };
        let parent = session.context_parent(line.agent.as_deref());
        let file = line.origin.path.to_owned();
        // A response without an id (some gateways) is named by its line.
        let message_id = message
            .id
            .clone()
            .or_else(|| entry.uuid.clone())
            .unwrap_or_else(|| format!("line@{}", line.origin.offset));
        let chat_span = chat_span_id(&session.trace_id, &message_id, entry.request_id.as_deref());
        line.log_span = Some(chat_span);
        if let Some(model) = &message.model {
            line.log_attrs.push(Attr::str("model", model.clone()));
        }
        line.log_attrs
            .push(Attr::str("message.id", message_id.clone()));
        if let Some(request) = &entry.request_id {
            line.log_attrs
                .push(Attr::str("request_id", request.clone()));
        }
        if let Some(stop) = &message.stop_reason {
            line.log_attrs.push(Attr::str("stop_reason", stop.clone()));
        }
        let counted = self.count_usage(session, line, out);
        if entry.is_api_error_message || message.model.as_deref() == Some("<synthetic>") {
            return;
        }
        let streaming_here = session
            .chats
            .get(&file)
            .is_some_and(|chat| chat.message_id == message_id);
        let already_sent = session
            .completed_chats
            .get(&file)
            .is_some_and(|done| done.contains(&message_id));
        if counted.as_ref().is_some_and(|c| c.seen_before) && !streaming_here && !already_sent {
            // A response already seen elsewhere (a resumed or forked session
            // replaying it): its spans were sent from where it was first seen.
            return;
        }
        let switching = session
            .chats
            .get(&file)
            .is_some_and(|chat| chat.message_id != message_id);
        if switching {
            session.complete_chat(&file, out);
        }
        // A late line of a response whose span was already sent still opens
        // its tool calls.
        for block in content_blocks(entry) {
            if block.kind.as_deref() == Some("tool_use") {
                open_tool(session, block, parent, line);
            }
        }
        if already_sent {
            return;
        }
        let chat = session.chats.entry(file).or_insert_with(|| ChatState {
            message_id: message_id.clone(),
            span_id: chat_span,
            parent,
            model: message.model.clone().unwrap_or_default(),
            request_id: entry.request_id.clone(),
            start_ms: if line.before_ms > 0 {
                line.before_ms.min(line.time_ms)
            } else {
                line.time_ms
            },
            end_ms: line.time_ms,
            last_read_ms: line.now_ms,
            tokens: TokenCounts::default(),
            cost_usd: None,
            stop_reason: None,
            tool_calls: 0,
            agent: line.agent.clone(),
            version: entry.version.clone(),
        });
        chat.end_ms = chat.end_ms.max(line.time_ms);
        chat.last_read_ms = line.now_ms;
        if let Some(stop) = &message.stop_reason {
            chat.stop_reason = Some(stop.clone());
        }
        chat.tool_calls += content_blocks(entry)
            .iter()
            .filter(|b| b.kind.as_deref() == Some("tool_use"))
            .count() as u32;
        if let Some(counted) = counted {
            if counted.tokens.total() >= chat.tokens.total() {
                chat.tokens = counted.tokens;
                chat.cost_usd = counted.cost_usd;
            }
        }
    }

    /// Counts a line's usage into the ledger and emits the delta. Returns the
    /// line's own token counts and cost when it is a billable response.
    fn count_usage(
        &mut self,
        session: &mut SessionState,
        line: &mut LineContext<'_>,
        out: &mut Activity,
    ) -> Option<Counted> {
        let entry = line.entry;
        let message = entry.message.as_ref()?;
        if entry.is_api_error_message || message.model.as_deref() == Some("<synthetic>") {
            return None;
        }
        let usage = message.usage.as_ref()?.valid()?;
        let tokens = TokenCounts::of(usage);
        let key = match message.id.as_deref() {
            Some(id) => ResponseKey::of(id, entry.request_id.as_deref()),
            None => ResponseKey::of_line(line.origin.path, line.origin.offset, line.origin.line),
        };
        let model = message.model.as_deref().unwrap_or("unknown");
        let observation = Observation {
            tokens,
            timestamp_ms: entry
                .timestamp
                .as_deref()
                .and_then(plausible_timestamp_ms)
                .unwrap_or(0),
            model,
            session: line.session_id,
            project: line.origin.project,
            sidechain: entry.is_sidechain,
            fast: usage.speed.as_deref() == Some("fast"),
            us_only: usage.inference_geo.as_deref() == Some("us"),
            cost_usd: entry.cost_usd,
        };
        let line_cost = self.prices.cost(&observation);
        let before = self
            .ledger
            .get(key)
            .map(|old| (old.tokens, self.prices.cost(&old).unwrap_or(0.0)));
        if self.ledger.observe(key, &observation) {
            self.ledger_changes.observe(key, &observation);
            let (old_tokens, old_cost) = before.unwrap_or_default();
            let series = SeriesKey {
                session: line.session_id.to_owned(),
                project: session.project.clone(),
                model: model.to_owned(),
            };
            let delta = UsageDelta::between(
                series,
                line.time_ms,
                &tokens,
                &old_tokens,
                line_cost.unwrap_or(0.0) - old_cost,
            );
            session.totals.add(&delta);
            line.usage = Some(delta.clone());
            out.usage.push(delta);
        }
        Some(Counted {
            tokens,
            cost_usd: line_cost,
            seen_before: before.is_some(),
        })
    }
}

/// A billable line's usage, as the ledger saw it.
struct Counted {
    tokens: TokenCounts,
    cost_usd: Option<f64>,
    /// The ledger knew this response before this line.
    seen_before: bool,
}

/// One line being processed, with what the log record collects on the way.
struct LineContext<'a> {
    origin: &'a LineOrigin<'a>,
    entry: &'a Entry,
    session_id: &'a str,
    time_ms: i64,
    /// The session's last entry time before this line: when a request was sent.
    before_ms: i64,
    now_ms: i64,
    /// The subagent this line belongs to, if any.
    agent: Option<String>,
    log_span: Option<SpanId>,
    log_attrs: Vec<Attr>,
    /// What this line added to its response's usage.
    usage: Option<UsageDelta>,
}

impl SessionTotals {
    fn add(&mut self, delta: &UsageDelta) {
        self.input += delta.input;
        self.output += delta.output;
        self.cache_creation += delta.cache_creation;
        self.cache_read += delta.cache_read;
        self.cost_usd += delta.cost_usd;
    }
}

impl SessionState {
    fn new(id: &str, trace_id: TraceId, span_id: SpanId, root_pending: bool) -> SessionState {
        SessionState {
            id: id.to_owned(),
            trace_id,
            span_id,
            root_pending,
            start_ms: i64::MAX,
            last_ms: 0,
            last_read_ms: 0,
            project: String::new(),
            version: None,
            cwd: None,
            git_branch: None,
            entrypoint: None,
            entries: 0,
            turns: 0,
            turn: None,
            chats: BTreeMap::new(),
            completed_chats: BTreeMap::new(),
            tools: BTreeMap::new(),
            agents: BTreeMap::new(),
            inline_roots: HashMap::new(),
            replay_until_ms: 0,
            totals: SessionTotals::default(),
        }
    }

    /// New trunk lines after a replay: the session continues under a new root.
    fn resume_after_replay(&mut self, session_id: &str, entry: &Entry) {
        let anchor = format!("{session_id}/{}", entry.uuid.as_deref().unwrap_or_default());
        self.span_id = span_id(&self.trace_id, "session", &anchor);
        self.root_pending = true;
        self.replay_until_ms = 0;
        self.start_ms = i64::MAX;
    }

    fn note_entry(&mut self, origin: &LineOrigin<'_>, entry: &Entry, time_ms: i64, now_ms: i64) {
        self.entries += 1;
        self.totals.bytes += origin.line.len() as u64;
        if time_ms > 0 {
            self.start_ms = self.start_ms.min(time_ms);
            self.last_ms = self.last_ms.max(time_ms);
        }
        self.last_read_ms = now_ms;
        if self.project.is_empty() {
            self.project = origin.project.to_owned();
        }
        let keep = |slot: &mut Option<String>, value: &Option<String>| {
            if value.is_some() {
                slot.clone_from(value);
            }
        };
        keep(&mut self.version, &entry.version);
        keep(&mut self.cwd, &entry.cwd);
        keep(&mut self.git_branch, &entry.git_branch);
        keep(&mut self.entrypoint, &entry.entrypoint);
        if let (Some(turn), false) = (self.turn.as_mut(), entry.is_sidechain) {
            turn.last_ms = turn.last_ms.max(time_ms);
        }
    }

    /// The span new model and tool calls hang under: the subagent's, else the
    /// current turn's, else the session's.
    fn context_parent(&self, agent: Option<&str>) -> SpanId {
        match (agent, &self.turn) {
            (Some(key), _) => span_id(&self.trace_id, "agent", key),
            (None, Some(turn)) => turn.span_id,
            (None, None) => self.span_id,
        }
    }

    fn complete_chat(&mut self, file: &str, out: &mut Activity) {
        let Some(chat) = self.chats.remove(file) else {
            return;
        };
        let done = self.completed_chats.entry(file.to_owned()).or_default();
        done.push_back(chat.message_id.clone());
        if done.len() > COMPLETED_MEMORY {
            done.pop_front();
        }
        let t = chat.tokens;
        if t.total() > 0 {
            out.calls.push(ModelCall {
                model: chat.model.clone(),
                input: t.input + t.cache_read + t.cache_creation,
                output: t.output,
                time_ms: chat.end_ms,
            });
        }
        out.spans.push(self.chat_span(chat));
    }

    fn chat_span(&self, chat: ChatState) -> SpanRecord {
        let t = chat.tokens;
        let mut attributes = vec![
            Attr::str("gen_ai.operation.name", "chat"),
            Attr::str("gen_ai.provider.name", "anthropic"),
            Attr::str("gen_ai.system", "anthropic"),
            Attr::str("gen_ai.request.model", chat.model.clone()),
            Attr::str("gen_ai.response.model", chat.model.clone()),
            Attr::str("gen_ai.response.id", chat.message_id.clone()),
            Attr::str("gen_ai.conversation.id", self.id.clone()),
            Attr::int(
                "gen_ai.usage.input_tokens",
                (t.input + t.cache_read + t.cache_creation) as i64,
            ),
            Attr::int("gen_ai.usage.output_tokens", t.output as i64),
            Attr::int("gen_ai.usage.cache_read.input_tokens", t.cache_read as i64),
            Attr::int(
                "gen_ai.usage.cache_creation.input_tokens",
                t.cache_creation as i64,
            ),
            Attr::int("input_tokens", t.input as i64),
            Attr::int("output_tokens", t.output as i64),
            Attr::int("cache_read_tokens", t.cache_read as i64),
            Attr::int("cache_creation_tokens", t.cache_creation as i64),
            Attr::int("tool_calls", i64::from(chat.tool_calls)),
        ];
        if let Some(cost) = chat.cost_usd {
            attributes.push(Attr::float("cost_usd", cost));
        }
        if let Some(request) = &chat.request_id {
            attributes.push(Attr::str("request_id", request.clone()));
        }
        if let Some(stop) = &chat.stop_reason {
            attributes.push(Attr::str("stop_reason", stop.clone()));
            attributes.push(Attr {
                key: "gen_ai.response.finish_reasons",
                value: super::activity::AttrValue::StrList(vec![stop.clone()]),
            });
        }
        if let Some(agent) = &chat.agent {
            attributes.push(Attr::str("agent_id", agent.clone()));
        }
        SpanRecord {
            trace_id: self.trace_id,
            span_id: chat.span_id,
            parent_span_id: Some(chat.parent),
            name: format!("chat {}", chat.model),
            kind: SpanKind::Client,
            start_ms: chat.start_ms,
            end_ms: chat.end_ms,
            attributes,
            error: None,
            version: chat.version,
        }
    }

    fn end_turn(&mut self, out: &mut Activity) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        let mut attributes = vec![
            Attr::str("message.uuid", turn.uuid),
            Attr::int("turn.sequence", turn.sequence as i64),
            Attr::int("prompt_length", turn.prompt.chars().count() as i64),
            Attr::text("prompt", turn.prompt),
        ];
        if let Some(prompt_id) = turn.prompt_id {
            attributes.push(Attr::str("prompt.id", prompt_id));
        }
        out.spans.push(SpanRecord {
            trace_id: self.trace_id,
            span_id: turn.span_id,
            parent_span_id: Some(self.span_id),
            name: "turn".to_owned(),
            kind: SpanKind::Internal,
            start_ms: turn.start_ms,
            end_ms: turn.last_ms.max(turn.start_ms),
            attributes,
            error: None,
            version: self.version.clone(),
        });
    }

    fn tool_span(
        &self,
        tool_use_id: &str,
        tool: ToolState,
        end_ms: i64,
        result_size: Option<usize>,
        error: Option<String>,
        incomplete: bool,
    ) -> SpanRecord {
        let mut attributes = vec![
            Attr::str("gen_ai.operation.name", "execute_tool"),
            Attr::str("gen_ai.tool.name", tool.name.clone()),
            Attr::str("gen_ai.tool.call.id", tool_use_id),
            Attr::str("gen_ai.tool.type", "function"),
            Attr::str("tool_name", tool.name.clone()),
            Attr::str("tool_use_id", tool_use_id),
            Attr::int("tool_input_size_bytes", tool.input.len() as i64),
            Attr::text("gen_ai.tool.call.arguments", tool.input),
        ];
        if let Some(size) = result_size {
            attributes.push(Attr::int("tool_result_size_bytes", size as i64));
        }
        attributes.push(Attr::bool("success", error.is_none() && !incomplete));
        if incomplete {
            attributes.push(Attr::bool("ccotel.incomplete", true));
        }
        if let Some(agent) = tool.agent {
            attributes.push(Attr::str("agent_id", agent));
        }
        SpanRecord {
            trace_id: self.trace_id,
            span_id: tool.span_id,
            parent_span_id: Some(tool.parent),
            name: format!("execute_tool {}", tool.name),
            kind: SpanKind::Internal,
            start_ms: tool.start_ms,
            end_ms: end_ms.max(tool.start_ms),
            attributes,
            error: error.map(|text| {
                if text.is_empty() {
                    "tool error".into()
                } else {
                    text
                }
            }),
            version: tool.version,
        }
    }

    /// The invoke_agent span of a subagent whose Task call finished.
    fn send_agent_linked(
        &mut self,
        key: &str,
        tool: &ToolState,
        window: (i64, i64),
        out: &mut Activity,
    ) {
        let Some(state) = self.agents.get_mut(key) else {
            return;
        };
        if state.sent {
            return;
        }
        state.sent = true;
        let task = tool.task.as_ref();
        out.spans.push(self.agent_span(
            key,
            Some(tool.span_id),
            window,
            task.and_then(|t| t.subagent_type.clone()),
            task.and_then(|t| t.description.clone()),
            tool.version.clone(),
        ));
    }

    /// The invoke_agent span of a subagent not yet sent (closing the session).
    fn send_agent(&mut self, key: &str, out: &mut Activity) {
        let Some(state) = self.agents.get_mut(key) else {
            return;
        };
        if state.sent {
            return;
        }
        state.sent = true;
        let parent = match &state.tool_use_id {
            Some(tool_use_id) => span_id(&self.trace_id, "tool", tool_use_id),
            None => self.span_id,
        };
        let window = (state.first_ms, state.last_ms);
        let version = state.version.clone();
        out.spans
            .push(self.agent_span(key, Some(parent), window, None, None, version));
    }

    fn agent_span(
        &self,
        key: &str,
        parent: Option<SpanId>,
        (start_ms, end_ms): (i64, i64),
        agent_type: Option<String>,
        description: Option<String>,
        version: Option<String>,
    ) -> SpanRecord {
        let name = agent_type.clone().unwrap_or_else(|| {
            if key.starts_with("acompact") {
                "compact".to_owned()
            } else {
                "subagent".to_owned()
            }
        });
        let mut attributes = vec![
            Attr::str("gen_ai.operation.name", "invoke_agent"),
            Attr::str("gen_ai.agent.id", key),
            Attr::str("gen_ai.agent.name", name.clone()),
            Attr::str("agent_id", key),
        ];
        if let Some(description) = description {
            attributes.push(Attr::text("gen_ai.agent.description", description));
        }
        SpanRecord {
            trace_id: self.trace_id,
            span_id: span_id(&self.trace_id, "agent", key),
            parent_span_id: parent,
            name: format!("invoke_agent {name}"),
            kind: SpanKind::Internal,
            start_ms,
            end_ms: end_ms.max(start_ms),
            attributes,
            error: None,
            version,
        }
    }

    fn summary(&self, session_id: &str) -> SessionSummary {
        let t = &self.totals;
        SessionSummary {
            session: session_id.to_owned(),
            project: self.project.clone(),
            cwd: self.cwd.clone(),
            git_branch: self.git_branch.clone(),
            version: self.version.clone(),
            start_ms: if self.start_ms == i64::MAX {
                self.last_ms
            } else {
                self.start_ms
            },
            last_ms: self.last_ms,
            entries: self.entries,
            bytes: t.bytes,
            turns: self.turns,
            input: t.input,
            output: t.output,
            cache_creation: t.cache_creation,
            cache_read: t.cache_read,
            cost_usd: t.cost_usd,
        }
    }

    fn root_span(&self, session_id: &str) -> SpanRecord {
        let mut attributes = vec![
            Attr::str("session.id", session_id),
            Attr::str("gen_ai.conversation.id", session_id),
            Attr::str("project", self.project.clone()),
            Attr::int("entries", self.entries as i64),
            Attr::int("turns", self.turns as i64),
        ];
        let optional = [
            ("cwd", &self.cwd),
            ("git.branch", &self.git_branch),
            ("app.entrypoint", &self.entrypoint),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(Attr::str(key, value.clone()));
            }
        }
        let start = if self.start_ms == i64::MAX {
            self.last_ms
        } else {
            self.start_ms
        };
        SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: None,
            name: "session".to_owned(),
            kind: SpanKind::Internal,
            start_ms: start,
            end_ms: self.last_ms.max(start),
            attributes,
            error: None,
            version: self.version.clone(),
        }
    }
}

fn chat_span_id(trace: &TraceId, message_id: &str, request_id: Option<&str>) -> SpanId {
    match request_id {
        Some(request) => span_id(trace, "chat", &format!("{message_id}\0{request}")),
        None => span_id(trace, "chat", message_id),
    }
}

/// Which subagent a line belongs to: the agent id on the line or in the file name,
/// or for 1.0.x inline sidechains, the uuid of the chain's root line.
fn agent_key(
    session: &mut SessionState,
    entry: &Entry,
    agent_file: Option<&str>,
) -> Option<String> {
    if let Some(agent) = entry.agent_id.as_deref().or(agent_file) {
        return Some(agent.to_owned());
    }
    if !entry.is_sidechain {
        return None;
    }
    let uuid = entry.uuid.clone()?;
    let root = match &entry.parent_uuid {
        None => uuid.clone(),
        Some(parent) => session.inline_roots.get(parent)?.clone(),
    };
    session.inline_roots.insert(uuid, root.clone());
    Some(root)
}

/// A 1.0.x inline subagent's first line repeats the Task prompt: link it to the
/// Task call that asked for it.
fn link_inline_root(session: &mut SessionState, key: &str, prompt: &str) {
    let hash = xxhash_rust::xxh3::xxh3_64(prompt.trim().as_bytes());
    let linked: HashSet<&String> = session
        .agents
        .values()
        .filter_map(|a| a.tool_use_id.as_ref())
        .collect();
    let tool = session.tools.iter().find(|(id, tool)| {
        !linked.contains(id)
            && tool
                .task
                .as_ref()
                .is_some_and(|t| t.prompt_hash == Some(hash))
    });
    if let Some((id, _)) = tool {
        let id = id.clone();
        session
            .agents
            .entry(key.to_owned())
            .or_default()
            .tool_use_id = Some(id);
    }
}

/// The subagent a finished Task call ran: `toolUseResult.agentId` (2.1), or the
/// `agentId: <id>` line at the end of the result text (2.0).
fn spawned_agent(entry: &Entry, result_text: &str) -> Option<String> {
    if let Some(Value::String(id)) = entry
        .tool_use_result
        .as_ref()
        .and_then(|r| r.get("agentId"))
    {
        return Some(id.clone());
    }
    let at = result_text.rfind("agentId: ")?;
    let id: String = result_text[at + "agentId: ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (!id.is_empty()).then_some(id)
}

fn open_tool(
    session: &mut SessionState,
    block: &ContentBlock,
    parent: SpanId,
    line: &LineContext<'_>,
) {
    let Some(id) = block.id.as_deref() else {
        return;
    };
    if session.tools.contains_key(id) {
        return;
    }
    let name = block.name.clone().unwrap_or_default();
    let input = block.input.as_deref().map_or("", RawValue::get);
    let task = AGENT_TOOLS.contains(&name.as_str()).then(|| {
        let value: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let field = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        TaskInfo {
            description: field("description"),
            subagent_type: field("subagent_type"),
            prompt_hash: field("prompt").map(|p| xxhash_rust::xxh3::xxh3_64(p.trim().as_bytes())),
        }
    });
    session.tools.insert(
        id.to_owned(),
        ToolState {
            span_id: span_id(&session.trace_id, "tool", id),
            parent,
            name,
            start_ms: line.time_ms,
            input: truncate(input, MAX_KEPT_TEXT).to_owned(),
            message_uuid: line.entry.uuid.clone().unwrap_or_default(),
            task,
            agent: line.agent.clone(),
            version: line.entry.version.clone(),
        },
    );
}

fn on_progress(session: &mut SessionState, entry: &Entry) {
    let Some(data) = &entry.data else {
        return;
    };
    let agent = data.get("agentId").and_then(Value::as_str);
    if let (Some(agent), Some(tool_use_id)) = (agent, entry.parent_tool_use_id.as_deref()) {
        let state = session.agents.entry(agent.to_owned()).or_default();
        if state.tool_use_id.is_none() {
            state.tool_use_id = Some(tool_use_id.to_owned());
        }
    }
}

fn on_system(session: &mut SessionState, line: &mut LineContext<'_>, out: &mut Activity) {
    let entry = line.entry;
    if let Some(subtype) = &entry.subtype {
        line.log_attrs
            .push(Attr::str("system.subtype", subtype.clone()));
    }
    match entry.subtype.as_deref() {
        Some("api_error") => out.api_errors.push(ApiError {
            session: line.session_id.to_owned(),
            project: session.project.clone(),
            time_ms: line.time_ms,
        }),
        Some("compact_boundary") => out.spans.push(compaction_span(session, line)),
        _ => {}
    }
}

fn compaction_span(session: &SessionState, line: &LineContext<'_>) -> SpanRecord {
    let entry = line.entry;
    let raw: Option<Value> = entry
        .raw
        .as_deref()
        .and_then(|r| serde_json::from_str(r.get()).ok());
    let metadata = raw.as_ref().and_then(|r| r.get("compactMetadata")).cloned();
    let number = |key: &str| {
        metadata
            .as_ref()
            .and_then(|m| m.get(key))
            .and_then(Value::as_i64)
    };
    let duration = number("durationMs").unwrap_or(0).clamp(0, 86_400_000);
    let mut attributes = vec![Attr::str("gen_ai.operation.name", "compaction")];
    if let Some(trigger) = metadata
        .as_ref()
        .and_then(|m| m.get("trigger"))
        .and_then(Value::as_str)
    {
        attributes.push(Attr::str("trigger", trigger));
    }
    if let Some(pre) = number("preTokens") {
        attributes.push(Attr::int("pre_tokens", pre));
    }
    if let Some(post) = number("postTokens") {
        attributes.push(Attr::int("post_tokens", post));
    }
    let anchor = entry
        .uuid
        .clone()
        .unwrap_or_else(|| line.origin.offset.to_string());
    SpanRecord {
        trace_id: session.trace_id,
        span_id: span_id(&session.trace_id, "compaction", &anchor),
        parent_span_id: Some(session.span_id),
        name: "compaction".to_owned(),
        kind: SpanKind::Internal,
        start_ms: line.time_ms - duration,
        end_ms: line.time_ms,
        attributes,
        error: None,
        version: entry.version.clone(),
    }
}

/// The log record for a line: `event.name` is `transcript.<type>`.
fn log_entry(session: &SessionState, line: &LineContext<'_>) -> LogEntry {
    let entry = line.entry;
    let kind = match entry.kind.as_str() {
        "" => "untyped",
        other => other,
    };
    let mut attributes = vec![
        Attr::str("session.id", line.session_id),
        Attr::str("entry.type", kind),
        Attr::str("project", line.origin.project),
        Attr::str("transcript.path", line.origin.path),
        Attr::int("transcript.offset", line.origin.offset as i64),
    ];
    let optional = [
        ("message.uuid", &entry.uuid),
        ("message.parent_uuid", &entry.parent_uuid),
        ("prompt.id", &entry.prompt_id),
        ("app.version", &entry.version),
        ("app.entrypoint", &entry.entrypoint),
        ("cwd", &entry.cwd),
        ("git.branch", &entry.git_branch),
        ("agent_id", &entry.agent_id),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            attributes.push(Attr::str(key, value.clone()));
        }
    }
    if entry.is_sidechain {
        attributes.push(Attr::bool("is_sidechain", true));
    }
    if entry.is_meta {
        attributes.push(Attr::bool("is_meta", true));
    }
    if entry.is_api_error_message {
        attributes.push(Attr::bool("is_api_error", true));
    }
    attributes.extend(line.log_attrs.iter().cloned());
    let span = line
        .log_span
        .unwrap_or_else(|| session.context_parent(line.agent.as_deref()));
    LogEntry {
        trace_id: session.trace_id,
        span_id: Some(span),
        time_ms: line.time_ms,
        event_name: format!("transcript.{kind}"),
        body: entry_text(entry),
        attributes,
        version: entry.version.clone(),
        content_type: content_type(entry),
        usage: line.usage.clone(),
    }
}

/// The kinds of content an entry carries, e.g. `text,tool_use`.
fn content_type(entry: &Entry) -> String {
    match entry.message.as_ref().and_then(|m| m.content.as_ref()) {
        Some(MessageContent::Text(_)) => "string".to_owned(),
        Some(MessageContent::Blocks(_)) => {
            let mut kinds: Vec<&str> = Vec::new();
            for block in content_blocks(entry) {
                let kind = block.kind.as_deref().unwrap_or("unknown");
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            kinds.join(",")
        }
        None => String::new(),
    }
}

pub(crate) fn content_blocks(entry: &Entry) -> Vec<&ContentBlock> {
    match entry.message.as_ref().and_then(|m| m.content.as_ref()) {
        Some(MessageContent::Blocks(blocks)) => blocks.iter().filter_map(|b| b.valid()).collect(),
        _ => Vec::new(),
    }
}

/// A prompt the human typed: a user line that is not a tool result, not injected
/// by the harness, and not a compaction summary.
pub(crate) fn is_human_prompt(entry: &Entry, has_tool_results: bool) -> bool {
    !has_tool_results
        && !entry.is_meta
        && !entry.is_sidechain
        && !entry.is_compact_summary
        && entry.message.as_ref().is_some_and(|m| m.content.is_some())
}

pub(crate) fn user_text(entry: &Entry) -> String {
    match entry.message.as_ref().and_then(|m| m.content.as_ref()) {
        Some(MessageContent::Text(text)) => text.clone(),
        Some(MessageContent::Blocks(_)) => content_blocks(entry)
            .iter()
            .filter_map(|b| b.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n"),
        None => String::new(),
    }
}

/// The text of a `tool_result` content: a string, or the text of its blocks.
pub(crate) fn tool_result_text(content: &RawValue) -> String {
    match serde_json::from_str::<Value>(content.get()) {
        Ok(Value::String(text)) => text,
        Ok(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The transcript text a line carries, for the log body.
fn entry_text(entry: &Entry) -> Option<String> {
    let text = match entry.kind {
        EntryKind::User | EntryKind::Assistant => {
            if let Some(MessageContent::Text(text)) =
                entry.message.as_ref().and_then(|m| m.content.as_ref())
            {
                return Some(truncate(text, MAX_KEPT_TEXT).to_owned());
            }
            let parts: Vec<String> = content_blocks(entry)
                .iter()
                .map(|b| block_text(b))
                .collect();
            parts.join("\n")
        }
        EntryKind::System => match &entry.content {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
        EntryKind::Summary => entry.summary.clone().unwrap_or_default(),
        EntryKind::QueueOperation => match &entry.content {
            Some(Value::String(text)) => text.clone(),
            _ => String::new(),
        },
        EntryKind::Unknown(_) | EntryKind::Untyped => entry
            .raw
            .as_deref()
            .map(|r| r.get().to_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    (!text.is_empty()).then(|| truncate(&text, MAX_KEPT_TEXT).to_owned())
}

fn block_text(block: &ContentBlock) -> String {
    match block.kind.as_deref() {
        Some("text") => block.text.clone().unwrap_or_default(),
        Some("thinking") => block.thinking.clone().unwrap_or_default(),
        Some("tool_use") | Some("server_tool_use") => format!(
            "{}({})",
            block.name.as_deref().unwrap_or(""),
            block.input.as_deref().map_or("", RawValue::get)
        ),
        Some("tool_result") => block
            .content
            .as_deref()
            .map(tool_result_text)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
