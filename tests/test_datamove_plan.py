"""`storagectl migrate data plan` / `run --dry-run` against the target: what would stop a run is found
read-only and gives the run's exit code; numeric(p,s) losses; foreign keys of renamed tables; tables
selected by the selective backup's Selection."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from tests import test_datamove_sql
from tests.conftest import free_port
from tests.test_datamove_sql import make_source, run_json

moves = test_datamove_sql.moves  # the fixture: a SQLite source and an empty PostgreSQL target


def _tables(pg_database) -> set[str]:
    with pg_database.connect() as conn:
        return {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _lines(stderr: str) -> set[str]:
    """What was said, in any order."""
    return {line.strip() for line in stderr.splitlines()}


def test_plan_and_dry_run_find_what_would_stop_the_run_without_writing(cli, moves, pg_database):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE notes (body varchar(20), weight float8)")
        conn.execute("INSERT INTO notes VALUES ('old', 1)")
    for command in (["plan"], ["run", "--dry-run"]):
        result = cli("-c", moves, "migrate", "data", *command, "--from", "lite", "--to", "pg")
        assert result.exit_code == 2, result.stderr  # as the run: a non-empty target table needs --yes
        assert "error: target table notes is not empty" in result.stderr
    result, plan = run_json(cli, moves, "plan", "--from", "lite", "--to", "pg", "--yes")
    assert result.exit_code == 0, result.stderr  # the tables to create are no obstacle
    assert plan["blocked_by"] == [] and {item["target"] for item in plan["items"]} == {"authors", "books", "notes"}
    assert _tables(pg_database) == {"notes"}  # no state table, nothing created
    with pg_database.connect() as conn:
        conn.execute("ALTER TABLE notes ADD COLUMN extra int")
    result, plan = run_json(cli, moves, "run", "--dry-run", "--from", "lite", "--to", "pg", "--yes")
    assert result.exit_code == 2
    assert plan["blocked_by"][0]["error"] == "target table notes has other columns than the move (not in the " \
                                             "source extra)"
    assert _tables(pg_database) == {"notes"}


def test_plan_of_an_unreachable_target_exits_as_the_run_would(cli, tmp_path, write_config):
    make_source(tmp_path / "src.db")
    config = write_config(f"""\
        backends:
          lite: {{kind: sqlite, path: src.db}}
          down: {{kind: postgres, host: 127.0.0.1, port: {free_port()}, user: app, retry: {{attempts: 1}}}}
        """)
    plan = cli("-c", config, "-o", "json", "migrate", "data", "plan", "--from", "lite", "--to", "down")
    run = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "down")
    assert plan.exit_code == run.exit_code == 3, (plan.stderr, run.stderr)
    report = json.loads(plan.stdout)
    assert len(report["items"]) == 3 and report["blocked_by"][0]["exit_code"] == 3  # the source still planned
    assert plan.stderr.splitlines()[0] == run.stderr.splitlines()[0]


def test_plan_and_run_stop_alike_on_a_privilege_the_target_user_lacks(cli, tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db")
    role = f"{pg_database.name}_writer"
    with pg_database.connect() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute("CREATE TABLE notes (body text, weight float8)")
        conn.execute(f'GRANT SELECT ON notes TO "{role}"')
    url = pg_database.url.replace(f"{pg_database.user}@", f"{role}@", 1)
    config = write_config(f"""\
        backends:
          lite: {{kind: sqlite, path: src.db}}
          pg: {{kind: postgres, url: "{url}"}}
        """)
    try:
        plan = cli("-c", config, "migrate", "data", "plan", "--from", "lite", "--to", "pg", "--table", "notes")
        assert plan.exit_code == 4, plan.stderr
        assert "no CREATE privilege on schema public, where a run creates its state table" in plan.stderr
        assert "a run would also stop on: " in plan.stderr and "no INSERT privilege on notes" in plan.stderr
        assert _tables(pg_database) == {"notes"}
        run = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "notes")
        assert run.exit_code == 4, run.stderr  # the run makes the plan's checks first: the plan's error, no --resume
        assert _lines(run.stderr) == _lines(plan.stderr) and "--resume" not in run.stderr
        assert "a run would also stop on: " in run.stderr and "no INSERT privilege on notes" in run.stderr
        assert run.stderr == plan.stderr, "the same lines in the same order: the first blocker, the others under it"
        assert _tables(pg_database) == {"notes"}
        with pg_database.connect() as conn:
            conn.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        plan = cli("-c", config, "migrate", "data", "plan", "--from", "lite", "--to", "pg", "--table", "notes")
        assert plan.exit_code == 4 and "error: " in plan.stderr and "no INSERT privilege on notes" in plan.stderr
        run = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "notes")
        assert run.exit_code == 4 and "no INSERT privilege on notes" in run.stderr, run.stderr
        assert _lines(run.stderr) == _lines(plan.stderr) and "--resume" not in run.stderr
        assert _tables(pg_database) == {"notes"}  # no state table: nothing written
    finally:
        with pg_database.connect() as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_run_makes_the_plans_checks_before_it_creates_anything(cli, tmp_path, write_config, pg_database,
                                                               pg_target):
    """A target user who may create tables but only read an existing one: the run stops as the plan
    does, before the state table or any other table is created."""
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text);"
                     "CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers (id), total int);"
                     "INSERT INTO customers VALUES (1, 'a'); INSERT INTO orders VALUES (1, 1, 5);")
    role = f"{pg_target.name}_reader"
    with pg_target.connect() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total int)")
        conn.execute(f'GRANT SELECT ON orders TO "{role}"')
    (tmp_path / "map.yaml").write_text("tables:\n  - {source: customers, target: clients}\n  - {source: orders}\n")
    url = pg_target.url.replace(f"{pg_target.user}@", f"{role}@", 1)
    config = write_config(f"""\
        backends:
          src: {{kind: postgres, url: "{pg_database.url}"}}
          dst: {{kind: postgres, url: "{url}"}}
        """)
    try:
        args = ("--from", "src", "--to", "dst", "--map", tmp_path / "map.yaml", "--on-error", "skip")
        plan = cli("-c", config, "migrate", "data", "plan", *args)
        run = cli("-c", config, "migrate", "data", "run", *args)
        assert plan.exit_code == run.exit_code == 4, (plan.stderr, run.stderr)
        assert "error: " in run.stderr and "no INSERT privilege on orders" in run.stderr
        assert _lines(run.stderr) == _lines(plan.stderr) and "--resume" not in run.stderr
        assert _tables(pg_target) == {"orders"}  # neither the state table nor clients
    finally:
        with pg_target.connect() as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_numeric_rounding_and_overflow_are_rejected_alike_by_plan_and_run(cli, moves, tmp_path, pg_database):
    with closing(sqlite3.connect(tmp_path / "src.db")) as source, source:
        source.executescript("CREATE TABLE prices (id INTEGER PRIMARY KEY, amount NUMERIC(5,2));"
                             "INSERT INTO prices VALUES (1, 1.25), (2, 1.2345), (3, 12345.5), (4, 999.99), (5, '7'),"
                             " (6, NULL);")
    config = moves
    result, plan = run_json(cli, config, "plan", "--from", "lite", "--to", "pg", "--table", "prices")
    assert result.exit_code == 1  # rows would be rejected under --on-error stop
    assert "(reject_samples in the JSON name them)" in result.stderr  # no samples are printed above it
    (prices,) = plan["items"]
    reasons = {sample["key"]: (sample["column"], sample["reason"]) for sample in prices["reject_samples"]}
    assert reasons == {"2": ("amount", "1.2345 would be rounded to 1.23 by numeric(5,2)"),
                       "3": ("amount", "12345.5 overflows numeric(5,2), which holds less than 10^3")}
    amount = next(column for column in prices["columns"] if column["name"] == "amount")
    key = next(column for column in prices["columns"] if column["name"] == "id")  # INTEGER PRIMARY KEY
    assert key["target_type"] == "bigint" and key["note"].startswith("identity: values kept")
    assert amount["losses"] == {"rounded": 1, "overflow": 1}
    assert amount["note"].endswith("2 rejected (1 would be rounded, 1 overflow)")
    stop = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "prices")
    assert stop.exit_code == 1
    assert "error: prices: row id 2 column amount: 1.2345 would be rounded to 1.23 by numeric(5,2) (2 rejected " \
           "row(s)" in stop.stderr
    result, report = run_json(cli, config, "run", "--from", "lite", "--to", "pg", "--table", "prices", "--resume",
                              "--on-error", "skip", "--rejects", tmp_path / "rejects.jsonl")
    assert result.exit_code == 0, result.stderr
    assert report["items"][0]["rows"] == 4 and report["items"][0]["rejected"] == 2 and report["verified"] is True
    with pg_database.connect() as conn:
        assert [str(row[0]) for row in conn.execute("SELECT amount FROM prices ORDER BY id")] == \
            ["1.25", "999.99", "7.00", "None"]


FOREIGN_KEYS_SQL = """
SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.contype = 'f'
ORDER BY 1
"""


def test_a_foreign_key_follows_its_renamed_table_from_sqlite(cli, moves, pg_database, tmp_path):
    (tmp_path / "map.yaml").write_text("tables:\n  - {source: authors, target: writers, renames: {id: writer_id}}\n"
                                       "  - {source: books}\n")
    result, plan = run_json(cli, moves, "plan", "--from", "lite", "--to", "pg", "--map", tmp_path / "map.yaml")
    assert result.exit_code == 0 and all(item["problems"] == [] for item in plan["items"]), plan
    result, report = run_json(cli, moves, "run", "--from", "lite", "--to", "pg", "--map", tmp_path / "map.yaml")
    assert result.exit_code == 0 and report["verified"] is True, result.stderr
    with pg_database.connect() as conn:
        assert conn.execute(FOREIGN_KEYS_SQL).fetchall() == [
            ("books", "FOREIGN KEY (author_id) REFERENCES writers(writer_id)")]


def test_a_foreign_key_follows_its_renamed_table_from_postgres_and_one_left_behind_is_said(
        cli, tmp_path, write_config, pg_database, pg_target):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text);"
                     "CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers (id) "
                     "ON DELETE CASCADE, total int);"
                     "INSERT INTO customers VALUES (1, 'a'), (2, 'b'); INSERT INTO orders VALUES (1, 1, 5), (2, 2, 7);")
    (tmp_path / "map.yaml").write_text("tables:\n  - {source: customers, target: clients}\n  - {source: orders}\n")
    config = write_config(f"""\
        backends:
          src: {{kind: postgres, url: "{pg_database.url}"}}
          dst: {{kind: postgres, url: "{pg_target.url}"}}
        """)
    result, report = run_json(cli, config, "run", "--from", "src", "--to", "dst", "--map", tmp_path / "map.yaml")
    assert result.exit_code == 0 and report["verified"] is True, result.stderr
    with pg_target.connect() as conn:
        assert conn.execute(FOREIGN_KEYS_SQL).fetchall() == [
            ("orders", "FOREIGN KEY (customer_id) REFERENCES clients(id) ON DELETE CASCADE")]
    (tmp_path / "alone.yaml").write_text("tables:\n  - {source: orders, target: orders2}\n")
    result, plan = run_json(cli, config, "plan", "--from", "src", "--to", "dst", "--map", tmp_path / "alone.yaml")
    assert plan["items"][0]["problems"] == ["foreign key (customer_id) → customers not moved: customers is not "
                                            "moved with it"]


def test_tables_are_chosen_by_glob_as_a_selective_backup_does_and_other_selectors_are_refused(cli, moves):
    result, plan = run_json(cli, moves, "plan", "--from", "lite", "--to", "pg", "--table", "b*", "--table", "a*",
                            "--table", "n*", "--exclude-table", "no?es")
    assert result.exit_code == 0, result.stderr
    assert [item["source"] for item in plan["items"]] == ["books", "authors"]  # in the order asked
    none = cli("-c", moves, "migrate", "data", "plan", "--from", "lite", "--to", "pg", "--table", "z*")
    assert none.exit_code == 2 and "has no table 'z*'" in none.stderr
    keys = cli("-c", moves, "migrate", "data", "plan", "--from", "lite", "--to", "pg", "--pattern", "x*")
    assert keys.exit_code == 2
    assert "--pattern does not apply to a data move between SQL backends; it selects with --table, " \
           "--exclude-table" in keys.stderr


def _schemas(pg) -> set[str]:
    with pg.connect() as conn:
        return {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                                               "AND nspname <> 'information_schema'")}


def test_a_missing_target_schema_stops_plan_and_run_before_anything_is_written(cli, moves, pg_database, tmp_path):
    (tmp_path / "map.yaml").write_text("tables:\n  - {source: notes, target: archive.notes}\n")
    for command in (["plan"], ["run"]):
        result = cli("-c", moves, "migrate", "data", *command, "--from", "lite", "--to", "pg",
                     "--map", tmp_path / "map.yaml", "--table", "notes")
        assert result.exit_code == 5, result.stderr
        assert result.stderr.splitlines() == [
            f"error: backend 'pg' (postgres {pg_database.url}) has no schema archive, "
            "where the move creates archive.notes; a run creates tables, not schemas",
            "Try: CREATE SCHEMA archive; on the target, or a --map FILE naming a table in an existing schema"], \
            result.stderr
        assert _tables(pg_database) == set()  # no state table either


def test_a_postgres_source_dumped_whole_brings_its_schemas_and_plan_says_so(cli, write_config, pg_database,
                                                                           pg_target):
    with pg_database.connect() as conn:
        conn.execute("CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, total int);"
                     "INSERT INTO sales.orders VALUES (1, 5)")
    config = write_config(f"""\
        backends:
          src: {{kind: postgres, url: "{pg_database.url}"}}
          dst: {{kind: postgres, url: "{pg_target.url}"}}
        """)
    result, plan = run_json(cli, config, "plan", "--from", "src", "--to", "dst")
    assert result.exit_code == 0, result.stderr
    assert "schema sales is created by the run (pg_dump's pre-data)" in plan["items"][0]["problems"]
    some = cli("-c", config, "migrate", "data", "plan", "--from", "src", "--to", "dst", "--table", "sales.*")
    assert some.exit_code == 5 and "has no schema sales" in some.stderr, some.stderr  # pg_dump --table has none
    result, report = run_json(cli, config, "run", "--from", "src", "--to", "dst")
    assert result.exit_code == 0 and report["verified"] is True, result.stderr
    assert "sales" in _schemas(pg_target)


def test_plan_says_another_run_holds_the_target(cli, moves, pg_database):
    with pg_database.connect() as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('storagectl_data_migration'))")
        for command in (["plan"], ["run", "--dry-run"], ["run"]):
            result = cli("-c", moves, "migrate", "data", *command, "--from", "lite", "--to", "pg")
            assert result.exit_code == 7, (command, result.stderr)
            assert f"error: backend 'pg' (postgres {pg_database.url}): another migrate data run is writing into " \
                   "this database (server process " in result.stderr, result.stderr
    assert _tables(pg_database) == set()
    result = cli("-c", moves, "migrate", "data", "plan", "--from", "lite", "--to", "pg")
    assert result.exit_code == 0, result.stderr  # released: no blocker


def test_a_schema_pg_dump_would_create_that_the_target_has_stops_plan_and_run(cli, write_config, pg_database,
                                                                              pg_target):
    with pg_database.connect() as conn:
        conn.execute("CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, total int);"
                     "INSERT INTO sales.orders VALUES (1, 5)")
    with pg_target.connect() as conn:
        conn.execute("CREATE SCHEMA sales")
    config = write_config(f"""\
        backends:
          src: {{kind: postgres, url: "{pg_database.url}"}}
          dst: {{kind: postgres, url: "{pg_target.url}"}}
        """)
    for command in (["plan"], ["run"]):
        result = cli("-c", config, "migrate", "data", *command, "--from", "src", "--to", "dst")
        assert result.exit_code == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"error: backend 'dst' (postgres {pg_target.url}) has schema sales already, which pg_dump's pre-data "
            "of the whole source database creates (and fails on)",
            "Try: --table sales.* to move its tables into the existing schema, or drop it on the target"]
        assert _tables(pg_target) == set()
    result, report = run_json(cli, config, "run", "--from", "src", "--to", "dst", "--table", "sales.*")
    assert result.exit_code == 0 and report["verified"] is True, result.stderr
