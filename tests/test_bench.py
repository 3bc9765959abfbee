"""`storagectl bench` against the real local PostgreSQL, SQLite and Redis: counting, errors by kind,
the namespace removed after success and after an interrupt, option conflicts, production refusal."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from storagectl import errors
from storagectl.backends import backend_from_config
from storagectl.config import load_config
from storagectl.errors import Interrupted
from storagectl.loadgen.run import BenchOptions, run_bench
from tests.conftest import free_port


def redis_keys(redis_db, pattern: str = "storagectl:bench:*") -> list[bytes]:
    return list(redis_db.client().scan_iter(match=pattern, count=1000))


def bench_schemas(pg_database) -> list[str]:
    with pg_database.connect() as conn:
        return [row[0] for row in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'storagectl_bench_%'")]


def sqlite_tables(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


@pytest.fixture
def sqlite_file(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE log (n INTEGER)")
    return path


# -- Redis ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("workload", ["get", "set", "mixed", "hset", "hget", "lpush", "rpop", "zadd",
                                      "zrange", "pubsub"])
def test_every_redis_workload_counts_and_cleans_up(cli, write_config, redis_db, workload):
    redis_db.client().set("user:1", "kept")
    config = write_config("backends:\n" + redis_db.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", workload, "-c", "3", "-n", "300",
                 "--warmup", "0", "--keyspace", "500", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 300 and data["errors"] == {} and data["warmup"]["ops"] == 0
    assert data["latency_ms"]["p50"] > 0 and data["load"]["mode"] == "closed-loop"
    assert data["environment"]["server_version"].startswith("Redis ")
    assert redis_keys(redis_db) == []
    assert redis_db.client().get("user:1") == b"kept"
    # `set`, `lpush`, ... fill nothing: "setup: filling" was printed for them too
    filled = workload in ("get", "mixed", "hget", "rpop", "zrange")
    assert ("bench: setup: filling storagectl:bench:" in result.stderr) is filled, result.stderr
    assert ("(500 items)" in result.stderr) is filled and data["setup"]["items"] == (500 if filled else 0)


def test_rpop_on_the_emptied_list_counts_as_empty_not_as_a_pop(cli, write_config, redis_db):
    """Past its --keyspace items RPOP answers nil: that is no pop, and a default warm-up empties the list
    before the measurement starts, so every op counted as a fast successful pop."""
    config = write_config("backends:\n" + redis_db.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", "rpop", "-c", "2", "-P", "4", "-n", "300",
                 "--warmup", "0", "--keyspace", "100", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 300 and data["ok"] == 100 and data["errors"] == {"EMPTY": 200}
    assert redis_keys(redis_db) == []
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", "rpop", "-n", "10", "--warmup", "0.2s",
                 "--keyspace", "1")  # the warm-up's first op pops the one item
    assert result.exit_code == 1 and "every operation failed (EMPTY: 10)" in result.stderr
    assert "Try: a --keyspace above the ops of the warm-up and the run" in result.stderr


def test_redis_pipeline_and_open_loop(cli, write_config, redis_db):
    config = write_config("backends:\n" + redis_db.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", "get", "-c", "2", "-P", "16", "-T", "1s",
                 "--warmup", "0", "--rate", "3200", "--keyspace", "100", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["load"]["mode"] == "open-loop" and data["corrected_latency_ms"]["p99"] > 0
    assert data["ops"] == pytest.approx(3200, rel=0.05) and data["ops"] % 16 == 0
    assert redis_keys(redis_db) == []
    assert_hdr_matches(data)


def assert_hdr_matches(data) -> None:
    """README: `hdr` holds the base64 histograms that `HdrHistogram.decode` reads, of every success."""
    from hdrh.histogram import HdrHistogram

    for name, summary in (("service", data["latency_ms"]), ("corrected", data["corrected_latency_ms"])):
        assert bool(data["hdr"][name]) == (summary is not None)
        if summary is not None:
            histogram = HdrHistogram.decode(data["hdr"][name])
            assert histogram.get_total_count() == data["ok"]
            assert histogram.get_value_at_percentile(99) / 1000 == summary["p99"]


def test_interrupt_removes_the_redis_keys_and_exits_130(write_config, redis_db):
    config = load_config(write_config("backends:\n" + redis_db.backend_yaml()))
    backend = backend_from_config(config, "cache")

    def interrupt(row):
        assert redis_keys(redis_db) != []  # the keyspace is there while the run goes on
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        run_bench(backend, BenchOptions(workload="get", clients=2, duration_s=5, warmup_s=0, keyspace=300),
                  on_second=interrupt)
    assert caught.value.exit_code == 130 and "removed" in caught.value.message
    assert redis_keys(redis_db) == []


def cluster_commands(cluster, command: str) -> list[int]:
    """Calls of ``command`` on each primary since its CONFIG RESETSTAT."""
    return [int(node.client().info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
            for node in cluster.nodes]


def cluster_bench_keys(cluster) -> list[bytes]:
    return [key for node in cluster.nodes for key in node.client().scan_iter(match="storagectl:bench:*", count=1000)]


@pytest.mark.parametrize("workload, command, args", [
    ("get", "get", ["-c", "3"]),
    ("set", "set", ["-c", "4", "-j", "2", "-P", "4"]),  # worker 2's clients go on with the next primaries
    ("lpush", "lpush", ["-c", "2"]),
    ("pubsub", "publish", ["-c", "3"]),
])
def test_redis_cluster_workloads_run_on_every_primary_and_clean_every_node(cli, write_config, redis_cluster,
                                                                           workload, command, args):
    redis_cluster.client().set("user:1", "kept")
    for node in redis_cluster.nodes:
        node.client().config_resetstat()
    config = write_config("backends:\n" + redis_cluster.backend_yaml("c"))
    result = cli("-c", config, "bench", "run", "-b", "c", "-w", workload, *args, "-n", "301", "--warmup", "0",
                 "--keyspace", "500", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 301 and data["errors"] == {} and data["environment"]["server_version"].startswith("Redis ")
    calls = cluster_commands(redis_cluster, command)
    # every op reached a server once, none redirected (MOVED would be an error); workers (-j) run unmeasured
    # until their common start
    assert sum(calls) == 301 + data["warmup"]["ops"]
    if workload == "lpush":  # one key: every client on its primary
        assert sorted(calls)[:2] == [0, 0]
    else:
        assert all(calls), calls  # the clients are spread over the primaries
    assert cluster_bench_keys(redis_cluster) == []  # the namespace is gone from every node
    assert redis_cluster.client().get("user:1") == b"kept"


def test_redis_cluster_get_reads_the_keyspace_filled_on_every_primary(cli, write_config, redis_cluster):
    """The fill writes each key on the primary of its slot; the GETs then find values (no nil, no MOVED)."""
    for node in redis_cluster.nodes:
        node.client().config_resetstat()
    config = write_config("backends:\n" + redis_cluster.backend_yaml("c"))
    result = cli("-c", config, "bench", "run", "-b", "c", "-w", "get", "-c", "3", "-n", "300", "--warmup", "0",
                 "--keyspace", "300", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["setup"]["items"] == 300
    hits = [int(node.client().info("stats")["keyspace_hits"]) for node in redis_cluster.nodes]
    misses = [int(node.client().info("stats")["keyspace_misses"]) for node in redis_cluster.nodes]
    assert sum(hits) == 300 and sum(misses) == 0 and all(hits)
    assert cluster_bench_keys(redis_cluster) == []


# -- PostgreSQL -----------------------------------------------------------------------------------
@pytest.mark.parametrize("workload", ["select-pk", "insert", "update-pk", "tpcb-like"])
def test_every_postgres_workload_runs_in_its_own_schema(cli, write_config, pg_database, workload):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE pgbench_accounts (aid int)")  # the user's own: never touched
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", workload, "-c", "2", "-n", "200",
                 "--warmup", "0", "--keyspace", "1000", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 200 and data["errors"] == {}
    assert data["setup"]["namespace"].startswith("storagectl_bench_") and data["setup"]["items"] == 1000
    assert bench_schemas(pg_database) == []
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.pgbench_accounts").fetchone()[0] == 0


def test_postgres_sql_file_executes_exactly_the_ops_reported(cli, write_config, pg_database, tmp_path):
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE public.bench_log (n int, aid int)")
    script = tmp_path / "log.sql"
    script.write_text("\\set n random(1, 10)\n\\set aid random(1, :keyspace)\n"
                      "INSERT INTO bench_log VALUES (:n, :aid);\n"
                      "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n")
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{script}", "-c", "3", "-T", "1s",
                 "--warmup", "500ms", "--keyspace", "100", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    with pg_database.connect() as conn:
        rows, bad = conn.execute("SELECT count(*), count(*) FILTER (WHERE n NOT BETWEEN 1 AND 10 OR aid > 100) "
                                 "FROM bench_log").fetchone()
    assert data["warmup"]["ops"] > 0 and data["ops"] > 0
    assert rows == data["ops"] + data["warmup"]["ops"] and bad == 0
    assert bench_schemas(pg_database) == []


def test_postgres_errors_are_counted_by_sqlstate(cli, write_config, pg_database, tmp_path):
    script = tmp_path / "fail.sql"
    script.write_text("\\set zero 0\nBEGIN;\nSELECT 1 / :zero;\nEND;\n")
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{script}", "-n", "50", "--warmup", "0",
                 "--keyspace", "10", "-o", "json")
    assert result.exit_code == 1, result.stderr  # not one op succeeded: a result no runbook should take
    data = result.json()
    assert data["errors"] == {"DivisionByZero": 50} and data["ok"] == 0 and data["latency_ms"] is None
    assert "error: every operation failed (DivisionByZero: 50)" in result.stderr


@pytest.mark.parametrize("statement", [
    "SELECT repeat('x', 300000 + :n);",  # one row larger than the client's read buffer
    "SELECT g, repeat('y', 50) FROM generate_series(1, 3000 + :n) AS g;",  # replies split across reads
    "SELECT 1 / (:n::int - :n::int);",  # an error after a fine op, on the same connection
])
def test_postgres_replies_of_any_size_count_one_op_each(cli, write_config, pg_database, tmp_path,
                                                        statement):
    script = tmp_path / "big.sql"
    script.write_text(f"\\set n random(1, 10)\n{statement}\n")
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{script}", "-c", "2", "-n", "40",
                 "--warmup", "0", "--keyspace", "10", "-o", "json")
    assert result.exit_code == (1 if "/" in statement else 0), result.stderr  # 1: not one op succeeded
    data = result.json()
    assert data["ops"] == 40
    assert data["errors"] == ({"DivisionByZero": 40} if "/" in statement else {})


def test_postgres_a_failed_op_leaves_the_next_one_clean(cli, write_config, pg_database, tmp_path):
    """select-pk's shape (one statement, one drawn value) sends without resetting any state: the
    failed op's error must not stick to the ops after it on that connection."""
    script = tmp_path / "half.sql"
    script.write_text("\\set n random(1, 2)\nSELECT 1 / (:n - 1);\n")  # fails when n is 1
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{script}", "-c", "1", "-n", "200",
                 "--warmup", "0", "--keyspace", "10", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 200 and 50 < data["ok"] < 150  # about half each way, whatever the draws
    assert data["errors"] == {"DivisionByZero": 200 - data["ok"]}


def test_interrupt_drops_the_postgres_schema(write_config, pg_database):
    config = load_config(write_config("backends:\n" + pg_database.backend_yaml()))
    backend = backend_from_config(config, "pg")

    def interrupt(row):
        assert len(bench_schemas(pg_database)) == 1
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_bench(backend, BenchOptions(workload="tpcb-like", clients=2, duration_s=5, warmup_s=0, keyspace=500),
                  on_second=interrupt)
    assert bench_schemas(pg_database) == []


def test_closing_a_client_cut_off_mid_transaction_never_waits_for_a_lock(write_config, pg_database, tmp_path):
    """Ctrl-C in tpcb-like: one client waits for a row lock that another client of the same loop holds
    in a transaction it will never end. Closing the waiting client must not wait for its answer (it
    hung for ever, and the teardown's DROP SCHEMA behind it)."""
    import select
    import threading

    from storagectl.loadgen.workloads import WorkloadOptions, make_workload

    script = tmp_path / "lock.sql"
    script.write_text("BEGIN;\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1;\nEND;\n")
    config = load_config(write_config("backends:\n" + pg_database.backend_yaml()))
    workload = make_workload(backend_from_config(config, "pg"),
                             WorkloadOptions(name=f"sql:{script}", run_id="locktest", keyspace=10))
    workload.setup()
    try:
        holder, waiter = workload.open_client(), workload.open_client()

        def step(client):  # read the statement's answer: the script's next statement goes out
            select.select([client], [], [], 10)
            while client.collect() == [] and client._step == before[client]:
                select.select([client], [], [], 10)

        for client in (holder, waiter):
            client.send(1)  # BEGIN
            before = {client: client._step}
            step(client)  # UPDATE sent; the waiter's waits for the holder's lock
        select.select([holder], [], [], 10)  # the holder's UPDATE is done: idle in its transaction
        closing = threading.Thread(target=lambda: (waiter.close(), holder.close()), daemon=True)
        closing.start()
        closing.join(30)
        hung = closing.is_alive()
        if hung:  # end the two sessions, so the close returns and the teardown can drop the schema
            with pg_database.connect() as conn:
                for client in (holder, waiter):
                    conn.execute("SELECT pg_terminate_backend(%s)", (client._pg.backend_pid,))
            closing.join(30)
        assert not hung, "closing the waiting client hung on the lock"
    finally:
        workload.teardown()
    assert bench_schemas(pg_database) == []


def test_a_connection_lost_mid_run_is_a_one_line_error(write_config, pg_database):
    """libpq's message runs over several lines (CONTEXT, 'This probably means ...'): the error
    keeps its first."""
    import select

    from storagectl.errors import BackendUnavailable
    from storagectl.loadgen.workloads import WorkloadOptions, make_workload

    config = load_config(write_config("backends:\n" + pg_database.backend_yaml()))
    workload = make_workload(backend_from_config(config, "pg"),
                             WorkloadOptions(name="select-pk", run_id="losttest", keyspace=10))
    workload.setup()
    try:
        client = workload.open_client()
        with pg_database.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (client._pg.backend_pid,))
        client.send(1)
        with pytest.raises(BackendUnavailable) as raised:
            while True:
                select.select([client], [], [], 10)
                client.collect()
        assert "\n" not in str(raised.value) and "terminating connection" in str(raised.value)
        client._pg.finish()
    finally:
        workload.teardown()


def test_a_bad_sql_file_is_a_usage_error_and_leaves_nothing(cli, write_config, pg_database, tmp_path):
    script = tmp_path / "bad.sql"
    script.write_text("SELECT * FROM no_such_table WHERE id = 1;\n")
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{script}", "-n", "5", "--keyspace", "10")
    assert result.exit_code == 2 and "fails to prepare" in result.stderr and "removed" in result.stderr
    assert bench_schemas(pg_database) == []
    script.write_text("SELEC 1;\n")  # PostgreSQL's message adds "LINE 1: SELEC 1" and a caret line
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{script}", "-n", "5", "--keyspace", "10")
    error = [line for line in result.stderr.splitlines() if not line.startswith("bench:")]
    assert result.exit_code == 2 and len(error) == 1, result.stderr
    assert f'{script}: statement 1 fails to prepare: syntax error at or near "SELEC" (benchmark data under' in error[0]
    # with -c 2 the default -j forks workers: their error reads as the one process's would
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{script}", "-n", "5", "--keyspace", "10",
                 "-c", "2", "-j", "2")
    error = [line for line in result.stderr.splitlines() if not line.startswith("bench:")]
    assert result.exit_code == 2 and len(error) == 1, result.stderr
    assert error[0].startswith(f"error: {script}: statement 1 fails to prepare: "), error[0]
    unset = tmp_path / "unset.sql"
    unset.write_text("SELECT :nope;\n")
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{unset}", "-n", "5")
    assert result.exit_code == 2 and ":nope is used but never \\set" in result.stderr


# -- SQLite ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("workload", ["select-pk", "insert", "update-pk", "tpcb-like"])
def test_every_sqlite_workload_uses_prefixed_tables(cli, write_config, sqlite_file, workload):
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", workload, "-c", "2", "-n", "100",
                 "--warmup", "0", "--keyspace", "1000", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 100 and data["errors"] == {}
    assert data["setup"]["namespace"].startswith("storagectl_bench_")
    assert sorted(sqlite_tables(sqlite_file)) == ["log", "users"]


def test_the_per_second_line_of_a_short_counted_run_gives_ops_not_a_rate(cli, write_config, sqlite_file):
    """A 50-op run ends inside its first second: "second 1: 50 ops/s" contradicted the table's ops/s."""
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "50", "--warmup", "0",
                 "--keyspace", "10")
    assert result.exit_code == 0, result.stderr
    assert "second 1: 50 ops, p99 " in result.stderr and "ops/s, p99" not in result.stderr
    assert "bench: run\n" in result.stderr
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "50", "--warmup", "0.1s",
                 "--keyspace", "10")
    assert "bench: run: warm-up 0.1s first, not measured\n" in result.stderr  # else the warm-up looks like a hang


def test_an_open_loop_that_misses_its_rate_says_so(cli, write_config, sqlite_file):
    """--rate far above what one client does: the run sends its backlog late and ran 4.5x its -T, the
    corrected latency measuring that backlog, without a word."""
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "200", "--warmup", "0",
                 "--keyspace", "10", "--rate", "100000000", "-o", "json")  # 200 ops in 2 us: never kept
    assert result.exit_code == 0, result.stderr
    assert "--rate 100,000,000 was not reached (" in result.json()["environment"]["warnings"][-1]
    assert "warning: --rate 100,000,000 was not reached" in result.stderr
    kept = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "20", "--warmup", "0",
               "--keyspace", "10", "--rate", "200", "-o", "json")  # an op per 5 ms: kept
    assert not any("was not reached" in w for w in kept.json()["environment"]["warnings"])


def test_a_busy_sqlite_run_gives_the_in_process_warning_only(cli, write_config, sqlite_file, monkeypatch):
    """It also warned that "the client, not the server, was the bottleneck": there is no server."""
    from storagectl.loadgen import run as bench_run

    cpu = iter(range(0, 10**9, 10**6))  # a million CPU seconds per reading: far above one core
    monkeypatch.setattr(bench_run, "_cpu_seconds", lambda: next(cpu))
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "20", "--warmup", "0",
                 "--keyspace", "10", "-o", "json")
    assert result.exit_code == 0, result.stderr
    env = result.json()["environment"]
    assert env["client_cpu_pct"] > 90 and env["client_bound"] is False
    assert any(w.startswith("the database runs inside the client process") for w in env["warnings"])
    assert not any("not the server" in w for w in env["warnings"]) and "not the server" not in result.stderr


def test_save_into_a_missing_folder_is_refused_before_the_run(cli, write_config, sqlite_file, tmp_path):
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "50", "--warmup", "0",
                 "--keyspace", "10", "--save", tmp_path / "missing" / "r.json")
    assert result.exit_code == 2, result.stderr
    assert "folder" in result.stderr and "does not exist" in result.stderr and "bench: setup" not in result.stderr


def test_save_writes_the_result_it_printed(cli, write_config, sqlite_file, tmp_path):
    import json

    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    saved = tmp_path / "r.json"
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "50", "--warmup", "0",
                 "--keyspace", "10", "--save", saved, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(saved.read_text()) == result.json()


def test_sqlite_sql_file_counts_and_interrupt_cleans(cli, write_config, sqlite_file, tmp_path):
    script = tmp_path / "log.sql"
    script.write_text("\\set aid random(1, :keyspace)\nINSERT INTO log VALUES (:aid);\n"
                      "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n")
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", f"sql:{script}", "-n", "150", "--warmup", "0",
                 "--keyspace", "100", "-o", "json")
    assert result.exit_code == 0, result.stderr
    with sqlite3.connect(sqlite_file) as conn:
        assert conn.execute("SELECT count(*) FROM log").fetchone()[0] == result.json()["ops"] == 150
    backend = backend_from_config(load_config(config), "lite")

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_bench(backend, BenchOptions(workload="select-pk", clients=2, duration_s=5, warmup_s=0, keyspace=100),
                  on_second=interrupt)
    assert sorted(sqlite_tables(sqlite_file)) == ["log", "users"]


def test_a_bad_sqlite_script_is_refused_at_setup_as_on_postgres(cli, write_config, sqlite_file, tmp_path):
    """Each op failed and the run ended in exit 1 with a table of timed errors, where PostgreSQL refuses
    the script before the run: every statement is compiled at setup, none is run."""
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    script = tmp_path / "bad.sql"
    script.write_text("\\set aid random(1, :keyspace)\nINSERT INTO log VALUES (:aid);\nSELEC 1;\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", f"sql:{script}", "-n", "5", "--warmup", "0",
                 "--keyspace", "10")
    error = [line for line in result.stderr.splitlines() if not line.startswith("bench:")]
    assert result.exit_code == 2 and len(error) == 1 and result.stdout == "", result.stderr
    assert error[0].startswith(f'error: {script}: statement 2 fails to prepare: near "SELEC": syntax error '
                               "(benchmark data under storagectl_bench_")
    assert error[0].endswith(" removed)")
    assert sorted(sqlite_tables(sqlite_file)) == ["log", "users"]
    with sqlite3.connect(sqlite_file) as conn:
        assert conn.execute("SELECT count(*) FROM log").fetchone()[0] == 0  # the INSERT was compiled, not run
    script.write_text("SELECT * FROM no_such_table;\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", f"sql:{script}", "-n", "5", "--warmup", "0",
                 "--keyspace", "10")
    assert result.exit_code == 2 and "statement 1 fails to prepare: no such table: no_such_table" in result.stderr


def test_a_connection_that_fails_in_setup_says_nothing_was_created(cli, write_config, tmp_path):
    """It said "(benchmark data under storagectl_bench_… removed)" when it never reached the server."""
    config = write_config(f"backends:\n  pg:\n    kind: postgres\n"
                          f"    url: postgresql://postgres@127.0.0.1:{free_port()}/x\n    retry:\n      attempts: 1\n"
                          f"  lite:\n    kind: sqlite\n    path: {tmp_path / 'missing.db'}\n")
    for backend, code in (("pg", 3), ("lite", 5)):
        result = cli("-c", config, "bench", "run", "-b", backend, "-w", "select-pk", "-n", "5", "--warmup", "0")
        error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.exit_code == code and len(error) == 1, result.stderr
        assert error[0].endswith("(no benchmark data was created)") and "removed" not in error[0]


def test_a_closed_stderr_never_skips_the_teardown(write_config, sqlite_file):
    """`bench run ... 2>&1 | head -2`: the next progress line raised BrokenPipeError, and so did the
    "teardown" line announced in the error path, so the namespace was left behind."""
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    backend = backend_from_config(load_config(config), "lite")

    def closed_pipe(*args):
        raise BrokenPipeError(32, "Broken pipe")

    phases = []

    def phase(text):
        phases.append(text)
        if text == "teardown":
            closed_pipe()

    with pytest.raises(BrokenPipeError):
        run_bench(backend, BenchOptions(workload="select-pk", count=50, warmup_s=0, keyspace=10),
                  on_second=closed_pipe, on_phase=phase)
    assert phases[-1] == "teardown" and sorted(sqlite_tables(sqlite_file)) == ["log", "users"]
    phases.clear()  # a finished run: the "teardown" line fails alone
    run_bench(backend, BenchOptions(workload="select-pk", count=50, warmup_s=0, keyspace=10), on_phase=phase)
    assert phases[-1] == "teardown" and sorted(sqlite_tables(sqlite_file)) == ["log", "users"]


def failing_teardown(monkeypatch):
    from storagectl.loadgen.workloads import sqlite as sqlite_workloads

    def teardown(self):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(sqlite_workloads.SQLiteWorkload, "teardown", teardown)


def test_a_failed_teardown_after_an_error_says_the_data_may_remain(cli, write_config, sqlite_file, monkeypatch):
    """It said "removed" after logging a timestamped WARNING line that it was not."""
    from storagectl.errors import BackendUnavailable
    from storagectl.loadgen.workloads import sqlite as sqlite_workloads

    def setup_then_fail(self):
        raise BackendUnavailable("the server went away")

    monkeypatch.setattr(sqlite_workloads.SQLiteWorkload, "setup", setup_then_fail)
    failing_teardown(monkeypatch)
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "5", "--warmup", "0")
    assert result.exit_code == 3, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "removed" not in error[0] and "WARNING" not in result.stderr
    assert "the server went away (benchmark data under storagectl_bench_" in error[0]
    assert "may remain: removing it failed (OperationalError); remove it by hand" in error[0]


def test_a_failed_teardown_after_a_run_keeps_its_figures_and_warns(cli, write_config, sqlite_file, monkeypatch):
    failing_teardown(monkeypatch)
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-n", "5", "--warmup", "0",
                 "--keyspace", "10", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["ops"] == 5
    assert "may remain: removing it failed (OperationalError)" in result.json()["environment"]["warnings"][-1]
    assert "warning: benchmark data under storagectl_bench_" in result.stderr


# -- options and safety ---------------------------------------------------------------------------
def test_duration_and_count_together_name_both(cli, write_config, redis_db):
    config = write_config("backends:\n" + redis_db.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", "get", "-T", "5s", "-n", "10")
    assert result.exit_code == 2
    assert "-T/--duration and -n/--count are mutually exclusive" in result.stderr
    assert redis_keys(redis_db) == []


@pytest.mark.parametrize("args, message", [
    (["-w", "nope"], "unknown workload 'nope' for redis backend 'cache'; workloads: get, set"),
    (["-w", "get", "-c", "0"], "--clients must be at least 1"),
    (["-w", "get", "--rate", "0"], "--rate must be above 0"),
    (["-w", "get", "--rate", "1e10"], "--rate must be at most 100,000,000"),  # a -T run never ended
    (["-w", "get", "--rate", "nan"], "--rate must be above 0"),  # was an internal error: NaN to an interval
    (["-w", "mixed", "--ratio", "1-2"], "--ratio '1-2' is not SET:GET"),
    (["-w", "sql:x.sql"], "unknown workload 'sql:x.sql'"),
])
def test_bad_options_are_one_line_usage_errors(cli, write_config, redis_db, args, message):
    config = write_config("backends:\n" + redis_db.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "cache", "-n", "5", *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_pipeline_is_refused_outside_redis(cli, write_config, pg_database):
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", "select-pk", "-P", "4", "-n", "5")
    assert result.exit_code == 2 and "--pipeline applies to Redis workloads only" in result.stderr
    assert bench_schemas(pg_database) == []


def test_production_backend_is_refused_without_yes(cli, write_config, redis_db):
    config = write_config("backends:\n" + redis_db.backend_yaml(extra="production: true\n"))
    refused = cli("-c", config, "bench", "run", "-b", "cache", "-w", "set", "-n", "20", "--warmup", "0")
    assert refused.exit_code == 2 and "marked production: true" in refused.stderr and "--yes" in refused.stderr
    assert redis_db.client().dbsize() == 0
    allowed = cli("-c", config, "bench", "run", "-b", "cache", "-w", "set", "-n", "20", "--warmup", "0", "--yes")
    assert allowed.exit_code == 0, allowed.stderr


def test_yes_help_says_what_it_does_here(cli):
    """A production backend is refused without --yes even on a terminal: nothing asks."""
    result = cli("bench", "run", "--help")
    assert "production: true" in result.stdout and "asks on a terminal" not in result.stdout
    assert "[default: 5s]" in result.stdout  # --warmup's default as a duration is given, not "5.0"


def test_production_must_be_a_boolean(cli, write_config, redis_db):
    config = write_config("backends:\n" + redis_db.backend_yaml(extra="production: maybe\n"))
    result = cli("-c", config, "config", "validate")
    assert result.exit_code == 2 and "production" in result.stderr


def test_repeat_reports_every_run_and_the_spread(cli, write_config, redis_db, tmp_path):
    config = write_config("backends:\n" + redis_db.backend_yaml())
    saved = tmp_path / "r.json"
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", "get", "-n", "200", "--warmup", "0", "-x", "3",
                 "--keyspace", "50", "--save", saved)
    assert result.exit_code == 0, result.stderr
    assert "median (spread" in result.stdout and "closed loop" in result.stderr
    import json

    data = json.loads(saved.read_text())
    assert len(data["runs"]) == 3 and data["repeat"]["runs"] == 3
    assert data["ops_per_s"] in [run["ops_per_s"] for run in data["runs"]]
    assert data["hdr"]["service"] and data["series"]
    assert_hdr_matches(data)


def test_the_saved_histogram_decodes_with_hdrhistogram(cli, write_config, redis_db, tmp_path):
    """`hdr` is HdrHistogram's own base64 form: `HdrHistogram.decode` reads it as the README says,
    and it holds every measured op with the percentiles the result reports."""
    from hdrh.histogram import HdrHistogram

    config = write_config("backends:\n" + redis_db.backend_yaml())
    saved = tmp_path / "r.json"
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", "get", "-n", "300", "--warmup", "0",
                 "--keyspace", "50", "--save", saved)
    assert result.exit_code == 0, result.stderr
    data = json.loads(saved.read_text())
    histogram = HdrHistogram.decode(data["hdr"]["service"])
    assert histogram.get_total_count() == data["ops"] == 300
    assert histogram.get_value_at_percentile(99) / 1000 == pytest.approx(data["latency_ms"]["p99"], abs=0.001)
    assert data["hdr"]["corrected"] is None


# -- TimescaleDB (PGlite: one session, so one client) ---------------------------------------------
@pytest.mark.parametrize("workload", ["ts-insert", "ts-range", "select-pk"])
def test_timescaledb_workloads(cli, write_config, timescale_db, workload):
    config = write_config("backends:\n" + timescale_db.backend_yaml(name="ts", kind="timescaledb"))
    result = cli("-c", config, "bench", "run", "-b", "ts", "-w", workload, "-n", "20", "--warmup", "0",
                 "--keyspace", "2000", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 20 and data["errors"] == {}
    with timescale_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'storagectl_bench_%'"
                            ).fetchone()[0] == 0


def test_ts_workloads_are_timescaledb_only(cli, write_config, pg_database):
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", "ts-insert", "-n", "5")
    assert result.exit_code == 2 and "unknown workload 'ts-insert' for postgres" in result.stderr


def test_ctrl_c_of_the_cli_removes_the_namespace_and_exits_130(write_config, redis_db):
    """A real SIGINT to a real process, mid-run: the teardown runs, the message says so."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    config = write_config("backends:\n" + redis_db.backend_yaml())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "storagectl", "-c", str(config), "bench", "run", "-b", "cache",
                                "-w", "set", "-c", "2", "-T", "60s", "--warmup", "0", "--keyspace", "200"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    while process.stderr.readline().startswith("bench:") or not redis_keys(redis_db):
        assert time.monotonic() < deadline and process.poll() is None
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted (benchmark data under storagectl:bench:" in stderr and "removed" in stderr
    assert redis_keys(redis_db) == []


def test_the_environment_warns_when_the_client_was_the_bottleneck():
    from storagectl.loadgen.result import environment

    busy = environment("Redis 7", 0.97, driver_in_process=False)
    assert busy["client_bound"] and "the client, not the server" in busy["warnings"][0]
    assert busy["client_cpu_pct"] == 97.0 and busy["client_cpus"] >= 1
    idle = environment("Redis 7", 0.3, driver_in_process=False)
    assert not idle["client_bound"] and idle["warnings"] == []
    assert "inside the client process" in environment("SQLite 3", 0.3, driver_in_process=True)["warnings"][0]
    in_process = environment("SQLite 3", 0.97, driver_in_process=True)  # its CPU is the database's work too
    assert not in_process["client_bound"] and len(in_process["warnings"]) == 1
    assert "inside the client process" in in_process["warnings"][0]
    crowded = environment("Redis 7", 0.3, driver_in_process=False, load_average=64.0)
    assert crowded["client_load_average"] == 64.0 and "the client machine was busy" in crowded["warnings"][0]


# -- worker processes (-j) ------------------------------------------------------------------------
def test_split_plan_shares_out_clients_count_and_rate_exactly():
    from storagectl.loadgen.engine import LoadPlan
    from storagectl.loadgen.workers import split_plan

    plans = split_plan(LoadPlan(clients=5, count=1001, rate=500.0), 2)
    assert [p.clients for p in plans] == [3, 2] and sum(p.count for p in plans) == 1001
    assert sum(p.rate for p in plans) == pytest.approx(500.0)


def test_open_loop_workers_interleave_their_schedules():
    """Each worker sends at its share of --rate from the common start: without an offset per worker
    their slots fell on the same instants, the requests going out in bursts of -j at a time."""
    from storagectl.loadgen.engine import NS, LoadPlan
    from storagectl.loadgen.workers import schedule_offsets, split_plan

    plan = LoadPlan(clients=4, duration_s=1, rate=1000.0)
    offsets = schedule_offsets(plan, 2)
    slots = sorted(offset + k * int(NS / share.rate)
                   for share, offset in zip(split_plan(plan, 2), offsets, strict=True) for k in range(500))
    gaps = {later - earlier for earlier, later in zip(slots, slots[1:], strict=False)}
    assert gaps == {NS // 1000}  # one request every millisecond, as --rate 1000 asks
    assert schedule_offsets(LoadPlan(clients=4, duration_s=1), 2) == [0, 0]  # closed loop: one start


def test_default_workers_one_per_cpu_for_a_postgres_closed_loop(monkeypatch):
    """Without -j: a PostgreSQL closed loop runs a process per CPU (at most one per client), as pgbench -j
    is set; open loop and Redis keep one loop."""
    from storagectl.loadgen import workloads

    monkeypatch.setattr(workloads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(workloads.os, "sched_getaffinity", lambda pid: {0, 1})
    assert [workloads.default_workers(kind, clients, False) for kind, clients in
            (("postgres", 8), ("postgres", 1), ("postgres", 50), ("timescaledb", 8))] == [2, 1, 2, 2]
    # a cpuset of 2 CPUs of 8: a process per CPU it may use (8 would take turns on 2, none of them pinned)
    monkeypatch.setattr(workloads.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(workloads.os, "sched_getaffinity", lambda pid: {3, 5})
    assert workloads.default_workers("postgres", 8, False) == 2
    assert workloads.default_workers("postgres", 8, True) == 1
    assert workloads.default_workers("redis", 50, False) == 1
    assert workloads.default_workers("sqlite", 8, False) == 1


def test_postgres_without_j_runs_a_worker_per_cpu_and_counts_every_op(cli, write_config, pg_database):
    config = write_config("backends:\n" + pg_database.backend_yaml())
    closed = cli("-c", config, "bench", "run", "-b", "pg", "-w", "select-pk", "-c", "3", "-n", "301",
                 "--warmup", "0", "--keyspace", "100", "-o", "json")
    assert closed.exit_code == 0, closed.stderr
    assert closed.json()["load"]["workers"] == min(3, len(os.sched_getaffinity(0))) and closed.json()["ops"] == 301
    opened = cli("-c", config, "bench", "run", "-b", "pg", "-w", "select-pk", "-c", "3", "-n", "20", "--rate", "2000",
                 "--warmup", "0", "--keyspace", "100", "-o", "json")
    assert opened.exit_code == 0, opened.stderr
    assert opened.json()["load"]["workers"] == 1 and opened.json()["ops"] == 20
    assert bench_schemas(pg_database) == []


def test_workers_count_every_op_and_clean_up_redis(cli, write_config, redis_db):
    config = write_config("backends:\n" + redis_db.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", "lpush", "-c", "4", "-j", "2", "-n", "1001",
                 "--warmup", "0", "-P", "8", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["ops"] == 1001 and data["load"]["workers"] == 2
    assert sum(row["ops"] for row in data["series"]) == 1001
    assert data["latency_ms"]["p50"] > 0 and redis_keys(redis_db) == []


def test_workers_on_postgres_execute_exactly_the_ops_reported(cli, write_config, pg_database, tmp_path):
    """Every op of every worker reaches the server once, each worker with draws of its own (the forked
    workers start from the parent's random state)."""
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE public.bench_log (n bigint)")
    script = tmp_path / "log.sql"
    script.write_text("\\set n random(1, 4000000000000000000)\nINSERT INTO bench_log VALUES (:n);\n")
    config = write_config("backends:\n" + pg_database.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "pg", "-w", f"sql:{script}", "-c", "3", "-j", "2", "-T", "1s",
                 "--warmup", "300ms", "--keyspace", "10", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    with pg_database.connect() as conn:
        rows, distinct = conn.execute("SELECT count(*), count(DISTINCT n) FROM bench_log").fetchone()
    assert rows == data["ops"] + data["warmup"]["ops"] and data["ops"] > 0
    assert distinct == rows
    assert bench_schemas(pg_database) == []


def test_interrupt_with_workers_ends_them_and_cleans_up(write_config, redis_db):
    config = load_config(write_config("backends:\n" + redis_db.backend_yaml()))

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_bench(backend_from_config(config, "cache"),
                  BenchOptions(workload="get", clients=2, workers=2, duration_s=5, warmup_s=0, keyspace=100),
                  on_second=interrupt)
    assert redis_keys(redis_db) == []


@pytest.mark.parametrize("args, message", [
    (["-c", "2", "-j", "3"], "-j/--workers 3 is more than the 2 clients"),
    (["-j", "0"], "-j/--workers must be at least 1"),
])
def test_bad_worker_counts(cli, write_config, redis_db, args, message):
    config = write_config("backends:\n" + redis_db.backend_yaml())
    result = cli("-c", config, "bench", "run", "-b", "cache", "-w", "get", "-n", "5", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_workers_are_refused_for_threaded_kinds(cli, write_config, sqlite_file):
    config = write_config(f"backends:\n  lite:\n    kind: sqlite\n    path: {sqlite_file}\n")
    result = cli("-c", config, "bench", "run", "-b", "lite", "-w", "select-pk", "-c", "2", "-j", "2", "-n", "5")
    assert result.exit_code == 2 and "-j/--workers applies to PostgreSQL, TimescaleDB and Redis" in result.stderr



class SlowClosingWorkload:
    """Clients on a pipe that answer at once and take a while to close (as PostgreSQL clients do with a
    DEALLOCATE per statement); each finished close leaves a file named after its process."""

    def __init__(self, directory) -> None:
        self.directory = directory

    def for_worker(self, index: int, first_client: int) -> None:
        pass

    def open_client(self):
        return PipeClient(self.directory)


class PipeClient:
    eager = True

    def __init__(self, directory) -> None:
        import os

        self.directory = directory
        self._read, self._write = os.pipe()

    def fileno(self) -> int:
        return self._read

    def send(self, ops: int) -> None:
        import os

        os.write(self._write, b".")
        self._ops = ops

    def collect(self):
        import os

        os.read(self._read, 1)
        return [(self._ops, None)]

    def close(self) -> None:
        import os
        import time

        time.sleep(0.3)
        (self.directory / f"closed-{os.getpid()}-{self._read}").touch()


def test_workers_close_their_clients_before_they_end(tmp_path):
    """A worker closes its connections after it sent its result; it is not killed mid-close (each
    SIGTERM there printed a worker's traceback on stderr, and left its connections to the server)."""
    from storagectl.loadgen.engine import LoadPlan
    from storagectl.loadgen.workers import drive_workers

    outcome, _ = drive_workers(SlowClosingWorkload(tmp_path), LoadPlan(clients=4, count=200), 2, None)
    assert outcome.recorder.ops == 200
    assert len(list(tmp_path.glob("closed-*"))) == 4


class FailingWorkload(SlowClosingWorkload):
    """Each worker's first client fails to open with the given error."""

    def __init__(self, directory, error) -> None:
        super().__init__(directory)
        self.error = error

    def open_client(self):
        raise self.error


@pytest.mark.parametrize("error, expected", [
    (errors.OperationFailed("table t is gone"), "table t is gone"),  # storagectl's own, exit code 1, no hint
    (KeyError("port"), "bench worker: KeyError: 'port'"),  # the text alone would read "bench worker: 'port'"
    (RuntimeError("no route to postgresql://bench:s3cret@db/x"), "bench worker: RuntimeError: no route to "
                                                                 "postgresql://bench:***@db/x"),
])
def test_a_workers_error_reads_as_without_workers(tmp_path, error, expected):
    """storagectl's own error as it was worded, whatever its exit code and hint; anything else named by its
    type, and redacted as the CLI redacts an internal error (no password of a driver's message)."""
    from storagectl.loadgen.engine import LoadPlan
    from storagectl.loadgen.workers import drive_workers

    with pytest.raises(errors.OperationFailed) as raised:
        drive_workers(FailingWorkload(tmp_path, error), LoadPlan(clients=2, count=10), 2, None)
    assert raised.value.message == expected and raised.value.exit_code == 1


class AffinityRecordingWorkload(SlowClosingWorkload):
    """Each worker writes down the CPUs it may run on."""

    def for_worker(self, index: int, first_client: int) -> None:
        import os

        (self.directory / f"cpus-{index}").write_text(",".join(map(str, sorted(os.sched_getaffinity(0)))))


def real_affinity(pid: int) -> set[int]:
    """The kernel's, whatever a test patched os.sched_getaffinity to."""
    text = Path(f"/proc/{pid or 'self'}/status").read_text()
    listed = next(line.split(":")[1].strip() for line in text.splitlines() if line.startswith("Cpus_allowed_list"))
    cpus: set[int] = set()
    for part in listed.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def test_each_worker_runs_on_a_cpu_of_its_own_when_there_are_enough(tmp_path, monkeypatch):
    """Unpinned, two workers on 2 CPUs ran slower in some rounds (~110 k instead of ~133 k tps of select-pk
    -c 8, a sixth less), as if sharing one CPU."""
    import os

    from storagectl.loadgen import workers
    from storagectl.loadgen.engine import LoadPlan

    allowed = sorted(real_affinity(0))[:2]
    if len(allowed) < 2:
        pytest.skip("one CPU: nothing to pin to")
    # one worker per CPU storagectl may use, on any machine: this process may use two (the workers
    # report what the kernel gives them)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(allowed) if pid == 0 else real_affinity(pid))
    monkeypatch.setattr(AffinityRecordingWorkload, "for_worker", lambda self, index, first: (
        self.directory / f"cpus-{index}").write_text(",".join(map(str, sorted(real_affinity(0))))))
    outcome, _ = workers.drive_workers(AffinityRecordingWorkload(tmp_path), LoadPlan(clients=4, count=200), 2, None)
    assert outcome.recorder.ops == 200
    assert [(tmp_path / f"cpus-{index}").read_text() for index in range(2)] == [str(allowed[0]), str(allowed[1])]


def test_workers_are_pinned_only_when_each_has_a_cpu_of_those_allowed(monkeypatch):
    """Needs no second CPU (a 1-CPU machine skips the test above, not this one)."""
    import os

    from storagectl.loadgen import workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5})  # the CPUs a cpuset leaves this process
    assert workers.worker_cpus(2) == [3, 5]
    assert workers.worker_cpus(3) == [None, None, None]  # more workers than CPUs: the scheduler shares them
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert workers.worker_cpus(2) == [None, None]  # CPUs to spare: the scheduler has room
    assert workers.worker_cpus(1) == [None]  # one loop: wherever the scheduler finds room


class InterruptedPipeClient(PipeClient):
    """Its worker is interrupted mid-run (a Ctrl-C reaches every process of the group): it then closes
    its clients slowly, while the parent, interrupted too, stops the workers."""

    def collect(self):
        raise KeyboardInterrupt


class InterruptedWorkload(SlowClosingWorkload):
    def open_client(self):
        return InterruptedPipeClient(self.directory)


def test_interrupted_workers_close_their_clients_despite_the_parents_sigterm(tmp_path, capfd):
    """The parent's SIGTERM reached a worker that was closing its connections after a Ctrl-C: with the
    CLI's handler (SIGTERM raises Terminated) that was a worker's traceback on stderr mid-close."""
    import signal

    from storagectl.errors import Terminated
    from storagectl.loadgen.engine import LoadPlan
    from storagectl.loadgen.workers import drive_workers

    def terminated(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)  # as cli.main installs it, inherited by the workers
    try:
        with pytest.raises(KeyboardInterrupt):
            drive_workers(InterruptedWorkload(tmp_path), LoadPlan(clients=4, count=200), 2, None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "Traceback" not in capfd.readouterr().err
    assert len(list(tmp_path.glob("closed-*"))) == 4


@pytest.mark.parametrize("load", [
    dict(clients=3, count=1001, warmup_s=0.2),  # closed loop, with a warm-up
    dict(clients=4, count=1003, warmup_s=0, pipeline=7, workers=2),
    dict(clients=3, count=400, warmup_s=0.1, rate=2000, pipeline=3),  # open loop
    dict(clients=4, duration_s=0.5, warmup_s=0.1, workers=2, rate=2000),
])
def test_redis_server_executes_exactly_the_ops_reported_errors_included(write_config, own_redis, load):
    """Against the server's own counters (INFO commandstats of a redis-server of the test's own): every
    op sent, measured or warm-up, is reported once, and every failed one is an error of its kind
    (mixed's SETs refused with OOM from the run's start, its GETs fine)."""
    import redis

    server = redis.Redis(port=own_redis.port)
    config = load_config(write_config(f"backends:\n  own:\n    kind: redis\n    url: redis://127.0.0.1:{own_redis.port}/0\n"))

    def phase(text):
        if text.startswith("run"):
            server.config_resetstat()
            server.config_set("maxmemory-policy", "noeviction")
            server.config_set("maxmemory", 1)
        elif text == "teardown":
            server.config_set("maxmemory", 0)

    result = run_bench(backend_from_config(config, "own"), BenchOptions(workload="mixed", keyspace=200, **load),
                       on_phase=phase)
    stats = server.info("commandstats")
    gets, sets = stats["cmdstat_get"], stats.get("cmdstat_set", {"calls": 0, "rejected_calls": 0})
    assert sets["calls"] == 0 and sets["rejected_calls"] > 0
    assert gets["calls"] + sets["rejected_calls"] == result["ops"] + result["warmup"]["ops"]
    assert result["errors"] == {"OOM": result["error_count"]}
    assert result["error_count"] + result["warmup"]["errors"] == sets["rejected_calls"]
    assert sum(row["ops"] for row in result["series"]) == result["ops"]
    assert sum(row["errors"] for row in result["series"]) == result["error_count"]
    if "count" in load:
        assert result["ops"] == load["count"]
    assert server.dbsize() == 0


def test_an_interrupt_whose_teardown_failed_does_not_say_removed(write_config, redis_db, monkeypatch):
    from storagectl.errors import OperationFailed
    from storagectl.loadgen.workloads import redis as redis_workloads

    original = redis_workloads.RedisWorkload.teardown

    def failing_teardown(self):
        raise OperationFailed("the server went away")

    monkeypatch.setattr(redis_workloads.RedisWorkload, "teardown", failing_teardown)
    config = load_config(write_config("backends:\n" + redis_db.backend_yaml()))

    def interrupt(row):
        raise KeyboardInterrupt

    backend = backend_from_config(config, "cache")
    with pytest.raises(Interrupted) as raised:
        run_bench(backend, BenchOptions(workload="get", duration_s=5, warmup_s=0, keyspace=50), on_second=interrupt)
    assert "may remain: removing it failed" in str(raised.value) and " removed)" not in str(raised.value)
    monkeypatch.setattr(redis_workloads.RedisWorkload, "teardown", original)
    for key in redis_keys(redis_db):
        redis_db.client().delete(key)


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_each_run_of_workers_draws_anew(kind, monkeypatch):
    """-x N forks new workers for every run: worker 0 of run 2 must not replay run 1's draws (the
    same keys again, in cache since run 1)."""
    from types import SimpleNamespace

    from storagectl.loadgen.workloads import WorkloadOptions, make_workload

    backend = SimpleNamespace(kind=kind, name="x", settings=SimpleNamespace())
    workload = make_workload(backend, WorkloadOptions(name="get" if kind == "redis" else "select-pk", run_id="r"))
    draws = []
    for pid in (100, 200):  # the worker processes of two runs
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        workload.for_worker(0, 0)
        draws.append(workload._seed.random())
    assert draws[0] != draws[1]


_SIGNAL_AT_FORK: list[int] = []  # armed by the test below: the next fork in the parent sends this signal


def _signal_after_fork_in_parent() -> None:
    if _SIGNAL_AT_FORK:
        os.kill(os.getpid(), _SIGNAL_AT_FORK.pop())


os.register_at_fork(after_in_parent=_signal_after_fork_in_parent)  # inert unless armed


def test_a_signal_while_the_workers_are_forked_still_stops_the_run(tmp_path, capfd, monkeypatch):
    """SIGTERM to the parent alone (Kubernetes, `kill PID`) or Ctrl-C while it forked a worker: the
    handler ran inside an at-fork hook, whose exceptions Python prints and drops ("Exception ignored in
    _releaseLock"), and the CLI's handler had already set the signal to SIG_IGN: the run went on to its
    end, exit 0, deaf to every later Ctrl-C and SIGTERM."""
    import signal

    from storagectl.errors import Terminated
    from storagectl.loadgen.engine import LoadPlan
    from storagectl.loadgen.workers import drive_workers

    def terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as cli.main's handler: a second one is ignored
        raise Terminated

    import multiprocessing.context

    killed = []
    kill = multiprocessing.context.ForkProcess.kill
    monkeypatch.setattr(multiprocessing.context.ForkProcess, "kill", lambda self: (killed.append(self.pid), kill(self)))
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        _SIGNAL_AT_FORK.append(signal.SIGTERM)
        with pytest.raises(Terminated):
            drive_workers(SlowClosingWorkload(tmp_path), LoadPlan(clients=2, duration_s=3), 2, None)
    finally:
        _SIGNAL_AT_FORK.clear()
        signal.signal(signal.SIGTERM, previous)
    assert "Exception ignored" not in capfd.readouterr().err
    assert killed == []  # every worker stopped at the signal (one forked after it never opened a client)
