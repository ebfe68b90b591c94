//! `ccotel run` following files as Claude Code and its cleanup change them: new,
//! growing (including a line written in two pieces), renamed, truncated and
//! deleted files, then SIGTERM. Written to the embedded default, so each step's
//! records can be read back exactly.

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::collector::Received;
use common::ClaudeHome;

/// A prompt written now, so its session is live.
fn prompt(session: &str, n: u32) -> String {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
    format!(
        "{{\"type\":\"user\",\"sessionId\":\"{session}\",\"uuid\":\"00000000-0000-4000-8000-{n:012}\",\"timestamp\":\"{now}\",\"message\":{{\"role\":\"user\",\"content\":\"prompt {n}\"}}}}\n"
    )
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(text.as_bytes()).expect("write");
}

/// How many log records carry each prompt body.
fn prompts(dir: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for log in Received::from_otlp_json_dir(dir).logs {
        if log.body.starts_with("prompt ") {
            *seen.entry(log.body).or_insert(0) += 1;
        }
    }
    seen
}

fn wait_for(
    dir: &Path,
    what: &str,
    done: impl Fn(&HashMap<String, usize>) -> bool,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = prompts(dir);
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(home: &ClaudeHome, state: &Path, data: &Path) -> Child {
    let config = state.join("config.toml");
    std::fs::create_dir_all(state).expect("mkdir");
    std::fs::write(&config, "[export]\npoll_interval_ms = 100\n").expect("config");
    home.ccotel(&state.join("state"))
        .args(["run", "--config"])
        .arg(&config)
        .env("CCOTEL_DATA_DIR", data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ccotel run")
}

#[test]
fn run_follows_new_growing_renamed_truncated_and_deleted_files() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("otlp");
    let session = "11111111-2222-4333-8444-555555555555";
    let project = home.path("-proj");
    std::fs::create_dir_all(&project).expect("mkdir");
    let first = project.join(format!("{session}.jsonl"));
    append(&first, &prompt(session, 1));
    let mut child = start(&home, state.path(), data.path());

    // A new file, then growth, with one line written in two pieces.
    wait_for(&dir, "prompt 1", |s| s.contains_key("prompt 1"));
    let line = prompt(session, 2);
    let (head, tail) = line.split_at(40);
    append(&first, head);
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        !prompts(&dir).contains_key("prompt 2"),
        "half a line is not read"
    );
    append(&first, tail);
    wait_for(&dir, "prompt 2", |s| s.contains_key("prompt 2"));

    // Renamed: nothing is sent again, and what is appended later is sent once.
    let renamed = project.join("renamed.jsonl");
    std::fs::rename(&first, &renamed).expect("rename");
    append(&renamed, &prompt(session, 3));
    let seen = wait_for(&dir, "prompt 3", |s| s.contains_key("prompt 3"));
    assert_eq!(seen["prompt 1"], 1, "a rename does not resend");
    assert_eq!(seen["prompt 2"], 1);

    // Truncated and rewritten: read again from the start.
    std::fs::write(&renamed, prompt(session, 4)).expect("truncate");
    wait_for(&dir, "prompt 4", |s| s.contains_key("prompt 4"));

    // Deleted, and a new file appears: the run carries on.
    std::fs::remove_file(&renamed).expect("delete");
    let other = project.join("22222222-2222-4333-8444-555555555555.jsonl");
    append(&other, &prompt("22222222-2222-4333-8444-555555555555", 5));
    let seen = wait_for(&dir, "prompt 5", |s| s.contains_key("prompt 5"));
    assert!(
        seen.values().all(|n| *n == 1),
        "every record once: {seen:?}"
    );

    // SIGTERM: flushes, commits, exits cleanly, and says what it sent.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = wait_with_timeout(&mut child);
    assert!(output.0.success(), "exit status {:?}", output.0);
    assert!(output.1.contains("sent"), "summary on stderr: {}", output.1);
    // The sessions are live: their root spans stay open in the state for the
    // next run rather than being sent early.
    let received = Received::from_otlp_json_dir(&dir);
    assert!(received.spans.iter().all(|s| s.name != "session"));
    assert!(
        state.path().join("state/export/manifest.bin").is_file(),
        "committed"
    );
}

fn wait_with_timeout(child: &mut Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            return (status, stderr);
        }
        assert!(
            Instant::now() < deadline,
            "ccotel did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
