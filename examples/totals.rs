//! Using ccotel as a library: scan the default Claude directories and print the
//! exact token and cost totals, the way `ccotel report --full` computes them.
//!
//! `cargo run --example totals`

use ccotel::ingest::{full_scan, IngestOptions, Progress};
use ccotel::report::{build, DateFilter, Grouping};
use ccotel::session::PriceTable;
use ccotel::source::{default_roots, discover};

fn main() -> anyhow::Result<()> {
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
    let files = discover(&default_roots(home.as_ref()))?;
    let scanned = full_scan(files, &IngestOptions::default(), &Progress::default());
    let filter = DateFilter {
        time_zone: jiff::tz::TimeZone::system(),
        since: None,
        until: None,
    };
    let report = build(
        &scanned.ledger,
        &PriceTable::embedded(),
        Grouping::Model,
        &filter,
    );
    for row in &report.rows {
        println!(
            "{:<32} {:>14} tokens  ${:.2}",
            row.key,
            row.totals.total_tokens(),
            row.totals.cost
        );
    }
    println!(
        "{} responses in {} files, {} tokens, ${:.2}",
        report.totals.responses,
        scanned.summary.files,
        report.totals.total_tokens(),
        report.totals.cost
    );
    Ok(())
}
