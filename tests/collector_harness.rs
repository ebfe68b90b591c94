//! Self-test of the rotel harness in `common::collector`: the debug-log parser on
//! real rotel output, then a live rotel fed one hand-written OTLP/HTTP JSON request
//! per phase, across a stop and a restart.

mod common;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::collector::{Collector, LogRec, MetricPoint, Received, SpanRec};

/// rotel 0.0.1-alpha10 output, trimmed: two agent log lines (one coloured, one
/// right after a string attribute that ends a block), spans with a two-line
/// attribute, a two-line name, events and links, a log with a blank line in an
/// attribute and a map body, and sum (with an exemplar), histogram and gauge points.
const OUTPUT: &str = "\u{1b}[2m2026-11-21T09:51:12.387647Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m Starting Rotel. grpc_endpoint=\"127.0.0.1:14317\"
ResourceSpans #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(claude-code)
     -> host.cores: Int(8)
ScopeSpans #0
ScopeSpans SchemaURL: 
InstrumentationScope ccotel 0.1.0
Span #0
    Trace ID       : 5b8efff798038103d269b633813fc60c
    Parent ID      : 
    ID             : eee19b7ec3c1b174
    Name           : session
    Kind           : SPAN_KIND_INTERNAL
Start time: 1700000000000000000
End time: 1700000005000000000
    Status code    : STATUS_CODE_OK
    Status message : 
Attributes:
     -> s: Str(line one
line two: Int(3))
     -> i: Int(-42)
     -> d: Double(0.1)
     -> d2: Double(2)
     -> b: Bool(true)
     -> arr: Slice(Str(a), Int(1))
     -> kv: Map(k:Str(v))
Events:
SpanEvent #0
     -> Name: retry
     -> Timestamp: 1700000001500000000
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> attempt: Int(2)
Links:
SpanLink #0
     -> Trace ID: 00000000000000000000000000000001
     -> ID: 0000000000000002
     -> TraceState: 
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> l: Str(x)
Span #1
    Trace ID       : 5b8efff798038103d269b633813fc60c
    Parent ID      : eee19b7ec3c1b174
    ID             : eee19b7ec3c1b175
    Name           : tool: Bash
second line
    Kind           : SPAN_KIND_CLIENT
Start time: 1700000001000000000
End time: 1700000002000000000
    Status code    : STATUS_CODE_ERROR
    Status message : exit 1
Attributes:
     -> tool: Str(Bash)
2026-11-21T09:52:49.800559Z ERROR Failed to decode OTLP HTTP/JSON request. error=\"bad\"
ResourceLog #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(claude-code)
ScopeLogs #0
ScopeLogs SchemaURL: 
InstrumentationScope com.anthropic.claude_code.events 
LogRecord #0
ObservedTimestamp: 1700000000200000000
Timestamp: 1700000000123456789
SeverityText: INFO
SeverityNumber: SEVERITY_NUMBER_INFO(9)
EventName: claude_code.user_prompt
Body: Str(claude_code.user_prompt)
Attributes:
     -> prompt: Str(fix the bug

please)
     -> prompt_length: Int(11)
    Trace ID       : 5b8efff798038103d269b633813fc60c
    Span ID        : eee19b7ec3c1b174
Flags: 0
LogRecord #1
ObservedTimestamp: 0
Timestamp: 1700000003000000000
SeverityText: 
SeverityNumber: SEVERITY_NUMBER_UNSPECIFIED(0)
Body: Map(a:Int(1))
    Trace ID       : 
    Span ID        : 
Flags: 0
ResourceMetrics #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(ccotel-probe)
ScopeMetrics #0
ScopeMetrics SchemaURL: 
InstrumentationScope probe-meter 
Metric #0
Descriptor:
     -> Name: tokens.count
     -> Description: 
     -> Unit: tokens
     -> DataType: Sum
     -> IsMonotonic: true
     -> AggregationTemporality: AGGREGATION_TEMPORALITY_DELTA
NumberDataPoints #0
Data point attributes:
     -> type: Str(input)
StartTimestamp: 1795254683420336743
Timestamp: 1795254683420777813
Value: 5
Exemplars:
Exemplar #0
     -> Trace ID: 5b8efff798038103d269b633813fc60c
     -> Span ID: eee19b7ec3c1b174
     -> Timestamp: 1795254683420000000
     -> Value: 99
NumberDataPoints #1
Data point attributes:
     -> type: Str(output)
StartTimestamp: 1795254683420359627
Timestamp: 1795254683420777813
Value: 7
Metric #1
Descriptor:
     -> Name: dur.ms
     -> Description: 
     -> Unit: 
     -> DataType: Histogram
     -> AggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE
HistogramDataPoints #0
Data point attributes:
     -> a: Str(b)
StartTimestamp: 1795254683420473516
Timestamp: 1795254683420777813
Count: 2
Sum: 40.5
Min: 10
Max: 30.5
ExplicitBounds #0: 0
ExplicitBounds #1: 25
Buckets #0, Count: 0
Buckets #1, Count: 1
Buckets #2, Count: 1
Metric #2
Descriptor:
     -> Name: gauge.x
     -> Description: 
     -> Unit: 
     -> DataType: Gauge
NumberDataPoints #0
StartTimestamp: 0
Timestamp: 1795254683420777813
Value: 9.75
";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn parses_real_rotel_output() {
    let received = Received::parse(OUTPUT);
    let resource = map(&[("service.name", "claude-code"), ("host.cores", "8")]);

    let session = SpanRec {
        trace_id: "5b8efff798038103d269b633813fc60c".into(),
        span_id: "eee19b7ec3c1b174".into(),
        parent_span_id: String::new(),
        name: "session".into(),
        kind: "internal".into(),
        start_ns: 1_700_000_000_000_000_000,
        end_ns: 1_700_000_005_000_000_000,
        attributes: map(&[
            ("s", "line one\nline two: Int(3)"),
            ("i", "-42"),
            ("d", "0.1"),
            ("d2", "2"),
            ("b", "true"),
            ("arr", "Slice(Str(a), Int(1))"),
            ("kv", "Map(k:Str(v))"),
        ]),
        raw_attributes: map(&[
            ("s", "Str(line one\nline two: Int(3))"),
            ("i", "Int(-42)"),
            ("d", "Double(0.1)"),
            ("d2", "Double(2)"),
            ("b", "Bool(true)"),
            ("arr", "Slice(Str(a), Int(1))"),
            ("kv", "Map(k:Str(v))"),
        ]),
        status_code: "ok".into(),
        status_message: String::new(),
        events: vec!["retry".into()],
        scope: "ccotel".into(),
        resource: resource.clone(),
    };
    let tool = SpanRec {
        trace_id: "5b8efff798038103d269b633813fc60c".into(),
        span_id: "eee19b7ec3c1b175".into(),
        parent_span_id: "eee19b7ec3c1b174".into(),
        name: "tool: Bash\nsecond line".into(),
        kind: "client".into(),
        start_ns: 1_700_000_001_000_000_000,
        end_ns: 1_700_000_002_000_000_000,
        attributes: map(&[("tool", "Bash")]),
        raw_attributes: map(&[("tool", "Str(Bash)")]),
        status_code: "error".into(),
        status_message: "exit 1".into(),
        events: vec![],
        scope: "ccotel".into(),
        resource,
    };
    assert_eq!(received.spans, vec![session, tool]);

    let resource = map(&[("service.name", "claude-code")]);
    let prompt = LogRec {
        time_ns: 1_700_000_000_123_456_789,
        observed_time_ns: 1_700_000_000_200_000_000,
        trace_id: "5b8efff798038103d269b633813fc60c".into(),
        span_id: "eee19b7ec3c1b174".into(),
        event_name: "claude_code.user_prompt".into(),
        severity_text: "INFO".into(),
        severity_number: 9,
        body: "claude_code.user_prompt".into(),
        attributes: map(&[("prompt", "fix the bug\n\nplease"), ("prompt_length", "11")]),
        raw_attributes: map(&[
            ("prompt", "Str(fix the bug\n\nplease)"),
            ("prompt_length", "Int(11)"),
        ]),
        scope: "com.anthropic.claude_code.events".into(),
        resource: resource.clone(),
    };
    let bare = LogRec {
        time_ns: 1_700_000_003_000_000_000,
        body: "Map(a:Int(1))".into(),
        scope: "com.anthropic.claude_code.events".into(),
        resource,
        ..LogRec::default()
    };
    assert_eq!(received.logs, vec![prompt, bare]);

    let resource = map(&[("service.name", "ccotel-probe")]);
    let tokens = |kind: &str, start_ns: u64, value: f64| MetricPoint {
        name: "tokens.count".into(),
        unit: "tokens".into(),
        kind: "sum".into(),
        value,
        attributes: map(&[("type", kind)]),
        raw_attributes: map(&[("type", &format!("Str({kind})"))]),
        start_ns,
        time_ns: 1_795_254_683_420_777_813,
        temporality: "delta".into(),
        monotonic: true,
        scope: "probe-meter".into(),
        resource: resource.clone(),
        ..MetricPoint::default()
    };
    let histogram = MetricPoint {
        name: "dur.ms".into(),
        kind: "histogram".into(),
        value: 40.5,
        count: 2,
        bounds: vec![0.0, 25.0],
        bucket_counts: vec![0, 1, 1],
        attributes: map(&[("a", "b")]),
        raw_attributes: map(&[("a", "Str(b)")]),
        start_ns: 1_795_254_683_420_473_516,
        time_ns: 1_795_254_683_420_777_813,
        temporality: "cumulative".into(),
        scope: "probe-meter".into(),
        resource: resource.clone(),
        ..MetricPoint::default()
    };
    let gauge = MetricPoint {
        name: "gauge.x".into(),
        kind: "gauge".into(),
        value: 9.75,
        time_ns: 1_795_254_683_420_777_813,
        scope: "probe-meter".into(),
        resource: resource.clone(),
        ..MetricPoint::default()
    };
    assert_eq!(
        received.metrics,
        vec![
            tokens("input", 1_795_254_683_420_336_743, 5.0),
            tokens("output", 1_795_254_683_420_359_627, 7.0),
            histogram,
            gauge,
        ]
    );
}

#[test]
fn a_block_cut_mid_line_parses_as_far_as_it_goes() {
    let cut = &OUTPUT[..OUTPUT.find("Status message : exit").expect("marker")];
    let received = Received::parse(cut);
    assert_eq!(received.spans.len(), 2);
    assert_eq!(received.spans[1].status_code, "error");
    assert!(received.logs.is_empty() && received.metrics.is_empty());
}

const TRACE_ID: &str = "0102030405060708090a0b0c0d0e0f10";
const SPAN_ID: &str = "1112131415161718";

/// One OTLP/JSON log record with a known trace context, time, body and attribute.
fn log_request(body: &str, time_ns: u64) -> String {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"harness"}}}}]}},"scopeLogs":[{{"scope":{{"name":"harness-test"}},"logRecords":[{{"timeUnixNano":"{time_ns}","severityNumber":9,"severityText":"INFO","eventName":"harness.event","traceId":"{TRACE_ID}","spanId":"{SPAN_ID}","body":{{"stringValue":"{body}"}},"attributes":[{{"key":"n","value":{{"intValue":"5"}}}},{{"key":"cost","value":{{"doubleValue":0.25}}}},{{"key":"ok","value":{{"boolValue":true}}}}]}}]}}]}}]}}"#
    )
}

fn expected_log(body: &str, time_ns: u64) -> LogRec {
    LogRec {
        time_ns,
        observed_time_ns: 0,
        trace_id: TRACE_ID.into(),
        span_id: SPAN_ID.into(),
        event_name: "harness.event".into(),
        severity_text: "INFO".into(),
        severity_number: 9,
        body: body.into(),
        attributes: map(&[("n", "5"), ("cost", "0.25"), ("ok", "true")]),
        raw_attributes: map(&[
            ("n", "Int(5)"),
            ("cost", "Double(0.25)"),
            ("ok", "Bool(true)"),
        ]),
        scope: "harness-test".into(),
        resource: map(&[("service.name", "harness")]),
    }
}

/// POSTs a JSON body over a hand-written HTTP/1.1 request; the status code.
fn post_json(addr: SocketAddr, path: &str, body: &str) -> io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {response:?}")))
}

#[test]
fn receives_otlp_http_json_across_a_restart() {
    let Some(mut collector) = Collector::start() else {
        return;
    };
    let http = collector.http_addr();
    assert_eq!(collector.http_endpoint(), format!("http://{http}"));
    assert_eq!(
        collector.grpc_endpoint(),
        format!("http://{}", collector.grpc_addr())
    );

    let first = (r#"first \"quoted\" line"#, 1_700_000_000_123_456_789);
    let status = post_json(http, "/v1/logs", &log_request(first.0, first.1));
    assert_eq!(status.expect("POST /v1/logs"), 200);
    let received = collector.wait_until(Duration::from_secs(10), |r| !r.logs.is_empty());
    assert_eq!(
        received.logs,
        vec![expected_log(r#"first "quoted" line"#, first.1)],
        "rotel printed:\n{}",
        collector.raw_output()
    );
    assert!(received.spans.is_empty() && received.metrics.is_empty());

    collector.stop();
    assert!(!collector.is_running());
    assert!(
        post_json(http, "/v1/logs", &log_request("lost", 1)).is_err(),
        "a stopped collector still accepts requests"
    );

    collector.restart();
    assert!(collector.is_running());
    assert_eq!(collector.http_addr(), http, "restart keeps the ports");
    let second = ("second", 1_700_000_001_000_000_000);
    let status = post_json(http, "/v1/logs", &log_request(second.0, second.1));
    assert_eq!(status.expect("POST /v1/logs after restart"), 200);
    let received = collector.wait_until(Duration::from_secs(10), |r| r.logs.len() >= 2);
    assert_eq!(
        received.logs,
        vec![
            expected_log(r#"first "quoted" line"#, first.1),
            expected_log(second.0, second.1),
        ],
        "rotel printed:\n{}",
        collector.raw_output()
    );
}
