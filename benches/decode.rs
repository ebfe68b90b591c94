//! Criterion benchmarks of the hot path: decoding lines for counting, and a whole
//! scan of the real samples through the ingest pipeline.
//!
//! Run with `cargo bench --bench decode`. Whole-process comparisons against
//! ccusage and `cat` are in `benches/whole_process.sh`.

use std::path::{Path, PathBuf};

use ccotel::ingest::{full_scan, IngestOptions, Progress};
use ccotel::source::{default_roots, discover};
use ccotel::transcript::{decode_line, Entry, UsageLine};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/formats/samples")
        .join(name)
}

fn decode_benchmarks(c: &mut Criterion) {
    let bytes = std::fs::read(sample(
        "claude-code-viewer/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
    ))
    .expect("the shared samples are beside the project");
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("usage_view", |b| {
        let mut scratch = Vec::new();
        b.iter(|| {
            let mut counted = 0u64;
            for line in &lines {
                if let Ok(ccotel::transcript::Decoded::Value { value, .. }) =
                    decode_line::<UsageLine>(line, &mut scratch)
                {
                    counted += u64::from(value.billable().is_some());
                }
            }
            counted
        })
    });
    group.bench_function("full_entry", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter_map(|line| std::str::from_utf8(line).ok())
                .filter(|line| !line.trim().is_empty())
                .filter_map(|line| Entry::from_json(line).ok())
                .count()
        })
    });
    group.finish();
}

fn ingest_benchmark(c: &mut Criterion) {
    let home = tempfile::tempdir().expect("tempdir");
    let project = home.path().join(".claude/projects/-bench");
    std::fs::create_dir_all(&project).expect("mkdir");
    let mut total = 0;
    for name in [
        "claude-code-viewer/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
        "claude-code-viewer/5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl",
        "spotter/subagent.jsonl",
        "fasthooks/sample_main_transcript.jsonl",
    ] {
        let bytes = std::fs::read(sample(name)).expect("sample");
        total += bytes.len() as u64;
        std::fs::write(project.join(name.replace('/', "-")), bytes).expect("write");
    }
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(total));
    group.bench_function("samples_full_scan", |b| {
        b.iter(|| {
            let files = discover(&default_roots(home.path())).expect("discover");
            let result = full_scan(files, &IngestOptions::default(), &Progress::default());
            result.ledger.len()
        })
    });
    group.finish();
}

criterion_group!(benches, decode_benchmarks, ingest_benchmark);
criterion_main!(benches);
