"""``restore --yes`` over a non-empty PostgreSQL database: restored beside it, swapped in only when
complete, so a failure keeps the old contents and a success keeps the database's own properties."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid

import psycopg
import pytest

from storagectl.archive.api import RestoreOptions
from storagectl.backends.postgres.swap import side_name
from tests.test_backup_postgres import backend_for, backup_to, schema_dump, table_contents

OLD_CONTENTS = "CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (42)"


def side_databases(admin_url: str, database) -> list[str]:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return [name for (name,) in admin.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                                  [database.name + "__stctl_"])]


def backup_over_old_contents(source, target, tmp_path):
    """A backup of ``source``, and ``target`` holding other contents (keep_me) it would replace."""
    archive = backup_to(tmp_path / "b", source)
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    return archive


def old_contents_kept(database) -> bool:
    with database.connect() as conn:
        return conn.execute("SELECT * FROM keep_me").fetchall() == [(42,)]


@pytest.fixture
def target(pg_target):
    return pg_target


@pytest.fixture
def source(pg_database):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text); "
                     "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g; "
                     "CREATE TABLE notes (id int REFERENCES items, body text); "
                     "INSERT INTO notes SELECT g, repeat('n', g) FROM generate_series(1, 50) g")
    return pg_database


@pytest.fixture
def role(postgres_admin_url):
    name = f"stctl_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN")
    yield name
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"DROP OWNED BY {name}")  # grants on databases made by the tests
        admin.execute(f"DROP ROLE {name}")


DATABASE_PROPERTIES_SQL = """
SELECT pg_get_userbyid(d.datdba), d.datconnlimit, d.datacl::text[], shobj_description(d.oid, 'pg_database'),
       (SELECT array_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*') || ':' || s.setconfig::text
                         ORDER BY s.setrole)
        FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)
FROM pg_database d WHERE d.datname = %s
"""


def database_properties(admin_url: str, name: str) -> tuple:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return admin.execute(DATABASE_PROPERTIES_SQL, [name]).fetchone()


def test_replace_keeps_the_databases_own_settings_grants_and_comment(source, role, target, postgres_admin_url,
                                                                     tmp_path):
    archive = backup_to(tmp_path / "b", source)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        db = f'"{target.name}"'
        for statement in (f"ALTER DATABASE {db} SET search_path = \"$user\", public, \"we ird\"",
                          f"ALTER DATABASE {db} SET work_mem = '64MB'",
                          f"ALTER DATABASE {db} SET app.tenant = 'it''s'",
                          f"ALTER ROLE {role} IN DATABASE {db} SET statement_timeout = '5s'",
                          f"ALTER DATABASE {db} CONNECTION LIMIT 40",
                          f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                          f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
                          f"COMMENT ON DATABASE {db} IS 'orders, it''s production'"):
            admin.execute(statement)
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    before = database_properties(postgres_admin_url, target.name)

    backend_for(target).restore(archive, RestoreOptions(replace_existing=True))

    assert database_properties(postgres_admin_url, target.name) == before
    assert table_contents(target) == table_contents(source) and schema_dump(target) == schema_dump(source)
    assert side_databases(postgres_admin_url, target) == []


def test_a_failed_load_keeps_the_old_contents_and_drops_the_new_database(source, target, postgres_admin_url,
                                                                          tmp_path):
    archive = backup_to(tmp_path / "b", source)
    victim = next(t for t in archive.metadata["tables"] if t["name"] == "notes")["objects"][0]
    (tmp_path / "b" / victim).write_bytes(b"not\ta\tcopy\trow\n")
    archive.objects[victim]["sha256"] = hashlib.sha256(b"not\ta\tcopy\trow\n").hexdigest()
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    with pytest.raises(Exception, match="notes.*still holds its old contents"):
        backend_for(target).restore(archive, RestoreOptions(replace_existing=True))
    assert old_contents_kept(target)
    assert side_databases(postgres_admin_url, target) == []


def test_a_failing_staged_check_keeps_the_old_contents(source, target, postgres_admin_url, tmp_path):
    archive = backup_over_old_contents(source, target, tmp_path)
    seen = []

    def check(staged, outcome) -> None:
        seen.append(staged.content_summary().counts)
        raise RuntimeError("validation says no")

    with pytest.raises(RuntimeError, match="validation says no"):
        backend_for(target).restore(archive, RestoreOptions(replace_existing=True, check_staged=check))
    assert seen == [{'"public"."items"': 500, '"public"."notes"': 50}]
    assert old_contents_kept(target)
    assert side_databases(postgres_admin_url, target) == []


def test_sessions_on_the_target_see_old_data_until_the_swap_then_are_disconnected(source, target, tmp_path):
    archive = backup_over_old_contents(source, target, tmp_path)
    observed = []

    def check(staged, outcome) -> None:  # between the staged restore and the swap; never blocked (timeout)
        observed.append(client.execute("SELECT count(*) FROM keep_me").fetchone()[0])

    with psycopg.connect(target.url, autocommit=True, options="-c statement_timeout=5000") as client:
        backend_for(target).restore(archive, RestoreOptions(replace_existing=True, check_staged=check))
        with pytest.raises(psycopg.OperationalError):
            client.execute("SELECT 1")
    assert observed == [1]
    assert table_contents(target) == table_contents(source)


def test_a_role_that_cannot_create_databases_is_refused_before_any_work(source, role, target, postgres_admin_url,
                                                                        tmp_path):
    archive = backup_to(tmp_path / "b", source)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{target.name}" OWNER TO {role}')
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
        conn.execute(f"ALTER TABLE keep_me OWNER TO {role}")
    as_role = target.url.replace("postgres@", f"{role}@", 1)
    from storagectl.backends import open_backend
    from storagectl.backends.postgres.backend import PostgresSettings
    from storagectl.errors import ExitCode, PermissionDenied

    backend = open_backend("dst", PostgresSettings(kind="postgres", url=as_role))
    with pytest.raises(PermissionDenied, match=r"needs CREATEDB \(it is restored beside.*nothing was") as caught:
        backend.restore(archive, RestoreOptions(replace_existing=True))
    assert caught.value.exit_code == ExitCode.AUTH and caught.value.hint == "Try: ALTER ROLE <backup role> CREATEDB"
    assert old_contents_kept(target)
    assert side_databases(postgres_admin_url, target) == []


def test_cli_validate_over_a_non_empty_target_compares_before_swapping(cli, write_config, source, target,
                                                                        postgres_admin_url, tmp_path):
    config = write_config("version: 1\nbackends:\n" + source.backend_yaml("src") + target.backend_yaml("dst")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    backup_id = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local").json()[0]["id"]
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    [manifest_path] = (tmp_path / "backups").rglob("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["backend"]["metadata"]["content_summary"]["checksums"]['"public"."items"'] = "0" * 16
    manifest_path.write_text(json.dumps(manifest))

    result = cli("-c", config, "restore", backup_id, "--to", "dst", "--validate", "--yes")

    assert result.exit_code == 6, result.stderr
    assert '"public"."items"' in result.stderr and "the target was left as it was" in result.stderr
    assert old_contents_kept(target)
    assert side_databases(postgres_admin_url, target) == []


def test_side_names_fit_postgres_name_limit():
    name = side_name("é" * 40, "restore", "0123abcd")
    assert len(name.encode()) <= 63 and name.endswith("__stctl_restore_0123abcd")
    assert side_name("orders", "old", "ff") == "orders__stctl_old_ff"


def properties(**changes):
    from storagectl.backends.postgres.swap import DatabaseProperties

    base = dict(owner="app", encoding="UTF8", collate="en_US.UTF-8", ctype="en_US.UTF-8", locale_provider="c",
                provider_locale=None, icu_rules=None, tablespace="pg_default", connection_limit=-1, comment=None,
                may_create=True, has_owner_rights=True, grants=(), has_acl=False, settings=())
    return DatabaseProperties(**{**base, **changes})


@pytest.mark.parametrize(("version", "columns"), [
    (140000, "NULL, NULL, NULL"), (150004, "d.datlocprovider::text, d.daticulocale, NULL"),
    (160001, "d.datlocprovider::text, d.daticulocale, d.daticurules"),
    (170002, "d.datlocprovider::text, d.datlocale, d.daticurules"),
])
def test_locale_columns_follow_the_catalog_of_each_major_version(version, columns):
    from storagectl.backends.postgres.swap import locale_columns

    assert locale_columns(version) == columns


@pytest.mark.parametrize(("changes", "ending"), [
    ({"locale_provider": None}, "LC_CTYPE = 'en_US.UTF-8'"),
    ({}, "LOCALE_PROVIDER = libc"),
    ({"locale_provider": "i", "provider_locale": "de-DE", "icu_rules": "&a < b"},
     "LOCALE_PROVIDER = icu ICU_LOCALE = 'de-DE' ICU_RULES = '&a < b'"),
    ({"locale_provider": "b", "provider_locale": "C.UTF-8"}, "LOCALE_PROVIDER = builtin BUILTIN_LOCALE = 'C.UTF-8'"),
    ({"tablespace": "fast ssd"}, 'LOCALE_PROVIDER = libc TABLESPACE = "fast ssd"'),
])
def test_create_statement_carries_locale_provider_and_a_non_default_tablespace(changes, ending):
    from storagectl.backends.postgres.swap import create_statement

    create = create_statement(properties(**changes), "new")
    assert create.startswith('CREATE DATABASE "new" WITH TEMPLATE = template0 OWNER = "app" ENCODING = \'UTF8\'')
    assert create.endswith(ending)


@pytest.mark.parametrize(("stored", "elements"), [
    ('"$user", public', ["$user", "public"]), ('""', [""]), ("public", ["public"]), ("", []),
    ('"we ird",  "a""b" ,x', ["we ird", 'a"b', "x"]), ("Mixed", ["Mixed"]),
])
def test_list_settings_split_like_postgres(stored, elements):
    from storagectl.backends.postgres.swap import split_guc_list

    assert split_guc_list(stored) == elements


@pytest.mark.parametrize("stored", ["public;alter role app superuser--", '"open', "a,", "a,,b"])
def test_a_list_setting_postgres_would_reject_is_refused_not_pasted(stored):
    from storagectl.backends.postgres.swap import property_statements
    from storagectl.errors import OperationFailed

    with pytest.raises(OperationFailed, match="cannot copy the database setting search_path"):
        property_statements(properties(settings=((None, f"search_path={stored}"),)), "n")


def test_property_statements_write_every_value_as_a_literal_never_as_sql():
    from storagectl.backends.postgres.swap import property_statements

    statements = property_statements(properties(
        settings=((None, 'search_path="$user", public'), ("app ro", "work_mem=64MB"), (None, "x.y=it's"),
                  (None, "search_path=public;alter"), (None, 'search_path=""')),
        connection_limit=40, has_acl=True, grants=(("CONNECT", '"app ro"', False), ("CREATE", "PUBLIC", True)),
        comment="it's"), "n")
    assert statements == [
        'ALTER DATABASE "n" SET "search_path" TO \'$user\', \'public\'',
        'ALTER ROLE "app ro" IN DATABASE "n" SET "work_mem" TO \'64MB\'',
        'ALTER DATABASE "n" SET "x.y" TO \'it\'\'s\'',
        'ALTER DATABASE "n" SET "search_path" TO \'public;alter\'',  # one (odd) schema name, never SQL
        'ALTER DATABASE "n" SET "search_path" TO \'\'',
        'ALTER DATABASE "n" CONNECTION LIMIT 40',
        'REVOKE ALL ON DATABASE "n" FROM PUBLIC', 'REVOKE ALL ON DATABASE "n" FROM "app"',
        'GRANT CONNECT ON DATABASE "n" TO "app ro"', 'GRANT CREATE ON DATABASE "n" TO PUBLIC WITH GRANT OPTION',
        'COMMENT ON DATABASE "n" IS \'it\'\'s\'',
    ]


@pytest.fixture
def owner_role(role, source, target, postgres_admin_url):
    """``role`` with CREATEDB (not superuser) owning the target database and the source's tables
    (tests list ``role`` first, so it outlives the databases it owns)."""
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER ROLE {role} CREATEDB")
        admin.execute(f'ALTER DATABASE "{target.name}" OWNER TO {role}')
    with source.connect() as conn:
        conn.execute(f"ALTER TABLE items OWNER TO {role}; ALTER TABLE notes OWNER TO {role}")
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
        conn.execute(f"ALTER TABLE keep_me OWNER TO {role}")
    return role


def as_role(database, role: str):
    from storagectl.backends import open_backend
    from storagectl.backends.postgres.backend import PostgresSettings

    return open_backend("dst", PostgresSettings(kind="postgres", url=database.url.replace("postgres@", f"{role}@")))


def test_a_database_owner_with_createdb_replaces_its_database(role, source, target, owner_role, postgres_admin_url,
                                                             tmp_path):
    archive = backup_to(tmp_path / "b", source)
    as_role(target, owner_role).restore(archive, RestoreOptions(replace_existing=True))
    assert table_contents(target) == table_contents(source)
    assert database_properties(postgres_admin_url, target.name)[0] == owner_role
    assert side_databases(postgres_admin_url, target) == []


def test_sessions_the_role_may_not_terminate_stop_the_swap_with_permission_denied(role, source, target, owner_role,
                                                                                 postgres_admin_url, tmp_path):
    """A non-superuser cannot disconnect a superuser's session: exit 4, the old contents kept."""
    from storagectl.errors import ExitCode, PermissionDenied

    archive = backup_to(tmp_path / "b", source)
    with psycopg.connect(target.url, autocommit=True), \
            pytest.raises(PermissionDenied, match="cannot disconnect the sessions.*still holds its old") as caught:
        as_role(target, owner_role).restore(archive, RestoreOptions(replace_existing=True))
    assert caught.value.exit_code == ExitCode.AUTH and "pg_signal_backend" in caught.value.hint
    assert old_contents_kept(target) and side_databases(postgres_admin_url, target) == []


def test_a_missing_maintenance_database_is_named_before_any_work(source, target, postgres_admin_url, tmp_path):
    from storagectl.backends import open_backend
    from storagectl.backends.postgres.backend import PostgresSettings
    from storagectl.errors import NotFound

    archive = backup_over_old_contents(source, target, tmp_path)
    backend = open_backend("dst", PostgresSettings(kind="postgres", url=target.url,
                                                   maintenance_database="stctl_no_such_db"))
    with pytest.raises(NotFound, match="maintenance database 'stctl_no_such_db' does not exist") as caught:
        backend.restore(archive, RestoreOptions(replace_existing=True))
    assert "maintenance_database" in caught.value.hint
    assert old_contents_kept(target) and side_databases(postgres_admin_url, target) == []


def test_the_replace_check_runs_before_the_archive_is_read_and_in_the_dry_run(cli, write_config, source, target,
                                                                              tmp_path):
    """A damaged archive would exit 6 once read: exit 5 for the missing maintenance database shows
    the check came first (both for the restore and for its --dry-run)."""
    config = write_config("version: 1\nbackends:\n" + source.backend_yaml("src")
                          + target.backend_yaml("dst", extra="maintenance_database: stctl_no_such_db\n")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    backup_id = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local").json()[0]["id"]
    stored = next((tmp_path / "backups").rglob("*.copy.br"))
    stored.write_bytes(stored.read_bytes()[:-7])
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    for extra in ((), ("--dry-run",)):
        result = cli("-c", config, "restore", backup_id, "--to", "dst", "--yes", *extra)
        assert result.exit_code == 5, result.stderr
        assert "maintenance database 'stctl_no_such_db' does not exist" in result.stderr
    assert old_contents_kept(target)


def test_sigterm_during_a_replacing_restore_drops_the_new_database_and_keeps_the_old(pg_database, target,
                                                                                    write_config, postgres_admin_url,
                                                                                    tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 1500000) g")
    config = write_config("version: 1\nbackends:\n" + pg_database.backend_yaml("src") + target.backend_yaml("dst")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    run = [sys.executable, "-m", "storagectl", "-c", str(config)]
    backup = subprocess.run([*run, "backup", "run", "--backend", "src", "--to", "local"], capture_output=True,
                            text=True)
    assert backup.returncode == 0, backup.stderr
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    restore = subprocess.Popen([*run, "restore", backup.stdout.strip(), "--to", "dst", "--yes"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not side_databases(postgres_admin_url, target) and restore.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the load
    os.kill(restore.pid, signal.SIGTERM)
    _, stderr = restore.communicate(timeout=60)
    assert restore.returncode == 143, stderr
    assert "terminated (the target database still holds its old contents)" in stderr
    assert old_contents_kept(target) and side_databases(postgres_admin_url, target) == []


def test_a_database_with_only_a_preinstalled_extension_is_empty_and_keeps_it_through_a_failed_restore(
        source, target, tmp_path):
    """E.g. pg_stat_statements put in template1 by the DBA: its views and functions in public are the
    extension's, not content; a restore goes in directly, and undoing a failed one keeps it."""
    archive = backup_to(tmp_path / "b", source)
    with target.connect() as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements; CREATE EXTENSION hstore")
    assert backend_for(target).is_empty()
    victim = next(t for t in archive.metadata["tables"] if t["name"] == "notes")["objects"][0]
    (tmp_path / "b" / victim).write_bytes(b"not\ta\tcopy\trow\n")
    archive.objects[victim]["sha256"] = hashlib.sha256(b"not\ta\tcopy\trow\n").hexdigest()
    with pytest.raises(Exception, match="left empty"):
        backend_for(target).restore(archive, RestoreOptions())
    with target.connect() as conn:
        assert {row[0] for row in conn.execute("SELECT extname FROM pg_extension")} == {
            "plpgsql", "pg_stat_statements", "hstore"}
    assert backend_for(target).is_empty()


def test_a_function_alone_makes_a_database_not_empty(target):
    with target.connect() as conn:
        conn.execute("CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    assert not backend_for(target).is_empty()


def test_a_setting_the_role_may_not_copy_fails_before_the_load(role, source, target, owner_role, postgres_admin_url,
                                                              tmp_path):
    from storagectl.errors import OperationFailed

    archive = backup_to(tmp_path / "b", source)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{target.name}" SET log_min_duration_statement = 100')  # superuser-only
    loaded = []
    with pytest.raises(OperationFailed, match="copying the target's properties.*log_min_duration_statement"):
        as_role(target, owner_role).restore(archive, RestoreOptions(replace_existing=True,
                                                                    check_staged=lambda *_: loaded.append(1)))
    assert loaded == [] and old_contents_kept(target) and side_databases(postgres_admin_url, target) == []


def test_clients_that_keep_reconnecting_do_not_stop_the_swap(source, target, postgres_admin_url, tmp_path):
    """A pool reconnecting at once makes plain renames fail; the last attempt blocks new connections
    for the moment of the swap, and connections are allowed again afterwards."""
    archive = backup_over_old_contents(source, target, tmp_path)
    stop = threading.Event()

    def reconnect_forever() -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(target.url, autocommit=True, connect_timeout=2) as client:
                    while not stop.is_set():
                        client.execute("SELECT 1")
            except psycopg.Error:
                pass

    pool = [threading.Thread(target=reconnect_forever) for _ in range(3)]
    for thread in pool:
        thread.start()
    try:
        backend_for(target).restore(archive, RestoreOptions(replace_existing=True))
    finally:
        stop.set()
        for thread in pool:
            thread.join(10)
    assert table_contents(target) == table_contents(source)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        assert admin.execute("SELECT datallowconn FROM pg_database WHERE datname = %s",
                             [target.name]).fetchone() == (True,)
    assert side_databases(postgres_admin_url, target) == []


def test_swap_state_tells_swapped_from_not_swapped_and_ends_the_old_session(target, postgres_admin_url):
    from storagectl.backends.postgres.swap import swap_state

    staged, old = side_name(target.name, "restore", "st"), side_name(target.name, "old", "st")
    backend = backend_for(target)
    with psycopg.connect(target.url, autocommit=True) as lingering:  # stands for the lost swap session
        pid = lingering.info.backend_pid
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{staged}"')
            try:
                assert swap_state(backend, staged, old, pid) is False
                with pytest.raises(psycopg.OperationalError):
                    lingering.execute("SELECT 1")  # it was ended before the names were read
                admin.execute(f'ALTER DATABASE "{staged}" RENAME TO "{old}"')
                assert swap_state(backend, staged, old, pid) is True
                admin.execute(f'CREATE DATABASE "{staged}"')
                assert swap_state(backend, staged, old, pid) is None  # both: cannot tell
            finally:
                admin.execute(f'DROP DATABASE IF EXISTS "{staged}"')
                admin.execute(f'DROP DATABASE IF EXISTS "{old}"')


def datallowconn(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return admin.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", [name]).fetchone()[0]


def test_a_client_back_before_the_rename_is_outwaited_by_blocking_connections(source, target, postgres_admin_url,
                                                                            tmp_path, monkeypatch):
    """Attempt 1: a client reconnects right after the terminate, so the rename finds the database in
    use; the last attempt stops new connections, swaps, and connections are allowed again."""
    from storagectl.backends.postgres import swap as pg_swap

    archive = backup_over_old_contents(source, target, tmp_path)
    real_terminate, calls, lingering = pg_swap._terminate_sessions, [], []

    def terminate_then_a_client_returns(backend, admin, databases):
        real_terminate(backend, admin, databases)
        calls.append(datallowconn(postgres_admin_url, target.name))
        if len(calls) == 1:
            lingering.append(psycopg.connect(target.url, autocommit=True))

    monkeypatch.setattr(pg_swap, "SWAP_ATTEMPTS", 2)
    monkeypatch.setattr(pg_swap, "_terminate_sessions", terminate_then_a_client_returns)
    try:
        backend_for(target).restore(archive, RestoreOptions(replace_existing=True))
    finally:
        for conn in lingering:
            conn.close()
    assert calls == [True, False]  # the second attempt ran with new connections blocked
    assert datallowconn(postgres_admin_url, target.name) is True
    assert table_contents(target) == table_contents(source) and side_databases(postgres_admin_url, target) == []


def still_in_use(admin_url, admin, databases):
    raise psycopg.errors.ObjectInUse(f'database "{databases[0]}" is being accessed by other users')


def lose_the_connection(admin_url, admin, databases):
    with psycopg.connect(admin_url, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [admin.info.backend_pid])


@pytest.mark.parametrize(("fault", "message"), [
    (still_in_use, "still in use.*still holds its old contents"),  # the server refuses the last attempt
    (lose_the_connection, "connection lost while swapping.*still holds its old contents"),  # found out, said
])
def test_a_failed_last_swap_attempt_allows_connections_again_and_keeps_the_old_contents(
        fault, message, source, target, postgres_admin_url, tmp_path, monkeypatch):
    from storagectl.backends.postgres import swap as pg_swap
    from storagectl.errors import OperationFailed

    archive = backup_over_old_contents(source, target, tmp_path)
    monkeypatch.setattr(pg_swap, "SWAP_ATTEMPTS", 1)  # the one attempt blocks connections
    monkeypatch.setattr(pg_swap, "_terminate_sessions", lambda backend, admin, databases: fault(
        postgres_admin_url, admin, databases))
    with pytest.raises(OperationFailed, match=message):
        backend_for(target).restore(archive, RestoreOptions(replace_existing=True))
    assert datallowconn(postgres_admin_url, target.name) is True
    assert old_contents_kept(target) and side_databases(postgres_admin_url, target) == []


def test_a_role_with_createdb_that_does_not_own_the_target_is_told_exactly_that(role, source, target,
                                                                               postgres_admin_url, tmp_path):
    from storagectl.errors import PermissionDenied

    archive = backup_over_old_contents(source, target, tmp_path)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER ROLE {role} CREATEDB")
    with pytest.raises(PermissionDenied, match="needs the privileges of its owner role 'postgres'") as caught:
        as_role(target, role).restore(archive, RestoreOptions(replace_existing=True))
    assert caught.value.hint == 'Try: GRANT "postgres" TO <backup role>'
    assert old_contents_kept(target) and side_databases(postgres_admin_url, target) == []
