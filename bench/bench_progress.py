#!/usr/bin/env python3
"""Cost of the progress display: `backup run`, `restore` and `verify` on a terminal vs piped.

Target (operator experience: progress that costs nothing): on a terminal each command takes
<= 1.05x its piped time, for databases of 10, 150 and 2,000 small tables (100 rows each), and the
bytes the terminal receives do not grow with the number of tables. Both modes run under
``script -qc CMD /dev/null`` (a pty, so the wrapper costs the same); the piped mode runs
``CMD 2>&1 | cat`` inside it. stdout (result tables) goes to /dev/null in both: the bytes counted
are stderr's, where progress goes.

Wall and CPU time are storagectl's own: a small wrapper inside ``script`` forks the command, waits
for it (wait4) and writes its wall time and rusage, so neither ``script``, ``cat`` nor the
interpreter that starts them count. Rounds alternate which mode runs first, and the server is
settled (CHECKPOINT) before every timed run, so the dirty pages one run leaves are not written
during the next. Per case: median and range (min-max) of wall and CPU seconds in each mode, the
ratio of the medians, and the median of the per-round ratios (the two runs of a round are
neighbours in time, so that ratio sees the least drift). Exits 0 either way (benchmarks report,
tests assert).

Usage: python bench/bench_progress.py [--tables 10,150,2000] [--rounds 3] [--commands backup,restore,verify]
       [--timeout 600] [--source DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
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


# Runs argv[2:] and writes its wall seconds, rusage and exit code as JSON to argv[1]: only the
# command is measured, not `script` around it nor `cat` beside it. No site, no imports to speak of.
MEASURE = """
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"wall": time.perf_counter() - started, "cpu": usage.ru_utime + usage.ru_stime,
               "code": os.waitstatus_to_exitcode(status)}, out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds, fork to exit of storagectl
    cpu: float  # user + system seconds of storagectl (and any children it waited for), not of the servers
    output: int  # bytes of stderr the pty received


def run(command: str, terminal: bool, timeout: float, env: dict[str, str]) -> Sample | None:
    """One command on a pty, stderr to it directly or through a pipe; None when it timed out."""
    with tempfile.NamedTemporaryFile(prefix="bench-progress-", suffix=".json") as measured:
        measure = shlex.join([sys.executable, "-I", "-S", "-c", MEASURE, measured.name])
        inner = f"{measure} {command} >/dev/null" if terminal else f"{measure} {command} 2>&1 >/dev/null | cat"
        keyboard, idle = os.pipe()  # script's stdin stays open: at EOF it would stop relaying output
        try:
            done = subprocess.run(["script", "-qefc", inner, "/dev/null"], stdin=keyboard, capture_output=True,
                                  timeout=timeout, env=env, cwd=env["PYTHONPATH"])
        except subprocess.TimeoutExpired:
            return None
        finally:
            os.close(keyboard)
            os.close(idle)
        if done.returncode != 0:
            sys.exit(f"failed ({done.returncode}): {inner}\n{done.stdout.decode(errors='replace')[-2000:]}")
        figures = json.loads(Path(measured.name).read_text())
    return Sample(figures["wall"], figures["cpu"], len(done.stdout))


def settle() -> None:
    """Dirty pages of the previous run written now, not during the next timed one."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute("CHECKPOINT")


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


def bench_tables(tables: int, rounds: int, timeout: float, env: dict[str, str], only: set[str]) -> None:
    source = ensure_database(f"stctl_progress_{tables}", tables)
    target = fresh_database(f"stctl_progress_{tables}_dst")
    with tempfile.TemporaryDirectory(prefix="bench-progress-") as scratch:
        config = write_config(Path(scratch), source, target)
        for name, command in commands(config, env).items():
            if name not in only:
                continue
            pairs: list[tuple[Sample, Sample]] = []
            for round_ in range(rounds):
                samples: dict[bool, Sample | None] = {}
                for terminal in ((True, False) if round_ % 2 == 0 else (False, True)):
                    if name == "restore":
                        fresh_database(f"stctl_progress_{tables}_dst")  # every restore into an empty one
                    settle()
                    samples[terminal] = run(command, terminal, timeout, env)
                tty, piped = samples[True], samples[False]
                if tty is None or piped is None:
                    print(f"{tables:>5} tables {name:<8} timed out (>{timeout:.0f}s): "
                          f"terminal {_seconds(tty)} piped {_seconds(piped)}", flush=True)
                    break  # too slow to repeat
                pairs.append((tty, piped))
            else:
                report(tables, name, pairs)


def _seconds(sample: Sample | None) -> str:
    return "-" if sample is None else f"{sample.wall:.2f}s"


def report(tables: int, name: str, pairs: list[tuple[Sample, Sample]]) -> None:
    """One line per case: wall and CPU, each median [min-max] per mode, ratio of medians and median
    of the per-round ratios, OK when both ratios of wall time are within the target."""
    wall = _comparison([tty.wall for tty, _ in pairs], [piped.wall for _, piped in pairs])
    cpu = _comparison([tty.cpu for tty, _ in pairs], [piped.cpu for _, piped in pairs])
    worst = max(wall[1], wall[2])
    output = max(tty.output for tty, _ in pairs) / 1024
    print(f"{tables:>5} tables {name:<8} x{len(pairs)} | wall {wall[0]} {'OK' if worst <= 1.05 else 'MISSED':<6} "
          f"| cpu {cpu[0]} | terminal output {output:7.1f} KiB", flush=True)


def _comparison(tty: list[float], piped: list[float]) -> tuple[str, float, float]:
    """``terminal 1.20s [1.10-1.31] piped ... ratio 1.02x paired 1.01x [0.98-1.04]``, the ratio of
    medians and the median per-round ratio."""
    ratio = statistics.median(tty) / statistics.median(piped)
    paired = [t / p for t, p in zip(tty, piped, strict=True)]
    text = (f"terminal {_spread(tty, 's')} piped {_spread(piped, 's')} ratio {ratio:.3f}x "
            f"paired {_spread(paired, 'x', 3)}")
    return text, ratio, statistics.median(paired)


def _spread(values: list[float], unit: str, digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f}{unit} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="10,150,2000", help="comma-separated table counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commands", default="backup,restore,verify", help="comma-separated: which to time")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a run counts as too slow")
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="storagectl checkout to run, e.g. another worktree for before/after figures")
    args = parser.parse_args()
    env = environment(args.source)
    # Bytecode written now: a first run compiling it would look slower than the others.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "storagectl"], cwd=env["PYTHONPATH"], env=env, check=True)
    for tables in (int(count) for count in args.tables.split(",")):
        bench_tables(tables, args.rounds, args.timeout, env, set(args.commands.split(",")))


if __name__ == "__main__":
    main()
