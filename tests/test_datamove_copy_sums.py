"""The verify at the end of a SQLite → PostgreSQL run: the target's rows against the XXH64 sums of the
COPY lines the copy sent ("copy sums"), and the canonical checksums of both sides for a chunk whose
sums differ, which decide."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import lite_and_pg_config
from tests.test_datamove_kill import committed_chunks, start_run

ROWS, BATCH = 30, 10  # things: chunks of ids < 11, < 21, the rest
SECOND_CHUNK = "2 (11 ≤ id < 21)"


def make_source(path: Path, label=lambda i: f"label {i}\twith a tab\\") -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE things (id INTEGER PRIMARY KEY, n INTEGER, ok BOOLEAN, x REAL, label TEXT, "
                           "body BLOB, at DATETIME, day DATE, amount NUMERIC, stamp TIMESTAMP);"
                           "CREATE TABLE loose (body TEXT, x REAL);")
        conn.executemany("INSERT INTO things VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (i, i * 7, [0, 1, "t", "f"][i % 4], i / 7, label(i), bytes([i, 0, 255]),
             f"2024-01-{1 + i % 28:02d} 10:11:12", f"2023-02-{1 + i % 28:02d}", i * 1.5,
             f"2022-03-04 05:06:0{i % 10}") for i in range(1, ROWS + 1)])
        conn.executemany("INSERT INTO loose VALUES (?, ?)", [(f"loose {i}", i / 3) for i in range(25)])


@pytest.fixture
def config(tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db")
    return lite_and_pg_config(write_config, pg_database)


def run_json(cli, config, *args):
    result = cli("-c", config, "-o", "json", "migrate", "data", "run", "--from", "lite", "--to", "pg",
                 "--batch-rows", str(BATCH), *args)
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def by_table(report) -> dict[str, dict]:
    return {item["source"]: item for item in report["items"]}


def test_every_kind_copied_as_text_is_verified_by_the_lines_the_copy_sent(cli, config, pg_database):
    result, report = run_json(cli, config)
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    assert {name: item["verified_by"] for name, item in by_table(report).items()} == \
        {"things": "copy sums", "loose": "copy sums"}
    with pg_database.connect() as conn:  # a sum per chunk, recorded with it
        assert conn.execute("SELECT count(*) FROM storagectl_data_migration WHERE chunk >= 0 AND "
                            "detail::jsonb ? 'copy_xxh64'").fetchone()[0] == 3 + 3  # loose: by rowid
    again = cli("-c", config, "-o", "json", "migrate", "data", "verify", "--from", "lite", "--to", "pg")
    assert again.exit_code == 0 and {item["verified_by"] for item in json.loads(again.stdout)["items"]} == \
        {"canonical"}
    summary = cli("-c", config, "migrate", "data", "run", "--from", "lite", "--to", "pg", "--resume")
    assert summary.exit_code == 0 and "verified by" in summary.stdout and "copy sums" in summary.stdout


TAMPERED = {  # a value of each kind changed on the target in the second chunk (id 15)
    "int": "UPDATE things SET n = n + 1 WHERE id = 15",
    "bool": "UPDATE things SET ok = NOT ok WHERE id = 15",
    "float": "UPDATE things SET x = x + 1e-12 WHERE id = 15",
    "text": "UPDATE things SET label = label || ' ' WHERE id = 15",
    "bytes": "UPDATE things SET body = body || '\\x00'::bytea WHERE id = 15",
    "timestamptz": "UPDATE things SET at = at + interval '1 microsecond' WHERE id = 15",
    "date": "UPDATE things SET day = day + 1 WHERE id = 15",
    "numeric": "UPDATE things SET amount = amount + 0.001 WHERE id = 15",
    "timestamp": "UPDATE things SET stamp = stamp + interval '1 second' WHERE id = 15",
    "a row less": "DELETE FROM things WHERE id = 15",
    "a row more": "INSERT INTO things SELECT 1000 + id, n, ok, x, label, body, at, day, amount, stamp FROM things "
                  "WHERE id = 15",
}


@pytest.mark.parametrize("kind", list(TAMPERED))
def test_a_target_value_changed_after_the_copy_fails_its_copy_sums_and_is_a_mismatch(cli, config, pg_database,
                                                                                      kind):
    """``run --resume`` of a finished run verifies again from the recorded sums: the tampered chunk
    alone fails them, and the canonical checksums then report it."""
    assert run_json(cli, config)[0].exit_code == 0
    with pg_database.connect() as conn:
        conn.execute(TAMPERED[kind])
    result, report = run_json(cli, config, "--resume", "--show-diffs")
    assert result.exit_code == 6, result.stderr
    things = by_table(report)["things"]
    assert things["status"] == "mismatch" and things["verified_by"] == "copy sums; canonical for 1 of 3 chunks"
    assert things["first_bad_chunk"] == (SECOND_CHUNK if kind != "a row more" else "3 (id ≥ 21)")
    assert things["diff_keys"] == (["15"] if kind != "a row more" else ["1015"])
    assert by_table(report)["loose"]["verified_by"] == "copy sums"


def test_a_table_without_a_key_is_summed_whole_and_a_changed_value_is_a_mismatch(cli, config, pg_database):
    assert run_json(cli, config)[0].exit_code == 0
    with pg_database.connect() as conn:
        conn.execute("UPDATE loose SET x = x * 2 WHERE body = 'loose 5'")
    result, report = run_json(cli, config, "--resume")
    assert result.exit_code == 6, result.stderr
    loose = by_table(report)["loose"]
    assert loose["status"] == "mismatch" and loose["verified_by"] == "canonical"
    assert loose["first_bad_chunk"] == "the whole table"
    assert by_table(report)["things"]["verified_by"] == "copy sums"


def test_a_chunk_printed_otherwise_than_sent_falls_back_and_verifies_equal(cli, tmp_path, write_config, pg_database):
    """PostgreSQL's COPY writes a backspace as \\b, SQLite sends it as it is: the chunk holding one
    differs by its copy sums, and its canonical checksums prove it equal."""
    make_source(tmp_path / "src.db", label=lambda i: f"label {i}" + ("\b" if i == 15 else ""))
    config = lite_and_pg_config(write_config, pg_database)
    result, report = run_json(cli, config)
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    assert by_table(report)["things"]["verified_by"] == "copy sums; canonical for 1 of 3 chunks"
    with pg_database.connect() as conn:
        assert conn.execute("SELECT label FROM things WHERE id = 15").fetchone()[0] == "label 15\b"


def test_sums_recorded_before_a_kill_9_verify_the_resumed_run(cli, tmp_path, config, pg_database):
    import signal

    process = start_run(config, "--parallel", "2")
    deadline = time.monotonic() + 60
    while committed_chunks(pg_database) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result, report = run_json(cli, config, "--resume", "--parallel", "2")
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    assert {item["verified_by"] for item in report["items"]} == {"copy sums"}


def test_chunks_an_earlier_build_summed_by_crc32_are_verified_canonically_after_a_resume(cli, config,
                                                                                        pg_database):
    """State written by a build that recorded crc32 sums (``{"copy_sum": N}``): the resumed run copies
    the rest with XXH64 sums and verifies the old chunks as chunks without sums, by the canonical
    checksums."""
    import signal
    import zlib

    process = start_run(config, "--parallel", "2", "--batch-rows", str(BATCH))  # the last --batch-rows wins
    deadline = time.monotonic() + 60
    while committed_chunks(pg_database) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with pg_database.connect() as conn:
        old = conn.execute("SELECT target_table, min(chunk) FROM storagectl_data_migration WHERE chunk >= 0 "
                           "GROUP BY 1").fetchall()  # the first chunk of each: new sums for the others
        for table, chunk in old:  # any number: it must not be read
            conn.execute("UPDATE storagectl_data_migration SET detail = %s WHERE target_table = %s AND chunk = %s",
                         [json.dumps({"copy_sum": zlib.crc32(f"{table} {chunk}".encode())}), table, chunk])
    assert old
    result, report = run_json(cli, config, "--resume", "--parallel", "2")
    assert result.exit_code == 0, result.stderr
    assert report["verified"] is True
    for name, item in by_table(report).items():  # loose has no key: summed whole or not at all
        stale = sum(table == name for table, _chunk in old)
        expected = "copy sums" if not stale else "canonical" if name == "loose" \
            else f"copy sums; canonical for {stale} of 3 chunks"
        assert (item["chunks"], item["verified_by"]) == (3, expected), old
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM storagectl_data_migration WHERE chunk >= 0 AND "
                            "detail::jsonb ? 'copy_xxh64'").fetchone()[0] == 6 - len(old)
        assert conn.execute("SELECT count(*) FROM storagectl_data_migration WHERE chunk >= 0 AND "
                            "detail::jsonb ? 'copy_sum'").fetchone()[0] == len(old)


def test_a_transform_is_verified_by_the_lines_it_sent(cli, tmp_path, write_config, pg_database):
    make_source(tmp_path / "src.db")
    (tmp_path / "map.yaml").write_text("tables:\n  - source: things\n    target: renamed\n    columns:\n"
                                       "      - {name: id}\n"
                                       "      - {name: twice, expression: \"x * 2\", cast: double precision}\n"
                                       "      - {name: shout, expression: \"upper(label)\"}\n")
    config = lite_and_pg_config(write_config, pg_database)
    result, report = run_json(cli, config, "--map", str(tmp_path / "map.yaml"))
    assert result.exit_code == 0, result.stderr
    assert by_table(report)["things"]["verified_by"] == "copy sums"
    with pg_database.connect() as conn:
        conn.execute("UPDATE renamed SET twice = twice + 1 WHERE id = 25")
    result, report = run_json(cli, config, "--map", str(tmp_path / "map.yaml"), "--resume")
    assert result.exit_code == 6
    assert by_table(report)["things"]["first_bad_chunk"] == "3 (id ≥ 21)"


def test_a_table_without_rowid_or_integer_key_is_one_chunk_summed_whole(cli, tmp_path, write_config, pg_database):
    with sqlite3.connect(tmp_path / "src.db") as conn:
        conn.executescript("CREATE TABLE codes (code TEXT PRIMARY KEY, weight REAL, seen DATETIME) WITHOUT ROWID;")
        conn.executemany("INSERT INTO codes VALUES (?, ?, ?)",
                         [(f"c{i:03d}", i / 7, f"2024-02-{1 + i % 28:02d} 01:02:03") for i in range(40)])
    config = lite_and_pg_config(write_config, pg_database)
    result, report = run_json(cli, config)
    assert result.exit_code == 0, result.stderr
    assert report["items"][0]["chunks"] == 1 and report["items"][0]["verified_by"] == "copy sums"
    with pg_database.connect() as conn:
        conn.execute("UPDATE codes SET seen = seen + interval '1 hour' WHERE code = 'c007'")
    result, report = run_json(cli, config, "--resume")
    assert result.exit_code == 6 and report["items"][0]["verified_by"] == "canonical"


def test_a_table_without_a_key_whose_target_lost_repeated_rows_is_a_mismatch(cli, tmp_path, write_config,
                                                                             pg_database):
    """A keyless table's chunk is no range of the target: a chunk's sums are never compared with the
    whole target's (three chunks of the same ten rows, the target left with those ten once)."""
    with sqlite3.connect(tmp_path / "src.db") as conn:
        conn.execute("CREATE TABLE events (body TEXT, n INTEGER)")
        conn.executemany("INSERT INTO events VALUES (?, ?)", [(f"event {i % 10}", i % 10) for i in range(30)])
    config = lite_and_pg_config(write_config, pg_database)
    result, report = run_json(cli, config)
    assert result.exit_code == 0 and report["items"][0]["chunks"] == 3
    with pg_database.connect() as conn:
        conn.execute("DELETE FROM events WHERE ctid NOT IN (SELECT min(ctid) FROM events GROUP BY body)")
    result, report = run_json(cli, config, "--resume")
    assert result.exit_code == 6, result.stderr
    assert report["items"][0]["status"] == "mismatch" and report["items"][0]["verified_by"] == "canonical"
