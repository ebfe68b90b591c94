//! `ccotel backfill` straight into a real ClickHouse engine (chdb behind its HTTP
//! interface, or the server named by `CCOTEL_TEST_CLICKHOUSE_URL`): the totals of
//! a generated corpus, a row per entry and per span, exactly-once delivery across
//! SIGKILLs, and one clear line for each misconfiguration.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::clickhouse::ClickHouse;
use common::collector::Received;
use common::{decodable_lines, generate_corpus, rss_kib, truth_totals, Appender, ClaudeHome};

fn backfill(home: &ClaudeHome, state: &Path, ch: &ClickHouse, database: &str) -> Output {
    let output = home
        .backfill_into_clickhouse(state, ch, database)
        .output()
        .expect("run ccotel");
    assert!(
        output.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn number(ch: &ClickHouse, sql: &str) -> u64 {
    let text = ch.query(sql);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql} gave {text:?}"))
}

const TABLES: [&str; 8] = [
    "otel_logs",
    "otel_traces",
    "otel_metrics_sum",
    "otel_metrics_histogram",
    "claude_messages",
    "claude_sessions",
    "claude_tool_usage",
    "claude_file_access",
];

fn counts(ch: &ClickHouse, database: &str) -> Vec<(String, u64)> {
    TABLES
        .iter()
        .map(|t| {
            (
                t.to_string(),
                number(ch, &format!("SELECT count() FROM {database}.{t}")),
            )
        })
        .collect()
}

fn corpus(files: u32, megabytes: f64, seed: u32) -> Option<(ClaudeHome, serde_json::Value)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let truth = generate_corpus(dir.path(), files, megabytes, seed)?;
    Some((ClaudeHome { dir }, truth))
}

#[test]
fn a_generated_corpus_lands_with_the_true_totals() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let Some((home, truth)) = corpus(120, 10.0, 42) else {
        return;
    };
    let database = ch.create_database("ccotel_totals");
    let state = tempfile::tempdir().expect("tempdir");
    backfill(&home, state.path(), &ch, &database);

    // Plain sums over the messages table are the truth.
    let sums = ch.query(&format!(
        "SELECT sum(input_tokens), sum(output_tokens), sum(cache_creation_input_tokens), sum(cache_read_input_tokens) FROM {database}.claude_messages"
    ));
    let (input, output, cache_creation, cache_read, _) = truth_totals(&truth);
    assert_eq!(
        sums.trim(),
        format!("{input}\t{output}\t{cache_creation}\t{cache_read}")
    );
    // The cost equals the report's.
    let cost: f64 = ch
        .query(&format!(
            "SELECT sum(cost_estimate) FROM {database}.claude_messages"
        ))
        .trim()
        .parse()
        .expect("cost");
    let report = home.report_totals()["totalCost"].as_f64().expect("cost");
    assert!((cost - report).abs() < 1e-6, "{cost} vs {report}");

    // A row per entry and per span: the same as the OTLP-JSON export of the corpus.
    let lines = decodable_lines(&home) as u64;
    assert_eq!(
        number(&ch, &format!("SELECT count() FROM {database}.otel_logs")),
        lines
    );
    assert_eq!(
        number(
            &ch,
            &format!("SELECT count() FROM {database}.claude_messages")
        ),
        lines
    );
    let data = tempfile::tempdir().expect("tempdir");
    let files_state = tempfile::tempdir().expect("tempdir");
    let status = home
        .ccotel(files_state.path())
        .arg("backfill")
        .env("CCOTEL_DATA_DIR", data.path())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success());
    let exported = Received::from_otlp_json_dir(&data.path().join("otlp"));
    assert_eq!(
        number(&ch, &format!("SELECT count() FROM {database}.otel_traces")),
        exported.spans.len() as u64
    );
    // The metrics table sums to the same totals.
    let metric_output = number(
        &ch,
        &format!("SELECT toUInt64(sum(Value)) FROM {database}.otel_metrics_sum WHERE MetricName = 'ccotel.token.usage' AND Attributes['type'] = 'output'"),
    );
    assert_eq!(metric_output, output);
    // Both metric tables have rows, each under ccotel's scope and a service.
    for table in ["otel_metrics_sum", "otel_metrics_histogram"] {
        let rows = |filter: &str| {
            number(
                &ch,
                &format!("SELECT count() FROM {database}.{table} {filter}"),
            )
        };
        assert!(rows("") > 0, "{table} is empty");
        assert_eq!(
            rows("WHERE ScopeName != 'ccotel' OR ScopeVersion = '' OR ServiceName = ''"),
            0,
            "{table}"
        );
    }
    // The trace lookup view is filled.
    assert!(
        number(
            &ch,
            &format!("SELECT count() FROM {database}.otel_traces_trace_id_ts")
        ) > 0
    );
    // Sessions and tool calls have rows.
    for table in ["claude_sessions", "claude_tool_usage"] {
        assert!(
            number(&ch, &format!("SELECT count() FROM {database}.{table}")) > 0,
            "{table}"
        );
    }
    // Running again sends nothing new.
    let before = counts(&ch, &database);
    backfill(&home, state.path(), &ch, &database);
    assert_eq!(counts(&ch, &database), before);
}

#[test]
fn sigkill_during_a_backfill_adds_no_row_twice() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let Some((home, _)) = corpus(80, 8.0, 7) else {
        return;
    };
    // Small batches, so a crash finds several in flight.
    let settings = tempfile::tempdir().expect("tempdir");
    let config = settings.path().join("config.toml");
    std::fs::write(&config, "[export]\nbatch_max_records = 300\n").expect("config");
    // A clean run gives the expected row counts.
    let clean = ch.create_database("ccotel_clean");
    let state = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let output = home
        .backfill_into_clickhouse(state.path(), &ch, &clean)
        .args(["--config"])
        .arg(&config)
        .output()
        .expect("clean run");
    let clean_run = started.elapsed();
    assert!(output.status.success());
    let expected = counts(&ch, &clean);

    let crashed = ch.create_database("ccotel_crashed");
    let state = tempfile::tempdir().expect("tempdir");
    let mut kills = 0;
    for round in 0..40u64 {
        let mut child = home
            .backfill_into_clickhouse(&state.path().join("s"), &ch, &crashed)
            .args(["--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        // 100–500 ms, or 2–10 % of a clean run if that is longer: on a busy
        // machine, where starting up takes longer, the kills must still land
        // after some rows are in.
        let fixed = Duration::from_millis(100 + (round * 37) % 400);
        let share = 0.02 + 0.08 * ((round * 37) % 400) as f64 / 400.0;
        std::thread::sleep(fixed.max(clean_run.mul_f64(share)));
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
    }
    // The kills landed mid-backfill: some rows arrived, not all.
    let partial = number(&ch, &format!("SELECT count() FROM {crashed}.otel_logs"));
    let all = expected[0].1;
    eprintln!("before the last run: {partial} of {all} log rows");
    assert!(partial > 0, "the runs that were killed made progress");
    let output = home
        .backfill_into_clickhouse(&state.path().join("s"), &ch, &crashed)
        .args(["--config"])
        .arg(&config)
        .output()
        .expect("finish");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("clickhouse crash test: {kills} SIGKILLs");
    assert!(kills >= 20, "only {kills} kills landed during the backfill");
    assert_eq!(counts(&ch, &crashed), expected);
    let total = |db: &str| {
        ch.query(&format!(
            "SELECT sum(output_tokens), round(sum(cost_estimate), 6) FROM {db}.claude_messages"
        ))
    };
    assert_eq!(total(&crashed), total(&clean));
}

#[test]
fn samples_fill_the_tool_and_file_tables() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let home = ClaudeHome::with_samples();
    let database = ch.create_database("ccotel_samples");
    let state = tempfile::tempdir().expect("tempdir");
    backfill(&home, state.path(), &ch, &database);
    let reads = number(
        &ch,
        &format!("SELECT count() FROM {database}.claude_file_access WHERE operation = 'read' AND file_path != ''"),
    );
    assert!(reads > 0, "Read calls become file access rows");
    let failed = number(
        &ch,
        &format!("SELECT count() FROM {database}.claude_tool_usage WHERE NOT success AND error_message != ''"),
    );
    assert!(failed > 0, "failed tool calls keep their error");
    let bash = number(
        &ch,
        &format!("SELECT count() FROM {database}.claude_tool_usage WHERE tool_name = 'Bash' AND command != ''"),
    );
    assert!(bash > 0, "Bash calls keep their command");
    // The session rows' totals equal the messages' sums.
    let by_sessions = ch.query(&format!(
        "SELECT sum(output_tokens) FROM {database}.claude_sessions"
    ));
    let by_messages = ch.query(&format!(
        "SELECT sum(output_tokens) FROM {database}.claude_messages"
    ));
    assert_eq!(by_sessions, by_messages);
}

fn failure_line(mut command: Command) -> String {
    let output = command.output().expect("run");
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

#[test]
fn misconfiguration_is_one_clear_line_naming_the_setting() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let home = ClaudeHome::with_samples();
    let state = tempfile::tempdir().expect("tempdir");

    let mut wrong_url = home.backfill_into_clickhouse(state.path(), &ch, "otel");
    wrong_url.env("CCOTEL_CLICKHOUSE_URL", "http://127.0.0.1:9");
    let line = failure_line(wrong_url);
    assert!(
        line.contains("clickhouse.url `http://127.0.0.1:9`"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");

    if ch.is_embedded() {
        let mut bad_password = home.backfill_into_clickhouse(state.path(), &ch, "otel");
        bad_password.env("CCOTEL_CLICKHOUSE_PASSWORD", "not-the-password");
        let line = failure_line(bad_password);
        assert!(line.contains("clickhouse.password"), "{line}");
        assert!(line.contains("authentication failed"), "{line}");
    }

    let config = state.path().join("config.toml");
    std::fs::write(&config, "[clickhouse]\ncreate_schema = false\n").expect("config");
    let mut missing = home.backfill_into_clickhouse(state.path(), &ch, "ccotel_no_such_db");
    missing.args(["--config"]).arg(&config);
    let line = failure_line(missing);
    assert!(
        line.contains("clickhouse.database `ccotel_no_such_db` does not exist"),
        "{line}"
    );
}

#[test]
fn clickhouse_down_for_30_seconds_loses_nothing() {
    let Some(mut ch) = ClickHouse::start() else {
        return;
    };
    if !ch.is_embedded() {
        eprintln!("skipping: the outage test stops the embedded engine");
        return;
    }
    let home = ClaudeHome::with_samples();
    let database = ch.create_database("ccotel_outage");
    let state = tempfile::tempdir().expect("tempdir");
    let settings = tempfile::tempdir().expect("tempdir");
    let config = settings.path().join("config.toml");
    std::fs::write(&config, "[export]\npoll_interval_ms = 100\n").expect("config");
    let mut appender = Appender::new(
        &home,
        "-appended/7d3f3c52-9d1e-4c55-9a4e-1b2c3d4e5f60.jsonl",
    );
    appender.append(10);
    let mut child = home
        .ccotel(state.path())
        .args(["run", "--config"])
        .arg(&config)
        .env("CCOTEL_CLICKHOUSE_URL", ch.url())
        .env("CCOTEL_CLICKHOUSE_DATABASE", &database)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ccotel run");
    let rows = |ch: &ClickHouse| {
        ch.try_query(&format!("SELECT count() FROM {database}.claude_messages"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let wait_for = |ch: &ClickHouse, want: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while rows(ch) != Some(want) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        rows(ch)
    };
    let lines = decodable_lines(&home) as u64;
    assert_eq!(
        wait_for(&ch, lines),
        Some(lines),
        "delivered before the outage"
    );

    ch.stop();
    let mut peak = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        appender.append(50);
        std::thread::sleep(Duration::from_millis(250));
        peak = peak.max(rss_kib(child.id()).unwrap_or(0));
    }
    ch.restart();
    let lines = decodable_lines(&home) as u64;
    let arrived = wait_for(&ch, lines);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        arrived,
        Some(lines),
        "every line arrived after the outage, once"
    );
    let distinct = number(
        &ch,
        &format!("SELECT count(DISTINCT (transcript_path, transcript_offset)) FROM {database}.claude_messages"),
    );
    assert_eq!(distinct, lines, "no line twice");
    eprintln!(
        "clickhouse outage: {} lines appended in 30 s down, peak RSS {peak} KiB",
        appender.next - 10
    );
    assert!(peak > 0 && peak < 100 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_table_from_an_older_version_gains_the_new_columns() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let home = ClaudeHome::new();
    home.copy_sample("spotter/tool_heavy.jsonl", "p/tool_heavy.jsonl");
    let database = ch.create_database("ccotel_migrate");
    let state = tempfile::tempdir().expect("tempdir");
    backfill(&home, state.path(), &ch, &database);
    // As if written by a version before `query` and `project` existed.
    for column in ["query", "project"] {
        ch.query(&format!(
            "ALTER TABLE {database}.claude_tool_usage DROP COLUMN {column}"
        ));
    }
    let columns = |ch: &ClickHouse| {
        ch.query(&format!(
            "SELECT name FROM system.columns WHERE database = '{database}' AND table = 'claude_tool_usage' ORDER BY position"
        ))
    };
    assert!(!columns(&ch).contains("query"));
    home.copy_sample("spotter/short.jsonl", "p/short.jsonl");
    backfill(&home, state.path(), &ch, &database);
    let after = columns(&ch);
    let names: Vec<&str> = after.lines().collect();
    let position = |name: &str| names.iter().position(|n| *n == name);
    assert!(
        position("query").is_some() && position("project").is_some(),
        "{after}"
    );
    assert_eq!(
        position("query"),
        position("command").map(|p| p + 1),
        "added in place"
    );
    // New rows fill the new column.
    assert!(
        number(
            &ch,
            &format!("SELECT count() FROM {database}.claude_tool_usage WHERE project = 'p'")
        ) > 0
    );
}
