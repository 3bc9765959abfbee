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
from storagectl.backends.pg_swap import side_name
from tests.test_backup_postgres import backend_for, backup_to, schema_dump, table_contents

OLD_CONTENTS = "CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (42)"


def side_databases(admin_url: str, database) -> list[str]:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return [name for (name,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                  [database.name + "__stctl_%"])]


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
    archive = backup_to(tmp_path / "b", source)
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    seen = []

    def check(staged, skipped) -> None:
        seen.append(staged.content_summary().counts)
        raise RuntimeError("validation says no")

    with pytest.raises(RuntimeError, match="validation says no"):
        backend_for(target).restore(archive, RestoreOptions(replace_existing=True, check_staged=check))
    assert seen == [{'"public"."items"': 500, '"public"."notes"': 50}]
    assert old_contents_kept(target)
    assert side_databases(postgres_admin_url, target) == []


def test_sessions_on_the_target_see_old_data_until_the_swap_then_are_disconnected(source, target, tmp_path):
    archive = backup_to(tmp_path / "b", source)
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    observed = []

    def check(staged, skipped) -> None:  # runs between the staged restore and the swap
        observed.append(client.execute("SELECT count(*) FROM keep_me").fetchone()[0])

    with psycopg.connect(target.url, autocommit=True) as client:
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
    from storagectl.backends.postgres import PostgresSettings
    from storagectl.errors import ExitCode, PermissionDenied

    backend = open_backend("dst", PostgresSettings(kind="postgres", url=as_role))
    with pytest.raises(PermissionDenied, match="needs CREATEDB.*nothing was changed") as caught:
        backend.restore(archive, RestoreOptions(replace_existing=True))
    assert caught.value.exit_code == ExitCode.AUTH and "CREATEDB" in caught.value.hint
    assert old_contents_kept(target)
    assert side_databases(postgres_admin_url, target) == []


def test_cli_validate_over_a_non_empty_target_compares_before_swapping(cli, write_config, source, target,
                                                                        postgres_admin_url, tmp_path):
    config = write_config("version: 1\nbackends:\n" + source.backend_yaml("src") + target.backend_yaml("dst")
                          + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
    backup_id = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local").json()["id"]
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


def test_concurrent_reader_is_not_blocked_while_the_new_database_loads(source, target, tmp_path):
    """The old database serves queries during the whole staged restore (no lock on it)."""
    archive = backup_to(tmp_path / "b", source)
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    answers: list[int] = []
    stop = threading.Event()

    def read() -> None:
        with psycopg.connect(target.url, autocommit=True) as client:
            while not stop.is_set():
                try:
                    answers.append(client.execute("SELECT id FROM keep_me").fetchone()[0])
                except psycopg.OperationalError:
                    return  # terminated at the swap

    reader = threading.Thread(target=read)
    reader.start()
    try:
        backend_for(target).restore(archive, RestoreOptions(replace_existing=True))
    finally:
        stop.set()
        reader.join(10)
    assert answers and set(answers) == {42}


def properties(**changes):
    from storagectl.backends.pg_swap import DatabaseProperties

    base = dict(owner="app", encoding="UTF8", collate="en_US.UTF-8", ctype="en_US.UTF-8", locale_provider="c",
                provider_locale=None, icu_rules=None, tablespace="pg_default", connection_limit=-1, comment=None,
                may_swap=True, grants=(), has_acl=False, settings=())
    return DatabaseProperties(**{**base, **changes})


@pytest.mark.parametrize(("version", "columns"), [
    (140000, "NULL, NULL, NULL"), (150004, "d.datlocprovider::text, d.daticulocale, NULL"),
    (160001, "d.datlocprovider::text, d.daticulocale, d.daticurules"),
    (170002, "d.datlocprovider::text, d.datlocale, d.daticurules"),
])
def test_locale_columns_follow_the_catalog_of_each_major_version(version, columns):
    from storagectl.backends.pg_swap import locale_columns

    assert locale_columns(version) == columns


@pytest.mark.parametrize(("changes", "clause"), [
    ({"locale_provider": None}, "LC_CTYPE = 'en_US.UTF-8' TABLESPACE"),
    ({}, "LOCALE_PROVIDER = libc TABLESPACE"),
    ({"locale_provider": "i", "provider_locale": "de-DE", "icu_rules": "&a < b"},
     "LOCALE_PROVIDER = icu ICU_LOCALE = 'de-DE' ICU_RULES = '&a < b' TABLESPACE"),
    ({"locale_provider": "b", "provider_locale": "C.UTF-8"}, "LOCALE_PROVIDER = builtin BUILTIN_LOCALE = 'C.UTF-8' "),
])
def test_create_statement_carries_the_locale_provider(changes, clause):
    from storagectl.backends.pg_swap import create_statements

    create = create_statements(properties(**changes), "new")[0]
    assert create.startswith('CREATE DATABASE "new" WITH TEMPLATE = template0 OWNER = "app"') and clause in create


def test_settings_grants_and_comment_statements_quote_their_values():
    from storagectl.backends.pg_swap import create_statements

    statements = create_statements(properties(
        settings=((None, 'search_path="$user", public'), ("app ro", "work_mem=64MB"), (None, "x.y=it's")),
        has_acl=True, grants=(("CONNECT", '"app ro"', False), ("CREATE", "PUBLIC", True)), comment="it's"), "n")
    assert statements[1:] == [
        'ALTER DATABASE "n" SET "search_path" TO "$user", public',
        'ALTER ROLE "app ro" IN DATABASE "n" SET "work_mem" TO \'64MB\'',
        'ALTER DATABASE "n" SET "x.y" TO \'it\'\'s\'',
        'REVOKE ALL ON DATABASE "n" FROM PUBLIC', 'REVOKE ALL ON DATABASE "n" FROM "app"',
        'GRANT CONNECT ON DATABASE "n" TO "app ro"', 'GRANT CREATE ON DATABASE "n" TO PUBLIC WITH GRANT OPTION',
        'COMMENT ON DATABASE "n" IS \'it\'\'s\'',
    ]


def test_sessions_the_role_may_not_terminate_stop_the_swap_with_permission_denied(role, target, postgres_admin_url):
    """A non-superuser cannot disconnect a superuser's session: exit 4, both databases as they were."""
    from storagectl.backends import open_backend, pg_swap
    from storagectl.backends.postgres import PostgresSettings
    from storagectl.errors import PermissionDenied

    staged = side_name(target.name, "restore", "test")
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER ROLE {role} CREATEDB")
        admin.execute(f'ALTER DATABASE "{target.name}" OWNER TO {role}')
        admin.execute(f'CREATE DATABASE "{staged}" OWNER {role}')
    backend = open_backend("dst", PostgresSettings(kind="postgres", url=target.url.replace("postgres@", f"{role}@")))
    try:
        with psycopg.connect(target.url, autocommit=True), backend.connect_admin() as admin, \
                pytest.raises(PermissionDenied, match="cannot disconnect the sessions.*old contents were kept"):
            pg_swap._swap(backend, admin, target.name, staged, side_name(target.name, "old", "test"))  # ^ superuser
        assert sorted(side_databases(postgres_admin_url, target)) == [staged]
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{staged}"')


def test_a_missing_maintenance_database_is_named_before_any_work(source, target, postgres_admin_url, tmp_path):
    from storagectl.backends import open_backend
    from storagectl.backends.postgres import PostgresSettings
    from storagectl.errors import NotFound

    archive = backup_to(tmp_path / "b", source)
    with target.connect() as conn:
        conn.execute(OLD_CONTENTS)
    backend = open_backend("dst", PostgresSettings(kind="postgres", url=target.url,
                                                   maintenance_database="stctl_no_such_db"))
    with pytest.raises(NotFound, match="maintenance database 'stctl_no_such_db' does not exist") as caught:
        backend.restore(archive, RestoreOptions(replace_existing=True))
    assert "maintenance_database" in caught.value.hint
    assert old_contents_kept(target) and side_databases(postgres_admin_url, target) == []
