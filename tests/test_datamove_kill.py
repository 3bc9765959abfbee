"""`kill -9` of `storagectl migrate data run` at a random point, then `--resume`: every row there once,
and the final verify passes."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import storagectl

EVENTS, USERS, BATCH = 12_000, 3_000, 400


def make_source(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, active BOOLEAN);"
                           "CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), "
                           "at DATETIME, amount REAL, body BLOB);")
        conn.executemany("INSERT INTO users VALUES (?, ?, ?)", [(i, f"user {i}", i % 2) for i in range(1, USERS + 1)])
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", [
            (i, 1 + i % USERS, 1_700_000_000 + i, i / 3, os.urandom(40)) for i in range(1, EVENTS + 1)])


def committed_chunks(pg_database) -> int:
    with pg_database.connect() as conn:
        if conn.execute("SELECT to_regclass('storagectl_data_migration')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM storagectl_data_migration WHERE chunk >= 0").fetchone()[0]


def start_run(config: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(storagectl.__file__).parent.parent), "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "storagectl", "-c", str(config), "-q", "migrate", "data", "run",
                             "--from", "lite", "--to", "pg", "--batch-rows", str(BATCH), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_at_a_random_point_then_resume_ends_verified(cli, tmp_path, write_config, pg_database, seed):
    make_source(tmp_path / "src.db")
    config = write_config(f"""\
        backends:
          lite: {{kind: sqlite, path: src.db}}
          pg: {{kind: postgres, url: "{pg_database.url}"}}
        """)
    total_chunks = EVENTS // BATCH + USERS // BATCH + 2
    kill_after = random.Random(seed).randrange(1, total_chunks - 2)
    process = start_run(config, "--no-verify")
    deadline = time.monotonic() + 120
    while committed_chunks(pg_database) < kill_after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"the run ended before chunk {kill_after}"
    assert 0 < committed_chunks(pg_database) < total_chunks

    refused = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--batch-rows", str(BATCH))
    assert refused.exit_code == 2 and "an earlier run into" in refused.stderr and "--resume" in refused.stderr

    result = cli("-c", config, "-o", "json", "migrate", "data", "run", "--from", "lite", "--to", "pg",
                 "--batch-rows", str(BATCH), "--resume")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] is True
    assert {item["target"]: item["rows"] for item in report["items"]} == {"events": EVENTS, "users": USERS}
    with pg_database.connect() as conn:
        for table, rows in (("events", EVENTS), ("users", USERS)):
            assert conn.execute(f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM {table}").fetchone() \
                == (rows, rows, 1, rows)
    assert cli("-c", config, "migrate", "data", "verify", "--from", "lite", "--to", "pg").exit_code == 0
