#!/usr/bin/env python3
"""`storagectl backup run` / `restore` vs pg_dump -Fc / pg_restore on the same data, in one run.

Targets (issue 3): backup wall time <= 0.6x pg_dump -Fc, archive <= 1.0x its size; restore <= 1.0x
pg_restore; peak RSS of the backup <= 200 MB and <= 1.3x when the data grows 10x (measured here as
the base database vs one built at --small-scale, i.e. 1/10 of it). Prints figures and ratios; exits 0
either way (benchmarks report, tests assert).

Issue 19 adds narrow shapes (``--shape int-pairs-20m`` / ``int-pairs-1.25m``: one table of two
integers) and the ``pg_dump -Fd -j2`` reference; targets there: backup <= 0.5x ``pg_dump -Fc`` and
<= 0.8x ``pg_dump -Fd -j2``, peak RSS <= 100 MiB on every shape (compare the shapes' RSS for flatness).

Usage: python bench/bench_pg_backup.py [--shape benchmark] [--scale 1] [--parallel 4] [--backup-parallel N]
                                       [--level 1] [--levels 1,2] [--small-scale 0.1] [--skip-restore]
                                       [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_dataset import ADMIN_URL, INT_PAIR_SHAPES, database_url, describe, ensure_dataset, ensure_int_pairs  # noqa: E402,I001

TIME = "/usr/bin/time"
# The interpreter itself, as bench_startup.py and bench_inspect.py run it: a pyenv shim on PATH adds
# ~65 ms of bash to every run that pg_dump does not pay.
STORAGECTL = [sys.executable, "-m", "storagectl"]


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB (GNU time) and stdout of one command."""
    with tempfile.NamedTemporaryFile(suffix=".rss", delete=False) as handle:
        rss_file = handle.name
    started = time.perf_counter()
    done = subprocess.run([TIME, "-o", rss_file, "-f", "%M", *command], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr}")
    rss = int(Path(rss_file).read_text().split()[-1])
    os.unlink(rss_file)
    return elapsed, rss, done.stdout


def fresh_database(name: str) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(ADMIN_URL, name)


def write_config(workdir: Path, source_url: str, target_url: str, level: int, parallel: int | None) -> Path:
    config = workdir / f"storagectl-q{level}.yaml"
    config.write_text(
        "version: 1\nbackends:\n"
        f"  src: {{kind: postgres, url: '{source_url}'}}\n"
        f"  dst: {{kind: postgres, url: '{target_url}'}}\n"
        f"destinations:\n  local: {{kind: local, path: {workdir / 'backups'}}}\n"
        f"jobs:\n  bench:\n    backends: [src]\n    destination: local\n"
        + (f"    parallel: {parallel}\n" if parallel else "")
        + f"    compression: {{codec: brotli, level: {level}}}\n"
    )
    return config


def storagectl_backup(config: Path) -> tuple[float, int, dict]:
    elapsed, rss, out = timed([*STORAGECTL, "-c", str(config), "-o", "json", "backup", "run", "--job", "bench"])
    info = json.loads(out)
    return elapsed, rss, info[0] if isinstance(info, list) else info


def pg_dump_baseline(source_url: str, workdir: Path) -> tuple[float, int]:
    path = workdir / "bench.dump"
    elapsed, _, _ = timed(["pg_dump", "-Fc", "-f", str(path), f"--dbname={source_url}"])
    return elapsed, path.stat().st_size


def pg_dump_directory_baseline(source_url: str, workdir: Path) -> tuple[float, int]:
    """``pg_dump -Fd -j2``: the parallel reference (its workers split by table)."""
    path = workdir / "bench.dir"
    shutil.rmtree(path, ignore_errors=True)
    elapsed, _, _ = timed(["pg_dump", "-Fd", "-j2", "-f", str(path), f"--dbname={source_url}"])
    size = sum(f.stat().st_size for f in path.iterdir())
    shutil.rmtree(path)
    return elapsed, size


def report(label: str, ours: float, theirs: float, target: float, unit: str = "s") -> None:
    ratio = ours / theirs
    verdict = "OK" if ratio <= target else "MISSED"
    print(f"{label:<34} storagectl {ours:10.2f} {unit}  baseline {theirs:10.2f} {unit}  "
          f"ratio {ratio:.2f}x (target <= {target:.2f}x) -> {verdict}")


def bench_backup(args: argparse.Namespace, source_url: str, workdir: Path) -> tuple[Path, dict]:
    """``--rounds`` rounds of pg_dump -Fc, pg_dump -Fd -j2 and storagectl at --level, in an order
    that rotates per round, medians compared; each other level of --levels once."""
    import statistics

    target_url = database_url(ADMIN_URL, "stctl_bench_restore")
    config = write_config(workdir, source_url, target_url, args.level, args.backup_parallel)
    runs: dict[str, Any] = {
        "pg_dump -Fc": lambda: pg_dump_baseline(source_url, workdir),
        "pg_dump -Fd -j2": lambda: pg_dump_directory_baseline(source_url, workdir),
        "storagectl": lambda: storagectl_backup(config),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    sizes: dict[str, float] = {}
    rss_kib: list[int] = []
    info: dict = {}
    for round_ in range(args.rounds):
        names = list(runs)
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            checkpoint()
            if name == "storagectl":
                elapsed, rss, info = runs[name]()
                rss_kib.append(rss)
                sizes[name] = info["size"]
            else:
                elapsed, sizes[name] = runs[name]()
            times[name].append(elapsed)
    print(f"load average after the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, samples in times.items():
        print(f"{name}: median {statistics.median(samples):.2f}s of {', '.join(f'{t:.2f}' for t in samples)}, "
              f"{sizes[name] / 2**20:.1f} MiB")
    print(f"storagectl peak RSS: {', '.join(f'{r / 1024:.0f}' for r in rss_kib)} MiB (target <= 100 MiB)")
    ours = statistics.median(times["storagectl"])
    report(f"backup time vs -Fc (brotli q{args.level})", ours, statistics.median(times["pg_dump -Fc"]),
           0.5)
    report("backup time vs -Fd -j2", ours, statistics.median(times["pg_dump -Fd -j2"]), 0.8)
    report(f"archive size (brotli q{args.level})", sizes["storagectl"] / 2**20, sizes["pg_dump -Fc"] / 2**20, 1.0,
           "MiB")
    for level in sorted(set(args.levels) - {args.level}):
        elapsed, rss, other = storagectl_backup(write_config(workdir, source_url, target_url, level,
                                                                   args.backup_parallel))
        print(f"storagectl backup q{level}: {elapsed:.2f}s, {other['size'] / 2**20:.1f} MiB, "
              f"peak RSS {rss / 1024:.0f} MiB")
    return config, info


def checkpoint() -> None:
    """Write out dirty buffers first, so no timed command pays for the one before it."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute("CHECKPOINT")


def bench_restore(args: argparse.Namespace, config: Path, backup_id: str, workdir: Path) -> None:
    """``--rounds`` rounds, each restoring with storagectl and pg_restore -j1 / -jN into fresh
    databases after a CHECKPOINT, in an order that rotates per round; medians are compared."""
    import statistics

    tools = {
        "storagectl": lambda url: [*STORAGECTL, "-c", str(config), "restore", backup_id, "--to", "dst", "--yes",
                                   "--parallel", str(args.parallel)],
        **{f"pg_restore -j{jobs}": (lambda url, jobs=jobs: ["pg_restore", f"-j{jobs}", f"--dbname={url}",
                                                              str(workdir / "bench.dump")])
           for jobs in (1, args.parallel)},
    }
    times: dict[str, list[float]] = {name: [] for name in tools}
    for round_ in range(args.rounds):
        names = list(tools)
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            url = fresh_database("stctl_bench_restore")
            checkpoint()
            elapsed, _, _ = timed(tools[name](url))
            times[name].append(elapsed)
    ours = statistics.median(times["storagectl"])
    for name, runs in times.items():
        print(f"{name}: median {statistics.median(runs):.2f}s of {', '.join(f'{t:.2f}' for t in runs)}")
    for name in tools:
        if name != "storagectl":
            report(f"restore vs {name}", ours, statistics.median(times[name]), 1.0)


def bench_rss_growth(args: argparse.Namespace, base_rss_kib: int, workdir: Path) -> None:
    small_url = ensure_dataset(ADMIN_URL, "stctl_bench_small", args.scale * args.small_scale)
    config = write_config(workdir, small_url, small_url, args.level, args.backup_parallel)
    _, small_rss, _ = storagectl_backup(config)
    growth = base_rss_kib / small_rss
    print(f"peak RSS: {small_rss / 1024:.0f} MiB at scale {args.scale * args.small_scale:g}, "
          f"{base_rss_kib / 1024:.0f} MiB at scale {args.scale:g} (x{1 / args.small_scale:g} data): "
          f"growth {growth:.2f}x (target <= 1.30x, <= 200 MiB) -> "
          f"{'OK' if growth <= 1.3 and base_rss_kib <= 200 * 1024 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["benchmark", *INT_PAIR_SHAPES], default="benchmark",
                        help="the benchmark's mixed tables (at --scale), or one table of two integers")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--parallel", type=int, default=4, help="restore workers, and pg_restore -jN")
    parser.add_argument("--backup-parallel", type=int, default=None,
                        help="backup workers [default: storagectl's own default, min(4, CPUs)]")
    parser.add_argument("--level", type=int, default=1, help="brotli level for the compared run")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                        help="also time these brotli levels (e.g. 1,2,3,4,5,6)")
    parser.add_argument("--small-scale", type=float, default=0.1, help="fraction for the RSS growth run")
    parser.add_argument("--skip-restore", action="store_true")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds of backup and of restore, alternating with the reference tool (medians)")
    args = parser.parse_args()
    if importlib.util.find_spec("storagectl") is None:
        sys.exit("storagectl is not importable (pip install -e ., or PYTHONPATH=the checkout)")
    if args.shape == "benchmark":
        source_url = ensure_dataset(ADMIN_URL, "stctl_bench", args.scale)
    else:
        source_url = ensure_int_pairs(ADMIN_URL, args.shape)
    print(f"dataset {args.shape}: {describe(source_url)}; {os.cpu_count()} CPUs; restore parallel {args.parallel}, "
          f"backup parallel {args.backup_parallel or 'default'}")
    with tempfile.TemporaryDirectory(prefix="stctl-bench-") as tmp:
        workdir = Path(tmp)
        config, info = bench_backup(args, source_url, workdir)
        if not args.skip_restore:
            bench_restore(args, config, info["id"], workdir)
        if args.shape == "benchmark":
            _, rss, _ = timed([*STORAGECTL, "-c", str(config), "-o", "json", "backup", "run", "--job", "bench"])
            bench_rss_growth(args, rss, workdir)


if __name__ == "__main__":
    main()
