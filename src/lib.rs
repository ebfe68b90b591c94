//! ccotel turns Claude Code session transcripts (`~/.claude/projects/**/*.jsonl`)
//! into OpenTelemetry logs, spans and metrics, and into exact token and cost
//! reports.
//!
//! The modules follow the pipeline, data flowing one way and acknowledgements
//! flowing back:
//!
//! | module | owns |
//! |---|---|
//! | [`source`] | config roots, discovery and its cache of unchanged directories, reading complete lines from an offset, file identity, the manifest, tailing and watching |
//! | [`transcript`] | the serde model of entries and tolerant decoding of one line |
//! | [`session`] | state across lines and files: the dedup ledger, pricing, and the tracker that turns lines into spans, log entries and counter deltas |
//! | [`signal`] | OTLP messages built from the tracker's output, under the content policy |
//! | [`sink`] | destinations: OTLP/gRPC, OTLP/HTTP, OTLP-JSON files; retries |
//! | [`receiver`] | Claude Code's own OTLP in (gRPC, HTTP), joined to recent transcript facts, content policy applied |
//! | [`export`] | `run` and `backfill`: the reader thread, the bounded queue, delivery and commits |
//! | [`ingest`] | a report's scan: which bytes are new, worker threads, merging into the ledger |
//! | [`report`] | daily, monthly, session, project and model reports |
//! | [`config`] | layered configuration and the `OTEL_EXPORTER_OTLP_*` variables |
//! | [`telemetry`] | ccotel's own logs, spans and metrics |
//! | [`codec`] | framing for the binary state files: integers, length-prefixed bytes, checksums |

pub mod codec;
pub mod config;
pub mod export;
pub mod ingest;
pub mod progress;
pub mod receiver;
pub mod report;
pub mod session;
pub mod signal;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod transcript;
