//! `ccotel run --receiver` end to end: Claude Code-shaped native telemetry,
//! sent by a real OpenTelemetry SDK exporter (JavaScript, as Claude Code uses)
//! over gRPC, HTTP/protobuf and HTTP/JSON, through ccotel, to a real collector
//! (rotel). The fixtures in `tests/fixtures/native/` pair a transcript with
//! native exports, redacted (Claude Code's default) and detailed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::clickhouse::ClickHouse;
use common::collector::{Collector, LogRec, Received, SpanRec};
use common::native::{fixture, tagged_fixture, NativeClient, ReceiverRun, FIXTURE_TRANSCRIPT};
use common::ClaudeHome;

const SESSION_HEX: &str = "5b1c0f5e7a554b559e3e2b8f0c1d9a01";

/// Lines in the fixture transcript: each becomes one ccotel log record.
const TRANSCRIPT_LINES: usize = 8;

/// Records in each native fixture.
const NATIVE_LOGS: usize = 10;

/// Text that is only in the transcript (and, in the detailed fixture, in
/// Claude Code's own events): prompts, a response, tool input and output.
const TRANSCRIPT_TEXT: &[&str] = &[
    "PROMPT-ALPHA-7731",
    "RESPONSE-BRAVO-5512",
    "INPUT-CHARLIE-9043",
    "RESULT-DELTA-2208",
    "PROMPT-ECHO-3310",
    "FOXTROT-4417",
    "GOLF-8120",
];

fn home_with_fixture() -> ClaudeHome {
    let home = ClaudeHome::new();
    let transcript = std::fs::read(fixture("session.jsonl")).expect("fixture transcript");
    home.write(FIXTURE_TRANSCRIPT, &transcript);
    home
}

fn transcript_logs(received: &Received) -> usize {
    received.logs.iter().filter(|l| l.scope == "ccotel").count()
}

fn native_logs<'a>(received: &'a Received, tag: &str) -> Vec<&'a LogRec> {
    received
        .logs
        .iter()
        .filter(|l| l.resource.get("test.send").map(String::as_str) == Some(tag))
        .collect()
}

/// The native record of `event` that is the `nth` (from 0) of its kind.
fn event<'a>(logs: &[&'a LogRec], name: &str, nth: usize) -> &'a LogRec {
    logs.iter()
        .filter(|l| l.attributes.get("event.name").map(String::as_str) == Some(name))
        .nth(nth)
        .copied()
        .unwrap_or_else(|| panic!("no {name} #{nth} among {logs:#?}"))
}

fn ccotel_span<'a>(received: &'a Received, span_id: &str) -> &'a SpanRec {
    received
        .spans
        .iter()
        .find(|s| s.span_id == span_id)
        .unwrap_or_else(|| panic!("ccotel sent no span {span_id}"))
}

fn attr<'a>(log: &'a LogRec, key: &str) -> Option<&'a str> {
    log.attributes.get(key).map(String::as_str)
}

/// The record is joined by `key` and points at a span ccotel sent, named
/// `span_name`; the record's own trace context is that span's.
fn assert_linked(received: &Received, log: &LogRec, key: &str, span_name: &str) {
    assert_eq!(attr(log, "ccotel.match"), Some(key), "{log:#?}");
    assert_eq!(attr(log, "ccotel.trace_id"), Some(SESSION_HEX));
    let span_id = attr(log, "ccotel.span_id").expect("span id");
    let span = ccotel_span(received, span_id);
    assert!(
        span.name.starts_with(span_name),
        "{span_id} is {}, not {span_name}",
        span.name
    );
    assert_eq!(span.trace_id, SESSION_HEX);
    assert_eq!(log.trace_id, SESSION_HEX);
    assert_eq!(log.span_id, span_id);
}

/// Checks one send of the redacted fixture.
fn check_redacted(received: &Received, tag: &str) {
    let logs = native_logs(received, tag);
    assert_eq!(
        logs.len(),
        NATIVE_LOGS,
        "{tag}: every native record arrived"
    );

    // A prompt joined by its transcript uuid: the redacted text is filled in.
    let prompt = event(&logs, "user_prompt", 0);
    assert_linked(received, prompt, "message.uuid", "turn");
    assert_eq!(
        attr(prompt, "prompt"),
        Some("Rename checkout_helper to finalize_order (prompt marker PROMPT-ALPHA-7731)")
    );
    assert_eq!(attr(prompt, "prompt.id"), Some("p-0001"));
    assert_eq!(attr(prompt, "cwd"), Some("/home/dev/shop"));
    assert_eq!(attr(prompt, "git.branch"), Some("feature/rename"));
    assert_eq!(
        attr(prompt, "prompt_length"),
        Some("74"),
        "native attributes stay"
    );

    // A response joined by request id.
    let request = event(&logs, "api_request", 0);
    assert_linked(received, request, "request_id", "chat");
    assert_eq!(attr(request, "message.id"), Some("msg_01AAA"));
    assert_eq!(attr(request, "stop_reason"), Some("tool_use"));
    let second = event(&logs, "api_request", 1);
    assert_eq!(attr(second, "message.id"), Some("msg_01BBB"));
    assert_eq!(attr(second, "stop_reason"), Some("end_turn"));

    // A decision and a result joined by tool_use_id.
    let decision = event(&logs, "tool_decision", 0);
    assert_linked(received, decision, "tool_use_id", "execute_tool Bash");
    let input = attr(decision, "tool_input").expect("tool input filled in");
    assert!(input.contains("INPUT-CHARLIE-9043"), "{input}");
    let result = event(&logs, "tool_result", 0);
    assert_linked(received, result, "tool_use_id", "execute_tool Bash");
    assert_eq!(
        attr(result, "ccotel.tool.result"),
        Some("src/cart.rs:12: fn checkout_helper() RESULT-DELTA-2208")
    );
    assert_eq!(attr(result, "ccotel.tool.is_error"), Some("false"));

    // An older Claude Code's events carry no keys: joined by time.
    let prompt = event(&logs, "user_prompt", 1);
    assert_linked(received, prompt, "time", "turn");
    assert_eq!(attr(prompt, "message.uuid"), Some("u-0003"));
    assert!(attr(prompt, "prompt").is_some_and(|p| p.contains("PROMPT-ECHO-3310")));
    let failed = event(&logs, "tool_result", 1);
    assert_linked(received, failed, "time", "execute_tool Read");
    assert_eq!(attr(failed, "tool_use_id"), Some("toolu_01CCC"));
    assert_eq!(attr(failed, "ccotel.tool.is_error"), Some("true"));
    let error = event(&logs, "api_error", 0);
    assert_eq!(attr(error, "ccotel.match"), Some("time"));
    assert_eq!(attr(error, "message.id"), Some("a2c1e7d4-api-error"));

    // Never in the transcript: on as it came, after the wait.
    let unmatched = event(&logs, "tool_result", 2);
    assert_eq!(attr(unmatched, "ccotel.match"), None);
    assert_eq!(attr(unmatched, "ccotel.span_id"), None);
    assert_eq!(unmatched.trace_id, "");
    // Not an event ccotel joins: untouched.
    let other = event(&logs, "permission_mode_changed", 0);
    assert!(other.attributes.keys().all(|k| !k.starts_with("ccotel.")));
}

/// Checks the native spans and metrics of one send.
fn check_spans_and_metrics(received: &Received, tag: &str) {
    let spans: Vec<&SpanRec> = received
        .spans
        .iter()
        .filter(|s| s.resource.get("test.send").map(String::as_str) == Some(tag))
        .collect();
    assert_eq!(spans.len(), 4, "{tag}: native spans arrived");
    let linked = |name: &str, key: &str, ccotel_name: &str| {
        let span = spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(
            span.attributes.get("ccotel.match").map(String::as_str),
            Some(key)
        );
        let target = &span.attributes["ccotel.span_id"];
        assert!(ccotel_span(received, target).name.starts_with(ccotel_name));
    };
    linked("claude_code.interaction", "time", "turn");
    linked("claude_code.llm_request", "request_id", "chat");
    linked("claude_code.tool", "tool_use_id", "execute_tool Bash");
    linked(
        "claude_code.tool.execution",
        "tool_use_id",
        "execute_tool Bash",
    );

    // Native metrics pass through untouched.
    let native: BTreeMap<String, f64> = received
        .metrics
        .iter()
        .filter(|p| p.resource.get("test.send").map(String::as_str) == Some(tag))
        .map(|p| {
            let key = format!(
                "{}{}",
                p.name,
                p.attributes
                    .get("type")
                    .map(|t| format!("/{t}"))
                    .unwrap_or_default()
            );
            (key, p.value)
        })
        .collect();
    assert_eq!(native["claude_code.token.usage/input"], 42.0);
    assert_eq!(native["claude_code.token.usage/output"], 100.0);
    assert!((native["claude_code.cost.usage"] - 0.0032).abs() < 1e-12);
}

#[test]
fn redacted_events_are_enriched_over_every_protocol() {
    let (Some(collector), Some(client)) = (Collector::start(), NativeClient::install()) else {
        return;
    };
    let home = home_with_fixture();
    let state = tempfile::tempdir().expect("tempdir");
    let run = ReceiverRun::start(
        &home,
        state.path(),
        &[
            "--endpoint",
            &collector.grpc_endpoint(),
            "--receiver-wait-ms",
            "1500",
        ],
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    collector.wait_until(Duration::from_secs(20), |r| {
        transcript_logs(r) >= TRANSCRIPT_LINES
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let sends = [
        ("grpc", &run.grpc, false),
        ("grpc-gzip", &run.grpc, true),
        ("http-protobuf", &run.http, false),
        ("http-json-gzip", &run.http, true),
    ];
    for (tag, endpoint, gzip) in sends {
        let protocol = match tag {
            t if t.starts_with("grpc") => "grpc",
            t if t.starts_with("http-json") => "http/json",
            _ => "http/protobuf",
        };
        let fixture = tagged_fixture(dir.path(), "redacted.json", "test.send", tag);
        client.send(&fixture, protocol, endpoint, gzip);
    }
    let received = collector.wait_until(Duration::from_secs(30), |r| {
        sends
            .iter()
            .all(|(tag, ..)| native_logs(r, tag).len() >= NATIVE_LOGS)
    });
    for (tag, ..) in sends {
        check_redacted(&received, tag);
        check_spans_and_metrics(&received, tag);
    }
    let stderr = run.stop();
    assert!(stderr.contains("forwarded"), "{stderr}");

    // ccotel's own counters still count the transcript once.
    let ours: f64 = received
        .metrics
        .iter()
        .filter(|p| p.name == "ccotel.token.usage" && p.attributes["type"] == "input")
        .map(|p| p.value)
        .sum();
    assert_eq!(ours, 12.0 + 30.0 + 40.0);
}

#[test]
fn an_event_waits_for_its_line_and_an_unmatched_one_goes_on_after_the_wait() {
    let (Some(collector), Some(client)) = (Collector::start(), NativeClient::install()) else {
        return;
    };
    // Only the first two lines are on disk: the tool result is not.
    let home = ClaudeHome::new();
    let transcript = std::fs::read_to_string(fixture("session.jsonl")).expect("fixture");
    let lines: Vec<&str> = transcript.lines().collect();
    home.write(
        FIXTURE_TRANSCRIPT,
        format!("{}\n{}\n", lines[0], lines[1]).as_bytes(),
    );
    let state = tempfile::tempdir().expect("tempdir");
    let wait_ms = 4000;
    let run = ReceiverRun::start(
        &home,
        state.path(),
        &[
            "--endpoint",
            &collector.http_endpoint(),
            "--protocol",
            "http/protobuf",
            "--receiver-wait-ms",
            &wait_ms.to_string(),
        ],
        &[],
    );
    collector.wait_until(Duration::from_secs(20), |r| transcript_logs(r) >= 2);

    // A result whose line is written a second after the event arrives, and
    // one whose line never is.
    let dir = tempfile::tempdir().expect("tempdir");
    let native: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("redacted.json")).expect("fixture"))
            .expect("JSON");
    let mut early = native.clone();
    let logs = native["logs"].as_array().expect("logs");
    early["logs"] = serde_json::json!([logs[3], logs[8]]);
    early["resource"]["test.send"] = "early".into();
    early.as_object_mut().expect("object").remove("spans");
    early.as_object_mut().expect("object").remove("metrics");
    let path = dir.path().join("early.json");
    std::fs::write(&path, serde_json::to_vec(&early).expect("encode")).expect("write");
    let sent_at = Instant::now();
    client.send(&path, "http/protobuf", &run.http, false);
    std::thread::sleep(Duration::from_millis(1000));
    home.append(FIXTURE_TRANSCRIPT, format!("{}\n", lines[2]).as_bytes());

    let received = collector.wait_until(Duration::from_secs(20), |r| {
        native_logs(r, "early").len() >= 2
    });
    let arrived_after = sent_at.elapsed();
    let logs = native_logs(&received, "early");
    assert_eq!(logs.len(), 2, "both arrived: {logs:#?}");
    let joined = logs
        .iter()
        .find(|l| attr(l, "tool_use_id") == Some("toolu_01AAA"))
        .expect("the early event");
    assert_linked(&received, joined, "tool_use_id", "execute_tool Bash");
    assert!(attr(joined, "ccotel.tool.result").is_some_and(|r| r.contains("RESULT-DELTA-2208")));
    let unmatched = logs
        .iter()
        .find(|l| attr(l, "tool_use_id") == Some("toolu_01ZZZ_NOT_IN_TRANSCRIPT"))
        .expect("the unmatched event");
    assert_eq!(attr(unmatched, "ccotel.match"), None);
    assert!(
        arrived_after >= Duration::from_millis(wait_ms),
        "the request waited for its unmatched record: {arrived_after:?}"
    );
    let stderr = run.stop();
    assert!(
        stderr.contains("unmatched=1") || stderr.contains("unmatched"),
        "{stderr}"
    );
}

/// Everything rotel printed: every byte that reached the collector.
fn collector_text(collector: &Collector) -> String {
    collector.raw_output()
}

fn run_detailed(content: Option<&str>) -> String {
    let (Some(collector), Some(client)) = (Collector::start(), NativeClient::install()) else {
        return String::new();
    };
    let home = home_with_fixture();
    let state = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--endpoint".to_owned(), collector.grpc_endpoint()];
    if let Some(policy) = content {
        args.extend(["--content".to_owned(), policy.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = ReceiverRun::start(
        &home,
        state.path(),
        &args,
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    collector.wait_until(Duration::from_secs(20), |r| {
        transcript_logs(r) >= TRANSCRIPT_LINES
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let detailed = tagged_fixture(dir.path(), "detailed.json", "test.send", "detailed");
    client.send(&detailed, "http/json", &run.http, false);
    collector.wait_until(Duration::from_secs(20), |r| {
        native_logs(r, "detailed").len() >= NATIVE_LOGS
    });
    run.stop();
    // Let the collector print what it was last sent.
    std::thread::sleep(Duration::from_millis(300));
    collector_text(&collector)
}

#[test]
fn content_none_lets_no_transcript_text_reach_the_collector() {
    let text = run_detailed(Some("none"));
    if text.is_empty() {
        return;
    }
    assert!(
        text.contains("claude_code.user_prompt"),
        "the native events arrived"
    );
    assert!(text.contains("ccotel.span_id"), "and were joined");
    for marker in TRANSCRIPT_TEXT {
        assert!(
            !text.contains(marker),
            "{marker:?} reached the collector under --content none"
        );
    }
    // The control: under the default policy the same run does send that text,
    // so the scan above can fail.
    let text = run_detailed(None);
    for marker in [
        "PROMPT-ALPHA-7731",
        "INPUT-CHARLIE-9043",
        "RESULT-DELTA-2208",
    ] {
        assert!(
            text.contains(marker),
            "{marker:?} is sent under the default policy"
        );
    }
}

#[test]
fn receiver_misconfiguration_names_the_setting() {
    let home = ClaudeHome::new();
    let state = tempfile::tempdir().expect("tempdir");
    let output = home
        .ccotel(state.path())
        .args(["run", "--receiver", "--receiver-grpc", "localhost-4317"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("receiver.grpc") && stderr.contains("the command line"),
        "{stderr}"
    );

    // An address already in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = home
        .ccotel(state.path())
        .args(["run", "--receiver", "--receiver-http", &addr])
        .args(["--receiver-grpc", "off"])
        .env("CCOTEL_DATA_DIR", state.path())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("receiver.http `{addr}`")) && stderr.contains("cannot listen"),
        "{stderr}"
    );
}

#[test]
fn enriched_events_land_in_clickhouse_beside_the_transcript() {
    let (Some(ch), Some(client)) = (ClickHouse::start(), NativeClient::install()) else {
        return;
    };
    let database = ch.create_database("receiver");
    let home = home_with_fixture();
    let state = tempfile::tempdir().expect("tempdir");
    let run = ReceiverRun::start(
        &home,
        state.path(),
        &["--clickhouse-url", &ch.url()],
        &[
            ("CCOTEL_CLICKHOUSE_USER", ch.user()),
            ("CCOTEL_CLICKHOUSE_PASSWORD", ch.password()),
            ("CCOTEL_CLICKHOUSE_DATABASE", &database),
        ],
    );
    let count = |sql: &str| -> u64 { ch.query(sql).trim().parse().unwrap_or(0) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let transcript_rows =
        format!("SELECT count() FROM {database}.otel_logs WHERE ScopeName = 'ccotel'");
    while count(&transcript_rows) < TRANSCRIPT_LINES as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = tagged_fixture(dir.path(), "redacted.json", "test.send", "clickhouse");
    client.send(&fixture, "grpc", &run.grpc, true);
    let native_rows = format!(
        "SELECT count() FROM {database}.otel_logs WHERE ResourceAttributes['test.send'] = 'clickhouse'"
    );
    while count(&native_rows) < NATIVE_LOGS as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    run.stop();
    assert_eq!(count(&native_rows), NATIVE_LOGS as u64);
    // A joined prompt sits in ccotel's trace, next to the transcript's records.
    let joined = ch.query(&format!(
        "SELECT LogAttributes['prompt'], LogAttributes['ccotel.match'], TraceId, SpanId \
         FROM {database}.otel_logs WHERE ResourceAttributes['test.send'] = 'clickhouse' \
         AND LogAttributes['event.name'] = 'user_prompt' AND LogAttributes['message.uuid'] = 'u-0001' \
         FORMAT TabSeparated"
    ));
    let fields: Vec<&str> = joined.trim().split('\t').collect();
    assert_eq!(fields.len(), 4, "{joined}");
    assert!(fields[0].contains("PROMPT-ALPHA-7731"), "{joined}");
    assert_eq!(fields[1], "message.uuid");
    assert_eq!(fields[2], SESSION_HEX);
    let turn = count(&format!(
        "SELECT count() FROM {database}.otel_traces WHERE SpanId = '{}' AND SpanName = 'turn'",
        fields[3]
    ));
    assert_eq!(turn, 1, "the prompt's span id is ccotel's turn span");
    // Native spans and counters have their rows too.
    let spans = count(&format!(
        "SELECT count() FROM {database}.otel_traces WHERE ResourceAttributes['test.send'] = 'clickhouse' \
         AND length(Links.SpanId) = 1"
    ));
    assert_eq!(spans, 4);
    let tokens = ch.query(&format!(
        "SELECT sum(Value) FROM {database}.otel_metrics_sum WHERE MetricName = 'claude_code.token.usage'"
    ));
    assert_eq!(tokens.trim(), "142");
}
