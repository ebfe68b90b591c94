//! A real OpenTelemetry collector for the integration tests: [`Collector`] runs
//! `rotel` (PyPI `rotel==0.0.1a15`, whose agent reports `rotel 0.0.1-alpha10`) on
//! two free loopback ports, OTLP/gRPC and OTLP/HTTP, with the blackhole exporter
//! and the detailed debug log, and parses what that log says it received.
//!
//! This rotel has no file exporter (its exporters are otlp, blackhole, datadog,
//! clickhouse, aws-xray and kafka), so the debug log is the only readable record
//! of what arrived. It keeps trace, span and parent ids, timestamps, attributes
//! with their types, log bodies and metric points.
//!
//! # Installing
//!
//! `$CCOTEL_ROTEL_AGENT` names an agent binary to use. Otherwise the agent comes
//! from `~/.cache/ccotel-test/rotel-0.0.1a15/rotel/rotel-agent` (under
//! `$XDG_CACHE_HOME` when set), installed there on first use by `python3 -m pip
//! install --target` of the cp311 wheel (the agent is a static binary, so the
//! local Python version does not matter). `scripts/install-rotel.sh` does the same
//! ahead of time. With no agent, [`Collector::start`] skips the test, or fails it
//! under `CI=true`.
//!
//! # What rotel prints
//!
//! Everything goes to stdout (stderr only carries a start-up failure such as
//! `ERROR: unable to bind to 127.0.0.1:P: Address already in use`). Each accepted
//! request becomes one block written by one `print!`, so blocks never interleave
//! with each other or with the agent's own log lines
//! (`2026-11-21T09:52:49.397324Z  INFO Starting Rotel. ...`, uncoloured since
//! `NO_COLOR` is set; the parser drops them). A block is printed when the request
//! enters the pipeline, before batching, so within tens of milliseconds of the
//! response whatever the batch timeout. gRPC and HTTP/protobuf are accepted with
//! or without gzip, OTLP/JSON on HTTP too; gRPC messages are capped at 4 MiB.
//! A block looks like this (metric blocks start at `ResourceMetrics #0`, log
//! blocks at `ResourceLog #0`):
//!
//! ```text
//! ResourceSpans #0
//! Resource SchemaURL:
//! Resource attributes:                      (left out when there are none)
//!      -> service.name: Str(claude-code)
//! ScopeSpans #0
//! ScopeSpans SchemaURL:
//! InstrumentationScope ccotel 0.1.0         (name, then version; left out with no scope)
//! Span #0
//!     Trace ID       : 5b8efff798038103d269b633813fc60c
//!     Parent ID      :                      (empty for a root)
//!     ID             : eee19b7ec3c1b174
//!     Name           : session
//!     Kind           : SPAN_KIND_INTERNAL
//! Start time: 1700000000000000000
//! End time: 1700000005000000000
//!     Status code    : STATUS_CODE_OK       (UNSET, OK or ERROR)
//!     Status message :
//! Attributes:
//!      -> i: Int(-42)
//! Events:                                   (then SpanEvent #0, "     -> Name: retry",
//! Links:                                     Timestamp, and attributes ten spaces in)
//! LogRecord #0
//! ObservedTimestamp: 1700000000200000000    (0 when unset)
//! Timestamp: 1700000000123456789
//! SeverityText: INFO
//! SeverityNumber: SEVERITY_NUMBER_INFO(9)
//! EventName: claude_code.user_prompt        (only when set)
//! Body: Str(claude_code.user_prompt)        (Empty when unset)
//! Attributes: ...
//!     Trace ID       : 5b8efff798038103d269b633813fc60c   (empty when unset)
//!     Span ID        : eee19b7ec3c1b174
//! Flags: 1
//! Metric #0
//! Descriptor:
//!      -> Name: claude_code.token.usage
//!      -> Description:
//!      -> Unit: tokens
//!      -> DataType: Sum                     (Gauge, Histogram, ExponentialHistogram, Summary, Empty)
//!      -> IsMonotonic: true                 (Sum only)
//!      -> AggregationTemporality: AGGREGATION_TEMPORALITY_DELTA   (Sum and histograms)
//! NumberDataPoints #0                       (HistogramDataPoints #0, SummaryDataPoints #0, ...)
//! Data point attributes: ...
//! StartTimestamp: 1700000000000000000       (0 when unset, as for gauges)
//! Timestamp: 1700000060000000000
//! Value: 1234                               (number points)
//! Count: 3                                  (histogram points, with "Sum: 42.5", "Min: 1",
//! ExplicitBounds #0: 10                      "Max: 30", and "Buckets #0, Count: 2")
//! ```
//!
//! Ids are lower-case hex and timestamps Unix nanoseconds in decimal. Values print
//! as `Str(text)`, unquoted and unescaped (a newline in the text carries on to the
//! next line), `Int(-42)`, `Double(0.1)` (Rust `Display`, so 2.0 prints as `2`),
//! `Bool(true)`, `Slice(Str(a), Int(1))`, `Map(k:Str(v))` and `Bytes([1, 2, 3])`.
//! Lines with trailing spaces above (`Resource SchemaURL: `, `Parent ID      : `)
//! keep them in the real output.
//!
//! # What is parsed
//!
//! [`Received`] renders values as strings: the text of a `Str`, the number of an
//! `Int` or `Double`, `true` or `false`, the empty string for `Empty`, and anything
//! else exactly as printed. `raw_attributes` keeps the typed form (`Int(5)`) so a
//! test can tell an integer from a string. Span kinds, status codes and
//! temporalities lose their prefix and are lower-cased (`client`, `error`,
//! `delta`); metric kinds are `sum`, `gauge`, `histogram`, `summary` or
//! `exponential_histogram`.
//!
//! # Known limits
//!
//! - A line of a multi-line string that itself looks like a line of the block
//!   (`Attributes:`, `     -> key: value`, `Body: ...`) is read as one.
//! - A key containing `": "` is cut at its first `": "`.
//! - rotel's OTLP/JSON decoder is lossy for metrics: an `asInt` written as a
//!   string (as the OTLP/JSON spec says) loses its value, while a string `count`
//!   or `bucketCounts`, an exemplar, a summary or an exponential histogram turns
//!   the metric into `DataType: Empty`. An empty `AnyValue` (`{}`) is rejected
//!   with 400. Over protobuf (gRPC or HTTP) every sum, gauge and histogram field
//!   checked came through intact.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The rotel release on PyPI whose debug-log format this module parses.
pub const ROTEL_VERSION: &str = "0.0.1a15";
/// The wheel to unpack; every wheel carries the same static agent binary.
const WHEEL_PYTHON: &str = "3.11";
/// How long rotel gets to listen on both ports, and to exit when asked to.
const STARTUP: Duration = Duration::from_secs(20);
const SHUTDOWN: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// A rotel process listening on loopback, killed on drop.
pub struct Collector {
    agent: PathBuf,
    dir: tempfile::TempDir,
    grpc_port: u16,
    http_port: u16,
    child: Option<Child>,
}

/// Everything the collector has printed so far, in arrival order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Received {
    pub spans: Vec<SpanRec>,
    pub logs: Vec<LogRec>,
    pub metrics: Vec<MetricPoint>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanRec {
    /// Lower-case hex, as are the other ids.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: BTreeMap<String, String>,
    /// The attributes as printed, with their type: `Int(5)`, `Str(five)`.
    pub raw_attributes: BTreeMap<String, String>,
    /// `unset`, `ok` or `error`.
    pub status_code: String,
    pub status_message: String,
    /// The names of the span's events, in order.
    pub events: Vec<String>,
    /// The instrumentation scope's name.
    pub scope: String,
    pub resource: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogRec {
    pub time_ns: u64,
    /// Zero when the sender left it unset.
    pub observed_time_ns: u64,
    /// Empty when the record carries no trace context.
    pub trace_id: String,
    pub span_id: String,
    /// The OTLP `event_name` field; empty when unset.
    pub event_name: String,
    pub severity_text: String,
    pub severity_number: i32,
    /// Rendered like an attribute value: a `Str` body is its text.
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub raw_attributes: BTreeMap<String, String>,
    pub scope: String,
    pub resource: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricPoint {
    pub name: String,
    pub unit: String,
    /// `sum`, `gauge`, `histogram`, `summary` or `exponential_histogram`.
    pub kind: String,
    /// The point's value; for histograms and summaries their sum.
    pub value: f64,
    /// Histograms and summaries: the count. Zero otherwise.
    pub count: u64,
    /// Explicit histogram bounds and bucket counts; empty otherwise.
    pub bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    pub attributes: BTreeMap<String, String>,
    pub raw_attributes: BTreeMap<String, String>,
    pub start_ns: u64,
    pub time_ns: u64,
    /// `delta` or `cumulative` for sums and histograms; empty for gauges.
    pub temporality: String,
    pub monotonic: bool,
    pub scope: String,
    pub resource: BTreeMap<String, String>,
}

impl Collector {
    /// Installs rotel if needed and starts it on two free ports, returning once
    /// both accept connections. `None` (a skip) when rotel cannot be installed or
    /// started; under `CI=true` that is a failure instead.
    pub fn start() -> Option<Collector> {
        let agent = match agent() {
            Ok(agent) => agent,
            Err(why) => {
                super::require(&format!("rotel {ROTEL_VERSION} ({why})"), false);
                return None;
            }
        };
        let mut failure = String::new();
        // A free port can be taken between probing and binding: try again.
        for _ in 0..3 {
            let (grpc_port, http_port) = free_ports().expect("probe for free loopback ports");
            let mut collector = Collector {
                agent: agent.clone(),
                dir: tempfile::tempdir().expect("tempdir for rotel"),
                grpc_port,
                http_port,
                child: None,
            };
            match collector.spawn() {
                Ok(()) => return Some(collector),
                Err(why) => failure = why,
            }
        }
        super::require(&format!("a running rotel ({failure})"), false);
        None
    }

    /// The OTLP/gRPC endpoint, `http://127.0.0.1:P`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr())
    }

    /// The OTLP/HTTP base endpoint, `http://127.0.0.1:Q` (paths `/v1/traces`,
    /// `/v1/logs`, `/v1/metrics`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        loopback(self.grpc_port)
    }

    pub fn http_addr(&self) -> SocketAddr {
        loopback(self.http_port)
    }

    /// Whether the rotel process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Takes the collector down (an outage): SIGTERM, so whatever it has already
    /// acknowledged gets printed, then SIGKILL if it has not exited after 5 s.
    /// Both ports refuse connections afterwards.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Takes the collector down abruptly with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts rotel again on the same ports (stopping it first if it is running).
    /// What was received before stays in [`Collector::received`].
    pub fn restart(&mut self) {
        self.stop();
        if let Err(why) = self.spawn() {
            panic!("restarting rotel on the same ports failed: {why}");
        }
    }

    /// Parses everything printed so far, across restarts.
    pub fn received(&self) -> Received {
        Received::parse(&self.raw_output())
    }

    /// Polls [`Collector::received`] until `done` holds or `timeout` passes, and
    /// returns the last snapshot either way: assert on it.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) || Instant::now() >= deadline {
                return received;
            }
            std::thread::sleep(POLL);
        }
    }

    /// The collector's stdout so far, for failure messages.
    pub fn raw_output(&self) -> String {
        read_lossy(&self.output_path())
    }

    fn output_path(&self) -> PathBuf {
        self.dir.path().join("rotel.out")
    }

    fn error_path(&self) -> PathBuf {
        self.dir.path().join("rotel.err")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let stdout = append(&self.output_path())?;
        let stderr = append(&self.error_path())?;
        let mut command = Command::new(&self.agent);
        command
            .arg("start")
            .args(["--otlp-grpc-endpoint", &self.grpc_addr().to_string()])
            .args(["--otlp-http-endpoint", &self.http_addr().to_string()])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces"])
            .args(["--debug-log", "logs"])
            .args(["--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--pid-file")
            .arg(self.dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(self.dir.path().join("rotel.log"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // rotel reads its whole configuration from ROTEL_* variables too.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ROTEL_") {
                command.env_remove(name);
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.agent.display()))?;
        self.child = Some(child);
        self.wait_until_listening()
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        let addrs = [self.grpc_addr(), self.http_addr()];
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err("rotel is not running".into());
            };
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let stderr = read_lossy(&self.error_path());
                return Err(format!("rotel exited ({status}): {}", stderr.trim()));
            }
            if addrs.iter().all(|addr| accepts(*addr)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("rotel did not listen within {STARTUP:?}"));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Received {
    /// Parses rotel's detailed debug log (see the module documentation). Text
    /// after the last newline is a line still being written, and is left out.
    pub fn parse(output: &str) -> Received {
        let complete = output.rfind('\n').map_or("", |end| &output[..end]);
        let mut parser = Parser::default();
        for line in logical_lines(complete) {
            parser.line(&line);
        }
        parser.finish()
    }
}

// ---------------------------------------------------------------------------
// Installing and running the agent

/// The agent binary, located or installed once per test process.
fn agent() -> Result<PathBuf, String> {
    static AGENT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    AGENT.get_or_init(locate_or_install).clone()
}

fn locate_or_install() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CCOTEL_ROTEL_AGENT") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("CCOTEL_ROTEL_AGENT={} is no file", path.display()))
        };
    }
    let dir = cache_dir()?;
    let agent = dir.join("rotel").join("rotel-agent");
    if !agent.is_file() {
        install(&dir)?;
    }
    make_executable(&agent)?;
    Ok(agent)
}

/// `$XDG_CACHE_HOME` or `~/.cache`, then `ccotel-test/rotel-<version>`.
fn cache_dir() -> Result<PathBuf, String> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(base
        .join("ccotel-test")
        .join(format!("rotel-{ROTEL_VERSION}")))
}

/// `pip install --target` into a staging folder, then renamed into place so a
/// concurrent test process never sees half an install.
fn install(dir: &Path) -> Result<(), String> {
    let parent = dir.parent().ok_or("the cache folder has no parent")?;
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let staging = parent.join(format!(".rotel-staging-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args([
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            WHEEL_PYTHON,
        ])
        .arg("--target")
        .arg(&staging)
        .arg(format!("rotel=={ROTEL_VERSION}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running python3 -m pip: {e}"))?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(&staging);
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("pip install rotel failed: {}", stderr.trim()));
    }
    let renamed = fs::rename(&staging, dir);
    let _ = fs::remove_dir_all(&staging);
    match renamed {
        Ok(()) => Ok(()),
        // Another process finished first.
        Err(_) if dir.join("rotel").join("rotel-agent").is_file() => Ok(()),
        Err(e) => Err(format!("moving rotel into {}: {e}", dir.display())),
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = metadata.permissions().mode();
    if mode & 0o111 == 0o111 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<(), String> {
    Ok(())
}

/// Two distinct ports that were free a moment ago.
pub fn free_ports() -> io::Result<(u16, u16)> {
    let first = TcpListener::bind(loopback(0))?;
    let second = TcpListener::bind(loopback(0))?;
    Ok((first.local_addr()?.port(), second.local_addr()?.port()))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// SIGTERM by pid, then SIGKILL once [`SHUTDOWN`] has passed.
fn terminate(child: &mut Child) {
    let asked = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let deadline = Instant::now() + SHUTDOWN;
    while asked && Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------
// Parsing the debug log

/// Lines of the block that take no free text after their `#`.
const NUMBERED: &[&str] = &[
    "ResourceSpans #",
    "ResourceLog #",
    "ResourceMetrics #",
    "ScopeSpans #",
    "ScopeLogs #",
    "ScopeMetrics #",
    "Span #",
    "SpanEvent #",
    "SpanLink #",
    "LogRecord #",
    "Metric #",
    "NumberDataPoints #",
    "HistogramDataPoints #",
    "ExponentialHistogramDataPoints #",
    "SummaryDataPoints #",
    "Exemplar #",
];

/// Section headers, alone on their line.
const HEADERS: &[&str] = &[
    "Resource attributes:",
    "InstrumentationScope attributes:",
    "Attributes:",
    "Events:",
    "Links:",
    "Descriptor:",
    "Data point attributes:",
    "Exemplars:",
];

/// `Label: value` lines whose value is free text.
const TEXT_LABELS: &[&str] = &[
    "Resource SchemaURL",
    "ScopeSpans SchemaURL",
    "ScopeLogs SchemaURL",
    "ScopeMetrics SchemaURL",
    "SeverityText",
    "SeverityNumber",
    "EventName",
    "Body",
];

/// `Label: value` lines whose value is a number.
const NUMBER_LABELS: &[&str] = &[
    "Start time",
    "End time",
    "ObservedTimestamp",
    "Timestamp",
    "StartTimestamp",
    "Flags",
    "Value",
    "Count",
    "Sum",
    "Min",
    "Max",
];

/// Labels that start with these (`Buckets #3, Count: 1`).
const LABEL_PREFIXES: &[&str] = &[
    "ExplicitBounds #",
    "Buckets #",
    "Bucket ",
    "QuantileValue #",
];

/// The names in `    Name           : value` lines (padded to 15).
const FIELDS: &[&str] = &[
    "Trace ID",
    "Parent ID",
    "ID",
    "Name",
    "Kind",
    "Status code",
    "Status message",
    "Span ID",
];

/// The output as whole lines of the block: a line that cannot start one
/// continues a multi-line string, and the agent's own log lines are dropped.
fn logical_lines(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in output.split('\n') {
        let line = strip_ansi(raw);
        if is_agent_log(&line) {
            continue;
        }
        match lines.last_mut() {
            Some(last) if !is_block_line(&line) => {
                last.push('\n');
                last.push_str(&line);
            }
            _ => lines.push(line),
        }
    }
    lines
}

fn is_block_line(line: &str) -> bool {
    attribute(line).is_some()
        || field(line).is_some()
        || numbered(line).is_some()
        || HEADERS.contains(&line)
        || line.starts_with("InstrumentationScope ")
        || line.split_once(": ").is_some_and(|(label, value)| {
            TEXT_LABELS.contains(&label)
                || (NUMBER_LABELS.contains(&label) && value.parse::<f64>().is_ok())
                || LABEL_PREFIXES
                    .iter()
                    .any(|prefix| label.starts_with(prefix))
        })
}

/// `2026-11-21T09:52:49.397324Z  INFO Starting Rotel. ...`
fn is_agent_log(line: &str) -> bool {
    let bytes = line.as_bytes();
    let stamp = bytes.len() > 20
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':';
    stamp
        && line.split_once("Z ").is_some_and(|(_, rest)| {
            let level = rest.trim_start();
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .iter()
                .any(|name| level.starts_with(name))
        })
}

/// Drops `ESC [ ... letter` colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `     -> key: value` (depth 5) or, nested in events and links, at depth 10.
/// Headers such as `     -> Attributes::` come back with an empty value.
fn attribute(line: &str) -> Option<(usize, &str, &str)> {
    let rest = line.trim_start_matches(' ');
    let depth = line.len() - rest.len();
    let body = rest.strip_prefix("-> ")?;
    if depth != 5 && depth != 10 {
        return None;
    }
    let (key, value) = body
        .split_once(": ")
        .or_else(|| body.strip_suffix(':').map(|key| (key, "")))?;
    Some((depth, key, value))
}

/// `    Trace ID       : value`.
fn field(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("    ")?;
    let (padded, value) = rest.split_once(": ")?;
    let name = padded.trim_end();
    (padded.len() == 15 && FIELDS.contains(&name)).then_some((name, value))
}

/// `Span #3` gives `Span #`.
fn numbered(line: &str) -> Option<&'static str> {
    NUMBERED.iter().copied().find(|prefix| {
        line.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// A printed value as a plain string: `Str(a b)` is `a b`, `Int(5)` is `5`.
fn render(raw: &str) -> String {
    if raw == "Empty" {
        return String::new();
    }
    ["Str(", "Int(", "Double(", "Bool("]
        .iter()
        .find_map(|prefix| raw.strip_prefix(prefix)?.strip_suffix(')'))
        .unwrap_or(raw)
        .to_string()
}

/// `SPAN_KIND_CLIENT` with prefix `SPAN_KIND_` is `client`.
fn short(value: &str, prefix: &str) -> String {
    value
        .strip_prefix(prefix)
        .unwrap_or(value)
        .to_ascii_lowercase()
}

fn metric_kind(data_type: &str) -> String {
    match data_type {
        "ExponentialHistogram" => "exponential_histogram".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// `SEVERITY_NUMBER_INFO(9)` is 9.
fn severity_number(value: &str) -> i32 {
    value
        .rsplit_once('(')
        .and_then(|(_, n)| n.strip_suffix(')'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

/// `InstrumentationScope <name> <version>`: the name.
fn scope_name(rest: &str) -> String {
    rest.rsplit_once(' ')
        .map_or(rest, |(name, _)| name)
        .to_string()
}

/// Where `     -> key: value` lines go.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Section {
    #[default]
    Ignored,
    Resource,
    ItemAttributes,
    SpanEvent,
    Descriptor,
    PointAttributes,
}

/// The record being filled in.
#[derive(Debug, Default)]
enum Item {
    #[default]
    None,
    Span(SpanRec),
    Log(LogRec),
    Point(MetricPoint),
}

/// The current metric's descriptor, copied into each of its points.
#[derive(Debug, Default)]
struct Descriptor {
    name: String,
    unit: String,
    kind: String,
    monotonic: bool,
    temporality: String,
}

#[derive(Debug, Default)]
struct Parser {
    out: Received,
    resource: BTreeMap<String, String>,
    scope: String,
    section: Section,
    metric: Descriptor,
    item: Item,
}

impl Parser {
    fn line(&mut self, line: &str) {
        if let Some((depth, key, value)) = attribute(line) {
            self.attribute(depth, key, value);
        } else if let Some((name, value)) = field(line) {
            self.field(name, value);
        } else if let Some(kind) = numbered(line) {
            self.open(kind);
        } else if let Some(section) = header(line) {
            self.section = section;
        } else if let Some(rest) = line.strip_prefix("InstrumentationScope ") {
            self.scope = scope_name(rest);
        } else if let Some((label, value)) = line.split_once(": ") {
            self.labeled(label, value);
        }
    }

    /// A `Foo #n` line: finishes the record before it and opens the next.
    fn open(&mut self, kind: &str) {
        match kind {
            "SpanEvent #" => self.section = Section::SpanEvent,
            "SpanLink #" | "Exemplar #" => self.section = Section::Ignored,
            _ => {
                self.flush();
                self.section = Section::Ignored;
                self.begin(kind);
            }
        }
    }

    fn begin(&mut self, kind: &str) {
        let resource = self.resource.clone();
        let scope = self.scope.clone();
        match kind {
            "ResourceSpans #" | "ResourceLog #" | "ResourceMetrics #" => {
                self.resource.clear();
                self.scope.clear();
            }
            "ScopeSpans #" | "ScopeLogs #" | "ScopeMetrics #" => self.scope.clear(),
            "Metric #" => self.metric = Descriptor::default(),
            "Span #" => {
                self.item = Item::Span(SpanRec {
                    resource,
                    scope,
                    ..SpanRec::default()
                });
            }
            "LogRecord #" => {
                self.item = Item::Log(LogRec {
                    resource,
                    scope,
                    ..LogRec::default()
                });
            }
            _ => {
                let m = &self.metric;
                self.item = Item::Point(MetricPoint {
                    name: m.name.clone(),
                    unit: m.unit.clone(),
                    kind: m.kind.clone(),
                    temporality: m.temporality.clone(),
                    monotonic: m.monotonic,
                    resource,
                    scope,
                    ..MetricPoint::default()
                });
            }
        }
    }

    fn attribute(&mut self, depth: usize, key: &str, value: &str) {
        if depth != 5 {
            return; // an event's or a link's own attributes
        }
        let (key, rendered, raw) = (key.to_string(), render(value), value.to_string());
        match (self.section, &mut self.item) {
            (Section::Resource, _) => {
                self.resource.insert(key, rendered);
            }
            (Section::ItemAttributes, Item::Span(span)) => {
                span.attributes.insert(key.clone(), rendered);
                span.raw_attributes.insert(key, raw);
            }
            (Section::ItemAttributes, Item::Log(log)) => {
                log.attributes.insert(key.clone(), rendered);
                log.raw_attributes.insert(key, raw);
            }
            (Section::PointAttributes, Item::Point(point)) => {
                point.attributes.insert(key.clone(), rendered);
                point.raw_attributes.insert(key, raw);
            }
            (Section::SpanEvent, Item::Span(span)) if key == "Name" => span.events.push(raw),
            (Section::Descriptor, _) => self.descriptor(&key, value),
            _ => {}
        }
    }

    fn descriptor(&mut self, key: &str, value: &str) {
        let metric = &mut self.metric;
        match key {
            "Name" => metric.name = value.to_string(),
            "Unit" => metric.unit = value.to_string(),
            "DataType" => metric.kind = metric_kind(value),
            "IsMonotonic" => metric.monotonic = value == "true",
            "AggregationTemporality" => {
                metric.temporality = short(value, "AGGREGATION_TEMPORALITY_");
            }
            _ => {}
        }
    }

    /// A `    Name           : value` line of a span or a log record.
    fn field(&mut self, name: &str, value: &str) {
        let value = value.to_string();
        match (&mut self.item, name) {
            (Item::Span(span), "Trace ID") => span.trace_id = value,
            (Item::Span(span), "Parent ID") => span.parent_span_id = value,
            (Item::Span(span), "ID") => span.span_id = value,
            (Item::Span(span), "Name") => span.name = value,
            (Item::Span(span), "Kind") => span.kind = short(&value, "SPAN_KIND_"),
            (Item::Span(span), "Status code") => span.status_code = short(&value, "STATUS_CODE_"),
            (Item::Span(span), "Status message") => span.status_message = value,
            (Item::Log(log), "Trace ID") => log.trace_id = value,
            (Item::Log(log), "Span ID") => log.span_id = value,
            _ => {}
        }
    }

    /// A `Label: value` line at the start of the line.
    fn labeled(&mut self, label: &str, value: &str) {
        let nanos = || value.parse::<u64>().unwrap_or_default();
        match (&mut self.item, label) {
            (Item::Span(span), "Start time") => span.start_ns = nanos(),
            (Item::Span(span), "End time") => span.end_ns = nanos(),
            (Item::Log(log), "Timestamp") => log.time_ns = nanos(),
            (Item::Log(log), "ObservedTimestamp") => log.observed_time_ns = nanos(),
            (Item::Log(log), "SeverityText") => log.severity_text = value.to_string(),
            (Item::Log(log), "SeverityNumber") => log.severity_number = severity_number(value),
            (Item::Log(log), "EventName") => log.event_name = value.to_string(),
            (Item::Log(log), "Body") => log.body = render(value),
            (Item::Point(point), _) => point_line(point, label, value),
            _ => {}
        }
    }

    fn flush(&mut self) {
        match std::mem::take(&mut self.item) {
            Item::None => {}
            Item::Span(span) => self.out.spans.push(span),
            Item::Log(log) => self.out.logs.push(log),
            Item::Point(point) => self.out.metrics.push(point),
        }
    }

    fn finish(mut self) -> Received {
        self.flush();
        self.out
    }
}

fn header(line: &str) -> Option<Section> {
    match line {
        "Resource attributes:" => Some(Section::Resource),
        "Attributes:" => Some(Section::ItemAttributes),
        "Data point attributes:" => Some(Section::PointAttributes),
        "Descriptor:" => Some(Section::Descriptor),
        "Events:" | "Links:" | "Exemplars:" | "InstrumentationScope attributes:" => {
            Some(Section::Ignored)
        }
        _ => None,
    }
}

fn point_line(point: &mut MetricPoint, label: &str, value: &str) {
    let number = || value.parse::<f64>().unwrap_or_default();
    let whole = || value.parse::<u64>().unwrap_or_default();
    match label {
        "StartTimestamp" => point.start_ns = whole(),
        "Timestamp" => point.time_ns = whole(),
        "Value" | "Sum" => point.value = number(),
        "Count" => point.count = whole(),
        _ if label.starts_with("ExplicitBounds #") => point.bounds.push(number()),
        _ if label.starts_with("Buckets #") => point.bucket_counts.push(whole()),
        _ => {}
    }
}

/// Reading what the embedded default wrote: the same records, from the OTLP-JSON
/// lines files (`logs.jsonl`, `traces.jsonl`, `metrics.jsonl`, rotated files too).
impl Received {
    pub fn from_otlp_json_dir(dir: &Path) -> Received {
        let mut received = Received::default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).expect("read OTLP-JSON file");
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let request: serde_json::Value =
                    serde_json::from_str(line).expect("each line is one OTLP-JSON request");
                json_request(&request, &mut received);
            }
        }
        received
    }
}

fn json_request(request: &serde_json::Value, received: &mut Received) {
    use serde_json::Value;
    let list = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    for rs in list(request, "resourceSpans") {
        let resource = json_attributes(&rs["resource"]["attributes"]);
        for ss in list(&rs, "scopeSpans") {
            for span in list(&ss, "spans") {
                received.spans.push(SpanRec {
                    trace_id: json_str(&span["traceId"]),
                    span_id: json_str(&span["spanId"]),
                    parent_span_id: json_str(&span["parentSpanId"]),
                    name: json_str(&span["name"]),
                    kind: match span["kind"].as_i64() {
                        Some(1) => "internal",
                        Some(3) => "client",
                        _ => "other",
                    }
                    .to_owned(),
                    start_ns: json_u64(&span["startTimeUnixNano"]),
                    end_ns: json_u64(&span["endTimeUnixNano"]),
                    attributes: json_attributes(&span["attributes"]),
                    status_code: match span["status"]["code"].as_i64() {
                        Some(2) => "error",
                        Some(1) => "ok",
                        _ => "unset",
                    }
                    .to_owned(),
                    status_message: json_str(&span["status"]["message"]),
                    scope: json_str(&ss["scope"]["name"]),
                    resource: resource.clone(),
                    ..SpanRec::default()
                });
            }
        }
    }
    for rl in list(request, "resourceLogs") {
        let resource = json_attributes(&rl["resource"]["attributes"]);
        for sl in list(&rl, "scopeLogs") {
            for log in list(&sl, "logRecords") {
                received.logs.push(LogRec {
                    time_ns: json_u64(&log["timeUnixNano"]),
                    observed_time_ns: json_u64(&log["observedTimeUnixNano"]),
                    trace_id: json_str(&log["traceId"]),
                    span_id: json_str(&log["spanId"]),
                    event_name: json_str(&log["eventName"]),
                    severity_text: json_str(&log["severityText"]),
                    body: json_any(&log["body"]),
                    attributes: json_attributes(&log["attributes"]),
                    scope: json_str(&sl["scope"]["name"]),
                    resource: resource.clone(),
                    ..LogRec::default()
                });
            }
        }
    }
    for rm in list(request, "resourceMetrics") {
        let resource = json_attributes(&rm["resource"]["attributes"]);
        for sm in list(&rm, "scopeMetrics") {
            for metric in list(&sm, "metrics") {
                let (kind, data) = if metric["sum"].is_object() {
                    ("sum", &metric["sum"])
                } else if metric["histogram"].is_object() {
                    ("histogram", &metric["histogram"])
                } else {
                    ("gauge", &metric["gauge"])
                };
                for point in list(data, "dataPoints") {
                    let value = if kind == "histogram" {
                        point["sum"].as_f64().unwrap_or(0.0)
                    } else if let Some(int) = point.get("asInt") {
                        json_u64(int) as f64
                    } else {
                        point["asDouble"].as_f64().unwrap_or(0.0)
                    };
                    received.metrics.push(MetricPoint {
                        name: json_str(&metric["name"]),
                        unit: json_str(&metric["unit"]),
                        kind: kind.to_owned(),
                        value,
                        count: json_u64(&point["count"]),
                        attributes: json_attributes(&point["attributes"]),
                        start_ns: json_u64(&point["startTimeUnixNano"]),
                        time_ns: json_u64(&point["timeUnixNano"]),
                        temporality: match data["aggregationTemporality"].as_i64() {
                            Some(1) => "delta",
                            Some(2) => "cumulative",
                            _ => "",
                        }
                        .to_owned(),
                        monotonic: data["isMonotonic"].as_bool().unwrap_or(false),
                        scope: json_str(&sm["scope"]["name"]),
                        resource: resource.clone(),
                        ..MetricPoint::default()
                    });
                }
            }
        }
    }
}

fn json_str(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// OTLP/JSON writes 64-bit integers as strings.
fn json_u64(value: &serde_json::Value) -> u64 {
    match value {
        serde_json::Value::String(text) => text.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    }
}

fn json_any(value: &serde_json::Value) -> String {
    if let Some(text) = value["stringValue"].as_str() {
        return text.to_owned();
    }
    if let Some(int) = value.get("intValue") {
        return json_u64(int).to_string();
    }
    if let Some(b) = value["boolValue"].as_bool() {
        return b.to_string();
    }
    if let Some(f) = value["doubleValue"].as_f64() {
        return f.to_string();
    }
    if let Some(items) = value["arrayValue"]["values"].as_array() {
        return items.iter().map(json_any).collect::<Vec<_>>().join(",");
    }
    String::new()
}

fn json_attributes(value: &serde_json::Value) -> BTreeMap<String, String> {
    value
        .as_array()
        .map(|attrs| {
            attrs
                .iter()
                .map(|kv| (json_str(&kv["key"]), json_any(&kv["value"])))
                .collect()
        })
        .unwrap_or_default()
}
