//! An incremental run must count exactly what one full scan counts, however the
//! bytes arrive: here a corpus is fed in random byte-sized appends (cut anywhere,
//! mid-line included) with a restart and manifest reload between scans. Between
//! scans the ledger's changes go to a journal, which is folded into a new blob
//! now and then, and now and then a crash leaves an uncommitted journal record.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ccotel::ingest::PriorState;
use ccotel::report::{to_json, Grouping};
use common::{ClaudeHome, Rng};

/// Every `*.jsonl` under `dir`, as (path relative to `projects/`, bytes).
fn corpus_files(projects: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(projects, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(projects).expect("under projects");
            (
                relative.display().to_string(),
                fs::read(&path).expect("read"),
            )
        })
        .collect()
}

/// Feeds `files` into a fresh home in random appends, scanning incrementally every
/// few appends, and checks the final incremental report against a full scan.
fn feed_in_random_appends(files: &[(String, Vec<u8>)], seed: u64, max_chunk: u64) -> usize {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state dir");
    let mut rng = Rng(seed);
    let mut cursors = vec![0usize; files.len()];
    let mut scans = 0;
    let mut journals_seen = 0;
    let mut blobs_seen = std::collections::BTreeSet::new();
    while cursors
        .iter()
        .zip(files)
        .any(|(at, (_, bytes))| *at < bytes.len())
    {
        for _ in 0..=rng.below(4) {
            let pending: Vec<usize> = (0..files.len())
                .filter(|&i| cursors[i] < files[i].1.len())
                .collect();
            if pending.is_empty() {
                break;
            }
            let i = pending[rng.below(pending.len() as u64) as usize];
            let (name, bytes) = &files[i];
            let limit = if rng.below(4) == 0 { 64 } else { max_chunk };
            let size = 1 + rng.below(limit) as usize;
            let end = (cursors[i] + size).min(bytes.len());
            home.append(name, &bytes[cursors[i]..end]);
            cursors[i] = end;
        }
        // Each scan opens the state directory anew: a restart and a manifest reload.
        // Read on the calling thread, on several workers, and as the binary
        // counts them, in turn.
        let threads = [1, 3, 0][scans % 3];
        let (_, prior) = home.incremental_scan_on(state.path(), threads);
        assert!(
            matches!(prior, PriorState::Loaded | PriorState::Empty),
            "scan {scans} could not use the saved state: {prior:?}"
        );
        scans += 1;
        let names = session_state_files(state.path());
        journals_seen += usize::from(names.iter().any(|name| name.ends_with(".journal")));
        blobs_seen.extend(names.into_iter().filter(|name| name.ends_with(".bin")));
        if scans % 7 == 0 {
            crash_mid_append(state.path());
        }
    }
    assert!(journals_seen > 1, "changes were never journaled");
    assert!(blobs_seen.len() > 1, "the journal was never folded in");
    let (incremental, _) = home.incremental_scan(state.path());
    let full = home.full_scan();
    for grouping in [Grouping::Daily, Grouping::Session, Grouping::Model] {
        assert_eq!(
            to_json(&common::report(&incremental, grouping)),
            to_json(&common::report(&full, grouping)),
            "incremental and full reports differ ({grouping:?}, seed {seed})"
        );
    }
    assert!(common::token_totals(&full).4 > 0, "the corpus has usage");
    scans
}

fn session_state_files(state: &Path) -> Vec<String> {
    fs::read_dir(state)
        .expect("state dir")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("session-state."))
        .collect()
}

/// What a crash while appending leaves: a torn record after the journal's last
/// whole one, over the zeros written ahead, which the next load drops and the
/// next append cuts off.
fn crash_mid_append(state: &Path) {
    for name in session_state_files(state) {
        if name.ends_with(".journal") {
            let path = state.join(name);
            let torn_at = end_of_records(&fs::read(&path).expect("journal"));
            let journal = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("journal");
            // A header naming 60 bytes, a checksum, and 3 of the 60.
            let torn = [60, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 1, 2, 3];
            journal.write_all_at(&torn, torn_at).expect("torn record");
        }
    }
}

/// Where a state journal's records end: after its 16-byte header, records
/// framed `[u32 length][u64 checksum][payload]` up to a header of zeros or the
/// end of the file.
fn end_of_records(journal: &[u8]) -> u64 {
    let mut at = 16;
    while let Some(header) = journal.get(at..at + 12) {
        if header.iter().all(|&byte| byte == 0) {
            break;
        }
        let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        at += 12 + length as usize;
    }
    at as u64
}

#[test]
fn real_samples_in_random_appends_equal_one_full_scan() {
    let sample_files = [
        "claude-code-viewer/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
        "claude-code-viewer/5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl",
        "fasthooks/sample_main_transcript.jsonl",
        "fasthooks/sample_agent_sidechain.jsonl",
        "spotter/subagent.jsonl",
        "spotter/tool_heavy.jsonl",
        "synthetic/constructed/malformed_lines.jsonl",
        "claude-code-log/edge_cases.jsonl",
    ];
    let files: Vec<(String, Vec<u8>)> = sample_files
        .iter()
        .map(|name| {
            let relative = format!("-samples/{}", name.replace('/', "-"));
            (relative, fs::read(common::sample(name)).expect("sample"))
        })
        .collect();
    for seed in [1, 2, 3] {
        let scans = feed_in_random_appends(&files, seed, 24 << 10);
        assert!(scans > 20, "only {scans} scans");
    }
}

#[test]
fn generated_corpus_in_random_appends_equals_one_full_scan_and_truth() {
    let corpus = tempfile::tempdir().expect("corpus dir");
    let Some(truth) = common::generate_corpus(corpus.path(), 40, 3.0, 5) else {
        return;
    };
    let files = corpus_files(&corpus.path().join(".claude/projects"));
    feed_in_random_appends(&files, 42, 96 << 10);

    let home = ClaudeHome::new();
    for (name, bytes) in &files {
        home.write(name, bytes);
    }
    let (input, output, cache_creation, cache_read, calls) =
        common::token_totals(&home.full_scan());
    assert_eq!(
        (input, output, cache_creation, cache_read, calls),
        common::truth_totals(&truth)
    );
}
