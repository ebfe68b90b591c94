#!/usr/bin/env python3
"""Bounded memory on hostile inputs: one 1 GB transcript, and one transcript with a
50 MB line, each scanned with `ccotel report daily --json --full` under
/usr/bin/time. Prints wall time, peak RSS, and checks the usage after the long
line is still counted.

Usage: python3 benches/big_inputs.py --corpus DIR [--bin target/release/ccotel] [--gb 1.0]

DIR is a gen_corpus.py corpus whose files are concatenated (newline-safe) into the
1 GB file.
"""
import argparse
import json
import os
import subprocess
import tempfile


def measure(binary, home):
    env = dict(os.environ, HOME=home, CLAUDE_CONFIG_DIR=os.path.join(home, ".claude"), TZ="UTC")
    with tempfile.NamedTemporaryFile("r") as t:
        out = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name, binary, "report", "daily",
                              "--json", "--full"], env=env, check=True, capture_output=True).stdout
        seconds, kib = t.read().split()[-2:]
    return float(seconds), int(kib) / 1024, json.loads(out)["totals"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--bin", default="target/release/ccotel")
    ap.add_argument("--gb", type=float, default=1.0)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    sources = []
    for root, _, names in os.walk(os.path.join(a.corpus, ".claude")):
        sources += [os.path.join(root, n) for n in names if n.endswith(".jsonl")]
    sources.sort()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        home = os.path.join(tmp, "big")
        os.makedirs(os.path.join(home, ".claude/projects/-big"))
        target = int(a.gb * 1e9)
        written = 0
        with open(os.path.join(home, ".claude/projects/-big/big.jsonl"), "wb") as out:
            while written < target:
                for src in sources:
                    data = open(src, "rb").read()
                    if not data.endswith(b"\n"):
                        data += b"\n"
                    out.write(data)
                    written += len(data)
                    if written >= target:
                        break
        seconds, rss, totals = measure(binary, home)
        print(f"one {written / 1e9:.2f} GB file: {seconds:.2f} s, {written / 1e6 / seconds:.0f} MB/s, "
              f"peak RSS {rss:.1f} MB, {totals['totalTokens']} tokens")

        home = os.path.join(tmp, "longline")
        os.makedirs(os.path.join(home, ".claude/projects/-long"))
        line = {"type": "user", "sessionId": "s", "timestamp": "2025-11-01T12:00:00.000Z",
                "message": {"role": "user", "content": [{"type": "image", "source": {
                    "type": "base64", "media_type": "image/png", "data": "A" * 50_000_000}}]}}
        answer = {"type": "assistant", "sessionId": "s", "timestamp": "2025-11-01T12:00:01.000Z",
                  "requestId": "req_1", "message": {"id": "msg_1", "model": "claude-opus-4-6",
                                                    "content": [{"type": "text", "text": "a cat"}],
                                                    "usage": {"input_tokens": 70000, "output_tokens": 3}}}
        with open(os.path.join(home, ".claude/projects/-long/s.jsonl"), "w") as out:
            out.write(json.dumps(line) + "\n" + json.dumps(answer) + "\n")
        seconds, rss, totals = measure(binary, home)
        assert totals["inputTokens"] == 70000 and totals["outputTokens"] == 3, totals
        print(f"one 50 MB line: {seconds:.2f} s, peak RSS {rss:.1f} MB, usage after it counted")


if __name__ == "__main__":
    main()
