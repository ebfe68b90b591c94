#!/usr/bin/env python3
"""Events per second through `ccotel run --receiver`: Claude Code-shaped events
sent by the OpenTelemetry JavaScript SDK (the exporter Claude Code uses) over
OTLP/HTTP-protobuf, joined to the transcript, and written by the embedded
default (OTLP-JSON files).

Usage: benches/receiver.py --bin target/release/ccotel [--events 100000] [--runs 5]

Each run starts ccotel on a fresh home holding tests/fixtures/native/session.jsonl,
waits until it has read it, then sends the 9 joinable events of
tests/fixtures/native/redacted.json repeated to --events, in batches of 512 (the
SDK's default). It times from the start of the send until the last event is in
the output files, and reads ccotel's CPU time and peak RSS from /proc.

For scale, the same client sends the same events straight to rotel (blackhole
exporter) in the same run: the client's own speed, which bounds what any
receiver can show here.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ports import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "native")
TRANSCRIPT = "-home-dev-shop/5b1c0f5e-7a55-4b55-9e3e-2b8f0c1d9a01.jsonl"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def count_native(logs):
    """Native records in the logs files so far, rotated ones included (their
    body is claude_code.<event>)."""
    folder, total = os.path.dirname(logs), 0
    for name in os.listdir(folder):
        if name.startswith("logs"):
            with open(os.path.join(folder, name), "rb") as f:
                total += f.read().count(b'"stringValue":"claude_code.')
    return total


def bench_fixture(tmp, events):
    with open(os.path.join(FIXTURES, "redacted.json")) as f:
        fixture = json.load(f)
    # Leave out the record that never joins: it would wait its full 5 s.
    fixture["logs"] = [l for l in fixture["logs"]
                       if l["attributes"].get("tool_use_id") != "toolu_01ZZZ_NOT_IN_TRANSCRIPT"]
    fixture.pop("spans")
    fixture.pop("metrics")
    repeat = events // len(fixture["logs"])
    path = os.path.join(tmp, "bench.json")
    with open(path, "w") as f:
        json.dump(fixture, f)
    return path, repeat * len(fixture["logs"]), repeat


def send(sdk, fixture, repeat, endpoint):
    started = time.monotonic()
    out = subprocess.run(
        ["node", os.path.join(ROOT, "tests/support/native_export.mjs"), "--fixture", fixture,
         "--protocol", "http/protobuf", "--endpoint", endpoint, "--repeat", str(repeat),
         "--batch", "512"],
        env=dict(os.environ, CCOTEL_OTEL_JS=sdk), capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"native exporter failed: {out.stderr}")
    return time.monotonic() - started


def through_ccotel(binary, sdk, fixture, repeat, expected):
    with tempfile.TemporaryDirectory() as tmp:
        home = os.path.join(tmp, "home")
        project = os.path.join(home, ".claude", "projects", os.path.dirname(TRANSCRIPT))
        os.makedirs(project)
        with open(os.path.join(FIXTURES, "session.jsonl"), "rb") as src, \
                open(os.path.join(home, ".claude", "projects", TRANSCRIPT), "wb") as dst:
            dst.write(src.read())
        data = os.path.join(tmp, "data")
        grpc, http = free_port(), free_port()
        env = {"HOME": home, "PATH": os.environ["PATH"], "CCOTEL_STATE_DIR": os.path.join(tmp, "state"),
               "CCOTEL_DATA_DIR": data}
        ccotel = subprocess.Popen(
            [binary, "run", "--receiver", "--receiver-grpc", f"127.0.0.1:{grpc}",
             "--receiver-http", f"127.0.0.1:{http}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_port(http)
        logs = os.path.join(data, "otlp", "logs.jsonl")
        deadline = time.time() + 20
        while not (os.path.exists(logs) and b"transcript.user" in open(logs, "rb").read()):
            if time.time() > deadline:
                sys.exit("ccotel never wrote the transcript's records")
            time.sleep(0.05)
        cpu_before = cpu_seconds(ccotel.pid)
        started = time.monotonic()
        client = send(sdk, fixture, repeat, f"http://127.0.0.1:{http}")
        while count_native(logs) < expected:
            if time.monotonic() - started > 120:
                sys.exit(f"only {count_native(logs)} of {expected} events arrived")
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(ccotel.pid) - cpu_before
        rss = peak_rss_mib(ccotel.pid)
        ccotel.terminate()
        _, stderr = ccotel.communicate(timeout=30)
        joined = [l for l in stderr.splitlines() if "forwarded" in l]
        return elapsed, client, cpu, rss, joined[-1] if joined else stderr[-500:]


def straight_to_rotel(sdk, fixture, repeat):
    agent = subprocess.run([os.path.join(ROOT, "scripts/install-rotel.sh")], check=True,
                           capture_output=True, text=True).stdout.strip()
    grpc, http = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        rotel = subprocess.Popen(
            [agent, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
             "--otlp-http-endpoint", f"127.0.0.1:{http}", "--exporter", "blackhole",
             "--pid-file", os.path.join(tmp, "pid"), "--log-file", os.path.join(tmp, "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(http)
            return send(sdk, fixture, repeat, f"http://127.0.0.1:{http}")
        finally:
            rotel.terminate()
            rotel.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    sdk = subprocess.run([os.path.join(ROOT, "scripts/install-otel-js.sh")], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        fixture, events, repeat = bench_fixture(tmp, a.events)
        rates, cpus, rsss, direct = [], [], [], []
        for run in range(a.runs):
            elapsed, client, cpu, rss, summary = through_ccotel(a.bin, sdk, fixture, repeat, events)
            rates.append(events / elapsed)
            cpus.append(cpu)
            rsss.append(rss)
            direct_s = straight_to_rotel(sdk, fixture, repeat)
            direct.append(events / direct_s)
            print(f"run {run + 1}: {events} events in {elapsed:.2f} s = {events / elapsed:,.0f}/s "
                  f"(client done at {client:.2f} s); ccotel CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB; "
                  f"client straight to rotel {events / direct_s:,.0f}/s; {summary}")
        print(f"median through ccotel: {statistics.median(rates):,.0f} events/s; "
              f"ccotel CPU per 100k events: {statistics.median(cpus) * 100_000 / events:.2f} s; "
              f"peak RSS {statistics.median(rsss):.0f} MiB; "
              f"client straight to rotel: {statistics.median(direct):,.0f} events/s; "
              f"ratio {statistics.median(rates) / statistics.median(direct):.2f}")


if __name__ == "__main__":
    main()
