#!/usr/bin/env python3
"""Where a changed rerun's time goes, from ccotel's own debug timeline.

Usage: python3 benches/append_timeline.py --corpus DIR BIN [BIN ...]
       [--rounds 15] [--mb 1 | --sizes 0.1,1,4,10] [--unchanged]
       [--response-bytes N] [--faults]

DIR holds `.claude/projects` (a gen_corpus.py corpus). It is copied once; each
binary gets its own state. Each binary in turn runs `--rounds` rounds on the
copy: append MB across 10 files, then `report daily --json` with
`CCOTEL_LOG=ccotel=debug`. The phases are read from the events the run logs
(elapsed since the run began, in the process):

  listed   the state loaded and the transcripts listed (as in an unchanged rerun)
  read     from then to the files read: the plan, the new lines, the merge;
           of which, where the run logs them, `sort` (the listing sorted and
           deduplicated) and `plan` (compared with the manifest file by file),
           and `merge` (the new responses merged into the saved ledger)
  open     the saved ledger's file checked and opened, timed from the start
           of its restore, beside the read
  replay   then its journal's changes applied (the rest of the restore)
  commit   from the commit prepared to the state saved: the journal record
           written and synced (the fdatasync is most of it), beside the report
  tail     from the state saved to the report cached: what the run still does
           once the commit is on disk
  report   from the commit prepared to the report cached: the tally brought up
           to date, the rows, the JSON, the cache entry (the journal is written
           and synced meanwhile, on another thread)
  process  the whole process, timed from Python

Appended responses are as large as the corpus's (`bytes / api_calls` in its
truth.json), as in append_cost.py; `--response-bytes` sets their size instead
(2,240 bytes makes 1 MB about 450 responses, as append_ab.py appends).

With --unchanged, each round also times an unchanged rerun just after the
changed one: `unchanged`, and `extra`, the changed run's time less it, round by
round (the median of the differences).

With --sizes (MB, comma-separated, implies --unchanged), each binary runs
`--rounds` rounds at each size in turn, and the medians of `extra` are fitted
with a line, extra = constant + slope × MB (least squares): what a changed run
costs beyond an unchanged one, split into what grows with the new bytes and
what does not.

With --faults, each round is also run under `perf stat -e page-faults` (a
second changed rerun per round) and the median count printed. Medians over the
rounds; run the binaries more than once, alternated, on a noisy machine.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from append_cost import append_bytes, append_targets, corpus_bytes_per_response, transcripts  # noqa: E402

EVENT = re.compile(r"DEBUG (.+?) elapsed=([\d.]+)(ms|µs|s)\b")


def events(stderr):
    found = {}
    for match in EVENT.finditer(stderr):
        value = float(match.group(2))
        found[match.group(1)] = {"ms": value, "µs": value / 1000, "s": value * 1000}[match.group(3)]
    return found


def phases(found):
    listed = found["state loaded and transcripts listed"]
    measured = {
        "listed": listed,
        "read": found["files read"] - listed,
        "report": found["report cached"] - found["commit prepared"],
        "commit": found["state saved"] - found["commit prepared"],
        "tail": found["report cached"] - found["state saved"],
    }
    if "ledger file checked and opened" in found:
        measured["open"] = found["ledger file checked and opened"]
        if "ledger journal applied" in found:
            measured["replay"] = found["ledger journal applied"] - measured["open"]
    # Both timed from the start of the read, not of the run.
    if "saved ledger restored" in found and "merged into the saved ledger" in found:
        measured["merge"] = found["merged into the saved ledger"] - found["saved ledger restored"]
    # Logged since c5e98ba; before it, "planned" was timed from another start.
    if "listing sorted" in found and "planned" in found:
        measured["sort"] = found["listing sorted"] - listed
        measured["plan"] = found["planned"] - found["listing sorted"]
    return measured


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--response-bytes", type=int, help="bytes per appended response line")
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("--sizes", help="MB per round, comma-separated: fit extra against MB")
    ap.add_argument("--unchanged", action="store_true",
                    help="after each changed run, time an unchanged rerun and report the difference")
    a = ap.parse_args()
    sizes = [float(size) for size in a.sizes.split(",")] if a.sizes else [a.mb]
    unchanged = a.unchanged or a.sizes is not None
    response_bytes = a.response_bytes or corpus_bytes_per_response(a.corpus)
    with tempfile.TemporaryDirectory() as tmp:
        home = os.path.join(tmp, "home")
        shutil.copytree(a.corpus, home)
        targets = append_targets(transcripts(home))
        for index, binary in enumerate(a.binaries):
            env = dict(os.environ, HOME=home, CLAUDE_CONFIG_DIR=os.path.join(home, ".claude"), TZ="UTC",
                       CCOTEL_STATE_DIR=os.path.join(tmp, f"state{index}"), CCOTEL_LOG="ccotel=debug")
            command = [os.path.abspath(binary), "report", "daily", "--json"]
            subprocess.run(command, env=env, check=True, capture_output=True)
            extra_by_size = []
            for mb in sizes:
                measured = measure(a, command, env, targets, mb, response_bytes, unchanged)
                medians = ", ".join(f"{name} {statistics.median(values):.2f}" + ("" if name == "faults" else " ms")
                                    for name, values in measured.items() if values)
                print(f"{binary}: {a.rounds} rounds of {mb:g} MB: {medians}")
                if measured["extra"]:
                    extra_by_size.append((mb, statistics.median(measured["extra"])))
            if len(extra_by_size) > 1:
                constant, slope = fit_line(extra_by_size)
                print(f"{binary}: extra = {constant:.2f} ms + {slope:.3f} ms per MB "
                      f"(least squares over {len(extra_by_size)} sizes)")


def measure(a, command, env, targets, mb, response_bytes, unchanged):
    """One binary's rounds at one size: each phase's values, round by round."""
    measured = {name: [] for name in ("listed", "read", "sort", "plan", "merge", "open", "replay", "report",
                                      "commit", "tail", "process", "unchanged", "extra", "faults")}
    for _ in range(a.rounds):
        append_bytes(targets, int(mb * 1e6), response_bytes)
        start = time.perf_counter()
        run = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        measured["process"].append((time.perf_counter() - start) * 1000)
        for name, value in phases(events(run.stderr)).items():
            measured[name].append(value)
        if unchanged:
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            measured["unchanged"].append((time.perf_counter() - start) * 1000)
            measured["extra"].append(measured["process"][-1] - measured["unchanged"][-1])
        if a.faults:
            append_bytes(targets, int(mb * 1e6), response_bytes)
            perf = subprocess.run(["perf", "stat", "-x,", "-e", "page-faults", *command], env=env,
                                  check=True, capture_output=True, text=True)
            measured["faults"].append(int(perf.stderr.strip().splitlines()[-1].split(",")[0]))
    return measured


def fit_line(points):
    """Least-squares constant and slope of y against x."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in points)
             / sum((x - mean_x) ** 2 for x in xs))
    return mean_y - slope * mean_x, slope


if __name__ == "__main__":
    main()
