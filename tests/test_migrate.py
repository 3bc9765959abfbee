"""`storagectl migrate` against the local PostgreSQL and SQLite, through the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class SqlTarget:
    """One backend under test: its config, its name, and a way to look inside the database."""

    config: Path
    name: str
    kind: str
    pg: object | None = None
    sqlite_path: Path | None = None

    def query(self, sql: str) -> list[tuple]:
        if self.pg is not None:
            with self.pg.connect() as conn:
                return [tuple(row) for row in conn.execute(sql).fetchall()]
        with sqlite3.connect(self.sqlite_path) as conn:
            return conn.execute(sql).fetchall()

    def tables(self) -> set[str]:
        if self.pg is not None:
            return {r[0] for r in self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        if not self.sqlite_path.exists():
            return set()
        return {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def version(self) -> str | None:
        if "alembic_version" not in self.tables():
            return None
        rows = self.query("SELECT version_num FROM alembic_version")
        return rows[0][0] if rows else None

    def checksummed(self) -> set[str]:
        return {r[0] for r in self.query("SELECT revision FROM storagectl_migrations")}

    def sleep_sql(self) -> str:
        return "op.execute('SELECT pg_sleep(0.5)')" if self.pg is not None else "__import__('time').sleep(0.5)"


def pg_yaml(pg_database, name: str = "pg", migrations: str | None = "mig/pg") -> str:
    extra = f"migrations: {migrations}\n" if migrations else ""
    return pg_database.backend_yaml(name, extra=extra)


def sqlite_yaml(name: str = "lite", migrations: str | None = "mig/lite") -> str:
    extra = f"    migrations: {migrations}\n" if migrations else ""
    return f"  {name}:\n    kind: sqlite\n    path: {name}.db\n    create_if_missing: true\n{extra}"


def write(write_config, *entries: str) -> Path:
    path = write_config("")
    path.write_text("backends:\n" + "".join(entries), encoding="utf-8")
    return path


@pytest.fixture(params=["postgres", "sqlite"])
def target(request, write_config, tmp_path) -> SqlTarget:
    if request.param == "postgres":
        pg = request.getfixturevalue("pg_database")
        return SqlTarget(write(write_config, pg_yaml(pg)), "pg", "postgres", pg=pg)
    return SqlTarget(write(write_config, sqlite_yaml()), "lite", "sqlite", sqlite_path=tmp_path / "lite.db")


def new_revision(cli, target: SqlTarget, message: str, upgrade: str = "pass", downgrade: str = "pass",
                 extra: tuple[str, ...] = ()) -> dict:
    """`migrate new`, then write real upgrade()/downgrade() bodies into the generated file."""
    result = cli("-c", target.config, "migrate", "new", "--backend", target.name, "-m", message, "-o", "json", *extra)
    assert result.exit_code == 0, result.stderr
    created = result.json()
    path = Path(created["path"])
    text = path.read_text()
    text = text.replace("def upgrade() -> None:\n    pass", "def upgrade() -> None:\n" + _body(upgrade), 1)
    text = text.replace("def downgrade() -> None:\n    pass", "def downgrade() -> None:\n" + _body(downgrade), 1)
    path.write_text(text)
    return created


def _body(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip(), "    ")


def three_revisions(cli, target: SqlTarget) -> list[str]:
    first = new_revision(cli, target, "create users",
                         "op.create_table('users', sa.Column('id', sa.Integer, primary_key=True))",
                         "op.drop_table('users')")
    second = new_revision(cli, target, "create orders",
                          "op.create_table('orders', sa.Column('id', sa.Integer, primary_key=True))",
                          "op.drop_table('orders')")
    third = new_revision(cli, target, "seed users",
                         "op.execute(\"INSERT INTO users (id) VALUES (1), (2)\")",
                         "op.execute('DELETE FROM users')")
    return [first["revision"], second["revision"], third["revision"]]


def migrate(cli, target: SqlTarget, *args: str):
    return cli("-c", target.config, "migrate", *args, "--backend", target.name)


# -- round trip -----------------------------------------------------------------------------------
def test_init_new_up_status_down_round_trip(cli, target):
    assert migrate(cli, target, "init").exit_code == 0
    revisions = three_revisions(cli, target)

    pending = migrate(cli, target, "status", "-o", "json")
    assert pending.exit_code == 1
    assert pending.json()[0] | {"pending": None} == {
        "backend": target.name, "kind": target.kind, "current": None, "head": revisions[2],
        "pending": None, "edited": [], "pending_count": 3, "error": None, "exit_code": 1,
    }

    applied = migrate(cli, target, "up", "-o", "json")
    assert applied.exit_code == 0, applied.stderr
    assert applied.json()[0]["revisions"] == revisions
    assert target.version() == revisions[2]
    assert target.query("SELECT count(*) FROM users") == [(2,)]
    assert target.checksummed() == set(revisions)

    clean = migrate(cli, target, "status")
    assert clean.exit_code == 0
    assert target.name in clean.stdout and revisions[2] in clean.stdout

    history = migrate(cli, target, "history", "-o", "json").json()
    assert [(h["revision"], h["applied"]) for h in history] == [(r, True) for r in reversed(revisions)]
    assert all(h["applied_at"] for h in history)

    back = migrate(cli, target, "down", "--to", revisions[0], "--yes", "-o", "json")
    assert back.exit_code == 0, back.stderr
    assert back.json()[0]["revisions"] == [revisions[2], revisions[1]]
    assert target.version() == revisions[0]
    assert "orders" not in target.tables()
    assert target.checksummed() == {revisions[0]}

    assert migrate(cli, target, "down", "--to", "base", "--yes").exit_code == 0
    assert target.version() is None and "users" not in target.tables()
    assert migrate(cli, target, "up", "--to", revisions[1]).exit_code == 0
    assert target.version() == revisions[1]
    rerun = migrate(cli, target, "up", "--to", revisions[1], "-o", "json")
    assert rerun.exit_code == 0 and rerun.json()[0]["revisions"] == []


def test_dry_run_prints_sql_and_touches_nothing(cli, target):
    migrate(cli, target, "init")
    three_revisions(cli, target)
    result = migrate(cli, target, "up", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "CREATE TABLE users" in result.stdout and "INSERT INTO users" in result.stdout
    assert target.tables() == set()  # not even alembic_version or storagectl_migrations

    migrate(cli, target, "up")
    down = migrate(cli, target, "down", "--to", "base", "--dry-run", "-o", "json")
    assert down.exit_code == 0 and "DROP TABLE users" in down.json()[0]["sql"]
    assert len(down.json()[0]["revisions"]) == 3
    assert "users" in target.tables()


# -- safety -----------------------------------------------------------------------------------------
def test_failing_revision_leaves_the_previous_revision(cli, target):
    migrate(cli, target, "init")
    good = new_revision(cli, target, "good", "op.create_table('good', sa.Column('id', sa.Integer))")
    bad = new_revision(cli, target, "bad", """
        op.create_table('half_done', sa.Column('id', sa.Integer))
        op.execute('SELECT * FROM no_such_table')
    """)
    result = migrate(cli, target, "up")
    assert result.exit_code == 1
    error = result.stderr.splitlines()[0]
    assert error.startswith("error: backend ")
    assert f"revision {bad['revision']} failed" in error
    assert "statement: SELECT * FROM no_such_table" in error
    assert f"database left at revision {good['revision']}" in error
    assert target.version() == good["revision"]
    assert "good" in target.tables() and "half_done" not in target.tables()
    assert target.checksummed() == {good["revision"]}
    assert migrate(cli, target, "status").exit_code == 1


def test_two_concurrent_ups_apply_each_revision_once(cli, target):
    migrate(cli, target, "init")
    new_revision(cli, target, "runs", "op.create_table('runs', sa.Column('id', sa.Integer))")
    new_revision(cli, target, "slow", f"op.execute('INSERT INTO runs (id) VALUES (1)')\n{target.sleep_sql()}")
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "storagectl", "-c", str(target.config), "migrate", "up",
               "--backend", target.name, "-o", "json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    outcomes = [(run.wait(timeout=60), *run.communicate()) for run in runs]
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    applied = sorted(len(json.loads(out)[0]["revisions"]) for _, out, _ in outcomes)
    assert applied == [0, 2]
    assert target.query("SELECT count(*) FROM runs") == [(1,)]


def test_lock_timeout_is_exit_7_and_changes_nothing(cli, target):
    migrate(cli, target, "init")
    new_revision(cli, target, "one", "op.create_table('one', sa.Column('id', sa.Integer))")
    if target.pg is not None:
        from storagectl.migrations.locking import ADVISORY_LOCK_KEY

        holder = target.pg.connect()
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        release = holder.close
    else:
        import filelock

        holder = filelock.FileLock(str(target.sqlite_path) + ".migrate.lock")
        holder.acquire()
        release = holder.release
    try:
        result = migrate(cli, target, "up", "--lock-timeout", "0.3")
    finally:
        release()
    assert result.exit_code == 7
    assert f"backend '{target.name}'" in result.stderr
    assert "holds the migration lock" in result.stderr and "gave up after 0.3s" in result.stderr
    assert "Try: wait for the other deploy" in result.stderr
    assert target.version() is None


def test_edited_revision_is_reported_and_stamp_accepts_it(cli, target):
    migrate(cli, target, "init")
    created = new_revision(cli, target, "one", "op.create_table('one', sa.Column('id', sa.Integer))")
    migrate(cli, target, "up")
    path = Path(created["path"])
    path.write_text(path.read_text() + "\n# edited after it was applied\n")
    status = migrate(cli, target, "status", "-o", "json")
    assert status.exit_code == 6
    assert status.json()[0]["edited"] == [created["revision"]]
    up = migrate(cli, target, "up")
    assert up.exit_code == 0 and f"revision {created['revision']} was edited" in up.stderr
    history = migrate(cli, target, "history")
    assert "EDITED" in history.stdout
    assert migrate(cli, target, "stamp", "head").exit_code == 0
    assert migrate(cli, target, "status").exit_code == 0


def test_lint_warns_and_strict_refuses_before_applying(cli, target):
    migrate(cli, target, "init")
    new_revision(cli, target, "users", "op.create_table('users', sa.Column('id', sa.Integer))")
    risky = new_revision(cli, target, "risky", """
        op.add_column('users', sa.Column('email', sa.String(50), nullable=False))
        op.drop_table('users')
    """)
    preview = migrate(cli, target, "up", "--dry-run", "--strict")
    assert preview.exit_code == 1 and "--strict and lint found" in preview.stderr
    strict = migrate(cli, target, "up", "--strict")
    assert strict.exit_code == 1
    assert "--strict and lint found 2 problem(s), nothing applied" in strict.stderr
    assert f"  revision {risky['revision']}: not-null" in strict.stderr  # every problem, not only the first
    assert f"  revision {risky['revision']}: drop-table" in strict.stderr
    assert target.version() is None and "users" not in target.tables()

    relaxed = migrate(cli, target, "up")
    assert relaxed.exit_code == 0, relaxed.stderr
    assert f"warning: revision {risky['revision']}: not-null" in relaxed.stderr
    assert f"warning: revision {risky['revision']}: drop-table" in relaxed.stderr


# -- bad input --------------------------------------------------------------------------------------
def test_missing_directory_is_a_usage_error(cli, target):
    result = migrate(cli, target, "up")
    assert result.exit_code == 2
    assert "migrations directory" in result.stderr and "does not exist" in result.stderr
    assert f"Try: storagectl migrate init --backend {target.name}" in result.stderr
    assert target.tables() == set()


def test_unknown_revision_is_exit_5(cli, target):
    migrate(cli, target, "init")
    three_revisions(cli, target)
    up = migrate(cli, target, "up", "--to", "deadbeef")
    assert up.exit_code == 5 and "deadbeef" in up.stderr
    down = migrate(cli, target, "down", "--to", "deadbeef", "--yes")
    assert down.exit_code == 5
    stamp = migrate(cli, target, "stamp", "deadbeef")
    assert stamp.exit_code == 5
    assert target.version() is None


def test_database_at_a_revision_the_directory_lacks(cli, target):
    migrate(cli, target, "init")
    revisions = three_revisions(cli, target)
    migrate(cli, target, "up")
    next(Path(target.config.parent, "mig", target.name, "versions").glob(f"{revisions[2]}_*.py")).unlink()
    for args in (("status",), ("up",), ("history",), ("down", "--to", "base", "--yes")):
        result = migrate(cli, target, *args)
        assert result.exit_code == 5, (args, result.stderr)
        assert f"the database is at revision {revisions[2]}" in result.stderr
    assert migrate(cli, target, "stamp", revisions[1]).exit_code == 0
    assert migrate(cli, target, "status").exit_code == 0
    assert target.checksummed() == set(revisions[:2])


def test_multiple_heads_are_refused_until_merged(cli, target):
    migrate(cli, target, "init")
    first = new_revision(cli, target, "a", "op.create_table('a', sa.Column('id', sa.Integer))")
    second = new_revision(cli, target, "b", "op.create_table('b', sa.Column('id', sa.Integer))")
    path = Path(second["path"])
    path.write_text(path.read_text().replace(f"down_revision: str | Sequence[str] | None = {first['revision']!r}",
                                             "down_revision: str | Sequence[str] | None = None"))
    result = migrate(cli, target, "up")
    assert result.exit_code == 2
    assert "multiple heads" in result.stderr and "--merge" in result.stderr
    assert target.tables() == set()
    merge = migrate(cli, target, "new", "--merge", "-m", "merge heads")
    assert merge.exit_code == 0, merge.stderr
    assert migrate(cli, target, "up").exit_code == 0
    assert {"a", "b"} <= target.tables()


def test_down_needs_yes(cli, target):
    migrate(cli, target, "init")
    result = migrate(cli, target, "down", "--to", "base")
    assert result.exit_code == 2 and "refusing without --yes" in result.stderr


def test_backend_without_migrations_key(cli, write_config, pg_database):
    config = write(write_config, pg_yaml(pg_database, migrations=None))
    result = cli("-c", config, "migrate", "status", "--backend", "pg")
    assert result.exit_code == 2
    assert "backend 'pg' has no migrations directory" in result.stderr
    assert "backends.pg.migrations" in result.stderr


def test_kind_without_migrations(cli, write_config):
    config = write(write_config, "  cache:\n    kind: redis\n    url: redis://127.0.0.1:6379/0\n")
    result = cli("-c", config, "migrate", "up", "--backend", "cache")
    assert result.exit_code == 2 and "redis backend, which has no schema migrations" in result.stderr
    assert cli("-c", config, "migrate", "status", "--all").exit_code == 2


def test_conflicting_options(cli, target):
    assert migrate(cli, target, "up", "--all").exit_code == 2
    both = cli("-c", target.config, "migrate", "new", "-m", "x", "--backend", target.name, "--models", "m:md")
    assert both.exit_code == 2 and "--models is only used with --autogenerate" in both.stderr


# -- several backends -------------------------------------------------------------------------------
def test_up_all_stops_at_first_failure_and_says_what_was_applied(cli, write_config, pg_database, tmp_path):
    config = write(write_config, sqlite_yaml("lite"), pg_yaml(pg_database), sqlite_yaml("later", "mig/later"))
    lite = SqlTarget(config, "lite", "sqlite", sqlite_path=tmp_path / "lite.db")
    pg = SqlTarget(config, "pg", "postgres", pg=pg_database)
    later = SqlTarget(config, "later", "sqlite", sqlite_path=tmp_path / "later.db")
    for each in (lite, pg, later):
        migrate(cli, each, "init")
        new_revision(cli, each, "t", "op.create_table('t', sa.Column('id', sa.Integer))")
    new_revision(cli, pg, "broken", "op.execute('SELECT * FROM no_such_table')")

    pending = cli("-c", config, "migrate", "status", "--all", "-o", "json")
    assert pending.exit_code == 1 and [r["backend"] for r in pending.json()] == ["lite", "pg", "later"]

    result = cli("-c", config, "migrate", "up", "--all")
    assert result.exit_code == 1
    assert "backend 'pg': revision" in result.stderr
    assert "before the failure lite: 1 applied" in result.stderr
    assert "not attempted: later" in result.stderr
    assert "t" in lite.tables() and "t" in pg.tables() and later.tables() == set()


def test_secrets_stay_out_of_errors_and_sql(cli, write_config, pg_database):
    url = pg_database.url.replace("postgres@", "postgres:s3cret-pw@")
    config = write(write_config, f"  pg:\n    kind: postgres\n    url: {url}\n    migrations: mig/pg\n")
    target = SqlTarget(config, "pg", "postgres", pg=pg_database)
    migrate(cli, target, "init")
    new_revision(cli, target, "broken", "op.execute('SELECT * FROM no_such_table')")
    for args in (("up", "--dry-run"), ("up",), ("status",)):
        result = migrate(cli, target, *args)
        assert "s3cret-pw" not in result.stdout + result.stderr


def test_a_multi_host_url_works_for_migrate_and_for_sqlalchemy(cli, write_config, pg_database):
    """libpq's failover list (the first host refuses, the second is the server), with a password:
    `migrate` runs on it and masks the password, and the settings' SQLAlchemy URL connects (it
    raised on the port list, which crashed with exit 70)."""
    from sqlalchemy import create_engine

    from storagectl.config import load_config

    server = f"{pg_database.host}:{pg_database.port}"
    url = pg_database.url.replace("postgres@", "postgres:s3cret-pw@").replace(server, f"127.0.0.1:1,{server}")
    assert url.count(",") == 1, url
    config = write(write_config, f"  pg:\n    kind: postgres\n    url: {url}\n    migrations: mig/pg\n")
    target = SqlTarget(config, "pg", "postgres", pg=pg_database)
    assert migrate(cli, target, "init").exit_code == 0
    new_revision(cli, target, "create t", "op.create_table('t', sa.Column('id', sa.Integer))", "op.drop_table('t')")
    for args in (("up",), ("status",), ("current",)):
        result = migrate(cli, target, *args)
        assert result.exit_code == 0, result.stderr
        assert "s3cret-pw" not in result.stdout + result.stderr
    assert "t" in target.tables()

    engine = create_engine(load_config(config).backend("pg").sqlalchemy_url())
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT current_database()").scalar() == pg_database.name
    finally:
        engine.dispose()


def test_autogenerate_from_models(cli, target, tmp_path, monkeypatch):
    migrate(cli, target, "init")
    new_revision(cli, target, "empty")
    assert migrate(cli, target, "up").exit_code == 0  # storagectl_migrations now exists
    (tmp_path / "shop_models.py").write_text(textwrap.dedent("""
        import sqlalchemy as sa
        metadata = sa.MetaData()
        widgets = sa.Table("widgets", metadata, sa.Column("id", sa.Integer, primary_key=True))
    """))
    monkeypatch.chdir(tmp_path)
    created = new_revision(cli, target, "widgets", extra=("--autogenerate", "--models", "shop_models:metadata"))
    text = Path(created["path"]).read_text()
    assert "op.create_table('widgets'" in text
    assert "storagectl_migrations" not in text and "alembic_version" not in text
    assert migrate(cli, target, "up").exit_code == 0
    assert "widgets" in target.tables()


def test_status_all_reports_a_backend_without_directory_as_an_error_row(cli, write_config, pg_database, tmp_path,
                                                                       monkeypatch):
    config = write(write_config, sqlite_yaml("lite"), pg_yaml(pg_database))
    lite = SqlTarget(config, "lite", "sqlite", sqlite_path=tmp_path / "lite.db")
    migrate(cli, lite, "init")
    new_revision(cli, lite, "t", "op.create_table('t', sa.Column('id', sa.Integer))")
    assert migrate(cli, lite, "up").exit_code == 0
    result = cli("-c", config, "migrate", "status", "--all", "-o", "json")
    assert result.exit_code == 2, result.stderr  # pg's directory is missing: the worst row
    rows = {row["backend"]: row for row in result.json()}
    assert rows["lite"]["error"] is None and rows["lite"]["exit_code"] == 0 and rows["lite"]["pending_count"] == 0
    assert "does not exist" in rows["pg"]["error"] and rows["pg"]["exit_code"] == 2
    monkeypatch.setenv("COLUMNS", "400")  # the error cell on one line, however long the tmp path (xdist)
    table = cli("-c", config, "migrate", "status", "--all")
    assert table.exit_code == 2 and "lite" in table.stdout and "does not exist" in table.stdout
    # current --all: the unreadable backend is not "at head" (a CI gate on is_head must not pass)
    current = cli("-c", config, "migrate", "current", "--all", "-o", "json")
    assert current.exit_code == 2
    rows = {row["backend"]: row for row in current.json()}
    assert rows["lite"]["is_head"] is True and rows["pg"]["is_head"] is None and rows["pg"]["error"]


def _hint_commands(stderr: str) -> list[list[str]]:
    """Every `storagectl ...` command in the Try: lines, up to `;`, `,` or the end of the line."""
    import re
    import shlex

    commands = []
    for line in stderr.splitlines():
        if line.startswith("Try:"):
            commands += [shlex.split(found)[1:] for found in re.findall(r"storagectl [^;,\n]+", line)]
    return commands


def test_every_hint_runs_as_printed_with_several_backends(cli, write_config, pg_database, tmp_path):
    """With two migrating backends a hint without --backend fails with "several backends"."""
    config = write(write_config, sqlite_yaml("lite"), pg_yaml(pg_database))
    lite = SqlTarget(config, "lite", "sqlite", sqlite_path=tmp_path / "lite.db")
    pg = SqlTarget(config, "pg", "postgres", pg=pg_database)
    migrate(cli, pg, "init")
    migrate(cli, lite, "init")
    first = new_revision(cli, pg, "users", "op.create_table('users', sa.Column('id', sa.Integer))",
                         "op.drop_table('users')")
    new_revision(cli, pg, "risky", "op.drop_table('users')", "pass")
    failures = [
        migrate(cli, pg, "down", "--to", first["revision"]),  # refused without --yes
        migrate(cli, pg, "up", "--strict"),  # lint problems
        migrate(cli, lite, "history"),  # fine: no hint
    ]
    new_revision(cli, lite, "broken", "op.execute('SELECT * FROM no_such_table')")
    failures.append(migrate(cli, lite, "up"))  # a failing revision
    hints = [command for result in failures for command in _hint_commands(result.stderr)]
    assert len(hints) >= 3, [f.stderr for f in failures]
    for command in hints:
        ran = cli("-c", config, *command)
        assert "several backends" not in ran.stderr, (command, ran.stderr)
        assert ran.exit_code in (0, 1), (command, ran.stderr)


def test_current_heads_and_show(cli, target):
    migrate(cli, target, "init")
    revisions = three_revisions(cli, target)
    before = migrate(cli, target, "current", "-o", "json")
    assert before.exit_code == 0 and before.json() == [
        {"backend": target.name, "kind": target.kind, "current": None, "is_head": False, "error": None}]
    assert migrate(cli, target, "up", "--to", revisions[1]).exit_code == 0
    assert migrate(cli, target, "current", "-o", "json").json()[0]["current"] == revisions[1]
    heads = migrate(cli, target, "heads", "-o", "json")
    assert heads.exit_code == 0
    [head] = heads.json()
    assert head["revision"] == revisions[2] and head["parents"] == [revisions[1]] and head["is_head"]
    shown = migrate(cli, target, "show", revisions[1], "-o", "json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["message"] == "create orders" and "op.create_table('orders'" in shown.json()["body"]
    table = migrate(cli, target, "show", "head")
    assert table.exit_code == 0 and revisions[2] in table.stdout and "seed users" in table.stdout
    assert migrate(cli, target, "show", "deadbeef").exit_code == 5


def test_down_on_a_terminal_shows_the_sql_and_asks(cli, target, monkeypatch):
    import io

    from storagectl.cli.state import AppState

    migrate(cli, target, "init")
    revisions = three_revisions(cli, target)
    assert migrate(cli, target, "up").exit_code == 0
    monkeypatch.setattr(AppState, "interactive", property(lambda self: True))
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    declined = migrate(cli, target, "down", "--to", revisions[0])
    assert declined.exit_code == 1 and "Revert 2 revision(s) of backend" in declined.stderr
    assert "DELETE FROM users" in declined.stderr and target.version() == revisions[2]
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    accepted = migrate(cli, target, "down", "--to", revisions[0])
    assert accepted.exit_code == 0, accepted.stderr
    assert target.version() == revisions[0]
