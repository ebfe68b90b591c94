//! Tolerant decoding of one transcript line.
//!
//! A line is trimmed, classified (blank, not an object, malformed) and decoded into
//! the caller's view. Two repairs are attempted before a line is given up on, both
//! from FORMAT.md §2: lone UTF-16 surrogate escapes (Claude Code truncating tool
//! output mid-emoji) become U+FFFD, and a torn record followed on the same physical
//! line by a complete one (a writer killed mid-append) yields the complete one.

use std::io::{self, Read};

use serde::de::IgnoredAny;
use serde::Deserialize;

/// A repair that made a line decodable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Lone surrogate escapes were replaced with U+FFFD.
    LoneSurrogates,
    /// A torn record of this many bytes preceded the complete record and was dropped.
    TornPrefix { dropped_bytes: usize },
    /// Both of the above.
    TornPrefixAndSurrogates { dropped_bytes: usize },
}

/// What a line turned out to be.
#[derive(Debug)]
pub enum Decoded<T> {
    /// Empty or whitespace only.
    Blank,
    /// A JSON object, decoded, possibly after a repair.
    Value { value: T, repair: Option<Repair> },
}

/// Why a line could not be decoded. Either way the line is counted and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("valid JSON but not an object")]
    NotObject,
    #[error("malformed JSON: {0}")]
    Malformed(String),
}

/// Decodes one line (without its `\n`) into `T`, repairing it if necessary.
///
/// `scratch` holds repaired bytes; decoded values may borrow from it or from `line`.
pub fn decode_line<'a, T: Deserialize<'a>>(
    line: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<Decoded<T>, DecodeError> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(Decoded::Blank);
    }
    if line[0] != b'{' {
        return match serde_json::from_slice::<IgnoredAny>(line) {
            Ok(_) => Err(DecodeError::NotObject),
            Err(error) => Err(DecodeError::Malformed(error.to_string())),
        };
    }
    let first_error = match serde_json::from_slice::<T>(line) {
        Ok(value) => {
            return Ok(Decoded::Value {
                value,
                repair: None,
            })
        }
        Err(error) => error,
    };
    let Some((torn_at, surrogates)) = find_repair(line, scratch) else {
        return Err(DecodeError::Malformed(first_error.to_string()));
    };
    let repair = match (torn_at, surrogates) {
        (0, _) => Repair::LoneSurrogates,
        (dropped_bytes, false) => Repair::TornPrefix { dropped_bytes },
        (dropped_bytes, true) => Repair::TornPrefixAndSurrogates { dropped_bytes },
    };
    let bytes: &'a [u8] = if surrogates {
        scratch
    } else {
        &line[torn_at..]
    };
    match serde_json::from_slice::<T>(bytes) {
        Ok(value) => Ok(Decoded::Value {
            value,
            repair: Some(repair),
        }),
        Err(_) => Err(DecodeError::Malformed(first_error.to_string())),
    }
}

/// How many record starts a torn line is searched for before it is given up on.
const MAX_TORN_CANDIDATES: usize = 64;

/// Finds a repair that makes the line valid JSON: the byte where the complete
/// record starts (0 if the whole line), and whether lone surrogates had to be
/// replaced (the repaired bytes are then left in `scratch`).
///
/// A torn record may itself contain nested `{"type"…` blocks, so every record
/// start is tried, left to right, until the rest of the line is one object.
fn find_repair(line: &[u8], scratch: &mut Vec<u8>) -> Option<(usize, bool)> {
    let valid = |bytes: &[u8]| serde_json::from_slice::<IgnoredAny>(bytes).is_ok();
    let candidates = std::iter::once(0).chain(record_starts(line).take(MAX_TORN_CANDIDATES));
    for at in candidates {
        let candidate = &line[at..];
        if at > 0 && valid(candidate) {
            return Some((at, false));
        }
        if has_surrogate_escape(candidate) {
            scratch.clear();
            replace_lone_surrogates(candidate, scratch);
            if valid(scratch) {
                return Some((at, true));
            }
        }
    }
    None
}

/// Positions after the first byte where a record appears to start, ascending.
fn record_starts(line: &[u8]) -> impl Iterator<Item = usize> + '_ {
    const RECORD_STARTS: [&[u8]; 4] = [
        b"{\"parentUuid\"",
        b"{\"type\"",
        b"{\"uuid\"",
        b"{\"sessionId\"",
    ];
    let mut starts: Vec<usize> = RECORD_STARTS
        .iter()
        .flat_map(|start| memchr::memmem::find_iter(&line[1..], start).map(|at| at + 1))
        .collect();
    starts.sort_unstable();
    starts.into_iter()
}

/// Decodes a line streamed from `reader`, for lines too long to hold in memory.
/// No repair is attempted; the reader must yield exactly the line's bytes.
///
/// A failure to read is an `Err` of its own, not a verdict on the line: the
/// line is not skipped as malformed, and is read again by a later run.
pub fn decode_reader<'a, R: Read, T: Deserialize<'a>>(
    reader: R,
) -> io::Result<Result<T, DecodeError>> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let value = T::deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    match value {
        Ok(value) => Ok(Ok(value)),
        Err(error) => match error.classify() {
            serde_json::error::Category::Io => Err(error.into()),
            serde_json::error::Category::Data => Ok(Err(DecodeError::NotObject)),
            _ => Ok(Err(DecodeError::Malformed(error.to_string()))),
        },
    }
}

fn has_surrogate_escape(line: &[u8]) -> bool {
    memchr::memmem::find_iter(line, b"\\u").any(|at| {
        matches!(line.get(at + 2), Some(b'd' | b'D'))
            && matches!(
                line.get(at + 3),
                Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
            )
    })
}

/// Copies `line` into `out`, replacing every unpaired `\uD800`–`\uDFFF` escape with
/// `\uFFFD`. Paired surrogates and escaped backslashes are left as they are.
fn replace_lone_surrogates(line: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < line.len() {
        if line[i] != b'\\' {
            out.push(line[i]);
            i += 1;
            continue;
        }
        match escape_code_unit(line, i) {
            Some(0xD800..=0xDBFF) => {
                if matches!(escape_code_unit(line, i + 6), Some(0xDC00..=0xDFFF)) {
                    out.extend_from_slice(&line[i..i + 12]);
                    i += 12;
                } else {
                    out.extend_from_slice(b"\\uFFFD");
                    i += 6;
                }
            }
            Some(0xDC00..=0xDFFF) => {
                out.extend_from_slice(b"\\uFFFD");
                i += 6;
            }
            _ => {
                let end = (i + 2).min(line.len());
                out.extend_from_slice(&line[i..end]);
                i = end;
            }
        }
    }
}

/// The UTF-16 code unit of a `\uXXXX` escape starting at `at`, if there is one.
fn escape_code_unit(line: &[u8], at: usize) -> Option<u16> {
    let escape = line.get(at..at + 6)?;
    if escape[0] != b'\\' || escape[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::UsageLine;

    fn decode(line: &str) -> Result<Decoded<UsageLine<'_>>, DecodeError> {
        let scratch = Box::leak(Box::new(Vec::new()));
        decode_line(line.as_bytes(), scratch)
    }

    #[test]
    fn blank_and_whitespace_lines_are_blank() {
        for line in ["", "   ", "\r", " \t\r"] {
            assert!(matches!(decode(line), Ok(Decoded::Blank)), "{line:?}");
        }
    }

    #[test]
    fn crlf_is_trimmed() {
        let decoded = decode("{\"type\":\"user\"}\r").expect("decodes");
        assert!(matches!(decoded, Decoded::Value { repair: None, .. }));
    }

    #[test]
    fn non_objects_are_classified() {
        for line in ["\"massive error\"", "42", "[1]", "null", "true"] {
            assert_eq!(decode(line).err(), Some(DecodeError::NotObject), "{line}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        for line in [
            "not json at all",
            "\u{0}\u{0}\u{0}",
            "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_01trunc",
            "{\"parentUuid\":\"u2\",\"isSidechain\":false,\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":\"trunc",
        ] {
            assert!(matches!(decode(line), Err(DecodeError::Malformed(_))), "{line}");
        }
    }

    #[test]
    fn torn_record_yields_the_complete_one() {
        let line = r#"{"type":"pr-link","sessionId":"s","prNu{"parentUuid":"u1","type":"assistant","requestId":"req_x1","message":{"id":"msg_x1","model":"claude-opus-4-6","usage":{"input_tokens":3,"output_tokens":5}}}"#;
        match decode(line) {
            Ok(Decoded::Value { value, repair }) => {
                assert_eq!(repair, Some(Repair::TornPrefix { dropped_bytes: 39 }));
                assert_eq!(value.request_id.as_deref(), Some("req_x1"));
                assert_eq!(value.billable().map(|(_, u)| u.output_tokens), Some(5));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn torn_record_with_nested_blocks_is_split_at_the_right_record() {
        // The complete record holds a nested {"type":…} block, and so does the torn
        // one: the split must be where the rest of the line is one object.
        let line = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"cut{"parentUuid":"u1","type":"assistant","requestId":"r","message":{"id":"m","content":[{"type":"text","text":"hi"}],"usage":{"output_tokens":5}}}"#;
        match decode(line) {
            Ok(Decoded::Value { value, repair }) => {
                assert!(
                    matches!(repair, Some(Repair::TornPrefix { .. })),
                    "{repair:?}"
                );
                assert_eq!(value.billable().map(|(_, u)| u.output_tokens), Some(5));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn lone_surrogates_in_decoded_fields_are_repaired() {
        let line = r#"{"type":"assistant","requestId":"r\ud83c","message":{"id":"m","usage":{"output_tokens":1}}}"#;
        match decode(line) {
            Ok(Decoded::Value { value, repair }) => {
                assert_eq!(repair, Some(Repair::LoneSurrogates));
                assert_eq!(value.request_id.as_deref(), Some("r\u{FFFD}"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn surrogate_repair_keeps_pairs_and_escaped_backslashes() {
        let mut out = Vec::new();
        replace_lone_surrogates(br#""a\ud83c\udf89 b\\ud83c c\udc00 d\ud83c""#, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#""a\ud83c\udf89 b\\ud83c c\uFFFD d\uFFFD""#
        );
    }

    #[test]
    fn streamed_lines_decode_and_reject_trailing_garbage() {
        let decode = |bytes: &[u8]| decode_reader::<_, UsageLine>(bytes).expect("read");
        let ok: UsageLine = decode(b"{\"type\":\"user\"}").expect("decodes");
        assert_eq!(ok.kind.as_deref(), Some("user"));
        assert!(decode(b"{\"type\":\"user\"} x").is_err());
        assert_eq!(decode(b"[1]").err(), Some(DecodeError::NotObject));
    }

    #[test]
    fn a_streamed_line_that_cannot_be_read_is_not_judged() {
        struct FailsAfter<'a>(&'a [u8]);
        impl Read for FailsAfter<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("the disk went away"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let error = decode_reader::<_, UsageLine>(FailsAfter(b"{\"type\":\"us"))
            .expect_err("a read error, not a malformed line");
        assert!(error.to_string().contains("the disk went away"), "{error}");
    }
}
