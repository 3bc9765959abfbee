"""Every PostgreSQL query of `inspect` runs here: in a READ ONLY transaction, each statement in its
own savepoint with ``SET LOCAL statement_timeout`` (bounded by the budget) and ``lock_timeout``.
The catalog queries take at most ACCESS SHARE locks (the size functions open each relation with
it, and release it at once); relations someone holds or awaits ACCESS EXCLUSIVE on are sized from
``pg_class.relpages`` instead, so inspect neither waits behind nor queues in front of DDL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from storagectl.errors import OperationFailed, OperationTimeout
from storagectl.inspect.model import Budget, BudgetExhausted


class LockBusy(Exception):
    """A query hit ``lock_timeout``: something took ACCESS EXCLUSIVE between our check and our read."""


class ReadOnlySession:
    def __init__(self, backend: Any, connection: Any, budget: Budget, query_timeout: float,
                 lock_timeout: float) -> None:
        self.backend, self.connection, self.budget = backend, connection, budget
        self.query_timeout, self.lock_timeout = query_timeout, lock_timeout

    def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """All rows of one query, as dicts, under the timeouts."""
        import psycopg
        from psycopg.rows import dict_row

        self.budget.check()
        limit = self.budget.bounded(self.query_timeout)
        try:
            with self.connection.transaction():
                self.connection.execute(
                    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                    [str(max(1, int(limit * 1000))), str(max(1, int(self.lock_timeout * 1000)))])
                with self.connection.cursor(row_factory=dict_row) as cursor:
                    return cursor.execute(sql, params).fetchall()
        except psycopg.errors.LockNotAvailable as exc:
            raise LockBusy from exc
        except psycopg.errors.QueryCanceled as exc:
            if self.budget.expired():
                raise BudgetExhausted from exc
            raise OperationTimeout(f"{self.backend.label}: an inspect query ran longer than {limit:g}s and was "
                                   "cancelled (statement_timeout)",
                                   hint="Try: a higher timeouts.statement for this backend, or --schema for less",
            ) from exc
        except psycopg.Error as exc:
            detail = self.backend.error_line(exc)
            raise OperationFailed(f"{self.backend.label}: inspect query failed: {detail}") from exc

    def one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None


@contextmanager
def read_only_session(backend: Any, connection: Any, budget: Budget, options: Any) -> Iterator[ReadOnlySession]:
    with connection.transaction():
        connection.execute("SET TRANSACTION READ ONLY")
        query_timeout = backend.settings.timeouts.statement or options.query_timeout
        yield ReadOnlySession(backend, connection, budget, query_timeout, options.lock_timeout)
