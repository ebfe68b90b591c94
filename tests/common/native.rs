//! Claude Code's own telemetry, for the receiver tests: a real OpenTelemetry
//! JavaScript SDK exporter (the SDK Claude Code exports with) driven by
//! `tests/support/native_export.mjs`, and `ccotel run --receiver` as a child
//! process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::collector::free_ports;
use super::{require, ClaudeHome};

/// The paired transcript and native exports in `tests/fixtures/native/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/native")
        .join(name)
}

/// The session the fixtures belong to.
pub const FIXTURE_SESSION: &str = "5b1c0f5e-7a55-4b55-9e3e-2b8f0c1d9a01";

/// Where the fixture transcript goes under `projects/`.
pub const FIXTURE_TRANSCRIPT: &str = "-home-dev-shop/5b1c0f5e-7a55-4b55-9e3e-2b8f0c1d9a01.jsonl";

/// The JS SDK exporter.
pub struct NativeClient {
    sdk: PathBuf,
}

impl NativeClient {
    /// Installs the SDK (`scripts/install-otel-js.sh`) if needed. `None` (a
    /// skip) when node or npm is missing; under `CI=true` a failure.
    pub fn install() -> Option<NativeClient> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-otel-js.sh");
        let output = Command::new("sh").arg(&script).output();
        let installed = output.as_ref().is_ok_and(|o| o.status.success());
        if !installed {
            if let Ok(output) = &output {
                eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            }
        }
        if !require("node with the OpenTelemetry JS SDK", installed) {
            return None;
        }
        let stdout = String::from_utf8_lossy(&output.ok()?.stdout).into_owned();
        let sdk = PathBuf::from(stdout.lines().last()?.trim());
        Some(NativeClient { sdk })
    }

    /// Sends a fixture's logs, spans and metrics; panics if any export failed.
    pub fn send(&self, fixture: &Path, protocol: &str, endpoint: &str, gzip: bool) {
        let mut command = Command::new("node");
        command
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/native_export.mjs"))
            .arg("--fixture")
            .arg(fixture)
            .args(["--protocol", protocol, "--endpoint", endpoint])
            .env("CCOTEL_OTEL_JS", &self.sdk);
        if gzip {
            command.arg("--gzip");
        }
        let output = command.output().expect("run node");
        assert!(
            output.status.success(),
            "the native exporter failed ({protocol} to {endpoint}): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A copy of a native fixture whose resource also carries `key = value`, so
/// each send can be told apart at the collector.
pub fn tagged_fixture(dir: &Path, name: &str, key: &str, value: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixture(name)).expect("read fixture");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    json["resource"][key] = serde_json::Value::String(value.to_owned());
    let path = dir.join(format!("{value}-{name}"));
    std::fs::write(&path, serde_json::to_vec(&json).expect("encode")).expect("write fixture");
    path
}

/// `ccotel run --receiver`, running.
pub struct ReceiverRun {
    child: Child,
    pub grpc: String,
    pub http: String,
}

impl ReceiverRun {
    /// Starts it on two free ports with `args` added, and waits until both
    /// accept connections.
    pub fn start(
        home: &ClaudeHome,
        state: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ReceiverRun {
        let (grpc_port, http_port) = free_ports().expect("free ports");
        let grpc = format!("127.0.0.1:{grpc_port}");
        let http = format!("127.0.0.1:{http_port}");
        let config = state.join("config.toml");
        std::fs::create_dir_all(state).expect("mkdir");
        std::fs::write(&config, "[export]\npoll_interval_ms = 100\n").expect("config");
        let mut command = home.ccotel(&state.join("state"));
        command
            .args(["run", "--receiver", "--config"])
            .arg(&config)
            .args(["--receiver-grpc", &grpc, "--receiver-http", &http])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start ccotel run --receiver");
        let mut run = ReceiverRun {
            child,
            grpc: format!("http://{grpc}"),
            http: format!("http://{http}"),
        };
        run.wait_listening(&[grpc, http]);
        run
    }

    fn wait_listening(&mut self, addrs: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in addrs {
            let addr: std::net::SocketAddr = addr.parse().expect("address");
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "ccotel exited ({status}) before listening: {}",
                        self.stderr()
                    );
                }
                assert!(Instant::now() < deadline, "ccotel never listened on {addr}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    }

    /// SIGTERM, then waits for a clean exit; returns what it printed.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let stderr = self.stderr();
                assert!(status.success(), "ccotel exited with {status}: {stderr}");
                return stderr;
            }
            assert!(
                Instant::now() < deadline,
                "ccotel did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ReceiverRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
