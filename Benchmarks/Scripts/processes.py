#!/usr/bin/env python3
"""Compares benchmark builds over several processes (stdlib only).

    processes.py N BIN[,BIN...] GROUP [microvm-bench options...]
    e.g. processes.py 9 ./old/microvm-bench,./new/microvm-bench setup --size 1G --only 4k/prefaulted --runs 11

Runs every binary N times, the binaries taking turns, and prints for each case the median over processes
of the engine's and the C baseline's medians and of their ratio, with each process's ratio. One process
is not enough on this machine kind: where the loops and the arenas land moves a ratio by 10-20%.
"""
import collections
import statistics
import subprocess
import sys


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    count, binaries, arguments = int(argv[1]), argv[2].split(","), argv[3:]
    rows = collections.defaultdict(lambda: collections.defaultdict(list))
    for _ in range(count):
        for binary in binaries:
            output = subprocess.run([binary] + arguments, capture_output=True, text=True).stdout
            medians = {}
            for line in output.splitlines():
                fields = line.split("\t")
                if len(fields) >= 6 and not line.startswith("#"):
                    medians[(fields[0], fields[1], fields[3], fields[2])] = float(fields[5])
            for (group, case, param, impl), value in medians.items():
                if impl == "swift" and (group, case, param, "c") in medians:
                    rows[(group, case, param)][binary].append((value, medians[(group, case, param, "c")]))
    for key in sorted(rows):
        print(" ".join(key))
        for binary in binaries:
            pairs = rows[key][binary]
            ours = statistics.median(p[0] for p in pairs)
            base = statistics.median(p[1] for p in pairs)
            ratio = statistics.median(p[0] / p[1] for p in pairs)
            each = " ".join(f"{p[0] / p[1]:.2f}" for p in pairs)
            print(f"  {binary}: {ours / 1000:.2f} us vs C {base / 1000:.2f} us = {ratio:.2f}x  [{each}]")


if __name__ == "__main__":
    main(sys.argv)
