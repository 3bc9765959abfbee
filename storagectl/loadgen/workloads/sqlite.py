"""SQLite workloads: pgbench's tables named ``storagectl_bench_<id>_pgbench_*`` in the backend's
file, dropped at teardown. A script's ``pgbench_*`` table names are read as those tables.

sqlite3 runs in-process and blocks, so each client is a thread with its own connection
(:class:`ThreadClient`); sqlite3 releases the GIL while a statement runs.
"""

from __future__ import annotations

import random
import re
import sqlite3
from typing import Any

from storagectl.loadgen.clients import ThreadClient
from storagectl.loadgen.sqlscript import Script, load_script
from storagectl.loadgen.workloads import WorkloadOptions
from storagectl.loadgen.workloads.postgres import pgbench_tables_sql, scale_of

WORKLOADS = ("select-pk", "insert", "update-pk", "tpcb-like", "sql")
TABLES = ("branches", "tellers", "accounts", "history")
SERIES = ("(WITH RECURSIVE series(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM series WHERE x < {n}) "
          "SELECT x FROM series)")

DEFAULT_KEYSPACE = 100_000


def workload_names(kind: str) -> tuple[str, ...]:
    return WORKLOADS


def make_workload(backend: Any, options: WorkloadOptions) -> SQLiteWorkload:
    return SQLiteWorkload(backend, options)


def _immediate(sql: str) -> str:
    """BEGIN takes the write lock at once: a deferred BEGIN that writes later makes concurrent
    clients wait on each other's read locks until busy_timeout (50 tps instead of hundreds)."""
    return "BEGIN IMMEDIATE" if sql.strip().upper() in ("BEGIN", "BEGIN TRANSACTION") else sql


class SQLiteWorkload:
    def __init__(self, backend: Any, options: WorkloadOptions) -> None:
        self.backend = backend
        self.options = options
        self.namespace = f"storagectl_bench_{options.run_id}_"
        self.fill_items = options.keyspace
        constants = {"scale": scale_of(options.keyspace), "keyspace": options.keyspace}
        self.script: Script = load_script(options.base, options.script, constants, {})
        self._statements = [_immediate(self._prefixed(s.numbered(lambda i: "?"))) for s in self.script.statements]
        self._seed = random.Random(options.run_id)
        self._created: list[str] = []

    def _prefixed(self, sql: str) -> str:
        return re.sub(r"\bpgbench_(branches|tellers|accounts|history)\b", rf"{self.namespace}pgbench_\1", sql)

    def setup(self) -> int:
        with self.backend.connect() as conn:
            self._version = f"SQLite {self.backend.server_version(conn)}"
            conn.isolation_level = None
            for statement in map(self._prefixed, pgbench_tables_sql("", self.options.keyspace, SERIES)):
                if statement.startswith("CREATE TABLE") and "history" not in statement:
                    statement = statement.replace(" NOT NULL,", " NOT NULL PRIMARY KEY,", 1)  # keys first: no ALTER
                if statement.startswith("CREATE TABLE"):
                    self._created.append(statement.split()[2])
                    conn.execute(statement)
                else:
                    conn.execute("BEGIN")
                    conn.execute(statement)
                    conn.execute("COMMIT")
            self._compile_statements(conn)
        return self.options.keyspace

    def _compile_statements(self, conn: sqlite3.Connection) -> None:
        """Compile each statement as PostgreSQL prepares them, so a broken script is refused before
        the run instead of failing every op: ``EXPLAIN`` compiles a statement and runs nothing."""
        for number, (statement, sql) in enumerate(zip(self.script.statements, self._statements, strict=True), 1):
            explain = sql if sql.lstrip().upper().startswith("EXPLAIN") else f"EXPLAIN {sql}"
            try:
                conn.execute(explain, self.script.sample_values(statement))
            except sqlite3.Error as exc:
                raise self.script.unpreparable(number, str(exc)) from None

    def teardown(self) -> bool:
        if not self._created:
            return False
        with self.backend.connect() as conn:
            for table in reversed(self._created):
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            conn.commit()
        self._created = []
        return True

    def server_version(self) -> str:
        return self._version

    def open_client(self) -> ThreadClient:
        rng = random.Random(self._seed.random())
        return ThreadClient(lambda: self._open_operation(rng))

    def _open_operation(self, rng: random.Random) -> tuple[Any, Any]:
        conn = self.backend._open_translated()
        conn.isolation_level = None  # the script's BEGIN/END are the transactions
        script, statements = self.script, self._statements

        def operation() -> None:
            values = script.values(rng)
            try:
                for statement, sql in zip(script.statements, statements, strict=True):
                    conn.execute(sql, [values[name] for name in statement.variables]).fetchall()
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return operation, conn.close
