#!/usr/bin/env python3
"""`storagectl backup run` / `restore` vs `pg_dump -Fc` / `pg_restore` on a database of large objects.

The database (``stctl_bench_lo``, built once, ``--force`` rebuilds) holds ``--count`` large objects
totalling about ``--mib`` MiB: sizes spread (log-normal) from a few KiB to 8 MiB, half of them random bytes
(like images or archives), half text. Prints medians of ``--rounds`` alternating rounds and the
ratios; exits 0 either way (benchmarks report, tests assert).

Usage: python bench/bench_pg_largeobjects.py [--count 1000] [--mib 200] [--rounds 3] [--skip-restore] [--force]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pg_backup import (  # noqa: E402
    checkpoint,
    fresh_database,
    pg_dump_baseline,
    storagectl_backup,
    timed,
    write_config,
)
from pg_dataset import ADMIN_URL, database_url  # noqa: E402

DATABASE = "stctl_bench_lo"
MAX_SIZE = 8 << 20


def text(document: int, size: int) -> bytes:
    """Text unique to each document (no object compresses against another one)."""
    lines = (b"document %d line %d, with words that repeat: lorem ipsum dolor sit amet %x\n" % (document, i, i * 7919)
             for i in range(size // 60 + 1))
    return b"".join(lines)[:size]


def build(url: str, count: int, mib: int) -> None:
    rng = random.Random(42)
    weights = [rng.lognormvariate(0, 1.2) for _ in range(count)]
    sizes = [min(MAX_SIZE, int(mib * 2**20 * w / sum(weights))) for w in weights]
    sizes = [min(MAX_SIZE, int(size * mib * 2**20 / sum(sizes))) for size in sizes]  # after the cap
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE documents (id int PRIMARY KEY, body oid)")
        for index, size in enumerate(sizes):
            data = rng.randbytes(size) if index % 2 else text(index, size)
            conn.execute("INSERT INTO documents VALUES (%s, lo_from_bytea(0, %b))", [index, data])


def ensure_database(args: argparse.Namespace) -> str:
    url = database_url(ADMIN_URL, DATABASE)
    try:
        with psycopg.connect(url) as conn:
            if not args.force and conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]:
                return url
    except psycopg.OperationalError:
        pass
    url = fresh_database(DATABASE)
    build(url, args.count, args.mib)
    return url


def describe(url: str) -> str:
    with psycopg.connect(url) as conn:
        count, size = conn.execute("SELECT count(*), sum(length(lo_get(oid))) FROM pg_largeobject_metadata").fetchone()
    return f"{count} large objects, {size / 2**20:.1f} MiB"


def bench_backup(rounds: int, url: str, workdir: Path) -> tuple[Path, str]:
    config = write_config(workdir, url, database_url(ADMIN_URL, "stctl_bench_lo_restore"), 1, None)
    dumps, ours, dump_size, info, rss = [], [], 0, {}, 0
    for round_ in range(rounds):
        for tool in (("pg_dump", "storagectl") if round_ % 2 == 0 else ("storagectl", "pg_dump")):
            checkpoint()
            if tool == "pg_dump":
                elapsed, dump_size = pg_dump_baseline(url, workdir)
                dumps.append(elapsed)
            else:
                elapsed, rss, info = storagectl_backup(config)
                ours.append(elapsed)
    print(f"pg_dump -Fc: median {statistics.median(dumps):.2f}s of {', '.join(f'{t:.2f}' for t in dumps)}, "
          f"{dump_size / 2**20:.1f} MiB")
    print(f"storagectl backup: median {statistics.median(ours):.2f}s of {', '.join(f'{t:.2f}' for t in ours)}, "
          f"{info['size'] / 2**20:.1f} MiB, peak RSS {rss / 1024:.0f} MiB")
    print(f"ratio: time {statistics.median(ours) / statistics.median(dumps):.2f}x, "
          f"size {info['size'] / dump_size:.2f}x")
    return config, info["id"]


def bench_restore(rounds: int, config: Path, backup_id: str, workdir: Path) -> None:
    tools = {
        "storagectl": lambda url: ["storagectl", "-c", str(config), "restore", backup_id, "--to", "dst", "--yes"],
        "pg_restore": lambda url: ["pg_restore", f"--dbname={url}", str(workdir / "bench.dump")],
        "storagectl --validate": lambda url: ["storagectl", "-c", str(config), "restore", backup_id, "--to", "dst",
                                              "--yes", "--validate"],
    }
    times: dict[str, list[float]] = {name: [] for name in tools}
    for round_ in range(rounds):
        for name in (list(tools) if round_ % 2 == 0 else list(reversed(tools))):
            url = fresh_database("stctl_bench_lo_restore")
            checkpoint()
            times[name].append(timed(tools[name](url))[0])
    for name, runs in times.items():
        print(f"{name}: median {statistics.median(runs):.2f}s of {', '.join(f'{t:.2f}' for t in runs)}")
    print(f"ratio: restore {statistics.median(times['storagectl']) / statistics.median(times['pg_restore']):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-restore", action="store_true")
    parser.add_argument("--force", action="store_true", help="rebuild the database")
    args = parser.parse_args()
    if not shutil.which("storagectl"):
        sys.exit("storagectl is not on PATH (pip install -e .)")
    url = ensure_database(args)
    print(f"database {DATABASE}: {describe(url)}")
    with tempfile.TemporaryDirectory(prefix="stctl-bench-lo-") as tmp:
        config, backup_id = bench_backup(args.rounds, url, Path(tmp))
        if not args.skip_restore:
            bench_restore(args.rounds, config, backup_id, Path(tmp))


if __name__ == "__main__":
    main()
