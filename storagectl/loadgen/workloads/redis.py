"""Redis workloads. Keys live under ``storagectl:bench:<id>:``; teardown deletes them by name.

Requests go out on the raw sockets of redis-py connections (redis-py does the handshake: AUTH,
SELECT, TLS) and replies are parsed with hiredis; commands are encoded once, into a ring of
pre-drawn random keys, so a request costs one ``sendall`` and a share of one ``recv``.

One server and a Redis Cluster are driven alike, over the primaries of
:func:`~storagectl.backends.redis_topology.backend_topology` (one server: one node owning every
slot): each client is connected to one primary and its ring holds only keys of that primary's slots,
as redis-benchmark ``--cluster`` does, so a request is never redirected; the fill and the teardown
visit every primary through the fan-out. Clients of a keyspace workload are spread over the primaries
in turn; those of a one-key workload (hset, lpush, ...) all go to the primary of that key. A slot that
moves during the run shows as ``MOVED``/``ASK`` errors.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from storagectl.backends.redis_topology import (
    ClusterNode,
    ClusterTopology,
    backend_topology,
    fan_out,
    key_slot,
    node_values,
)
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


ONE_KEY = {"hset": "hash", "hget": "hash", "lpush": "list", "rpop": "list", "zadd": "zset", "zrange": "zset"}
FILLS = {"get": "keys", "mixed": "keys", "hget": "hash", "rpop": "list", "zrange": "zset"}
# a nil reply that means the op did no work: RPOP on the list it emptied (the fill is --keyspace items,
# which a default 5 s warm-up pops in well under a second); counted as this error kind, not as a pop
NIL_KINDS = {"rpop": "EMPTY"}


class RedisWorkload:
    def __init__(self, backend: Any, options: WorkloadOptions) -> None:
        self.backend = backend
        self.options = options
        self.namespace = f"storagectl:bench:{options.run_id}:"
        self.fill_items = options.keyspace if options.base in FILLS else 0
        self._value = b"x" * options.data_size
        self._seed = random.Random(options.run_id)
        self._topology: ClusterTopology | None = None
        self._touched = False
        self._filled = 0
        self._clients = 0  # clients opened (numbered across worker processes, see for_worker)
        self._version = ""

    # -- names ------------------------------------------------------------------------------
    def key(self, n: int) -> bytes:
        return f"{self.namespace}key:{n}".encode()

    def _name(self, what: str) -> bytes:
        return f"{self.namespace}{what}".encode()

    # -- lifecycle --------------------------------------------------------------------------
    def setup(self) -> int:
        self._topology = backend_topology(self.backend, "bench setup")
        with self.backend.connect() as connection:
            self._version = f"Redis {self.backend.server_version(connection)}"
        self._touched = True
        what = FILLS.get(self.options.base)
        if what is not None:
            numbers = range(self.options.keyspace)
            if what == "keys":  # each primary writes the keys of its slots
                parts = _by_owner(self._topology, numbers, self.key)
            else:  # the one key's primary writes all of it
                parts = {_owner(self._topology, self._name(what)): numbers}
            write = {"keys": self._write_keys, "hash": self._write_hash, "list": self._write_list,
                     "zset": self._write_zset}[what]
            self._on_primaries(self._topology, "bench setup", parts, write)
            self._filled = self.options.keyspace
        return self._filled

    def _write_keys(self, pipe: Any, numbers: Any) -> None:
        for n in numbers:  # one SET per key: a cluster node refuses an MSET across slots
            pipe.set(self.key(n), self._value)

    def _write_hash(self, pipe: Any, numbers: Any) -> None:
        pipe.hset(self._name("hash"), mapping={f"field:{n}": self._value for n in numbers})

    def _write_list(self, pipe: Any, numbers: Any) -> None:
        pipe.lpush(self._name("list"), *[self._value] * len(numbers))

    def _write_zset(self, pipe: Any, numbers: Any) -> None:
        pipe.zadd(self._name("zset"), {f"member:{n}": n for n in numbers})

    def _on_primaries(self, topology: ClusterTopology, what: str, parts: dict[str | None, Any],
                      write: Callable[[Any, Any], None]) -> None:
        """``write(pipeline, batch)`` on every primary for its part, FILL_BATCH items per round trip,
        the primaries in parallel through the fan-out."""
        def visit(node: ClusterNode) -> None:
            items = parts.get(node.node_id) or []
            client = self.backend.node_client(node, single_connection_client=True)
            try:
                for start in range(0, len(items), FILL_BATCH):
                    pipe = client.pipeline(transaction=False)
                    write(pipe, items[start:start + FILL_BATCH])
                    pipe.execute()
            finally:
                client.close()

        primaries = topology.primaries()
        node_values(self.backend, what, fan_out(primaries, visit, len(primaries)))

    def teardown(self) -> bool:
        """UNLINK every name the run could have written, each on the primary serving its slot now."""
        if not self._touched:
            return False
        topology = backend_topology(self.backend, "bench teardown")
        names = [self._name(what) for what in ("hash", "list", "zset")]
        if self.options.base in ("get", "set", "mixed"):
            names += [self.key(n) for n in range(self.options.keyspace)]

        def unlink(pipe: Any, batch: list[bytes]) -> None:
            for name in batch:  # one UNLINK per key: a cluster node refuses one across slots
                pipe.unlink(name)

        self._on_primaries(topology, "bench teardown", _by_owner(topology, names, lambda name: name), unlink)
        self._touched = False
        return True

    def server_version(self) -> str:
        return self._version

    # -- clients ----------------------------------------------------------------------------
    def for_worker(self, index: int, first_client: int) -> None:
        """In worker process ``index`` (forked with this object): draws of its own, not a copy of the
        other workers', and client numbers that go on from the workers before it."""
        self._seed = random.Random(f"{self.options.run_id}:{index}:{os.getpid()}")  # -x: each run its own draws
        self._clients = first_client

    def open_client(self) -> Any:
        node = self._client_node()
        if self.options.base == "pubsub":
            return PubSubClient(self._connection(node), self._connection(node), self._name(
                f"channel:{self._seed.randrange(1 << 30)}"))
        entries, tail = self._ring(node)
        return RedisClient(self._connection(node), entries, tail, nil_kind=NIL_KINDS.get(self.options.base))

    def _client_node(self) -> ClusterNode:
        """The primary of the next client: the one serving a one-key workload's key, else each in turn."""
        topology = self._topology
        assert topology is not None, "setup() reads the topology"
        primaries = topology.primaries()
        number, self._clients = self._clients, self._clients + 1
        if self.options.base in ONE_KEY:
            owner = _owner(topology, self._name(ONE_KEY[self.options.base]))
            return next(node for node in primaries if node.node_id == owner)
        return primaries[number % len(primaries)]

    def _connection(self, node: ClusterNode) -> Any:
        client = self.backend.node_client(node, single_connection_client=True)
        try:
            client.ping()
        except Exception as exc:
            client.close()
            raise self.backend.node_error("bench connect", node, exc) from exc
        return client

    def _ring(self, node: ClusterNode) -> tuple[list[bytes], bytes]:
        """Encoded commands with random keys of ``node``'s slots, and the value that follows each
        (empty when inlined)."""
        draw, rng = self._seed.randrange, self._seed
        keyspace, value = self.options.keyspace, self._value
        base = self.options.base
        tail = b"$%d\r\n%s\r\n" % (len(value), value)
        ratio_set, ratio_get = self.options.ratio
        build: dict[str, Callable[[], tuple[bytes, bytes, bool]]] = {
            "get": lambda: _keyed(b"GET", self.key(draw(keyspace))),
            "set": lambda: _keyed(b"SET", self.key(draw(keyspace)), valued=True),
            "hset": lambda: _keyed(b"HSET", self._name("hash"), b"field:%d" % draw(keyspace), valued=True),
            "hget": lambda: _keyed(b"HGET", self._name("hash"), b"field:%d" % draw(keyspace)),
            "lpush": lambda: _keyed(b"LPUSH", self._name("list"), valued=True),
            "rpop": lambda: _keyed(b"RPOP", self._name("list")),
            "zadd": lambda: _keyed(b"ZADD", self._name("zset"), b"%d" % draw(keyspace),
                                   b"member:%d" % draw(keyspace)),
            "zrange": lambda: _keyed(b"ZRANGE", self._name("zset"), b"0", b"9"),
        }
        if base == "mixed":
            def mixed() -> tuple[bytes, bytes, bool]:
                use_set = rng.random() * (ratio_set + ratio_get) < ratio_set
                return build["set" if use_set else "get"]()
            build["mixed"] = mixed
        topology = self._topology
        assert topology is not None
        owners = topology.owners if len(topology.primaries()) > 1 else None  # one server owns every key
        entries: list[bytes] = []
        inline = len(value) <= INLINE_VALUE_MAX
        valued = False
        while len(entries) < RING_SIZE:
            command, key, has_value = build[base]()
            if owners is not None and owners[key_slot(key)] != node.node_id:
                continue  # another primary's key: drawn again (a one-key workload's client is on its primary)
            valued = valued or has_value
            if has_value and inline:
                command += tail
            elif not has_value and not inline and base == "mixed":
                raise UsageError("mixed takes --data-size up to 4096 bytes")
            entries.append(command)
        return entries, tail if valued and not inline else b""


def _owner(topology: ClusterTopology, key: bytes) -> str | None:
    return topology.owners[key_slot(key)]


def _by_owner(topology: ClusterTopology, items: Any, key_of: Callable[[Any], bytes]) -> dict[str | None, list[Any]]:
    """``items`` grouped by the primary serving the slot of ``key_of(item)`` (one server: all on it)."""
    primaries = topology.primaries()
    if len(primaries) == 1:
        return {primaries[0].node_id: list(items)}
    owners: dict[str | None, list[Any]] = {}
    for item in items:
        owners.setdefault(topology.owners[key_slot(key_of(item))], []).append(item)
    return owners


def _keyed(command: bytes, key: bytes, *arguments: bytes, valued: bool = False) -> tuple[bytes, bytes, bool]:
    """(the encoded command, its key, whether a value follows): the value is added by the ring."""
    if valued:
        return _resp_head(command, key, *arguments, extra=1), key, True
    return resp(command, key, *arguments), key, False


def _error_kind(reply: Any) -> str:
    return str(reply).split(" ", 1)[0] or "ERR"


class RedisClient:
    eager = False
    def __init__(self, connection: Any, ring: list[bytes], tail: bytes, nil_kind: str | None = None) -> None:
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
        self._nil_kind = nil_kind

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
            elif reply is None and self._nil_kind is not None:
                self._errors[self._nil_kind] = self._errors.get(self._nil_kind, 0) + 1
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
        import ssl

        try:
            while self._pub_sock.recv(262144):
                pass
        except (BlockingIOError, ssl.SSLWantReadError):  # nothing more to read (a TLS socket says so this way)
            return

    def close(self) -> None:
        self._publisher.close()
        self._subscriber.close()
