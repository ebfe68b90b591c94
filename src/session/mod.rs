//! State that spans lines and files: deduplicating the streamed copies of each API
//! response into one counted usage (the ledger), and pricing it.
//!
//! Knows nothing of files or OTLP: it is fed observations and answers with counts.

mod ledger;
mod pricing;

pub use ledger::{Ledger, LedgerError, Observation, Response, ResponseKey, TokenCounts};
pub use pricing::{ModelPrice, PriceOverride, PriceTable, Rates};
