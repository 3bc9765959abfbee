"""Tiny loopback servers for failure cases the real services cannot produce on demand.

- SilentServer accepts TCP connections and never answers: a hung server, for timeout tests.
- DownHost never completes a TCP handshake (its accept queue is full, so SYNs are dropped), which
  is what a client sees when the host is down or firewalled.
- PostgresAuthRejectingServer speaks just enough of the PostgreSQL protocol to ask for a password
  and reject it with SQLSTATE 28P01, as a server with password auth does (the local test server
  uses trust auth, which accepts any password).
"""

from __future__ import annotations

import socket
import struct
import threading


class _LoopbackServer:
    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sock.close()
        for client in self._clients:
            client.close()

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._clients.append(client)
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def handle(self, client: socket.socket) -> None:
        """Hold the connection open and say nothing."""


class SilentServer(_LoopbackServer):
    pass


class DownHost:
    def __enter__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port = self._sock.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        return self

    def __exit__(self, *exc) -> None:
        self._filler.close()
        self._sock.close()


class PostgresAuthRejectingServer(_LoopbackServer):
    def handle(self, client: socket.socket) -> None:
        try:
            self._reject(client)
        except OSError:
            pass
        finally:
            client.close()

    def _reject(self, client: socket.socket) -> None:
        length, code = struct.unpack("!ii", _recv_exact(client, 8))
        if code == 80877103:  # SSLRequest: say no, then read the real startup message
            client.sendall(b"N")
            length, code = struct.unpack("!ii", _recv_exact(client, 8))
        _recv_exact(client, length - 8)
        client.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        kind = _recv_exact(client, 1)
        (plen,) = struct.unpack("!i", _recv_exact(client, 4))
        _recv_exact(client, plen - 4)
        assert kind == b"p"
        fields = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"app\"\0\0"
        client.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)


def _recv_exact(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        if not chunk:
            raise OSError("peer closed")
        data += chunk
    return data
