#!/usr/bin/env python3
"""Two binaries' rerun after a small append, alternated round by round on one
corpus, each on its own copy and state: for changes whose effect is smaller than
this machine's drift between two append_cost.py runs.

Usage: python3 benches/append_ab.py --corpus DIR --old BIN --new BIN
       [--rounds 20] [--mb 0.1] [--one-copy]

DIR holds `.claude/projects` (a gen_corpus.py corpus, or one grown by earlier
appends). Each copy's state is made from scratch by its binary first. Each round
appends MB to 10 files of each copy, times a rerun of `report daily --json`, then
an unchanged rerun. Prints medians, the median of each round's difference
(append minus unchanged), and checks that both binaries print the same report at
the end.

With --one-copy, both binaries work on one copy, each with its own state: a
second copy of a large corpus (c11's 1 GB) listed several ms slower than the
first and decided the comparison. Each round, each binary in turn catches up
with the other's append (not timed), times an unchanged rerun, appends, and
times the rerun after it.

The binaries take turns going first, round by round: run in a fixed order, the
second was slower, even against itself.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from append_cost import append_bytes, append_targets, transcripts


def run(binary, home, state):
    env = dict(os.environ, HOME=home, CLAUDE_CONFIG_DIR=os.path.join(home, ".claude"),
               CCOTEL_STATE_DIR=state, TZ="UTC")
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
    parser.add_argument("--one-copy", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sides = []
        for name, binary in [("old", args.old), ("new", args.new)]:
            home = os.path.join(tmp, "shared" if args.one_copy else name)
            if not os.path.exists(home):
                shutil.copytree(os.path.join(args.corpus, ".claude"), os.path.join(home, ".claude"))
            state = os.path.join(tmp, f"state-{name}")
            run(binary, home, state)
            sides.append((name, binary, home, state, append_targets(transcripts(home))))
        times = {f"{name} {kind}": [] for name, *_ in sides for kind in ("append", "unchanged")}
        for round_ in range(args.rounds):
            # Whichever binary ran second was slower, the same binary against
            # itself included (0.2-1.3 ms on c7): each goes first every other round.
            for name, binary, home, state, files in sides[::-1] if round_ % 2 else sides:
                if args.one_copy:
                    run(binary, home, state)  # the other binary's append
                    times[f"{name} unchanged"].append(run(binary, home, state)[0])
                    append_bytes(files, int(args.mb * 1_000_000))
                    times[f"{name} append"].append(run(binary, home, state)[0])
                else:
                    append_bytes(files, int(args.mb * 1_000_000))
                    times[f"{name} append"].append(run(binary, home, state)[0])
                    times[f"{name} unchanged"].append(run(binary, home, state)[0])
        for key, values in times.items():
            print(f"{key:16} median {statistics.median(values) * 1000:7.2f} ms")
        for name, *_ in sides:
            differences = [a - u for a, u in zip(times[f"{name} append"], times[f"{name} unchanged"])]
            print(f"{name} append minus unchanged, median of rounds {statistics.median(differences) * 1000:+.2f} ms")
        reports = {run(binary, home, state)[1] for _, binary, home, state, _ in sides}
        if len(reports) != 1:
            raise SystemExit("the two binaries' reports differ")
        print("reports equal")


if __name__ == "__main__":
    main()
