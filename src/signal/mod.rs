//! Building OTLP protobuf messages from session activity: logs, spans and
//! metrics with historic timestamps and deterministic ids, under the content
//! policy. No network I/O here; `sink/` sends what this builds.

pub mod content;
pub mod metrics;
pub mod otlp;
pub mod resource;
pub mod rows;
pub mod rows_from_otlp;

pub use content::{ContentPolicy, ContentPolicyError};
pub use otlp::{Encoder, OtlpBatch};
pub use resource::ResourceBase;

/// Unix milliseconds as OTLP's nanoseconds (times before 1970 become 0).
pub(crate) fn nanos(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}
