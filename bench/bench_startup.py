#!/usr/bin/env python3
"""Start-up time of quick storagectl commands vs the bare interpreter and `alembic --help`,
interleaved in one run.

Targets (issue 19): `storagectl --help`, `storagectl diag --help` and `storagectl backup list` (an
empty local destination) each <= 100 ms over `python -c pass` (same interpreter); `storagectl --help`
<= 0.3x `alembic --help`. Prints medians, spread and the load average, and the floors (`import
typer`; typer, pydantic, yaml and rich, which `backup list` needs for config and table); exits 0
either way (benchmarks report, tests assert). Usage: python bench/bench_startup.py [--runs 15] [--as-is]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As installed (pip writes .pyc files): with PYTHONDONTWRITEBYTECODE set, as in some CI and dev shells,
# every storagectl module would be compiled from source on every run, while the site-packages
# libraries (and alembic) load their bytecode. --as-is keeps the caller's environment.
BYTECODE_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def wall_time(command: list[str], env: dict[str, str] | None) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - started


def commands(workdir: Path) -> dict[str, list[str]]:
    config = workdir / "storagectl.yaml"
    (workdir / "backups").mkdir()
    config.write_text(f"version: 1\ndestinations:\n  local: {{kind: local, path: {workdir / 'backups'}}}\n")
    # One interpreter for all, without launcher scripts (pyenv shims add ~100 ms of bash to each)
    python, storagectl = sys.executable, [sys.executable, "-m", "storagectl"]
    return {
        "python -c pass": [python, "-c", "pass"],
        "storagectl --help": [*storagectl, "--help"],
        "storagectl diag --help": [*storagectl, "diag", "--help"],
        "storagectl backup list": [*storagectl, "-c", str(config), "backup", "list"],
        "alembic --help": [python, "-m", "alembic", "--help"],
        # floors: what the libraries cost before storagectl does anything
        "import typer": [python, "-c", "import typer"],
        "import typer+pydantic+yaml+rich": [python, "-c", "import typer, pydantic.main, yaml, rich.table"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--as-is", action="store_true", help="keep PYTHONDONTWRITEBYTECODE if set")
    args = parser.parse_args()
    env = None if args.as_is else BYTECODE_ENV
    with tempfile.TemporaryDirectory(prefix="stctl-startup-") as tmp:
        runs = commands(Path(tmp))
        for command in runs.values():  # warm the page cache and .pyc files
            wall_time(command, env)
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.runs):
            for name, command in runs.items():
                samples[name].append(wall_time(command, env))
    uncached = args.as_is and "PYTHONDONTWRITEBYTECODE" in os.environ
    bytecode = "PYTHONDONTWRITEBYTECODE kept" if uncached else ".pyc cached"
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.runs} runs each, interleaved; "
          f"{bytecode}")
    medians = {name: statistics.median(times) for name, times in samples.items()}
    for name, median in medians.items():
        times = sorted(samples[name])
        print(f"{name:<24} median {median * 1000:7.1f} ms  (min {times[0] * 1000:.1f}, "
              f"max {times[-1] * 1000:.1f} ms)")
    bare = medians["python -c pass"]
    for name in ("storagectl --help", "storagectl diag --help", "storagectl backup list", "import typer",
                 "import typer+pydantic+yaml+rich"):
        over = (medians[name] - bare) * 1000
        verdict = "(floor)"
        if name.startswith("storagectl"):
            verdict = f"(target <= 100 ms) -> {'OK' if over <= 100 else 'MISSED'}"
        print(f"{name:<24} {over:6.1f} ms over the interpreter {verdict}")
    ratio = medians["storagectl --help"] / medians["alembic --help"]
    print(f"ratio storagectl --help / alembic --help: {ratio:.2f}x (target <= 0.30x) -> "
          f"{'OK' if ratio <= 0.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
