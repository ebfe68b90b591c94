//! Usage reports computed from the ledger: grouped by day, month, session, project
//! or model, for the terminal or as JSON in ccusage's shape.

mod aggregate;
pub mod cache;
mod json;
mod table;
mod view;

pub use aggregate::{build, DateFilter, Grouping, Report, Row, Tally, TallyUpdate, Totals};
pub use json::{splice, to_json, to_json_document, to_json_text, JsonDocument, RowIndex};
pub use table::render;
pub use view::{Cached, View};
