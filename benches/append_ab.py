#!/usr/bin/env python3
"""Two binaries' rerun after a small append, alternated round by round on one
corpus, each on its own copy and state: for changes whose effect is smaller than
this machine's drift between two append_cost.py runs.

Usage: python3 benches/append_ab.py --corpus DIR --old BIN --new BIN
       [--rounds 20] [--mb 0.1]

DIR holds `.claude/projects` (a gen_corpus.py corpus, or one grown by earlier
appends). Each copy's state is made from scratch by its binary first. Each round
appends MB to 10 files of each copy, times a rerun of `report daily --json`, then
an unchanged rerun. Prints medians, and checks that both binaries print the same
report at the end.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from append_cost import append_bytes, append_targets, transcripts


def run(binary, home):
    env = dict(os.environ, HOME=home, CLAUDE_CONFIG_DIR=os.path.join(home, ".claude"),
               CCOTEL_STATE_DIR=os.path.join(home, "state"), TZ="UTC")
    start = time.perf_counter()
    out = subprocess.run([binary, "report", "daily", "--json"], env=env, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", required=True)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--mb", type=float, default=0.1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sides = []
        for name, binary in [("old", args.old), ("new", args.new)]:
            home = os.path.join(tmp, name)
            shutil.copytree(os.path.join(args.corpus, ".claude"), os.path.join(home, ".claude"))
            run(binary, home)
            sides.append((name, binary, home, append_targets(transcripts(home))))
        times = {f"{name} {kind}": [] for name, *_ in sides for kind in ("append", "unchanged")}
        for _ in range(args.rounds):
            for name, binary, home, files in sides:
                append_bytes(files, int(args.mb * 1_000_000))
                times[f"{name} append"].append(run(binary, home)[0])
                times[f"{name} unchanged"].append(run(binary, home)[0])
        for key, values in times.items():
            print(f"{key:16} median {statistics.median(values) * 1000:7.2f} ms")
        reports = {run(binary, home)[1] for _, binary, home, _ in sides}
        if len(reports) != 1:
            raise SystemExit("the two binaries' reports differ")
        print("reports equal")


if __name__ == "__main__":
    main()
