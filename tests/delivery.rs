//! `ccotel run` against a real collector when things go wrong: killed with SIGKILL
//! again and again while lines are appended, and the collector down for 30 s.
//! Every record must arrive; duplicates may only come from the batch that was in
//! flight at each crash; no offset may be committed for data not acknowledged.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::collector::{Collector, Received};
use common::{generate_corpus, rss_kib, Appender, ClaudeHome};

/// Small batches, so a crash finds several in flight; fast polling.
const CONFIG: &str = "[export]\nbatch_max_records = 200\npoll_interval_ms = 100\nqueue_batches = 2\nshutdown_grace_secs = 2\n";
const BATCH: usize = 200;

struct Setup {
    home: ClaudeHome,
    state: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(home: ClaudeHome) -> Setup {
        let state = tempfile::tempdir().expect("tempdir");
        let config = state.path().join("config.toml");
        std::fs::write(&config, CONFIG).expect("config");
        Setup {
            home,
            state,
            config,
        }
    }

    fn start(&self, collector: &Collector) -> Child {
        self.home
            .ccotel(&self.state.path().join("state"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ccotel run")
    }

    /// Committed offsets (base and journal), by path, read while ccotel runs.
    fn committed(&self) -> HashMap<String, u64> {
        let dir = self.state.path().join("state/export");
        for _ in 0..20 {
            // A read can race a compaction; the next one sees the new state.
            if let Ok(manifest) = ccotel::export::checkpoint::committed_manifest(&dir) {
                return manifest
                    .files
                    .iter()
                    .map(|(path, state)| (path.display().to_string(), state.offset))
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("cannot read the committed state in {}", dir.display());
    }
}

/// Each record's (path, offset), how often it arrived.
fn arrivals(received: &Received) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    for log in &received.logs {
        let key = (
            log.attributes["transcript.path"].clone(),
            log.attributes["transcript.offset"].clone(),
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

/// Every entry line of every transcript under `home`, as (path, offset).
fn expected_records(home: &ClaudeHome) -> Vec<(String, String)> {
    let mut expected = Vec::new();
    let mut scratch = Vec::new();
    for file in ccotel::source::discover(&[home.root()]).expect("discover") {
        let bytes = std::fs::read(&file.path).expect("read");
        let mut offset = 0usize;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if line.ends_with(b"\n") {
                let decoded = ccotel::transcript::decode_line::<ccotel::transcript::Entry>(
                    line,
                    &mut scratch,
                );
                if let Ok(ccotel::transcript::Decoded::Value { .. }) = decoded {
                    expected.push((file.path.display().to_string(), offset.to_string()));
                }
            }
            offset += line.len();
        }
    }
    expected
}

fn wait_for_all(collector: &Collector, expected: &[(String, String)], limit: Duration) -> Received {
    collector.wait_until(limit, |received| {
        let seen = arrivals(received);
        expected.iter().all(|key| seen.contains_key(key))
    })
}

fn missing(received: &Received, expected: &[(String, String)]) -> Vec<(String, String)> {
    let seen = arrivals(received);
    expected
        .iter()
        .filter(|key| !seen.contains_key(*key))
        .cloned()
        .collect()
}

fn terminate(child: &mut Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("ccotel did not stop within 20 s of SIGTERM");
}

/// A pseudo-random number in [0, n), different for each call.
fn random_below(n: u64, salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % n
}

#[test]
fn sigkill_during_backfill_loses_nothing() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let corpus = tempfile::tempdir().expect("tempdir");
    if generate_corpus(corpus.path(), 120, 12.0, 7).is_none() {
        return;
    }
    let setup = Setup::new(ClaudeHome { dir: corpus });
    let mut appender = Appender::new(
        &setup.home,
        "-appended/7d3f3c52-9d1e-4c55-9a4e-1b2c3d4e5f60.jsonl",
    );
    let kills = 24;
    for round in 0..kills {
        let mut child = setup.start(&collector);
        appender.append(20);
        std::thread::sleep(Duration::from_millis(150 + random_below(500, round)));
        appender.append(20);
        std::thread::sleep(Duration::from_millis(random_below(200, round + 100)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    let mut child = setup.start(&collector);
    let expected = expected_records(&setup.home);
    let received = wait_for_all(&collector, &expected, Duration::from_secs(120));
    terminate(&mut child);
    let lost = missing(&received, &expected);
    if let Some((path, offset)) = lost.first() {
        let committed = setup.committed().get(path).copied();
        let size = std::fs::metadata(path).map(|m| m.len()).ok();
        let files: std::collections::BTreeSet<&String> = lost.iter().map(|(p, _)| p).collect();
        panic!(
            "{} records in {} files never arrived, e.g. {path} at {offset} (committed offset {committed:?}, size {size:?})",
            lost.len(),
            files.len()
        );
    }
    let seen = arrivals(&received);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "crash test: {kills} SIGKILLs, {} records expected, {} received, {duplicates} duplicates",
        expected.len(),
        received.logs.len()
    );
    assert!(
        duplicates <= kills as usize * BATCH,
        "{duplicates} duplicates is more than one unacknowledged batch ({BATCH} records) per crash"
    );
}

fn offset_of(setup: &Setup, path: &Path) -> u64 {
    setup
        .committed()
        .get(&path.display().to_string())
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_collector_outage_loses_nothing_and_commits_nothing_unacknowledged() {
    let Some(mut collector) = Collector::start() else {
        return;
    };
    let home = ClaudeHome::with_samples();
    let setup = Setup::new(home);
    let mut appender = Appender::new(
        &setup.home,
        "-appended/7d3f3c52-9d1e-4c55-9a4e-1b2c3d4e5f60.jsonl",
    );
    let mut child = setup.start(&collector);
    appender.append(10);
    let expected = expected_records(&setup.home);
    let received = wait_for_all(&collector, &expected, Duration::from_secs(60));
    assert!(
        missing(&received, &expected).is_empty(),
        "delivered before the outage"
    );
    // Let the commit of the last batch land.
    std::thread::sleep(Duration::from_millis(500));
    let before = offset_of(&setup, &appender.path);
    let size_before = std::fs::metadata(&appender.path).expect("stat").len();
    assert_eq!(before, size_before, "everything delivered is committed");

    collector.stop();
    let mut peak_rss = 0;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        appender.append(50);
        std::thread::sleep(Duration::from_millis(250));
        peak_rss = peak_rss.max(rss_kib(child.id()).unwrap_or(0));
        assert_eq!(
            offset_of(&setup, &appender.path),
            before,
            "an offset was committed while the collector was down"
        );
    }
    collector.restart();
    let expected = expected_records(&setup.home);
    let received = wait_for_all(&collector, &expected, Duration::from_secs(60));
    let lost = missing(&received, &expected);
    assert!(lost.is_empty(), "{} records lost in the outage", lost.len());
    std::thread::sleep(Duration::from_millis(500));
    let size_after = std::fs::metadata(&appender.path).expect("stat").len();
    assert_eq!(
        offset_of(&setup, &appender.path),
        size_after,
        "committed after the restart"
    );
    terminate(&mut child);
    eprintln!(
        "outage test: {} lines appended during 30 s down, peak RSS {} KiB",
        appender.next - 10,
        peak_rss
    );
    assert!(
        peak_rss > 0 && peak_rss < 100 * 1024,
        "peak RSS {peak_rss} KiB"
    );
}
