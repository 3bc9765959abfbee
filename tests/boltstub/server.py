"""BoltStubServer: a scripted Bolt 5 server on 127.0.0.1 for tests using the real neo4j driver.

    with BoltStubServer([Rule("RETURN 1 AS n", Records(["n"], [[1]]))]) as server:
        with GraphDatabase.driver(server.uri, auth=("neo4j", "password")) as driver:
            assert driver.execute_query("RETURN 1 AS n").records[0]["n"] == 1
        assert server.received[0].query == "RETURN 1 AS n"

Each accepted connection is served on its own daemon thread. Problems that mean the stub or
the code under test misbehaved (a responder raising, a request refused by the state machine)
are collected in `errors` and raised as BoltStubError when the context manager exits, so they
cannot pass unnoticed behind a driver retry.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import socketserver
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .connection import BoltConnection, ClientMessage
from .protocol import BoltSocket, ConnectionClosed, Version, negotiate
from .script import RESPONDER_ERROR_CODE, Failure, Response, Script, ScriptEntry

SUPPORTED_VERSIONS: tuple[Version, ...] = tuple((5, minor) for minor in range(9))
HANDSHAKES = ("manifest", "legacy")
DEFAULT_AGENT = "Neo4j/5.20.0"
ROUTING_TTL_SECONDS = 300
ACCEPT_POLL_SECONDS = 0.05


class BoltStubError(AssertionError):
    """The stub saw something a test should fail on (see BoltStubServer.errors)."""


class Received(NamedTuple):
    """One RUN: the query text as sent, its decoded parameters and the database named by the
    client (None when it left the choice to the server's default/home database)."""

    query: str
    params: dict[str, Any]
    db: str | None


class ConnectionInfo(NamedTuple):
    connection_id: str
    version: Version
    handshake: str


class BoltStubServer:
    """Scripted Bolt server; see the module docstring and tests/boltstub/script.py.

    auth: expected (user, password) for the "basic" scheme, or None to accept any login.
    versions: the Bolt 5.x versions offered; the highest one the client also speaks is used.
    handshake: "manifest" answers manifest-v1 handshakes when the client offers them, as Neo4j
        5.23+ does; "legacy" always answers with a single version, as older servers do.
    """

    def __init__(
        self,
        script: Iterable[ScriptEntry] = (),
        *,
        auth: tuple[str, str] | None = ("neo4j", "password"),
        versions: Iterable[Version] = SUPPORTED_VERSIONS,
        handshake: str = "manifest",
        agent: str = DEFAULT_AGENT,
        database: str = "neo4j",
    ) -> None:
        self.versions = _checked_versions(versions)
        if handshake not in HANDSHAKES:
            raise ValueError(f"handshake must be one of {HANDSHAKES}, not {handshake!r}")
        self.script = Script(script)
        self.auth = auth
        self.handshake = handshake
        self.agent = agent
        self.database = database
        self.received: list[Received] = []
        self.messages: list[ClientMessage] = []
        self.connections: list[ConnectionInfo] = []
        self.errors: list[str] = []
        self._connection_ids = itertools.count(1)
        self._bookmarks = itertools.count(1)
        self._counter_lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()
        self._tcp: _TCPServer | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> BoltStubServer:
        if self._tcp is not None:
            raise RuntimeError("BoltStubServer already started")
        self._tcp = _TCPServer(self)
        self._thread = threading.Thread(
            target=self._tcp.serve_forever,
            kwargs={"poll_interval": ACCEPT_POLL_SECONDS},
            name=f"boltstub-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, then cut open connections so their threads end promptly."""
        if self._tcp is None or self._closed:
            return
        self._closed = True
        self._tcp.shutdown()
        self._tcp.server_close()
        with self._sockets_lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):  # already closed by the client
                    sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> BoltStubServer:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        self.close()
        if exc_type is None and self.errors:
            raise BoltStubError("Bolt stub errors:\n" + "\n".join(self.errors))

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._tcp is None:
            raise RuntimeError("BoltStubServer not started; use it as a context manager")
        return self._tcp.server_address[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        """Direct connection URI: the driver never sends ROUTE."""
        return f"bolt://{self.address}"

    @property
    def routing_uri(self) -> str:
        """Routing URI: the driver fetches the stub's single-server routing table first."""
        return f"neo4j://{self.address}"

    # -- services used by connections -------------------------------------------------------

    def accepts(self, auth: Mapping[str, Any]) -> bool:
        if self.auth is None:
            return True
        user, password = self.auth
        return (auth.get("scheme"), auth.get("principal"), auth.get("credentials")) == (
            "basic",
            user,
            password,
        )

    def answer(self, query: str, params: dict[str, Any], db: str | None) -> Response:
        """Record the query, then ask the script; a responder bug becomes a loud failure."""
        self.received.append(Received(query, params, db))
        try:
            return self.script.resolve(query, params)
        except Exception as exc:  # any responder bug must reach the test
            self.errors.append(f"responder failed on {query!r}: {exc!r}")
            return Failure(RESPONDER_ERROR_CODE, f"stub responder raised {exc!r}")

    def routing_table(self, db: str | None) -> dict[str, Any]:
        roles = ("ROUTE", "READ", "WRITE")
        servers = [{"addresses": [self.address], "role": role} for role in roles]
        return {"ttl": ROUTING_TTL_SECONDS, "db": db or self.database, "servers": servers}

    def next_bookmark(self) -> str:
        with self._counter_lock:
            return f"FB:stub:{next(self._bookmarks)}"

    # -- per-connection entry point (runs on the connection's thread) ----------------------

    def serve_socket(self, sock: socket.socket) -> None:
        with self._sockets_lock:
            self._sockets.add(sock)
        try:
            # Replies go out one message at a time; without NODELAY, Nagle plus the client's
            # delayed ACK would stall every pipelined exchange by ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve(BoltSocket(sock))
        except (ConnectionClosed, OSError):
            pass  # the driver hung up, or close() cut the connection
        except Exception as exc:  # malformed input and stub bugs alike must fail the test
            self.errors.append(f"connection failed: {exc!r}")
        finally:
            with self._sockets_lock:
                self._sockets.discard(sock)

    def _serve(self, bolt: BoltSocket) -> None:
        negotiated = negotiate(bolt, self.versions, allow_manifest=self.handshake == "manifest")
        if negotiated is None:
            return
        with self._counter_lock:
            connection_id = f"bolt-{next(self._connection_ids)}"
        info = ConnectionInfo(connection_id, negotiated.version, negotiated.handshake)
        self.connections.append(info)
        BoltConnection(self, bolt, negotiated.version, connection_id).serve()


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, stub: BoltStubServer) -> None:
        self.stub = stub
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.stub.serve_socket(self.request)  # type: ignore[attr-defined]


def _checked_versions(versions: Iterable[Version]) -> tuple[Version, ...]:
    checked = tuple(sorted(set(versions)))
    unsupported = [version for version in checked if version not in SUPPORTED_VERSIONS]
    if not checked or unsupported:
        raise ValueError(f"versions must be a non-empty subset of Bolt 5.0-5.8, got {checked}")
    return checked
