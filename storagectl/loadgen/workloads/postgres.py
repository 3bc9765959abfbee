"""PostgreSQL and TimescaleDB workloads, in a schema ``storagectl_bench_<id>`` dropped at teardown.

The tables are pgbench's (pgbench_accounts, _branches, _tellers, _history) so pgbench scripts run
unchanged (the schema comes first on the search_path). Clients speak libpq directly through
psycopg's ``pq`` layer: prepared statements sent asynchronously, one socket per client in the
engine's epoll loop, no Python-level cursor or row objects.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

from storagectl.errors import BackendUnavailable, FeatureUnavailable
from storagectl.loadgen.engine import ONE_DONE
from storagectl.loadgen.sqlscript import Script, load_script
from storagectl.loadgen.workloads import WorkloadOptions

PROCESS_WORKERS = True
WORKER_PER_CPU = True  # -j default: see default_workers
ACCOUNTS_PER_BRANCH = 100_000
WORKLOADS = ("select-pk", "insert", "update-pk", "tpcb-like", "sql")
TIMESCALE_WORKLOADS = ("ts-insert", "ts-range")
TS_BATCH = 100
TS_SCRIPTS = {
    "ts-insert": f"""\\set device random(1, 100)
INSERT INTO ts_metrics (time, device, value)
SELECT now() - i * interval '1 millisecond', :device, random() FROM generate_series(1, {TS_BATCH}) AS i;
""",
    "ts-range": """\\set device random(1, 100)
SELECT time_bucket('1 minute', time) AS minute, avg(value), max(value) FROM ts_metrics
WHERE device = :device AND time > now() - interval '1 hour' GROUP BY minute ORDER BY minute;
""",
}

DEFAULT_KEYSPACE = 100_000


def workload_names(kind: str) -> tuple[str, ...]:
    return WORKLOADS + TIMESCALE_WORKLOADS if kind == "timescaledb" else WORKLOADS


def make_workload(backend: Any, options: WorkloadOptions) -> PostgresWorkload:
    return PostgresWorkload(backend, options)


def scale_of(keyspace: int) -> int:
    return max(1, keyspace // ACCOUNTS_PER_BRANCH)


def pgbench_tables_sql(prefix: str, keyspace: int, series: str) -> list[str]:
    """CREATE and fill pgbench's four tables (``series`` is a set-returning expression of 1..N with
    ``{n}`` for N and yields column ``x``), keys added after the fill, as pgbench -i does."""
    scale = scale_of(keyspace)
    return [
        f"CREATE TABLE {prefix}pgbench_branches (bid int NOT NULL, bbalance int, filler char(88))",
        f"CREATE TABLE {prefix}pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84))",
        f"CREATE TABLE {prefix}pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84))",
        f"CREATE TABLE {prefix}pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, "
        "filler char(22))",
        f"INSERT INTO {prefix}pgbench_branches (bid, bbalance) SELECT x, 0 FROM {series.format(n=scale)}",
        f"INSERT INTO {prefix}pgbench_tellers (tid, bid, bbalance) SELECT x, (x - 1) / 10 + 1, 0 "
        f"FROM {series.format(n=10 * scale)}".replace("bbalance) SELECT", "tbalance) SELECT"),
        f"INSERT INTO {prefix}pgbench_accounts (aid, bid, abalance, filler) "
        f"SELECT x, (x - 1) / {ACCOUNTS_PER_BRANCH} + 1, 0, '' FROM {series.format(n=keyspace)}",
    ]


class PostgresWorkload:
    def __init__(self, backend: Any, options: WorkloadOptions) -> None:
        self.backend = backend
        self.options = options
        self.namespace = f"storagectl_bench_{options.run_id}"
        self.fill_items = options.keyspace
        self.constants = {"scale": scale_of(options.keyspace), "keyspace": options.keyspace}
        self.script: Script = load_script(options.base, options.script, self.constants, TS_SCRIPTS)
        self._seed = random.Random(options.run_id)
        self._created = False
        self._clients = 0

    def setup(self) -> int:
        schema = f'"{self.namespace}"'
        with self.backend.connect() as conn:
            self._version = self.backend.server_version(conn)
            conn.execute(f"CREATE SCHEMA {schema}")
            self._created = True
            series = "generate_series(1, {n}) AS x"
            for statement in pgbench_tables_sql(f"{schema}.", self.options.keyspace, series):
                conn.execute(statement)
            for table, key in (("branches", "bid"), ("tellers", "tid"), ("accounts", "aid")):
                conn.execute(f"ALTER TABLE {schema}.pgbench_{table} ADD PRIMARY KEY ({key})")
            if self.options.base in TIMESCALE_WORKLOADS:
                self._create_hypertable(conn, schema)
            for table in ("branches", "tellers", "accounts", "history"):
                conn.execute(f"VACUUM ANALYZE {schema}.pgbench_{table}")
        return self.options.keyspace

    def _create_hypertable(self, conn: Any, schema: str) -> None:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
            raise FeatureUnavailable(f"{self.backend.label}: the timescaledb extension is not installed",
                                     hint="Try: CREATE EXTENSION timescaledb; in this database")
        conn.execute(f"CREATE TABLE {schema}.ts_metrics (time timestamptz NOT NULL, device int, "
                     "value double precision)")
        conn.execute(f"SELECT create_hypertable('{schema}.ts_metrics', 'time')")
        conn.execute(f"INSERT INTO {schema}.ts_metrics SELECT now() - x * interval '100 milliseconds', "
                     f"x % 100 + 1, random() FROM generate_series(1, {self.options.keyspace}) AS x")

    def teardown(self) -> bool:
        if not self._created:
            return False
        with self.backend.connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.namespace}" CASCADE')
        self._created = False
        return True

    def server_version(self) -> str:
        return self._version

    def for_worker(self, index: int, first_client: int) -> None:
        self._seed = random.Random(f"{self.options.run_id}:{index}:{os.getpid()}")  # -x: each run its own draws
        self._clients = first_client

    def open_client(self) -> PgClient:
        from psycopg import pq
        from psycopg.conninfo import make_conninfo

        params = self.backend.settings.conninfo_params(getattr(self.backend, "database_override", None))
        pgconn = pq.PGconn.connect(make_conninfo(**params).encode())
        if pgconn.status == pq.ConnStatus.OK:
            pgconn.exec_(f'SET search_path TO "{self.namespace}", public'.encode())
        else:
            message = self.backend.redact(pgconn.get_error_message().decode(errors="replace"))
            pgconn.finish()
            raise BackendUnavailable(f"{self.backend.label}: cannot connect: {message.strip()}")
        self._clients += 1
        name = f"storagectl_bench_{self.options.run_id}_{self._clients}".encode()
        client_class = OneValueClient if OneValueClient.fits(self.script) else PgClient
        return client_class(pgconn, self.script, random.Random(self._seed.random()), name)


FATAL_ERROR = 7  # psycopg.pq.ExecStatus.FATAL_ERROR, as the int that PGresult.status is


def _sqlstate_kind(result: Any) -> str:
    from psycopg import errors, pq

    code = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    try:
        return errors.lookup(code).__name__ if code else "Error"
    except KeyError:
        return code


class PgClient:
    """Runs the script's statements one after another, as pgbench does; a failed statement inside a
    transaction is followed by ROLLBACK and the op counts as an error of its SQLSTATE's kind.

    Per op (select-pk): one draw, one ``send_query_prepared`` and the libpq calls that read its
    answer; no Python call of our own, list comprehension or enum on that path."""

    # a statement's successor goes out inside collect(), at once; the next transaction only after the
    # loop has read every ready client, as pgbench does (see Client.eager)
    eager = False

    def __init__(self, pgconn: Any, script: Script, rng: random.Random, name: bytes) -> None:
        self._pg = pgconn
        self._transactional = script.transactional
        self._names: list[bytes] = []
        for number, statement in enumerate(script.statements):
            statement_name = b"%s_%d" % (name, number)  # unique: a pooler or PGlite may share one session
            self._prepare(statement_name, statement.numbered(lambda i: f"${i}").encode(), number, script)
            self._names.append(statement_name)
        # per op: one value per draw, encoded once; each statement picks its parameters by index, or
        # (None) takes the drawn values as they are, as select-pk's one statement does
        names = [draw.name for draw in script.draws]
        self._draws = tuple((draw.low, draw.high - draw.low + 1) for draw in script.draws)
        picks = [tuple(names.index(v) for v in s.variables) for s in script.statements]
        self._picks = [None if pick == tuple(range(len(names))) else pick for pick in picks]
        self._random = rng.random
        self._last = len(self._names) - 1
        self._values: list[bytes] = []
        self._step = 0
        self._error: str | None = None
        self._rolling_back = False

    def _prepare(self, name: bytes, sql: bytes, number: int, script: Script) -> None:
        from psycopg import pq

        result = self._pg.prepare(name, sql)
        if result.status == pq.ExecStatus.FATAL_ERROR:
            # the primary message only: the full one adds "LINE 1: ..." and a caret on lines of their own
            primary = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or result.error_message
            message = primary.decode(errors="replace").strip()
            self._pg.finish()
            raise script.unpreparable(number + 1, message)

    def fileno(self) -> int:
        return self._pg.socket

    def send(self, ops: int) -> None:
        random = self._random
        values = []
        for low, span in self._draws:
            values.append(b"%d" % (low + int(random() * span)))
        self._values = values
        self._step = 0
        self._error = None
        self._rolling_back = False
        pick = self._picks[0]
        self._pg.send_query_prepared(self._names[0], values if pick is None else list(map(values.__getitem__, pick)))

    def collect(self) -> list[tuple[int, str | None]]:
        pg = self._pg
        try:
            pg.consume_input()
        except Exception as exc:  # psycopg.OperationalError: the connection is gone
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise BackendUnavailable(f"a benchmark connection to PostgreSQL failed: {first}") from exc
        while not pg.is_busy():
            result = pg.get_result()
            if result is None:
                if self._error is None and self._step == self._last:
                    return ONE_DONE
                return self._statement_done()
            if result.status == FATAL_ERROR and self._error is None:
                self._error = _sqlstate_kind(result)
        return []

    def _statement_done(self) -> list[tuple[int, str | None]]:
        """After a failed statement or one that is not the script's last: send what comes next (the
        next statement, or ROLLBACK in a transaction); the op's outcome once nothing does."""
        if self._error is not None:
            if self._rolling_back or not self._transactional:
                outcome = [(1, self._error)]
                self._error, self._rolling_back = None, False
                return outcome
            self._rolling_back = True
            self._pg.send_query(b"ROLLBACK")
            return []
        self._step += 1
        values, pick = self._values, self._picks[self._step]
        self._pg.send_query_prepared(self._names[self._step],
                                     values if pick is None else list(map(values.__getitem__, pick)))
        return []

    def close(self) -> None:
        """DEALLOCATE the statements of an idle connection; one cut off mid-op (Ctrl-C, SIGTERM, an
        error elsewhere) is only cancelled and closed, which drops them too: waiting for its answer
        could wait forever for a row lock that another client of this loop holds in a transaction
        it will never end (tpcb-like: every client updates the same branch rows)."""
        from psycopg import pq

        pg = self._pg
        if pg.transaction_status == pq.TransactionStatus.IDLE:
            for name in self._names:
                pg.exec_(b"DEALLOCATE " + name)
        elif pg.transaction_status == pq.TransactionStatus.ACTIVE:
            with contextlib.suppress(Exception):  # closing the connection ends the query as well
                pg.get_cancel().cancel()
        pg.finish()


class OneValueClient(PgClient):
    """select-pk's shape: one statement taking the one drawn value. An op leaves no state behind
    (_statement_done resets what an error set), so a send resets nothing and builds no list of its own."""

    def __init__(self, pgconn: Any, script: Script, rng: random.Random, name: bytes) -> None:
        super().__init__(pgconn, script, rng, name)
        self._name = self._names[0]
        self._low, self._span = self._draws[0]

    @staticmethod
    def fits(script: Script) -> bool:
        return len(script.statements) == 1 and len(script.draws) == 1 and \
            script.statements[0].variables == (script.draws[0].name,)

    def send(self, ops: int) -> None:
        self._pg.send_query_prepared(self._name, [b"%d" % (self._low + int(self._random() * self._span))])
