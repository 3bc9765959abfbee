"""Keys between two Redis servers: batches of RESTOREs routed to the target's nodes, the type-command
copy for payloads a target refuses, and the canonical value comparison of the verification.

The DUMP side (SCAN + MULTI of DUMP/PTTL, pipelined over a raw RESP socket) is the backup's, in
:mod:`storagectl.backends.redis`; this module adds what a live copy needs on the other side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from storagectl.backends.redis import server_ms
from storagectl.backends.redis_topology import key_slot
from storagectl.backends.redis_wire import DUMP_CROSS_SLOT_LUA, MultiDump, RespSocket, ScriptDump

Record = tuple[bytes, int, bytes]  # key, relative TTL in ms (0: none), DUMP payload
# What the copy restores: key, absolute expiry in the source's ms (0: none), DUMP payload.
Timed = tuple[bytes, int, bytes]
NO_SUCH_KEY = -2  # PTTL of a missing key
SINGLE = "-"  # the node id of a single-node target


@dataclass
class _Node:
    client: Any
    commands: RespSocket
    sha: str = ""
    offset: int = 0  # ms to add to a source time to get this node's (its clock less the source's)


@dataclass
class TargetNodes:
    """Raw RESP connections to every node of the target that holds keys, and the slot routing between
    them (a single node: one entry). Requests are pipelined: ``send`` batch k, then ``receive`` k-1."""

    nodes: dict[str, _Node]
    owners: list[str | None] | None = None  # node id per slot; None: a single node
    in_flight: deque[list[tuple[str, list[Any]]]] = field(default_factory=deque)

    @classmethod
    def open(cls, target: Any, db: int) -> TargetNodes:
        if not getattr(target.settings, "is_cluster", False):
            client = target.client(db=db, single_connection_client=True)
            return cls({SINGLE: _Node(client, RespSocket(client.connection))})
        topology = target._stable_topology("data migration")
        nodes = {}
        for node in topology.primaries():
            client = target.node_client(node, single_connection_client=True)
            nodes[node.node_id] = _Node(client, RespSocket(client.connection))
        return cls(nodes, topology.owners)

    def load_script(self, script: str) -> None:
        for node in self.nodes.values():
            node.sha = node.client.script_load(script)

    def split(self, items: list[Any], key_of: Callable[[Any], bytes]) -> list[tuple[str, list[Any]]]:
        if self.owners is None:
            return [(SINGLE, items)]
        groups: dict[str, list[Any]] = {}
        owners = self.owners
        for item in items:
            groups.setdefault(owners[key_slot(key_of(item))] or SINGLE, []).append(item)
        return list(groups.items())

    def send(self, groups: list[tuple[str, list[Any]]], request: Callable[[_Node, list[Any]], bytes]) -> None:
        for node_id, items in groups:
            self.nodes[node_id].commands.send(request(self.nodes[node_id], items))
        self.in_flight.append(groups)

    def receive(self, reply: Callable[[_Node, list[Any]], Any]) -> list[tuple[list[Any], Any]]:
        """The oldest batch sent: (items, reply) per node it went to."""
        groups = self.in_flight.popleft()
        return [(items, reply(self.nodes[node_id], items)) for node_id, items in groups]

    def measure_clocks(self, source: Any) -> None:
        """Each node's clock offset to the ``source`` client's server (TIME on both)."""
        for node in self.nodes.values():
            node.offset = clock_offset(source, node.client)

    def close(self) -> None:
        for node in self.nodes.values():
            node.client.close()


def clock_offset(source: Any, target: Any) -> int:
    """The target server's clock less the source server's, in ms: the target's TIME against the middle
    of two source TIMEs around it (off by at most half a round trip)."""
    before = server_ms(source.time())
    theirs = server_ms(target.time())
    return theirs - (before + server_ms(source.time())) // 2


_RESTORE = b"*5\r\n$7\r\nRESTORE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$6\r\nABSTTL\r\n"
_RESTORE_REPLACE = b"*6\r\n$7\r\nRESTORE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n"


def restore_commands(node: _Node, records: list[Timed], replace: bool) -> bytes:
    """One RESTORE ... ABSTTL per record, pipelined, as RESP bytes: the source's expiry moved to the
    node's clock (``node.offset``), so the key expires when it does on the source and the node's
    PEXPIRETIME is known to the millisecond."""
    template, offset = _RESTORE_REPLACE if replace else _RESTORE, node.offset
    parts = []
    for key, expire_at, payload in records:
        expiry = b"%d" % (expire_at + offset) if expire_at else b"0"
        parts.append(template % (len(key), key, len(expiry), expiry, len(payload), payload))
    return b"".join(parts)


def restore_outcome(node: _Node, records: list[Record]) -> list[int]:
    """The replies to :func:`restore_commands`: [index of the first key that already existed (0: none),
    indexes of payloads refused as of another server version...] (1-based); another error is raised."""
    import redis

    commands, out = node.commands, [0]
    gets, response_error = commands.reader.gets, redis.ResponseError
    for index in range(1, len(records) + 1):
        while (reply := gets()) is False:
            commands._receive()
        if isinstance(reply, response_error):
            text = str(reply)
            if "payload version or checksum" in text:
                out.append(index)
            elif text.startswith("BUSYKEY"):
                out[0] = out[0] or index
            else:
                raise reply
    return out


def live_records(keys: list[bytes], reply: list[Any], elapsed_ms: int) -> tuple[list[Record], int]:
    """The records of a DUMP batch (EXEC reply {TIME, payload, pttl, ...}) still alive, each with the TTL
    it has left after ``elapsed_ms``; and the number skipped because they expired meanwhile. Keys deleted
    since the SCAN (DUMP nil) are left out, uncounted."""
    records: list[Record] = []
    expired = 0
    for key, payload, ttl in zip(keys, reply[1::2], reply[2::2], strict=True):
        if payload is None or ttl == NO_SUCH_KEY:
            continue
        if ttl < 0:
            records.append((key, 0, payload))
        elif ttl - elapsed_ms > 0:
            records.append((key, ttl - elapsed_ms, payload))
        else:
            expired += 1
    return records, expired


def live_expiries(keys: list[bytes], reply: list[Any], absolute: bool) -> tuple[list[Timed], int]:
    """The records of a DUMP batch (reply {TIME, payload, expiry, ...}: the expiry a PTTL, or the
    PEXPIRETIME if ``absolute``) alive at the dump, each with its absolute expiry in the source's ms;
    and the number of keys that had expired. Keys deleted since the SCAN (DUMP nil) are left out."""
    now = server_ms(reply[0])
    records: list[Timed] = []
    expired = 0
    for key, payload, ttl in zip(keys, reply[1::2], reply[2::2], strict=True):
        if payload is None or ttl == NO_SUCH_KEY:
            continue
        if ttl < 0:
            records.append((key, 0, payload))
        elif (expire_at := ttl if absolute else now + ttl) > now:
            records.append((key, expire_at, payload))
        else:
            expired += 1
    return records, expired


def dumper_for(cluster_node: bool, client: Any) -> Any:
    """How a batch is dumped: MULTI on a single node; on a cluster node a script (keys of many slots)."""
    return ScriptDump(client.script_load(DUMP_CROSS_SLOT_LUA)) if cluster_node else MultiDump()


def dump_request(node: _Node, keys: list[bytes]) -> bytes:
    return ScriptDump(node.sha).request(keys) if node.sha else MultiDump.request(keys)


def dump_reply(node: _Node, keys: list[bytes]) -> list[Any]:
    if node.sha:
        return relative_ttls(node.commands.reply(), absolute=True)
    return MultiDump.reply(node.commands, keys)


def relative_ttls(reply: list[Any], absolute: bool) -> list[Any]:
    """A dump reply with each key's TTL left (PTTL), also where the dumper read its absolute expiry
    (PEXPIRETIME, on cluster nodes): the reply's TIME is the moment of the dump. An expiry already
    passed becomes 0, never -1 or -2 (no expiry / no such key)."""
    if absolute:
        now = server_ms(reply[0])
        reply[2::2] = [ttl if ttl < 0 else max(ttl - now, 0) for ttl in reply[2::2]]
    return reply


# -- values through type commands ---------------------------------------------------------------
CHUNK = 1000  # elements per command when a value is written back


def read_value(client: Any, key: bytes) -> tuple[str, Any, int] | None:
    """(type, canonical value, PTTL) of a key read with type commands, or None when it is gone."""
    return read_values(client, [key], with_ttl=True)[0]


def read_values(client: Any, keys: list[bytes], with_ttl: bool = False) -> list[Any]:
    """(type, canonical value) of each key, with its PTTL as a third element if ``with_ttl`` (None:
    gone), in two pipelined round trips. Canonical: hashes and sets sorted, sorted sets as (member,
    score) in rank order, streams as their entries, their groups' names and last delivered ids, and
    their last id. A type the type commands cannot read (a module's) has its DUMP payload as value."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        if with_ttl:
            pipe.pttl(key)
    replies = pipe.execute()
    kinds = [_text(kind) for kind in (replies[::2] if with_ttl else replies)]
    ttls = [int(ttl) for ttl in replies[1::2]] if with_ttl else []
    pipe = client.pipeline(transaction=False)
    for key, kind in zip(keys, kinds, strict=True):
        _READ_COMMANDS.get(kind, _read_dump)(pipe, key)
    values = iter(pipe.execute())
    out: list[Any] = []
    for index, kind in enumerate(kinds):
        parts = [next(values) for _ in range(_REPLIES.get(kind, 1))]
        value = (kind, _CANONICAL.get(kind, _first_reply)(parts))
        out.append(None if kind == "none" else (*value, ttls[index]) if with_ttl else value)
    return out


def _text(kind: Any) -> str:
    return kind.decode() if isinstance(kind, bytes) else str(kind)


def _read_dump(pipe: Any, key: bytes) -> None:
    pipe.dump(key)


def _first_reply(replies: list[Any]) -> Any:
    return replies[0]


def _read_stream(pipe: Any, key: bytes) -> None:
    pipe.xrange(key)
    pipe.xinfo_groups(key)
    pipe.xinfo_stream(key)


def _canonical_stream(replies: list[Any]) -> Any:
    """Entries, each group's name, last delivered id, pending entries and consumers (counts: a PEL
    lost on the way differs), and the last id."""
    entries, groups, info = replies
    return ([(entry_id, sorted(fields.items())) for entry_id, fields in entries],
            sorted((group["name"], group["last-delivered-id"], group["pending"], group["consumers"])
                   for group in groups), info["last-generated-id"])


_READ_COMMANDS: dict[str, Callable[[Any, bytes], Any]] = {
    "string": lambda pipe, key: pipe.get(key),
    "hash": lambda pipe, key: pipe.hgetall(key),
    "list": lambda pipe, key: pipe.lrange(key, 0, -1),
    "set": lambda pipe, key: pipe.smembers(key),
    "zset": lambda pipe, key: pipe.zrange(key, 0, -1, withscores=True),
    "stream": _read_stream,
    "none": lambda pipe, key: pipe.exists(key),
}
_REPLIES = {"stream": 3}
_CANONICAL: dict[str, Callable[[list[Any]], Any]] = {
    "string": _first_reply,
    "hash": lambda replies: sorted(replies[0].items()),
    "list": _first_reply,
    "set": lambda replies: sorted(replies[0]),
    "zset": _first_reply,
    "stream": _canonical_stream,
}


def copy_with_commands(source: Any, target: Any, keys: list[bytes]) -> int:
    """Copy keys with type commands (the target refused their DUMP payloads), read afresh with their
    TTLs: a key gone or expired by now is left out. Returns how many were copied. Target keys are
    replaced: RESTORE checks for an existing key before the payload, so they were absent, or --yes
    allows it. Three pipelined round trips for the batch, whatever its size."""
    values = read_values(source, keys, with_ttl=True)
    groups = _stream_groups(source, keys, values)
    pipe = target.pipeline(transaction=False)
    copied = 0
    for key, value in zip(keys, values, strict=True):
        if value is None or value[2] == 0 or value[2] == NO_SUCH_KEY:
            continue
        kind, data, ttl = value
        if kind not in _WRITERS:
            raise ValueError(f"key {printable_key(key)!r} is of type {kind}, which type commands cannot copy")
        pipe.delete(key)
        _WRITERS[kind](pipe, key, data)
        for group in groups.get(key, ()):
            group.write(pipe, key)
        if ttl > 0:
            pipe.pexpire(key, ttl)
        copied += 1
    pipe.execute()
    return copied


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def _write_stream(pipe: Any, key: bytes, data: Any) -> None:
    entries, groups, last_id = data
    for entry_id, fields in entries:
        pipe.xadd(key, dict(fields), id=entry_id)
    for name, delivered, *_pel in groups:
        pipe.xgroup_create(key, name, id=delivered, mkstream=True)
    if entries or groups:
        pipe.execute_command("XSETID", key, last_id)


@dataclass
class ConsumerGroup:
    """A stream group's consumers and pending entries (PEL), which type commands rebuild: each
    consumer created, each pending entry claimed by its consumer with its idle time and delivery
    count (XCLAIM ... FORCE)."""

    name: bytes
    consumers: list[bytes]
    pending: list[dict[str, Any]]  # XPENDING's extended form: message_id, consumer, idle ms, times delivered

    def write(self, pipe: Any, key: bytes) -> None:
        for consumer in self.consumers:
            pipe.execute_command("XGROUP", "CREATECONSUMER", key, self.name, consumer)
        for entry in self.pending:
            pipe.xclaim(key, self.name, entry["consumer"], 0, [entry["message_id"]],
                        idle=entry["time_since_delivered"], retrycount=entry["times_delivered"], force=True,
                        justid=True)


def _stream_groups(source: Any, keys: list[bytes], values: list[Any]) -> dict[bytes, list[ConsumerGroup]]:
    """The consumers and PEL of the streams' groups that have any, read in one pipelined round trip.
    A pending entry no longer in the stream (XDEL'd) cannot be claimed again: refused, naming the key."""
    wanted = []
    for key, value in zip(keys, values, strict=True):
        if value is not None and value[0] == "stream":
            wanted += [(key, name, pending, consumers) for name, _delivered, pending, consumers in value[1][1]
                       if pending or consumers]
    if not wanted:
        return {}
    pipe = source.pipeline(transaction=False)
    for key, name, pending, _consumers in wanted:
        pipe.xinfo_consumers(key, name)
        pipe.xpending_range(key, name, min="-", max="+", count=max(pending, 1))
    replies = iter(pipe.execute())
    groups: dict[bytes, list[ConsumerGroup]] = {}
    entries = {key: {entry_id for entry_id, _fields in value[1][0]}
               for key, value in zip(keys, values, strict=True) if value is not None and value[0] == "stream"}
    for key, name, _pending, _consumers in wanted:
        consumers, pending = next(replies), next(replies)
        gone = [entry["message_id"] for entry in pending if entry["message_id"] not in entries[key]]
        if gone:
            raise ValueError(f"key {printable_key(key)!r}: group {printable_key(name)!r} has pending entry "
                             f"{printable_key(gone[0])} no longer in the stream, which type commands cannot copy")
        groups.setdefault(key, []).append(ConsumerGroup(name, [c["name"] for c in consumers], pending))
    return groups


_WRITERS: dict[str, Callable[[Any, bytes, Any], None]] = {
    "string": lambda pipe, key, data: pipe.set(key, data),
    "hash": lambda pipe, key, data: [pipe.hset(key, mapping=dict(c)) for c in _chunks(data)],
    "list": lambda pipe, key, data: [pipe.rpush(key, *c) for c in _chunks(data)],
    "set": lambda pipe, key, data: [pipe.sadd(key, *c) for c in _chunks(data)],
    "zset": lambda pipe, key, data: [pipe.zadd(key, dict(c)) for c in _chunks(data)],
    "stream": _write_stream,
}


def printable_key(key: bytes) -> str:
    """A key as one printable line: UTF-8 as it is; other bytes, controls and backslashes escaped."""
    text = key.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char == "\\" or not char.isprintable():
            out.append(char.encode("unicode_escape").decode())
        else:
            out.append(char)
    return "".join(out)


# -- payloads equal up to order -----------------------------------------------------------------
_RDB_SET, _RDB_HASH = 2, 4  # hash-table encodings: DUMP lists their elements in table order


def same_unordered(ours: bytes, theirs: bytes) -> bool | None:
    """Whether two DUMP payloads of a hash-table set or hash hold the same elements in another order
    (their CRCs differ then), without decoding the elements: the same server version encodes equal
    strings to equal bytes. None: not such payloads, or of other versions; read the values then."""
    if ours[:1] != theirs[:1] or ours[0] not in (_RDB_SET, _RDB_HASH) or ours[-10:-8] != theirs[-10:-8]:
        return None
    try:
        return hashtable_elements(ours) == hashtable_elements(theirs)
    except (IndexError, ValueError):
        return None


def hashtable_elements(payload: bytes) -> list[bytes]:
    """The elements of a hash-table set's or hash's DUMP payload (each a member, or a field and its
    value together, as the RDB strings are encoded), sorted."""
    return sorted(hashtable_spans(payload))


def hashtable_spans(payload: bytes) -> list[bytes]:
    """The elements of a hash-table set's or hash's DUMP payload in table order; ValueError or
    IndexError if it is not one."""
    count, position = _length(payload, 1)
    spans: list[bytes] = []
    for _ in range(count):
        start = position
        for _span in range(2 if payload[0] == _RDB_HASH else 1):
            position = _string_end(payload, position)
        spans.append(payload[start:position])
    if position != len(payload) - 10:
        raise ValueError("trailing bytes")
    return spans


def _length(payload: bytes, position: int) -> tuple[int, int]:
    """An RDB length at ``position``: (length, position after it)."""
    first = payload[position]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, position + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | payload[position + 1], position + 2
    if first == 0x80:
        return int.from_bytes(payload[position + 1:position + 5], "big"), position + 5
    if first == 0x81:
        return int.from_bytes(payload[position + 1:position + 9], "big"), position + 9
    raise ValueError("not a length")


def _string_end(payload: bytes, position: int) -> int:
    """Where the RDB string at ``position`` ends: raw, an integer, or LZF-compressed."""
    first = payload[position]
    if first >> 6 != 3:
        length, start = _length(payload, position)
        return start + length
    special = first & 0x3F
    if special in (0, 1, 2):
        return position + 1 + (1, 2, 4)[special]
    if special == 3:
        compressed, start = _length(payload, position + 1)
        _plain, start = _length(payload, start)
        return start + compressed
    raise ValueError("unknown string encoding")
