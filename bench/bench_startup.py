#!/usr/bin/env python3
"""Startup time of `storagectl --help` vs `alembic --help`, interleaved in one run.

Target (issue 2): storagectl ≤ 0.5x alembic. Prints medians and the ratio; exits 0 either way
(benchmarks report, tests assert). Usage: python bench/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    commands = {name: [shutil.which(name) or sys.exit(f"{name} not on PATH"), "--help"]
                for name in ("storagectl", "alembic")}
    for command in commands.values():  # warm the page cache and .pyc files
        wall_time(command)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            samples[name].append(wall_time(command))
    medians = {name: statistics.median(times) for name, times in samples.items()}
    for name, median in medians.items():
        print(f"{name + ' --help':<20} median {median * 1000:7.1f} ms  (min {min(samples[name]) * 1000:.1f} ms)")
    ratio = medians["storagectl"] / medians["alembic"]
    print(f"ratio storagectl/alembic: {ratio:.2f}x (target <= 0.50x) -> {'OK' if ratio <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
