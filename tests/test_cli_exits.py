"""Exit codes and messages at the edges: Ctrl-C and SIGTERM mid-command, --debug, unknown names.

The interrupt tests run storagectl as a real process and signal it at a moment they can observe
(a COPY waiting on a lock the test holds, a read blocked on a FIFO), never after a guessed sleep.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_backup_cli import make_database

STORAGECTL = [sys.executable, "-m", "storagectl"]


@pytest.fixture
def sqlite_config(tmp_path, write_config) -> Path:
    make_database(tmp_path / "app.db")
    return write_config(f"""
        backends:
          app: {{kind: sqlite, path: {tmp_path / "app.db"}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        jobs:
          nightly: {{backends: [app], destination: local}}
    """)


def _wait_for(condition, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.02)


@pytest.mark.parametrize(("signum", "code", "word", "times"), [(signal.SIGINT, 130, "interrupted", 1),
                                                                (signal.SIGINT, 130, "interrupted", 2),
                                                                (signal.SIGTERM, 143, "terminated", 1),
                                                                (signal.SIGTERM, 143, "terminated", 2)])
def test_signal_during_a_postgres_backup_says_what_was_left(pg_database, write_config, tmp_path, signum, code, word,
                                                            times):
    """Also when the signal comes twice: the second must not cut the clean-up short."""
    with pg_database.connect() as db:
        db.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
    config = write_config("backends:\n" + pg_database.backend_yaml("pg")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    with pg_database.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # the backup blocks on it
        run = subprocess.Popen([*STORAGECTL, "-c", str(config), "backup", "run", "--backend", "pg", "--to", "local"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: _waiting_for_a_lock(locker, pg_database.name), "the backup waiting on the lock")
            for _ in range(times):
                run.send_signal(signum)
            _, stderr = run.communicate(timeout=60)
        finally:
            run.kill()
        locker.execute("ROLLBACK")
    assert run.returncode == code, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {word} (no backup of backend 'pg'") and "partial objects were removed" in line
    assert "Traceback" not in stderr
    assert not [p for p in (tmp_path / "backups").rglob("*") if p.is_file()]


def _waiting_for_a_lock(connection, database: str) -> bool:
    return connection.execute("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                              "WHERE NOT l.granted AND d.datname = %s", (database,)).fetchone()[0] > 0


@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                       (signal.SIGTERM, 143, "terminated")])
def test_signal_during_verify_says_nothing_changed(cli, sqlite_config, signum, code, word):
    result = cli("-c", sqlite_config, "-o", "json", "backup", "run", "--job", "nightly")
    assert result.exit_code == 0, result.stderr
    [info] = result.json()
    [stored] = Path(info["location"]).glob("00001-*")
    stored.unlink()
    os.mkfifo(stored)  # the verify blocks reading it until the test opens the other end
    verify = subprocess.Popen([*STORAGECTL, "-c", str(sqlite_config), "backup", "verify", info["id"]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        writer = _open_writer_once_read(stored)
        verify.send_signal(signum)
        time.sleep(0.2)  # not needed for correctness: the signal is handled whenever the read returns
        os.close(writer)  # the blocked read ends (short object), so the worker can finish
        _, stderr = verify.communicate(timeout=60)
    finally:
        verify.kill()
    assert verify.returncode == code, stderr
    assert stderr.splitlines()[-1] == f"error: {word} (backup {info['id']} was not fully verified; nothing was changed)"


def _open_writer_once_read(fifo: Path) -> int:
    """A non-blocking open for writing succeeds only once a reader has the FIFO open."""
    fd = None

    def opened() -> bool:
        nonlocal fd
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        return fd is not None

    _wait_for(opened, "the verify reading the object")
    return fd


def test_signal_outside_any_handled_step_still_says_so(tmp_path, write_config):
    """A command that does not catch the interrupt itself (here: diag on a server that never answers)
    still prints one line and exits 143, not typer's silent 130."""
    from tests.fakes.servers import SilentServer

    with SilentServer() as server:
        config = write_config(f"""
            backends:
              hung: {{kind: redis, url: "redis://127.0.0.1:{server.port}/0", timeouts: {{connect: 60}}}}
        """)
        diag = subprocess.Popen([*STORAGECTL, "-c", str(config), "diag"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: server._clients, "diag connecting")
            diag.send_signal(signal.SIGTERM)
            _, stderr = diag.communicate(timeout=60)
        finally:
            diag.kill()
    assert diag.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "error: terminated before the command finished"


def test_debug_keeps_the_documented_exit_code(cli, write_config):
    path = write_config("backends:\n  a:\n    kind: mysql\n")
    plain, debug = cli("-c", path, "config", "validate"), cli("--debug", "-c", path, "config", "validate")
    assert plain.exit_code == debug.exit_code == 2
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr


def test_debug_keeps_not_found_and_usage_codes(cli, sqlite_config):
    assert cli("--debug", "-c", sqlite_config, "backup", "show", "20990101T000000Z-000000").exit_code == 5
    assert cli("--debug", "-c", sqlite_config, "restore", "latest", "--to", "nope").exit_code == 2


def test_restore_to_an_unknown_backend_is_a_usage_error(cli, sqlite_config):
    for backup_id in ("latest", "20990101T000000Z-000000"):
        result = cli("-c", sqlite_config, "restore", backup_id, "--to", "nope")
        assert result.exit_code == 2, result.stderr
        assert "unknown backend 'nope'" in result.stderr


@pytest.mark.parametrize("pad", [0, 300], ids=["libpq-reader", "psql-reader"])
def test_signal_cancels_a_running_copy_instead_of_waiting_for_it(pg_database, write_config, tmp_path, pad):
    """A COPY that would run for a long time (row security sleeping per row, as a huge table would)
    is cancelled on SIGTERM: the run ends with its message, not when the table is done. Tables of
    16 MiB or more are read by psql in a session of its own, which is ended too."""
    from storagectl.backends.postgres.archive import PSQL_MIN_BYTES

    role = f"{pg_database.name}_reader"
    tables = ["slow", "slow2"] if pad else ["slow"]  # the largest table goes to the open connection (libpq)
    with pg_database.connect() as db:
        db.execute(f'CREATE ROLE "{role}" LOGIN')
        for table in tables:
            db.execute(f"CREATE TABLE {table} AS SELECT g AS id, repeat('x', {pad}) AS pad "
                       "FROM generate_series(1, 100000) g")
            size = db.execute(f"SELECT pg_relation_size('{table}')").fetchone()[0]
            assert (size >= PSQL_MIN_BYTES) == (pad > 0)
            db.execute(f'GRANT SELECT ON {table} TO "{role}"')
            db.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            db.execute(f'CREATE POLICY crawl ON {table} FOR SELECT TO "{role}" USING (pg_sleep(0.01) IS NOT NULL)')
    url = pg_database.url.replace(f"{pg_database.user}@", f"{role}@", 1)
    config = write_config(f"backends:\n  pg: {{kind: postgres, url: \"{url}\"}}\n"
                          f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    run = subprocess.Popen([*STORAGECTL, "-c", str(config), "backup", "run", "--backend", "pg", "--to", "local"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with pg_database.connect() as watcher:
            # every table's COPY running (with two, the second is psql's: it has no snapshot connection)
            _wait_for(lambda: _copies_running(watcher, pg_database.name) == len(tables), "the COPY of each table")
            run.send_signal(signal.SIGTERM)
            _, stderr = run.communicate(timeout=120)  # the COPY alone would take over 1,000 s
            _wait_for(lambda: not _copy_running(watcher, pg_database.name), "the COPY cancelled on the server")
    finally:
        run.kill()
        with pg_database.connect() as db:
            db.execute(f"DROP TABLE {', '.join(tables)}")
            db.execute(f'DROP ROLE "{role}"')
    assert run.returncode == 143, stderr
    assert "error: terminated (no backup of backend 'pg'" in stderr


def _copies_running(connection, database: str) -> int:
    return connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                              "AND query ILIKE 'COPY%%'", (database,)).fetchone()[0]


def _copy_running(connection, database: str) -> bool:
    return _copies_running(connection, database) > 0
