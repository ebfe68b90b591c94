//! A real ClickHouse engine for the integration tests, behind ClickHouse's own
//! HTTP interface.
//!
//! With `CCOTEL_TEST_CLICKHOUSE_URL` set (`http://host:8123`), [`ClickHouse`]
//! is that server, with `CCOTEL_TEST_CLICKHOUSE_USER` (default `default`) and
//! `CCOTEL_TEST_CLICKHOUSE_PASSWORD` (default empty). Otherwise it runs
//! `tests/support/chdb_front.py`: the ClickHouse 26.9 engine embedded by chdb
//! (PyPI `chdb-core==26.9.0`), answering the HTTP interface on a free loopback
//! port, with its database folder in a temporary directory that outlives
//! [`ClickHouse::stop`] and [`ClickHouse::restart`] (outage tests). See that
//! script for what it speaks; the Rust `clickhouse` crate 0.15 works against it
//! unchanged, lz4-compressed inserts, `insert_deduplication_token` and all.
//!
//! # Installing
//!
//! `scripts/install-chdb.sh` pip-installs chdb-core and lz4 (no other packages)
//! into `~/.cache/ccotel-test/chdb-26.9.0-lz4-4.4.5-pyXY` (under
//! `$XDG_CACHE_HOME` when set) on first use and prints that folder, which goes
//! on `PYTHONPATH`. It needs python3 3.9 or newer with pip and about 550 MB on
//! disk; each running front takes ~300 MB of memory and ~0.3 s to start. Without them [`ClickHouse::start`] skips the test, or fails it under
//! `CI=true`.
//!
//! # Differences from a server worth knowing
//!
//! - Statements run one at a time; `async_insert=1` inserts are synchronous.
//! - ClickHouse 26.x deduplicates inserts whenever the table keeps a
//!   deduplication log (`deduplicate_insert=enable` supersedes
//!   `insert_deduplicate=0`); that is the engine, not the front.
//! - A MergeTree `TTL` drops expired rows soon after the insert: rows dated
//!   long ago vanish from a table with a TTL, here as on a server.
//! - A wrong password is always Code 516 (AUTHENTICATION_FAILED, HTTP 403);
//!   recent servers answer a wrong password for `default` with Code 194
//!   (REQUIRED_PASSWORD, HTTP 401) instead.
//! - The LZ4 blocks' CityHash128 checksums are not verified.
//! - The harness's own requests speak plain HTTP only (no TLS).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The chdb-core release `scripts/install-chdb.sh` installs (ClickHouse 26.9).
pub const CHDB_VERSION: &str = "26.9.0";
/// How long the front gets to answer `/ping`; it usually takes under a second.
const STARTUP: Duration = Duration::from_secs(60);
/// How long one of the harness's own requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(20);

/// A ClickHouse to test against: the embedded engine (killed on drop) or the
/// server named by `CCOTEL_TEST_CLICKHOUSE_URL`.
pub struct ClickHouse {
    host: String,
    port: u16,
    user: String,
    password: String,
    front: Option<Front>,
}

/// The running `chdb_front.py`, its database folder and log.
struct Front {
    python_path: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// One HTTP response from ClickHouse.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl ClickHouse {
    /// The server in `CCOTEL_TEST_CLICKHOUSE_URL`, or else the embedded engine,
    /// installed if needed and started on a free port with an empty database
    /// folder, user `default` and no password. `None` (a skip) when that is
    /// impossible; under `CI=true` a failure instead.
    pub fn start() -> Option<ClickHouse> {
        Self::start_with_credentials("default", "")
    }

    /// Like [`ClickHouse::start`], but the embedded engine accepts only `user`
    /// with `password`. A real server keeps its own credentials.
    pub fn start_with_credentials(user: &str, password: &str) -> Option<ClickHouse> {
        if let Some(url) = std::env::var("CCOTEL_TEST_CLICKHOUSE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        {
            let (host, port) = parse_url(&url).unwrap_or_else(|why| panic!("{why}"));
            let env = |name: &str, default: &str| std::env::var(name).unwrap_or(default.into());
            return Some(ClickHouse {
                host,
                port,
                user: env("CCOTEL_TEST_CLICKHOUSE_USER", "default"),
                password: env("CCOTEL_TEST_CLICKHOUSE_PASSWORD", ""),
                front: None,
            });
        }
        let python_path = match install() {
            Ok(path) => path,
            Err(why) => {
                super::require(&format!("chdb {CHDB_VERSION} ({why})"), false);
                return None;
            }
        };
        let mut failure = String::new();
        // A free port can be taken between probing and binding: try again.
        for _ in 0..3 {
            let port = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|listener| listener.local_addr())
            {
                Ok(addr) => addr.port(),
                Err(e) => panic!("probing for a free loopback port: {e}"),
            };
            let mut clickhouse = ClickHouse {
                host: Ipv4Addr::LOCALHOST.to_string(),
                port,
                user: user.into(),
                password: password.into(),
                front: Some(Front {
                    python_path: python_path.clone(),
                    dir: tempfile::tempdir().expect("tempdir for chdb"),
                    child: None,
                }),
            };
            match clickhouse.spawn() {
                Ok(()) => return Some(clickhouse),
                Err(why) => failure = why,
            }
        }
        super::require(&format!("a running chdb front ({failure})"), false);
        None
    }

    /// `http://127.0.0.1:P`, for `clickhouse::Client::with_url`.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// Whether this is the embedded engine (which [`ClickHouse::stop`] can stop).
    pub fn is_embedded(&self) -> bool {
        self.front.is_some()
    }

    /// Runs `sql` and returns its TabSeparated result; panics with the server's
    /// error text when it fails.
    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql)
            .unwrap_or_else(|why| panic!("ClickHouse query failed: {sql}\n{why}"))
    }

    /// Runs `sql`; the TabSeparated result, or the error text (the server's
    /// `Code: N. DB::Exception: ...`, or why it could not be reached).
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        let response = self.request(&[], sql.as_bytes())?;
        if response.status == 200 {
            Ok(response.text())
        } else {
            Err(response.text().trim().to_owned())
        }
    }

    /// Creates a database named `<prefix>_<pid>_<n>`, unique within a shared
    /// real server, and returns its name.
    pub fn create_database(&self, prefix: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{}_{n}", std::process::id());
        self.query(&format!("CREATE DATABASE IF NOT EXISTS {name}"));
        name
    }

    /// A `POST /` with the URL parameters `params` and the body `body`, sent
    /// with this instance's credentials; any HTTP status is returned as is.
    pub fn request(&self, params: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
        let headers = [
            ("X-ClickHouse-User", self.user.as_str()),
            ("X-ClickHouse-Key", self.password.as_str()),
        ];
        self.raw_request("POST", params, &headers, body)
    }

    /// An HTTP request with exactly these headers (besides Host, Content-Length
    /// and Connection), e.g. to try other credentials.
    pub fn raw_request(
        &self,
        method: &str,
        params: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let mut target = String::from("/");
        for (i, (name, value)) in params.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            let _ = write!(target, "{}={}", encode(name), encode(value));
        }
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}:{}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.host,
            self.port,
            body.len()
        );
        for (name, value) in headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let address = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .map_err(|e| format!("connecting to {}: {e}", self.url()))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok();
        stream.set_write_timeout(Some(REQUEST_TIMEOUT)).ok();
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .map_err(|e| format!("sending to {}: {e}", self.url()))?;
        read_response(BufReader::new(stream))
            .map_err(|e| format!("reading from {}: {e}", self.url()))
    }

    /// Takes the embedded engine down (SIGKILL, an outage); its port refuses
    /// connections until [`ClickHouse::restart`]. A no-op for a real server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.front.as_mut().and_then(|front| front.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the embedded engine again on the same port and database folder,
    /// stopping it first if it runs. A no-op for a real server.
    pub fn restart(&mut self) {
        if self.front.is_none() {
            return;
        }
        self.stop();
        if let Err(why) = self.spawn() {
            panic!("restarting the chdb front on the same port failed: {why}");
        }
    }

    /// What the embedded front has logged (one line per request, and errors).
    pub fn log(&self) -> String {
        self.front
            .as_ref()
            .map(|front| {
                fs::read(front.log_path())
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port;
        let (user, password) = (self.user.clone(), self.password.clone());
        let front = self
            .front
            .as_mut()
            .expect("only the embedded engine spawns");
        let log = File::options()
            .create(true)
            .append(true)
            .open(front.log_path())
            .map_err(|e| format!("opening {}: {e}", front.log_path().display()))?;
        let log_too = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chdb_front.py");
        let child = Command::new("python3")
            .arg(&script)
            .args(["--port", &port.to_string()])
            .arg("--data")
            .arg(front.dir.path().join("data"))
            .args(["--user", &user, "--password", &password])
            .env("PYTHONPATH", &front.python_path)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too)
            .spawn()
            .map_err(|e| format!("spawning python3 {}: {e}", script.display()))?;
        front.child = Some(child);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            let front = self.front.as_mut().expect("embedded");
            let Some(child) = front.child.as_mut() else {
                return Err("the chdb front is not running".into());
            };
            if let Ok(Some(status)) = child.try_wait() {
                front.child = None;
                return Err(format!("the chdb front exited ({status}):\n{}", self.log()));
            }
            let ping = self.raw_request("GET", &[], &[], b"");
            if ping.is_ok_and(|response| response.status == 200) {
                return Ok(()); // `GET /` with no query: "Ok.", as `/ping`
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "the chdb front did not answer within {STARTUP:?}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Front {
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("front.log")
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The folder to put on `PYTHONPATH`, installed once per test process.
fn install() -> Result<PathBuf, String> {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PATH.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-chdb.sh");
        let output = Command::new("sh")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = stdout.lines().last().unwrap_or_default().trim();
        if !output.status.success() || dir.is_empty() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("{} failed: {}", script.display(), stderr.trim()));
        }
        Ok(PathBuf::from(dir))
    })
    .clone()
}

/// `http://host[:port][/]` into host and port.
fn parse_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("CCOTEL_TEST_CLICKHOUSE_URL={url}: only http:// URLs are supported")
    })?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port)) => port
            .parse()
            .map(|port| (host.to_owned(), port))
            .map_err(|_| format!("CCOTEL_TEST_CLICKHOUSE_URL={url}: bad port")),
        None => Ok((authority.to_owned(), 8123)),
    }
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Reads a response to a `Connection: close` request: status line, headers,
/// then the body by Content-Length, chunked, or up to the end.
fn read_response(mut reader: impl BufRead) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}
