"""A Redis snapshot's transfer begun before the rest of storagectl loads (issue 19).

``backup run`` of a Redis backend whose backup will take the server's snapshot (``backup_method:
rdb``, or ``auto`` where :func:`rdb_obstacle` finds nothing against it) sends ``SYNC`` as soon as
the config is read, over a plain socket: the server forks and starts writing its snapshot while
redis-py, the archive machinery and brotli load (~0.1 s of a ~1.7 s run: bench_redis_backup.py).
Only the standard library and hiredis are imported here.

A head start is a shortcut, never a second way to fail: whatever goes wrong here (a refused
connection or password, INFO or SYNC denied, an address read otherwise than redis-py reads it) ends
it quietly, and the backup runs as without it, reporting that trouble in its usual words. TLS,
a username without a password and clusters are left to redis-py. The backup takes the transfer only
when it chose the snapshot itself, from its own round trip, and the server's ``run_id`` is the one
seen here (RedisBackend._backup_rdb).
"""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from storagectl.backends.redis_rdb import READ_SIZE, REPLCONF_CAPA_EOF, REPLCONF_RDB_ONLY, ReplicaSync, rdb_obstacle
from storagectl.backends.redis_wire import resp_command

# One round trip before SYNC (which the server refuses while replies are pending): the facts
# RedisBackend._backup_method reads, and the REPLCONFs of ReplicaSync.start.
_FACTS = b"".join([resp_command(b"INFO", b"server"), resp_command(b"INFO", b"keyspace"),
                   resp_command(b"INFO", b"modules"), resp_command(b"CONFIG", b"GET", b"repl-diskless-sync*"),
                   REPLCONF_RDB_ONLY, REPLCONF_CAPA_EOF])
_FACT_REPLIES = 6
PREFETCH_LIMIT = 64 << 20  # bytes read ahead at most: a few hundred ms of a server's snapshot


class HeadStart:
    """A snapshot requested with SYNC, from the server whose INFO said ``run_id``, its first bytes
    read by a thread (:class:`_Prefetch`) until :meth:`taken` or :meth:`close`."""

    def __init__(self, sync: ReplicaSync, run_id: str) -> None:
        self.sync, self.run_id = sync, run_id
        self.prefetch = _Prefetch(sync.sock)
        self.prefetch.start()

    def taken(self) -> ReplicaSync:
        """The transfer, with what the thread read, for the backup to read on."""
        self.sync.read_ahead(self.prefetch.stopped())
        return self.sync

    def close(self) -> None:
        self.prefetch.stopped()
        self.sync.close()


class _Prefetch(threading.Thread):
    """Reads the snapshot while storagectl loads. The socket buffers hold a few MB, and a server
    that cannot send waits, its fork child too; so without a reader the head start would save
    little more than the fork. Reads at most PREFETCH_LIMIT bytes; a failure is left for the
    backup's own reads to meet and report."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(name="redis-head-start", daemon=True)
        self.sock = sock
        self.chunks: list[bytes] = []
        self.size = 0
        self.stop = threading.Event()

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while not self.stop.is_set() and self.size < PREFETCH_LIMIT:
            if not poller.poll(20):  # ms: how long stopping may wait
                continue
            try:
                data = self.sock.recv(READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)
            self.size += len(data)

    def stopped(self) -> list[bytes]:
        """What was read, piece by piece (joining tens of MB would copy them on the way to the
        archive, while the server is still sending); the thread has ended."""
        self.stop.set()
        if self.is_alive():
            self.join()
        chunks, self.chunks = self.chunks, []
        return chunks


class _ReplyError(Exception):
    """An error reply (hiredis returns it as this class)."""


@dataclass(frozen=True)
class _Address:
    host: str
    port: int
    path: str | None  # a unix socket
    username: str | None
    password: str | None


def head_start(settings: Any) -> HeadStart | None:
    """SYNC sent to the server of a redis backend's ``settings`` when its backup will take the
    snapshot; None when it may not (or anything went wrong: the backup then runs as without it)."""
    if settings.backup_method == "dump" or settings.cluster or settings.tls.enabled:
        return None
    try:
        address = _address(settings)
    except ValueError:
        return None
    if address is None:
        return None
    try:
        sock = _connected(address, settings.timeouts)
    except OSError:
        return None
    try:
        started = _requested(sock, address, settings)
    except Exception:  # noqa: BLE001 - see the module docstring: the backup reports it without the head start
        started = None
    if started is None:
        sock.close()
    return started


def _address(settings: Any) -> _Address | None:
    """Where and as whom redis-py connects for ``settings`` (None: a case left to it)."""
    password = settings.password.get_secret_value() if settings.password is not None else None
    if settings.url is None:
        address = _Address(settings.host, settings.port, None, settings.username, password)
    else:
        parts = urlsplit(settings.url)
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "unix"):
            return None
        address = _Address(unquote(parts.hostname or "") or "localhost", parts.port or 6379,
                           unquote(parts.path) if scheme == "unix" else None,
                           unquote(parts.username) if parts.username else None,
                           unquote(parts.password) if parts.password else password)
    return None if address.username and address.password is None else address


def _connected(address: _Address, timeouts: Any) -> socket.socket:
    if address.path is None:
        sock = socket.create_connection((address.host, address.port), timeout=timeouts.connect)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeouts.connect)
            sock.connect(address.path)
        except OSError:
            sock.close()
            raise
    sock.settimeout(timeouts.statement or max(timeouts.connect, 30.0))  # as RedisSettingsMethods.client_kwargs
    return sock


def _requested(sock: socket.socket, address: _Address, settings: Any) -> HeadStart | None:
    """AUTH, the facts and REPLCONFs in one round trip, then SYNC if the backup will take the snapshot."""
    import hiredis

    auth = b""
    if address.password is not None:
        credentials = [address.username.encode()] if address.username else []
        auth = resp_command(b"AUTH", *credentials, address.password.encode())
    sock.sendall(auth + _FACTS)
    reader = hiredis.Reader(replyError=_ReplyError, encoding="utf-8", errors="replace")
    replies = [_reply(sock, reader) for _ in range(_FACT_REPLIES + bool(auth))]
    if auth and isinstance(replies.pop(0), _ReplyError):
        return None  # the backup's connect reports the refused password
    server, keyspace, modules, config = replies[:4]
    if isinstance(server, _ReplyError):
        return None  # no run_id to check the backup's server against
    info = _info(server)
    if settings.backup_method == "auto":
        if isinstance(keyspace, _ReplyError) or isinstance(modules, _ReplyError):
            return None  # the backup fails reading them, without a snapshot
        config = None if isinstance(config, _ReplyError) else dict(zip(config[::2], config[1::2], strict=True))
        keys = {int(name[2:]): int(stats.split(",")[0].partition("=")[2])
                for name, stats in _info(keyspace).items() if name.startswith("db")}
        if rdb_obstacle(info["redis_version"], config, keys, _databases(settings), bool(_info(modules))):
            return None
    sync = ReplicaSync(sock)
    sync.request()
    return HeadStart(sync, info["run_id"])


def _reply(sock: socket.socket, reader: Any) -> Any:
    while (reply := reader.gets()) is False:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the server")
        reader.feed(data)
    return reply


def _info(text: str) -> dict[str, str]:
    """An INFO section's ``name:value`` lines."""
    pairs = (line.partition(":") for line in text.splitlines() if line and not line.startswith("#"))
    return {name: value for name, _, value in pairs}


def _databases(settings: Any) -> list[int]:
    """The dbs the backup takes, as RedisSettingsMethods.selected_databases reads them."""
    if settings.databases:
        return list(settings.databases)
    if settings.url is None:
        return [settings.db]
    parts = urlsplit(settings.url)
    if parts.scheme.lower() == "unix":
        return [int(parse_qs(parts.query).get("db", ["0"])[-1])]
    return [int(parts.path.strip("/") or "0")]
