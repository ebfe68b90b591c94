//! `ccotel backfill` end to end: the real samples and a generated corpus, sent to
//! a real collector (rotel) over gRPC and over HTTP with gzip, and to the embedded
//! default (OTLP-JSON files). The span tree, the log records and the metric sums
//! are checked against the transcripts and against `ccotel report`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::collector::{Collector, Received};
use common::{decodable_lines, generate_corpus, truth_totals, ClaudeHome};

/// Runs `ccotel backfill` on `home` with extra environment.
fn backfill(home: &ClaudeHome, state: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = home.ccotel(state);
    command.arg("backfill");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run ccotel backfill");
    assert!(
        output.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn uuid_hex(session: &str) -> Option<String> {
    let hex: String = session.chars().filter(|c| *c != '-').collect();
    (session.len() == 36 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(hex)
}

/// Token sums by type and the cost sum of the exported metric points.
fn metric_sums(received: &Received) -> (BTreeMap<String, f64>, f64) {
    let mut tokens = BTreeMap::new();
    let mut cost = 0.0;
    for point in &received.metrics {
        match point.name.as_str() {
            "ccotel.token.usage" => {
                assert_eq!(point.temporality, "delta");
                assert!(point.monotonic);
                *tokens
                    .entry(point.attributes["type"].clone())
                    .or_insert(0.0) += point.value;
            }
            "ccotel.cost.usage" => cost += point.value,
            _ => {}
        }
    }
    (tokens, cost)
}

/// Checks what arrived for a home against its transcripts and its report.
fn check_signals(received: &Received, home: &ClaudeHome) {
    let totals = home.report_totals();
    // Metrics: the sums equal the report's totals.
    let (tokens, cost) = metric_sums(received);
    let expect = |key: &str| totals[key].as_f64().expect("number");
    assert_eq!(
        tokens.get("input").copied().unwrap_or(0.0),
        expect("inputTokens")
    );
    assert_eq!(
        tokens.get("output").copied().unwrap_or(0.0),
        expect("outputTokens")
    );
    assert_eq!(
        tokens.get("cache_creation").copied().unwrap_or(0.0),
        expect("cacheCreationTokens")
    );
    assert_eq!(
        tokens.get("cache_read").copied().unwrap_or(0.0),
        expect("cacheReadTokens")
    );
    assert!(
        (cost - expect("totalCost")).abs() < 1e-6,
        "cost {cost} vs report {}",
        expect("totalCost")
    );

    // Logs: one per decodable line, each tied to its session's trace.
    assert_eq!(
        received.logs.len(),
        decodable_lines(home),
        "one log record per entry"
    );
    for log in &received.logs {
        let session = &log.attributes["session.id"];
        assert!(log.attributes["event.name"].starts_with("transcript."));
        assert_eq!(log.event_name, log.attributes["event.name"]);
        assert!(!log.span_id.is_empty(), "every record belongs to a span");
        if let Some(hex) = uuid_hex(session) {
            assert_eq!(log.trace_id, hex, "trace id is the session id");
        }
        assert!(
            log.time_ns > 1_600_000_000_000_000_000,
            "historic timestamp"
        );
    }
    let tool_results = received
        .logs
        .iter()
        .filter(|l| {
            l.attributes.contains_key("tool_use_id") && l.attributes.contains_key("tool_name")
        })
        .count();
    assert!(
        tool_results > 50,
        "tool results carry tool_name and tool_use_id"
    );

    // Spans: every parent arrived, ids are unique, names are the documented ones.
    let ids: HashSet<(String, String)> = received
        .spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect();
    assert_eq!(ids.len(), received.spans.len(), "no span sent twice");
    for span in &received.spans {
        if !span.parent_span_id.is_empty() {
            assert!(
                ids.contains(&(span.trace_id.clone(), span.parent_span_id.clone())),
                "orphan span {} {}",
                span.name,
                span.span_id
            );
        }
        let kind = span.name.split(' ').next().unwrap_or_default();
        assert!(
            [
                "session",
                "turn",
                "chat",
                "execute_tool",
                "invoke_agent",
                "compaction"
            ]
            .contains(&kind),
            "unexpected span {}",
            span.name
        );
        assert!(span.start_ns <= span.end_ns);
        assert!(
            span.start_ns > 1_600_000_000_000_000_000,
            "{} has a historic start",
            span.name
        );
        if kind == "chat" {
            assert_eq!(span.kind, "client");
            assert_eq!(span.attributes["gen_ai.operation.name"], "chat");
            assert!(span.attributes.contains_key("gen_ai.usage.output_tokens"));
            let conversation = &span.attributes["gen_ai.conversation.id"];
            if let Some(hex) = uuid_hex(conversation) {
                assert_eq!(hex, span.trace_id, "the conversation is the session");
            } else {
                assert!(!conversation.is_empty());
            }
        }
    }
    let by_id: HashMap<&str, &common::collector::SpanRec> = received
        .spans
        .iter()
        .map(|s| (s.span_id.as_str(), s))
        .collect();
    let in_trace = |trace: &str, kind: &str| -> Vec<&common::collector::SpanRec> {
        received
            .spans
            .iter()
            .filter(|s| s.trace_id == trace && s.name.starts_with(kind))
            .collect()
    };
    // 1.0.x inline subagents: five Task calls, each with its invoke_agent span
    // beneath it and the subagent's model calls beneath that.
    let viewer = "fe5e1c6753e7486281aed0e013e3270b";
    let agents = in_trace(viewer, "invoke_agent");
    assert_eq!(agents.len(), 5, "five inline subagents");
    for agent in &agents {
        let parent = by_id[agent.parent_span_id.as_str()];
        assert_eq!(parent.name, "execute_tool Task");
        let children = received
            .spans
            .iter()
            .filter(|s| s.parent_span_id == agent.span_id && s.name.starts_with("chat"))
            .count();
        assert!(
            children > 0,
            "the subagent's model calls are under invoke_agent"
        );
    }
    assert_eq!(in_trace(viewer, "session").len(), 1);
    assert!(in_trace(viewer, "turn").len() >= 2);
    // Tool errors carry an error status.
    assert!(received
        .spans
        .iter()
        .any(|s| s.name.starts_with("execute_tool") && s.status_code == "error"));
    // 2.0.x: the agent file beside the trunk hangs under the trunk's session.
    let fasthooks = received
        .logs
        .iter()
        .find(|l| l.attributes.get("agent_id").map(String::as_str) == Some("af1ff21"))
        .map(|l| l.trace_id.clone())
        .expect("agent af1ff21 logged");
    assert!(in_trace(&fasthooks, "invoke_agent").len() == 1);
    assert!(
        in_trace(&fasthooks, "compaction").len() == 1,
        "manual /compact"
    );
    // 2.1.x: a subagent file under <session>/subagents/.
    assert!(received
        .spans
        .iter()
        .any(|s| s.name.starts_with("invoke_agent")
            && s.attributes.get("agent_id").map(String::as_str) == Some("a0ad4f44468bdf20d")));
    // The resource names Claude Code and the scope names ccotel.
    let span = &received.spans[0];
    assert_eq!(span.resource["service.name"], "claude-code");
    assert_eq!(span.scope, "ccotel");
}

fn collector_run(protocol: &str, endpoint: impl Fn(&Collector) -> String) {
    let Some(collector) = Collector::start() else {
        return;
    };
    let home = ClaudeHome::with_samples();
    let state = tempfile::tempdir().expect("tempdir");
    let endpoint = endpoint(&collector);
    backfill(
        &home,
        state.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
    );
    let expected_logs = decodable_lines(&home);
    let received = collector.wait_until(Duration::from_secs(20), |r| r.logs.len() >= expected_logs);
    check_signals(&received, &home);
}

#[test]
fn samples_over_grpc_to_a_real_collector() {
    collector_run("grpc", Collector::grpc_endpoint);
}

#[test]
fn samples_over_http_with_gzip_to_a_real_collector() {
    collector_run("http/protobuf", Collector::http_endpoint);
}

#[test]
fn samples_to_the_embedded_default_files() {
    let home = ClaudeHome::with_samples();
    let state = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let output = backfill(
        &home,
        state.path(),
        &[("CCOTEL_DATA_DIR", data.path().to_str().expect("utf-8"))],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let dir = data.path().join("otlp");
    assert!(
        stderr.contains(&dir.display().to_string()),
        "says where the data went: {stderr}"
    );
    check_signals(&Received::from_otlp_json_dir(&dir), &home);
}

#[test]
fn a_second_backfill_sends_only_what_was_appended() {
    let home = ClaudeHome::new();
    home.copy_sample("spotter/tool_heavy.jsonl", "p/tool_heavy.jsonl");
    let state = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let env = [("CCOTEL_DATA_DIR", data.path().to_str().expect("utf-8"))];
    backfill(&home, state.path(), &env);
    let dir = data.path().join("otlp");
    let first = Received::from_otlp_json_dir(&dir);
    backfill(&home, state.path(), &env);
    assert_eq!(
        Received::from_otlp_json_dir(&dir),
        first,
        "nothing new, nothing sent"
    );
    home.copy_sample("spotter/short.jsonl", "p/short.jsonl");
    backfill(&home, state.path(), &env);
    let after = Received::from_otlp_json_dir(&dir);
    assert_eq!(
        after.logs.len(),
        decodable_lines(&home),
        "each line sent once"
    );
    let (tokens, _) = metric_sums(&after);
    let totals = home.report_totals();
    assert_eq!(
        tokens["output"],
        totals["outputTokens"].as_f64().expect("number")
    );
}

/// Text that appears in the samples' prompts, responses and tool output.
/// Text from the samples: a subagent's prompt, a Bash command in a tool input, and
/// a tool call's description.
const TRANSCRIPT_TEXT: &[&str] = &["Warmup", "phx.server", "Start Phoenix server"];

#[test]
fn content_none_sends_no_transcript_text() {
    let home = ClaudeHome::with_samples();
    let state = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("otlp");
    let mut command = home.ccotel(state.path());
    command
        .args(["backfill", "--content", "none"])
        .env("CCOTEL_DATA_DIR", data.path());
    assert!(command.output().expect("run").status.success());
    let mut sent = String::new();
    for entry in std::fs::read_dir(&dir).expect("files") {
        sent.push_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("read"));
    }
    assert!(sent.len() > 100_000, "records were written");
    for text in TRANSCRIPT_TEXT {
        assert!(
            !sent.contains(text),
            "{text:?} left the process with --content none"
        );
    }
    let received = Received::from_otlp_json_dir(&dir);
    assert!(received.logs.iter().all(|l| l.body.is_empty()));
    // The same run with the default policy does carry that text: the check above
    // can fail.
    let state = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    backfill(
        &home,
        state.path(),
        &[("CCOTEL_DATA_DIR", data.path().to_str().expect("utf-8"))],
    );
    let mut sent = String::new();
    for entry in std::fs::read_dir(data.path().join("otlp")).expect("files") {
        sent.push_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("read"));
    }
    for text in TRANSCRIPT_TEXT {
        assert!(
            sent.contains(text),
            "{text:?} is sent under the default policy"
        );
    }
}

#[test]
fn a_generated_corpus_exports_the_true_totals() {
    let corpus = tempfile::tempdir().expect("tempdir");
    let Some(truth) = generate_corpus(corpus.path(), 200, 20.0, 42) else {
        return;
    };
    let home = ClaudeHome { dir: corpus };
    let state = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    backfill(
        &home,
        state.path(),
        &[("CCOTEL_DATA_DIR", data.path().to_str().expect("utf-8"))],
    );
    let received = Received::from_otlp_json_dir(&data.path().join("otlp"));
    let (input, output, cache_creation, cache_read, calls) = truth_totals(&truth);
    let (tokens, _) = metric_sums(&received);
    assert_eq!(tokens["input"], input as f64);
    assert_eq!(tokens["output"], output as f64);
    assert_eq!(tokens["cache_creation"], cache_creation as f64);
    assert_eq!(tokens["cache_read"], cache_read as f64);
    let chats = received
        .spans
        .iter()
        .filter(|s| s.name.starts_with("chat "))
        .count();
    assert_eq!(chats as u64, calls, "one chat span per API call");
    let observed: u64 = received
        .metrics
        .iter()
        .filter(|m| m.name == "gen_ai.client.token.usage")
        .filter(|m| m.attributes["gen_ai.token.type"] == "output")
        .map(|m| m.count)
        .sum();
    assert_eq!(observed, calls, "one histogram observation per call");
    let ids: HashSet<_> = received
        .spans
        .iter()
        .map(|s| (&s.trace_id, &s.span_id))
        .collect();
    assert_eq!(ids.len(), received.spans.len());
    assert_eq!(received.logs.len(), decodable_lines(&home));
}

#[test]
fn ccotel_sends_its_own_spans_and_metrics_when_asked() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let home = ClaudeHome::new();
    home.copy_sample("spotter/tool_heavy.jsonl", "p/tool_heavy.jsonl");
    let state = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    backfill(
        &home,
        state.path(),
        &[
            ("CCOTEL_DATA_DIR", data.path().to_str().expect("utf-8")),
            ("CCOTEL_SELF_OTLP_ENDPOINT", &collector.http_endpoint()),
        ],
    );
    let received = collector.wait_until(Duration::from_secs(20), |r| {
        r.metrics.iter().any(|m| m.name == "ccotel.self.lines")
            && r.spans.iter().any(|s| s.name == "deliver")
    });
    let lines = received
        .metrics
        .iter()
        .filter(|m| m.name == "ccotel.self.lines")
        .map(|m| m.value)
        .fold(0.0, f64::max);
    assert_eq!(lines, decodable_lines(&home) as f64, "lines read");
    let names: HashSet<&str> = received.metrics.iter().map(|m| m.name.as_str()).collect();
    for name in [
        "ccotel.self.bytes",
        "ccotel.self.parse_errors",
        "ccotel.self.export.failures",
        "ccotel.self.queue.depth",
        "ccotel.self.lag",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let deliver = received
        .spans
        .iter()
        .find(|s| s.name == "deliver")
        .expect("a deliver span");
    assert_eq!(deliver.resource["service.name"], "ccotel");
    // Its own telemetry never carries transcript records.
    assert!(received.logs.is_empty());
}

#[test]
fn lines_over_the_inline_limit_are_streamed_and_sent_once() {
    let home = ClaudeHome::new();
    home.copy_sample("spotter/tool_heavy.jsonl", "p/tool_heavy.jsonl");
    let state = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    // Most of this sample's lines are over 2 KB, so they take the streaming path.
    backfill(
        &home,
        state.path(),
        &[
            ("CCOTEL_DATA_DIR", data.path().to_str().expect("utf-8")),
            ("CCOTEL_MAX_LINE_BYTES", "2048"),
        ],
    );
    let received = Received::from_otlp_json_dir(&data.path().join("otlp"));
    assert_eq!(received.logs.len(), decodable_lines(&home));
    let offsets: HashSet<&String> = received
        .logs
        .iter()
        .map(|l| &l.attributes["transcript.offset"])
        .collect();
    assert_eq!(offsets.len(), received.logs.len(), "each line once");
    let (tokens, _) = metric_sums(&received);
    let totals = home.report_totals();
    assert_eq!(
        tokens["output"],
        totals["outputTokens"].as_f64().expect("number")
    );
}
