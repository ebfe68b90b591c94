//! ccotel turns Claude Code session transcripts (`~/.claude/projects/**/*.jsonl`)
//! into exact token and cost figures, and (next) OpenTelemetry logs, spans and
//! metrics.
//!
//! The modules follow the pipeline, data flowing one way:
//!
//! | module | owns |
//! |---|---|
//! | [`source`] | config roots, discovery, reading complete lines from an offset, file identity, the manifest |
//! | [`transcript`] | the serde model of entries and tolerant decoding of one line |
//! | [`session`] | state across lines and files: the dedup ledger and pricing |
//! | [`ingest`] | one run: which bytes are new, worker threads, merging into the ledger |
//! | [`report`] | daily, monthly, session, project and model reports |
//! | [`config`] | layered configuration |

pub mod config;
pub mod export;
pub mod ingest;
pub mod progress;
pub mod report;
pub mod session;
pub mod signal;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod transcript;
