"""SQLite → PostgreSQL COPY text built by SQLite: fields taken by each value's own storage class,
pieces aggregated in SQLite, chunk bounds stepped over the key, keys built in parallel — against
real SQLite files and the local PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from storagectl.datamove.sql import sqlite_copy
from storagectl.datamove.sql.spec import chunks_from_bounds
from storagectl.datamove.sql.sqlite_side import SQLiteSide


def _side(path: Path) -> SQLiteSide:
    from storagectl.backends.sqlite import SQLiteBackend
    from storagectl.backends.sqlite_settings import SQLiteSettings

    return SQLiteSide(SQLiteBackend("lite", SQLiteSettings(path=path)))


def _config(write_config, pg_database, name: str = "src.db") -> Path:
    return write_config(f"""\
        backends:
          lite: {{kind: sqlite, path: {name}}}
          pg: {{kind: postgres, url: "{pg_database.url}"}}
        """)


def _request(config_path: Path, **options):
    from storagectl.config import load_config
    from storagectl.datamove.api import open_request

    return open_request(load_config(config_path), "lite", "pg", **options)


@pytest.mark.parametrize("verify", [True, False])
def test_values_written_after_the_run_started_are_taken_by_their_own_storage_class(
        tmp_path, write_config, pg_database, monkeypatch, verify):
    """Rows of plain integers and REALs, then (once the run has looked at the table) text spelled
    ``\\N`` in both columns: COPY text's NULL unless escaped. Each such row is rejected, never
    loaded as NULL."""
    from storagectl.datamove import api

    path = tmp_path / "src.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE counts (id INTEGER PRIMARY KEY, n BIGINT, x REAL)")
        conn.executemany("INSERT INTO counts VALUES (?, ?, ?)", [(i, i * 10, i / 4) for i in range(1, 21)])
        conn.commit()
    row_bytes = SQLiteSide.row_bytes

    def then_written(self, conn, spec):
        with closing(sqlite3.connect(path)) as writer:
            writer.execute("INSERT INTO counts VALUES (21, '\\N', 1.5), (22, 7, '\\N')")
            writer.commit()
        return row_bytes(self, conn, spec)

    monkeypatch.setattr(SQLiteSide, "row_bytes", then_written)
    rejects = tmp_path / "rejects.jsonl"
    config = _config(write_config, pg_database)
    api.run(_request(config, on_error="skip", rejects_path=rejects, verify=verify), lambda event: None)
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert sorted((line["key"], line["column"], line["reason"]) for line in lines) == [
        (21, "n", "not an integer: '\\\\N'"), (22, "x", "not a number: '\\\\N'")]
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(*), count(n), count(x) FROM counts").fetchone() == (20, 20, 20)


def _pieces_by_row(reader: sqlite_copy.SQLiteCopyReader, conn, chunk) -> tuple[list[str], int]:
    class Tally:
        rows = 0
        hash_sum = 0

    tally = Tally()
    lines = [line for piece in reader.pieces(conn, chunk, tally) for line in piece.split("\n") if line]
    return lines, tally.rows


def test_pieces_aggregated_in_sqlite_hold_every_row_of_their_chunk_once(tmp_path, monkeypatch):
    """Sparse and negative keys, chunks holding a multiple of the piece size, one more, and none:
    the aggregated pieces (run --no-verify) hold the same lines as the rows read one by one."""
    path = tmp_path / "keys.db"
    keys = [-9_000_000_000, -5, -1, 0, 1, 2, 3, 10, 11, 12, 13, 14, 1_000, 2**40, 2**62]
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT, ok BOOLEAN, at DATETIME, x REAL)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                         [(k, f"row\t{k}\\", k % 2, f"2024-01-0{1 + abs(k) % 9} 10:00:00", k / 3) for k in keys])
        conn.commit()
    monkeypatch.setattr(sqlite_copy, "FETCH_ROWS", 3)
    monkeypatch.setattr(sqlite_copy, "PIECE_ROWS", 3)
    side = _side(path)
    with side.connect() as conn:
        spec = side.describe(conn, "t", None, "postgres")
        by_row = sqlite_copy.SQLiteCopyReader(spec, hashing=True)  # one row at a time (hashed)
        aggregated = sqlite_copy.SQLiteCopyReader(spec, hashing=False)
        for bounds in ([], [0, 14], [-5, 3, 2**40], [2**62 + 1]):
            for chunk in chunks_from_bounds(bounds):
                expected, expected_rows = _pieces_by_row(by_row, conn, chunk)
                found, rows = _pieces_by_row(aggregated, conn, chunk)
                assert sorted(found) == sorted(expected) and rows == expected_rows == len(expected)
        everything, _ = _pieces_by_row(aggregated, conn, chunks_from_bounds([])[0])
    assert len(everything) == len(keys) and "row\\t-5\\\\" in everything[1]


def test_a_reader_process_imports_sqlite_and_no_more_of_storagectl_than_it_runs():
    """The reader process of each --parallel worker (python -S) stays a bare interpreter with SQLite:
    under --no-verify none of storagectl's encodings, json, decimal or multiprocessing (27 MiB a
    reader when it imported them, 17 MiB without), nor socket.py, pickle.py, signal.py, typing or
    contextlib with the re and enum they bring (15 MiB without)."""
    code = ("import sys; import storagectl.datamove.sql.reader_child, storagectl.child_processes; "
            "print(' '.join(sorted(sys.modules)))")
    root = str(Path(__file__).resolve().parent.parent)
    found = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": root}).stdout.split()
    ours = {name for name in found if name.startswith("storagectl")}
    assert ours == {"storagectl", "storagectl.datamove", "storagectl.datamove.sql", "storagectl.child_processes",
                    "storagectl.datamove.sql.reader_child", "storagectl.datamove.sql.sqlite_pieces"}
    assert not {"json", "decimal", "multiprocessing", "dataclasses", "subprocess"} & set(found)
    assert not {"socket", "selectors", "pickle", "signal", "typing", "contextlib", "re", "enum"} & set(found)


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 4, 14, 15, 16])
def test_chunk_bounds_are_every_batch_rows_th_key(tmp_path, batch_rows):
    path = tmp_path / "keys.db"
    keys = [-9_000_000_000, -5, -1, 0, 1, 2, 3, 10, 11, 12, 13, 14, 1_000, 2**40, 2**62]
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE r (v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, 'x')", [(k,) for k in reversed(keys)])
        conn.executemany("INSERT INTO r (rowid, v) VALUES (?, 'x')", [(k,) for k in keys])
        conn.commit()
    side = _side(path)
    with side.connect() as conn:
        for table in ("t", "r"):
            spec = side.describe(conn, table, None, "postgres")
            assert side.bounds(conn, spec, batch_rows) == keys[batch_rows::batch_rows]


def _users_and_events(path: Path, orphan: bool = False) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript("""
            CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
            CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), kind TEXT);
            CREATE TABLE notes (event_id INTEGER REFERENCES events(id), body TEXT);
        """)
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}") for i in range(1, 51)])
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", [(i, 1 + i % 50, "k") for i in range(1, 301)])
        conn.executemany("INSERT INTO notes VALUES (?, ?)", [(1 + i % 300, "n") for i in range(100)])
        if orphan:  # SQLite checks no foreign key unless asked to
            conn.execute("INSERT INTO events VALUES (301, 99, 'orphan')")
        conn.commit()


def test_a_foreign_key_left_not_valid_by_an_interrupted_run_is_validated_by_the_resume(cli, tmp_path, write_config,
                                                                                       pg_database):
    """Keys are added NOT VALID, then validated side by side: a run stopped in between leaves one NOT
    VALID, which the resume must validate (not skip because it exists)."""
    _users_and_events(tmp_path / "src.db")
    config = _config(write_config, pg_database)
    run = ("-c", config, "-o", "json", "migrate", "data", "run", "--from", "lite", "--to", "pg", "--parallel", "2")
    assert cli(*run).exit_code == 0
    with pg_database.connect() as conn:
        validated = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"
        assert conn.execute(validated).fetchone()[0] == 2
        conn.execute("ALTER TABLE events DROP CONSTRAINT events_fk_1")
        conn.execute("ALTER TABLE events ADD CONSTRAINT events_fk_1 FOREIGN KEY (user_id) REFERENCES users (id) "
                     "NOT VALID")
        conn.execute("UPDATE storagectl_data_migration SET status = 'loaded' WHERE status = 'done'")
    resumed = cli(*run, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    with pg_database.connect() as conn:
        assert conn.execute("SELECT conname FROM pg_constraint WHERE contype = 'f' AND NOT convalidated").fetchall() \
            == []


def test_a_foreign_key_the_rows_break_stops_the_run_after_the_copy(cli, tmp_path, write_config, pg_database):
    _users_and_events(tmp_path / "src.db", orphan=True)
    config = _config(write_config, pg_database)
    result = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--parallel", "2")
    assert result.exit_code == 1, result.stderr
    assert 'the copied rows break foreign key "events_fk_1"' in result.stderr, result.stderr
    assert "internal error" not in result.stderr


def test_parallel_run_builds_every_key_index_identity_and_foreign_key(cli, tmp_path, write_config, pg_database):
    path = tmp_path / "src.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript("""
            CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT UNIQUE);
            CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), kind TEXT);
            CREATE INDEX events_by_user ON events (user_id);
            CREATE INDEX events_by_kind ON events (kind, user_id);
            CREATE TABLE tags (event_id INTEGER REFERENCES events(id), tag TEXT, PRIMARY KEY (event_id, tag));
        """)
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}") for i in range(1, 51)])
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", [(i, 1 + i % 50, "k") for i in range(1, 301)])
        conn.executemany("INSERT INTO tags VALUES (?, ?)", [(1 + i % 300, f"t{i}") for i in range(400)])
        conn.commit()
    config = _config(write_config, pg_database)
    result = cli("-c", config, "-o", "json", "migrate", "data", "run", "--from", "lite", "--to", "pg",
                 "--parallel", "2", "--batch-rows", "100")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verified"] is True
    with pg_database.connect() as conn:
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                                                  "AND tablename <> 'storagectl_data_migration'")}
        assert indexes == {"users_pkey", "events_pkey", "tags_pkey", "events_by_user", "events_by_kind",
                           "sqlite_autoindex_users_1"}
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0] == 2
        assert conn.execute("INSERT INTO events (user_id, kind) VALUES (1, 'new') RETURNING id").fetchone()[0] == 301


READERS_PROBE = """
import json, sys
from storagectl.datamove.sql import reader_process
from storagectl.cli.main import run

started, start = [], reader_process.ReaderProcess.__init__

def recording(self, *args):
    started.append("psycopg" in sys.modules)
    start(self, *args)

reader_process.ReaderProcess.__init__ = recording
code = run(sys.argv[1:])
print("\\n" + json.dumps({"code": code, "driver_loaded_at_start": started}))
"""


def test_a_run_starts_its_reader_processes_before_the_postgres_driver_loads(tmp_path, write_config, pg_database):
    """Until its exec a started reader shares storagectl's memory (vfork), and a sum of the process
    tree's RSS counts storagectl twice: the readers start while it is small. With more workers than
    chunks, the readers not needed are ended before the copy and the run copies as before."""
    with closing(sqlite3.connect(tmp_path / "src.db")) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(1, 101)])
        conn.commit()
    config = _config(write_config, pg_database)
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", READERS_PROBE, "-c", str(config), "-q", "migrate", "data", "run",
                           "--from", "lite", "--to", "pg", "--parallel", "3"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root})
    report = json.loads(done.stdout.rstrip().rsplit("\n", 1)[-1])
    assert report == {"code": 0, "driver_loaded_at_start": [False, False, False]}, done.stderr
    with pg_database.connect() as connection:
        assert connection.execute("SELECT count(*), sum(id) FROM items").fetchone() == (100, 5050)
