//! Shared fixtures for the integration tests: a throwaway Claude home, the shared
//! reference samples and corpus generator, scanning through the library, and the
//! rule for missing external tools (a failure under `CI=true`, a skip elsewhere).
#![allow(dead_code)]

pub mod clickhouse;
pub mod collector;
pub mod native;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ccotel::ingest::{full_scan, ingest_incremental, Ingest, IngestOptions, PriorState, Progress};
use ccotel::report::{self, DateFilter, Grouping, Report, Totals};
use ccotel::session::PriceTable;
use ccotel::source::{default_roots, discover, discover_with, Listing, StateDir};

/// Three workers whatever there is to read: the binary reads a small append on
/// one, so the tests' scans keep several ledgers merging.
fn workers() -> IngestOptions {
    IngestOptions {
        threads: 3,
        ..IngestOptions::default()
    }
}

/// The read-only reference folder: `$CCOTEL_SHARED_DIR`, else `../shared` beside
/// the project, else `/work/shared` (where a CI clone elsewhere finds it).
pub fn shared_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("CCOTEL_SHARED_DIR").map(PathBuf::from),
        Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared"),
        ),
        Some(PathBuf::from("/work/shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("formats").is_dir())
        .expect(
            "the shared reference folder (set CCOTEL_SHARED_DIR, or check out beside ../shared)",
        )
}

/// A file under `../shared/formats/samples/`.
pub fn sample(relative: &str) -> PathBuf {
    shared_dir().join("formats").join("samples").join(relative)
}

/// Whether an external tool needed by a test is present. Under `CI=true` a missing
/// tool fails the test; elsewhere the test is skipped with a note.
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required in CI but missing");
    }
    eprintln!("skipping: {what} is missing");
    false
}

/// A small deterministic generator (xorshift64*), so that a failure found at
/// random reproduces from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One of `items`, which must not be empty.
    #[allow(dead_code)] // not every test binary picks
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A temporary `HOME` with a `.claude/projects/` tree.
pub struct ClaudeHome {
    pub dir: tempfile::TempDir,
}

impl ClaudeHome {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join(".claude/projects")).expect("mkdir");
        ClaudeHome { dir }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// The `.claude` config root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join(".claude")
    }

    /// A path under `.claude/projects/`.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root().join("projects").join(relative)
    }

    /// Writes a file under `.claude/projects/`, replacing any that was there.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, bytes).expect("write");
        path
    }

    /// Copies a reference sample to `relative`.
    pub fn copy_sample(&self, sample_path: &str, relative: &str) -> PathBuf {
        self.write(
            relative,
            &fs::read(sample(sample_path)).expect("read sample"),
        )
    }

    /// Appends to a file under `.claude/projects/`, creating it if needed.
    pub fn append(&self, relative: &str, bytes: &[u8]) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        file.write_all(bytes).expect("append");
    }

    /// Reads everything from the start, with no manifest.
    pub fn full_scan(&self) -> Ingest {
        let files = discover(&default_roots(self.home())).expect("discover");
        full_scan(files, &workers(), &Progress::default())
    }

    /// Reads incrementally through the manifest in `state_dir`, listing the
    /// files as `ccotel report` does.
    pub fn incremental_scan(&self, state_dir: &Path) -> (Ingest, PriorState) {
        self.incremental_scan_on(state_dir, workers().threads)
    }

    /// [`ClaudeHome::incremental_scan`] on `threads` workers: 1 reads on the
    /// calling thread, 0 counts them as the binary does.
    pub fn incremental_scan_on(&self, state_dir: &Path, threads: usize) -> (Ingest, PriorState) {
        let state = StateDir::open(state_dir).expect("state dir");
        let roots = default_roots(self.home());
        let options = IngestOptions {
            threads,
            ..IngestOptions::default()
        };
        ingest_incremental(
            &state,
            || discover_with(&roots, &Listing::default()).map(|found| found.files),
            &options,
            &Progress::default(),
        )
        .expect("ingest")
    }

    /// Runs the `ccotel` binary with this home, UTC, and `state_dir` as state.
    pub fn ccotel(&self, state_dir: &Path) -> Command {
        self.ccotel_from(Path::new(env!("CARGO_BIN_EXE_ccotel")), state_dir)
    }

    /// [`ClaudeHome::ccotel`], running the binary at `binary` (a copy, say).
    pub fn ccotel_from(&self, binary: &Path, state_dir: &Path) -> Command {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TZ", "UTC")
            .env("CCOTEL_STATE_DIR", state_dir);
        command
    }
}

/// Every real and synthetic sample, laid out as Claude Code would: each project in
/// its own folder, the 2.0 subagent file beside its trunk, the 2.1 subagent file
/// under `<session>/subagents/`.
pub const SAMPLE_LAYOUT: &[(&str, &str)] = &[
    (
        "claude-code-viewer/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
        "-path-to-Demo/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
    ),
    (
        "claude-code-viewer/5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl",
        "-path-to-Demo/5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl",
    ),
    (
        "claude-code-viewer/1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl",
        "-path-to-Demo/1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl",
    ),
    (
        "fasthooks/sample_main_transcript.jsonl",
        "-fasthooks/sample_main_transcript.jsonl",
    ),
    (
        "fasthooks/sample_agent_sidechain.jsonl",
        "-fasthooks/agent-af1ff21.jsonl",
    ),
    ("spotter/short.jsonl", "-home-USER-spotter/short.jsonl"),
    (
        "spotter/tool_heavy.jsonl",
        "-home-USER-spotter/tool_heavy.jsonl",
    ),
    (
        "spotter/subagent.jsonl",
        "-home-USER-spotter/subagent.jsonl",
    ),
    ("claude-code-log/edge_cases.jsonl", "-edge/edge_cases.jsonl"),
    (
        "synthetic/agent-sessions/schema_drift.jsonl",
        "-drift/schema_drift.jsonl",
    ),
    (
        "synthetic/agent-sessions/subagent-0a1b2c3d/subagents/agent-a0ad4f44468bdf20d.jsonl",
        "-drift/0a1b2c3d-4e5f-4061-8071-2a3b4c5d6e7f/subagents/agent-a0ad4f44468bdf20d.jsonl",
    ),
    (
        "synthetic/constructed/malformed_lines.jsonl",
        "-constructed/malformed_lines.jsonl",
    ),
];

impl ClaudeHome {
    /// A home holding every sample in [`SAMPLE_LAYOUT`].
    pub fn with_samples() -> ClaudeHome {
        let home = ClaudeHome::new();
        for (sample_path, relative) in SAMPLE_LAYOUT {
            home.copy_sample(sample_path, relative);
        }
        home
    }

    /// `ccotel backfill` of this home into `database` of a test ClickHouse.
    pub fn backfill_into_clickhouse(
        &self,
        state_dir: &Path,
        ch: &clickhouse::ClickHouse,
        database: &str,
    ) -> Command {
        let mut command = self.ccotel(state_dir);
        command
            .arg("backfill")
            .env("CCOTEL_CLICKHOUSE_URL", ch.url())
            .env("CCOTEL_CLICKHOUSE_USER", ch.user())
            .env("CCOTEL_CLICKHOUSE_PASSWORD", ch.password())
            .env("CCOTEL_CLICKHOUSE_DATABASE", database);
        command
    }

    /// `ccotel report daily --json --full` totals for this home.
    pub fn report_totals(&self) -> serde_json::Value {
        let state = tempfile::tempdir().expect("tempdir");
        let output = self
            .ccotel(state.path())
            .args(["report", "daily", "--json", "--full"])
            .output()
            .expect("run ccotel report");
        assert!(
            output.status.success(),
            "report failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("report JSON");
        report["totals"].clone()
    }
}

/// A report over everything counted, with UTC dates.
pub fn report(ingest: &Ingest, grouping: Grouping) -> Report {
    let filter = DateFilter {
        time_zone: jiff::tz::TimeZone::UTC,
        since: None,
        until: None,
    };
    report::build(&ingest.ledger, &PriceTable::embedded(), grouping, &filter)
}

/// Token totals (input, output, cache writes, cache reads) and response count.
pub fn token_totals(ingest: &Ingest) -> (u64, u64, u64, u64, u64) {
    let Totals {
        input,
        output,
        cache_creation,
        cache_read,
        responses,
        ..
    } = report(ingest, Grouping::Daily).totals;
    (input, output, cache_creation, cache_read, responses)
}

/// Writes a generated corpus (`gen_corpus.py`) into `out` and returns its
/// `truth.json` token sums, or `None` (skip) when python3 is missing outside CI.
pub fn generate_corpus(
    out: &Path,
    files: u32,
    megabytes: f64,
    seed: u32,
) -> Option<serde_json::Value> {
    let script = shared_dir().join("tools").join("gen_corpus.py");
    let python = Command::new("python3").arg("--version").output().is_ok();
    if !require(
        "python3 and ../shared/tools/gen_corpus.py",
        python && script.is_file(),
    ) {
        return None;
    }
    let status = Command::new("python3")
        .arg(&script)
        .args(["--out".as_ref(), out.as_os_str()])
        .args([
            "--files",
            &files.to_string(),
            "--target-mb",
            &megabytes.to_string(),
        ])
        .args(["--seed", &seed.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run gen_corpus.py");
    assert!(status.success(), "gen_corpus.py failed");
    let truth = fs::read(out.join("truth.json")).expect("truth.json");
    Some(serde_json::from_slice(&truth).expect("truth.json is JSON"))
}

/// Sums of `truth.json`'s per-model figures: (input, output, cache writes, cache
/// reads, API calls).
pub fn truth_totals(truth: &serde_json::Value) -> (u64, u64, u64, u64, u64) {
    let models = truth["by_model"].as_object().expect("by_model");
    let sum = |field: &str| {
        models
            .values()
            .map(|m| m[field].as_u64().expect("number"))
            .sum()
    };
    (
        sum("input"),
        sum("output"),
        sum("cache_creation"),
        sum("cache_read"),
        sum("calls"),
    )
}

/// Lines the decoder turns into an entry: one log record each.
pub fn decodable_lines(home: &ClaudeHome) -> usize {
    let mut count = 0;
    let mut scratch = Vec::new();
    for file in ccotel::source::discover(&[home.root()]).expect("discover") {
        let bytes = std::fs::read(&file.path).expect("read");
        let complete = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(end) => &bytes[..=end],
            None => &bytes[..0],
        };
        for line in complete.split(|b| *b == b'\n') {
            if let Ok(ccotel::transcript::Decoded::Value { .. }) =
                ccotel::transcript::decode_line::<ccotel::transcript::Entry>(line, &mut scratch)
            {
                count += 1;
            }
        }
    }
    count
}

/// Appends numbered, unique user prompts to one session file.
pub struct Appender {
    pub path: PathBuf,
    pub session: String,
    pub next: u64,
}

impl Appender {
    pub fn new(home: &ClaudeHome, relative: &str) -> Appender {
        let path = home.path(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        Appender {
            path,
            session: "7d3f3c52-9d1e-4c55-9a4e-1b2c3d4e5f60".to_owned(),
            next: 0,
        }
    }

    pub fn append(&mut self, count: usize) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .expect("open for append");
        let mut text = String::new();
        for _ in 0..count {
            self.next += 1;
            text.push_str(&format!(
                "{{\"type\":\"user\",\"sessionId\":\"{}\",\"uuid\":\"00000000-0000-4000-8000-{:012}\",\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"message\":{{\"role\":\"user\",\"content\":\"appended line {}\"}}}}\n",
                self.session, self.next, self.next
            ));
        }
        file.write_all(text.as_bytes()).expect("append");
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
