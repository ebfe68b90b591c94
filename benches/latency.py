#!/usr/bin/env python3
"""Latency from a line appended to a transcript to its log record at a real
collector (rotel), with `ccotel run` on its default settings over OTLP/gRPC.

Usage: benches/latency.py --bin target/release/ccotel [--appends 600] [--interval-ms 50]

Starts rotel (scripts/install-rotel.sh) with its detailed debug log on stdout,
starts `ccotel run` on a fresh home, appends one user prompt carrying a unique
marker every interval, and times each marker's appearance in rotel's output.
Prints p50, p90, p99 and max in milliseconds.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from ports import free_port, wait_port

SESSION = "5a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"


def line(n):
    return json.dumps({
        "type": "user", "sessionId": SESSION, "uuid": f"00000000-0000-4000-8000-{n:012d}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "message": {"role": "user", "content": f"latency-probe-{n}-end"},
    }, separators=(",", ":")) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--appends", type=int, default=600)
    ap.add_argument("--interval-ms", type=int, default=50)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    agent = subprocess.run([os.path.join(root, "scripts/install-rotel.sh")], check=True,
                           capture_output=True, text=True).stdout.strip()
    grpc, http = free_port(), free_port()
    rotel = subprocess.Popen([agent, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
                              "--otlp-http-endpoint", f"127.0.0.1:{http}", "--exporter", "blackhole",
                              "--debug-log", "logs", "--debug-log-verbosity", "detailed"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "NO_COLOR": "1"}, bufsize=1)
    arrivals = {}

    def read():
        for text in rotel.stdout:
            at = time.monotonic()
            start = text.find("latency-probe-")
            if start >= 0:
                n = int(text[start + len("latency-probe-"):].split("-", 1)[0])
                arrivals.setdefault(n, at)

    threading.Thread(target=read, daemon=True).start()
    wait_port(grpc)
    home = tempfile.mkdtemp()
    path = os.path.join(home, ".claude/projects/-bench", f"{SESSION}.jsonl")
    os.makedirs(os.path.dirname(path))
    open(path, "w").close()
    env = {"HOME": home, "PATH": os.environ["PATH"], "CCOTEL_STATE_DIR": os.path.join(home, "state"),
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc}"}
    ccotel = subprocess.Popen([a.bin, "run"], env=env, stderr=subprocess.DEVNULL)
    try:
        appended = {}
        with open(path, "a") as f:
            # Probe 0 waits for ccotel to be up and following.
            f.write(line(0)); f.flush()
            deadline = time.time() + 30
            while 0 not in arrivals and time.time() < deadline:
                time.sleep(0.01)
            for n in range(1, a.appends + 1):
                appended[n] = time.monotonic()
                f.write(line(n)); f.flush()
                time.sleep(a.interval_ms / 1000)
        deadline = time.time() + 10
        while len([n for n in appended if n in arrivals]) < len(appended) and time.time() < deadline:
            time.sleep(0.05)
    finally:
        ccotel.terminate(); ccotel.wait(timeout=20)
        rotel.terminate(); rotel.wait(timeout=10)
    got = sorted((arrivals[n] - appended[n]) * 1000 for n in appended if n in arrivals)
    if not got:
        sys.exit("no probe arrived")
    pick = lambda q: got[min(len(got) - 1, int(q * len(got)))]
    print(json.dumps({"appends": len(appended), "arrived": len(got), "interval_ms": a.interval_ms,
                      "p50_ms": round(pick(0.50), 1), "p90_ms": round(pick(0.90), 1),
                      "p99_ms": round(pick(0.99), 1), "max_ms": round(got[-1], 1)}))


if __name__ == "__main__":
    main()
