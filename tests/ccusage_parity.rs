//! Acceptance against the reference: on a generated corpus, `compare.py` (shared
//! tools) runs `ccotel report daily --json --full` beside ccusage 20.0.24 and
//! exits 0 only if our token totals equal both `truth.json` and ccusage's, and our
//! cost equals ccusage's.

mod common;

use std::process::Command;

#[test]
fn generated_corpus_totals_equal_truth_and_ccusage() {
    let npm = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::require("npm (to install ccusage 20.0.24)", npm) {
        return;
    }
    let corpus = tempfile::tempdir().expect("corpus");
    if common::generate_corpus(corpus.path(), 200, 20.0, 42).is_none() {
        return;
    }
    let ours = format!(
        "{} report daily --json --full",
        env!("CARGO_BIN_EXE_ccotel")
    );
    let output = Command::new("python3")
        .arg(common::shared_dir().join("tools/compare.py"))
        .arg("--corpus")
        .arg(corpus.path())
        .arg("--truth")
        .arg(corpus.path().join("truth.json"))
        .args(["--ours", &ours, "--runs", "1", "--no-cat"])
        .output()
        .expect("run compare.py");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "compare.py failed:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("totals: equal to ccusage's"), "{text}");
    assert!(text.contains("totals: equal to truth.json"), "{text}");
}
