"""`storagectl inspect` on PostgreSQL (and TimescaleDB's SQL): figures against count(*) and the size
functions, the cost bounds (read-only transaction, timeouts, no waiting behind ACCESS EXCLUSIVE),
pg_stat_statements missing or not loaded (exit 3)."""

from __future__ import annotations

import pytest

from storagectl.inspect.model import Budget
from storagectl.inspect.postgres import duplicate_groups, statement_delta
from storagectl.inspect.timescaledb import hypertables_sql


@pytest.fixture
def config(pg_database, write_config):
    return write_config("backends:\n" + pg_database.backend_yaml())


@pytest.fixture
def filled(pg_database):
    """Two schemas; one table with TOAST (incompressible text), indexes, dead tuples."""
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, tag text)")
        conn.execute("INSERT INTO docs SELECT g, (SELECT string_agg(md5(g::text || i::text), '') "
                     "FROM generate_series(1, 100) i), 't' || (g % 7) FROM generate_series(1, 500) g")
        conn.execute("CREATE INDEX docs_tag ON docs (tag)")
        conn.execute("DELETE FROM docs WHERE id <= 50")
        conn.execute("CREATE SCHEMA other")
        conn.execute("CREATE TABLE other.small (x int)")
        conn.execute("INSERT INTO other.small SELECT generate_series(1, 1234)")
        conn.execute("ANALYZE")
    return pg_database


def tables_json(cli, config, *extra):
    result = cli("-o", "json", "-c", config, "inspect", "tables", "-b", "pg", *extra)
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    return report


def test_tables_match_count_and_size_functions(cli, config, filled):
    report = tables_json(cli, config, "--exact")
    rows = {(r["schema"], r["table"]): r for r in report["sections"]["tables"]}
    with filled.connect() as conn:
        for (schema, table), row in rows.items():
            name = f'"{schema}"."{table}"'
            count, total, indexes, toast = conn.execute(
                f"SELECT (SELECT count(*) FROM {name}), pg_total_relation_size('{name}'), "
                f"pg_indexes_size('{name}'), coalesce(pg_total_relation_size(NULLIF(reltoastrelid, 0)), 0) "
                f"FROM pg_class WHERE oid = '{name}'::regclass").fetchone()
            assert row["rows"] == {"value": count, "provenance": "exact", "source": "count(*)"}
            assert row["total_bytes"] == {"value": total, "provenance": "exact"}
            assert row["index_bytes"]["value"] == indexes and row["toast_bytes"]["value"] == toast
            assert row["table_bytes"]["value"] + toast + indexes == total
            assert row["rows_estimate"]["provenance"] == "estimate"
            assert row["rows_estimate"]["source"] == "pg_class.reltuples"
    assert rows[("public", "docs")]["toast_bytes"]["value"] > 0
    assert rows[("public", "docs")]["rows"]["value"] == 450
    assert report["summary"]["tables"] == {"value": 2, "provenance": "exact"}
    assert report["complete"] is True


def test_sort_top_and_schema(cli, config, filled):
    by_rows = tables_json(cli, config, "--sort", "rows", "--top", "1")["sections"]["tables"]
    assert [r["table"] for r in by_rows] == ["small"]
    only = tables_json(cli, config, "--schema", "other")["sections"]["tables"]
    assert [(r["schema"], r["table"]) for r in only] == [("other", "small")]


@pytest.fixture
def many(pg_database):
    """80 analyzed tables of different sizes, and one large table never analyzed (relpages 0)."""
    with pg_database.connect() as conn:
        conn.execute("""DO $$ BEGIN FOR i IN 1..80 LOOP
          EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
          EXECUTE format('INSERT INTO t%s SELECT g, md5(g::text) FROM generate_series(1, %s) g', i, i * 40);
        END LOOP; END $$""")
        conn.execute("ANALYZE")
        conn.execute("CREATE TABLE unanalyzed (v text) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO unanalyzed SELECT repeat(md5(g::text), 4) FROM generate_series(1, 20000) g")
    return pg_database


def test_only_the_candidate_tables_are_sized_the_rest_are_estimated(cli, config, many):
    report = tables_json(cli, config, "--top", "5")
    with many.connect() as conn:
        truth = conn.execute("SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                             "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace "
                             "ORDER BY 2 DESC, 1 LIMIT 5").fetchall()
        assert conn.execute("SELECT relpages FROM pg_class WHERE relname = 'unanalyzed'").fetchone() == (0,)
    shown = [(r["table"], r["total_bytes"]) for r in report["sections"]["tables"]]
    assert shown == [(name, {"value": size, "provenance": "exact"}) for name, size in truth]
    assert shown[0][0] == "unanalyzed"  # never analyzed: its recorded pages say nothing, so it is sized
    total = report["summary"]["total_bytes"]
    # 81 tables; 55 candidates (top 5 + a margin of 50) and the unanalyzed one sized, 25 estimated
    assert total["provenance"] == "estimate" and total["source"] == "pg_class.relpages for 25 of 81 tables"
    assert report["summary"]["tables"]["value"] == 81
    everything = tables_json(cli, config, "--top", "100")
    assert everything["summary"]["total_bytes"]["provenance"] == "exact"
    assert everything["summary"]["total_bytes"]["value"] == pytest.approx(total["value"], rel=0.2)


def test_sort_by_name_sizes_only_the_rows_shown(cli, config, many):
    report = tables_json(cli, config, "--sort", "name", "--top", "3")
    assert [r["table"] for r in report["sections"]["tables"]] == ["t1", "t10", "t11"]
    assert all(r["total_bytes"]["provenance"] == "exact" for r in report["sections"]["tables"])
    assert report["summary"]["total_bytes"]["source"] == "pg_class.relpages for 78 of 81 tables"


def test_a_table_locked_access_exclusive_is_sized_from_pg_class_without_waiting(cli, config, filled):
    """DDL holding ACCESS EXCLUSIVE: inspect neither waits for it nor queues in front of others."""
    with filled.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE docs IN ACCESS EXCLUSIVE MODE")
        report = tables_json(cli, config, "--exact")
        locker.execute("ROLLBACK")
    rows = {r["table"]: r for r in report["sections"]["tables"]}
    assert rows["docs"]["total_bytes"]["provenance"] == "estimate"
    assert "pg_class.relpages" in rows["docs"]["total_bytes"]["source"]
    assert rows["small"]["total_bytes"]["provenance"] == "exact"
    assert report["summary"]["total_bytes"]["provenance"] == "estimate"
    assert rows["docs"]["rows"] is None and rows["small"]["rows"]["value"] == 1234
    assert report["notes"] == ["no count(*) of public.docs: it is locked by another session"]


def test_queries_run_read_only_with_local_timeouts(filled):
    from storagectl.backends import open_backend
    from storagectl.config.models import Config  # noqa: F401 - settings class comes from the kind
    from storagectl.errors import OperationFailed, OperationTimeout
    from storagectl.inspect.base import InspectOptions
    from storagectl.inspect.pg_session import read_only_session

    backend = open_backend("pg", _settings(filled.url))
    options = InspectOptions(query_timeout=0.3, lock_timeout=0.2)
    with backend.connect() as conn, read_only_session(backend, conn, Budget(None), options) as session:
        row = session.one("SELECT current_setting('transaction_read_only') AS ro, "
                          "current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt")
        assert row == {"ro": "on", "st": "300ms", "lt": "200ms"}
        with pytest.raises(OperationFailed, match="read-only transaction"):
            session.rows("CREATE TABLE nope (x int)")
        with pytest.raises(OperationTimeout, match="statement_timeout"):
            session.rows("SELECT pg_sleep(3)")
        assert session.one("SELECT 1 AS one") == {"one": 1}  # the savepoint kept the session usable
    assert conn.closed


def _settings(url: str):
    from storagectl.backends.postgres.backend import PostgresSettings

    return PostgresSettings(kind="postgres", url=url)


def test_indexes_unused_duplicate_invalid(cli, config, filled):
    with filled.connect() as conn:
        conn.execute("CREATE INDEX docs_tag_again ON docs (tag)")
        conn.execute("CREATE TABLE dup (v int)")
        conn.execute("INSERT INTO dup VALUES (1), (1)")
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY dup_v ON dup (v)")  # leaves an invalid index
        sizes = dict(conn.execute("SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
                                  "WHERE c.relkind = 'i' AND c.relnamespace = 'public'::regnamespace").fetchall())
    result = cli("-o", "json", "-c", config, "inspect", "indexes", "-b", "pg")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    rows = {r["index"]: r for r in report["sections"]["indexes"]}
    assert {name: r["index_bytes"]["value"] for name, r in rows.items() if r["schema"] == "public"} == sizes
    assert rows["docs_tag"]["duplicate_of"] == ["docs_tag_again"] and rows["docs_tag"]["unused"] is True
    assert rows["docs_pkey"]["unused"] is False  # backs the primary key
    assert rows["dup_v"]["valid"] is False
    assert report["summary"]["invalid"]["value"] == 1 and report["summary"]["duplicate"]["value"] == 2


def test_queries_without_pg_stat_statements_is_one_line_exit_3(cli, config, filled):
    result = cli("-c", config, "inspect", "queries", "-b", "pg")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "pg_stat_statements is not installed" in result.stderr and "CREATE EXTENSION" in result.stderr


def test_queries_with_the_extension_not_loaded_is_one_line_exit_3(cli, config, filled):
    with filled.connect() as conn:
        loaded = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
        if "pg_stat_statements" in loaded:
            pytest.skip("this server preloads pg_stat_statements")
        conn.execute("CREATE EXTENSION pg_stat_statements")
    result = cli("-c", config, "inspect", "queries", "-b", "pg")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    assert "installed but not loaded" in result.stderr and "shared_preload_libraries" in result.stderr


def _statements(conn, marker: str) -> dict[str, tuple]:
    """pg_stat_statements of this database, of the statements containing ``marker``: query -> counters."""
    found = conn.execute("SELECT query, calls, total_exec_time, rows FROM pg_stat_statements s "
                         "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                         "AND query LIKE %s", [f"%{marker}%"]).fetchall()
    return {" ".join(query.split()): (calls, total, rows) for query, calls, total, rows in found}


def _run_marked(url: str, calls: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(calls):
            conn.execute("SELECT g AS inspect_marker FROM generate_series(1, 3) g").fetchall()
        conn.execute("SELECT pg_sleep(0.05) AS inspect_slow_marker")


def test_queries_top_statements_match_pg_stat_statements(cli, pg18_database, write_config):
    """On the PostgreSQL 18 test server, which preloads pg_stat_statements (tests/servers.py)."""
    with pg18_database.connect() as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    _run_marked(pg18_database.url, calls=7)
    config = write_config("backends:\n" + pg18_database.backend_yaml())
    result = cli("-o", "json", "-c", config, "inspect", "queries", "-b", "pg", "--top", "50")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    shown = {r["query"]: r for r in report["sections"]["statements"]}
    with pg18_database.connect() as conn:
        truth = _statements(conn, "marker")
    assert set(truth) <= set(shown) and len(truth) == 2
    for query, (calls, total, rows) in truth.items():
        assert shown[query]["calls"] == {"value": calls, "provenance": "exact"}
        assert shown[query]["rows"]["value"] == rows
        assert shown[query]["total_ms"]["value"] == pytest.approx(total, abs=1e-3)
    marked = shown["SELECT g AS inspect_marker FROM generate_series($1, $2) g"]
    assert marked["calls"]["value"] == 7 and marked["rows"]["value"] == 21
    totals = [r["total_ms"]["value"] for r in report["sections"]["statements"]]
    assert totals == sorted(totals, reverse=True)
    assert report["notes"] == ["since pg_stat_statements was last reset"]


def test_queries_interval_is_the_difference_of_two_snapshots(cli, pg18_database, write_config, monkeypatch):
    from storagectl.inspect.postgres import PostgresInspector

    with pg18_database.connect() as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    _run_marked(pg18_database.url, calls=5)  # before the interval: not counted
    sleep = PostgresInspector.sleep

    def run_during_the_interval(self, seconds):
        _run_marked(pg18_database.url, calls=3)
        sleep(self, seconds)

    monkeypatch.setattr(PostgresInspector, "sleep", run_during_the_interval)
    config = write_config("backends:\n" + pg18_database.backend_yaml())
    result = cli("-o", "json", "-c", config, "inspect", "queries", "-b", "pg", "--interval", "0.2", "--sort", "calls")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    shown = {r["query"]: r for r in report["sections"]["statements"]}
    marked = shown["SELECT g AS inspect_marker FROM generate_series($1, $2) g"]
    assert marked["calls"]["value"] == 3 and marked["rows"]["value"] == 9
    with pg18_database.connect() as conn:
        assert _statements(conn, "inspect_marker")["SELECT g AS inspect_marker FROM generate_series($1, $2) g"][0] == 8
    assert report["notes"] == ["difference of two snapshots 0.2s apart"]


def test_views_of_other_kinds_are_usage_errors(cli, config):
    result = cli("-c", config, "inspect", "keys", "-b", "pg")
    assert result.exit_code == 2
    assert "`inspect keys` does not apply to backend 'pg' (kind postgres); it inspects redis" in result.stderr


def test_overview(cli, config, filled):
    result = cli("-o", "json", "-c", config, "inspect")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    with filled.connect() as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    assert report["view"] == "overview" and report["kind"] == "postgres"
    assert abs(report["summary"]["database_bytes"]["value"] - size) <= 64 * 1024  # autovacuum may touch it
    assert [r["table"] for r in report["sections"]["largest_tables"]] == ["docs", "small"]


def test_budget_zero_stops_before_any_query(cli, config, filled):
    result = cli("-o", "json", "-c", config, "inspect", "tables", "-b", "pg", "--budget", "0")
    assert result.exit_code == 0
    [report] = result.json()["backends"]
    assert report["complete"] is False and report["stopped"] == "budget"


# -- pure ---------------------------------------------------------------------------------------------
def test_statement_delta():
    before = [{"userid": 1, "queryid": 7, "query": "q", "calls": 10, "total_ms": 100.0, "mean_ms": 10.0, "rows": 10},
              {"userid": 1, "queryid": 8, "query": "idle", "calls": 5, "total_ms": 5.0, "mean_ms": 1.0, "rows": 5},
              {"userid": 1, "queryid": 9, "query": "reset", "calls": 50, "total_ms": 50.0, "mean_ms": 1.0, "rows": 0}]
    after = [{**before[0], "calls": 14, "total_ms": 180.0, "rows": 14}, before[1],
             {**before[2], "calls": 2, "total_ms": 4.0},
             {"userid": 2, "queryid": 7, "query": "new", "calls": 1, "total_ms": 3.0, "mean_ms": 3.0, "rows": 1}]
    delta = {r["query"]: r for r in statement_delta(before, after)}
    assert set(delta) == {"q", "reset", "new"}
    q = delta["q"]
    assert (q["calls"], q["total_ms"], q["mean_ms"], q["rows"]) == (4, 80.0, 20.0, 4)
    assert delta["reset"]["calls"] == 2 and delta["new"]["total_ms"] == 3.0


def test_duplicates_need_the_same_definition():
    base = {"table_oid": 1, "columns": "1", "opclasses": "x", "collations": "0", "expressions": None,
            "predicate": None, "method": "btree"}
    found = [{**base, "index_name": "a"}, {**base, "index_name": "b"},
             {**base, "index_name": "partial", "predicate": "(v > 0)"},
             {**base, "index_name": "hash", "method": "hash"}]
    assert list(duplicate_groups(found).values()) == [["a", "b"]]


# -- TimescaleDB: the SQL each extension generation gets, run against stand-ins of its catalog -------
TS2 = {"hypertables", "job_stats", "hypertable_size", "hypertable_compression_stats", "approximate_row_count"}
TS1 = {"hypertable", "hypertable_relation_size"}

STAND_INS = """
CREATE TABLE metrics (t timestamptz, v float);
CREATE SCHEMA timescaledb_information;
CREATE VIEW timescaledb_information.hypertables AS
  SELECT 'public'::name AS hypertable_schema, 'metrics'::name AS hypertable_name, 12 AS num_chunks;
CREATE VIEW timescaledb_information.job_stats AS
  SELECT 'public'::name AS hypertable_schema, 'metrics'::name AS hypertable_name,
         now() AS last_run_started_at, 'Success'::text AS last_run_status;
CREATE VIEW timescaledb_information.hypertable AS
  SELECT 'public'::name AS table_schema, 'metrics'::name AS table_name, 12 AS num_chunks;
CREATE FUNCTION hypertable_size(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT 4096::bigint';
CREATE FUNCTION approximate_row_count(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT 1000::bigint';
CREATE FUNCTION hypertable_compression_stats(regclass) RETURNS TABLE (
  total_chunks bigint, number_compressed_chunks bigint, before_compression_total_bytes bigint,
  after_compression_total_bytes bigint, node_name name)
  LANGUAGE sql AS 'SELECT 12::bigint, 10::bigint, 10000::bigint, 1000::bigint, NULL::name';
CREATE FUNCTION hypertable_relation_size(regclass) RETURNS TABLE (
  table_bytes bigint, index_bytes bigint, toast_bytes bigint, total_bytes bigint)
  LANGUAGE sql AS 'SELECT 1::bigint, 2::bigint, 3::bigint, 8192::bigint';
"""


@pytest.mark.parametrize(("available", "expected"), [
    (TS2, ("metrics", 12, 4096, 1000, 10000, 1000, "Success")),
    (TS2 - {"hypertable_compression_stats", "job_stats", "approximate_row_count"},
     ("metrics", 12, 4096, None, None, None, None)),
    (TS1, ("metrics", 12, 8192, None, None, None, None)),
], ids=["2.x", "2.x-without-compression-and-jobs", "1.x"])
def test_hypertable_sql_runs_against_the_documented_catalog(pg_database, available, expected):
    query = hypertables_sql("public", available)
    with pg_database.connect() as conn:
        conn.execute(STAND_INS)
        row = conn.execute(query).fetchone()
        root_bytes = conn.execute("SELECT pg_total_relation_size('metrics')").fetchone()[0]
    assert row[1:8] == expected
    assert row[8:] == (root_bytes, 0)  # the root as the tables view counts it (summary: chunks added)


def test_hypertable_sql_falls_back_to_1x_and_then_to_nothing():
    assert "hypertable_size(" in hypertables_sql("public", TS2 | TS1)
    assert "hypertable_relation_size(" in hypertables_sql("ts", TS1)
    assert '"ts".hypertable_relation_size(' in hypertables_sql("ts", TS1)
    assert hypertables_sql("public", {"hypertables"}) is None


def test_timescaledb_kind_without_the_extension_says_so(cli, pg_database, write_config, filled):
    config = write_config("backends:\n" + pg_database.backend_yaml(kind="timescaledb"))
    result = cli("-o", "json", "-c", config, "inspect", "tables", "-b", "pg")
    assert result.exit_code == 0, result.stderr
    [report] = result.json()["backends"]
    assert "the extension is not installed" in report["notes"][0]
    assert {r["table"] for r in report["sections"]["tables"]} == {"docs", "small"}
