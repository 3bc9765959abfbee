#!/usr/bin/env python3
"""`storagectl backup run` / `restore` vs pg_dump -Fc / pg_restore on the same data, in one run.

Targets (issue 3): backup wall time <= 0.6x pg_dump -Fc, archive <= 1.0x its size; restore <= 1.0x
pg_restore; peak RSS of the backup <= 200 MB and <= 1.3x when the data grows 10x (measured here as
the base database vs one built at --small-scale, i.e. 1/10 of it). Prints figures and ratios; exits 0
either way (benchmarks report, tests assert).

Usage: python bench/bench_pg_backup.py [--scale 1] [--parallel 4] [--level 1] [--levels 1,2,3,4,5,6]
                                       [--small-scale 0.1] [--skip-restore]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_dataset import ADMIN_URL, database_url, describe, ensure_dataset  # noqa: E402

TIME = "/usr/bin/time"


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


def write_config(workdir: Path, source_url: str, target_url: str, level: int, parallel: int) -> Path:
    config = workdir / f"storagectl-q{level}.yaml"
    config.write_text(
        "version: 1\nbackends:\n"
        f"  src: {{kind: postgres, url: '{source_url}'}}\n"
        f"  dst: {{kind: postgres, url: '{target_url}'}}\n"
        f"destinations:\n  local: {{kind: local, path: {workdir / 'backups'}}}\n"
        f"jobs:\n  bench:\n    backends: [src]\n    destination: local\n    parallel: {parallel}\n"
        f"    compression: {{codec: brotli, level: {level}}}\n"
    )
    return config


def storagectl_backup(config: Path) -> tuple[float, int, dict]:
    elapsed, rss, out = timed(["storagectl", "-c", str(config), "-o", "json", "backup", "run", "--job", "bench"])
    info = json.loads(out)
    return elapsed, rss, info[0] if isinstance(info, list) else info


def pg_dump_baseline(source_url: str, workdir: Path) -> tuple[float, int]:
    path = workdir / "bench.dump"
    elapsed, _, _ = timed(["pg_dump", "-Fc", "-f", str(path), f"--dbname={source_url}"])
    return elapsed, path.stat().st_size


def report(label: str, ours: float, theirs: float, target: float, unit: str = "s") -> None:
    ratio = ours / theirs
    verdict = "OK" if ratio <= target else "MISSED"
    print(f"{label:<34} storagectl {ours:10.2f} {unit}  baseline {theirs:10.2f} {unit}  "
          f"ratio {ratio:.2f}x (target <= {target:.2f}x) -> {verdict}")


def bench_backup(args: argparse.Namespace, source_url: str, workdir: Path) -> tuple[Path, dict]:
    dump_time, dump_size = pg_dump_baseline(source_url, workdir)
    print(f"pg_dump -Fc: {dump_time:.2f}s, {dump_size / 2**20:.1f} MiB")
    target_url = database_url(ADMIN_URL, "stctl_bench_restore")
    chosen: tuple[Path, dict] | None = None
    for level in sorted(set(args.levels) | {args.level}):
        config = write_config(workdir, source_url, target_url, level, args.parallel)
        elapsed, rss, info = storagectl_backup(config)
        print(f"storagectl backup q{level}: {elapsed:.2f}s, {info['size'] / 2**20:.1f} MiB, "
              f"peak RSS {rss / 1024:.0f} MiB")
        if level == args.level:
            chosen = (config, info)
            report(f"backup time (brotli q{level})", elapsed, dump_time, 0.6)
            report(f"archive size (brotli q{level})", info["size"] / 2**20, dump_size / 2**20, 1.0, "MiB")
    assert chosen is not None
    return chosen


def bench_restore(args: argparse.Namespace, config: Path, backup_id: str, workdir: Path) -> None:
    fresh_database("stctl_bench_restore")
    ours, _, _ = timed(["storagectl", "-c", str(config), "restore", backup_id, "--to", "dst", "--yes",
                        "--parallel", str(args.parallel)])
    baselines = {}
    for jobs in (1, args.parallel):
        url = fresh_database("stctl_bench_pgrestore")
        baselines[jobs], _, _ = timed(["pg_restore", f"-j{jobs}", f"--dbname={url}", str(workdir / "bench.dump")])
        print(f"pg_restore -j{jobs}: {baselines[jobs]:.2f}s")
    for jobs, theirs in baselines.items():
        report(f"restore vs pg_restore -j{jobs}", ours, theirs, 1.0)


def bench_rss_growth(args: argparse.Namespace, base_rss_kib: int, workdir: Path) -> None:
    small_url = ensure_dataset(ADMIN_URL, "stctl_bench_small", args.scale * args.small_scale)
    config = write_config(workdir, small_url, small_url, args.level, args.parallel)
    _, small_rss, _ = storagectl_backup(config)
    growth = base_rss_kib / small_rss
    print(f"peak RSS: {small_rss / 1024:.0f} MiB at scale {args.scale * args.small_scale:g}, "
          f"{base_rss_kib / 1024:.0f} MiB at scale {args.scale:g} (x{1 / args.small_scale:g} data): "
          f"growth {growth:.2f}x (target <= 1.30x, <= 200 MiB) -> "
          f"{'OK' if growth <= 1.3 and base_rss_kib <= 200 * 1024 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--level", type=int, default=1, help="brotli level for the compared run")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                        help="also time these brotli levels (e.g. 1,2,3,4,5,6)")
    parser.add_argument("--small-scale", type=float, default=0.1, help="fraction for the RSS growth run")
    parser.add_argument("--skip-restore", action="store_true")
    args = parser.parse_args()
    if not shutil.which("storagectl"):
        sys.exit("storagectl is not on PATH (pip install -e .)")
    source_url = ensure_dataset(ADMIN_URL, "stctl_bench", args.scale)
    print(f"dataset stctl_bench: {describe(source_url)}; {os.cpu_count()} CPUs; parallel {args.parallel}")
    with tempfile.TemporaryDirectory(prefix="stctl-bench-") as tmp:
        workdir = Path(tmp)
        config, info = bench_backup(args, source_url, workdir)
        _, rss, _ = timed(["storagectl", "-c", str(config), "-o", "json", "backup", "run", "--job", "bench"])
        if not args.skip_restore:
            bench_restore(args, config, info["id"], workdir)
        bench_rss_growth(args, rss, workdir)


if __name__ == "__main__":
    main()
