//! Criterion benchmarks of the saved ledger as a changed run uses it: merging
//! what the run read into a ledger restored from the state directory (each key
//! looked up among the saved records), and folding the result into a new base
//! (what a run does when its journal is full).
//!
//! Run with `cargo bench --bench ledger`.

use ccotel::codec::FileBytes;
use ccotel::session::{Ledger, LedgerDelta, Observation, ResponseKey, TokenCounts};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

/// A response of session `i % 500`, with `output` tokens.
fn observe(ledger: &mut Ledger, sessions: &[String], i: u64, output: u64) {
    let observation = Observation {
        tokens: TokenCounts {
            input: 3,
            output,
            cache_creation: 1_000 + i % 5_000,
            cache_creation_1h: 0,
            cache_read: 20_000 + i % 40_000,
            web_search_requests: 0,
        },
        timestamp_ms: 1_735_689_600_000 + i as i64 * 60_000,
        model: "claude-sonnet-4-5-20250929",
        session: &sessions[(i % 500) as usize],
        project: "/home/dev/project",
        sidechain: false,
        fast: false,
        us_only: false,
        cost_usd: None,
    };
    ledger.observe(
        ResponseKey::of(&format!("msg_{i:08}"), Some("req")),
        &observation,
    );
}

fn ledger_benchmarks(c: &mut Criterion) {
    let sessions: Vec<String> = (0..500).map(|i| format!("session-{i:04}")).collect();
    // 130,000 saved responses (a ledger file of about 12 MB), as restored.
    let mut history = Ledger::new();
    for i in 0..130_000 {
        observe(&mut history, &sessions, i, 100 + i % 900);
    }
    let saved = history.encode().expect("a ledger with nothing saved");
    // What a run read: 5,000 new responses, and 500 saved ones grown.
    let mut read = Ledger::new();
    for i in 130_000..135_000 {
        observe(&mut read, &sessions, i, 50);
    }
    for i in (0..130_000).step_by(260) {
        observe(&mut read, &sessions, i, 5_000);
    }
    // As a run restores it: read in place, each block checked when first used.
    let restored =
        || Ledger::from_encoded(FileBytes::from(saved.clone())).expect("a ledger just encoded");
    c.bench_function("restore_saved", |b| {
        b.iter_batched(
            || FileBytes::from(saved.clone()),
            |bytes| Ledger::from_encoded(bytes).expect("a ledger just encoded"),
            BatchSize::LargeInput,
        )
    });
    c.bench_function("restore_saved_checked_whole", |b| {
        b.iter_batched(
            restored,
            |ledger| ledger.check_everything().map(|()| ledger),
            BatchSize::LargeInput,
        )
    });
    c.bench_function("merge_into_saved", |b| {
        b.iter_batched(
            restored,
            |mut ledger| {
                let mut delta = LedgerDelta::default();
                ledger.merge_recording(&read, &mut delta);
                (ledger, delta)
            },
            BatchSize::LargeInput,
        )
    });
    let mut merged = restored();
    merged.merge(&read);
    c.bench_function("fold_encode", |b| b.iter(|| merged.encode()));
}

criterion_group!(benches, ledger_benchmarks);
criterion_main!(benches);
