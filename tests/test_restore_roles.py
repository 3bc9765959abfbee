"""restore --no-owner / --no-privileges / --role and the roles --dry-run lists: a backup of the
machine's PostgreSQL 15 naming roles that the PostgreSQL 18 server (tests/servers.py) lacks, the
cross-server case where ``ALTER ... OWNER TO`` used to fail the restore."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from storagectl.archive.api import OwnershipOptions
from storagectl.backends.postgres.roles import filter_schema, roles_named


@pytest.fixture
def roles(postgres_admin_url):
    """Two roles on the 15 server only: an owner and a grantee (dropped afterwards, with what they own)."""
    import psycopg

    names = (f"stctl_own_{uuid.uuid4().hex[:8]}", f"stctl_Reader_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE ROLE "{name}"')
    yield names
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def source(pg_database, roles):
    owner, reader = roles
    with pg_database.connect() as conn:
        conn.execute(f'''
            CREATE TABLE items (id int PRIMARY KEY, name text);
            INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;
            ALTER TABLE items OWNER TO "{owner}";
            GRANT SELECT ON items TO "{reader}";
            ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" GRANT SELECT ON TABLES TO "{reader}";
            CREATE FUNCTION give_back() RETURNS void LANGUAGE plpgsql AS $$
            BEGIN
            ALTER TABLE public.items OWNER TO "{owner}";
            END $$;
            ALTER FUNCTION give_back() OWNER TO "{owner}";
            SELECT lo_from_bytea(4242, 'large');
            ALTER LARGE OBJECT 4242 OWNER TO "{owner}";
            GRANT SELECT ON LARGE OBJECT 4242 TO "{reader}";''')
    yield pg_database
    with pg_database.connect() as conn:  # roles cannot go while they own objects here
        for role in roles:  # one at a time: both in one DROP OWNED fails on the shared default ACL
            conn.execute(f'DROP OWNED BY "{role}"')


@pytest.fixture
def config(write_config, source, pg18_target, tmp_path):
    return write_config("version: 1\nbackends:\n" + source.backend_yaml("src") + pg18_target.backend_yaml("dst")
                        + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")


@pytest.fixture
def backup_id(cli, config):
    ran = cli("-c", config, "-o", "json", "backup", "run", "--backend", "src", "--to", "local")
    assert ran.exit_code == 0, ran.stderr
    return ran.json()[0]["id"]


def test_dry_run_lists_the_roles_the_backup_needs_and_those_missing(cli, config, backup_id, roles):
    owner, reader = roles
    plan = cli("-c", config, "-o", "json", "restore", backup_id, "--to", "dst", "--dry-run").json()
    assert {owner, reader} <= set(plan["roles_needed"])
    assert plan["roles_missing"] == sorted([owner, reader])
    text = cli("-c", config, "restore", backup_id, "--to", "dst", "--dry-run")
    assert f"roles missing: {', '.join(sorted([owner, reader]))}" in text.stderr
    no_owner = cli("-c", config, "-o", "json", "restore", backup_id, "--to", "dst", "--dry-run", "--no-owner").json()
    # still named by the GRANT, and the owner by its default privileges (FOR ROLE)
    assert no_owner["roles_missing"] == sorted([owner, reader])
    both = cli("-c", config, "-o", "json", "restore", backup_id, "--to", "dst", "--dry-run", "--no-owner",
               "--no-privileges").json()
    assert both["roles_needed"] == [] and both["roles_missing"] == []


def test_restore_naming_missing_roles_fails_and_points_at_the_options(cli, config, backup_id, pg18_target):
    result = cli("-c", config, "restore", backup_id, "--to", "dst")
    assert result.exit_code != 0
    assert "does not exist" in result.stderr and "--no-owner" in result.stderr
    with pg18_target.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'items'").fetchone() == (0,)


def test_no_owner_no_privileges_restores_into_a_server_without_the_roles(cli, config, backup_id, pg18_target):
    result = cli("-c", config, "restore", backup_id, "--to", "dst", "--no-owner", "--no-privileges", "--validate")
    assert result.exit_code == 0, result.stderr
    with pg18_target.connect() as conn:
        owner, acl = conn.execute("SELECT relowner::regrole::text, relacl FROM pg_class WHERE relname = 'items'"
                                  ).fetchone()
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'give_back'").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM pg_default_acl").fetchone() == (0,)
        large_object = conn.execute("SELECT lomowner::regrole::text, lomacl FROM pg_largeobject_metadata "
                                    "WHERE oid = 4242").fetchone()
    assert (owner, acl) == ("postgres", None) and large_object == ("postgres", None)
    assert "OWNER TO" in body  # a function body is never filtered, even where it reads like pg_dump's line


def test_role_runs_the_restore_as_that_role_which_owns_everything(cli, config, backup_id, pg18_target):
    role = f"stctl_app_{uuid.uuid4().hex[:8]}"
    with pg18_target.connect() as conn:
        conn.execute(f"CREATE ROLE {role}")
        conn.execute(f"ALTER DATABASE {pg18_target.name} OWNER TO {role}")  # the staged copy has this owner
    try:
        result = cli("-c", config, "restore", backup_id, "--to", "dst", "--role", role, "--no-privileges",
                     "--validate")
        assert result.exit_code == 0, result.stderr
        with pg18_target.connect() as conn:
            owners = conn.execute("SELECT DISTINCT relowner::regrole::text FROM pg_class c JOIN pg_namespace n "
                                  "ON n.oid = relnamespace WHERE nspname = 'public'").fetchall()
            functions = conn.execute("SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'give_back'"
                                     ).fetchall()
        assert owners == [(role,)] and functions == [(role,)]
    finally:
        with pg18_target.connect() as conn:
            conn.execute(f"ALTER DATABASE {pg18_target.name} OWNER TO postgres")
        _drop_role_after_database(pg18_target, role)


def _drop_role_after_database(database, role: str) -> None:
    """The database fixture drops the database later; the role's objects go with it first."""
    with database.connect() as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_unknown_role_is_refused_before_the_target_is_touched(cli, config, backup_id):
    result = cli("-c", config, "restore", backup_id, "--to", "dst", "--role", "no_such_role_here")
    assert result.exit_code == 2, result.stderr
    assert "role 'no_such_role_here' (--role) does not exist on the target server; nothing was restored" \
        in result.stderr


def test_ownership_options_are_refused_for_other_kinds(cli, write_config, tmp_path):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id int)")
    config = write_config(f"""
        backends:
          app: {{kind: sqlite, path: {db}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        """)
    backup = cli("-c", config, "-o", "json", "backup", "run", "--backend", "app", "--to", "local").json()[0]["id"]
    result = cli("-c", config, "restore", backup, "--no-owner", "--yes")
    assert result.exit_code == 2
    assert "--no-owner, --no-privileges and --role apply to PostgreSQL restores" in result.stderr


PG_DUMP_SQL = '''--
-- Name: t; Type: TABLE; Schema: public; Owner: "Odd ""Owner"""
--

CREATE TABLE public.t (
    id integer
);


ALTER TABLE public.t OWNER TO "Odd ""Owner""";

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: app
--

CREATE FUNCTION public.f() RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
ALTER TABLE public.t OWNER TO app;
END $$;


ALTER FUNCTION public.f() OWNER TO app;

SET default_tablespace = '';

--
-- Name: TABLE t; Type: ACL; Schema: public; Owner: app
--

REVOKE ALL ON TABLE public.t FROM PUBLIC;
GRANT SELECT ON TABLE public.t TO reader WITH GRANT OPTION;
GRANT INSERT ON TABLE public.t TO "Writer", other;

SET default_table_access_method = heap;

--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: public; Owner: app
--

ALTER DEFAULT PRIVILEGES FOR ROLE boss IN SCHEMA public GRANT SELECT ON TABLES TO reader;
'''


def test_filters_work_on_pg_dump_entries():
    assert filter_schema(PG_DUMP_SQL, OwnershipOptions()) == PG_DUMP_SQL
    no_owner = filter_schema(PG_DUMP_SQL, OwnershipOptions(owners=False))
    assert 'ALTER TABLE public.t OWNER TO "Odd' not in no_owner and "ALTER FUNCTION public.f() OWNER" not in no_owner
    assert "BEGIN\nALTER TABLE public.t OWNER TO app;\nEND $$;" in no_owner and "GRANT SELECT" in no_owner
    no_privileges = filter_schema(PG_DUMP_SQL, OwnershipOptions(privileges=False))
    assert "GRANT" not in no_privileges and "DEFAULT PRIVILEGES" not in no_privileges
    assert "SET default_table_access_method = heap;" in no_privileges and "OWNER TO app;\n\nSET" in no_privileges
    assert roles_named(PG_DUMP_SQL) == {"owners": {'Odd "Owner"', "app"},
                                        "grantees": {"reader", "Writer", "other", "boss"}}
