"""TimescaleDB code against a real TimescaleDB: PGlite with TimescaleDB 2.23.0-dev (tests/servers.py).

Its one server session is shared by every client and a second connection waits for the first to
close, so only what runs on one connection at a time is tested here (see the README's table).
"""

from __future__ import annotations

import pytest

from tests.test_diag import checks_by_name, only_backend


@pytest.fixture
def hypertable(timescale_db):
    with timescale_db.connect() as conn:
        conn.execute("CREATE TABLE metrics (at timestamptz NOT NULL, device int, value float8)")
        conn.execute("SELECT create_hypertable('metrics', 'at', chunk_time_interval => interval '1 day')")
        conn.execute("INSERT INTO metrics SELECT '2024-01-01'::timestamptz + g * interval '1 hour', g % 5, g / 3.0 "
                     "FROM generate_series(0, 24 * 5 - 1) g")
    return timescale_db


def ts_yaml(database, extra: str = "") -> str:
    return database.backend_yaml("ts", kind="timescaledb", extra=extra)


def test_diag_reads_the_timescaledb_version_and_hypertables(cli, write_config, hypertable):
    result = cli("-c", write_config("backends:\n" + ts_yaml(hypertable)), "-o", "json", "diag")
    checks = checks_by_name(only_backend(result))
    assert checks["timescaledb"]["value"] == "2.23.0-dev"
    assert checks["timescaledb"]["display"] == "2.23.0-dev (1 hypertables)"


def test_migrate_up_runs_a_revision_that_creates_a_hypertable(cli, write_config, timescale_db):
    from tests.test_migrate import SqlTarget, migrate, new_revision

    config = write_config("backends:\n" + ts_yaml(timescale_db, extra="migrations: mig/ts\n"))
    target = SqlTarget(config, "ts", "timescaledb", pg=timescale_db)
    assert migrate(cli, target, "init").exit_code == 0
    revision = new_revision(cli, target, "metrics hypertable", """
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        op.create_table("readings", sa.Column("at", sa.DateTime(timezone=True), nullable=False),
                        sa.Column("value", sa.Float))
        op.execute("SELECT create_hypertable('readings', 'at')")
        """, "op.drop_table('readings')")
    result = migrate(cli, target, "up")
    assert result.exit_code == 0, result.stderr
    assert target.query("SELECT hypertable_name FROM timescaledb_information.hypertables") == [("readings",)]
    assert target.query("SELECT version_num FROM alembic_version") == [(revision["revision"],)]


def test_restore_mode_is_entered_and_left_on_the_real_extension(timescale_db):
    """The TimescaleDB half of a restore (prepare_restore / finish_restore) on one connection. A whole
    backup cannot be taken of PGlite: pg_dump --snapshot needs a second session beside the one
    holding the snapshot, and PGlite serves one at a time (see the README)."""
    from storagectl.backends.postgres import timescaledb

    with timescale_db.connect() as conn:
        timescaledb.prepare_restore(conn, "2.23.0-dev")
        assert conn.execute("SHOW timescaledb.restoring").fetchone() == ("on",)
        conn.execute("CREATE TABLE m (at timestamptz NOT NULL, v int)")
        timescaledb.finish_restore(conn)
        assert conn.execute("SHOW timescaledb.restoring").fetchone() == ("off",)
        conn.execute("SELECT create_hypertable('m', 'at')")  # usable again after restoring mode
        assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables").fetchone() == (1,)


def test_restore_refuses_another_timescaledb_version_than_the_targets(timescale_db):
    from storagectl.backends.postgres import timescaledb
    from storagectl.errors import OperationFailed

    with timescale_db.connect() as conn, pytest.raises(
            OperationFailed, match=r"the target has TimescaleDB 2\.23\.0-dev but the backup was taken with 2\.99\.0"):
        timescaledb.prepare_restore(conn, "2.99.0")


def test_wraparound_age_ignores_databases_whose_frozen_xid_is_not_a_real_xid(cli, write_config, timescale_db):
    """PGlite's postgres and template0 have datfrozenxid 0, for which age() answers 2147483647."""
    with timescale_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datfrozenxid = '0'").fetchone()[0] >= 1
        newest = conn.execute("SELECT max(age(datfrozenxid)) FILTER (WHERE datfrozenxid <> '0') "
                              "FROM pg_database").fetchone()[0]
    result = cli("-c", write_config("backends:\n" + ts_yaml(timescale_db)), "-o", "json", "diag")
    wraparound = checks_by_name(only_backend(result))["wraparound_age"]
    assert wraparound["status"] == "ok" and 0 < wraparound["value"] <= newest + 1000


def test_inspect_tables_shows_one_row_per_hypertable_with_its_chunks(cli, write_config, hypertable):
    """inspect's hypertable figures from the real extension's catalog: one row for the hypertable
    (not one per chunk), its chunk count as timescaledb_information.chunks has it."""
    with hypertable.connect() as conn:
        chunks = conn.execute("SELECT count(*) FROM timescaledb_information.chunks "
                              "WHERE hypertable_name = 'metrics'").fetchone()[0]
    result = cli("-c", write_config("backends:\n" + ts_yaml(hypertable)), "-o", "json", "inspect", "tables",
                 "-b", "ts")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    [row] = report["sections"]["hypertables"]
    assert (row["schema"], row["hypertable"], row["chunks"]["value"]) == ("public", "metrics", chunks)
    with hypertable.connect() as conn:
        assert row["total_bytes"]["value"] == conn.execute("SELECT hypertable_size('metrics')").fetchone()[0]
    assert chunks == 5  # five days of hourly rows, one-day chunks
    # only the hypertable's root among the tables: neither its chunks nor the extension's catalog
    assert [(t["schema"], t["table"]) for t in report["sections"]["tables"]] == [("public", "metrics")]


def test_inspect_counts_each_hypertable_whole_in_the_summary(cli, write_config, hypertable):
    """The tables view leaves the chunks out, but its summary must not: a TimescaleDB database's
    size is in its chunks (compressed ones included), not in the hypertable's empty root."""
    with hypertable.connect() as conn:
        conn.execute("ALTER TABLE metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'device')")
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('metrics') c LIMIT 2")
        size = conn.execute("SELECT hypertable_size('metrics')").fetchone()[0]
        before, after = conn.execute("SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes) "
                                     "FROM hypertable_compression_stats('metrics')").fetchone()
    config = write_config("backends:\n" + ts_yaml(hypertable))
    for view in ([], ["tables", "-b", "ts"]):
        result = cli("-c", config, "-o", "json", "inspect", *view)
        assert result.exit_code == 0, result.stderr
        [report] = result.json()["backends"]
        assert report["summary"]["total_bytes"]["value"] == size, view
        assert "hypertable_size()" in report["summary"]["total_bytes"]["source"]
        [row] = report["sections"]["hypertables"]
        assert row["compression_ratio"]["value"] == round(float(before) / float(after), 2)
    # --chunks lists the chunks as tables: the summary counts them there, not twice
    result = cli("-c", config, "-o", "json", "inspect", "tables", "-b", "ts", "--chunks", "--top", "1000")
    [report] = result.json()["backends"]
    listed = sum(t["total_bytes"]["value"] for t in report["sections"]["tables"])
    assert report["summary"]["total_bytes"]["value"] == listed >= size
    # ... and only the chunks: not the extension's job tables that share their schema
    with hypertable.connect() as conn:
        chunks = {r[0] for r in conn.execute(  # compressed chunks included (they are not listed there)
            "SELECT table_name FROM _timescaledb_catalog.chunk")}
        job_tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = '_timescaledb_internal' "
                                  "AND tablename LIKE 'bgw%%'").fetchone()[0]
    assert job_tables and len(chunks) == 7  # five chunks, two of them compressed
    assert {t["table"] for t in report["sections"]["tables"] if t["schema"] != "public"} == chunks
