//! The full serde model of a transcript entry: every `type` FORMAT.md documents,
//! with unknown types and unknown content blocks kept as raw JSON.
//!
//! One flat struct rather than an enum per type: entries share most fields, new
//! Claude Code versions add fields to existing types far more often than new types,
//! and a flat struct decodes in one pass with no buffering.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::lenient::{cost_usd, optional, Lenient};
use super::usage::Usage;

/// What kind of entry a line is (its `type` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    User,
    Assistant,
    System,
    Summary,
    FileHistorySnapshot,
    QueueOperation,
    Progress,
    Attachment,
    /// Session metadata without a uuid chain: `pr-link`, `agent-name`, `custom-title`,
    /// `last-prompt`, `permission-mode`, `ai-title`, `agent-setting`,
    /// `bridge-session`, `worktree-state`.
    Metadata(String),
    /// A type this version does not know; the whole line is kept in [`Entry::raw`].
    Unknown(String),
    /// The line has no `type` field at all.
    Untyped,
}

impl EntryKind {
    fn from_type(name: Option<&str>) -> Self {
        match name {
            None => EntryKind::Untyped,
            Some("user") => EntryKind::User,
            Some("assistant") => EntryKind::Assistant,
            Some("system") => EntryKind::System,
            Some("summary") => EntryKind::Summary,
            Some("file-history-snapshot") => EntryKind::FileHistorySnapshot,
            Some("queue-operation") => EntryKind::QueueOperation,
            Some("progress") => EntryKind::Progress,
            Some("attachment") => EntryKind::Attachment,
            Some(
                name @ ("pr-link" | "agent-name" | "custom-title" | "last-prompt"
                | "permission-mode" | "ai-title" | "agent-setting" | "bridge-session"
                | "worktree-state"),
            ) => EntryKind::Metadata(name.to_owned()),
            Some(other) => EntryKind::Unknown(other.to_owned()),
        }
    }

    /// The `type` string as written in the transcript.
    pub fn as_str(&self) -> &str {
        match self {
            EntryKind::User => "user",
            EntryKind::Assistant => "assistant",
            EntryKind::System => "system",
            EntryKind::Summary => "summary",
            EntryKind::FileHistorySnapshot => "file-history-snapshot",
            EntryKind::QueueOperation => "queue-operation",
            EntryKind::Progress => "progress",
            EntryKind::Attachment => "attachment",
            EntryKind::Metadata(name) | EntryKind::Unknown(name) => name,
            EntryKind::Untyped => "",
        }
    }
}

/// One transcript entry with every field ccotel understands.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawEntry")]
pub struct Entry {
    pub kind: EntryKind,
    pub uuid: Option<String>,
    pub parent_uuid: Option<String>,
    pub logical_parent_uuid: Option<String>,
    pub session_id: Option<String>,
    pub timestamp: Option<String>,
    pub version: Option<String>,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    pub user_type: Option<String>,
    pub is_sidechain: bool,
    pub is_meta: bool,
    pub is_compact_summary: bool,
    pub is_api_error_message: bool,
    pub agent_id: Option<String>,
    pub slug: Option<String>,
    pub entrypoint: Option<String>,
    pub prompt_id: Option<String>,
    pub request_id: Option<String>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<f64>,
    /// `message`, when it is an object (a bare string in the wild is dropped).
    pub message: Option<Message>,
    /// `toolUseResult`: string, object or array; kept raw.
    pub tool_use_result: Option<Value>,
    pub source_tool_assistant_uuid: Option<String>,
    pub tool_use_id: Option<String>,
    pub parent_tool_use_id: Option<String>,
    /// `system` entries: `subtype`, `content`, `level`.
    pub subtype: Option<String>,
    pub content: Option<Value>,
    pub level: Option<String>,
    /// `summary` entries.
    pub summary: Option<String>,
    pub leaf_uuid: Option<String>,
    /// `queue-operation` entries.
    pub operation: Option<String>,
    /// `progress` entries.
    pub data: Option<Value>,
    /// `attachment` entries.
    pub attachment: Option<Value>,
    /// The whole line, kept for metadata and unknown types so nothing is lost.
    pub raw: Option<Box<RawValue>>,
}

/// A `message` object of a user or assistant entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<Lenient<Usage>>,
}

/// Message content: a plain string (typed prompts) or a list of blocks.
#[derive(Debug, Clone)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<Lenient<ContentBlock>>),
}

/// Decoded by hand rather than as an untagged enum: untagged buffers the value,
/// and the raw tool `input` and `content` fields cannot be read from a buffer.
/// Any other shape is an empty block list.
impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> serde::de::Visitor<'de> for ContentVisitor {
            type Value = MessageContent;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of content blocks")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(text.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(text))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::new();
                while let Some(block) = seq.next_element::<Lenient<ContentBlock>>()? {
                    blocks.push(block);
                }
                Ok(MessageContent::Blocks(blocks))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(MessageContent::Blocks(Vec::new()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(MessageContent::Blocks(Vec::new()))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MessageContent::Blocks(Vec::new()))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MessageContent::Blocks(Vec::new()))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MessageContent::Blocks(Vec::new()))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MessageContent::Blocks(Vec::new()))
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

/// One content block. Every known block type's fields are optional members;
/// `input` and `content` stay raw because their shape depends on the tool.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentBlock {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub input: Option<Box<RawValue>>,
    #[serde(default)]
    pub tool_use_id: Option<String>,
    #[serde(default)]
    pub content: Option<Box<RawValue>>,
    #[serde(default)]
    pub is_error: Option<bool>,
    #[serde(default)]
    pub tool_name: Option<String>,
}

/// The wire shape, converted into [`Entry`] after decoding.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    uuid: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    parent_uuid: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    logical_parent_uuid: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    session_id: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    timestamp: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    version: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    cwd: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    git_branch: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    user_type: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    is_sidechain: Option<bool>,
    #[serde(default, deserialize_with = "optional")]
    is_meta: Option<bool>,
    #[serde(default, deserialize_with = "optional")]
    is_compact_summary: Option<bool>,
    #[serde(default, deserialize_with = "optional")]
    is_api_error_message: Option<bool>,
    #[serde(default, deserialize_with = "optional")]
    agent_id: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    slug: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    entrypoint: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    prompt_id: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    request_id: Option<String>,
    #[serde(rename = "costUSD", default, deserialize_with = "cost_usd")]
    cost_usd: Option<f64>,
    #[serde(default, deserialize_with = "optional")]
    duration_ms: Option<f64>,
    #[serde(default)]
    message: Option<Lenient<Message>>,
    #[serde(default)]
    tool_use_result: Option<Value>,
    #[serde(
        rename = "sourceToolAssistantUUID",
        default,
        deserialize_with = "optional"
    )]
    source_tool_assistant_uuid: Option<String>,
    #[serde(rename = "toolUseID", default, deserialize_with = "optional")]
    tool_use_id: Option<String>,
    #[serde(rename = "parentToolUseID", default, deserialize_with = "optional")]
    parent_tool_use_id: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    subtype: Option<String>,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default, deserialize_with = "optional")]
    level: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    summary: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    leaf_uuid: Option<String>,
    #[serde(default, deserialize_with = "optional")]
    operation: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    attachment: Option<Value>,
}

impl From<RawEntry> for Entry {
    fn from(raw: RawEntry) -> Self {
        Entry {
            kind: EntryKind::from_type(raw.kind.as_deref()),
            uuid: raw.uuid,
            parent_uuid: raw.parent_uuid,
            logical_parent_uuid: raw.logical_parent_uuid,
            session_id: raw.session_id,
            timestamp: raw.timestamp,
            version: raw.version,
            cwd: raw.cwd,
            git_branch: raw.git_branch,
            user_type: raw.user_type,
            is_sidechain: raw.is_sidechain.unwrap_or(false),
            is_meta: raw.is_meta.unwrap_or(false),
            is_compact_summary: raw.is_compact_summary.unwrap_or(false),
            is_api_error_message: raw.is_api_error_message.unwrap_or(false),
            agent_id: raw.agent_id,
            slug: raw.slug,
            entrypoint: raw.entrypoint,
            prompt_id: raw.prompt_id,
            request_id: raw.request_id,
            cost_usd: raw.cost_usd,
            duration_ms: raw.duration_ms,
            message: raw.message.and_then(Lenient::into_valid),
            tool_use_result: raw.tool_use_result,
            source_tool_assistant_uuid: raw.source_tool_assistant_uuid,
            tool_use_id: raw.tool_use_id,
            parent_tool_use_id: raw.parent_tool_use_id,
            subtype: raw.subtype,
            content: raw.content,
            level: raw.level,
            summary: raw.summary,
            leaf_uuid: raw.leaf_uuid,
            operation: raw.operation,
            data: raw.data,
            attachment: raw.attachment,
            raw: None,
        }
    }
}

impl Entry {
    /// Decodes one line that is known to be a JSON object, keeping the raw line for
    /// metadata and unknown entry types.
    pub fn from_json(line: &str) -> serde_json::Result<Entry> {
        let mut entry: Entry = serde_json::from_str(line)?;
        if matches!(
            entry.kind,
            EntryKind::Metadata(_) | EntryKind::Unknown(_) | EntryKind::Untyped
        ) {
            entry.raw = Some(RawValue::from_string(line.to_owned())?);
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_blocks_keep_their_raw_input_and_content() {
        let line = r#"{"type":"assistant","message":{"id":"m","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}"#;
        let entry = Entry::from_json(line).expect("decodes");
        let Some(MessageContent::Blocks(blocks)) = entry.message.and_then(|m| m.content) else {
            panic!("blocks expected");
        };
        let block = blocks[0].valid().expect("valid block");
        assert_eq!(
            block.input.as_deref().map(RawValue::get),
            Some(r#"{"command":"ls"}"#)
        );
        let line = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}"#;
        let entry = Entry::from_json(line).expect("decodes");
        let Some(MessageContent::Blocks(blocks)) = entry.message.and_then(|m| m.content) else {
            panic!("blocks expected");
        };
        assert_eq!(
            blocks[0]
                .valid()
                .and_then(|b| b.content.as_deref())
                .map(RawValue::get),
            Some("\"ok\"")
        );
        let odd = r#"{"type":"user","message":{"content":42}}"#;
        assert!(Entry::from_json(odd).is_ok());
    }
}
