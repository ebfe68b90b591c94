#!/usr/bin/env python3
"""Binaries' unchanged rerun, alternated round by round on one corpus, each with
its own state: for changes to the rerun's fixed cost that are smaller than this
machine's drift between two compare.py runs.

Usage: python3 benches/rerun_ab.py --corpus DIR BIN [BIN ...] [--rounds 10] [--per 40]

DIR holds `.claude/projects` (a gen_corpus.py corpus). Each binary fills its own
state first (two runs), then each round times `--per` runs of
`report daily --json` of each binary in turn, spawned from Python as compare.py
spawns them. Prints each round's medians, then the median of the rounds and in
how many rounds each binary beat the first one.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def environment(corpus, state):
    return dict(os.environ, HOME=corpus, CLAUDE_CONFIG_DIR=os.path.join(corpus, ".claude"),
                CCOTEL_STATE_DIR=state, TZ="UTC")


def timed_ms(binary, env):
    start = time.perf_counter()
    subprocess.run([binary, "report", "daily", "--json"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per", type=int, default=40)
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="rerun-ab-")
    try:
        envs = []
        for index, binary in enumerate(args.binaries):
            env = environment(os.path.abspath(args.corpus), os.path.join(scratch, str(index)))
            for _ in range(2):
                timed_ms(binary, env)
            envs.append(env)
        medians = [[] for _ in args.binaries]
        for round_no in range(args.rounds):
            row = []
            for index, (binary, env) in enumerate(zip(args.binaries, envs)):
                median = statistics.median(timed_ms(binary, env) for _ in range(args.per))
                medians[index].append(median)
                row.append(f"{median:.2f}")
            print(f"round {round_no}: " + " ".join(row) + " ms", flush=True)
        for index, binary in enumerate(args.binaries):
            wins = sum(m < first for m, first in zip(medians[index], medians[0]))
            print(f"{binary}: median of rounds {statistics.median(medians[index]):.2f} ms"
                  + (f", faster than the first in {wins} of {args.rounds}" if index else ""))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
