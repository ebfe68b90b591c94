//! The transcript format: the serde model of Claude Code's JSONL entries and the
//! tolerant line decoder that repairs what can be repaired and classifies the rest.
//!
//! This module does no I/O: it is handed the bytes of one line and says what they are.
//! `FORMAT.md` in the shared reference is the source of every shape modelled here.

mod decode;
mod entry;
mod lenient;
mod stats;
mod timestamp;
mod usage;

pub use decode::{decode_line, decode_reader, DecodeError, Decoded, Repair};
pub use entry::{ContentBlock, Entry, EntryKind, Message, MessageContent};
pub use lenient::Lenient;
pub use stats::LineStats;
pub use timestamp::parse_timestamp_ms;
pub use usage::{CacheCreation, ServerToolUse, Usage, UsageLine, UsageMessage};
