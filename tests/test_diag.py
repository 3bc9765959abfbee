"""`storagectl diag` against the real local services, plus every connection failure case."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from storagectl.health import Status, grade
from tests.fakes.servers import DownHost, PostgresAuthRejectingServer, SilentServer

NO_RETRY = "retry: {attempts: 1}\n"


def checks_by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


def only_backend(result) -> dict:
    (report,) = result.json()["backends"]
    return report


# -- pure grading ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "higher_is_worse", "expected"),
    [(10, True, Status.OK), (80, True, Status.WARNING), (99, True, Status.CRITICAL),
     (95, False, Status.OK), (85, False, Status.WARNING), (10, False, Status.CRITICAL),
     (None, True, Status.UNKNOWN)],
)
def test_grade(value, higher_is_worse, expected):
    warning, critical = (80, 95) if higher_is_worse else (90, 50)
    assert grade(value, warning, critical, higher_is_worse) is expected


# -- real services --------------------------------------------------------------------------------
def test_postgres_figures_are_correct(cli, write_config, pg_database):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE t AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 5000) g")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        max_conn = conn.execute("SHOW max_connections").fetchone()[0]
        # connections, idle sessions and the oldest transaction are counted over the whole server, where
        # the other pytest-xdist worker's tests (and anyone else's sessions) move them: not graded here
        path = write_config("backends:\n" + pg_database.backend_yaml(extra="""\
            thresholds:
              connections_used_pct: {warning: 1e12, critical: 1e12}
              idle_in_transaction: {warning: 1e12, critical: 1e12}
              oldest_transaction_age: {warning: 1e12, critical: 1e12}
            """))
        result = cli("-c", path, "-o", "json", "diag")
    assert result.exit_code == 0, result.stderr
    report = only_backend(result)
    assert report["status"] == "ok" and report["reachable"] and report["auth_ok"]
    assert report["server_version"].startswith("15") or report["server_version"][0].isdigit()
    assert report["latency_ms"] > 0
    checks = checks_by_name(report)
    assert checks["database_size"]["value"] == pytest.approx(size, rel=0.05)
    used_pct = checks["connections_used_pct"]["value"]
    assert checks["connections_used_pct"]["display"].endswith(f"/{max_conn} ({used_pct:g}%)")
    assert set(checks) >= {"cache_hit_ratio", "oldest_transaction_age", "idle_in_transaction", "wraparound_age"}
    assert "timescaledb" not in checks  # extension absent on this server


def test_postgres_idle_in_transaction_raises_warning(cli, write_config, pg_database):
    path = write_config("backends:\n" + pg_database.backend_yaml(extra="""\
        thresholds:
          idle_in_transaction: {warning: 1, critical: 1000}
          oldest_transaction_age: {warning: 100000, critical: 200000}
        """))
    with pg_database.connect() as idle:
        idle.autocommit = False
        idle.execute("SELECT 1")  # opens a transaction and leaves it idle
        result = cli("-c", path, "-o", "json", "diag")
        idle.rollback()
    assert result.exit_code == 1, result.stdout
    checks = checks_by_name(only_backend(result))
    assert checks["idle_in_transaction"]["status"] == "warning"
    assert checks["idle_in_transaction"]["value"] >= 1


def test_critical_threshold_exits_2(cli, write_config, pg_database):
    path = write_config("backends:\n" + pg_database.backend_yaml(extra="""\
        thresholds:
          connections_used_pct: {warning: 0, critical: 0}
        """))
    result = cli("-c", path, "diag")
    assert result.exit_code == 2
    assert "CRITICAL" in result.stdout


def test_redis_figures(cli, write_config, redis_db):
    client = redis_db.client()
    client.set("k", "v")
    client.get("k")
    client.get("missing")
    # Hit/miss and eviction counters are server-wide; other tests move them, so don't grade them here.
    path = write_config("backends:\n" + redis_db.backend_yaml(extra="""\
        thresholds:
          keyspace_hit_ratio: {warning: 0, critical: 0}
          evicted_keys: {warning: 1e12, critical: 1e12}
        """))
    result = cli("-c", path, "-o", "json", "diag")
    assert result.exit_code == 0, result.stdout
    report = only_backend(result)
    checks = checks_by_name(report)
    info = client.info("all")
    assert report["server_version"] == info["redis_version"]
    hits, misses = info["keyspace_hits"], info["keyspace_misses"]
    assert checks["keyspace_hit_ratio"]["value"] == pytest.approx(100 * hits / (hits + misses), abs=1)
    assert checks["persistence"]["status"] == "ok"
    assert set(checks) >= {"memory_used_pct", "evicted_keys", "connected_clients_pct", "blocked_clients"}


def test_sqlite_figures(cli, write_config, tmp_path):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
    path = write_config("backends:\n  lite: {kind: sqlite, path: app.db}\n")
    result = cli("-c", path, "-o", "json", "diag")
    assert result.exit_code == 0, result.stdout
    checks = checks_by_name(only_backend(result))
    assert checks["journal_mode"]["value"] == "wal"
    assert checks["quick_check"]["display"] == "ok"
    assert checks["file_size"]["value"] == db.stat().st_size


def test_sqlite_corrupt_file_is_critical(cli, write_config, tmp_path):
    (tmp_path / "bad.db").write_bytes(b"this is not a database" * 100)
    path = write_config("backends:\n  lite: {kind: sqlite, path: bad.db}\n")
    result = cli("-c", path, "diag")
    assert result.exit_code == 2
    assert "not a database" in result.stdout


def test_sqlite_missing_file_names_path(cli, write_config, tmp_path):
    path = write_config("backends:\n  lite: {kind: sqlite, path: nope.db}\n")
    result = cli("-c", path, "diag")
    assert result.exit_code == 2
    assert "database file does not exist" in result.stdout


def test_s3_bucket_reachable_and_listable(cli, write_config, s3_bucket):
    path = write_config("backends:\n  assets:\n    kind: s3\n" + s3_bucket.yaml_fields())
    result = cli("-c", path, "-o", "json", "diag")
    assert result.exit_code == 0, result.stdout
    checks = checks_by_name(only_backend(result))
    assert checks["bucket_reachable"]["value"] and checks["bucket_listable"]["value"]


def test_s3_missing_bucket(cli, write_config, s3_endpoint):
    path = write_config(f"""\
        backends:
          assets:
            kind: s3
            bucket: no-such-bucket-{uuid.uuid4().hex[:8]}
            endpoint_url: {s3_endpoint}
            addressing_style: path
            access_key_id: testing
            secret_access_key: testing
        """)
    result = cli("-c", path, "-o", "json", "diag")
    report = only_backend(result)
    assert result.exit_code == 2 and "not found" in report["error"]


def test_all_backends_reported_even_when_one_is_down(cli, write_config, pg_database, redis_db, tmp_path):
    sqlite3.connect(tmp_path / "a.db").close()
    path = write_config(
        "backends:\n" + pg_database.backend_yaml() + redis_db.backend_yaml()
        + "  lite: {kind: sqlite, path: a.db}\n"
        + "  down:\n    kind: redis\n    url: redis://127.0.0.1:1/0\n    " + NO_RETRY
    )
    result = cli("-c", path, "-o", "json", "diag")
    assert result.exit_code == 3
    reports = {r["backend"]: r for r in result.json()["backends"]}
    # reachable and checked; their grades are not asserted: server-wide checks (connections in use,
    # long transactions) depend on whatever else uses the shared test servers at the time
    assert [(reports[n]["reachable"], reports[n]["error"]) for n in ("pg", "cache", "lite")] == [(True, None)] * 3
    assert reports["lite"]["status"] == "ok"
    assert reports["down"]["status"] == "unknown" and "connection refused" in reports["down"]["error"]
    table = cli("-c", path, "diag")
    assert table.exit_code == 3 and "connection refused" in table.stdout and "UNKNOWN" in table.stdout


def test_backend_filter_and_unknown_name(cli, write_config, redis_db):
    path = write_config("backends:\n" + redis_db.backend_yaml() + "  other: {kind: sqlite, path: x.db}\n")
    result = cli("-c", path, "-o", "json", "diag", "--backend", "cache")
    assert [r["backend"] for r in result.json()["backends"]] == ["cache"]
    bad = cli("-c", path, "diag", "--backend", "cahce")
    assert bad.exit_code == 2
    assert "unknown backend 'cahce' (did you mean cache?)" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- connection failures: port closed, DNS, timeout, wrong password ---------------------------------
def test_port_closed(cli, write_config):
    path = write_config(f"backends:\n  db:\n    kind: postgres\n    host: 127.0.0.1\n    port: 1\n    {NO_RETRY}")
    report = only_backend(cli("-c", path, "-o", "json", "diag"))
    assert report["status"] == "unknown" and not report["reachable"]
    assert report["error"] == "backend 'db' (postgres postgresql://postgres@127.0.0.1:1/postgres): connection refused"


def test_unresolvable_host(cli, write_config):
    path = write_config(f"backends:\n  r:\n    kind: redis\n    host: nonexistent-host.invalid\n    {NO_RETRY}")
    result = cli("-c", path, "-o", "json", "diag")
    assert result.exit_code == 3
    assert "host name cannot be resolved" in only_backend(result)["error"]


def one_try_config(write_config, kind: str, port: int, connect: str = "2s"):
    return write_config(f"""\
        backends:
          far:
            kind: {kind}
            host: 127.0.0.1
            port: {port}
            retry: {{attempts: 1}}
            timeouts: {{connect: {connect}}}
        """)


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_hung_host_times_out(cli, write_config, kind):
    with SilentServer() as server:
        result = cli("-c", one_try_config(write_config, kind, server.port), "-o", "json", "diag", "--timeout", "1")
    assert result.exit_code == 3
    assert "no answer within 1s" in only_backend(result)["error"]


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_host_down_times_out_with_the_connect_timeout(cli, write_config, kind):
    with DownHost() as host:
        result = cli("-c", one_try_config(write_config, kind, host.port), "-o", "json", "diag", "--timeout", "20")
    report = only_backend(result)
    assert result.exit_code == 3 and report["status"] == "unknown" and not report["reachable"]
    assert report["error"].endswith("timed out after 2s")


def test_connect_timeout_reported_as_timeout(cli, write_config):
    with SilentServer() as server:
        path = one_try_config(write_config, "redis", server.port, connect="0.5")
        report = only_backend(cli("-c", path, "-o", "json", "diag", "--timeout", "10"))
    assert report["status"] == "unknown"
    assert "timed out after 0.5s" in report["error"]


def test_postgres_wrong_password(cli, write_config):
    with PostgresAuthRejectingServer() as server:
        path = write_config(f"""\
            backends:
              db:
                kind: postgres
                host: 127.0.0.1
                port: {server.port}
                user: app
                password: not-the-password
                sslmode: disable
            """)
        result = cli("-c", path, "-o", "json", "diag")
    report = only_backend(result)
    assert result.exit_code == 2
    assert report["reachable"] and report["auth_ok"] is False
    assert "authentication failed for user 'app'" in report["error"]
    assert "not-the-password" not in result.stdout + result.stderr


def test_redis_wrong_password(cli, write_config, redis_db):
    user = f"stctl_{uuid.uuid4().hex[:8]}"
    admin = redis_db.client()
    admin.execute_command("ACL", "SETUSER", user, "on", ">right-password", "~*", "+@all")
    try:
        path = write_config(f"""\
            backends:
              cache:
                kind: redis
                url: redis://{user}:wrong-password@127.0.0.1:{admin.connection_pool.connection_kwargs['port']}/{redis_db.db}
            """)
        result = cli("-c", path, "-o", "json", "diag")
        shown = cli("-c", path, "backends")
    finally:
        admin.execute_command("ACL", "DELUSER", user)
    report = only_backend(result)
    assert result.exit_code == 2 and report["auth_ok"] is False
    assert "authentication failed" in report["error"]
    for output in (result.stdout, result.stderr, shown.stdout):
        assert "wrong-password" not in output


def test_retry_waits_then_reports(cli, write_config):
    path = write_config("""\
        backends:
          r:
            kind: redis
            host: 127.0.0.1
            port: 1
            retry: {attempts: 3, initial: 10ms, max: 20ms}
        """)
    report = only_backend(cli("-c", path, "-o", "json", "diag"))
    assert "connection refused" in report["error"]

