"""``kill -9`` of storagectl during PostgreSQL backups and restores, run as a real subprocess: no
pg_dump outlives it, and a restore leaves the target either as it was or complete, never half-way;
a rerun then succeeds and leaves no staging database behind."""

from __future__ import annotations

import functools
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
    from storagectl.backends.postgres.tools import spawn

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


# -- restore into an empty target, killed ------------------------------------------------------------
ROWS = 1_500_000  # enough that the load is still running when the poll sees it start


def guards_held(admin_url: str, database) -> int:
    """Guards (advisory locks of running restores) held on ``database`` or its staging databases."""
    from storagectl.backends.postgres.guard import guard_held

    with psycopg.connect(admin_url, autocommit=True) as admin:
        return sum(guard_held(admin, name) for name in [database.name, *side_databases(admin_url, database)])


def running_in(admin_url: str, database_prefix: str, statement: str) -> bool:
    """A session on a database named ``database_prefix...`` is running ``statement`` (an ILIKE pattern)."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE starts_with(datname, %s) "
                             "AND query ILIKE %s AND state = 'active'", [database_prefix, statement]).fetchone()[0] > 0


def copying_into(admin_url: str, database_prefix: str) -> bool:
    return running_in(admin_url, database_prefix, "COPY %FROM STDIN%")


def user_tables(database) -> list[str]:
    with database.connect() as conn:
        return [name for (name,) in conn.execute("SELECT relname FROM pg_class c JOIN pg_namespace n ON "
                                                 "n.oid = c.relnamespace WHERE n.nspname = 'public'")]


@pytest.fixture
def big_backup(pg_database, pg_target, write_config, tmp_path):
    """A backup of a table large enough to catch mid-load, and a config restoring it into ``dst``."""
    with pg_database.connect() as conn:
        conn.execute(f"CREATE TABLE orders (id int PRIMARY KEY, h text); CREATE TABLE lines (o int REFERENCES orders); "
                     f"INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g; "
                     "INSERT INTO lines VALUES (1)")
    config = config_for(write_config, pg_database, pg_target, tmp_path)
    backup = subprocess.run([*storagectl(config), "backup", "run", "--backend", "src", "--to", "local"],
                            capture_output=True, text=True)
    assert backup.returncode == 0, backup.stderr
    return config, backup.stdout.strip()


def kill_restore_when(config: Path, backup_id: str, moment, what: str) -> None:
    restore = subprocess.Popen([*storagectl(config), "restore", backup_id, "--to", "dst"],
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for(moment, what, restore)
    finally:
        restore.kill()
        restore.wait(30)
        restore.stderr.close()


def test_a_killed_restore_into_an_empty_target_leaves_it_empty_and_a_rerun_completes_it(
        big_backup, pg_target, postgres_admin_url):
    config, backup_id = big_backup
    staging_prefix = pg_target.name + "__stctl_restore_"
    moments = {  # the first two as a restore into the target itself would show them too
        "the load runs": lambda known: copying_into(postgres_admin_url, pg_target.name),
        "the primary key is built": lambda known: running_in(postgres_admin_url, pg_target.name, "%PRIMARY KEY%"),
        "a new staging database exists": lambda known: set(side_databases(postgres_admin_url, pg_target)) - known,
    }
    for what, moment in moments.items():
        known = set(side_databases(postgres_admin_url, pg_target))  # left by the kills before
        kill_restore_when(config, backup_id, functools.partial(moment, known), what)
        assert user_tables(pg_target) == [], f"killed when {what}: the target is not empty"
        assert side_databases(postgres_admin_url, pg_target), "the killed restore left no staging database"
    wait_for(lambda: guards_held(postgres_admin_url, pg_target) == 0, "the killed restores' sessions to end")

    rerun = subprocess.run([*storagectl(config), "restore", backup_id, "--to", "dst", "--validate"],
                           capture_output=True, text=True)

    assert rerun.returncode == 0, rerun.stderr
    assert "dropped database " + staging_prefix in rerun.stdout + rerun.stderr
    assert side_databases(postgres_admin_url, pg_target) == []
    assert sorted(user_tables(pg_target)) == ["lines", "orders", "orders_pkey"]


def test_a_live_restores_staging_database_is_never_taken_for_stale(pg_database, pg_target, postgres_admin_url,
                                                                   tmp_path):
    """Its guard (an advisory lock held by the running restore's session) keeps it; once that
    session is gone, the next restore to the same target drops it and says so."""
    from storagectl.archive.api import RestoreOptions
    from storagectl.backends.postgres.guard import hold_guards
    from storagectl.backends.postgres.swap import side_name
    from tests.test_backup_postgres import backend_for, backup_to

    archive = backup_to(tmp_path / "b", pg_database)
    other = side_name(pg_target.name, "restore", "0badc0de")
    backend = backend_for(pg_target)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{other}"')
        try:
            with psycopg.connect(postgres_admin_url, autocommit=True) as running:
                hold_guards(backend, running, (other,))
                assert backend.restore(archive, RestoreOptions()).notes == []
                assert side_databases(postgres_admin_url, pg_target) == [other]
            notes = backend.restore(archive, RestoreOptions()).notes
            assert notes == [f"dropped database {other}, left behind by an earlier restore that no longer runs"]
            assert side_databases(postgres_admin_url, pg_target) == []
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{other}"')


def test_the_old_database_a_kill_after_the_swap_leaves_is_dropped_once_its_restore_is_gone(
        pg_database, pg_target, postgres_admin_url, tmp_path):
    """A kill just after the swap leaves ``<db>__stctl_old_<token>``. It is kept while the restore
    that made it still runs (it guards ``<db>__stctl_restore_<token>`` until it has dropped it) and
    while a session reads it; then the next restore drops it and says so."""
    from storagectl.archive.api import RestoreOptions
    from storagectl.backends.postgres.guard import hold_guards
    from storagectl.backends.postgres.swap import side_name
    from tests.test_backup_postgres import backend_for, backup_to

    archive = backup_to(tmp_path / "b", pg_database)
    old, restoring = side_name(pg_target.name, "old", "0ddba11e"), side_name(pg_target.name, "restore", "0ddba11e")
    backend = backend_for(pg_target)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{old}"')
        try:
            with psycopg.connect(postgres_admin_url, autocommit=True) as running:
                hold_guards(backend, running, (restoring,))  # the restore that swapped, still dropping it
                assert backend.restore(archive, RestoreOptions()).notes == []
            with psycopg.connect(postgres_admin_url, dbname=old, autocommit=True):  # someone reads the old contents
                assert backend.restore(archive, RestoreOptions()).notes == []
            assert side_databases(postgres_admin_url, pg_target) == [old]
            notes = backend.restore(archive, RestoreOptions()).notes
            assert notes == [f"dropped database {old}, the old contents left behind by an earlier restore that no "
                             "longer runs"]
            assert side_databases(postgres_admin_url, pg_target) == []
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')


def test_in_place_a_killed_restore_is_marked_and_a_rerun_finishes_it(pg_database, pg_target, write_config,
                                                                     postgres_admin_url, tmp_path):
    """A role without CREATEDB restores into the target itself: killed mid-load, the target holds a
    partial restore marked with the backup's id; a plain rerun of that backup discards it, restores
    and validates, and the database's own comment is back."""
    import uuid

    from storagectl.backends.postgres.target import MARKER

    role = f"stctl_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f'ALTER DATABASE "{pg_target.name}" OWNER TO {role}')
        admin.execute(f"COMMENT ON DATABASE \"{pg_target.name}\" IS 'orders'")
    try:
        with pg_database.connect() as conn:
            conn.execute(f"CREATE TABLE orders (id int PRIMARY KEY, h text); ALTER TABLE orders OWNER TO {role}; "
                         f"INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
        target_as_role = pg_target.backend_yaml("dst").replace("postgres@", f"{role}@")
        config = write_config("version: 1\nbackends:\n" + pg_database.backend_yaml("src") + target_as_role
                              + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
        backup = subprocess.run([*storagectl(config), "backup", "run", "--backend", "src", "--to", "local"],
                                capture_output=True, text=True)
        assert backup.returncode == 0, backup.stderr
        backup_id = backup.stdout.strip()

        kill_restore_when(config, backup_id, lambda: copying_into(postgres_admin_url, pg_target.name), "the load runs")

        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            marker = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                   "WHERE datname = %s", [pg_target.name]).fetchone()[0]
        assert marker.startswith(f"{MARKER}{backup_id}\n") and user_tables(pg_target)
        wait_for(lambda: guards_held(postgres_admin_url, pg_target) == 0, "the killed restore's sessions to end")
        rerun = subprocess.run([*storagectl(config), "restore", backup_id, "--to", "dst", "--validate"],
                               capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        assert f"unfinished restore of backup {backup_id}" in rerun.stderr
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            assert admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                 "WHERE datname = %s", [pg_target.name]).fetchone()[0] == "orders"
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            for database in (pg_target, pg_database):
                admin.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
            admin.execute(f"DROP ROLE {role}")
