"""Selective PostgreSQL backups and restores (--table/--schema/--exclude-table) against the real server:
restored rows equal the selected source rows, and nothing else in the target changes."""

from __future__ import annotations

import pytest

SOURCE_SQL = """
CREATE SCHEMA app;
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE TABLE customers (id serial PRIMARY KEY, name text UNIQUE, m mood);
CREATE TABLE app.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                         customer_id int REFERENCES customers(id), note text);
CREATE INDEX orders_note_idx ON app.orders (note);
COMMENT ON TABLE customers IS 'the customers';
CREATE TABLE app.audit (at timestamptz DEFAULT now(), what text);
CREATE TABLE "odd name" (x int);
INSERT INTO customers (name, m) SELECT 'c' || g, 'ok' FROM generate_series(1, 50) g;
INSERT INTO app.orders (customer_id, note) SELECT 1 + g % 50, 'order ' || g FROM generate_series(1, 300) g;
INSERT INTO app.audit (what) SELECT 'a' || g FROM generate_series(1, 20) g;
INSERT INTO "odd name" VALUES (7);
"""


def rows(database, table: str) -> list:
    with database.connect() as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def tables(database) -> list[str]:
    with database.connect() as conn:
        return [name for (name,) in conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1")]


@pytest.fixture
def env(pg_database, pg_target, tmp_path, write_config):
    with pg_database.connect() as conn:
        conn.execute(SOURCE_SQL)
    config = write_config(
        "version: 1\nbackends:\n" + pg_database.backend_yaml("src") + pg_target.backend_yaml("dst")
        + '  cache: {kind: redis, url: "redis://127.0.0.1:6379/0"}\n'
        + f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n"
        + "jobs:\n  nightly: {backends: [src], destination: local}\n"
        + "  orders:\n    backends: [src]\n    destination: local\n"
        + "    select: {schemas: [app], exclude_tables: [audit]}\n")
    return {"config": config, "source": pg_database, "target": pg_target}


def run(cli, env, *args):
    return cli("-c", env["config"], *args)


def backup(cli, env, *args) -> dict:
    result = run(cli, env, "-o", "json", "backup", "run", *args)
    assert result.exit_code == 0, result.stderr
    return result.json()[0]


def target_with_other_contents(target) -> None:
    """The target has the schema and the referenced table, plus a table of its own."""
    with target.connect() as conn:
        conn.execute("CREATE SCHEMA app; CREATE TYPE mood AS ENUM ('ok', 'sad'); "
                     "CREATE TABLE customers (id serial PRIMARY KEY, name text UNIQUE, m mood); "
                     "INSERT INTO customers (name, m) SELECT 'c' || g, 'ok' FROM generate_series(1, 50) g; "
                     "CREATE TABLE mine (id int); INSERT INTO mine VALUES (1), (2)")


def test_partial_backup_records_its_selection_and_restores_only_it(cli, env):
    info = backup(cli, env, "--backend", "src", "--to", "local", "--table", "app.orders")
    assert info["partial"] is True
    assert info["selection"] == {"tables": ["app.orders"], "matched": {'"app"."orders"': 300}}
    listed = run(cli, env, "-o", "json", "backup", "list")
    assert [b["partial"] for b in listed.json()] == [True]
    table = run(cli, env, "backup", "list")
    assert "--table app.orders" in table.stdout
    target_with_other_contents(env["target"])
    before = rows(env["target"], "customers"), rows(env["target"], "mine")
    restored = run(cli, env, "restore", info["id"], "--to", "dst", "--validate")
    assert restored.exit_code == 0, restored.stderr
    assert rows(env["target"], "app.orders") == rows(env["source"], "app.orders")
    assert (rows(env["target"], "customers"), rows(env["target"], "mine")) == before
    assert tables(env["target"]) == ["app.orders", "public.customers", "public.mine"]
    with env["target"].connect() as conn:  # the identity sequence goes on where the source's was
        assert conn.execute("INSERT INTO app.orders (customer_id) VALUES (1) RETURNING id").fetchone() == (301,)
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_note_idx'").fetchone() == (1,)


def test_backup_warns_of_foreign_keys_to_tables_left_out(cli, env):
    result = run(cli, env, "backup", "run", "--backend", "src", "--to", "local", "--table", "app.orders")
    assert result.exit_code == 0
    assert "foreign keys to tables left out of the backup (public.customers)" in result.stderr


def test_subset_of_a_full_backup_replaces_only_the_selected_table(cli, env):
    info = backup(cli, env, "--backend", "src", "--to", "local")
    assert info["partial"] is False
    target_with_other_contents(env["target"])
    with env["target"].connect() as conn:  # a table of the target's own with a foreign key into customers
        conn.execute("DELETE FROM customers WHERE id > 10; UPDATE customers SET name = 'changed' WHERE id = 1; "
                     "CREATE TABLE refs (c int REFERENCES customers(id)); INSERT INTO refs VALUES (3)")
    mine = rows(env["target"], "mine")
    refused = run(cli, env, "restore", info["id"], "--to", "dst", "--table", "customers")
    assert refused.exit_code == 2 and "already holds objects that --table customers selects" in refused.stderr
    dry = run(cli, env, "restore", info["id"], "--to", "dst", "--table", "customers", "--dry-run")
    assert dry.exit_code == 0
    assert "only --table customers" in dry.stderr and "in one transaction" in dry.stderr
    assert "beside it" not in dry.stderr  # the staged method is not what a selective restore does
    restored = run(cli, env, "-o", "json", "restore", info["id"], "--to", "dst", "--table", "customers", "--yes",
                   "--validate")
    assert restored.exit_code == 0, restored.stderr
    report = restored.json()
    assert [check["unit"] for check in report["validation"]["checks"]] == ['"public"."customers"']
    assert rows(env["target"], "customers") == rows(env["source"], "customers")
    assert rows(env["target"], "mine") == mine and rows(env["target"], "refs") == [(3,)]
    assert tables(env["target"]) == ["public.customers", "public.mine", "public.refs"]
    with env["target"].connect() as conn:  # the foreign key of refs is back
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'refs'::regclass "
                            "AND contype = 'f'").fetchone() == (1,)
        assert conn.execute("SELECT obj_description('customers'::regclass)").fetchone() == ("the customers",)
        # the serial's sequence is the source's again (50 rows taken), not the target's
        assert conn.execute("INSERT INTO customers (name) VALUES ('new') RETURNING id").fetchone() == (51,)


def test_a_job_select_backs_up_schemas_less_excluded_tables(cli, env):
    info = backup(cli, env, "--job", "orders")
    assert info["selection"]["schemas"] == ["app"] and info["selection"]["exclude_tables"] == ["audit"]
    assert list(info["selection"]["matched"]) == ['"app"."orders"']


def test_missing_referenced_table_fails_before_anything_changes(cli, env):
    info = backup(cli, env, "--backend", "src", "--to", "local", "--table", "app.orders")
    with env["target"].connect() as conn:
        conn.execute("CREATE SCHEMA app; CREATE TABLE mine (id int)")
    failed = run(cli, env, "restore", info["id"], "--to", "dst")
    assert failed.exit_code == 1
    assert "foreign keys to public.customers, which the target lacks" in failed.stderr
    assert tables(env["target"]) == ["public.mine"]


def test_failure_inside_the_transaction_leaves_the_target_as_it_was(cli, env):
    info = backup(cli, env, "--backend", "src", "--to", "local")
    target_with_other_contents(env["target"])
    with env["target"].connect() as conn:
        conn.execute("CREATE VIEW v AS SELECT * FROM customers; DELETE FROM customers WHERE id = 5")
    before = rows(env["target"], "customers")
    failed = run(cli, env, "restore", info["id"], "--to", "dst", "--table", "customers", "--yes")
    assert failed.exit_code == 1
    assert "other objects depend on it" in failed.stderr and "rolled back" in failed.stderr
    assert rows(env["target"], "customers") == before


def test_bad_combinations_are_one_line_usage_errors(cli, env):
    redis = run(cli, env, "backup", "run", "--backend", "cache", "--to", "local", "--table", "x")
    assert redis.exit_code == 2
    assert "--table does not apply to backend 'cache' (redis); it selects with --pattern, --type" in redis.stderr
    job = run(cli, env, "backup", "run", "--job", "nightly", "--table", "x")
    assert job.exit_code == 2 and "--table goes with --backend/--to" in job.stderr
    nothing = run(cli, env, "backup", "run", "--backend", "src", "--to", "local", "--table", "nope")
    assert nothing.exit_code == 5 and "--table 'nope' matches no table" in nothing.stderr
    info = backup(cli, env, "--backend", "src", "--to", "local")
    label = run(cli, env, "restore", info["id"], "--to", "dst", "--label", "Person")
    assert label.exit_code == 2 and "--label does not apply to backend 'dst' (postgres)" in label.stderr


def test_latest_never_takes_a_partial_backup_for_a_full_one(cli, env):
    full = backup(cli, env, "--job", "nightly")
    backup(cli, env, "--backend", "src", "--to", "local", "--table", "customers")
    partial_job = backup(cli, env, "--job", "orders")
    shown = run(cli, env, "-o", "json", "backup", "show", "latest", "--backend", "src")
    assert shown.exit_code == 0 and shown.json()["id"] == full["id"]
    of_job = run(cli, env, "-o", "json", "backup", "show", "latest", "--job", "orders")
    assert of_job.json()["id"] == partial_job["id"] and of_job.json()["selection"]["schemas"] == ["app"]


def test_yaml_select_is_validated_per_backend_kind(cli, env, write_config, tmp_path):
    text = env["config"].read_text().replace("backends: [src]\n    destination: local\n    select:",
                                             "backends: [src, cache]\n    destination: local\n    select:")
    bad = write_config(text, "bad.yaml")
    result = cli("-c", bad, "config", "validate")
    assert result.exit_code == 2
    assert "jobs.orders.select.schemas: does not apply to backend 'cache' (redis)" in result.stderr


def test_a_type_the_target_lacks_fails_in_the_transaction_with_advice(cli, env):
    info = backup(cli, env, "--backend", "src", "--to", "local", "--table", "customers")
    with env["target"].connect() as conn:
        conn.execute("CREATE TABLE mine (id int)")
    failed = run(cli, env, "restore", info["id"], "--to", "dst")
    assert failed.exit_code == 1
    assert 'type "public.mood" does not exist' in failed.stderr and "rolled back" in failed.stderr
    assert "a selective restore creates only the tables" in failed.stderr
    assert tables(env["target"]) == ["public.mine"]


def test_a_target_holding_an_unfinished_restore_is_refused(cli, env):
    from storagectl.backends.postgres.schema import quote_literal
    from storagectl.backends.postgres.target import Marker

    info = backup(cli, env, "--backend", "src", "--to", "local")
    marker = Marker("20261201T000000Z-0ld0ne", 1, "elsewhere", "2026-12-01T00:00:00+00:00", None, (), ())
    with env["target"].connect() as conn:
        conn.execute("CREATE TABLE items (id int)")
        conn.execute(f'COMMENT ON DATABASE "{env["target"].name}" IS {quote_literal(marker.text())}')
    refused = run(cli, env, "restore", info["id"], "--to", "dst", "--table", "customers")
    assert refused.exit_code == 2
    assert "holds an unfinished restore of backup 20261201T000000Z-0ld0ne" in refused.stderr
    assert tables(env["target"]) == ["public.items"]


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_only_the_objects_a_selection_reads_are_verified_first(cli, env):
    """A damaged part of another table does not stop restoring customers; one of customers' does, before
    anything is written (exit 6)."""
    info = backup(cli, env, "--backend", "src", "--to", "local")
    manifest = run(cli, env, "-o", "json", "backup", "show", info["id"]).json()
    root = env["config"].parent / "backups"
    stored = {entry["name"]: root / entry["key"] for entry in manifest["objects"]}
    flip_a_byte(next(path for name, path in stored.items() if "orders" in name))
    with env["target"].connect() as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('ok', 'sad')")
    restored = run(cli, env, "restore", info["id"], "--to", "dst", "--table", "customers", "--schema", "public")
    assert restored.exit_code == 0, restored.stderr
    assert rows(env["target"], "customers") == rows(env["source"], "customers")
    flip_a_byte(next(path for name, path in stored.items() if "customers" in name))
    damaged = run(cli, env, "restore", info["id"], "--to", "dst", "--table", "customers", "--yes")
    assert damaged.exit_code == 6 and "nothing was restored" in damaged.stderr
    assert rows(env["target"], "customers") == rows(env["source"], "customers")
