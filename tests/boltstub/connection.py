"""One Bolt 5 connection: the server-side message state machine.

States follow the Bolt 5 server state machine closely enough that the driver's own state
tracking agrees with ours: CONNECTED -HELLO-> READY (5.0, auth in HELLO) or AUTHENTICATION
(5.1+, auth in LOGON); READY -RUN-> STREAMING -PULL/DISCARD (last batch)-> READY;
READY -BEGIN-> TX_READY -RUN-> TX_STREAMING -COMMIT/ROLLBACK-> READY. Any FAILURE moves to
FAILED, where everything but RESET and GOODBYE is answered IGNORED, exactly as the driver
expects when it pipelines RUN+PULL and the RUN fails.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING, Any, NamedTuple

from .packstream import Structure, pack, unpack_structure
from .protocol import BoltSocket, Version, frame
from .script import Failure, Records
from .values import decode_value, encode_value

if TYPE_CHECKING:
    from .server import BoltStubServer

SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F
INVALID_REQUEST = "Neo.ClientError.Request.Invalid"
UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"
UNAUTHORIZED_MESSAGE = "The client is unauthorized due to authentication failure."
GQL_ERRORS_SINCE: Version = (5, 7)
TELEMETRY_SINCE: Version = (5, 4)
LOGON_SINCE: Version = (5, 1)


class State(Enum):
    CONNECTED = auto()
    AUTHENTICATION = auto()
    READY = auto()
    STREAMING = auto()
    TX_READY = auto()
    TX_STREAMING = auto()
    FAILED = auto()


TX_STATES = frozenset({State.TX_READY, State.TX_STREAMING})
ANY_STATE = frozenset(State)


class ClientMessage(NamedTuple):
    """A request as received (credentials masked), for assertions on the protocol flow."""

    connection_id: str
    name: str
    fields: tuple[Any, ...]


@dataclass(frozen=True)
class _MessageSpec:
    name: str
    handler: str
    states: frozenset[State]
    since: Version = (5, 0)


_SPECS = {
    0x01: _MessageSpec("HELLO", "_hello", frozenset({State.CONNECTED})),
    0x6A: _MessageSpec("LOGON", "_logon", frozenset({State.AUTHENTICATION}), LOGON_SINCE),
    0x6B: _MessageSpec("LOGOFF", "_logoff", frozenset({State.READY}), LOGON_SINCE),
    0x54: _MessageSpec("TELEMETRY", "_telemetry", frozenset({State.READY}), TELEMETRY_SINCE),
    0x66: _MessageSpec("ROUTE", "_route", frozenset({State.READY})),
    0x10: _MessageSpec("RUN", "_run", frozenset({State.READY}) | TX_STATES),
    0x3F: _MessageSpec("PULL", "_pull", frozenset({State.STREAMING, State.TX_STREAMING})),
    0x2F: _MessageSpec("DISCARD", "_discard", frozenset({State.STREAMING, State.TX_STREAMING})),
    0x11: _MessageSpec("BEGIN", "_begin", frozenset({State.READY})),
    0x12: _MessageSpec("COMMIT", "_commit", TX_STATES),
    0x13: _MessageSpec("ROLLBACK", "_rollback", TX_STATES),
    0x0F: _MessageSpec("RESET", "_reset", ANY_STATE),
    0x02: _MessageSpec("GOODBYE", "_goodbye", ANY_STATE),
}


@dataclass
class _Stream:
    """An open result: rows not yet pulled and where the summary should point."""

    records: Records
    db: str
    auto_commit: bool
    position: int = 0

    def take(self, n: int) -> Sequence[Sequence[Any]]:
        end = len(self.records.rows) if n == -1 else self.position + n
        rows = self.records.rows[self.position : end]
        self.position += len(rows)
        return rows

    @property
    def has_more(self) -> bool:
        return self.position < len(self.records.rows)


class BoltConnection:
    """Serves one negotiated connection until GOODBYE, an auth failure or the socket closing."""

    def __init__(
        self, server: BoltStubServer, bolt: BoltSocket, version: Version, connection_id: str
    ) -> None:
        self._server = server
        self._bolt = bolt
        self._version = version
        self._id = connection_id
        self._state = State.CONNECTED
        self._greeted = False
        self._authenticated = False
        self._closing = False
        self._out = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._last_qid = -1
        self._next_qid = 0
        self._tx_db: str | None = None

    def serve(self) -> None:
        while not self._closing:
            message = unpack_structure(self._bolt.read_message(), decode_value)
            self._dispatch(message)
            self._flush()

    # -- plumbing ---------------------------------------------------------------------------

    def _dispatch(self, message: Structure) -> None:
        spec = _SPECS.get(message.tag)
        if spec is None:
            self._server.errors.append(f"{self._id}: unknown message tag 0x{message.tag:02X}")
            self._closing = True
            return
        fields = _masked(spec.name, message.fields)
        self._server.messages.append(ClientMessage(self._id, spec.name, fields))
        if self._state is State.FAILED and spec.name not in ("RESET", "GOODBYE"):
            self._send(IGNORED)
        elif self._version < spec.since:
            self._violation(f"{spec.name} does not exist in Bolt {self._version_text}")
        elif self._state not in spec.states:
            self._violation(f"{spec.name} cannot be handled in state {self._state.name}")
        else:
            self._call(spec, message.fields)

    def _call(self, spec: _MessageSpec, fields: tuple[Any, ...]) -> None:
        handler: Callable[..., None] = getattr(self, spec.handler)
        try:
            inspect.signature(handler).bind(*fields)
        except TypeError as exc:
            self._violation(f"malformed {spec.name} {fields!r}: {exc}")
            return
        handler(*fields)

    @property
    def _version_text(self) -> str:
        return "{}.{}".format(*self._version)

    def _send(self, tag: int, *fields: Any) -> None:
        self._out += frame(pack(Structure(tag, fields), default=encode_value))

    def _flush(self) -> None:
        if self._out:
            self._bolt.send(bytes(self._out))
            self._out.clear()

    def _success(self, metadata: Mapping[str, Any] | None = None) -> None:
        self._send(SUCCESS, dict(metadata or {}))

    def _fail(self, failure: Failure) -> None:
        self._send(FAILURE, failure.metadata(gql=self._version >= GQL_ERRORS_SINCE))
        self._state = State.FAILED

    def _violation(self, reason: str) -> None:
        """A request a real server would refuse; the driver never sends one, so it is a bug."""
        self._server.errors.append(f"{self._id}: {reason}")
        self._fail(Failure(INVALID_REQUEST, reason))

    # -- authentication ---------------------------------------------------------------------

    def _hello(self, extra: dict[str, Any]) -> None:
        if self._version < LOGON_SINCE and not self._authenticate(extra):
            return
        self._greeted = True
        hints = {"telemetry.enabled": True} if self._version >= TELEMETRY_SINCE else {}
        self._success({"server": self._server.agent, "connection_id": self._id, "hints": hints})
        self._state = State.READY if self._authenticated else State.AUTHENTICATION

    def _logon(self, auth: dict[str, Any]) -> None:
        if self._authenticate(auth):
            self._success()
            self._state = State.READY

    def _logoff(self) -> None:
        self._authenticated = False
        self._success()
        self._state = State.AUTHENTICATION

    def _authenticate(self, auth: Mapping[str, Any]) -> bool:
        """Like Neo4j, answer a bad login with Unauthorized and then drop the connection."""
        self._authenticated = self._server.accepts(auth)
        if not self._authenticated:
            self._fail(Failure(UNAUTHORIZED, UNAUTHORIZED_MESSAGE, gql_status="42NFF"))
            self._closing = True
        return self._authenticated

    # -- queries ----------------------------------------------------------------------------

    def _telemetry(self, api: int) -> None:
        self._success()

    def _route(self, routing_context: dict, bookmarks: list, db_context: dict) -> None:
        self._success({"rt": self._server.routing_table(db_context.get("db"))})

    def _run(self, query: str, params: dict[str, Any], extra: dict[str, Any]) -> None:
        in_tx = self._state in TX_STATES
        db = self._tx_db if in_tx else extra.get("db")
        response = self._server.answer(query, params, db)
        if isinstance(response, Failure):
            self._fail(response)
            return
        qid = 0
        if in_tx:
            qid, self._next_qid = self._next_qid, self._next_qid + 1
        self._streams[qid] = _Stream(response, db or self._server.database, not in_tx)
        self._last_qid = qid
        metadata: dict[str, Any] = {"fields": list(response.fields), "t_first": 0}
        if in_tx:
            metadata["qid"] = qid
        self._success(metadata)
        self._state = State.TX_STREAMING if in_tx else State.STREAMING

    def _pull(self, extra: dict[str, Any]) -> None:
        self._consume(extra, send_records=True)

    def _discard(self, extra: dict[str, Any]) -> None:
        self._consume(extra, send_records=False)

    def _consume(self, extra: dict[str, Any], send_records: bool) -> None:
        n, qid = extra.get("n", -1), extra.get("qid", -1)
        qid = self._last_qid if qid == -1 else qid
        stream = self._streams.get(qid)
        if stream is None or not (n == -1 or n > 0):
            self._violation(f"no open result for qid={qid} n={n}")
            return
        for row in stream.take(n):
            if send_records:
                self._send(RECORD, list(row))
        if stream.has_more:
            self._success({"has_more": True})
            return
        del self._streams[qid]
        self._success(self._summary(stream))
        self._state = self._state_after_result(stream)

    def _summary(self, stream: _Stream) -> dict[str, Any]:
        summary: dict[str, Any] = {"type": stream.records.query_type, "t_last": 0, "db": stream.db}
        if stream.records.stats:
            summary["stats"] = dict(stream.records.stats)
        if stream.auto_commit:
            summary["bookmark"] = self._server.next_bookmark()
        return summary

    def _state_after_result(self, stream: _Stream) -> State:
        if stream.auto_commit:
            return State.READY
        return State.TX_STREAMING if self._streams else State.TX_READY

    # -- transactions and connection control -----------------------------------------------

    def _begin(self, extra: dict[str, Any]) -> None:
        self._clear_results()
        self._tx_db = extra.get("db")
        self._success()
        self._state = State.TX_READY

    def _commit(self) -> None:
        self._clear_results()
        self._success({"bookmark": self._server.next_bookmark()})
        self._state = State.READY

    def _rollback(self) -> None:
        self._clear_results()
        self._success()
        self._state = State.READY

    def _reset(self) -> None:
        self._clear_results()
        self._success()
        if self._authenticated:
            self._state = State.READY
        elif self._state is State.FAILED:
            self._state = State.AUTHENTICATION if self._greeted else State.CONNECTED

    def _goodbye(self) -> None:
        self._closing = True

    def _clear_results(self) -> None:
        self._streams.clear()
        self._last_qid = -1
        self._next_qid = 0
        self._tx_db = None


def _masked(name: str, fields: tuple[Any, ...]) -> tuple[Any, ...]:
    """Keep passwords out of the message log (and so out of assertion failure output)."""
    if name not in ("HELLO", "LOGON") or not fields or not isinstance(fields[0], dict):
        return fields
    first = dict(fields[0])
    if "credentials" in first:
        first["credentials"] = "*****"
    return (first, *fields[1:])
