#!/usr/bin/env python3
"""`storagectl migrate data run` vs the reference tools on the same data, in one run.

SQLite → PostgreSQL (issue 12): >= 1.5 M rows over several tables (integers, reals, text, blobs,
dates, booleans) vs ``pgloader`` on the same file: wall time <= 0.5x, peak RSS <= 0.2x (summed over each
command's process tree), and storagectl's peak RSS <= 1.3x when the data grows 10x (--small-scale vs --scale).
PostgreSQL → PostgreSQL: the backup benchmark's database (bench/pg_dataset.py) vs ``pgcopydb clone``
with the same job count (<= 1.0x) and ``pg_dump -Fc | pg_restore`` (<= 0.8x).
Verification: what ``run`` with its verify takes more than ``run --no-verify`` <= 0.5x the copy (the rounds
alternate the two); ``migrate data verify`` (both sides recomputed) printed too.
Prints figures and ratios; exits 0 either way. Run under ``flock /tmp/bench.lock``.

Usage: python bench/bench_datamove_sql.py [--scale 1] [--small-scale 0.1] [--parallel 2] [--skip-pg] [--skip-sqlite]
                                          [--rounds N] [--skip-dump-restore]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datamove_dataset import build  # noqa: E402
from pg_dataset import ADMIN_URL, database_url, describe, ensure_dataset  # noqa: E402,I001

TIME = "/usr/bin/time"
REPO = Path(__file__).resolve().parent.parent


def timed(command: list[str], env: dict[str, str] | None = None, shell: bool = False) -> tuple[float, int]:
    """Wall seconds and peak RSS in KiB of one command: the peak of its whole process tree's summed
    RSS (sampled), or GNU time's largest single process if that is higher (a peak between samples).
    The tree's peak PSS (shared pages split between the processes that share them) goes to PSS_PEAKS."""
    with tempfile.NamedTemporaryFile(suffix=".rss", delete=False) as handle:
        rss_file = handle.name
    full = [TIME, "-o", rss_file, "-f", "%M", *(["sh", "-c", command[0]] if shell else command)]
    started = time.perf_counter()
    with subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        tree_peak = [0, 0]
        sampler = threading.Thread(target=_sample_tree_rss, args=(process, tree_peak), daemon=True)
        sampler.start()
        out, err = process.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{out[-2000:]}\n{err[-2000:]}")
    rss = int(Path(rss_file).read_text().split()[-1])
    os.unlink(rss_file)
    PSS_PEAKS.append(tree_peak[1])
    return elapsed, max(rss, tree_peak[0])


PSS_PEAKS: list[int] = []  # KiB, one per timed() call


def _sample_tree_rss(process: subprocess.Popen, peak: list[int]) -> None:
    """Every 10 ms the summed RSS and PSS (KiB) of the processes under ``process`` (GNU time left out)."""
    while process.poll() is None:
        pids = _descendants(process.pid)
        peak[0] = max(peak[0], sum(_memory_kib(pid, "status", "VmRSS:") for pid in pids))
        peak[1] = max(peak[1], sum(_memory_kib(pid, "smaps_rollup", "Pss:") for pid in pids))
        time.sleep(0.01)


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        for task in Path(f"/proc/{pending.pop()}/task").glob("*/children"):
            try:
                children = [int(child) for child in task.read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


def _memory_kib(pid: int, file: str, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith(field)), 0)




def fresh_database(name: str, checkpoint: bool = False) -> str:
    """An empty database ``name``; with ``checkpoint`` the server's dirty pages written out first, so a
    timed run does not pay for the previous one's."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        if checkpoint:
            admin.execute("CHECKPOINT")
    return database_url(ADMIN_URL, name)


def storagectl(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "storagectl", "-c", str(config), "-q", "migrate", "data", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def write_config(work: Path, source: str, target_url: str) -> Path:
    config = work / "storagectl.yaml"
    config.write_text(f"backends:\n  src: {source}\n  dst: {{kind: postgres, url: \"{target_url}\"}}\n")
    return config


def bench_sqlite(work: Path, scale: float, small_scale: float, parallel: int, rounds: int) -> None:
    """Each measurement ``rounds`` times, storagectl and pgloader alternating on the same file (so load
    changes hit both); medians with the spread (min-max)."""
    figures = {}
    for label, factor in (("small", small_scale), ("base", scale)):
        path = work / f"{label}.db"
        counts = build(path, factor)
        print(f"SQLite {label}: {sum(counts.values()):,} rows {counts}, {path.stat().st_size / 2**20:.0f} MiB")
        config = write_config(work, f"{{kind: sqlite, path: {path}}}", database_url(ADMIN_URL, "stctl_dm_bench"))
        copies, loaders, copy_pss, loader_pss, verified_runs = [], [], [], [], []
        for _ in range(rounds):
            fresh_database("stctl_dm_bench")
            copies.append(timed(storagectl(config, "run", "--from", "src", "--to", "dst", "--no-verify",
                                           "--parallel", str(parallel)), env()))
            copy_pss.append(PSS_PEAKS[-1])
            if label == "base":
                fresh_database("stctl_dm_bench")  # after the copy's dirty pages, as the copy after pgloader's
                verified_runs.append(timed(storagectl(config, "run", "--from", "src", "--to", "dst", "--parallel",
                                                      str(parallel)), env()))
                loaders.append(timed(["pgloader", "--no-ssl-cert-verification", str(path),
                                      fresh_database("stctl_dm_bench_pgloader")]))
                loader_pss.append(PSS_PEAKS[-1])
        check = timed(storagectl(config, "verify", "--from", "src", "--to", "dst"), env())
        copy = (median([c[0] for c in copies]), median([c[1] for c in copies]))
        figures[label] = copy
        print(f"  storagectl run -j{parallel} --no-verify: {copy[0]:.1f} s {min_max(copies)}, peak RSS "
              f"{copy[1] / 1024:.0f} MiB (PSS {median(copy_pss) / 1024:.0f} MiB); verify: {check[0]:.1f} s "
              f"({check[0] / copy[0]:.2f}x the copy)")
        if label == "base":
            verified = median(t for t, _ in verified_runs)
            print(f"  storagectl run -j{parallel} with its verify: {spread(verified_runs)}: the verify adds "
                  f"{verified - copy[0]:.1f} s, {(verified - copy[0]) / copy[0]:.2f}x the copy (target <= 0.5)")
            loader = (median([c[0] for c in loaders]), median([c[1] for c in loaders]))
            print(f"  pgloader: {loader[0]:.1f} s {min_max(loaders)}, peak RSS {loader[1] / 1024:.0f} MiB "
                  f"(PSS {median(loader_pss) / 1024:.0f} MiB)")
            print(f"  ratio wall {copy[0] / loader[0]:.2f}x (target <= 0.5), peak RSS {copy[1] / loader[1]:.2f}x "
                  f"(target <= 0.2); load average {os.getloadavg()[0]:.1f}")
    small_rss, base_rss = figures["small"][1], figures["base"][1]
    print(f"  storagectl peak RSS at {scale / small_scale:.0f}x the data: {base_rss / small_rss:.2f}x "
          "(target <= 1.3)")


def bench_postgres(scale: float, parallel: int, work: Path, rounds: int = 1, dump_restore: bool = True) -> None:
    """``rounds`` alternating runs of storagectl and pgcopydb, each into a fresh database after a
    CHECKPOINT (so neither pays for the other's dirty pages); medians and spread printed."""
    source = ensure_dataset(ADMIN_URL, "stctl_bench", scale)
    print(f"PostgreSQL source: {describe(source)}")
    copies, clones = [], []
    for _round in range(rounds):
        target = fresh_database("stctl_dm_bench", checkpoint=True)
        config = write_config(work, f"{{kind: postgres, url: \"{source}\"}}", target)
        copies.append(timed(storagectl(config, "run", "--from", "src", "--to", "dst", "--no-verify", "--parallel",
                                       str(parallel)), env()))
        reference = fresh_database("stctl_dm_bench_ref", checkpoint=True)
        pgcopydb_dir = work / "pgcopydb"
        shutil.rmtree(pgcopydb_dir, ignore_errors=True)
        clones.append(timed(["pgcopydb", "clone", "--source", source, "--target", reference, "--table-jobs",
                             str(parallel), "--index-jobs", str(parallel), "--dir", str(pgcopydb_dir), "--no-owner",
                             "--no-acl"]))
        print(f"  round: storagectl {copies[-1][0]:.1f} s, pgcopydb {clones[-1][0]:.1f} s "
              f"(load {os.getloadavg()[0]:.1f})")
    copy, clone = median(t for t, _ in copies), median(t for t, _ in clones)
    check = timed(storagectl(config, "verify", "--from", "src", "--to", "dst"), env())  # the last run's target
    print(f"  storagectl run -j{parallel} --no-verify: {spread(copies)}, peak RSS "
          f"{max(r for _, r in copies) / 1024:.0f} MiB; verify {check[0]:.1f} s ({check[0] / copy:.2f}x the copy)")
    print(f"  pgcopydb clone --table-jobs {parallel}: {spread(clones)} -> ratio {copy / clone:.2f}x (target <= 1.0)")
    if dump_restore:
        target = fresh_database("stctl_dm_bench_ref", checkpoint=True)
        dump = timed([f"pg_dump -Fc -d '{source}' | pg_restore --no-owner -d '{target}'"], shell=True)
        print(f"  pg_dump -Fc | pg_restore: {dump[0]:.1f} s -> ratio {copy / dump[0]:.2f}x (target <= 0.8)")


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def min_max(runs: list[tuple[float, int]]) -> str:
    times = [t for t, _ in runs]
    return f"(min {min(times):.1f}, max {max(times):.1f}, {len(times)} runs)" if len(times) > 1 else ""


def spread(runs: list[tuple[float, int]]) -> str:
    times = sorted(t for t, _ in runs)
    return f"{median(times):.1f} s" + (f" (median of {len(times)}: {', '.join(f'{t:.1f}' for t in times)})"
                                       if len(times) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--small-scale", type=float, default=0.1)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each copy (SQLite) / alternating storagectl and "
                        "pgcopydb runs (PostgreSQL); medians are printed")
    parser.add_argument("--skip-dump-restore", action="store_true", help="PostgreSQL: leave out pg_dump | pg_restore")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stctl-dm-bench-", dir=REPO / "bench") as work:
        if not args.skip_sqlite:
            bench_sqlite(Path(work), args.scale, args.small_scale, args.parallel, args.rounds)
        if not args.skip_pg:
            bench_postgres(args.scale, args.parallel, Path(work), args.rounds, not args.skip_dump_restore)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        for name in ("stctl_dm_bench", "stctl_dm_bench_ref", "stctl_dm_bench_pgloader"):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
