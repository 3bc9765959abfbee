#!/usr/bin/env python3
"""Start-up time of quick storagectl commands vs the bare interpreter and `alembic --help`,
interleaved in one run.

Targets (issue 19): `storagectl --help`, `storagectl diag --help` and `storagectl backup list` (an
empty local destination) each <= 100 ms over `python -c pass` (same interpreter); `storagectl --help`
<= 0.3x `alembic --help`. Prints medians, spread and the load average, and the floors (`import
typer`; typer, pydantic, yaml and rich, which `backup list` needs for config and table); exits 0
either way (benchmarks report, tests assert). Wall and CPU time (user + sys of the child) both.
Usage: python bench/bench_startup.py [--runs 15] [--as-is] [--baseline DIR: the same commands from
another checkout, e.g. a `git archive` of main, interleaved]
"""

from __future__ import annotations

import argparse
import os
import resource
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
QUICK_COMMANDS = ("storagectl --help", "storagectl diag --help", "storagectl backup list")
FLOORS = ("import typer", "import typer+pydantic+yaml+rich")


def timed(command: list[str], env: dict[str, str] | None, cwd: Path) -> tuple[float, float]:
    """Wall time and the child's CPU time (user + sys): on a shared machine the CPU time moves less
    with the load than the wall time does. ``cwd`` is a neutral directory: `python -m storagectl`
    imports ./storagectl first, which in a checkout would shadow PYTHONPATH (and --baseline)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env, cwd=cwd)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def commands(workdir: Path, env: dict[str, str], baseline: str | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    config = workdir / "storagectl.yaml"
    (workdir / "backups").mkdir()
    config.write_text(f"version: 1\ndestinations:\n  local: {{kind: local, path: {workdir / 'backups'}}}\n")
    # One interpreter for all, without launcher scripts (pyenv shims add ~100 ms of bash to each)
    python, storagectl = sys.executable, [sys.executable, "-m", "storagectl"]
    runs = {
        "python -c pass": [python, "-c", "pass"],
        "storagectl --help": [*storagectl, "--help"],
        "storagectl diag --help": [*storagectl, "diag", "--help"],
        "storagectl backup list": [*storagectl, "-c", str(config), "backup", "list"],
        "alembic --help": [python, "-m", "alembic", "--help"],
        # floors: what the libraries cost before storagectl does anything
        "import typer": [python, "-c", "import typer"],
        "import typer+pydantic+yaml+rich": [python, "-c", "import typer, pydantic.main, yaml, rich.table"],
    }
    result = {name: (command, env) for name, command in runs.items()}
    if baseline:  # the same commands from another checkout, interleaved with these
        # with a config file of their own: the validated-config cache keeps one entry per file, keyed
        # on the code too, so two checkouts sharing a file would each find the other's entry and
        # validate it again (pydantic, YAML) on every run
        baseline_config = workdir / "baseline.yaml"
        baseline_config.write_bytes(config.read_bytes())
        for name in QUICK_COMMANDS:
            command = [str(baseline_config) if part == str(config) else part for part in runs[name]]
            result[f"baseline {name}"] = (command, {**env, "PYTHONPATH": baseline})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--as-is", action="store_true", help="keep PYTHONDONTWRITEBYTECODE if set")
    parser.add_argument("--baseline", metavar="DIR", help="also run the storagectl commands with PYTHONPATH=DIR")
    args = parser.parse_args()
    env = dict(os.environ if args.as_is else BYTECODE_ENV)
    with tempfile.TemporaryDirectory(prefix="stctl-startup-") as tmp:
        runs = commands(Path(tmp), env, args.baseline)
        for command, command_env in runs.values():  # warm the page cache and .pyc files
            timed(command, command_env, Path(tmp))
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(args.runs):
            for name, (command, command_env) in runs.items():
                samples[name].append(timed(command, command_env, Path(tmp)))
    uncached = args.as_is and "PYTHONDONTWRITEBYTECODE" in os.environ
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.runs} runs each, interleaved; "
          f"{'PYTHONDONTWRITEBYTECODE kept' if uncached else '.pyc cached'}")
    report(samples)


def report(samples: dict[str, list[tuple[float, float]]]) -> None:
    wall = {name: statistics.median(w for w, _ in runs) for name, runs in samples.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in samples.items()}
    for name, runs in samples.items():
        times = sorted(w for w, _ in runs)
        print(f"{name:<36} wall median {wall[name] * 1000:7.1f} ms (min {times[0] * 1000:.1f}, max "
              f"{times[-1] * 1000:.1f}); cpu median {cpu[name] * 1000:7.1f} ms")
    for name in (*QUICK_COMMANDS, *[f"baseline {n}" for n in QUICK_COMMANDS if f"baseline {n}" in wall], *FLOORS):
        over, over_cpu = (wall[name] - wall["python -c pass"]) * 1000, (cpu[name] - cpu["python -c pass"]) * 1000
        verdict = "(floor)" if name in FLOORS else f"(target <= 100 ms) -> {'OK' if over <= 100 else 'MISSED'}"
        print(f"{name:<36} {over:6.1f} ms wall, {over_cpu:6.1f} ms cpu over the interpreter {verdict}")
    for label, figures in (("wall", wall), ("cpu", cpu)):
        ratio = figures["storagectl --help"] / figures["alembic --help"]
        print(f"ratio storagectl --help / alembic --help ({label}): {ratio:.2f}x (target <= 0.30x) -> "
              f"{'OK' if ratio <= 0.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
