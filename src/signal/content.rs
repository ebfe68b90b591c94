//! The content policy: how much transcript text (prompts, responses, tool input and
//! output) may leave the process.

use std::fmt;
use std::str::FromStr;

/// The most text one value carries even under `full`, so a single record stays
/// well inside collectors' 4 MiB message limit.
pub const FULL_CAP: usize = 1 << 20;

/// `none`, `truncate:N` (bytes) or `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentPolicy {
    /// No transcript text is sent; lengths and ids still are.
    None,
    /// At most this many bytes of each text, cut on a character boundary.
    Truncate(usize),
    /// All of it, up to [`FULL_CAP`] per value.
    Full,
}

impl Default for ContentPolicy {
    fn default() -> Self {
        ContentPolicy::Truncate(4096)
    }
}

impl ContentPolicy {
    /// The text to send for `text`, or `None` when the policy sends none.
    pub fn apply<'a>(&self, text: &'a str) -> Option<&'a str> {
        Some(crate::session::tracker::truncate(text, self.max_bytes()?))
    }

    /// The most bytes of text one value may carry; `None` when none may.
    pub fn max_bytes(&self) -> Option<usize> {
        match self {
            ContentPolicy::None => None,
            ContentPolicy::Truncate(max) => Some((*max).min(FULL_CAP)),
            ContentPolicy::Full => Some(FULL_CAP),
        }
    }
}

/// The policy string was not understood.
#[derive(Debug, thiserror::Error)]
#[error("content policy `{0}` is not one of none, truncate:N, full")]
pub struct ContentPolicyError(String);

impl FromStr for ContentPolicy {
    type Err = ContentPolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "none" => Ok(ContentPolicy::None),
            "full" => Ok(ContentPolicy::Full),
            other => other
                .strip_prefix("truncate:")
                .and_then(|n| n.parse().ok())
                .map(ContentPolicy::Truncate)
                .ok_or_else(|| ContentPolicyError(text.to_owned())),
        }
    }
}

impl fmt::Display for ContentPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentPolicy::None => f.write_str("none"),
            ContentPolicy::Truncate(max) => write!(f, "truncate:{max}"),
            ContentPolicy::Full => f.write_str("full"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            "none".parse::<ContentPolicy>().ok(),
            Some(ContentPolicy::None)
        );
        assert_eq!(
            "full".parse::<ContentPolicy>().ok(),
            Some(ContentPolicy::Full)
        );
        assert_eq!(
            "truncate:10".parse::<ContentPolicy>().ok(),
            Some(ContentPolicy::Truncate(10))
        );
        assert!("truncate:x".parse::<ContentPolicy>().is_err());
        assert!("some".parse::<ContentPolicy>().is_err());
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        let policy = ContentPolicy::Truncate(4);
        assert_eq!(policy.apply("héllo"), Some("hél"));
        assert_eq!(ContentPolicy::None.apply("secret"), None);
        assert_eq!(ContentPolicy::Full.apply("all"), Some("all"));
    }
}
