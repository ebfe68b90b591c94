//! The narrow view of a line that token counting needs, decoded without touching
//! the (often large) content blocks, and the `usage` object itself.

use std::borrow::Cow;

use serde::Deserialize;

use super::lenient::{cost_usd, count, Lenient};

/// The fields of any transcript line that decide whether and how it is counted.
///
/// Everything else on the line (content, tool results, progress payloads with their
/// embedded copies of subagent messages) is skipped by the decoder without being
/// materialised, which is what makes a full scan cheap.
#[derive(Debug, Default, Deserialize)]
pub struct UsageLine<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "sessionId", borrow, default)]
    pub session_id: Option<Cow<'a, str>>,
    #[serde(rename = "requestId", borrow, default)]
    pub request_id: Option<Cow<'a, str>>,
    #[serde(rename = "isSidechain", default)]
    pub is_sidechain: Option<bool>,
    #[serde(rename = "isApiErrorMessage", default)]
    pub is_api_error_message: Option<bool>,
    /// Pre-1.0.9 transcripts carry Claude Code's own cost for the line.
    #[serde(rename = "costUSD", default, deserialize_with = "cost_usd")]
    pub cost_usd: Option<f64>,
    #[serde(borrow, default)]
    pub message: Option<Lenient<UsageMessage<'a>>>,
}

/// The part of `message` that counting reads.
#[derive(Debug, Default, Deserialize)]
pub struct UsageMessage<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Option<Lenient<Usage>>,
}

/// The Anthropic API `usage` object as Claude Code persists it.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "count")]
    pub input_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub output_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub cache_creation_input_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation: Option<Lenient<CacheCreation>>,
    #[serde(default)]
    pub server_tool_use: Option<Lenient<ServerToolUse>>,
    #[serde(default)]
    pub inference_geo: Option<String>,
    #[serde(default)]
    pub speed: Option<String>,
}

/// Cache writes split by time to live; drives 5-minute versus 1-hour pricing.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct CacheCreation {
    #[serde(default, deserialize_with = "count")]
    pub ephemeral_5m_input_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub ephemeral_1h_input_tokens: u64,
}

/// Server-side tools billed per use.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct ServerToolUse {
    #[serde(default, deserialize_with = "count")]
    pub web_search_requests: u64,
    #[serde(default, deserialize_with = "count")]
    pub web_fetch_requests: u64,
}

impl Usage {
    /// Cache-write tokens with a one-hour time to live. Older transcripts have no
    /// split; their writes are all five-minute writes.
    pub fn cache_creation_1h(&self) -> u64 {
        self.cache_creation
            .as_ref()
            .and_then(Lenient::valid)
            .map_or(0, |split| {
                split
                    .ephemeral_1h_input_tokens
                    .min(self.cache_creation_input_tokens)
            })
    }

    /// Web searches billed with this response.
    pub fn web_search_requests(&self) -> u64 {
        self.server_tool_use
            .as_ref()
            .and_then(Lenient::valid)
            .map_or(0, |tools| tools.web_search_requests)
    }
}

impl UsageLine<'_> {
    /// The usage this line reports, if it is a real API response: an `assistant`
    /// line with a `usage` object that is not a locally generated error or notice.
    pub fn billable(&self) -> Option<(&UsageMessage<'_>, &Usage)> {
        if self.kind.as_deref() != Some("assistant") || self.is_api_error_message == Some(true) {
            return None;
        }
        let message = self.message.as_ref()?.valid()?;
        if message.model.as_deref() == Some("<synthetic>") {
            return None;
        }
        let usage = message.usage.as_ref()?.valid()?;
        Some((message, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> UsageLine<'_> {
        serde_json::from_str(json).expect(json)
    }

    #[test]
    fn assistant_usage_is_billable() {
        let l = line(
            r#"{"type":"assistant","requestId":"req_1","message":{"id":"msg_1","model":"claude-opus-4-6","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40}}}}"#,
        );
        let (message, usage) = l.billable().expect("billable");
        assert_eq!(message.id.as_deref(), Some("msg_1"));
        assert_eq!(usage.cache_creation_1h(), 40);
        assert_eq!(usage.output_tokens, 5);
    }

    #[test]
    fn a_cost_usd_that_is_no_amount_is_absent_and_the_line_still_counts() {
        let with_cost = |cost: &str| {
            let json = format!(
                r#"{{"type":"assistant","costUSD":{cost},"message":{{"id":"m","model":"claude-opus-4-6","usage":{{"output_tokens":7}}}}}}"#
            );
            let parsed: UsageLine<'_> = serde_json::from_str(&json).expect("decodes");
            let tokens = parsed.billable().map(|(_, usage)| usage.output_tokens);
            (parsed.cost_usd, tokens)
        };
        assert_eq!(with_cost("0.25"), (Some(0.25), Some(7)));
        assert_eq!(with_cost("3"), (Some(3.0), Some(7)));
        for absurd in ["1e300", "-1", "\"0.5\"", "null", "{}"] {
            assert_eq!(with_cost(absurd), (None, Some(7)), "costUSD {absurd}");
        }
    }

    #[test]
    fn progress_copies_errors_and_synthetic_are_not_billable() {
        for json in [
            r#"{"type":"progress","data":{"message":{"type":"assistant","message":{"id":"m","usage":{"output_tokens":9}}}}}"#,
            r#"{"type":"user","toolUseResult":{"usage":{"output_tokens":9}},"message":{"role":"user","content":"x"}}"#,
            r#"{"type":"assistant","isApiErrorMessage":true,"message":{"id":"m","model":"<synthetic>","usage":{"output_tokens":0}}}"#,
            r#"{"type":"assistant","message":{"id":"m","model":"<synthetic>","usage":{"output_tokens":3}}}"#,
            r#"{"type":"assistant","message":"error"}"#,
        ] {
            assert!(line(json).billable().is_none(), "{json}");
        }
    }
}
