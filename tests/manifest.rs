//! The manifest across runs: corrupt state, truncated, replaced, deleted, renamed
//! and half-written files. Each test builds a tiny project from hand-written lines
//! whose usage is known, so every expected total is visible in the test.

mod common;

use std::fs;

use ccotel::ingest::{PriorState, Restart};
use ccotel::session::ResponseKey;
use ccotel::source::{default_roots, discover_with, Listing, ListingDigest, StateDir, WrittenLast};
use common::ClaudeHome;

/// An assistant line of response `id` with `output` output tokens (input 10,
/// cache write 100, cache read 1000).
fn response(id: &str, output: u64) -> String {
    format!(
        r#"{{"type":"assistant","sessionId":"s1","timestamp":"2026-01-02T03:04:05.000Z","requestId":"req_{id}","message":{{"id":"msg_{id}","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":"x"}}],"usage":{{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":{output}}}}}}}"#
    ) + "\n"
}

fn output_and_responses(ingest: &ccotel::ingest::Ingest) -> (u64, u64) {
    let (_, output, _, _, responses) = common::token_totals(ingest);
    (output, responses)
}

/// Scans again a home of one unchanged file: asserts that the state was loaded
/// and nothing read, and returns the output tokens and responses counted.
fn rescan_of_one_unchanged_file(home: &ClaudeHome, state: &std::path::Path) -> (u64, u64) {
    let (again, prior) = home.incremental_scan(state);
    assert_eq!(prior, PriorState::Loaded);
    assert_eq!(again.summary.bytes_read, 0);
    assert_eq!(again.summary.files_unchanged, 1);
    output_and_responses(&again)
}

#[test]
fn unchanged_files_are_not_read_again() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    home.write(
        "-p/s1.jsonl",
        (response("a", 5) + &response("b", 7)).as_bytes(),
    );
    let (first, prior) = home.incremental_scan(state.path());
    assert_eq!(prior, PriorState::Empty);
    assert_eq!(output_and_responses(&first), (12, 2));
    assert_eq!(rescan_of_one_unchanged_file(&home, state.path()), (12, 2));
}

/// An unchanged rerun is told from the digest of the listing and the manifest's
/// files alone, without a sorted list (see `source::listed`).
#[test]
fn an_unchanged_listing_has_the_digest_of_the_saved_manifest() {
    let home = ClaudeHome::new();
    let state_dir = tempfile::tempdir().expect("state");
    home.write("-p/s1.jsonl", response("a", 5).as_bytes());
    home.write("-p/s2/subagents/agent-x.jsonl", response("b", 7).as_bytes());
    home.write("-q/s3.jsonl", response("c", 9).as_bytes());
    home.incremental_scan(state_dir.path());
    type ByProject = Vec<(Vec<u8>, ListingDigest)>;
    let listed = || -> (ListingDigest, ByProject) {
        let files = discover_with(&default_roots(home.home()), &Listing::default())
            .expect("listing")
            .files;
        let projects = files.projects();
        let by_project = projects
            .iter()
            .map(|project| (project.project.to_vec(), project.digest))
            .collect();
        (files.digest(), by_project)
    };
    let saved = || -> (ListingDigest, ByProject) {
        let state = StateDir::open(state_dir.path()).expect("state dir");
        let (saved, _) = state.load_manifest().expect("load").expect("a manifest");
        let digest = saved.listing_digest();
        let by_project = digest
            .projects
            .iter()
            .map(|project| (project.project.to_vec(), project.digest))
            .collect();
        (digest.whole, by_project)
    };
    assert_eq!(listed(), saved());
    assert_eq!(listed().0.files(), 3);
    let projects: Vec<Vec<u8>> = listed().1.into_iter().map(|(name, _)| name).collect();
    assert_eq!(projects, [b"-p".to_vec(), b"-q".to_vec()]);

    home.append("-p/s1.jsonl", response("d", 1).as_bytes());
    let (listed_now, saved_now) = (listed(), saved());
    assert_ne!(listed_now.0, saved_now.0, "an append changes the listing");
    assert_ne!(listed_now.1[0], saved_now.1[0], "and its project's digest");
    assert_eq!(listed_now.1[1], saved_now.1[1], "and no other project's");
    home.incremental_scan(state_dir.path());
    assert_eq!(listed(), saved());
}

/// The same files reached through a second root (a symlinked config dir) are
/// listed twice and read once; the listing then differs from the manifest's by
/// digest, and the rerun, compared file by file, still reads nothing.
#[test]
fn files_reached_by_two_roots_are_read_once_and_not_again() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    home.write("-p/s1.jsonl", response("a", 5).as_bytes());
    fs::create_dir_all(home.home().join(".config")).expect("mkdir");
    std::os::unix::fs::symlink(home.root(), home.home().join(".config/claude")).expect("symlink");
    let (first, _) = home.incremental_scan(state.path());
    assert_eq!(output_and_responses(&first), (5, 1));
    assert_eq!(rescan_of_one_unchanged_file(&home, state.path()), (5, 1));
    home.append("-p/s1.jsonl", response("b", 7).as_bytes());
    let (third, _) = home.incremental_scan(state.path());
    assert_eq!(output_and_responses(&third), (12, 2));
}

#[test]
fn a_state_file_that_cannot_be_read_stops_the_run_and_is_left_as_it_was() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    home.write("-p/s1.jsonl", response("a", 5).as_bytes());
    home.incremental_scan(state.path());
    let blob = blob_of(state.path());
    let saved = fs::read(&blob).expect("blob");
    let manifest = fs::read(state.path().join("manifest.bin")).expect("manifest");

    // A read error other than "not found" (here a directory in its place; in
    // life EIO or EACCES): the state may be whole, and may hold the usage of
    // transcripts deleted since, so it is not discarded.
    fs::remove_file(&blob).expect("remove");
    fs::create_dir(&blob).expect("a directory in its place");
    home.append("-p/s1.jsonl", response("b", 7).as_bytes());
    let output = home
        .ccotel(state.path())
        .args(["report", "daily", "--json"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&blob.display().to_string()),
        "the error names the file: {stderr}"
    );
    assert!(!stderr.contains("is corrupt"), "{stderr}");
    assert_eq!(
        fs::read(state.path().join("manifest.bin")).expect("manifest"),
        manifest,
        "the manifest is left as it was"
    );

    fs::remove_dir(&blob).expect("remove the directory");
    fs::write(&blob, &saved).expect("the state back");
    let (result, prior) = home.incremental_scan(state.path());
    assert_eq!(prior, PriorState::Loaded, "nothing was discarded");
    assert_eq!(output_and_responses(&result), (12, 2));
}

#[test]
fn corrupt_manifest_or_ledger_means_a_warning_and_a_full_reparse() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    home.write(
        "-p/s1.jsonl",
        (response("a", 5) + &response("a", 9)).as_bytes(),
    );
    home.incremental_scan(state.path());
    let manifest = state.path().join("manifest.bin");
    for garbage in [&b"{\"format\":1,\"files\":"[..], b"", b"\xff\xfe"] {
        fs::write(&manifest, garbage).expect("corrupt");
        let (result, prior) = home.incremental_scan(state.path());
        assert!(matches!(prior, PriorState::Discarded(_)), "{prior:?}");
        assert_eq!(output_and_responses(&result), (9, 1));
        assert!(result.summary.bytes_read > 0, "re-read from the start");
    }
    for entry in fs::read_dir(state.path()).expect("ls").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("session-state.")
        {
            fs::write(entry.path(), b"not a ledger").expect("corrupt ledger");
        }
    }
    let (result, prior) = home.incremental_scan(state.path());
    match prior {
        PriorState::Discarded(reason) => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("expected a discarded state, got {other:?}"),
    }
    assert_eq!(output_and_responses(&result), (9, 1));
    let (_, prior) = home.incremental_scan(state.path());
    assert_eq!(
        prior,
        PriorState::Loaded,
        "the re-parse wrote a good manifest"
    );
}

/// A rerun whose report was cached, and that will read something, restores the
/// saved ledger: while it lists the transcripts when one of the files written
/// last has changed (see `WrittenLast`), else once it has listed them. Either
/// way a damaged blob is found, and everything is read again.
#[test]
fn a_damaged_ledger_is_found_whether_restored_while_listing_or_after() {
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for written_since in [0, WrittenLast::FILES] {
        let home = ClaudeHome::new();
        let state = tempfile::tempdir().expect("state");
        let first = home.write("-p/s1.jsonl", response("a", 5).as_bytes());
        let file = fs::File::options().write(true).open(&first).expect("open");
        file.set_modified(an_hour_ago).expect("an older mtime");
        for i in 0..written_since {
            let id = format!("o{i}");
            home.write(&format!("-q/{id}.jsonl"), response(&id, 1).as_bytes());
        }
        let report = |args: &[&str]| {
            let output = home
                .ccotel(state.path())
                .args(["report", "daily", "--json"])
                .args(args)
                .output()
                .expect("run");
            assert!(output.status.success(), "{output:?}");
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (String::from_utf8(output.stdout).expect("utf-8"), stderr)
        };
        report(&[]);
        let mut blob = fs::read(blob_of(state.path())).expect("the ledger");
        blob[0] ^= 0x40;
        fs::write(blob_of(state.path()), blob).expect("damage the ledger");
        home.append("-p/s1.jsonl", response("b", 7).as_bytes());

        let (after, stderr) = report(&["-vv"]);
        let while_listing = stderr.contains("ledger restored beside the listing failed=true");
        assert_eq!(while_listing, written_since == 0, "{stderr}");
        assert!(
            stderr.contains("does not match the checksum")
                && stderr.contains("every transcript was read again"),
            "{stderr}"
        );
        assert_eq!(after, report(&["--full"]).0);
    }
}

/// The state's ledger blob.
fn blob_of(state: &std::path::Path) -> std::path::PathBuf {
    fs::read_dir(state)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .find(|path| {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned());
            name.is_some_and(|name| name.starts_with("session-state.") && name.ends_with(".bin"))
        })
        .expect("the session state")
}

/// Flips a byte of the output tokens of response `id`'s record in the blob,
/// inside a block of records: not in the header or the block table.
fn damage_the_record_of(state: &std::path::Path, id: &str) {
    let blob = blob_of(state);
    let mut bytes = fs::read(&blob).expect("blob");
    let key = ResponseKey::of(&format!("msg_{id}"), Some(&format!("req_{id}")));
    let at = bytes
        .windows(16)
        .position(|window| window == key.0.to_le_bytes())
        .expect("the record is in the blob");
    bytes[at + 16 + 8] ^= 0x40;
    fs::write(&blob, bytes).expect("damage");
}

/// A run reads saved records in place, and checks each block of them when it
/// first uses it. A run that uses them all (a report not cached, here) checks
/// them all before it starts; one that adds a little checks the blocks its
/// lookups touch. Either finds the damage, warns, and counts what a full scan
/// counts.
#[test]
fn a_damaged_block_of_saved_records_is_found_when_it_is_used() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    home.write(
        "-p/s1.jsonl",
        (response("a", 5) + &response("b", 7)).as_bytes(),
    );
    let report = |view: &str, full: bool| {
        let mut command = home.ccotel(state.path());
        command.args(["report", view, "--json"]);
        if full {
            command.arg("--full");
        }
        let output = command.output().expect("run");
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        (stdout, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let warned = |stderr: &str| {
        stderr.contains("does not match its checksum")
            && stderr.contains("every transcript was read again")
    };
    let (daily, stderr) = report("daily", false);
    assert!(!warned(&stderr), "{stderr}");

    // Nothing changed, and the monthly view is not cached: every record is
    // used, so every block is checked first.
    damage_the_record_of(state.path(), "a");
    let (monthly, stderr) = report("monthly", false);
    assert!(warned(&stderr), "{stderr}");
    assert_eq!(monthly, report("monthly", true).0);

    // A repeat of response a, with the daily view's tally of the state cached:
    // only the lookup of a's record touches its block.
    let (_, stderr) = report("daily", false);
    assert!(!warned(&stderr), "the state was written anew: {stderr}");
    damage_the_record_of(state.path(), "a");
    home.append("-p/s1.jsonl", response("a", 5).as_bytes());
    let (again, stderr) = report("daily", false);
    assert!(warned(&stderr), "{stderr}");
    assert_eq!(again, daily, "the repeat adds nothing");
    assert_eq!(again, report("daily", true).0);
    let (_, stderr) = report("daily", false);
    assert!(!warned(&stderr), "the state was written anew: {stderr}");
}

#[test]
fn a_partial_last_line_is_read_once_its_newline_arrives() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    let line = response("a", 5);
    let (head, tail) = line.split_at(40);
    home.write("-p/s1.jsonl", head.as_bytes());
    let (first, _) = home.incremental_scan(state.path());
    assert_eq!(output_and_responses(&first), (0, 0));
    home.append("-p/s1.jsonl", tail.as_bytes());
    let (second, _) = home.incremental_scan(state.path());
    assert_eq!(output_and_responses(&second), (5, 1));
    assert_eq!(
        second.summary.lines.malformed, 0,
        "the halves were never parsed apart"
    );
}

#[test]
fn a_truncated_file_is_read_from_the_start_and_history_is_kept() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    home.write(
        "-p/s1.jsonl",
        (response("a", 5) + &response("b", 7)).as_bytes(),
    );
    home.incremental_scan(state.path());
    // Rewritten shorter, with a new response: the old response b stays counted.
    home.write("-p/s1.jsonl", response("c", 11).as_bytes());
    let (result, _) = home.incremental_scan(state.path());
    assert_eq!(result.summary.files_restarted.len(), 1);
    assert_eq!(result.summary.files_restarted[0].1, Restart::Truncated);
    assert_eq!(output_and_responses(&result), (5 + 7 + 11, 3));
    assert_eq!(
        output_and_responses(&home.full_scan()),
        (11, 1),
        "--full sees only what is on disk"
    );
}

#[test]
fn a_file_replaced_by_another_of_the_same_size_is_read_again() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    let original = response("a", 5) + &response("b", 7);
    let replacement = response("c", 6) + &response("d", 8);
    assert_eq!(original.len(), replacement.len());
    let path = home.write("-p/s1.jsonl", original.as_bytes());
    home.incremental_scan(state.path());
    // In place (same inode), so only the content markers can tell.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, replacement.as_bytes()))
        .expect("overwrite");
    let (result, _) = home.incremental_scan(state.path());
    assert_eq!(
        result.summary.files_restarted,
        vec![(path, Restart::Replaced)]
    );
    assert_eq!(output_and_responses(&result), (5 + 7 + 6 + 8, 4));
}

#[test]
fn a_deleted_file_leaves_the_manifest_but_its_usage_survives() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    let path = home.write("-p/s1.jsonl", response("a", 5).as_bytes());
    home.write("-p/s2.jsonl", response("b", 7).as_bytes());
    home.incremental_scan(state.path());
    fs::remove_file(&path).expect("delete");
    let (result, _) = home.incremental_scan(state.path());
    assert_eq!(result.summary.files_gone, 1);
    let (saved, _) = StateDir::open(state.path())
        .and_then(|state| state.load())
        .expect("load")
        .expect("a manifest");
    let manifest = saved.decode();
    assert!(!manifest.files.contains_key(&path));
    assert_eq!(output_and_responses(&result), (12, 2));
    let (again, _) = home.incremental_scan(state.path());
    assert_eq!(output_and_responses(&again), (12, 2));
}

#[test]
fn a_renamed_file_resumes_where_it_stopped() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    let path = home.write("-p/s1.jsonl", response("a", 5).as_bytes());
    home.incremental_scan(state.path());
    fs::rename(&path, home.path("-p/renamed.jsonl")).expect("rename");
    home.append("-p/renamed.jsonl", response("b", 7).as_bytes());
    let (result, _) = home.incremental_scan(state.path());
    assert_eq!(result.summary.bytes_read as usize, response("b", 7).len());
    assert_eq!(result.summary.files_gone, 0, "a rename is not a file gone");
    assert_eq!(output_and_responses(&result), (12, 2));
    let (saved, _) = StateDir::open(state.path())
        .and_then(|state| state.load())
        .expect("load")
        .expect("a manifest");
    let paths: Vec<std::path::PathBuf> = saved.decode().files.into_keys().collect();
    assert_eq!(paths, [home.path("-p/renamed.jsonl")], "only the new path");
    let (again, _) = home.incremental_scan(state.path());
    assert_eq!(again.summary.bytes_read, 0);
}

#[test]
fn an_unreadable_file_is_reported_and_retried() {
    use std::os::unix::fs::PermissionsExt;
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    let path = home.write("-p/s1.jsonl", response("a", 5).as_bytes());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).expect("chmod");
    if fs::File::open(&path).is_ok() {
        // Running as root: permissions do not stop us; nothing to test here.
        return;
    }
    let (result, _) = home.incremental_scan(state.path());
    assert_eq!(result.summary.errors.len(), 1);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let (result, _) = home.incremental_scan(state.path());
    assert_eq!(output_and_responses(&result), (5, 1));
}
