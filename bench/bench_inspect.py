#!/usr/bin/env python3
"""`storagectl inspect` against the reference tools, on the same data in the same run.

- Redis: 1 M keys in 2,000 prefixes (strings of varied length, every 10th a hash) loaded by a Lua
  loop into one db (leased like the tests do, so a test run never shares it); `storagectl inspect keys`
  (full coverage) vs `redis-cli -n DB --memkeys`, alternating, plus the peak RSS of storagectl.
- PostgreSQL: 5,000 tables with 2 indexes each in a scratch database; `storagectl inspect tables`
  (--top 20 and --top 5000) vs `psql -c '\\dt+'`, alternating.

- Overview (`--only overview`): `storagectl -o json inspect` over a registry of PostgreSQL (the
  server's `postgres` database), a SQLite file and a Redis db, all idle, as issue 13 measures it
  (target <= 1 s); with `python -c pass` and `storagectl --help` as the start-up floors.

Run under `flock /tmp/bench.lock`; prints medians, spreads, ratios and the load average.
Usage: python bench/bench_inspect.py [--redis-db 15] [--keys 1000000] [--tables 5000] [--rounds 3]
                                     [--only redis|postgres|overview]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "stctl_bench_inspect"
LOAD_LUA = """
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local key = 'svc' .. (i % 40) .. ':obj' .. (i % 2000) .. ':' .. i
  if i % 10 == 0 then
    redis.call('HSET', key, 'a', i, 'b', string.rep('y', i % 50))
  else
    redis.call('SET', key, string.rep('x', (i * 7919) % 200))
  end
end
return 1
"""


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, from GNU time) of one run; output discarded."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{command[0]} failed: {done.stderr[-500:]}")
    return elapsed, int(done.stderr.strip().splitlines()[-1])


def storagectl(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "storagectl", "-q", "-c", str(config), *args]


def alternate(rounds: int, commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, list[tuple[float, int]]]:
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            results[name].append(timed(command, env))
    return results


def report(title: str, results: dict[str, list[tuple[float, int]]], reference: str) -> None:
    print(f"\n{title} (load average {os.getloadavg()[0]:.2f})")
    anchor = statistics.median(t for t, _ in results[reference])
    for name, runs in results.items():
        times = [t for t, _ in runs]
        median = statistics.median(times)
        rss = max(r for _, r in runs) / 1024
        print(f"  {name:28s} median {median:7.2f}s  (runs {min(times):.2f}-{max(times):.2f}s)  "
              f"{median / anchor:5.2f}x {reference}  peak RSS {rss:.0f} MiB")


@contextmanager
def leased_db(db: int) -> Iterator[Any]:
    """A client of Redis db ``db``, empty, under the test suite's lease (so a test run never shares it);
    flushed again afterwards."""
    import redis

    control = redis.Redis.from_url(f"{REDIS_URL}/0")
    lease = f"storagectl-test:lease:{db}"
    if not control.set(lease, "bench_inspect", nx=True, ex=3600):
        sys.exit(f"redis db {db} is leased by a test run; choose another --redis-db")
    client = redis.Redis.from_url(f"{REDIS_URL}/{db}")
    try:
        client.flushdb()
        yield client
    finally:
        client.flushdb()
        control.delete(lease)


def bench_redis(args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> None:
    with leased_db(args.redis_db) as client:
        script = client.register_script(LOAD_LUA)
        for first in range(1, args.keys + 1, 100_000):
            script(args=[first, min(first + 99_999, args.keys)])
        print(f"redis db {args.redis_db}: {client.dbsize():,} keys")
        config = workdir / "redis.yaml"
        config.write_text(f"backends:\n  cache:\n    kind: redis\n    url: {REDIS_URL}/{args.redis_db}\n")
        commands = {"storagectl inspect keys": storagectl(config, "-o", "json", "inspect", "keys", "-b", "cache"),
                    "redis-cli --memkeys": ["redis-cli", "-n", str(args.redis_db), "--memkeys"]}
        report(f"Redis, {args.keys:,} keys", alternate(args.rounds, commands, env), "redis-cli --memkeys")


def bench_postgres(args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DB}"')
        admin.execute(f'CREATE DATABASE "{PG_DB}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for first in range(0, args.tables, 500):
                conn.execute(f"""DO $$ BEGIN FOR i IN {first}..{min(first + 500, args.tables) - 1} LOOP
                  EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text, w int)', i);
                  EXECUTE format('CREATE INDEX t%s_w ON t%s (w)', i, i);
                  EXECUTE format('INSERT INTO t%s SELECT g, md5(g::text), g FROM generate_series(1, %s) g', i, i % 50);
                END LOOP; END $$""")
            conn.execute("ANALYZE")
        print(f"postgres {PG_DB}: {args.tables:,} tables, {2 * args.tables:,} indexes")
        config = workdir / "pg.yaml"
        config.write_text(f"backends:\n  pg:\n    kind: postgres\n    url: {url}\n")
        commands = {
            "storagectl inspect tables": storagectl(config, "inspect", "tables", "-b", "pg"),
            "  ... --top 5000 -o json": storagectl(config, "-o", "json", "inspect", "tables", "-b", "pg",
                                                   "--top", str(args.tables)),
            "psql \\dt+": ["psql", url, "-c", "\\dt+"],
        }
        report(f"PostgreSQL, {args.tables:,} tables", alternate(args.rounds, commands, env), "psql \\dt+")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')


def bench_overview(args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> None:
    import sqlite3

    with leased_db(args.redis_db) as client:
        client.mset({f"svc{i % 7}:obj:{i}": "x" * (i % 50) for i in range(1000)})
        with sqlite3.connect(workdir / "app.db") as db:
            db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            db.executemany("INSERT INTO t (v) VALUES (?)", [("y" * (i % 80),) for i in range(5000)])
        config = workdir / "overview.yaml"
        config.write_text(f"backends:\n  pg: {{kind: postgres, url: '{PG_ADMIN}'}}\n"
                          f"  file: {{kind: sqlite, path: {workdir / 'app.db'}}}\n"
                          f"  cache: {{kind: redis, url: '{REDIS_URL}/{args.redis_db}'}}\n")
        commands = {"storagectl -o json inspect": storagectl(config, "-o", "json", "inspect"),
                    "storagectl --help": [sys.executable, "-m", "storagectl", "--help"],
                    "python -c pass": [sys.executable, "-c", "pass"]}
        for command in commands.values():  # warm the page cache and .pyc files
            timed(command, env)
        results = alternate(args.rounds, commands, env)
        report("Overview of PostgreSQL + SQLite + Redis, idle", results, "storagectl -o json inspect")
        median = statistics.median(t for t, _ in results["storagectl -o json inspect"])
        print(f"  storagectl -o json inspect: {median:.2f}s (target <= 1.00 s) -> {'OK' if median <= 1 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-db", type=int, default=15)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--tables", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["redis", "postgres", "overview"])
    args = parser.parse_args()
    # As installed (pip writes .pyc files): without this, a shell with PYTHONDONTWRITEBYTECODE set makes
    # every run compile storagectl from source, which is start-up the tool does not have (bench_startup too).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200")
    with tempfile.TemporaryDirectory() as scratch:
        if args.only in (None, "redis"):
            bench_redis(args, Path(scratch), env)
        if args.only in (None, "postgres"):
            bench_postgres(args, Path(scratch), env)
        if args.only in (None, "overview"):
            bench_overview(args, Path(scratch), env)


if __name__ == "__main__":
    main()
