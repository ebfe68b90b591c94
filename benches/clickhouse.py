#!/usr/bin/env python3
"""ClickHouse export: insert throughput of a whole-corpus backfill, and the
dashboards' query latency on the loaded data.

Usage: benches/clickhouse.py --bin target/release/ccotel --corpus DIR [--url URL] [--runs 20]

Without --url, starts the chdb HTTP front (tests/support/chdb_front.py, installed by
scripts/install-chdb.sh). Backfills the corpus into a fresh database, reports rows
per table, rows/s and transcript MB/s; then runs every panel of deploy/grafana/*.json
--runs times (macros filled in for all time) and reports each panel's p50 and p95.
"""
import argparse, glob, json, os, re, subprocess, sys, tempfile, time, urllib.request, urllib.parse

from ports import free_port

def query(url, sql):
    request = urllib.request.Request(url + "/?" + urllib.parse.urlencode({"default_format": "TabSeparated"}), data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read().decode()

def render(sql, database):
    sql = sql.replace("${database}", database).replace("${session_id}", "__SESSION__")
    sql = sql.replace("${after_ts}", "1970-01-01 00:00:00.000").replace("${after_uuid}", "")
    return re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= toDateTime64('2000-01-01 00:00:00', 3) AND \1 <= toDateTime64('2100-01-01 00:00:00', 3)", sql)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True); ap.add_argument("--corpus", required=True)
    ap.add_argument("--url"); ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    front = None
    url = a.url
    if not url:
        pythonpath = subprocess.run([os.path.join(root, "scripts/install-chdb.sh")], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        port = free_port()
        data = tempfile.mkdtemp()
        front = subprocess.Popen([sys.executable, os.path.join(root, "tests/support/chdb_front.py"), "--port", str(port), "--data", data],
                                 env={**os.environ, "PYTHONPATH": pythonpath}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/ping", timeout=1); break
            except OSError:
                time.sleep(0.1)
    try:
        database = f"bench_{os.getpid()}"
        state = tempfile.mkdtemp()
        size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(a.corpus, ".claude/projects/**/*.jsonl"), recursive=True))
        env = {"HOME": a.corpus, "PATH": os.environ["PATH"], "CCOTEL_STATE_DIR": state,
               "CCOTEL_CLICKHOUSE_URL": url, "CCOTEL_CLICKHOUSE_DATABASE": database}
        started = time.monotonic()
        subprocess.run([a.bin, "backfill"], env=env, check=True, stderr=subprocess.DEVNULL)
        elapsed = time.monotonic() - started
        tables = ["otel_logs", "otel_traces", "otel_metrics_sum", "otel_metrics_histogram",
                  "claude_messages", "claude_sessions", "claude_tool_usage", "claude_file_access"]
        counts = {t: int(query(url, f"SELECT count() FROM {database}.{t}")) for t in tables}
        rows = sum(counts.values())
        print(json.dumps({"corpus_mb": round(size / 1e6, 1), "seconds": round(elapsed, 2), "rows": rows,
                          "rows_per_s": round(rows / elapsed), "mb_per_s": round(size / 1e6 / elapsed, 1), "by_table": counts}))
        session = query(url, f"SELECT session_id FROM {database}.claude_messages GROUP BY session_id ORDER BY count() DESC LIMIT 1").strip()
        for path in sorted(glob.glob(os.path.join(root, "deploy/grafana/*.json"))):
            dashboard = json.load(open(path))
            for panel in dashboard["panels"]:
                sql = render(panel["targets"][0]["rawSql"], database).replace("__SESSION__", session)
                times = []
                for _ in range(a.runs):
                    t0 = time.monotonic(); query(url, sql); times.append((time.monotonic() - t0) * 1000)
                times.sort()
                print(json.dumps({"dashboard": dashboard["uid"], "panel": panel["title"],
                                  "p50_ms": round(times[len(times) // 2], 1), "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1)}))
    finally:
        if front:
            front.kill()

if __name__ == "__main__":
    main()
