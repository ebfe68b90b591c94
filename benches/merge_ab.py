#!/usr/bin/env python3
"""How long a changed run's merge into the saved ledger takes, binaries
alternated round by round on one copy of a corpus, each with its own state.

Usage: python3 benches/merge_ab.py --corpus DIR BIN [BIN ...] [--rounds 20] [--mb 1]

DIR holds `.claude/projects` (a gen_corpus.py corpus, or a copy grown by earlier
appends; it is appended to). Each round, each binary in turn catches up with the
others' appends (not measured), then MB is appended across 10 files and the
binary's `report daily --json` runs with `CCOTEL_LOG=ccotel=debug`; the merge is
the time from its "saved ledger restored" event to its "merged into the saved
ledger" event. Prints each binary's median.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from append_cost import append_bytes, append_targets, transcripts  # noqa: E402
from append_timeline import events  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--mb", type=float, default=1.0)
    a = ap.parse_args()
    targets = append_targets(transcripts(a.corpus))
    with tempfile.TemporaryDirectory() as tmp:
        def run(index, binary):
            env = dict(os.environ, HOME=a.corpus, CLAUDE_CONFIG_DIR=os.path.join(a.corpus, ".claude"), TZ="UTC",
                       CCOTEL_STATE_DIR=os.path.join(tmp, f"state{index}"), CCOTEL_LOG="ccotel=debug")
            return subprocess.run([os.path.abspath(binary), "report", "daily", "--json"], env=env, check=True,
                                  capture_output=True, text=True).stderr
        merges = {binary: [] for binary in a.binaries}
        for index, binary in enumerate(a.binaries):
            run(index, binary)
        for _ in range(a.rounds):
            for index, binary in enumerate(a.binaries):
                run(index, binary)
                append_bytes(targets, int(a.mb * 1e6))
                found = events(run(index, binary))
                merges[binary].append(found["merged into the saved ledger"] - found["saved ledger restored"])
        for binary, values in merges.items():
            print(f"{binary}: merge after {a.mb:g} MB, median of {a.rounds}: {statistics.median(values):.3f} ms")


if __name__ == "__main__":
    main()
