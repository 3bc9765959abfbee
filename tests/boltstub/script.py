"""What the stub answers to each query: rules, responders and the response types.

A script is an ordered list of entries, tried first to last for every RUN:

- a `Rule` matches the query text (exact after whitespace normalisation, or a compiled regex
  searched in the normalised text), optionally the exact parameters, optionally only a number of
  times; it answers with a fixed Response or with a callable computing one;
- a plain callable `responder(query, params)` may answer, or return None to pass the query on,
  which is how tests build small stateful fakes (e.g. a migrations table kept in a list).

Nothing matching is an error the test should see, so it answers a Neo4j SyntaxError naming the
query rather than an empty result that could let a broken query pass silently.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NO_RULE_CODE = "Neo.ClientError.Statement.SyntaxError"
RESPONDER_ERROR_CODE = "Neo.DatabaseError.General.UnknownError"
QUERY_TYPES = ("r", "w", "rw", "s")
GENERAL_GQL_STATUS = "50N42"
GENERAL_GQL_DESCRIPTION = "error: general processing exception - unexpected error"


def normalise_query(query: str) -> str:
    """Collapse all runs of whitespace so rules need not copy a query's line breaks."""
    return " ".join(query.split())


@dataclass(frozen=True)
class Records:
    """A successful result: column names, rows, and what the final summary reports.

    `stats` are Neo4j counters as the server names them ("nodes-created", "properties-set",
    ...); `query_type` is "r", "w", "rw" or "s" (schema). `Records()` is an empty success,
    the usual answer to a write.
    """

    fields: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    stats: Mapping[str, int] | None = None
    query_type: str = "r"

    def __post_init__(self) -> None:
        if self.query_type not in QUERY_TYPES:
            raise ValueError(f"query_type must be one of {QUERY_TYPES}, not {self.query_type!r}")
        for row in self.rows:
            if len(row) != len(self.fields):
                raise ValueError(f"row {row!r} does not have one value per field {self.fields}")


@dataclass(frozen=True)
class Failure:
    """A Neo4j error; the driver picks the exception class from `code`.

    For Bolt 5.7+ the stub also sends the GQL status fields; `gql_status` and `description`
    default to the server's generic "unexpected error" status.
    """

    code: str
    message: str
    gql_status: str = GENERAL_GQL_STATUS
    description: str | None = None

    def __post_init__(self) -> None:
        if len(self.code.split(".")) != 4 or not self.code.startswith("Neo."):
            raise ValueError(f"{self.code!r} is not a Neo4j status code (Neo.X.Y.Z)")

    def metadata(self, gql: bool) -> dict[str, Any]:
        """FAILURE metadata in the form the negotiated protocol version uses."""
        if not gql:
            return {"code": self.code, "message": self.message}
        description = self.description or f"{GENERAL_GQL_DESCRIPTION}. {self.message}"
        return {
            "neo4j_code": self.code,
            "message": self.message,
            "gql_status": self.gql_status,
            "description": description,
            "diagnostic_record": {"OPERATION": "", "OPERATION_CODE": "0", "CURRENT_SCHEMA": "/"},
        }


Response = Records | Failure
Responder = Callable[[str, dict[str, Any]], Response | None]


@dataclass
class Rule:
    """Answer `response` to queries matching `query` (and `params`, when given).

    `response` may be a callable `(query, params) -> Response` for answers that depend on the
    parameters. With `times`, the rule stops matching after that many uses, so a sequence of
    rules can script "fail once, then succeed".
    """

    query: str | re.Pattern[str]
    response: Response | Callable[[str, dict[str, Any]], Response]
    params: Mapping[str, Any] | None = None
    times: int | None = None
    used: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.query, str):
            self.query = normalise_query(self.query)

    def matches(self, query: str, params: Mapping[str, Any]) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.params is not None and dict(self.params) != dict(params):
            return False
        if isinstance(self.query, re.Pattern):
            return self.query.search(query) is not None
        return self.query == query

    def respond(self, query: str, params: dict[str, Any]) -> Response:
        self.used += 1
        if isinstance(self.response, Records | Failure):
            return self.response
        return self.response(query, params)


ScriptEntry = Rule | Responder


class Script:
    """The ordered entries, resolved under a lock so stateful responders see one query at a time
    even when the driver uses several connections."""

    def __init__(self, entries: Iterable[ScriptEntry] = ()) -> None:
        self._entries: list[ScriptEntry] = list(entries)
        self._lock = threading.Lock()

    def add(self, *entries: ScriptEntry) -> None:
        with self._lock:
            self._entries.extend(entries)

    def resolve(self, query: str, params: dict[str, Any]) -> Response:
        normalised = normalise_query(query)
        with self._lock:
            for entry in self._entries:
                response = self._try(entry, normalised, params)
                if response is not None:
                    return _checked(response, entry)
        return Failure(NO_RULE_CODE, f"stub has no rule for: {normalised}")

    @staticmethod
    def _try(entry: ScriptEntry, query: str, params: dict[str, Any]) -> Response | None:
        if isinstance(entry, Rule):
            return entry.respond(query, params) if entry.matches(query, params) else None
        return entry(query, params)


def _checked(response: Any, entry: ScriptEntry) -> Response:
    if not isinstance(response, Records | Failure):
        raise TypeError(f"{entry!r} answered {response!r}, not Records or Failure")
    return response
