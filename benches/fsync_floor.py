#!/usr/bin/env python3
"""The disk's floor under a changed rerun: one `fdatasync` of a journal record.

Usage: python3 benches/fsync_floor.py [--dir DIR] [--rounds 60] [--record-bytes 45000]

A changed report run commits by appending one record to the session state's
journal and syncing it (invariant 2: nothing counted is lost to a crash). This
times that sync alone, on the file system holding DIR (make it the state
directory's), two ways, alternated round by round:

  extend     the record appended past the file's end, as ccotel does: the
             file's size changes with the data
  overwrite  the record written over bytes already on disk (a journal
             written full of zeros ahead of time), so that only data is synced

45,000 bytes is the record a 1 MB append of 2,240-byte responses makes (about
450 responses). Medians and quartiles in milliseconds; the disk, not ccotel,
sets these, and they move with the hour on a shared machine.
"""
import argparse
import os
import statistics
import tempfile
import time


def opened(path, prewritten_bytes):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b"\0" * prewritten_bytes + b"x")
    os.fsync(fd)
    return fd


def timed_sync(fd, record, offset):
    os.pwrite(fd, record, offset)
    start = time.perf_counter()
    os.fdatasync(fd)
    return (time.perf_counter() - start) * 1000


def summary(name, values):
    low, median, high = statistics.quantiles(values, n=4)
    return f"{name} median {median:.3f} ms (quartiles {low:.3f}-{high:.3f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="a directory on the file system to measure")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--record-bytes", type=int, default=45000)
    a = ap.parse_args()
    record = os.urandom(a.record_bytes)
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        extended = opened(os.path.join(tmp, "extended"), 0)
        overwritten = opened(os.path.join(tmp, "overwritten"), a.rounds * a.record_bytes)
        times = {"extend": [], "overwrite": []}
        for round_ in range(a.rounds):
            times["extend"].append(timed_sync(extended, record, 1 + round_ * a.record_bytes))
            times["overwrite"].append(timed_sync(overwritten, record, round_ * a.record_bytes))
            # Apart, as report runs are: each sync waits on its own write.
            time.sleep(0.01)
        os.close(extended)
        os.close(overwritten)
    print(f"{a.rounds} syncs of {a.record_bytes} bytes each: "
          + "; ".join(summary(name, values) for name, values in times.items()))


if __name__ == "__main__":
    main()
