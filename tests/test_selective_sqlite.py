"""SQLite --table backups and restores on real files: the restored tables equal the selected source
tables, and nothing else in the target changes."""

from __future__ import annotations

import sqlite3

import pytest

from tests.test_backup_cli import terminal  # noqa: F401 - a fixture


def make_source(path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT);
            CREATE INDEX users_name ON users (name);
            CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);
            CREATE TABLE log_a (x); CREATE TABLE log_b (x);
            CREATE TRIGGER users_audit AFTER INSERT ON users BEGIN INSERT INTO audit (what) VALUES (new.name); END;
            CREATE VIEW v AS SELECT * FROM users;
        """)
        db.executemany("INSERT INTO users (name) VALUES (?)", [(f"u{i}",) for i in range(100)])
        db.execute("DELETE FROM users WHERE id > 95")  # AUTOINCREMENT remembers 100
        db.executemany("INSERT INTO log_a VALUES (?)", [(i,) for i in range(7)])
        db.executemany("INSERT INTO log_b VALUES (?)", [(i,) for i in range(9)])


def dump(path, table: str) -> list:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def schema(path) -> list:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


@pytest.fixture
def env(tmp_path, write_config):
    source, target = tmp_path / "app.db", tmp_path / "other.db"
    make_source(source)
    with sqlite3.connect(target) as db:
        db.executescript("CREATE TABLE mine (id INTEGER); INSERT INTO mine VALUES (1), (2);"
                         "CREATE TABLE users (stale TEXT); INSERT INTO users VALUES ('old');"
                         "CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);")  # the trigger of users writes it
    config = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {source}}}
          other: {{kind: sqlite, path: {target}}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
    """)
    return {"config": config, "source": source, "target": target}


def run(cli, env, *args):
    return cli("-c", env["config"], *args)


def test_table_backup_restores_only_those_tables_in_place(cli, env):
    ran = run(cli, env, "-o", "json", "backup", "run", "--backend", "app", "--to", "local", "--table", "users",
              "--table", "log_*")
    assert ran.exit_code == 0, ran.stderr
    info = ran.json()[0]
    assert info["selection"] == {"tables": ["users", "log_*"], "matched": {"log_a": 7, "log_b": 9, "users": 95}}
    refused = run(cli, env, "restore", info["id"], "--to", "other")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    mine = dump(env["target"], "mine")
    restored = run(cli, env, "restore", info["id"], "--to", "other", "--yes", "--validate")
    assert restored.exit_code == 0, restored.stderr
    for table in ("users", "log_a", "log_b"):
        assert dump(env["target"], table) == dump(env["source"], table)
    assert dump(env["target"], "mine") == mine
    names = {name for _, name, _ in schema(env["target"])}
    assert names == {"mine", "audit", "users", "users_name", "users_audit", "log_a", "log_b",
                     "sqlite_sequence"}
    with sqlite3.connect(env["target"]) as db:  # AUTOINCREMENT goes on after the source's 100
        assert db.execute("INSERT INTO users (name) VALUES ('new') RETURNING id").fetchone() == (101,)


def test_subset_of_a_full_backup(cli, env):
    ran = run(cli, env, "-o", "json", "backup", "run", "--backend", "app", "--to", "local")
    info = ran.json()[0]
    assert info["partial"] is False
    restored = run(cli, env, "-o", "json", "restore", info["id"], "--to", "other", "--table", "log_b", "--validate")
    assert restored.exit_code == 0, restored.stderr
    assert [c["unit"] for c in restored.json()["validation"]["checks"]] == ["log_b"]
    assert dump(env["target"], "log_b") == dump(env["source"], "log_b")
    assert dump(env["target"], "users") == [("old",)]  # not selected: untouched
    missing = run(cli, env, "restore", info["id"], "--to", "other", "--table", "nope")
    assert missing.exit_code == 5 and "--table 'nope' matches no table in backup" in missing.stderr
    schema_option = run(cli, env, "restore", info["id"], "--to", "other", "--schema", "main")
    assert schema_option.exit_code == 2
    assert "--schema does not apply to backend 'other' (sqlite)" in schema_option.stderr


def test_a_terminal_is_asked_about_the_selection_only(cli, env, terminal):  # noqa: F811
    ran = run(cli, env, "-o", "json", "backup", "run", "--backend", "app", "--to", "local", "--table", "users")
    backup_id = ran.json()[0]["id"]
    terminal("n\n")
    declined = run(cli, env, "restore", backup_id, "--to", "other")
    assert declined.exit_code == 1 and "Replace --table users in backend 'other'" in declined.stderr
    assert "only --table users from backup" in declined.stderr  # the plan shown before the question
    assert dump(env["target"], "users") == [("old",)]
    terminal("y\n")
    accepted = run(cli, env, "restore", backup_id, "--to", "other")
    assert accepted.exit_code == 0, accepted.stderr
    assert dump(env["target"], "users") == dump(env["source"], "users")
