"""`storagectl migrate data` from SQLite to SQLite: a faithful copy, every value with its storage
class and bytes, and a verify that sees any changed byte, class or REAL."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

COLUMNS = ("id", "body", "n", "d", "b", "r", "v")


def make_source(path):
    """What SQLite stores but PostgreSQL would refuse: a NUL in a text, invalid UTF-8, 'abc' in an
    INTEGER, junk dates, 'maybe' in a BOOLEAN, 'nan' in a REAL, an integer too large (a REAL), an
    infinite REAL; ``v`` (no declared type) keeps 5 an integer and '5' a text."""
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, n INTEGER, d DATE, b BOOLEAN, "
                           "r REAL, v);")
        conn.execute("INSERT INTO t VALUES (1, ?, 5, '2024-01-01', 1, 1.5, 5)", ["a\x00b"])
        conn.execute("INSERT INTO t VALUES (2, CAST(x'ff00fe' AS TEXT), 'abc', 'junk', 'maybe', 'nan', '5')")
        conn.execute("INSERT INTO t VALUES (3, 'ok', 99999999999999999999, 0, 2, 1e400, x'00ff')")
        conn.commit()


def stored(path, table="t", columns=COLUMNS):
    """Every value's storage class, SQL literal, bytes and Python value (texts as their bytes)."""
    fields = ", ".join(f"typeof({c}), quote({c}), hex({c}), {c}" for c in columns)
    with closing(sqlite3.connect(path)) as conn:
        conn.text_factory = bytes
        return conn.execute(f"SELECT {fields} FROM {table} ORDER BY id").fetchall()


@pytest.fixture
def lite(tmp_path, write_config):
    make_source(tmp_path / "app.db")
    return write_config("backends:\n  app: {kind: sqlite, path: app.db}\n"
                        "  edge: {kind: sqlite, path: edge.db, create_if_missing: true}\n")


def migrate(cli, config, *args):
    result = cli("-c", config, "-o", "json", "migrate", "data", *args)
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def test_every_value_is_copied_as_stored_and_proven_equal(cli, lite, tmp_path):
    result, plan = migrate(cli, lite, "plan", "--from", "app", "--to", "edge")
    assert result.exit_code == 0, result.stderr
    assert plan["items"][0]["rejected_rows"] == 0
    result, report = migrate(cli, lite, "run", "--from", "app", "--to", "edge")  # --on-error stop
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    assert (report["items"][0]["rows"], report["items"][0]["rejected"]) == (3, 0)
    assert stored(tmp_path / "edge.db") == stored(tmp_path / "app.db")
    assert [row[0:2] for row in stored(tmp_path / "edge.db", columns=("body",))] == \
        [(b"text", b"'a'"), (b"text", b"'\xff'"), (b"text", b"'ok'")]  # quote() stops at the NUL; hex has it all
    result, report = migrate(cli, lite, "verify", "--from", "app", "--to", "edge")
    assert result.exit_code == 0, result.stderr
    assert report["items"][0]["status"] == "equal"


def test_plan_notes_the_columns_copied_as_stored(cli, lite):
    result = cli("-c", lite, "migrate", "data", "plan", "--from", "app", "--to", "edge")
    assert result.exit_code == 0, result.stderr
    assert "copied as stored; max length 2; 2 with NUL" in result.stdout
    assert "rejected" not in result.stdout.split("what the values hold")[1]


@pytest.mark.parametrize(("change", "key"), [
    ("UPDATE t SET body = ? WHERE id = 1", 1),  # a byte after the NUL
    ("UPDATE t SET body = CAST(x'ff00fd' AS TEXT) WHERE id = 2", 2),  # a byte of the invalid UTF-8
    ("UPDATE t SET v = '5' WHERE id = 1", 1),  # 5 the integer becomes '5' the text
    ("UPDATE t SET v = 5 WHERE id = 2", 2),  # and the other way
    ("UPDATE t SET r = 1.5000000000000002 WHERE id = 1", 1),  # the last bit of a REAL
    ("UPDATE t SET v = x'00fe' WHERE id = 3", 3),  # a byte of a BLOB
], ids=["nul-text", "invalid-utf8", "integer-to-text", "text-to-integer", "real", "blob"])
def test_verify_finds_a_changed_byte_storage_class_or_real(cli, lite, tmp_path, change, key):
    result, _ = migrate(cli, lite, "run", "--from", "app", "--to", "edge")
    assert result.exit_code == 0, result.stderr
    with closing(sqlite3.connect(tmp_path / "edge.db")) as conn:
        conn.execute(change, ["a\x00c"] if "?" in change else [])
        conn.commit()
    result, report = migrate(cli, lite, "verify", "--from", "app", "--to", "edge", "--show-diffs")
    assert result.exit_code != 0
    assert report["items"][0]["status"] == "mismatch"
    assert report["items"][0]["diff_keys"] == [str(key)]


def test_a_cast_in_a_map_still_converts_and_rejects(cli, lite, tmp_path):
    """``d`` cast to DATE is converted (junk dates rejected); the other columns go as stored."""
    (tmp_path / "map.yaml").write_text("tables:\n  - source: t\n    columns:\n      - {name: id}\n"
                                       "      - {name: body}\n      - {name: d, cast: DATE}\n")
    result, plan = migrate(cli, lite, "plan", "--from", "app", "--to", "edge", "--map", tmp_path / "map.yaml")
    assert result.exit_code == 1
    assert plan["items"][0]["rejected_rows"] == 2
    assert {sample["column"] for sample in plan["items"][0]["reject_samples"]} == {"d"}
    result, report = migrate(cli, lite, "run", "--from", "app", "--to", "edge", "--map", tmp_path / "map.yaml",
                             "--on-error", "skip", "--rejects", tmp_path / "rejects.jsonl")
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True and report["items"][0]["rejected"] == 2
    assert stored(tmp_path / "edge.db", columns=("id", "body", "d")) == \
        stored(tmp_path / "app.db", columns=("id", "body", "d"))[:1]


def test_an_existing_target_column_of_another_affinity_converts_that_column_alone(cli, lite, tmp_path):
    """VARCHAR and BIGINT store as TEXT and INTEGER do: copied as stored; JSON (NUMERIC affinity) would
    store some texts as numbers, so ``body`` is converted there and its NUL and invalid UTF-8 rejected."""
    with closing(sqlite3.connect(tmp_path / "edge.db")) as conn:
        conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, body VARCHAR(10), n BIGINT, d DATE, "
                           "b BOOLEAN, r DOUBLE, v); CREATE TABLE u (id INTEGER PRIMARY KEY, body JSON);")
    with closing(sqlite3.connect(tmp_path / "app.db")) as conn:
        conn.executescript("CREATE TABLE u (id INTEGER PRIMARY KEY, body TEXT);"
                           "INSERT INTO u SELECT id, body FROM t;")
    result, plan = migrate(cli, lite, "plan", "--from", "app", "--to", "edge")
    assert result.exit_code == 1
    assert {item["source"]: item["rejected_rows"] for item in plan["items"]} == {"t": 0, "u": 2}
    result, report = migrate(cli, lite, "run", "--from", "app", "--to", "edge", "--on-error", "skip",
                             "--rejects", tmp_path / "rejects.jsonl")
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    assert stored(tmp_path / "edge.db") == stored(tmp_path / "app.db")
    assert stored(tmp_path / "edge.db", "u", ("id", "body")) == stored(tmp_path / "app.db", "u", ("id", "body"))[2:]


def test_a_cast_to_integer_of_a_number_beyond_64_bits_is_a_rejected_row_not_a_stopped_run(cli, lite, tmp_path):
    """Row 3's ``n`` is 1e20, stored as a REAL: cast to INTEGER it fits no SQLite (or PostgreSQL) integer."""
    (tmp_path / "map.yaml").write_text("tables:\n  - source: t\n    columns:\n      - {name: id}\n"
                                       "      - {name: n, cast: INTEGER}\n")
    result, plan = migrate(cli, lite, "plan", "--from", "app", "--to", "edge", "--map", tmp_path / "map.yaml")
    assert result.exit_code == 1
    assert [(s["key"], s["column"], s["reason"]) for s in plan["items"][0]["reject_samples"]] == \
        [("2", "n", "not an integer: 'abc'"), ("3", "n", "integer out of 64-bit range: 1e+20")]
    result, report = migrate(cli, lite, "run", "--from", "app", "--to", "edge", "--map", tmp_path / "map.yaml",
                             "--on-error", "skip", "--rejects", tmp_path / "rejects.jsonl")
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True and report["items"][0]["rejected"] == 2
