//! Deterministic trace and span ids: the same transcript always yields the same
//! ids, so records re-sent after a crash or a lost manifest are the same records.

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// A session's trace id: its UUID's 16 bytes, or a hash when it is not a UUID.
pub fn trace_id(session_id: &str) -> TraceId {
    parse_uuid(session_id).unwrap_or_else(|| xxh3_128(session_id.as_bytes()).to_be_bytes())
}

/// A span's id: the first 8 bytes of a stable hash of what the span is (its kind
/// and the transcript id it stands for), within its trace.
pub fn span_id(trace: &TraceId, kind: &str, what: &str) -> SpanId {
    let mut bytes = Vec::with_capacity(16 + kind.len() + what.len() + 1);
    bytes.extend_from_slice(trace);
    bytes.extend_from_slice(kind.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(what.as_bytes());
    let id = xxh3_64(&bytes);
    // An all-zero span id is invalid in OTLP.
    if id == 0 { 1u64 } else { id }.to_be_bytes()
}

fn parse_uuid(text: &str) -> Option<TraceId> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut id = [0u8; 16];
    for (slot, pair) in id.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(id)
}

/// Lower-case hex, as OTLP JSON and most backends show ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_session_is_its_own_trace_id() {
        let id = trace_id("4d5611e5-0c3a-4b59-9f47-2f4c1f3f8e21");
        assert_eq!(hex(&id), "4d5611e50c3a4b599f472f4c1f3f8e21");
    }

    #[test]
    fn other_session_ids_hash_stably() {
        assert_eq!(trace_id("not-a-uuid"), trace_id("not-a-uuid"));
        assert_ne!(trace_id("not-a-uuid"), trace_id("not-a-uuid2"));
    }

    #[test]
    fn span_ids_depend_on_trace_kind_and_id() {
        let trace = trace_id("s");
        let turn = span_id(&trace, "turn", "u1");
        assert_eq!(turn, span_id(&trace, "turn", "u1"));
        assert_ne!(turn, span_id(&trace, "chat", "u1"));
        assert_ne!(turn, span_id(&trace_id("t"), "turn", "u1"));
        assert_ne!(turn, [0; 8]);
    }
}
