//! The `ccotel` binary as a user meets it: reports in both shapes, incremental
//! runs through the state directory, and clear errors for bad configuration.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::ClaudeHome;

fn home_with_samples() -> ClaudeHome {
    let home = ClaudeHome::new();
    home.copy_sample(
        "claude-code-viewer/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
        "-path-to-Demo/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
    );
    home.copy_sample(
        "spotter/subagent.jsonl",
        "-home-USER-spotter/subagent.jsonl",
    );
    home.copy_sample(
        "synthetic/constructed/malformed_lines.jsonl",
        "-tmp-p/00000000-0000-4000-8000-0000000000aa.jsonl",
    );
    home
}

/// Runs `ccotel ARGS` against `home` with `state` as the state directory.
fn ccotel(home: &ClaudeHome, state: &tempfile::TempDir, args: &[&str]) -> Output {
    home.ccotel(state.path())
        .args(args)
        .output()
        .expect("run ccotel")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "ccotel failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output)).expect("JSON output")
}

/// Whether a run at `-vv` printed a report recalled from the cache.
fn from_cache(output: &Output) -> bool {
    String::from_utf8_lossy(&output.stderr).contains("report taken from the cache")
}

#[test]
fn daily_json_has_ccusages_shape_and_the_librarys_totals() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let output = ccotel(&home, &state, &["report", "daily", "--json"]);
    let document = json(&output);
    let day = &document["daily"][0];
    for field in [
        "date",
        "inputTokens",
        "outputTokens",
        "cacheCreationTokens",
        "cacheReadTokens",
        "totalTokens",
        "totalCost",
        "modelsUsed",
        "modelBreakdowns",
    ] {
        assert!(!day[field].is_null(), "daily[0].{field} is missing: {day}");
    }
    for field in [
        "modelName",
        "inputTokens",
        "outputTokens",
        "cacheCreationTokens",
        "cacheReadTokens",
        "cost",
    ] {
        assert!(
            !day["modelBreakdowns"][0][field].is_null(),
            "modelBreakdowns[0].{field}"
        );
    }
    let (input, output_tokens, cache_creation, cache_read, _) =
        common::token_totals(&home.full_scan());
    let totals = &document["totals"];
    assert_eq!(totals["inputTokens"], input);
    assert_eq!(totals["outputTokens"], output_tokens);
    assert_eq!(totals["cacheCreationTokens"], cache_creation);
    assert_eq!(totals["cacheReadTokens"], cache_read);
    assert_eq!(
        totals["totalTokens"],
        input + output_tokens + cache_creation + cache_read
    );
    assert!(
        state.path().join("manifest.bin").is_file(),
        "the manifest was written"
    );

    let full = json(&ccotel(
        &home,
        &state,
        &["report", "daily", "--json", "--full"],
    ));
    assert_eq!(full, document, "--full and incremental agree");
}

/// An unchanged rerun prints the report rendered from the saved ledger while the
/// transcripts were listed, then the one cached for that ledger; a rerun after an
/// append must print neither.
#[test]
fn an_unchanged_rerun_prints_what_a_full_scan_prints_and_an_append_is_not_missed() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let views: [&[&str]; 4] = [
        &["report", "daily", "--json"],
        &["report", "session"],
        &["report", "model", "--json", "--since", "2025-01-01"],
        &["report", "monthly", "--timezone", "Asia/Tokyo"],
    ];
    let run = |args: &[&str]| stdout(&ccotel(&home, &state, args));
    let run_full = |args: &[&str]| run(&[args, &["--full"]].concat());
    let mut firsts = Vec::new();
    for args in views {
        let first = run(args);
        let unchanged = ccotel(&home, &state, &[args, &["-v"]].concat());
        let log = String::from_utf8_lossy(&unchanged.stderr).into_owned();
        assert!(log.contains("read=0 unchanged=3"), "{args:?}: {log}");
        assert_eq!(stdout(&unchanged), first, "{args:?}");
        let cached = ccotel(&home, &state, &[args, &["-vv"]].concat());
        let log = String::from_utf8_lossy(&cached.stderr).into_owned();
        assert!(
            log.contains("report taken from the cache"),
            "{args:?}: {log}"
        );
        assert_eq!(stdout(&cached), first, "{args:?}");
        assert_eq!(run_full(args), first, "{args:?}");
        firsts.push(first);
    }
    let grown = fs::read(common::sample("spotter/short.jsonl")).expect("sample");
    home.append("-tmp-p/00000000-0000-4000-8000-0000000000aa.jsonl", &grown);
    for (args, first) in views.iter().zip(&firsts) {
        let logged = ccotel(&home, &state, &[*args, &["-vv"]].concat());
        let after = stdout(&logged);
        // A JSON day report is the cached one with the changed days rewritten.
        let spliced = String::from_utf8_lossy(&logged.stderr).contains("report spliced");
        assert_eq!(
            spliced,
            args.starts_with(&["report", "daily", "--json"]),
            "{args:?}"
        );
        assert_ne!(&after, first, "{args:?}: the appended lines add usage");
        assert_eq!(after, run_full(args), "{args:?} after an append");
        assert_eq!(run(args), after, "{args:?} unchanged since the append");
    }
}

#[test]
fn a_cached_report_follows_a_price_change() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let daily = ["report", "daily", "--json"];
    let first = json(&ccotel(&home, &state, &daily));
    ccotel(&home, &state, &daily);
    assert_eq!(json(&ccotel(&home, &state, &daily)), first, "cached");
    let model = first["daily"][0]["modelsUsed"][0]
        .as_str()
        .expect("a model")
        .to_owned();
    let config_dir = home.home().join(".config/ccotel");
    fs::create_dir_all(&config_dir).expect("mkdir");
    fs::write(
        config_dir.join("config.toml"),
        format!("[pricing.\"{model}\"]\ninput = 1000.0\noutput = 1000.0\n"),
    )
    .expect("write");
    let repriced = json(&ccotel(&home, &state, &daily));
    assert_ne!(
        repriced["totals"]["totalCost"],
        first["totals"]["totalCost"]
    );
    let full = json(&ccotel(&home, &state, &[&daily[..], &["--full"]].concat()));
    assert_eq!(repriced, full);
}

#[test]
fn every_grouping_renders_a_table_with_a_total_row() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    for grouping in ["daily", "monthly", "session", "project", "model"] {
        let text = stdout(&ccotel(&home, &state, &["report", grouping]));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 4, "{grouping}: {text}");
        assert!(
            lines.last().is_some_and(|l| l.starts_with("Total")),
            "{grouping}: {text}"
        );
        assert!(text.contains('$'), "{grouping}: {text}");
    }
    let sessions = json(&ccotel(&home, &state, &["report", "session", "--json"]));
    let ids: Vec<&str> = sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["sessionId"].as_str().expect("id"))
        .collect();
    assert!(
        ids.contains(&"fe5e1c67-53e7-4862-81ae-d0e013e3270b"),
        "{ids:?}"
    );
}

#[test]
fn since_and_until_select_days() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let all = json(&ccotel(&home, &state, &["report", "daily", "--json"]));
    let days: Vec<String> = all["daily"]
        .as_array()
        .expect("daily")
        .iter()
        .map(|d| d["date"].as_str().expect("date").to_owned())
        .collect();
    assert!(days.len() >= 2, "{days:?}");
    let compact = days[1].replace('-', "");
    let one = json(
        &home
            .ccotel(state.path())
            .args([
                "report", "daily", "--json", "--since", &compact, "--until", &days[1],
            ])
            .output()
            .expect("run"),
    );
    let selected: Vec<&str> = one["daily"]
        .as_array()
        .expect("daily")
        .iter()
        .map(|d| d["date"].as_str().expect("date"))
        .collect();
    assert_eq!(selected, [days[1].as_str()]);
    assert_eq!(
        one["totals"]["outputTokens"],
        all["daily"][1]["outputTokens"]
    );

    let reversed = ccotel(
        &home,
        &state,
        &["report", "daily", "--since", &days[1], "--until", &days[0]],
    );
    let stderr = String::from_utf8_lossy(&reversed.stderr);
    assert!(!reversed.status.success(), "an empty range is a mistake");
    assert!(
        stderr.contains(&format!("--since {} is after --until {}", days[1], days[0])),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_manifest_warns_and_still_reports_right() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let first = json(&ccotel(&home, &state, &["report", "daily", "--json"]));
    fs::write(state.path().join("manifest.bin"), b"{ not a manifest").expect("corrupt");
    let output = ccotel(&home, &state, &["report", "daily", "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.contains("manifest.bin is corrupt"), "{stderr}");
    assert_eq!(json(&output), first);
}

/// A cached report is of the build that rendered it: another binary (a rebuild
/// or an upgrade that keeps the version number) renders the report again.
#[test]
fn a_report_cached_by_another_build_is_rendered_again() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let daily = ["report", "daily", "--json", "-vv"];
    let first = ccotel(&home, &state, &daily);
    let cached = ccotel(&home, &state, &daily);
    assert!(from_cache(&cached), "the same build reuses its report");

    let elsewhere = tempfile::tempdir().expect("another build's directory");
    let other_build = elsewhere.path().join("ccotel");
    fs::copy(env!("CARGO_BIN_EXE_ccotel"), &other_build).expect("copy the binary");
    let run_other = || {
        home.ccotel_from(&other_build, state.path())
            .args(daily)
            .output()
            .expect("run the other build")
    };
    let other = run_other();
    assert!(!from_cache(&other), "another build renders its own report");
    assert_eq!(json(&other), json(&first));
    assert!(from_cache(&run_other()), "and then reuses it");
    assert!(
        from_cache(&ccotel(&home, &state, &daily)),
        "as the first build still does"
    );
}

/// A FIFO and a dangling symlink named like transcripts are passed over, named
/// with why, and change no number; the report does not wait on the FIFO.
#[test]
fn entries_that_are_not_files_are_named_and_passed_over() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let before = json(&ccotel(
        &home,
        &state,
        &["report", "daily", "--json", "--full"],
    ));
    let project = home.path("-home-USER-spotter");
    let dir = fs::File::open(&project).expect("open project");
    rustix::fs::mknodat(
        &dir,
        "fifo.jsonl",
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .expect("mkfifo");
    std::os::unix::fs::symlink(project.join("moved"), project.join("dangling.jsonl"))
        .expect("symlink");
    for extra in [&[][..], &["--full"][..]] {
        let args = [&["report", "daily", "--json", "-v"][..], extra].concat();
        let output = ccotel(&home, &state, &args);
        assert_eq!(json(&output), before, "{args:?}: the same numbers");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for expected in [
            "passed over 2 *.jsonl entries that are not readable files".to_owned(),
            format!(
                "{}: not read: not a regular file",
                project.join("fifo.jsonl").display()
            ),
            format!(
                "{}: not read: a symlink to nothing",
                project.join("dangling.jsonl").display()
            ),
        ] {
            assert!(
                stderr.contains(&expected),
                "{args:?}: {expected:?} in {stderr}"
            );
        }
    }
}

/// A zone without a name (a POSIX `TZ`, a copy of `/etc/localtime`) is cached
/// by its rules, like a named one: an unchanged rerun prints the stored report.
#[test]
fn a_report_in_a_zone_without_a_name_is_cached_by_its_rules() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let run = |zone: &str, args: &[&str]| {
        home.ccotel(state.path())
            .env("TZ", zone)
            .args(args)
            .output()
            .expect("run ccotel")
    };
    let daily = ["report", "daily", "--json", "-vv"];
    let far_east = "JST-9";
    let first = run(far_east, &daily);
    let again = run(far_east, &daily);
    assert!(
        from_cache(&again),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(json(&again), json(&first));
    assert_eq!(
        json(&run(far_east, &["report", "daily", "--json", "--full"])),
        json(&first)
    );
    let far_west = run("HST10", &daily);
    assert!(!from_cache(&far_west), "other rules, another report");
    assert_eq!(
        json(&far_west),
        json(&run("HST10", &["report", "daily", "--json", "--full"]))
    );
}

/// A rerun whose report is recalled from the cache never opens the ledger's
/// blob, so damage to it shows at the next run that changes something: that
/// run warns, reads everything again and reports what a full scan does.
#[test]
fn a_damaged_ledger_behind_a_cached_report_is_found_by_the_next_change() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let daily = ["report", "daily", "--json"];
    let first = json(&ccotel(&home, &state, &daily));
    for entry in fs::read_dir(state.path()).expect("ls").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("session-state.") && name.ends_with(".bin") {
            fs::write(entry.path(), b"not a ledger").expect("damage the ledger");
        }
    }
    let cached = ccotel(&home, &state, &[&daily[..], &["-vv"]].concat());
    let stderr = String::from_utf8_lossy(&cached.stderr).into_owned();
    assert!(stderr.contains("report taken from the cache"), "{stderr}");
    assert!(
        !stderr.contains("checksum"),
        "the blob was not opened: {stderr}"
    );
    assert_eq!(json(&cached), first, "the cached report is of the state");

    let grown = fs::read(common::sample("spotter/short.jsonl")).expect("sample");
    home.append("-tmp-p/00000000-0000-4000-8000-0000000000aa.jsonl", &grown);
    let after = ccotel(&home, &state, &daily);
    let stderr = String::from_utf8_lossy(&after.stderr).into_owned();
    assert!(
        stderr.contains("session-state.")
            && stderr.contains("does not match the checksum")
            && stderr.contains("every transcript was read again"),
        "{stderr}"
    );
    let full = json(&ccotel(&home, &state, &[&daily[..], &["--full"]].concat()));
    assert_eq!(json(&after), full);
    assert_ne!(full, first, "the append adds usage");
    // A view not in the cache restores the ledger, which was written anew.
    let monthly = ["report", "monthly", "--json"];
    let again = ccotel(&home, &state, &monthly);
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("checksum"),
        "the state was written anew"
    );
    let monthly_full = ccotel(&home, &state, &[&monthly[..], &["--full"]].concat());
    assert_eq!(json(&again), json(&monthly_full));
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let config = home.home().join("ccotel.toml");
    fs::write(&config, "timezone = \"UTC\"\nmax_line_byte = 5\n").expect("write");
    let output = ccotel(
        &home,
        &state,
        &["--config", config.to_str().expect("utf-8"), "report"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("max_line_byte") && stderr.contains("ccotel.toml"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");

    let output = ccotel(&home, &state, &["report", "--timezone", "Mars/Olympus"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("timezone") && stderr.contains("Mars/Olympus"),
        "{stderr}"
    );
}

/// `ccotel config check` in `home`, with `vars` set in its environment.
fn config_check(home: &ClaudeHome, state: &Path, vars: &[(&str, &str)]) -> Output {
    let mut command = home.ccotel(state);
    for (var, value) in vars {
        command.env(var, value);
    }
    command.args(["config", "check"]).output().expect("run")
}

#[test]
fn config_check_prints_the_effective_config() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    let config_dir = home.home().join(".config/ccotel");
    fs::create_dir_all(&config_dir).expect("mkdir");
    fs::write(
        config_dir.join("config.toml"),
        "timezone = \"Europe/Paris\"\n[pricing.\"my-model\"]\ninput = 1.0\noutput = 2.0\n",
    )
    .expect("write");
    let text = stdout(&config_check(
        &home,
        state.path(),
        &[("CCOTEL_THREADS", "3")],
    ));
    assert!(text.contains("Europe/Paris"), "{text}");
    assert!(text.contains("threads = 3"), "{text}");
    assert!(text.contains("my-model"), "{text}");
    assert!(text.contains(&state.path().display().to_string()), "{text}");
}

#[test]
fn config_from_the_environment_is_taken_as_written_and_errors_name_the_variable() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    // Text that looks like a number or a boolean is still text.
    let output = config_check(
        &home,
        state.path(),
        &[
            ("CCOTEL_CLICKHOUSE_PASSWORD", "12345"),
            ("CCOTEL_CLICKHOUSE_DATABASE", "2024"),
            ("CCOTEL_CLICKHOUSE_USER", "true"),
        ],
    );
    let text = stdout(&output);
    assert!(text.contains("database = \"2024\""), "{text}");
    assert!(text.contains("user = \"true\""), "{text}");
    assert!(!text.contains("12345"), "the password is masked: {text}");
    // Set to nothing is as if unset: the default state directory, not "".
    let text = stdout(&config_check(
        &home,
        state.path(),
        &[("CCOTEL_STATE_DIR", "")],
    ));
    assert!(text.contains(".local/state/ccotel"), "{text}");

    for (var, value) in [
        ("CCOTEL_THREADS", "many"),
        ("CCOTEL_TIMEZONE", "Mars/Olympus"),
        ("CCOTEL_CONTENT", "everything"),
    ] {
        let output = config_check(&home, state.path(), &[(var, value)]);
        assert!(!output.status.success(), "{var}={value} is refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("environment variable {var}")) && stderr.contains(value),
            "{var}: {stderr}"
        );
    }
}

#[test]
fn an_empty_home_reports_zero_and_says_where_it_looked() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("state");
    let output = ccotel(&home, &state, &["report", "daily", "--json"]);
    let document = json(&output);
    assert_eq!(document["totals"]["totalTokens"], 0);
    assert!(String::from_utf8_lossy(&output.stderr).contains("no transcripts found"));
}

/// How many directories a report read, from its `-vv` log (plain: stderr is a
/// pipe here).
fn dirs_read(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("transcripts listed") && line.contains("dirs_read"))
        .unwrap_or_else(|| panic!("no listing line in:\n{stderr}"));
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("dirs_read="))
        .expect("dirs_read field")
        .to_owned()
}

#[test]
fn settled_directories_are_not_read_again_yet_new_and_grown_files_are_counted() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    // Directories changed within the settle time are always read again.
    std::thread::sleep(ccotel::source::listing::SETTLE + std::time::Duration::from_millis(300));
    let first = ccotel(&home, &state, &["report", "daily", "--json", "-vv"]);
    assert_eq!(
        dirs_read(&first),
        "4",
        "projects and the three project dirs"
    );
    let unchanged = ccotel(&home, &state, &["report", "daily", "--json", "-vv"]);
    assert_eq!(dirs_read(&unchanged), "0");
    assert_eq!(json(&unchanged), json(&first));

    home.copy_sample(
        "spotter/tool_heavy.jsonl",
        "-path-to-Demo/11111111-2222-4333-8444-555555555555.jsonl",
    );
    home.copy_sample(
        "fasthooks/sample_agent_sidechain.jsonl",
        "-home-USER-spotter/subagent/subagents/agent-a1.jsonl",
    );
    let grown = fs::read(common::sample("spotter/short.jsonl")).expect("sample");
    home.append("-tmp-p/00000000-0000-4000-8000-0000000000aa.jsonl", &grown);
    let after = ccotel(&home, &state, &["report", "daily", "--json", "-vv"]);
    assert_eq!(
        dirs_read(&after),
        "4",
        "the two changed project dirs and the new subagent dirs"
    );
    let full = json(&ccotel(
        &home,
        &state,
        &["report", "daily", "--json", "--full"],
    ));
    assert_eq!(
        json(&after),
        full,
        "the incremental report counts every new line"
    );
    assert_ne!(json(&after), json(&first), "the new lines add usage");
}

/// A line longer than `max_line_bytes` is not held whole but decoded as it is
/// read from the open file; what it counts is the same.
#[test]
fn lines_decoded_as_they_stream_count_as_lines_held_whole() {
    let home = home_with_samples();
    let state = tempfile::tempdir().expect("state");
    let daily = ["report", "daily", "--json", "--full"];
    let before = json(&ccotel(&home, &state, &daily));
    // Longer than a read chunk (256 KiB), so it is never whole in the buffer.
    let long_line = serde_json::json!({
        "type": "assistant",
        "sessionId": "00000000-0000-4000-8000-0000000000bb",
        "timestamp": "2025-11-02T10:00:00.000Z",
        "requestId": "req_long",
        "message": {
            "id": "msg_long",
            "model": "claude-sonnet-4-5-20250929",
            "role": "assistant",
            "content": [{"type": "text", "text": "x".repeat(300 << 10)}],
            "usage": {"input_tokens": 1000, "output_tokens": 2000},
        },
    });
    home.write(
        "-tmp-long/00000000-0000-4000-8000-0000000000bb.jsonl",
        format!("{long_line}\n").as_bytes(),
    );
    let whole = json(&ccotel(&home, &state, &daily));
    let streamed = home
        .ccotel(state.path())
        .env("CCOTEL_MAX_LINE_BYTES", "4096")
        .args(daily)
        .output()
        .expect("run ccotel");
    assert_eq!(json(&streamed), whole);
    let total = |report: &serde_json::Value| report["totals"]["totalTokens"].as_u64();
    assert_eq!(
        total(&whole),
        total(&before).map(|tokens| tokens + 3000),
        "the long line is counted"
    );
}
