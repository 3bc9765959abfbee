"""Redis workloads. Keys live under ``storagectl:bench:<id>:``; teardown deletes them by name.

Requests go out on the raw sockets of redis-py connections (redis-py does the handshake: AUTH,
SELECT, TLS) and replies are parsed with hiredis; commands are encoded once, into a ring of
pre-drawn random keys, so a request costs one ``sendall`` and a share of one ``recv``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from storagectl.errors import BackendUnavailable, UsageError
from storagectl.loadgen.workloads import WorkloadOptions

PIPELINES = True
PROCESS_WORKERS = True
WORKLOADS = ("get", "set", "mixed", "hset", "hget", "lpush", "rpop", "zadd", "zrange", "pubsub")
RING_SIZE = 16384
FILL_BATCH = 1000
INLINE_VALUE_MAX = 4096  # values up to this size are encoded into every ring entry
RECV_BUFFER = 65536  # reused: a fresh 256 KiB bytes object per recv is an mmap + munmap each time


def _plain_blocking(sock: Any) -> Any:
    """The socket without redis-py's timeout: Python polls before every send and recv of a socket
    with a timeout (two more syscalls per request); the loop reads only sockets epoll found ready."""
    sock.settimeout(None)
    return sock

DEFAULT_KEYSPACE = 100_000


def workload_names(kind: str) -> tuple[str, ...]:
    return WORKLOADS


def make_workload(backend: Any, options: WorkloadOptions) -> RedisWorkload:
    if backend.settings.is_cluster:
        raise UsageError(f"storagectl bench does not run against a Redis Cluster yet ({backend.name!r})",
                         hint="Try: point a non-cluster backend at one primary")
    return RedisWorkload(backend, options)


def resp(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def _resp_head(*parts: bytes, extra: int) -> bytes:
    """A command whose last ``extra`` arguments (the value) follow separately."""
    out = [b"*%d\r\n" % (len(parts) + extra)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class RedisWorkload:
    def __init__(self, backend: Any, options: WorkloadOptions) -> None:
        self.backend = backend
        self.options = options
        self.namespace = f"storagectl:bench:{options.run_id}:"
        self._value = b"x" * options.data_size
        self._admin: Any = None
        self._seed = random.Random(options.run_id)
        self._filled = 0

    # -- names ------------------------------------------------------------------------------
    def key(self, n: int) -> bytes:
        return f"{self.namespace}key:{n}".encode()

    def _name(self, what: str) -> bytes:
        return f"{self.namespace}{what}".encode()

    # -- lifecycle --------------------------------------------------------------------------
    def setup(self) -> int:
        self._admin = self.backend.client()
        try:
            self._admin.ping()
        except Exception as exc:
            raise self.backend.translate_error(exc) from exc
        fill = {"get": self._fill_keys, "mixed": self._fill_keys, "hget": self._fill_hash,
                "rpop": self._fill_list, "zrange": self._fill_zset}.get(self.options.base)
        if fill is not None:
            fill()
        return self._filled

    def _fill_batches(self, write: Callable[[Any, range], None]) -> None:
        keyspace = self.options.keyspace
        for start in range(0, keyspace, FILL_BATCH):
            pipe = self._admin.pipeline(transaction=False)
            write(pipe, range(start, min(start + FILL_BATCH, keyspace)))
            pipe.execute()
            self._filled = min(start + FILL_BATCH, keyspace)

    def _fill_keys(self) -> None:
        self._fill_batches(lambda pipe, ns: pipe.mset({self.key(n): self._value for n in ns}))

    def _fill_hash(self) -> None:
        self._fill_batches(lambda pipe, ns: pipe.hset(self._name("hash"),
                                                       mapping={f"field:{n}": self._value for n in ns}))

    def _fill_list(self) -> None:
        self._fill_batches(lambda pipe, ns: pipe.lpush(self._name("list"), *[self._value] * len(ns)))

    def _fill_zset(self) -> None:
        self._fill_batches(lambda pipe, ns: pipe.zadd(self._name("zset"), {f"member:{n}": n for n in ns}))

    def teardown(self) -> None:
        admin = self._admin or self.backend.client()
        try:
            names = [self._name(what) for what in ("hash", "list", "zset")]
            admin.unlink(*names)
            if self.options.base in ("get", "set", "mixed"):
                for start in range(0, self.options.keyspace, FILL_BATCH):
                    stop = min(start + FILL_BATCH, self.options.keyspace)
                    admin.unlink(*[self.key(n) for n in range(start, stop)])
        finally:
            admin.close()

    def server_version(self) -> str:
        return f"Redis {self._admin.info('server').get('redis_version', '?')}"

    # -- clients ----------------------------------------------------------------------------
    def open_client(self) -> Any:
        if self.options.base == "pubsub":
            return PubSubClient(self._connection(), self._connection(), self._name(
                f"channel:{self._seed.randrange(1 << 30)}"))
        entries, tail = self._ring()
        return RedisClient(self._connection(), entries, tail)

    def _connection(self) -> Any:
        client = self.backend.client(single_connection_client=True)
        try:
            client.ping()
        except Exception as exc:
            client.close()
            raise self.backend.translate_error(exc) from exc
        return client

    def _ring(self) -> tuple[list[bytes], bytes]:
        """Encoded commands with random keys, and the value that follows each (empty when inlined)."""
        draw, rng = self._seed.randrange, self._seed
        keyspace, value = self.options.keyspace, self._value
        base = self.options.base
        tail = b"$%d\r\n%s\r\n" % (len(value), value)
        ratio_set, ratio_get = self.options.ratio
        build: dict[str, Callable[[], tuple[bytes, bool]]] = {
            "get": lambda: (resp(b"GET", self.key(draw(keyspace))), False),
            "set": lambda: (_resp_head(b"SET", self.key(draw(keyspace)), extra=1), True),
            "hset": lambda: (_resp_head(b"HSET", self._name("hash"), b"field:%d" % draw(keyspace), extra=1), True),
            "hget": lambda: (resp(b"HGET", self._name("hash"), b"field:%d" % draw(keyspace)), False),
            "lpush": lambda: (_resp_head(b"LPUSH", self._name("list"), extra=1), True),
            "rpop": lambda: (resp(b"RPOP", self._name("list")), False),
            "zadd": lambda: (resp(b"ZADD", self._name("zset"), b"%d" % draw(keyspace),
                                  b"member:%d" % draw(keyspace)), False),
            "zrange": lambda: (resp(b"ZRANGE", self._name("zset"), b"0", b"9"), False),
        }
        if base == "mixed":
            def mixed() -> tuple[bytes, bool]:
                use_set = rng.random() * (ratio_set + ratio_get) < ratio_set
                return build["set" if use_set else "get"]()
            build["mixed"] = mixed
        entries: list[bytes] = []
        inline = len(value) <= INLINE_VALUE_MAX
        valued = False
        for _ in range(RING_SIZE):
            command, has_value = build[base]()
            valued = valued or has_value
            if has_value and inline:
                command += tail
            elif not has_value and not inline and base == "mixed":
                raise UsageError("mixed takes --data-size up to 4096 bytes")
            entries.append(command)
        return entries, tail if valued and not inline else b""


def _error_kind(reply: Any) -> str:
    return str(reply).split(" ", 1)[0] or "ERR"


class RedisClient:
    eager = False
    def __init__(self, connection: Any, ring: list[bytes], tail: bytes) -> None:
        import hiredis

        self._client = connection
        self._sock = _plain_blocking(connection.connection._sock)
        self._buffer = bytearray(RECV_BUFFER)
        self._reader = hiredis.Reader()
        self._reply_error = hiredis.ReplyError
        self._ring = ring
        self._tail = tail
        self._position = 0
        self._pending = 0
        self._ops = 0
        self._errors: dict[str, int] = {}

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, ops: int) -> None:
        ring, position = self._ring, self._position
        end = position + ops
        batch = ring[position:end] if end <= len(ring) else [ring[i % len(ring)] for i in range(position, end)]
        self._position = end % len(ring)
        if self._tail:
            batch = [part for command in batch for part in (command, self._tail)]
        self._pending = self._ops = ops
        self._sock.sendall(batch[0] if len(batch) == 1 else b"".join(batch))

    def collect(self) -> list[tuple[int, str | None]]:
        received = self._sock.recv_into(self._buffer)
        if not received:
            raise BackendUnavailable("the Redis server closed a benchmark connection")
        reader = self._reader
        reader.feed(self._buffer, 0, received)
        pending = self._pending
        while pending:
            reply = reader.gets()
            if reply is False:
                break
            pending -= 1
            if isinstance(reply, self._reply_error):
                kind = _error_kind(reply)
                self._errors[kind] = self._errors.get(kind, 0) + 1
        self._pending = pending
        if pending:
            return []
        errors, self._errors = self._errors, {}
        failed = sum(errors.values())
        done = [(self._ops - failed, None)] if self._ops > failed else []
        return done + [(count, kind) for kind, count in errors.items()]

    def close(self) -> None:
        self._client.close()


class PubSubClient:
    """PUBLISH on one connection, SUBSCRIBEd on another: an op is done when its message arrives."""

    eager = False

    def __init__(self, publisher: Any, subscriber: Any, channel: bytes) -> None:
        import hiredis

        self._publisher, self._subscriber = publisher, subscriber
        self._pub_sock = publisher.connection._sock
        self._sub_sock = _plain_blocking(subscriber.connection._sock)
        self._sub_reader, self._pub_reader = hiredis.Reader(), hiredis.Reader()
        self._sub_sock.sendall(resp(b"SUBSCRIBE", channel))
        while self._sub_reader.gets() is False:
            self._sub_reader.feed(self._sub_sock.recv(65536))
        self._pub_sock.setblocking(False)
        self._message = resp(b"PUBLISH", channel, b"x")
        self._pending = self._ops = 0

    def fileno(self) -> int:
        return self._sub_sock.fileno()

    def send(self, ops: int) -> None:
        self._pending = self._ops = ops
        self._pub_sock.setblocking(True)
        self._pub_sock.sendall(self._message * ops)
        self._pub_sock.setblocking(False)

    def collect(self) -> list[tuple[int, str | None]]:
        self._drain_publisher()
        data = self._sub_sock.recv(262144)
        if not data:
            raise BackendUnavailable("the Redis server closed a benchmark connection")
        self._sub_reader.feed(data)
        while self._pending and self._sub_reader.gets() is not False:
            self._pending -= 1
        return [] if self._pending else [(self._ops, None)]

    def _drain_publisher(self) -> None:
        try:
            while self._pub_sock.recv(262144):
                pass
        except BlockingIOError:
            return

    def close(self) -> None:
        self._publisher.close()
        self._subscriber.close()
