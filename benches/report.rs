//! Criterion benchmarks of a report over a year of usage: grouping the ledger
//! by day and by session, and writing the result as ccusage-shaped JSON (what a
//! run that read something new, or a view not in the cache, pays on top of
//! reading).
//!
//! Run with `cargo bench --bench report`.

use ccotel::report::{build, to_json_text, DateFilter, Grouping};
use ccotel::session::{Ledger, Observation, PriceTable, ResponseKey, TokenCounts};
use criterion::{criterion_group, criterion_main, Criterion};

const MODELS: [&str; 4] = [
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-20250514",
];

/// 60,000 responses over 365 days, in 2,000 sessions of 40 projects, with
/// four models: about the shape of the 2,500-file corpus's history.
fn year_of_usage() -> Ledger {
    let mut ledger = Ledger::new();
    let start_ms: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
    let sessions: Vec<String> = (0..2_000).map(|i| format!("session-{i:05}")).collect();
    let projects: Vec<String> = (0..40)
        .map(|i| format!("/home/dev/project-{i:02}"))
        .collect();
    for i in 0..60_000u64 {
        let session = (i % 2_000) as usize;
        let observation = Observation {
            tokens: TokenCounts {
                input: 3 + i % 17,
                output: 100 + i % 900,
                cache_creation: 1_000 + i % 5_000,
                cache_creation_1h: i % 3 * 100,
                cache_read: 20_000 + i % 40_000,
                web_search_requests: 0,
            },
            timestamp_ms: start_ms + (i as i64 * 525_600 / 60_000) * 60_000,
            model: MODELS[(i % 7 % 4) as usize],
            session: &sessions[session],
            project: &projects[session % 40],
            sidechain: i % 11 == 0,
            fast: false,
            us_only: false,
            cost_usd: None,
        };
        let id = format!("msg_{i:08}");
        ledger.observe(ResponseKey::of(&id, Some("req")), &observation);
    }
    ledger
}

fn report_benchmarks(c: &mut Criterion) {
    let ledger = year_of_usage();
    let prices = PriceTable::embedded();
    let filter = DateFilter {
        time_zone: jiff::tz::TimeZone::UTC,
        since: None,
        until: None,
    };
    let mut group = c.benchmark_group("report");
    for (name, grouping) in [("daily", Grouping::Daily), ("session", Grouping::Session)] {
        group.bench_function(format!("{name}_group"), |b| {
            b.iter(|| build(&ledger, &prices, grouping, &filter).rows.len())
        });
        let report = build(&ledger, &prices, grouping, &filter);
        group.bench_function(format!("{name}_json"), |b| {
            b.iter(|| to_json_text(&report).len())
        });
    }
    group.finish();
}

criterion_group!(benches, report_benchmarks);
criterion_main!(benches);
