#!/usr/bin/env python3
"""What replacing a cache file costs: renaming a new file over the old one,
against removing the old one first and then renaming (see
`codec::replace_cache_file`). On ext4, renaming over a file makes the kernel
flush the new one (`auto_da_alloc`).

Usage: python3 benches/rename_cost.py [--dir DIR] [--bytes 480000] [--runs 40]

DIR must be on the file system the state directory is on (default: a temporary
directory under /tmp). Prints the median of each, three times.
"""
import argparse
import os
import statistics
import tempfile
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir")
    parser.add_argument("--bytes", type=int, default=480_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        data = os.urandom(args.bytes)
        path = os.path.join(folder, "reports.bin")
        tmp = os.path.join(folder, "reports.tmp")
        with open(path, "wb") as out:
            out.write(data)

        def timed(replace):
            with open(tmp, "wb") as out:
                out.write(data)
            start = time.perf_counter()
            replace()
            return time.perf_counter() - start

        def over():
            os.rename(tmp, path)

        def remove_first():
            os.unlink(path)
            os.rename(tmp, path)

        for _ in range(3):
            renamed_over = statistics.median(timed(over) for _ in range(args.runs))
            removed_first = statistics.median(timed(remove_first) for _ in range(args.runs))
            print(f"rename over the old file {renamed_over * 1e3:.3f} ms, "
                  f"remove it then rename {removed_first * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
