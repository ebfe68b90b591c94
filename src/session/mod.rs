//! State that spans lines and files: deduplicating the streamed copies of each API
//! response into one counted usage (the ledger), pricing it, and correlating lines
//! into sessions, turns, model calls, tool calls and subagents (the tracker).
//!
//! Knows nothing of file I/O or OTLP: it is fed decoded lines and answers with
//! counts, finished spans and log entries in its own terms ([`activity`]).

pub mod activity;
pub mod ids;
mod ledger;
mod pricing;
pub mod tracker;

pub use ledger::{
    Ledger, LedgerDelta, LedgerError, Observation, Response, ResponseKey, StringIds, StringLookup,
    TokenCounts,
};
pub use pricing::{ModelPrice, PriceOverride, PriceTable, Rates};
pub use tracker::{LineOrigin, Tracker, TrackerOptions};
