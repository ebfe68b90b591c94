//! State that spans lines and files: deduplicating the streamed copies of each API
//! response into one counted usage (the ledger), and pricing it.
//!
//! Knows nothing of files or OTLP: it is fed observations and answers with counts.

pub mod activity;
pub mod ids;
mod ledger;
mod pricing;
pub mod tracker;

pub use ledger::{Ledger, LedgerError, Observation, Response, ResponseKey, TokenCounts};
pub use pricing::{ModelPrice, PriceOverride, PriceTable, Rates};
pub use tracker::{LineOrigin, Tracker, TrackerOptions};
