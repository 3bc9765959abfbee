#!/usr/bin/env python3
"""Cost of the progress display: `backup run`, `restore` and `verify` on a terminal vs piped.

Target (operator experience: progress that costs nothing): on a terminal each command takes
<= 1.05x its piped time, for databases of 10, 150 and 2,000 small tables (100 rows each), and the
bytes the terminal receives do not grow with the number of tables. Both modes run under
``script -qc CMD /dev/null`` (a pty, so the wrapper costs the same); the piped mode runs
``CMD 2>&1 | cat`` inside it. stdout (result tables) goes to /dev/null in both: the bytes counted
are stderr's, where progress goes. Prints median wall and CPU seconds (CPU is steadier on a
busy machine), their ratios and the terminal bytes; exits 0 either way
(benchmarks report, tests assert).

Usage: python bench/bench_progress.py [--tables 10,150,2000] [--rounds 3] [--timeout 600] [--source DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_dataset import ADMIN_URL, database_url  # noqa: E402

SOURCE = Path(__file__).resolve().parent.parent  # the checkout whose storagectl runs (--source)
ROWS = 100
CREATE_TABLES = """
DO $$ BEGIN
  FOR i IN 1..{count} LOOP
    EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, name text, note text, n numeric)', i);
    EXECUTE format('INSERT INTO t%s SELECT g, ''name '' || g, md5(g::text), g * 1.5
                    FROM generate_series(1, {rows}) g', i);
  END LOOP;
END $$;
"""


def fresh_database(name: str) -> str:
    """An empty database (dropped and created: DROP SCHEMA of 2,000 tables runs out of lock slots)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(ADMIN_URL, name)


def ensure_database(name: str, tables: int) -> str:
    """A database of ``tables`` tables of ROWS rows; left alone when it already has them."""
    url = database_url(ADMIN_URL, name)
    with contextlib.suppress(psycopg.OperationalError), psycopg.connect(url) as conn:
        if conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == tables:
            return url
    with psycopg.connect(fresh_database(name), autocommit=True) as conn:
        conn.execute(CREATE_TABLES.format(count=tables, rows=ROWS))
        conn.execute("ANALYZE")
    return url


def write_config(workdir: Path, source_url: str, target_url: str) -> Path:
    config = workdir / "storagectl.yaml"
    config.write_text(
        "version: 1\nbackends:\n"
        f"  src: {{kind: postgres, url: '{source_url}'}}\n"
        f"  dst: {{kind: postgres, url: '{target_url}'}}\n"
        f"destinations:\n  local: {{kind: local, path: {workdir / 'backups'}}}\n"
        "jobs:\n  bench:\n    backends: [src]\n    destination: local\n"
    )
    return config


def environment(source: Path) -> dict[str, str]:
    """Commands run in ``source`` too: ``python -m`` imports from the working directory first."""
    return {"PYTHONPATH": str(source.resolve()), "PATH": "/usr/bin:/bin", "TERM": "xterm-256color",
            "HOME": str(Path.home())}


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # user + system seconds of storagectl (and the wrapper), not of the servers
    output: int  # bytes of stderr the pty received


def run(command: str, terminal: bool, timeout: float, env: dict[str, str]) -> Sample | None:
    """One command on a pty, stderr to it directly or through a pipe; None when it timed out."""
    inner = f"{command} >/dev/null" if terminal else f"{command} 2>&1 >/dev/null | cat"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    keyboard, idle = os.pipe()  # script's stdin stays open: at EOF it would stop relaying output
    try:
        done = subprocess.run(["script", "-qefc", inner, "/dev/null"], stdin=keyboard, capture_output=True,
                              timeout=timeout, env=env, cwd=env["PYTHONPATH"])
    except subprocess.TimeoutExpired:
        return None
    finally:
        os.close(keyboard)
        os.close(idle)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {inner}\n{done.stdout.decode(errors='replace')[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Sample(elapsed, cpu, len(done.stdout))


def commands(config: Path, env: dict[str, str]) -> dict[str, str]:
    """The three commands; restore and verify read a backup made (untimed) beforehand."""
    base = [sys.executable, "-m", "storagectl", "-c", str(config)]
    made = subprocess.run([*base, "-q", "-o", "json", "backup", "run", "--job", "bench"], capture_output=True,
                          text=True, env=env, cwd=env["PYTHONPATH"])
    if made.returncode != 0:
        sys.exit(f"the backup to restore and verify failed ({made.returncode}): {made.stderr}")
    info = json.loads(made.stdout)
    backup_id = (info[0] if isinstance(info, list) else info)["id"]
    line = shlex.join(base)
    return {"backup": f"{line} backup run --job bench",
            "restore": f"{line} restore {backup_id} --to dst",
            "verify": f"{line} backup verify {backup_id}"}


def bench_tables(tables: int, rounds: int, timeout: float, env: dict[str, str]) -> None:
    source = ensure_database(f"stctl_progress_{tables}", tables)
    target = fresh_database(f"stctl_progress_{tables}_dst")
    with tempfile.TemporaryDirectory(prefix="bench-progress-") as scratch:
        config = write_config(Path(scratch), source, target)
        for name, command in commands(config, env).items():
            samples: dict[bool, list[Sample | None]] = {True: [], False: []}
            for round_ in range(rounds):
                for terminal in ((True, False) if round_ % 2 == 0 else (False, True)):
                    if name == "restore":
                        fresh_database(f"stctl_progress_{tables}_dst")  # every restore into an empty one
                    samples[terminal].append(run(command, terminal, timeout, env))
                if None in samples[True] or None in samples[False]:
                    break  # too slow to repeat
            report(tables, name, samples[True], samples[False], timeout)


def report(tables: int, name: str, tty: list[Sample | None], piped: list[Sample | None], timeout: float) -> None:
    label = f"{tables:>5} tables {name:<8}"
    if None in tty or None in piped:
        done = [sample.wall for sample in piped if sample is not None]
        piped_text = f"{statistics.median(done):.2f}s" if done else "-"
        print(f"{label} terminal >{timeout:.0f}s (timed out)  piped {piped_text}", flush=True)
        return
    wall = {mode: statistics.median(s.wall for s in runs) for mode, runs in (("tty", tty), ("pipe", piped))}
    cpu = {mode: statistics.median(s.cpu for s in runs) for mode, runs in (("tty", tty), ("pipe", piped))}
    ratio = wall["tty"] / wall["pipe"]
    output = max(s.output for s in tty) / 1024
    print(f"{label} wall terminal {wall['tty']:7.2f}s piped {wall['pipe']:7.2f}s ratio {ratio:5.2f}x "
          f"{'OK' if ratio <= 1.05 else 'MISSED':<6} | cpu terminal {cpu['tty']:6.2f}s piped {cpu['pipe']:6.2f}s "
          f"ratio {cpu['tty'] / cpu['pipe']:5.2f}x | terminal output {output:8.1f} KiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="10,150,2000", help="comma-separated table counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a run counts as too slow")
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="storagectl checkout to run, e.g. another worktree for before/after figures")
    args = parser.parse_args()
    for tables in (int(count) for count in args.tables.split(",")):
        bench_tables(tables, args.rounds, args.timeout, environment(args.source))


if __name__ == "__main__":
    main()
