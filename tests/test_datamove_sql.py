"""`storagectl migrate data` SQLite → PostgreSQL: mapping, profiling, rejects, resume and proof, against
real SQLite files and the local PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.conftest import lite_and_pg_config
from tests.fakes.servers import PostgresAuthRejectingServer

ROWS = 120  # books; with --batch-rows 50: chunks of ids < 51, < 101, the rest


def make_source(path: Path, extra_sql: str = "") -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, active BOOLEAN, born DATE);
        CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors(id), title VARCHAR(80),
                            price REAL, cover BLOB, published DATETIME, stock INTEGER);
        CREATE INDEX books_by_author ON books (author_id);
        CREATE TABLE notes (body TEXT, weight REAL);
    """)
    conn.executemany("INSERT INTO authors VALUES (?, ?, ?, ?)",
                     [(i, f"author {i}", [0, 1, "t", "f"][i % 4], f"19{50 + i}-01-0{1 + i % 9}") for i in range(1, 11)])
    published = [1_700_000_000, "2024-01-02 03:04:05", 2_460_000.5, "2024-05-06T07:08:09.123456Z"]
    conn.executemany("INSERT INTO books VALUES (?, ?, ?, ?, ?, ?, ?)", [
        (i, 1 + i % 10, f"title {i} \t é\n\\", i * 0.1, bytes([i % 256, 0, 255]), published[i % 4], i)
        for i in range(1, ROWS + 1)])
    conn.executemany("INSERT INTO notes VALUES (?, ?)", [(f"note {i}", i / 3) for i in range(25)])
    conn.executescript(extra_sql)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def moves(tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db")
    return lite_and_pg_config(write_config, pg_database)


def run_json(cli, config, *args):
    result = cli("-c", config, "-o", "json", "migrate", "data", *args)
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def test_sqlite_to_postgres_round_trip_is_proven_equal(cli, moves, pg_database):
    result, report = run_json(cli, moves, "run", "--from", "lite", "--to", "pg", "--batch-rows", "50")
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    books = next(item for item in report["items"] if item["source"] == "books")
    assert books["rows"] == ROWS and books["chunks"] == 3 and books["status"] == "copied"
    with pg_database.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        row = conn.execute("SELECT title, price, cover, published, stock FROM books WHERE id = 3").fetchone()
        assert row == ("title 3 \t é\n\\", 0.30000000000000004, bytes([3, 0, 255]),
                       datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), 3)
        assert conn.execute("SELECT published FROM books WHERE id = 2").fetchone()[0] == \
            datetime(2023, 2, 25, tzinfo=UTC)  # Julian day 2460000.5 (Julian days begin at noon)
        assert conn.execute("SELECT published FROM books WHERE id = 4").fetchone()[0] == \
            datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # Unix seconds 1700000000
        assert conn.execute("SELECT published FROM books WHERE id = 5").fetchone()[0] == \
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert conn.execute("SELECT active, born FROM authors WHERE id = 3").fetchone() == (False, date(1953, 1, 4))
        assert [row[0] for row in conn.execute("SELECT active FROM authors WHERE id <= 5 ORDER BY id")] == \
            [True, True, False, False, True]  # 1, 't', 'f', 0, 1
        # INTEGER PRIMARY KEY: an identity that kept the values and continues after the largest
        assert conn.execute("INSERT INTO books (title) VALUES ('new') RETURNING id").fetchone()[0] == ROWS + 1
        assert {name for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'books'")} \
            == {"books_pkey", "books_by_author"}
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0] == 1
        conn.execute("DELETE FROM books WHERE id = %s", [ROWS + 1])
    again, checked = run_json(cli, moves, "verify", "--from", "lite", "--to", "pg")
    assert again.exit_code == 0 and checked["verified"] is True
    assert {item["source"]: item["verified_by"] for item in checked["items"]} == dict.fromkeys(
        ["authors", "books", "notes"], "canonical")
    # the run checked the target against the lines its copy sent; books' dates spelled otherwise than
    # PostgreSQL prints them (Unix seconds, a Julian day, a 'T' and a zone) by the canonical checksums
    assert {item["source"]: item["verified_by"] for item in report["items"]} == {
        "authors": "copy sums", "books": "canonical", "notes": "copy sums"}


def test_a_primary_key_whose_usual_name_is_taken_gets_another(cli, tmp_path, write_config, pg_database):
    """A table called books_pkey beside books, and a table whose 63-byte name leaves no room for the
    suffix: each primary key is named by the server (books_pkey1, a shortened name), not refused as a
    relation that already exists halfway through the run."""
    long_name = "t" * 63
    make_source(tmp_path / "src.db", "CREATE TABLE books_pkey (x TEXT); INSERT INTO books_pkey VALUES ('z');"
                                     f"CREATE TABLE {long_name} (id INTEGER PRIMARY KEY, v TEXT);"
                                     f"INSERT INTO {long_name} VALUES (1, 'a');")
    result, report = run_json(cli, lite_and_pg_config(write_config, pg_database), "run", "--from", "lite",
                              "--to", "pg")
    assert result.exit_code == 0 and report["verified"] is True, result.stderr
    with pg_database.connect() as conn:
        keys = dict(conn.execute("SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'p'"))
    assert keys["books"] == "books_pkey1" and keys[long_name] == "t" * 58 + "_pkey"


def test_verify_names_the_first_differing_chunk_and_the_row_keys(cli, moves, pg_database):
    assert run_json(cli, moves, "run", "--from", "lite", "--to", "pg", "--batch-rows", "50")[0].exit_code == 0
    with pg_database.connect() as conn:
        conn.execute("UPDATE books SET published = published + interval '1 microsecond' WHERE id = 77")
        conn.execute("DELETE FROM books WHERE id = 110")
    result, report = run_json(cli, moves, "verify", "--from", "lite", "--to", "pg", "--show-diffs")
    assert result.exit_code == 6
    books = next(item for item in report["items"] if item["source"] == "books")
    assert books["status"] == "mismatch" and books["first_bad_chunk"] == "2 (51 ≤ id < 101)"
    assert books["diff_keys"] == ["77"]
    assert "first differing chunk 2 (51 ≤ id < 101)" in result.stderr
    assert "--show-diffs" not in result.stderr  # it was given: the hint does not ask for it again


def test_show_diffs_of_a_keyless_table_names_only_the_rows_left_unmatched(cli, moves, pg_database):
    """`notes` has no key: rows are paired by content, so one changed row shows as one row on each side,
    not as every row (their positions, rowid and ctid, never match)."""
    assert run_json(cli, moves, "run", "--from", "lite", "--to", "pg")[0].exit_code == 0
    with pg_database.connect() as conn:
        conn.execute("UPDATE notes SET weight = 100 WHERE body = 'note 7'")
    result, report = run_json(cli, moves, "verify", "--from", "lite", "--to", "pg", "--table", "notes",
                              "--show-diffs")
    assert result.exit_code == 6
    notes = report["items"][0]
    assert notes["status"] == "mismatch"
    assert [key.split()[0] for key in notes["diff_keys"]] == ["source", "target"]
    assert notes["diff_keys"][0] == "source 8"  # rowid of 'note 7'


BAD_ROWS = """
    CREATE TABLE events (id INTEGER PRIMARY KEY, happened DATETIME, label TEXT, ok BOOLEAN);
    INSERT INTO events VALUES (1, '2024-01-01 00:00:00', 'fine', 1);
    INSERT INTO events VALUES (2, '0', 'junk date', 0);
    INSERT INTO events VALUES (3, '2024-01-03', 'nul' || char(0) || 'inside', 't');
    INSERT INTO events VALUES (4, '2024-01-04', CAST(x'66ff6f' AS TEXT), 'f');
    INSERT INTO events VALUES (5, '2024-01-05', 'maybe', 'maybe');
    INSERT INTO events VALUES (6, 1700000000, 'fine too', 'true');
"""


@pytest.fixture
def bad_moves(tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db", BAD_ROWS)
    return lite_and_pg_config(write_config, pg_database)


def test_plan_profiles_real_values_and_counts_rejected_rows(cli, bad_moves):
    result, plan = run_json(cli, bad_moves, "plan", "--from", "lite", "--to", "pg", "--table", "events")
    assert result.exit_code == 1  # rows would be rejected under --on-error stop
    assert "error: 4 row(s) would be rejected, and --on-error stop (the default) would stop the run" in result.stderr
    assert "Try: --on-error skip" in result.stderr
    (events,) = plan["items"]
    assert events["rejected_rows"] == 4
    reasons = {sample["key"]: (sample["column"], sample["reason"]) for sample in events["reject_samples"]}
    assert reasons["2"] == ("happened", "junk date: 0")  # DATETIME's numeric affinity stored '0' as 0
    assert reasons["3"][0] == "label" and reasons["3"][1].startswith("NUL character")
    assert reasons["4"][0] == "label" and reasons["4"][1].startswith("invalid UTF-8")
    assert reasons["5"] == ("ok", "not a boolean: 'maybe'")
    notes = {column["name"]: column["note"] for column in events["columns"]}
    assert "dates: ISO text 4, junk 1, Unix INTEGER 1; 1 rejected" in notes["happened"]
    assert "booleans as " in notes["ok"] and "1 with NUL" in notes["label"]
    assert cli("-c", bad_moves, "migrate", "data", "plan", "--from", "lite", "--to", "pg",
               "--on-error", "skip").exit_code == 0


def test_on_error_stop_names_the_row_and_commits_nothing_of_its_chunk(cli, bad_moves, pg_database):
    result = cli("-c", bad_moves, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "events",
                 "--batch-rows", "3")
    assert result.exit_code == 1
    # the first chunk holds rows 1-3: two of them rejected
    assert "error: events: row id 2 column happened: junk date: 0 (2 rejected row(s) in this chunk; nothing of " \
           "it was committed)" in result.stderr
    assert "Try: the same command with --resume --on-error skip" in result.stderr
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM storagectl_data_migration WHERE chunk >= 0").fetchone()[0] == 0
    skip = cli("-c", bad_moves, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "events",
               "--batch-rows", "3", "--resume", "--on-error", "skip")  # the hint, followed literally
    assert skip.exit_code == 0, skip.stderr


@pytest.mark.parametrize("verify", ["--verify", "--no-verify"])  # --no-verify: text as bytes, never decoded
def test_on_error_skip_writes_each_rejected_row_with_its_reason(cli, bad_moves, pg_database, tmp_path, verify):
    rejects = tmp_path / "rejects.jsonl"
    result, report = run_json(cli, bad_moves, "run", "--from", "lite", "--to", "pg", "--table", "events",
                              "--on-error", "skip", "--rejects", rejects, verify)
    assert result.exit_code == 0, result.stderr
    (events,) = report["items"]
    assert events["rows"] == 2 and events["rejected"] == 4
    assert report["verified"] is (True if verify == "--verify" else None)
    assert report["rejects_path"] == str(rejects)
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(line["key"], line["column"]) for line in lines] == [(2, "happened"), (3, "label"), (4, "label"),
                                                                 (5, "ok")]
    assert lines[2]["values"][2] == "f\ufffdo"  # the invalid byte shown as U+FFFD
    with pg_database.connect() as conn:
        assert [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")] == [1, 6]
    # a later verify reports the chunk that lost rows (the invalid UTF-8 one among them), not a crash
    check, checked = run_json(cli, bad_moves, "verify", "--from", "lite", "--to", "pg", "--table", "events")
    assert check.exit_code == 6, check.stderr
    assert checked["items"][0]["status"] == "mismatch" and "internal error" not in check.stderr


def test_an_unwritable_rejects_file_is_refused_before_yes_empties_the_target(cli, bad_moves, pg_database, tmp_path):
    first = cli("-c", bad_moves, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "events",
                "--on-error", "skip", "--rejects", tmp_path / "first.jsonl")
    assert first.exit_code == 0, first.stderr
    missing = tmp_path / "no-such-dir" / "rejects.jsonl"
    again = cli("-c", bad_moves, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "events",
                "--on-error", "skip", "--rejects", missing, "--yes")
    assert again.exit_code == 2
    assert f"error: cannot write the rejects file {missing}: its directory {missing.parent} does not exist" \
        in again.stderr
    with pg_database.connect() as conn:  # --yes emptied nothing
        assert [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")] == [1, 6]


def test_a_value_the_server_refuses_is_found_row_by_row(cli, tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db", "CREATE TABLE small (id INTEGER PRIMARY KEY, n TINYINT);"
                                     "INSERT INTO small VALUES (1, 5), (2, 70000), (3, 7);")
    config = lite_and_pg_config(write_config, pg_database)
    stop = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "small")
    assert stop.exit_code == 1 and "error: small: row id 2: value \"70000\" is out of range for type smallint" \
        in stop.stderr
    result, report = run_json(cli, config, "run", "--from", "lite", "--to", "pg", "--table", "small", "--resume",
                              "--on-error", "skip")
    assert result.exit_code == 0 and report["items"][0]["rejected"] == 1 and report["items"][0]["rows"] == 2


def test_existing_target_with_other_columns_is_refused_before_any_row_moves(cli, moves, pg_database):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE notes (body text, weight text, extra int)")
    result = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == ("error: target table notes has other columns than the move "
                                             "(not in the source extra)")
    with pg_database.connect() as conn:
        assert conn.execute("SELECT to_regclass('books')").fetchone()[0] is None  # nothing created, nothing moved
        conn.execute("ALTER TABLE notes DROP COLUMN extra")
    wrong_type = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg")
    assert "error: target table notes: column weight is text, the move needs double precision" in wrong_type.stderr


def test_existing_matching_target_is_loaded_and_a_non_empty_one_needs_yes(cli, moves, pg_database):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE notes (body varchar(20), weight float8)")
        conn.execute("INSERT INTO notes VALUES ('old', 1)")
    refused = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--table", "notes")
    assert refused.exit_code == 2 and "error: target table notes is not empty" in refused.stderr
    result, report = run_json(cli, moves, "run", "--from", "lite", "--to", "pg", "--table", "notes", "--yes")
    assert result.exit_code == 0 and report["verified"] is True and report["items"][0]["rows"] == 25


def test_an_interrupted_run_needs_resume(cli, moves, pg_database):
    from storagectl.datamove.sql import state

    with pg_database.connect() as conn:
        conn.execute(state.CREATE_SQL)
        conn.execute("CREATE TABLE notes (body text, weight double precision)")
        state.start(conn, "%s", "notes", "notes", [])
    result = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg")
    assert result.exit_code == 2
    assert "error: an earlier run into notes stopped after 0 of 1 chunks" in result.stderr
    assert "--resume" in result.stderr


def _request(config_path: Path, **options):
    from storagectl.config import load_config
    from storagectl.datamove.api import open_request

    return open_request(load_config(config_path), "lite", "pg", **options)


def test_connection_lost_mid_chunk_rolls_it_back_and_resume_finishes(moves, pg_database):
    from storagectl.datamove import api
    from storagectl.errors import BackendUnavailable

    advances = []

    def kill_target_sessions(event):
        if event.stage == "advance" and event.object.startswith("books"):
            advances.append(event)
            if len(advances) == 1:
                with pg_database.connect() as admin:
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")

    with pytest.raises(BackendUnavailable) as failed:
        api.run(_request(moves, batch_rows=50, selection=_tables("books")), kill_target_sessions)
    assert "books chunk 2 of 3 failed" in failed.value.message and "the chunk was rolled back" in failed.value.message
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM books").fetchone()[0] == 50  # chunk 1 only
    result = api.run(_request(moves, batch_rows=50, resume=True, selection=_tables("books")))
    assert result.verified is True and result.items[0].status == "resumed" and result.items[0].rows == ROWS


def test_a_source_changed_during_the_run_is_reported(moves, pg_database, tmp_path):
    from storagectl.datamove import api
    from storagectl.errors import IntegrityError

    def write_to_source(event):
        if event.stage == "advance" and event.object.startswith("books"):
            with sqlite3.connect(tmp_path / "src.db") as conn:
                conn.execute("DELETE FROM books WHERE id = 10")

    with pytest.raises(IntegrityError) as drift:
        api.run(_request(moves, batch_rows=50, selection=_tables("books")), write_to_source)
    assert drift.value.message == "books changed during the run: chunk 1 (id < 51) had 50 rows when copied, 49 now"


@pytest.mark.parametrize("verify", [True, False])
def test_a_source_error_in_a_reader_process_is_the_same_one_line_error(moves, pg_database, tmp_path, verify):
    """The SQLite reader process's exception comes back as itself (same class, same one-line error and
    exit code as if read in storagectl), its traceback kept as a note for --debug."""
    from storagectl.datamove import api
    from storagectl.errors import OperationFailed

    def drop_a_table_not_read_yet(event):  # the largest table first: books, then authors
        if event.stage == "advance" and event.object.startswith("books"):
            with sqlite3.connect(tmp_path / "src.db") as conn:
                conn.execute("DROP TABLE IF EXISTS authors")

    with pytest.raises(OperationFailed) as failed:
        api.run(_request(moves, batch_rows=50, selection=_tables("books", "authors"), verify=verify),
                drop_a_table_not_read_yet)
    assert failed.value.message == (f"backend 'lite' (sqlite {tmp_path / 'src.db'}): authors chunk 1 of 1 failed: "
                                    "no such table: authors; the chunk was rolled back")
    cause = failed.value.__cause__
    assert isinstance(cause, sqlite3.OperationalError)
    assert "in the SQLite reader process" in "".join(getattr(cause, "__notes__", []))


def _tables(*names):
    from storagectl.datamove.model import Selection

    return Selection(tables=names)


@pytest.mark.parametrize("side", ["from", "to"])
def test_wrong_password_on_either_side(cli, tmp_path, write_config, pg_database, side):
    make_source(tmp_path / "src.db")
    with PostgresAuthRejectingServer() as server:
        config = write_config(f"""\
            backends:
              lite: {{kind: sqlite, path: src.db}}
              pg: {{kind: postgres, url: "{pg_database.url}"}}
              locked: {{kind: postgres, host: 127.0.0.1, port: {server.port}, user: app, password: not-the-password,
                        sslmode: disable, retry: {{attempts: 1}}}}
            """)
        args = ["--from", "locked", "--to", "pg"] if side == "from" else ["--from", "lite", "--to", "locked"]
        result = cli("-c", config, "migrate", "data", "run", *args)
    assert result.exit_code == 4
    assert "authentication failed for user 'app'" in result.stderr.splitlines()[0]
    assert "not-the-password" not in result.stdout + result.stderr


def test_a_user_the_server_does_not_know_is_an_authentication_failure(cli, moves, write_config, pg_database):
    from urllib.parse import urlsplit

    parts = urlsplit(pg_database.url)
    url = parts._replace(netloc=f"no_such_role_here:secret-pw@{parts.hostname}:{parts.port or 5432}").geturl()
    config = write_config(f"""\
        backends:
          lite: {{kind: sqlite, path: src.db}}
          stranger: {{kind: postgres, url: "{url}", retry: {{attempts: 1}}}}
        """)
    result = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "stranger")
    assert result.exit_code == 4, result.stderr
    first_line = result.stderr.splitlines()[0]  # trust auth (the CI server): the role; else its password
    assert "role 'no_such_role_here' does not exist on the server" in first_line or \
        "authentication failed for user 'no_such_role_here'" in first_line
    assert "secret-pw" not in result.stdout + result.stderr


def test_unknown_backend_and_unsupported_pair(cli, moves, write_config, redis_db):
    unknown = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pgg")
    assert unknown.exit_code == 2
    assert unknown.stderr.splitlines()[0] == "error: unknown backend 'pgg' (did you mean pg?); configured: lite, pg"
    config = write_config(f"""\
        backends:
          lite: {{kind: sqlite, path: src.db}}
          cache: {{kind: redis, url: "{redis_db.url}"}}
        """, name="pair.yaml")
    pair = cli("-c", config, "migrate", "data", "plan", "--from", "lite", "--to", "cache")
    assert pair.exit_code == 2
    assert pair.stderr.splitlines()[0] == "error: cannot move data from a sqlite backend to a redis backend"
    assert "sqlite → postgres" in pair.stderr


def test_timescaledb_target_emits_create_hypertable():
    from storagectl.datamove.sql.pg_side import create_table_sql, finish_table_sql
    from storagectl.datamove.sql.spec import ColumnSpec, IndexSpec, TableSpec

    spec = TableSpec("metrics", '"metrics"', "metrics", '"metrics"',
                     [ColumnSpec("id", '"id"', "INTEGER", "bigint", "int"),
                      ColumnSpec("taken", '"taken"', "DATETIME", "timestamptz", "timestamptz", not_null=True)],
                     primary_key=("id",), identity="id", time_column="taken",
                     indexes=[IndexSpec("by_taken", ("taken",), unique=True), IndexSpec("by_id", ("id",), unique=True)])
    assert create_table_sql(spec, timescale=True) == [
        'CREATE TABLE "metrics" ("id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL, '
        '"taken" timestamptz NOT NULL)',
        "SELECT create_hypertable('\"metrics\"', 'taken')"]
    after = finish_table_sql(spec, timescale=True)
    assert not any("PRIMARY KEY" in statement or "by_id" in statement for statement in after)  # lacks the time column
    assert any('CREATE UNIQUE INDEX IF NOT EXISTS "by_taken"' in statement for statement in after)


def test_every_double_arrives_exactly(cli, tmp_path, write_config, pg_database):
    import random
    import struct

    rng = random.Random(5)
    doubles = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(3000)]
    doubles = [d for d in doubles if d == d] + [1e300, -1.3607840783466195e+278, 5e-324, 0.1, float("inf")]
    path = tmp_path / "floats.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE floats (id INTEGER PRIMARY KEY, x REAL)")
        conn.executemany("INSERT INTO floats (x) VALUES (?)", [(d,) for d in doubles])
    config = write_config(f"""\
        backends:
          lite: {{kind: sqlite, path: floats.db}}
          pg: {{kind: postgres, url: "{pg_database.url}"}}
        """)
    result = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg")
    assert result.exit_code == 0, result.stderr
    with pg_database.connect() as conn:
        assert [row[0] for row in conn.execute("SELECT x FROM floats ORDER BY id")] == doubles


def test_integers_spelled_otherwise_are_normalized_and_still_verify(cli, tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db", "CREATE TABLE counts (id INTEGER PRIMARY KEY, n BIGINT);"
                                     "INSERT INTO counts (n) VALUES (5), ('012'), (' 7 '), (2.0), (CAST('9' AS BLOB));")
    config = lite_and_pg_config(write_config, pg_database)
    result = cli("-c", config, "-o", "json", "migrate", "data", "run", "--from", "lite", "--to", "pg", "-t", "counts",
                 "--on-error", "skip", "--rejects", tmp_path / "rejects.jsonl")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verified"] is True
    with pg_database.connect() as conn:
        assert [row[0] for row in conn.execute("SELECT n FROM counts ORDER BY id")] == [5, 12, 7, 2]
    assert json.loads((tmp_path / "rejects.jsonl").read_text())["reason"] == "not an integer: b'9'"


def test_whole_reals_and_integer_text_cast_to_an_integer_verify_equal(cli, tmp_path, write_config, pg_database):
    """A REAL (`qty * 100`) or a text ('012', ' 7') cast to an integer goes as the integer it holds; the
    verify's SQL-built hashes of the source read it as the copy did, not as a difference."""
    with closing(sqlite3.connect(tmp_path / "src.db")) as conn:
        conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, qty REAL, code TEXT)")
        conn.executemany("INSERT INTO m VALUES (?, ?, ?)", [(1, 3.0, "012"), (2, -4.0, " 7"), (3, None, "5")])
        conn.commit()
    (tmp_path / "map.yaml").write_text("tables:\n  - source: m\n    columns:\n      - {name: id}\n"
                                       "      - {name: qty, cast: bigint}\n"
                                       "      - {name: cents, expression: qty * 100, cast: bigint}\n"
                                       "      - {name: code, cast: bigint}\n")
    config = lite_and_pg_config(write_config, pg_database)
    moved = ("--from", "lite", "--to", "pg", "--map", tmp_path / "map.yaml")
    assert cli("-c", config, "migrate", "data", "run", *moved).exit_code == 0
    with pg_database.connect() as conn:
        assert conn.execute("SELECT id, qty, cents, code FROM m ORDER BY id").fetchall() == [
            (1, 3, 300, 12), (2, -4, -400, 7), (3, None, None, 5)]
    result, report = run_json(cli, config, "verify", *moved)
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True


def test_a_dotted_target_name_is_a_postgresql_schema_and_table(cli, tmp_path, write_config, pg_database):
    """A SQLite table mapped to `sales.things` lands in schema sales, as a PostgreSQL source's would."""
    with closing(sqlite3.connect(tmp_path / "src.db")) as conn:
        conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO a VALUES (?, ?)", [(1, "x"), (2, "y")])
        conn.commit()
    (tmp_path / "map.yaml").write_text("tables:\n  - {source: a, target: sales.things}\n")
    with pg_database.connect() as conn:
        conn.execute("CREATE SCHEMA sales")
    config = lite_and_pg_config(write_config, pg_database)
    moved = ("--from", "lite", "--to", "pg", "--map", tmp_path / "map.yaml")
    result, report = run_json(cli, config, "run", *moved)
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    with pg_database.connect() as conn:
        assert conn.execute("SELECT id, v FROM sales.things ORDER BY id").fetchall() == [(1, "x"), (2, "y")]
        assert conn.execute("SELECT to_regclass('public.\"sales.things\"')").fetchone()[0] is None
    result, report = run_json(cli, config, "verify", *moved)
    assert result.exit_code == 0 and report["verified"] is True, result.stderr


def test_a_run_without_verify_records_no_checksums_and_a_resumed_run_verifies_from_both_sides(cli, moves,
                                                                                               pg_database):
    first = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--batch-rows", "50",
                "--no-verify")
    assert first.exit_code == 0
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(checksum) FROM storagectl_data_migration").fetchone()[0] == 0
        conn.execute("UPDATE storagectl_data_migration SET status = 'copying' WHERE chunk = -1 AND "
                     "target_table = 'books'")  # as if cut off before the keys were built
    result = cli("-c", moves, "-o", "json", "migrate", "data", "run", "--from", "lite", "--to", "pg",
                 "--batch-rows", "50", "--resume")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verified"] is True


def test_a_second_run_into_the_same_target_is_refused_while_one_writes(cli, moves, pg_database):
    import psycopg

    with psycopg.connect(pg_database.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('storagectl_data_migration'))")
        result = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg")
    assert result.exit_code == 7
    assert "another migrate data run is writing into this database" in result.stderr


def test_progress_reports_bytes_per_table_against_a_planned_total(moves):
    from storagectl.datamove import api

    events = []
    api.run(_request(moves, batch_rows=50), events.append)
    plan = events[0]
    assert plan.stage == "plan" and plan.objects == 3 and plan.total > 0
    books = [event for event in events if event.object == "books → books"]
    assert [event.stage for event in books] == ["start", "advance", "advance", "advance", "finish"]
    assert books[-1].done == books[0].total  # the estimate from the row count and the first rows' widths
    # after the copy, the keys and indexes and then the verify are phases of their own, counted in tables
    after = [(event.action, event.stage, event.total, event.done, event.unit) for event in events
             if event.action != plan.action]
    assert after == [("indexes", "plan", 3, 0, "tables"), ("indexes", "finish", None, 3, "bytes"),
                     ("verify", "plan", 3, 0, "tables"), ("verify", "finish", None, 3, "bytes")]


def test_yes_replaces_tables_linked_by_foreign_keys_loaded_in_any_order(cli, moves, pg_database):
    first = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--batch-rows", "50")
    assert first.exit_code == 0
    again = cli("-c", moves, "-o", "json", "migrate", "data", "run", "--from", "lite", "--to", "pg",
                "--batch-rows", "50", "--yes", "--parallel", "2")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["verified"] is True
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM books").fetchone()[0] == ROWS


def test_a_foreign_key_of_a_partitioned_target_table_is_added_validated(cli, moves, pg_database):
    """A target table made beforehand may be partitioned: PostgreSQL before 18 adds no NOT VALID
    foreign key to it, so its keys are added validated at once, as before NOT VALID was used."""
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE books (id bigint NOT NULL, author_id bigint, title varchar(80), price float8, "
                     "cover bytea, published timestamptz, stock bigint) PARTITION BY RANGE (id)")
        conn.execute("CREATE TABLE books_all PARTITION OF books FOR VALUES FROM (MINVALUE) TO (MAXVALUE)")
    result = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg")
    assert result.exit_code == 0, result.stderr
    with pg_database.connect() as conn:
        assert conn.execute("SELECT convalidated FROM pg_constraint WHERE contype = 'f' "
                            "AND conrelid = 'books'::regclass").fetchall() == [(True,)]
        assert conn.execute("SELECT count(*) FROM books").fetchone()[0] == ROWS


def test_an_integer_primary_key_that_is_not_the_rowid_alias_does_not_cut_the_chunks(tmp_path):
    """``INTEGER PRIMARY KEY DESC`` is no alias of the rowid: it may hold NULLs (and text). Pieces cut by
    it looped for ever over the NULLs (the step to a piece's end landed on NULL, so the same open range
    again); the rowid cuts them instead."""
    from storagectl.backends.sqlite import SQLiteBackend
    from storagectl.backends.sqlite_settings import SQLiteSettings
    from storagectl.datamove.sql.sqlite_side import SQLiteSide

    path = tmp_path / "keys.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE odd (x INTEGER PRIMARY KEY DESC, v TEXT)")
        conn.execute("CREATE TABLE alias (x INTEGER PRIMARY KEY, v TEXT)")
        conn.commit()
    side = SQLiteSide(SQLiteBackend("lite", SQLiteSettings(path=path)))
    with side.connect() as conn:
        odd, alias = side.describe(conn, "odd", None, "postgres"), side.describe(conn, "alias", None, "postgres")
    assert (odd.key, odd.key_column, odd.key_label, odd.primary_key) == ("rowid", None, "rowid", ("x",))
    assert (alias.key, alias.key_column) == ('"x"', "x")


def test_a_reader_process_imports_no_storagectl_from_the_working_directory(cli, moves, tmp_path, monkeypatch):
    """`python -m` puts the working directory first on sys.path: a reader started from a checkout of
    another version (or beside a sqlite3.py) imported that instead of storagectl's own modules."""
    shadow = tmp_path / "elsewhere" / "storagectl"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('the working directory\'s storagectl')\n")
    monkeypatch.chdir(shadow.parent)
    result, report = run_json(cli, moves, "run", "--from", "lite", "--to", "pg", "--batch-rows", "50")
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True


def test_sqlite_rows_hash_alike_from_sql_and_from_their_mapped_values(tmp_path):
    """The copy's hash (most of the row encoded by SQLite in SQL) and the careful path's (every value
    mapped, then encoded in Python, as PostgreSQL encodes its side) agree."""
    from storagectl.backends.sqlite import SQLiteBackend
    from storagectl.backends.sqlite_settings import SQLiteSettings
    from storagectl.datamove.sql import canonical
    from storagectl.datamove.sql.spec import chunks_from_bounds
    from storagectl.datamove.sql.sqlite_copy import SQLiteCopyReader
    from storagectl.datamove.sql.sqlite_side import SQLiteSide

    path = tmp_path / "mixed.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT, x REAL, at DATETIME, ok BOOLEAN, d DATE)")
        conn.executemany("INSERT INTO t (label, x, at, ok, d) VALUES (?, ?, ?, ?, ?)", [
            (f"l\t{i}\\", i / 7 - 3, f"2024-01-{1 + i % 28:02d} 0{i % 10}:00:00", i % 2, f"2020-02-{1 + i % 28:02d}")
            for i in range(300)] + [("x", -0.0, 1_700_000_000, "t", 19_000), (None, None, "2024-05-06T07:08:09Z",
                                                                                 None, 2_460_000.5)])
        conn.commit()
    side = SQLiteSide(SQLiteBackend("lite", SQLiteSettings(path=path)))
    with side.connect() as conn:
        spec = side.describe(conn, "t", None, "postgres")
        reader = SQLiteCopyReader(spec)
        row_hash = reader.row_hasher(1)
        in_sql = [row_hash(row) for row in conn.execute(f"SELECT NULL, {reader.hash_select}")]
        hasher = canonical.row_hasher(spec.kinds)
        converters = [canonical.converter(kind) for kind in spec.kinds]
        by_value = [hasher([None if v is None else f(v) for f, v in zip(converters, row, strict=True)])
                    for row in side.read(conn, spec, chunks_from_bounds([])[0])]
    assert in_sql == by_value



@pytest.mark.parametrize("columns", ["label TEXT, n INTEGER, ok BOOLEAN, b BLOB",  # every field in SQL
                                     "label TEXT, x REAL, at DATETIME, ok BOOLEAN"])  # some in Python
def test_sqlite_chunk_sums_by_key_range_agree_with_the_row_by_row_sums(tmp_path, columns):
    """The verify's source side (a range read per chunk, hashed a batch at a time) gives each chunk
    the rows, and the sum, that hashing every mapped value and placing each row by its key gives."""
    from storagectl.backends.sqlite import SQLiteBackend
    from storagectl.backends.sqlite_settings import SQLiteSettings
    from storagectl.datamove.sql.sqlite_copy import SQLiteCopyReader
    from storagectl.datamove.sql.sqlite_side import SQLiteSide

    path = tmp_path / "ranges.db"
    values = {"TEXT": lambda i: f"l\t{i}\\" if i % 5 else None, "INTEGER": lambda i: i * 3 - 500,
              "BOOLEAN": lambda i: ["t", 0, 1, None][i % 4], "BLOB": lambda i: bytes([i % 256, 0]),
              "REAL": lambda i: i / 7 - 3, "DATETIME": lambda i: [1_700_000_000, f"2024-01-{1 + i % 28:02d} 01:02:03",
                                                                "2024-05-06T07:08:09Z"][i % 3]}
    types = [column.split()[1] for column in columns.split(", ")]
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {columns})")
        conn.executemany(f"INSERT INTO t VALUES (?{', ?' * len(types)})",
                         [(i * 2, *(values[kind](i) for kind in types)) for i in range(1, 400)])
        conn.commit()
    side = SQLiteSide(SQLiteBackend("lite", SQLiteSettings(path=path)))
    with side.connect() as conn:
        spec = side.describe(conn, "t", None, "postgres")
        bounds = [100, 101, 250, 600, 2000]  # a chunk of one row, a chunk of none after the last key
        by_range = SQLiteCopyReader(spec).chunk_sums(conn, bounds)
        assert by_range == side._chunk_sums_in_python(conn, spec, bounds, as_target=False)
        assert by_range == side.chunk_sums(conn, spec, bounds, as_target=False)
        assert {index: rows for index, (rows, _sum) in by_range.items()} == {0: 49, 1: 1, 2: 74, 3: 175, 4: 100}

def test_verify_after_a_skipping_run_reports_unparseable_dates_as_a_mismatch(cli, tmp_path, write_config,
                                                                             pg_database):
    make_source(tmp_path / "src.db", "CREATE TABLE days (id INTEGER PRIMARY KEY, at DATETIME);"
                                     "INSERT INTO days VALUES (1, '2024-01-01'), (2, 'not a date'), "
                                     "(3, '2024-13-45'), (4, '2024-02-02');")
    config = lite_and_pg_config(write_config, pg_database)
    result, report = run_json(cli, config, "run", "--from", "lite", "--to", "pg", "--table", "days",
                              "--on-error", "skip", "--no-verify")
    assert result.exit_code == 0, result.stderr
    assert report["items"][0]["rejected"] == 2
    checked, verified = run_json(cli, config, "verify", "--from", "lite", "--to", "pg", "--table", "days")
    assert checked.exit_code == 6, checked.stderr
    assert verified["items"][0]["status"] == "mismatch"


def test_null_booleans_json_spacing_and_upper_case_uuids_verify_equal(cli, tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db", """
        CREATE TABLE things (id INTEGER PRIMARY KEY, ok BOOLEAN, doc JSON, ref UUID);
        INSERT INTO things VALUES (1, NULL, '[1,2]', 'C81E728D-9D4C-2F63-6F06-7F89CC14862C');
        INSERT INTO things VALUES (2, 1, '{"b":1,"aa":{"x":[true,null,1.50]},"b":2,"é":"t\\u0009"}', NULL);
        INSERT INTO things VALUES (3, 0, NULL, '{c81e728d-9d4c-2f63-6f06-7f89cc14862c}');
        INSERT INTO things VALUES (4, NULL, ' "text" ', 'c81e728d9d4c2f636f067f89cc14862c');
    """)
    config = lite_and_pg_config(write_config, pg_database)
    result, report = run_json(cli, config, "run", "--from", "lite", "--to", "pg", "--table", "things")
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    checked, _ = run_json(cli, config, "verify", "--from", "lite", "--to", "pg", "--table", "things")
    assert checked.exit_code == 0, checked.stderr
    with pg_database.connect() as conn:
        conn.execute("UPDATE things SET doc = '[1, 3]' WHERE id = 1")
    changed, report = run_json(cli, config, "verify", "--from", "lite", "--to", "pg", "--table", "things",
                               "--show-diffs")
    assert changed.exit_code == 6 and report["items"][0]["diff_keys"] == ["1"]


def test_plan_counts_integers_out_of_range_of_their_target_type(cli, tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db", "CREATE TABLE small (id INTEGER PRIMARY KEY, n SMALLINT, m MEDIUMINT);"
                                     "INSERT INTO small VALUES (1, 5, 1), (2, 70000, 2), (3, -32768, 3000000000);")
    config = lite_and_pg_config(write_config, pg_database)
    result, plan = run_json(cli, config, "plan", "--from", "lite", "--to", "pg", "--table", "small")
    assert result.exit_code == 1
    (small,) = plan["items"]
    assert small["rejected_rows"] == 2
    reasons = {sample["key"]: (sample["column"], sample["reason"]) for sample in small["reject_samples"]}
    assert reasons == {"2": ("n", 'value "70000" is out of range for type smallint'),
                       "3": ("m", 'value "3000000000" is out of range for type integer')}


def test_batch_rows_1_makes_a_chunk_per_row(cli, tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db", "CREATE TABLE seven (id INTEGER PRIMARY KEY, n INTEGER);"
                                     "INSERT INTO seven (n) VALUES (1), (2), (3), (4), (5), (6), (7);")
    config = write_config(f"""\
        backends:
          lite: {{kind: sqlite, path: src.db}}
          pg: {{kind: postgres, url: "{pg_database.url}"}}
          back: {{kind: sqlite, path: back.db, create_if_missing: true}}
        """)
    result, plan = run_json(cli, config, "plan", "--from", "lite", "--to", "pg", "--table", "seven",
                            "--batch-rows", "1")
    assert result.exit_code == 0 and plan["items"][0]["chunking"] == "7 chunks of ≤1 rows by id"
    result, report = run_json(cli, config, "run", "--from", "lite", "--to", "pg", "--table", "seven",
                              "--batch-rows", "1")
    assert result.exit_code == 0 and report["items"][0]["chunks"] == 7
    result, plan = run_json(cli, config, "plan", "--from", "pg", "--to", "back", "--table", "seven",
                            "--batch-rows", "1")
    assert result.exit_code == 0, result.stderr
    assert plan["items"][0]["chunking"] == "7 chunks of ≤1 rows by id"


def test_a_run_on_a_terminal_ends_saying_whether_the_copy_is_proven_equal(cli, moves):
    checked = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg")
    assert checked.exit_code == 0, checked.stderr
    assert checked.stderr.strip().splitlines()[-1] == "verified: the target equals the source (3 of 3 equal)"
    unchecked = cli("-c", moves, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--yes", "--no-verify")
    assert unchecked.exit_code == 0, unchecked.stderr
    assert "not verified (--no-verify)" in unchecked.stderr


def test_rows_breaking_a_foreign_key_are_named_by_the_plan_and_stop_the_run_with_the_key_not_valid(
        cli, tmp_path, write_config, pg_database):
    """SQLite does not enforce foreign keys unless asked: an orphan row is copied (the copy is
    faithful), then PostgreSQL's validation refuses it — a one-line error naming the row, not a crash."""
    make_source(tmp_path / "src.db", "INSERT INTO books (id, author_id, title) VALUES (500, 77, 'orphan');")
    config = lite_and_pg_config(write_config, pg_database)
    planned, plan = run_json(cli, config, "plan", "--from", "lite", "--to", "pg")
    books = next(item for item in plan["items"] if item["source"] == "books")
    assert books["problems"] == ["1 row(s) break the foreign key to authors (rowid 500): a run copies them, "
                                 "then stops with the key NOT VALID"]
    ran = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg")
    assert ran.exit_code == 1, ran.stderr
    assert "Traceback" not in ran.stderr and "internal error" not in ran.stderr
    assert 'the copied rows break foreign key "books_fk_1" (Key (author_id)=(77) is not present in table ' \
           '"authors")' in ran.stderr
    assert 'ALTER TABLE "books" VALIDATE CONSTRAINT "books_fk_1"' in ran.stderr
    with pg_database.connect() as conn:
        assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = 'books_fk_1'").fetchone() \
            == (False,)
    assert run_json(cli, config, "verify", "--from", "lite", "--to", "pg")[1]["verified"] is True


def test_a_table_and_its_public_dotted_name_are_one_postgresql_target(cli, tmp_path, write_config, pg_database):
    """`things` and `public.things` name one PostgreSQL table: two SQLite tables moved into them are
    refused before anything is written, as two moved into one name are."""
    with closing(sqlite3.connect(tmp_path / "src.db")) as conn:
        conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE other (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO things VALUES (?, ?)", [(1, "x")])
        conn.executemany("INSERT INTO other VALUES (?, ?)", [(2, "y")])
        conn.commit()
    (tmp_path / "map.yaml").write_text("tables:\n  - {source: things}\n  - {source: other, target: public.things}\n")
    result, report = run_json(cli, lite_and_pg_config(write_config, pg_database), "run", "--from", "lite",
                              "--to", "pg", "--map", tmp_path / "map.yaml")
    assert result.exit_code != 0 and "would all be moved into" in result.stderr, (result.stdout, result.stderr)
