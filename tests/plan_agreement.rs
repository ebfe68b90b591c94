//! A changed rerun plans from the projects whose digests changed when it can,
//! and from the whole listing otherwise (`ingest::plan_changed_projects`). Debug
//! builds, which the tests are, check on every run that the two plans agree;
//! this test gives that check the listings that could tell them apart: a second
//! root and one linked to the first, hard links, renames across projects and
//! roots, files replaced at their path, deleted and made again (an inode used
//! anew), files directly under `projects/`, a project of several blocks of
//! manifest entries with files made between its files, amid appends. And
//! while nothing is deleted, what the incremental runs counted equals one full
//! scan.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ccotel::ingest::{full_scan, ingest_incremental, Ingest, IngestOptions, Progress};
use ccotel::source::{discover_with, Listing, StateDir};
use common::{ClaudeHome, Rng};

fn response(id: u64) -> String {
    format!(
        r#"{{"type":"assistant","sessionId":"s","timestamp":"2026-01-02T03:04:05.000Z","requestId":"req_{id}","message":{{"id":"msg_{id}","model":"claude-sonnet-4-5-20250929","content":[],"usage":{{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":{id}}}}}}}"#
    ) + "\n"
}

fn append_to(path: &Path, id: u64) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(response(id).as_bytes()).expect("append");
}

fn transcripts_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => transcripts_under(&path, found),
            Ok(kind) if kind.is_file() && path.extension().is_some_and(|e| e == "jsonl") => {
                found.push(path)
            }
            _ => {}
        }
    }
}

fn incremental(state: &Path, roots: &[PathBuf]) -> Ingest {
    let state = StateDir::open(state).expect("state dir");
    let list = || discover_with(roots, &Listing::default()).map(|found| found.files);
    let options = IngestOptions {
        threads: 2,
        ..IngestOptions::default()
    };
    ingest_incremental(&state, list, &options, &Progress::default())
        .expect("incremental run")
        .0
}

fn full(roots: &[PathBuf]) -> Ingest {
    let nothing_cached = Listing::default();
    let listed = discover_with(roots, &nothing_cached).expect("listing");
    let files = listed.files.into_sorted();
    full_scan(files, &IngestOptions::default(), &Progress::default())
}

/// Changes the transcripts once, at random; says whether it deleted a file's
/// lines for good (after which incremental totals keep what a full scan no
/// longer finds).
fn change(random: &mut Rng, project_dirs: &[PathBuf], id: u64) -> bool {
    const PROJECTS: [&str; 6] = ["-a", "-a-b", "-b", "-c", "-c.jsonl", BIG_PROJECT];
    let mut files = Vec::new();
    for dir in project_dirs {
        transcripts_under(dir, &mut files);
    }
    let projects = random.pick(project_dirs);
    let elsewhere = |random: &mut Rng, prefix: &str| {
        let project = random.pick(&PROJECTS);
        projects
            .join(project)
            .join(format!("{prefix}{}.jsonl", random.below(6)))
    };
    if files.is_empty() || random.below(10) == 0 {
        let path = match random.below(4) {
            0 => projects.join(format!("-top{}.jsonl", random.below(2))),
            1 => elsewhere(random, "s/subagents/agent-"),
            _ => elsewhere(random, "f"),
        };
        append_to(&path, id);
        return false;
    }
    let file = random.pick(&files).clone();
    match random.below(24) {
        0 => {
            fs::remove_file(&file).expect("delete");
            return true;
        }
        1 => {
            let to = elsewhere(random, "r");
            fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            if !to.exists() {
                fs::rename(&file, &to).expect("rename");
            }
        }
        2 => {
            let to = elsewhere(random, "h");
            fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            if !to.exists() {
                fs::hard_link(&file, &to).expect("hard link");
            }
        }
        3 => {
            let mut bytes = fs::read(&file).expect("read");
            bytes.extend_from_slice(response(id).as_bytes());
            let replacement = file.with_extension("tmp");
            fs::write(&replacement, &bytes).expect("write");
            fs::rename(&replacement, &file).expect("replace");
        }
        4 => {
            let bytes = fs::read(&file).expect("read");
            fs::remove_file(&file).expect("delete");
            let again = file.with_file_name(format!("n{}.jsonl", random.below(6)));
            if again.exists() {
                return true; // its lines are gone for good
            }
            fs::write(&again, &bytes).expect("write");
        }
        _ => append_to(&file, id),
    }
    false
}

/// A project of several blocks of manifest entries (see
/// `source::manifest::ENTRIES_PER_BLOCK`), its files' names spread over the
/// alphabet so that files made later fall between them.
const BIG_PROJECT: &str = "-big";

fn make_big_project(projects: &Path) {
    for i in 0..80u64 {
        let letter = ["a", "g", "k", "p", "t"][i as usize % 5];
        append_to(
            &projects
                .join(BIG_PROJECT)
                .join(format!("{letter}{i:02}.jsonl")),
            1000 + i,
        );
    }
}

fn run(seed: u64, rounds: u64) {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    let mut random = Rng(seed);
    let second = home.home().join("second");
    fs::create_dir_all(second.join("projects")).expect("mkdir");
    let mut roots = vec![home.root(), second.clone()];
    if seed.is_multiple_of(3) {
        let linked = home.home().join("linked");
        std::os::unix::fs::symlink(home.root(), &linked).expect("symlink");
        roots.push(linked);
    }
    let project_dirs = [home.root().join("projects"), second.join("projects")];
    if seed.is_multiple_of(2) {
        make_big_project(&project_dirs[0]);
    }
    let mut deleted = false;
    for round in 0..rounds {
        for change_at in 0..=random.below(3) {
            deleted |= change(&mut random, &project_dirs, round * 10 + change_at + 1);
        }
        let counted = incremental(state.path(), &roots);
        if round % 5 == 4 && !deleted {
            assert_eq!(
                common::token_totals(&counted),
                common::token_totals(&full(&roots)),
                "seed {seed}, round {round}"
            );
        }
    }
}

#[test]
fn random_changes_plan_alike_both_ways_and_count_as_a_full_scan() {
    for seed in 1..=24 {
        run(seed * 7919 + 1, 40);
    }
}
