#!/usr/bin/env python3
"""Incremental cost: a rerun over an unchanged corpus, and a rerun after 1 MB was
appended across 10 files, against a full scan of the same corpus, in one run.
With --sizes, the append is repeated at each size (in MB), to show how a rerun's
cost grows with the new bytes.

Usage: python3 benches/append_cost.py --corpus DIR [--runs 5] [--sizes 0.1,1,10]
       [--bin target/release/ccotel] [--response-bytes N]

DIR is a gen_corpus.py corpus; it is copied to a temporary directory first (the
original is not touched). Prints medians and ratios; each appended line is a new
API response with unique ids, so the rerun must also count them (checked).

A response's cost is mostly per response (decoding its usage, deduplicating it,
journaling it), so the appended lines are as dense in responses as the corpus:
each is padded to the corpus's bytes per API call (`bytes / api_calls` in its
truth.json; 2,240 bytes without one, as this bench used before).
`--response-bytes` sets it instead.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid

APPEND_FILES = 10
APPEND_BYTES = 1_000_000


def run(binary, home, state, *extra):
    env = dict(os.environ, HOME=home, CLAUDE_CONFIG_DIR=os.path.join(home, ".claude"), TZ="UTC",
               CCOTEL_STATE_DIR=state)
    start = time.perf_counter()
    out = subprocess.run([binary, "report", "daily", "--json", *extra], env=env, check=True,
                         capture_output=True).stdout
    return time.perf_counter() - start, json.loads(out)["totals"]


def response_line(session, output_tokens, size):
    msg = "msg_bench_" + uuid.uuid4().hex
    body = {"type": "assistant", "sessionId": session, "timestamp": "2025-11-01T12:00:00.000Z",
            "requestId": "req_bench_" + uuid.uuid4().hex, "uuid": str(uuid.uuid4()),
            "message": {"id": msg, "model": "claude-sonnet-4-5-20250929", "role": "assistant",
                        "content": [{"type": "text", "text": ""}],
                        "usage": {"input_tokens": 1, "output_tokens": output_tokens,
                                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}
    bare = len(json.dumps(body, separators=(",", ":"))) + 1
    body["message"]["content"][0]["text"] = "x" * max(0, size - bare)
    return json.dumps(body, separators=(",", ":")) + "\n"


def transcripts(home):
    """Every transcript under `home`/.claude, sorted by path."""
    files = []
    for root, _, names in os.walk(os.path.join(home, ".claude")):
        files += [os.path.join(root, name) for name in names if name.endswith(".jsonl")]
    return sorted(files)


def append_targets(files):
    """The files appended to: APPEND_FILES of them, spread over the sorted list."""
    return files[:: max(1, len(files) // APPEND_FILES)][:APPEND_FILES]


def append_bytes(files, total, response_bytes=2240):
    """Appends ~`total` bytes of new responses, each line about `response_bytes`
    long, across the files; returns output tokens added."""
    added = 0
    for path in files:
        chunk, size = [], 0
        while size < total // len(files):
            line = response_line("bench", 7, response_bytes)
            chunk.append(line)
            size += len(line)
            added += 7
        with open(path, "a") as f:
            f.write("".join(chunk))
    return added


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default="target/release/ccotel")
    ap.add_argument("--sizes", default="1", help="MB appended per round, comma-separated")
    ap.add_argument("--response-bytes", type=int, help="bytes per appended response line")
    a = ap.parse_args()
    response_bytes = a.response_bytes or corpus_bytes_per_response(a.corpus)
    binary = os.path.abspath(a.bin)
    with tempfile.TemporaryDirectory() as tmp:
        home = os.path.join(tmp, "home")
        shutil.copytree(a.corpus, home)
        state = os.path.join(tmp, "state")
        files = transcripts(home)
        corpus_mb = sum(os.path.getsize(f) for f in files) / 1e6
        targets = append_targets(files)
        run(binary, home, state)  # warm-up, fills the manifest
        sizes = [float(size) for size in a.sizes.split(",")]
        full, unchanged, appended = [], [], {size: [] for size in sizes}
        for _ in range(a.runs):
            full.append(run(binary, home, state, "--full")[0])
            unchanged.append(run(binary, home, state)[0])
            for size in sizes:
                before = run(binary, home, state)[1]["outputTokens"]
                added = append_bytes(targets, int(size * APPEND_BYTES), response_bytes)
                seconds, totals = run(binary, home, state)
                appended[size].append(seconds)
                assert totals["outputTokens"] == before + added, "appended responses were not all counted"
        f, u = statistics.median(full), statistics.median(unchanged)
        print(f"corpus: {len(files)} files, {corpus_mb:.1f} MB; {a.runs} rounds; "
              f"appended responses of {response_bytes} bytes")
        print(f"full scan (--full)              median {f * 1000:8.1f} ms  = {f * 1000 / corpus_mb:.2f} ms per MB")
        print(f"rerun, unchanged corpus         median {u * 1000:8.1f} ms  = {100 * u / f:5.1f}% of a full scan")
        for size in sizes:
            p = statistics.median(appended[size])
            print(f"rerun after {size:g} MB in 10 files  median {p * 1000:8.1f} ms  = {100 * p / f:5.1f}% of a full scan "
                  f"(new bytes: {100 * size / corpus_mb:.2f}% of the corpus; "
                  f"{(p - u) * 1000:+.1f} ms over the unchanged rerun)")
        if len(sizes) > 1:
            low, high = min(sizes), max(sizes)
            slope = (statistics.median(appended[high]) - statistics.median(appended[low])) / (high - low)
            print(f"each further MB appended ({low:g} to {high:g} MB): {slope * 1000:.2f} ms "
                  f"(a full scan: {f * 1000 / corpus_mb:.2f} ms per MB)")


def corpus_bytes_per_response(corpus):
    """The corpus's bytes per API call, from its truth.json; 2,240 without one."""
    try:
        with open(os.path.join(corpus, "truth.json")) as f:
            truth = json.load(f)
        return max(1000, round(truth["bytes"] / truth["api_calls"]))
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        return 2240


if __name__ == "__main__":
    main()
