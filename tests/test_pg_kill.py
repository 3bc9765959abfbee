"""``kill -9`` of storagectl during PostgreSQL backups and restores, run as a real subprocess: no
pg_dump outlives it, and a restore leaves the target either as it was or complete, never half-way;
a rerun then succeeds and leaves no staging database behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.test_pg_swap import side_databases

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux")


def children_named(parent: int, name: str) -> list[int]:
    """Processes named ``name`` whose parent is ``parent`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if comm == name and int(rest[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_for(condition, what: str, process: subprocess.Popen | None = None, seconds: float = 60):
    """Poll ``condition`` until it returns something truthy (bounded; fails if ``process`` ended first)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(f"storagectl exited ({process.returncode}) before {what}: {process.stderr.read()}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def storagectl(config: Path) -> list[str]:
    return [sys.executable, "-m", "storagectl", "-c", str(config)]


def config_for(write_config, source, target, tmp_path: Path) -> Path:
    return write_config("version: 1\nbackends:\n" + source.backend_yaml("src") + target.backend_yaml("dst")
                        + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")


@linux_only
def test_pg_dump_dies_with_a_killed_backup(pg_database, pg_target, write_config, tmp_path):
    """pg_dump locks a partitioned parent that storagectl's own snapshot session does not: held
    exclusively here, it keeps pg_dump waiting (as a lock wait did in the field) when storagectl dies."""
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE parted (id int) PARTITION BY RANGE (id); "
                     "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100)")
    config = config_for(write_config, pg_database, pg_target, tmp_path)
    dumps: list[int] = []
    with pg_database.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE ONLY parted IN ACCESS EXCLUSIVE MODE")
        backup = subprocess.Popen([*storagectl(config), "backup", "run", "--backend", "src", "--to", "local"],
                                  stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: locker.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                                            "'parted'::regclass").fetchone()[0], "pg_dump waits for the lock", backup)
            dumps = children_named(backup.pid, "pg_dump")  # the one waiting (pg_dump --version ran before)
            assert dumps
            backup.kill()
            backup.wait(30)
            deadline = time.monotonic() + 30
            while any(alive(pid) for pid in dumps) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(alive(pid) for pid in dumps), "pg_dump outlived storagectl"
        finally:
            for pid in filter(alive, dumps):
                os.kill(pid, signal.SIGKILL)
            backup.kill()
            backup.stderr.close()
            locker.execute("ROLLBACK")


def test_spawned_children_ask_for_sigkill_when_their_parent_dies():
    from storagectl.backends.pg_tools import spawn

    script = ("import ctypes; v = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0); "
              "print(v.value)")
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    with spawn([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as child:
        assert child.communicate()[0].strip() == str(int(signal.SIGKILL))


def drop_side_databases(admin_url: str, database) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for name in side_databases(admin_url, database):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
