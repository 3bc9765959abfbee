"""Where a PostgreSQL restore goes when the role may not create databases: in place, under a marker
that a rerun recognises; and a failed restore leaves the target's database-level settings as they were."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest

from storagectl.archive.api import RestoreOptions
from storagectl.backends.postgres.schema import quote_literal
from storagectl.backends.postgres.target import MARKER
from tests.test_backup_postgres import backend_for, backup_to, table_contents
from tests.test_pg_swap import as_role, side_databases

SETTINGS_SQL = ("SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*'), s.setconfig FROM pg_db_role_setting s "
                "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s ORDER BY 1")
# What postgis_topology's script does: a database-level search_path for the database it is created in.
SETS_SEARCH_PATH = ("\nDO $$BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path = public, topology', "
                    "pg_catalog.current_database()); END$$;\n")


@pytest.fixture
def owner(postgres_admin_url, pg_database, pg_target):
    """A role without CREATEDB that owns the target database and the source's tables."""
    name = f"stctl_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN")
        admin.execute(f'ALTER DATABASE "{pg_target.name}" OWNER TO {name}')
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text); "
                     "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g; "
                     f"ALTER TABLE items OWNER TO {name}")
    yield name
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        for database in (pg_target, pg_database):  # what the role owns goes before the role
            admin.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
        admin.execute(f"DROP ROLE {name}")


def rewrite(archive, root, name: str, data: bytes) -> None:
    (root / name).write_bytes(data)
    archive.objects[name]["sha256"] = hashlib.sha256(data).hexdigest()


def failing_archive(source, tmp_path):
    """A backup whose pre-data sets a database-level search_path, and whose data then fails to load."""
    archive = backup_to(tmp_path / "b", source)
    rewrite(archive, tmp_path / "b", "schema/pre-data.sql",
            (tmp_path / "b" / "schema/pre-data.sql").read_bytes() + SETS_SEARCH_PATH.encode())
    rewrite(archive, tmp_path / "b", archive.metadata["tables"][0]["objects"][0], b"not\ta\tcopy\trow\n")
    return archive


def settings(admin_url: str, database: str) -> list[tuple]:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return admin.execute(SETTINGS_SQL, [database]).fetchall()


def comment(admin_url: str, database: str) -> str | None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                             [database]).fetchone()[0]


@pytest.mark.parametrize("in_place", [False, True], ids=["staged", "in-place"])
def test_a_failed_restore_leaves_the_targets_database_settings_as_they_were(
        in_place, owner, pg_database, pg_target, postgres_admin_url, tmp_path):
    archive = failing_archive(pg_database, tmp_path)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{pg_target.name}" SET work_mem = \'64MB\'')
        admin.execute(f'ALTER ROLE {owner} IN DATABASE "{pg_target.name}" SET statement_timeout = \'5min\'')
    before = settings(postgres_admin_url, pg_target.name)
    backend = as_role(pg_target, owner) if in_place else backend_for(pg_target)

    with pytest.raises(Exception, match="items.*left empty"):
        backend.restore(archive, RestoreOptions(backup_id="b1"))

    assert settings(postgres_admin_url, pg_target.name) == before
    assert backend_for(pg_target).is_empty() and comment(postgres_admin_url, pg_target.name) is None
    assert side_databases(postgres_admin_url, pg_target) == []


@pytest.mark.parametrize(("rerun", "replace_existing"), [("b1", False), ("b2", True)])
def test_in_place_a_restore_cut_off_is_marked_and_a_rerun_of_that_backup_finishes_it(
        rerun, replace_existing, owner, pg_database, pg_target, postgres_admin_url, tmp_path, monkeypatch):
    """A role without CREATEDB restores in place. Cut off after the load (SystemExit stands for the
    kill -9 that tests/test_pg_kill.py does for real), the target keeps the marker naming the
    backup; another backup is refused, naming it; a rerun of the same one (or another with --yes)
    finishes and the database's own comment is back."""
    from storagectl.backends.postgres import archive as pg_archive
    from storagectl.errors import OperationFailed

    archive = backup_to(tmp_path / "b", pg_database)
    with pg_target.connect() as conn:
        conn.execute(f"COMMENT ON DATABASE \"{pg_target.name}\" IS 'orders, it''s production'")
    backend = as_role(pg_target, owner)
    real_load = pg_archive._restore_into

    def load_then_cut_off(*args, **kwargs):
        real_load(*args, **kwargs)
        raise SystemExit(137)

    monkeypatch.setattr(pg_archive, "_restore_into", load_then_cut_off)
    with pytest.raises(SystemExit):
        backend.restore(archive, RestoreOptions(backup_id="b1"))
    monkeypatch.undo()
    assert comment(postgres_admin_url, pg_target.name).startswith(MARKER + "b1\n")
    assert backend.unfinished_restore() == "b1"

    with pytest.raises(OperationFailed, match="unfinished restore of backup b1 .*nothing was restored") as caught:
        backend.restore(archive, RestoreOptions(backup_id="b2"))
    assert "rerun the restore of backup b1" in caught.value.hint

    backend.restore(archive, RestoreOptions(backup_id=rerun, replace_existing=replace_existing))
    assert table_contents(pg_target) == table_contents(pg_database)
    assert comment(postgres_admin_url, pg_target.name) == "orders, it's production"
    assert backend.unfinished_restore() is None and side_databases(postgres_admin_url, pg_target) == []


def test_a_second_restore_into_a_target_being_restored_is_refused(pg_database, pg_target, postgres_admin_url,
                                                                   tmp_path):
    from storagectl.backends.postgres.guard import hold_guards
    from storagectl.errors import OperationFailed

    archive = backup_to(tmp_path / "b", pg_database)
    backend = backend_for(pg_target)
    with psycopg.connect(postgres_admin_url, autocommit=True) as running:
        hold_guards(backend, running, (pg_target.name,))
        with pytest.raises(OperationFailed, match="another storagectl restore into .* is running; nothing was"):
            backend.restore(archive, RestoreOptions(backup_id="b1"))
    backend.restore(archive, RestoreOptions(backup_id="b1"))  # once it is over
    assert side_databases(postgres_admin_url, pg_target) == []


def test_databases_whose_names_shared_a_31_bit_guard_key_are_restored_at_once(pg_target, postgres_admin_url):
    """Guards were pg_advisory_lock(int4, int4) of a 31-bit CRC of the name: a restore into one of
    these two databases was refused ("another storagectl restore ... is running") while one into
    the other ran. With 64-bit keys each has its own guard."""
    import zlib

    from storagectl.backends.postgres.guard import guard_held, hold_guards

    first, second = "orders_3985819", "orders_4420602"
    assert zlib.crc32(first.encode()) & 0x7FFFFFFF == zlib.crc32(second.encode()) & 0x7FFFFFFF
    backend = backend_for(pg_target)
    with psycopg.connect(postgres_admin_url, autocommit=True) as running, \
            psycopg.connect(postgres_admin_url, autocommit=True) as other:
        hold_guards(backend, running, (first,))
        hold_guards(backend, other, (second,))
        assert guard_held(other, first) and guard_held(running, second)
        assert not guard_held(running, first)  # its own session does not count


def test_a_guard_of_the_older_31_bit_form_still_counts_as_held(pg_target, postgres_admin_url):
    """A restore by an older storagectl (still running during an upgrade) holds its guard as
    pg_advisory_lock(21332, crc): its target is not restored into at the same time, and its
    staging database is not taken for a leftover."""
    import zlib

    from storagectl.backends.postgres.guard import LEGACY_GUARD_CLASS, guard_held, hold_guards
    from storagectl.errors import OperationFailed

    name = pg_target.name
    with psycopg.connect(postgres_admin_url, autocommit=True) as older, \
            psycopg.connect(postgres_admin_url, autocommit=True) as newer:
        older.execute("SELECT pg_advisory_lock(%s, %s)", [LEGACY_GUARD_CLASS, zlib.crc32(name.encode()) & 0x7FFFFFFF])
        assert guard_held(newer, name)
        with pytest.raises(OperationFailed, match="another storagectl restore into .* is running"):
            hold_guards(backend_for(pg_target), newer, (name,))
        older.execute("SELECT pg_advisory_unlock_all()")
        assert not guard_held(newer, name)
        hold_guards(backend_for(pg_target), newer, (name,))


def test_cli_a_target_holding_an_unfinished_restore_is_finished_by_that_backup_only(
        cli, write_config, pg_database, pg_target, postgres_admin_url, tmp_path):
    """A marked target (as a killed in-place restore leaves it): restoring another backup is refused
    naming the unfinished one (exit 2); the same backup needs no --yes, and staged (superuser here)
    the database ends with its own comment and settings, not the marker."""
    from storagectl.backends.postgres.target import Marker

    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE items (id int); INSERT INTO items VALUES (1)")
    config = write_config("version: 1\nbackends:\n" + pg_database.backend_yaml("src") + pg_target.backend_yaml("dst")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    backup_id = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local").json()[0]["id"]

    def mark(backup: str) -> None:
        marker = Marker(backup, 1, "elsewhere", "2026-12-01T00:00:00+00:00", "orders", ((None, "work_mem=64MB"),), ())
        with pg_target.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS items; CREATE TABLE items (id int)")  # the partial restore
            conn.execute(f'COMMENT ON DATABASE "{pg_target.name}" IS {quote_literal(marker.text())}')

    mark("20261201T000000Z-0ld0ne")
    refused = cli("-c", config, "restore", backup_id, "--to", "dst")
    assert refused.exit_code == 2, refused.stderr
    assert "holds an unfinished restore of backup 20261201T000000Z-0ld0ne" in refused.stderr
    assert "storagectl restore 20261201T000000Z-0ld0ne --to dst to finish it" in refused.stderr

    mark(backup_id)
    finished = cli("-c", config, "restore", backup_id, "--to", "dst", "--validate")
    assert finished.exit_code == 0, finished.stderr
    assert table_contents(pg_target) == table_contents(pg_database)
    assert comment(postgres_admin_url, pg_target.name) == "orders"
    assert settings(postgres_admin_url, pg_target.name) == [("*", ["work_mem=64MB"])]
    assert side_databases(postgres_admin_url, pg_target) == []


def test_the_guard_of_a_running_restore_outlives_a_server_idle_session_timeout(pg_database, pg_target,
                                                                              postgres_admin_url, tmp_path):
    """The guard session idles for the whole load: ended by idle_session_timeout, its staging database
    would look stale to the next restore and be dropped under the running one."""
    import time

    from storagectl.backends import open_backend
    from storagectl.backends.postgres.backend import PostgresSettings
    from storagectl.backends.postgres.guard import guard_held
    from tests.conftest import fresh_pg_database

    archive = backup_to(tmp_path / "b", pg_database)
    held = []

    def check(staged, outcome) -> None:
        time.sleep(1.5)  # well past the timeout below
        with psycopg.connect(postgres_admin_url, autocommit=True) as other:
            held.append(guard_held(other, staged.current_database()))

    with fresh_pg_database(postgres_admin_url) as maintenance:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE \"{maintenance.name}\" SET idle_session_timeout = '300ms'")
        backend = open_backend("dst", PostgresSettings(kind="postgres", url=pg_target.url,
                                                       maintenance_database=maintenance.name))
        backend.restore(archive, RestoreOptions(backup_id="b1", check_staged=check))
    assert held == [True]


def test_cli_dry_run_says_an_unfinished_in_place_target_is_restored_in_place_again(
        cli, write_config, owner, pg_database, pg_target, tmp_path):
    """A role without CREATEDB finishes an unfinished restore in place: --dry-run says so, not the staged way."""
    from storagectl.backends.postgres.target import Marker

    dst = pg_target.backend_yaml("dst").replace("postgres@", f"{owner}@")
    config = write_config("version: 1\nbackends:\n" + pg_database.backend_yaml("src") + dst
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    backup_id = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local").json()[0]["id"]
    marker = Marker(backup_id, 1, "elsewhere", "2026-12-01T00:00:00+00:00", None, (), ())
    with pg_target.connect() as conn:
        conn.execute(f"CREATE TABLE items (id int); ALTER TABLE items OWNER TO {owner}")  # the partial restore
        conn.execute(f'COMMENT ON DATABASE "{pg_target.name}" IS {quote_literal(marker.text())}')
    dry = cli("-c", config, "-o", "json", "restore", backup_id, "--to", "dst", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    method = dry.json()["replace_method"]
    assert method.startswith("in place, as replacing database") and "needs CREATEDB" in method
    assert f"unfinished restore of backup {backup_id} are dropped" in method and "beside it" not in method
    finished = cli("-c", config, "restore", backup_id, "--to", "dst")
    assert finished.exit_code == 0, finished.stderr
    assert table_contents(pg_target) == table_contents(pg_database)
