"""Redis over its wire protocol where redis-py's per-reply Python cost would make the client the
bottleneck: RESP on a connected socket (:class:`RespSocket`), the pipelined SCAN + DUMP batches the
backup, the cache commands and ``migrate data`` read keyspaces with (:func:`dump_scan`), and the two
ways to dump a batch atomically (:class:`MultiDump` on one server, :class:`ScriptDump` on a cluster
node)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

KeyFilter = Callable[[list[bytes]], list[bytes]]  # the keys of a batch to keep

# SCAN COUNT, so keys per MULTI. One EXEC of 2000 keys blocks the server ~6 ms; at 1000 keys the
# server idled between batches for ~2 % of a backup, at 2000 for ~1 % (measured, 1 M keys).
DUMP_BATCH_KEYS = 2000


class RespSocket:
    """RESP straight over a connected redis-py connection's socket, parsed by hiredis.

    A MULTI batch gets two +QUEUED replies per key; at redis-py's ~2 us of Python per reply the client
    alone would need about as long as the server. redis-py still connects, authenticates, selects the
    db and closes the connection.
    """

    def __init__(self, connection: Any) -> None:
        import hiredis
        import redis

        connection.connect()
        self.socket = connection._sock  # redis-py has no public accessor
        self.reader = hiredis.Reader(protocolError=redis.InvalidResponse, replyError=redis.ResponseError)
        self.redis = redis  # imported lazily, as everywhere in this module: its import is slow

    def send(self, request: bytes) -> None:
        send_all(self.socket, request)

    def reply(self) -> Any:
        while (reply := self.reader.gets()) is False:
            self._receive()
        if isinstance(reply, self.redis.ResponseError):
            raise reply
        return reply

    def skip(self, count: int) -> None:
        """Read and drop `count` replies (acknowledgements such as +QUEUED); raise the first error."""
        gets, response_error = self.reader.gets, self.redis.ResponseError  # hot: two replies per key
        for _ in range(count):
            while (reply := gets()) is False:
                self._receive()
            if isinstance(reply, response_error):
                raise reply

    def _receive(self) -> None:
        self.reader.feed(receive(self.socket, 65536))  # hiredis memmoves its unparsed rest per 1 KiB parsed


def send_all(sock: Any, request: bytes) -> None:
    """``request`` on a connected socket; a failure as redis-py's ConnectionError."""
    try:
        sock.sendall(request)
    except OSError as exc:
        import redis

        raise redis.ConnectionError(f"error while writing to the socket: {exc}") from exc


def receive(sock: Any, size: int) -> bytes:
    """Up to ``size`` bytes from a connected socket; failures and a closed connection as redis-py's
    TimeoutError / ConnectionError."""
    try:
        data = sock.recv(size)
    except TimeoutError as exc:
        import redis

        raise redis.TimeoutError("timeout reading from the socket") from exc
    except OSError as exc:
        import redis

        raise redis.ConnectionError(f"error while reading from the socket: {exc}") from exc
    if not data:
        import redis

        raise redis.ConnectionError("connection closed by the server")
    return data


def dump_batches(commands: RespSocket, count: int = DUMP_BATCH_KEYS, keep: KeyFilter | None = None,
                  dumper: Any = None, match: bytes | None = None,
                  type_: bytes | None = None) -> Iterator[tuple[list[bytes], list[Any]]]:
    """(keys, EXEC reply) per SCAN batch of the whole keyspace (see :func:`dump_scan`)."""
    for _cursor, keys, reply in dump_scan(commands, count=count, keep=keep, dumper=dumper, match=match,
                                          type_=type_):
        yield keys, reply


def dump_scan(commands: RespSocket, cursor: bytes = b"0", count: int = DUMP_BATCH_KEYS, keep: KeyFilter | None = None,
              dumper: Any = None, match: bytes | None = None,
              type_: bytes | None = None) -> Iterator[tuple[bytes, list[bytes], list[Any]]]:
    """(SCAN cursor after the batch, keys, EXEC reply) per SCAN batch from ``cursor``, pipelined: each
    batch's MULTI is sent together with the next SCAN, so the server works on batch k while the caller
    handles batch k-1. ``keep`` filters each batch's keys before they are dumped (a cluster node's keys
    of slots it owns); ``match``/``type_`` are SCAN's MATCH and TYPE. Resuming at a batch's cursor
    visits every key the batches after it would have (SCAN's guarantee for keys present throughout)."""
    dumper = dumper or MultiDump()
    in_flight: deque[tuple[bytes, list[bytes]]] = deque()  # batches sent, EXEC reply not read yet
    commands.send(scan_request(cursor, count, match, type_))
    while True:
        cursor, keys = commands.reply()
        keys = keys if keep is None else keep(keys)
        last = cursor == b"0"
        commands.send((b"" if last else scan_request(cursor, count, match, type_)) + dumper.request(keys))
        in_flight.append((cursor, keys))
        while len(in_flight) > (0 if last else 1):  # replies come in request order: read k-1's before SCAN k+1's
            batch_cursor, batch = in_flight.popleft()
            yield batch_cursor, batch, dumper.reply(commands, batch)
        if last:
            return


def scan_request(cursor: bytes, count: int, match: bytes | None = None, type_: bytes | None = None) -> bytes:
    options = [b"COUNT", b"%d" % count]
    if match is not None:
        options += [b"MATCH", match]
    if type_ is not None:
        options += [b"TYPE", type_]
    return resp_command(b"SCAN", cursor, *options)


def resp_command(*args: bytes) -> bytes:
    """One command as RESP bytes."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


_MULTI_TIME = b"*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nTIME\r\n"
_DUMP_PTTL = b"*2\r\n$4\r\nDUMP\r\n$%d\r\n%s\r\n*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


class MultiDump:
    """MULTI, TIME, DUMP + PTTL per key, EXEC: atomic, so a key's DUMP and PTTL always agree."""

    absolute_expiry = False

    @staticmethod
    def request(keys: list[bytes]) -> bytes:
        return b"".join([_MULTI_TIME, *[_DUMP_PTTL % (len(key), key, len(key), key) for key in keys], _EXEC])

    @staticmethod
    def reply(commands: RespSocket, keys: list[bytes]) -> list[Any]:
        """The EXEC reply of a batch: {TIME, payload1, pttl1, payload2, pttl2, ...}."""
        commands.skip(2 * len(keys) + 2)  # +OK for MULTI, +QUEUED for TIME and each DUMP and PTTL
        return commands.reply()


_DUMP_PEXPIRETIME = b"*2\r\n$4\r\nDUMP\r\n$%d\r\n%s\r\n*2\r\n$11\r\nPEXPIRETIME\r\n$%d\r\n%s\r\n"


class MultiDumpExpireAt(MultiDump):
    """MultiDump with each key's absolute expiry (PEXPIRETIME, Redis >= 7.0) where it has the PTTL."""

    absolute_expiry = True

    @staticmethod
    def request(keys: list[bytes]) -> bytes:
        return b"".join([_MULTI_TIME, *[_DUMP_PEXPIRETIME % (len(key), key, len(key), key) for key in keys], _EXEC])


# ARGV: keys of any slots the node serves (Redis >= 7.0). A reply like MultiDump's EXEC (a missing
# key's DUMP is false, which Redis returns as nil), but with each key's absolute expiry (PEXPIRETIME)
# where MultiDump has its PTTL: no per-key arithmetic in Lua (server CPU per 200 k keys: 0.67 s with it,
# 0.59 s without, 0.56 s for a MULTI of DUMP + PTTL on the same server: measured, bench keys).
DUMP_CROSS_SLOT_LUA = """#!lua flags=allow-cross-slot-keys,no-writes
local out = {redis.call('TIME')}
local n = 1
for _, key in ipairs(ARGV) do
  out[n + 1] = redis.call('DUMP', key)
  out[n + 2] = redis.call('PEXPIRETIME', key)
  n = n + 2
end
return out
"""


def evalsha_head(sha: str) -> bytes:
    """``EVALSHA sha 0`` as RESP bulk strings; the caller prefixes the array length and adds ARGV."""
    return b"$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$1\r\n0\r\n" % (len(sha), sha.encode())


class ScriptDump:
    """EVALSHA of DUMP_CROSS_SLOT_LUA: one atomic call per batch, keys in ARGV."""

    absolute_expiry = True

    def __init__(self, sha: str) -> None:
        self.head = evalsha_head(sha)

    def request(self, keys: list[bytes]) -> bytes:
        return b"".join([b"*%d\r\n" % (len(keys) + 3), self.head, *[b"$%d\r\n%s\r\n" % (len(k), k) for k in keys]])

    @staticmethod
    def reply(commands: RespSocket, keys: list[bytes]) -> list[Any]:
        return commands.reply()
